//! DB (differentiable binarization) post-processing: probability map → text boxes.
