//! PP-OCR text detection and recognition (PP-OCRv5 / v4 mobile), natively in candle.
//! Work in progress for issue 3: pieces land here as they are finished and tested; the OCR
//! stage is not wired into the pipeline until detection and recognition pass their parity tests.

pub mod ctc;
pub mod db_post;
pub mod preprocess;
