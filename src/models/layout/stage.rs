//! The layout stage: PP-PicoDet on every page of the call in one batch, GFL decoding, regions
//! in reading order.
//!
//! Preprocessing is RapidLayout's: a plain resize (no letterbox) of the page to the card's
//! 608 × 800 with OpenCV's bilinear rule, then ImageNet mean/std with the channels in RGB order
//! (RapidLayout's loader swaps a BGR array's channels). RapidLayout does the mean/std step in
//! f64; we do it in f32, one ulp off on about 12 % of inputs, far inside the parity tolerance.
//! The exported graph is fixed at batch 1; the candle model batches the stage call's pages.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::postprocess::{self, GflParams, LevelOutput};
use crate::models::ocr::preprocess::{Bgr, normalize_channels_into, resize_linear};
use crate::models::picodet::{PicoDet, STRIDES};
use crate::models::routing;
use crate::models::weights::load_card;
use crate::models::{FailureKind, ModelInfo, Stage, StageError};
use crate::page::{PageWork, Region};
use crate::vocab::StageKind;

/// The registry's builder of the embedded layout model (no options).
pub fn build(req: &crate::models::registry::BuildRequest) -> Result<Box<dyn Stage>, StageError> {
    let ctx = req.ctx;
    Ok(Box::new(LayoutStage::load(
        req.id,
        &ctx.cache_root,
        ctx.offline,
        &ctx.device,
    )?))
}

#[derive(Clone)]
pub struct LayoutStage {
    id: String,
    /// Shared by the stage's replicas on other model workers.
    model: Arc<PicoDet>,
    labels: Vec<String>,
    /// Input plane `c` comes from image channel `channels[c]` (the card's `channel_order`).
    channels: [usize; 3],
    mean: [f32; 3],
    std: [f32; 3],
    width: usize,
    height: usize,
    params: GflParams,
    device: Device,
    weights: String,
}

impl LayoutStage {
    pub fn load(
        model_id: &str,
        cache_root: &Path,
        offline: bool,
        device: &Device,
    ) -> Result<Self, StageError> {
        let (card, files) = load_card(model_id, cache_root, offline)?;
        let labels: Vec<String> = match files.metadata.get("character") {
            Some(c) => c.lines().map(str::to_string).collect(),
            None => postprocess::CDLA_LABELS.map(str::to_string).to_vec(),
        };
        let model = PicoDet::from_onnx_file(model_id, &files.onnx, labels.len(), device)
            .map_err(|e| StageError::new(FailureKind::Weights, e.to_string()))?;
        let channels = match card
            .preprocess
            .get("channel_order")
            .and_then(|v| v.as_str())
        {
            Some("rgb") => [2, 1, 0],
            Some("bgr") | None => [0, 1, 2],
            Some(other) => {
                return Err(StageError::new(
                    FailureKind::Config,
                    format!("model card {model_id}: channel_order `{other}` (bgr or rgb)"),
                ));
            }
        };
        Ok(Self {
            id: model_id.to_string(),
            model: Arc::new(model),
            labels,
            channels,
            mean: card.preprocess_f32x3("mean")?,
            std: card.preprocess_f32x3("std")?,
            width: card.preprocess_usize("width", 608),
            height: card.preprocess_usize("height", 800),
            params: GflParams {
                strides: STRIDES.to_vec(),
                ..GflParams::default()
            },
            device: device.clone(),
            weights: files.onnx_sha256,
        })
    }

    /// The network itself (benchmarks time it without pre- and post-processing).
    pub fn network(&self) -> &PicoDet {
        &self.model
    }

    /// Model input size (width, height).
    pub fn input_size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// One image's normalized model input (CHW, the card's size and channel order).
    pub fn preprocess(&self, img: &Bgr<'_>, out: &mut [f32]) {
        let (w, h) = (self.width, self.height);
        let resized = resize_linear(img, w, h);
        let view = Bgr {
            width: w,
            height: h,
            stride: w * 3,
            data: &resized,
        };
        normalize_channels_into(&view, self.channels, self.mean, self.std, false, out, w, h);
    }

    /// Regions of each image (page pixels), in reading order.
    pub fn detect(&self, images: &[Bgr<'_>]) -> candle_core::Result<Vec<Vec<Region>>> {
        let (w, h) = (self.width, self.height);
        let per = 3 * w * h;
        let mut input = vec![0f32; images.len() * per];
        for (img, out) in images.iter().zip(input.chunks_mut(per)) {
            self.preprocess(img, out);
        }
        let x = Tensor::from_vec(input, (images.len(), 3, h, w), &self.device)?;
        let levels = self.model.forward(&x)?;
        let host: Vec<(usize, usize, Vec<f32>, Vec<f32>)> = levels
            .iter()
            .map(|l| {
                Ok((
                    l.grid_h,
                    l.grid_w,
                    l.scores.flatten_all()?.to_vec1::<f32>()?,
                    l.regs.flatten_all()?.to_vec1::<f32>()?,
                ))
            })
            .collect::<candle_core::Result<_>>()?;
        let classes = self.model.classes();
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let outs: Vec<LevelOutput<'_>> = host
                    .iter()
                    .map(|(gh, gw, s, r)| {
                        let (ns, nr) = (s.len() / images.len(), r.len() / images.len());
                        LevelOutput {
                            grid_h: *gh,
                            grid_w: *gw,
                            scores: &s[i * ns..(i + 1) * ns],
                            regs: &r[i * nr..(i + 1) * nr],
                        }
                    })
                    .collect();
                let dets =
                    postprocess::decode(&outs, classes, w, h, img.width, img.height, &self.params)
                        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                let mut regions: Vec<Region> = dets
                    .iter()
                    .map(|d| {
                        let label = self
                            .labels
                            .get(d.class_id)
                            .map_or("unknown", String::as_str);
                        Region::detected(label, d.bbox, d.score)
                    })
                    .collect();
                routing::reading_order(&mut regions);
                Ok(regions)
            })
            .collect()
    }
}

impl Stage for LayoutStage {
    fn kind(&self) -> StageKind {
        StageKind::Layout
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Layout,
            id: self.id.clone(),
            is_test_stage: false,
            untrained: false,
            fallback: None,
            weights_sha256: Some(self.weights.clone()),
        }
    }

    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(self.clone()))
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        let mut images = Vec::with_capacity(batch.len());
        for page in batch.iter() {
            images.push(crate::models::page_bgr(page, StageKind::Layout)?);
        }
        let regions = self.detect(&images).map_err(crate::models::model_error)?;
        for (page, r) in batch.iter_mut().zip(regions) {
            page.output.regions = r;
        }
        Ok(())
    }
}
