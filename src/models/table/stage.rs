//! The table stage: every table region of the call's pages through SLANet-plus in one batch,
//! structure decoding, then the OCR lines inside each table matched into its cells.
//!
//! Preprocessing is RapidTable's: the crop resized (OpenCV bilinear) so its longer side is 488
//! with `int(side · 488 / max(h, w))`, ImageNet mean/std on the BGR array, zero-padded
//! bottom/right to 488 × 488 (zero in normalized units). Decoder steps are data-dependent (up
//! to `max_decoder_steps` per table): each table records how many it took.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::decode::{self, TableVocab};
use super::matcher::{OcrLine, match_table};
use crate::models::ocr::preprocess::{Bgr, normalize_into, resize_linear};
use crate::models::routing::{Route, pixel_rect, route};
use crate::models::slanet::SlaNet;
use crate::models::weights::load_card;
use crate::models::{FailureKind, ModelInfo, Stage, StageError};
use crate::page::PageWork;
use crate::vocab::StageKind;

/// SLANet-plus's options (`[stages.table]` keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlanetOptions {
    /// The decoder's step limit per table (SLANet's `max_text_length`).
    pub max_decoder_steps: usize,
}

/// SLANet's `max_text_length`: 500 structure tokens.
pub const DEFAULT_MAX_DECODER_STEPS: usize = 500;

impl Default for SlanetOptions {
    fn default() -> Self {
        Self {
            max_decoder_steps: DEFAULT_MAX_DECODER_STEPS,
        }
    }
}

impl crate::models::registry::ModelOptions for SlanetOptions {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_decoder_steps == 0 {
            return Err(("max_decoder_steps", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Tables per SLANet call at least (a page's tables are batched together; more when the
/// stage's batch size asks for it). Eight bound the encoder input to 23 MB.
const TABLES_PER_CALL: usize = 8;

/// The registry's builder of `slanet-plus`.
pub fn build(req: &crate::models::registry::BuildRequest) -> Result<Box<dyn Stage>, StageError> {
    let o: SlanetOptions = req.options()?;
    let ctx = req.ctx;
    Ok(Box::new(TableStage::load(
        req.id,
        o.max_decoder_steps,
        req.batch_size.max(TABLES_PER_CALL),
        &ctx.cache_root,
        ctx.offline,
        &ctx.device,
    )?))
}

#[derive(Clone)]
pub struct TableStage {
    id: String,
    /// Shared by the stage's replicas on other model workers, as is the vocabulary.
    model: std::sync::Arc<SlaNet>,
    vocab: std::sync::Arc<TableVocab>,
    mean: [f32; 3],
    std: [f32; 3],
    size: usize,
    max_steps: usize,
    /// Tables per model call (bounds the encoder's memory: 3·488² floats per table).
    batch: usize,
    device: Device,
    weights: String,
}

/// A table crop ready for the model: page, region and pixel box `[x0, y0, x1, y1)`.
struct Crop {
    page: usize,
    region: usize,
    rect: [usize; 4],
}

impl TableStage {
    pub fn load(
        model_id: &str,
        max_steps: usize,
        batch: usize,
        cache_root: &Path,
        offline: bool,
        device: &Device,
    ) -> Result<Self, StageError> {
        let (card, files) = load_card(model_id, cache_root, offline)?;
        let vocab =
            TableVocab::from_character_list(files.metadata.get("character").ok_or_else(|| {
                StageError::new(
                    FailureKind::Weights,
                    format!("model {model_id}: no `character` metadata (the structure vocabulary)"),
                )
            })?);
        let model = SlaNet::from_onnx_file(model_id, &files.onnx, device)
            .map_err(|e| StageError::new(FailureKind::Weights, e.to_string()))?;
        if model.classes() != vocab.len() {
            return Err(StageError::new(
                FailureKind::Weights,
                format!(
                    "model {model_id}: decoder has {} classes, vocabulary {}",
                    model.classes(),
                    vocab.len()
                ),
            ));
        }
        Ok(Self {
            id: model_id.to_string(),
            model: std::sync::Arc::new(model),
            vocab: std::sync::Arc::new(vocab),
            mean: card.preprocess_f32x3("mean")?,
            std: card.preprocess_f32x3("std")?,
            size: card.preprocess_usize("size", decode::SLANET_PLUS_INPUT_SIZE),
            max_steps: max_steps.max(1),
            batch: batch.max(1),
            device: device.clone(),
            weights: files.onnx_sha256,
        })
    }

    /// The network itself (benchmarks and tests run it on prepared inputs).
    pub fn network(&self) -> &SlaNet {
        &self.model
    }

    /// The structure vocabulary.
    pub fn vocab(&self) -> &TableVocab {
        &self.vocab
    }

    /// The normalized, padded model input of one crop (CHW, `size`²).
    pub fn preprocess(&self, crop: &Bgr<'_>, out: &mut [f32]) {
        let s = self.size;
        let ratio = s as f64 / crop.width.max(crop.height) as f64;
        let rh = ((crop.height as f64 * ratio) as usize).clamp(1, s);
        let rw = ((crop.width as f64 * ratio) as usize).clamp(1, s);
        let resized = resize_linear(crop, rw, rh);
        let view = Bgr {
            width: rw,
            height: rh,
            stride: rw * 3,
            data: &resized,
        };
        normalize_into(&view, self.mean, self.std, false, out, s, s);
    }
}

impl Stage for TableStage {
    fn kind(&self) -> StageKind {
        StageKind::Table
    }

    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(self.clone()))
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Table,
            id: self.id.clone(),
            is_test_stage: false,
            untrained: false,
            fallback: None,
            weights_sha256: Some(self.weights.clone()),
        }
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        let model_err = crate::models::model_error;
        let mut crops = Vec::new();
        for (pi, page) in batch.iter().enumerate() {
            let img = crate::models::page_bgr(page, StageKind::Table)?;
            for (ri, r) in page.output.regions.iter().enumerate() {
                if route(&r.class) != Route::Table {
                    continue;
                }
                if let Some(rect) = pixel_rect(r.bbox, 0.0, img.width, img.height) {
                    crops.push(Crop {
                        page: pi,
                        region: ri,
                        rect,
                    });
                }
            }
        }
        let s = self.size;
        for chunk in crops.chunks(self.batch) {
            let per = 3 * s * s;
            let mut input = vec![0f32; chunk.len() * per];
            for (c, out) in chunk.iter().zip(input.chunks_mut(per)) {
                let img = crate::models::page_bgr(&batch[c.page], StageKind::Table)?;
                self.preprocess(&img.crop(c.rect), out);
            }
            let x =
                Tensor::from_vec(input, (chunk.len(), 3, s, s), &self.device).map_err(model_err)?;
            let out = self
                .model
                .forward(&x, self.max_steps, self.vocab.eos())
                .map_err(model_err)?;
            for (i, c) in chunk.iter().enumerate() {
                let page = &mut batch[c.page];
                let structure = decode::decode(
                    &out.structure[i],
                    &out.loc[i],
                    &self.vocab,
                    c.rect[2] - c.rect[0],
                    c.rect[3] - c.rect[1],
                    s,
                )
                .map_err(|e| StageError::new(FailureKind::Model, format!("{}: {e}", page.id)))?;
                let (ox, oy) = (c.rect[0] as f32, c.rect[1] as f32);
                let lines: Vec<OcrLine> = page
                    .output
                    .lines
                    .iter()
                    .filter(|l| l.region == Some(c.region))
                    .map(|l| {
                        let b = l.bbox;
                        OcrLine::from_rect([b[0] - ox, b[1] - oy, b[2] - ox, b[3] - oy], &l.text)
                    })
                    .collect();
                let region = &mut page.output.regions[c.region];
                region.html = Some(match_table(&structure, &lines));
                region.decoder_steps = Some(out.steps[i] as u32);
            }
        }
        Ok(())
    }
}
