//! Table structure: SLANet-plus tokens and cell boxes decoded to HTML (`decode`), OCR lines
//! matched into cells (`matcher`), and the pipeline's table stage.

pub mod decode;
pub mod matcher;
pub mod stage;
