//! The OCR stage: PP-OCR detection on each page, DB post-processing, perspective crops, then
//! recognition batched by width across every line of every page in the call, CTC decoding.
//!
//! Scope (`ocr.scope`): `page` detects once on the whole page and assigns each line to the
//! layout region holding most of it (`routing::assign_lines`); `region` detects on the crop of
//! each text-like or table region. Either way every line is kept in the page output (`lines`:
//! axis-aligned bounds of the detected quadrilateral, recognition confidence, text, region),
//! regions get their lines' text, lines outside every region become `text_line` regions, and
//! the regions are put in reading order. Without a layout model each line is its own region.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};

use super::ctc::{Dictionary, greedy_decode_logits};
use super::db_post::{self, DbParams, Image};
use super::preprocess::{Bgr, det_size, normalize_into, rec_batch_width, rec_row, resize_linear};
use crate::models::db_det::DbDetector;
use crate::models::routing;
use crate::models::svtr_rec::SvtrRecognizer;
use crate::models::{FailureKind, ModelInfo, Stage, StageError};
use crate::page::{PageWork, TextLine};
use crate::vocab::StageKind;

/// PaddleOCR's detection input rule, used when a card does not say: shorter side at least this
/// (it only ever upscales tiny pages) …
const DET_LIMIT_SIDE: usize = 64;
/// … and the longer side capped here (PaddleOCR 3's `max_side_limit`).
const DET_MAX_SIDE: usize = 4000;
/// Recognition input height and the minimum batch width (PaddleOCR's `rec_image_shape`
/// 3×48×320).
const REC_HEIGHT: usize = 48;
const REC_MIN_WIDTH: usize = 320;

/// Which PP-OCR release: the det and rec cards and their normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcrRelease {
    V5,
    V4,
}

/// Where OCR text detection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OcrScope {
    /// Once per page; lines are assigned to layout regions by overlap.
    #[default]
    Page,
    /// Once per text-like or table region, on its crop.
    Region,
}

impl OcrScope {
    pub fn name(self) -> &'static str {
        match self {
            OcrScope::Page => "page",
            OcrScope::Region => "region",
        }
    }
}

/// The OCR models' options (`[stages.ocr]` keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrOptions {
    /// Text lines per recognition call (lines of similar width are batched together, across
    /// all pages of the stage call).
    pub rec_batch_size: usize,
    /// `page` detects text once per page and assigns the lines to layout regions by overlap;
    /// `region` runs detection on each text or table region's crop (one detection call per
    /// region, the prototype's way).
    pub scope: OcrScope,
}

/// Text lines per recognition call by default: PaddleOCR's `rec_batch_num`.
pub const DEFAULT_REC_BATCH: usize = 6;

impl Default for OcrOptions {
    fn default() -> Self {
        Self {
            rec_batch_size: DEFAULT_REC_BATCH,
            scope: OcrScope::Page,
        }
    }
}

impl crate::models::registry::ModelOptions for OcrOptions {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.rec_batch_size == 0 {
            return Err(("rec_batch_size", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The registry's builder of the PP-OCR models.
pub fn build(req: &crate::models::registry::BuildRequest) -> Result<Box<dyn Stage>, StageError> {
    let release = OcrRelease::from_model_id(req.id).ok_or_else(|| {
        StageError::new(
            FailureKind::Config,
            format!("`{}` is not a PP-OCR release", req.id),
        )
    })?;
    let o: OcrOptions = req.options()?;
    let ctx = req.ctx;
    Ok(Box::new(OcrStage::load(
        release,
        req.id,
        o.rec_batch_size,
        o.scope,
        &ctx.cache_root,
        ctx.offline,
        &ctx.device,
    )?))
}

impl OcrRelease {
    pub fn from_model_id(id: &str) -> Option<Self> {
        match id {
            "ppocrv5" => Some(Self::V5),
            "ppocrv4" => Some(Self::V4),
            _ => None,
        }
    }

    fn cards(self) -> (&'static str, &'static str) {
        match self {
            Self::V5 => ("ppocrv5-det", "ppocrv5-rec"),
            Self::V4 => ("ppocrv4-det", "ppocrv4-rec"),
        }
    }
}

/// Where OCR time goes, and the model input shapes (for replaying the same workload on
/// another runtime). Filled by the stage's calls only once [`OcrStage::set_profiling`] turned
/// it on (bench-ocr): a pipeline run reads no clock inside the stage, the executor times it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OcrProfile {
    pub det_model_ns: u64,
    pub det_total_ns: u64,
    pub rec_model_ns: u64,
    pub rec_total_ns: u64,
    /// Detection inputs, [H, W].
    pub det_shapes: Vec<[usize; 2]>,
    /// Recognition batches, [lines, width].
    pub rec_shapes: Vec<[usize; 2]>,
    pub lines: usize,
}

pub struct OcrStage {
    id: String,
    /// The networks and the dictionary are shared by the stage's replicas on other model
    /// workers.
    det: std::sync::Arc<DbDetector>,
    rec: std::sync::Arc<SvtrRecognizer>,
    dict: std::sync::Arc<Dictionary>,
    det_norm: ([f32; 3], [f32; 3]),
    /// Detection sizing from the card: (limit_side_len, max_side_limit).
    det_limits: (usize, usize),
    rec_norm: ([f32; 3], [f32; 3]),
    db: DbParams,
    rec_batch: usize,
    scope: OcrScope,
    device: Device,
    weights: String,
    /// Per-phase profile, when asked for (see [`OcrStage::set_profiling`]).
    profile: Option<OcrProfile>,
}

/// A clock read only when profiling: `Some(now)` if `prof` is given.
fn start(prof: &Option<&mut OcrProfile>) -> Option<Instant> {
    prof.is_some().then(Instant::now)
}

/// Nanoseconds since `t` (0 when not profiling).
fn ns(t: Option<Instant>) -> u64 {
    t.map_or(0, |t| t.elapsed().as_nanos() as u64)
}

impl OcrStage {
    /// Loads det and rec weights from the cache (fetching them unless `offline`).
    pub fn load(
        release: OcrRelease,
        model_id: &str,
        rec_batch: usize,
        scope: OcrScope,
        cache_root: &Path,
        offline: bool,
        device: &Device,
    ) -> Result<Self, StageError> {
        let (det_id, rec_id) = release.cards();
        let load = |id: &str| crate::models::weights::load_card(id, cache_root, offline);
        let (det_card, det_files) = load(det_id)?;
        let (rec_card, rec_files) = load(rec_id)?;
        let err = |e: crate::models::deploy_graph::GraphError| {
            StageError::new(FailureKind::Weights, e.to_string())
        };
        let det = DbDetector::from_onnx_file(det_id, &det_files.onnx, device).map_err(err)?;
        let rec = SvtrRecognizer::from_onnx_file(rec_id, &rec_files.onnx, device).map_err(err)?;
        let dict = match rec_files.files.get("dictionary") {
            Some(p) => {
                Dictionary::from_aligned_lines(&std::fs::read_to_string(p).map_err(|e| {
                    StageError::new(FailureKind::Weights, format!("{}: {e}", p.display()))
                })?)
            }
            None => Dictionary::from_character_list(
                rec_files.metadata.get("character").ok_or_else(|| {
                    StageError::new(
                        FailureKind::Weights,
                        format!("model {rec_id}: no dictionary file and no `character` metadata"),
                    )
                })?,
            ),
        };
        Ok(Self {
            id: model_id.to_string(),
            det: std::sync::Arc::new(det),
            rec: std::sync::Arc::new(rec),
            dict: std::sync::Arc::new(dict),
            det_norm: (
                det_card.preprocess_f32x3("mean")?,
                det_card.preprocess_f32x3("std")?,
            ),
            det_limits: (
                det_card.preprocess_usize("limit_side_len", DET_LIMIT_SIDE),
                det_card.preprocess_usize("max_side_limit", DET_MAX_SIDE),
            ),
            rec_norm: (
                rec_card.preprocess_f32x3("mean")?,
                rec_card.preprocess_f32x3("std")?,
            ),
            db: DbParams::default(),
            rec_batch: rec_batch.max(1),
            scope,
            device: device.clone(),
            weights: format!(
                "{det_id}={};{rec_id}={}",
                det_files.onnx_sha256, rec_files.onnx_sha256
            ),
            profile: None,
        })
    }

    /// Turns the per-phase profile on or off (off after `load`): detection and recognition
    /// model time, the same with pre/post-processing, and the model input shapes, summed over
    /// calls until [`OcrStage::take_profile`].
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(OcrProfile::default);
    }

    /// The profile so far (None when profiling is off), starting a fresh one.
    pub fn take_profile(&mut self) -> Option<OcrProfile> {
        self.profile.as_mut().map(std::mem::take)
    }

    /// Detects a page's lines (reading order) and cuts each one out, upright.
    #[allow(clippy::type_complexity)]
    fn detect_and_crop(
        &self,
        img: &Bgr<'_>,
        prof: Option<&mut OcrProfile>,
    ) -> candle_core::Result<(Vec<db_post::TextBox>, Vec<(usize, usize, Vec<u8>)>)> {
        let boxes = self.detect(img, prof)?;
        let im = Image {
            width: img.width,
            height: img.height,
            stride: img.stride,
            channels: 3,
            data: img.data,
        };
        let crops = boxes
            .iter()
            .map(|b| db_post::crop_text_line(&im, &b.points))
            .collect();
        Ok((boxes, crops))
    }

    fn detect(
        &self,
        img: &Bgr<'_>,
        mut prof: Option<&mut OcrProfile>,
    ) -> candle_core::Result<Vec<db_post::TextBox>> {
        let t0 = start(&prof);
        let (h, w) = det_size(img.height, img.width, self.det_limits.0, self.det_limits.1);
        let resized;
        let src = if (h, w) == (img.height, img.width) {
            *img
        } else {
            resized = resize_linear(img, w, h);
            Bgr {
                width: w,
                height: h,
                stride: w * 3,
                data: &resized,
            }
        };
        let mut input = vec![0f32; 3 * h * w];
        normalize_into(
            &src,
            self.det_norm.0,
            self.det_norm.1,
            false,
            &mut input,
            w,
            h,
        );
        let x = Tensor::from_vec(input, (1, 3, h, w), &self.device)?;
        let tm = start(&prof);
        let prob = self.det.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        if let Some(p) = prof.as_deref_mut() {
            p.det_model_ns += ns(tm);
            p.det_shapes.push([h, w]);
        }
        let mut boxes = db_post::boxes_from_prob_map(&prob, w, h, img.width, img.height, &self.db);
        db_post::sort_reading_order(&mut boxes);
        if let Some(p) = prof {
            p.det_total_ns += ns(t0);
        }
        Ok(boxes)
    }

    /// Recognizes crops (width, height, BGR pixels) in batches of similar aspect ratio.
    fn recognize(
        &self,
        crops: &[(usize, usize, Vec<u8>)],
        mut prof: Option<&mut OcrProfile>,
    ) -> candle_core::Result<Vec<(String, f32)>> {
        let t0 = start(&prof);
        let mut order: Vec<usize> = (0..crops.len()).collect();
        let ratio = |i: usize| crops[i].0 as f64 / crops[i].1 as f64;
        order.sort_by(|a, b| ratio(*a).total_cmp(&ratio(*b)));
        let mut out = vec![(String::new(), 0.0f32); crops.len()];
        for chunk in order.chunks(self.rec_batch) {
            let max_ratio = chunk.iter().map(|&i| ratio(i)).fold(0.0, f64::max);
            let bw = rec_batch_width(REC_HEIGHT, REC_MIN_WIDTH, max_ratio);
            let per = 3 * REC_HEIGHT * bw;
            let mut input = vec![0f32; chunk.len() * per];
            for (row, &i) in chunk.iter().enumerate() {
                let (w, h, data) = &crops[i];
                let crop = Bgr {
                    width: *w,
                    height: *h,
                    stride: w * 3,
                    data,
                };
                rec_row(
                    &crop,
                    REC_HEIGHT,
                    bw,
                    self.rec_norm.0,
                    self.rec_norm.1,
                    &mut input[row * per..(row + 1) * per],
                );
            }
            let x = Tensor::from_vec(input, (chunk.len(), 3, REC_HEIGHT, bw), &self.device)?;
            let tm = start(&prof);
            let logits = self.rec.forward_logits(&x)?;
            let classes = logits.dim(2)?;
            let all = logits.flatten_all()?.to_vec1::<f32>()?;
            if let Some(p) = prof.as_deref_mut() {
                p.rec_model_ns += ns(tm);
                p.rec_shapes.push([chunk.len(), bw]);
            }
            let per_row = all.len() / chunk.len().max(1);
            for (row, &i) in chunk.iter().enumerate() {
                let d = greedy_decode_logits(
                    &all[row * per_row..(row + 1) * per_row],
                    classes,
                    &self.dict,
                );
                out[i] = (d.text, d.confidence);
            }
        }
        if let Some(p) = prof {
            p.lines += crops.len();
            p.rec_total_ns += ns(t0);
        }
        Ok(out)
    }

    /// The stage call, adding to `prof` when profiling.
    fn run(
        &self,
        batch: &mut [PageWork],
        mut prof: Option<&mut OcrProfile>,
    ) -> Result<(), StageError> {
        let model_err = crate::models::model_error;
        // Detection and cropping per page (or per region), then recognition per page. Not
        // across pages: SVTR attends over a batch's padded width, so a line's logits depend on
        // which lines share its batch; grouping each page's lines exactly as a one-page call
        // does keeps every strategy's outputs equal to sequential's.
        let mut crops = Vec::new();
        let mut page_starts = Vec::with_capacity(batch.len() + 1);
        // (page, region the detection ran for, line box in page pixels)
        let mut owners: Vec<(usize, Option<usize>, [f32; 4])> = Vec::new();
        for (pi, page) in batch.iter().enumerate() {
            page_starts.push(crops.len());
            let img = crate::models::page_bgr(page, StageKind::Ocr)?;
            let (w, h) = (img.width, img.height);
            let whole = [0, 0, w, h];
            let targets: Vec<(Option<usize>, [usize; 4])> = match self.scope {
                OcrScope::Region if !page.output.regions.is_empty() => page
                    .output
                    .regions
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| routing::needs_ocr(&r.class))
                    .filter_map(|(i, r)| {
                        routing::pixel_rect(r.bbox, REGION_PAD_PX, w, h).map(|b| (Some(i), b))
                    })
                    .collect(),
                _ => vec![(None, whole)],
            };
            for (owner, rect) in targets {
                let [x0, y0, ..] = rect;
                let view = img.crop(rect);
                let (boxes, page_crops) = self
                    .detect_and_crop(&view, prof.as_deref_mut())
                    .map_err(model_err)?;
                crops.extend(page_crops);
                owners.extend(boxes.into_iter().map(|b| {
                    let xs = b.points.map(|p| p[0] + x0 as f32);
                    let ys = b.points.map(|p| p[1] + y0 as f32);
                    let min = |v: [f32; 4]| v.iter().copied().fold(f32::MAX, f32::min);
                    let max = |v: [f32; 4]| v.iter().copied().fold(f32::MIN, f32::max);
                    (pi, owner, [min(xs), min(ys), max(xs), max(ys)])
                }));
            }
        }
        page_starts.push(crops.len());
        let mut texts = Vec::with_capacity(crops.len());
        for w in page_starts.windows(2) {
            texts.extend(
                self.recognize(&crops[w[0]..w[1]], prof.as_deref_mut())
                    .map_err(model_err)?,
            );
        }
        let mut lines: Vec<Vec<TextLine>> = vec![Vec::new(); batch.len()];
        for ((pi, owner, bbox), (text, confidence)) in owners.into_iter().zip(texts) {
            lines[pi].push(TextLine {
                bbox,
                text,
                confidence,
                region: owner,
            });
        }
        for (page, mut lines) in batch.iter_mut().zip(lines) {
            let regions = &mut page.output.regions;
            if self.scope == OcrScope::Page {
                routing::assign_lines(regions, &mut lines);
            }
            routing::attach_text(regions, &mut lines);
            let order = routing::reading_order(regions);
            routing::remap_lines(&order, &mut lines);
            page.output.lines = lines;
        }
        Ok(())
    }
}

impl Stage for OcrStage {
    fn kind(&self) -> StageKind {
        StageKind::Ocr
    }

    /// A replica profiles nothing until asked (profiles are per worker).
    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(Self {
            id: self.id.clone(),
            det: self.det.clone(),
            rec: self.rec.clone(),
            dict: self.dict.clone(),
            det_norm: self.det_norm,
            det_limits: self.det_limits,
            rec_norm: self.rec_norm,
            db: self.db,
            rec_batch: self.rec_batch,
            scope: self.scope,
            device: self.device.clone(),
            weights: self.weights.clone(),
            profile: None,
        }))
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Ocr,
            id: self.id.clone(),
            is_test_stage: false,
            untrained: false,
            fallback: None,
            weights_sha256: Some(self.weights.clone()),
        }
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        let mut prof = self.profile.take();
        let result = self.run(batch, prof.as_mut());
        self.profile = prof;
        result
    }
}

/// Margin added around a layout region before detecting text in its crop: layout boxes hug
/// the ink, and DB detection needs a little background around a line to find its edges.
const REGION_PAD_PX: f32 = 6.0;
