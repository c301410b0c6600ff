//! PP-OCR text detection and recognition (PP-OCRv5 / v4 mobile), natively in candle.
//! The models are `db_det.rs` (detection) and `svtr_rec.rs` (recognition) one level up; this
//! module holds what surrounds them: preprocessing, DB post-processing, CTC decoding and the
//! pipeline stage.

pub mod ctc;
pub mod db_post;
pub mod preprocess;
pub mod stage;
