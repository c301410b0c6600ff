//! Layout detection: PP-PicoDet on CDLA classes. `postprocess` turns the GFL head's outputs
//! into page regions; `stage` runs the model as the pipeline's layout stage.

pub mod postprocess;
pub mod stage;
