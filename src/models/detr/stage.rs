//! The seed models as pipeline stages: DETR layout detection (cmarkea/detr-layout-detection,
//! or Table Transformer detection) on the layout stage, Table Transformer structure
//! recognition on the table stage.
//!
//! **Weights.** A seed card (`models/<id>.toml`) names the Hugging Face repository; the user
//! fills a folder with `hf download <repo> --local-dir models/<id>` (config.json +
//! model.safetensors), which is where pipebench looks by default. `--weights DIR` looks in
//! `DIR/<id>` instead, a stage's `weights = "path"` at that folder itself, and `random` (either
//! place) builds the card's full-size architecture with seeded random weights: the compute is
//! the real model's, the outputs are meaningless. Reports and the TUI mark such stages
//! untrained, and an untrained layout stage takes its regions from the embedded layout model
//! (named in the report as the stage's `fallback`) so OCR, tables and figures downstream still
//! do realistic work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::postprocess::{self, Detection};
use super::preprocess::{self, Normalize, Resize};
use super::{Detr, DetrConfig};
use crate::models::checkpoint;
use crate::models::layout::stage::LayoutStage;
use crate::models::ocr::preprocess::Bgr;
use crate::models::routing::{self, Route, pixel_rect, route};
use crate::models::{FailureKind, ModelInfo, Stage, StageError};
use crate::page::{PageWork, Region};
use crate::vocab::StageKind;

/// The seed of `--weights random`.
pub const RANDOM_SEED: u64 = 0x5eed;

/// A seed model's card: where its checkpoint comes from, its full-size architecture (what
/// `--weights random` builds; a real checkpoint's config.json takes precedence), its
/// preprocessing and how its classes map onto pipebench's regions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCard {
    pub id: String,
    /// `detr` or `table-transformer`.
    pub architecture: String,
    pub task: String,
    pub description: String,
    pub license: String,
    pub reference: String,
    /// The Hugging Face repository holding the checkpoint.
    pub hub_repo: String,
    /// The transformers class of the checkpoint (`DetrForSegmentation` checkpoints keep the
    /// detector under `detr.`).
    pub checkpoint_class: String,
    /// Score threshold for a detection (strictly above).
    pub threshold: f32,
    pub resize: Resize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The full-size architecture.
    pub config: DetrConfig,
    /// Model class name → pipebench region class (layout models).
    #[serde(default)]
    pub classes: BTreeMap<String, String>,
}

/// The architectures whose cards are [`SeedCard`]s (DETR's family).
pub const DETR_ARCHITECTURES: &[&str] = &["detr", "table-transformer"];

/// Every DETR-family seed card.
pub fn seed_cards() -> Result<Vec<SeedCard>, String> {
    crate::models::checkpoint::checkpoint_cards()?
        .into_iter()
        .filter(|h| DETR_ARCHITECTURES.contains(&h.architecture.as_str()))
        .map(|h| {
            let id = h.id.as_str();
            crate::models::registry::card_file(id)
                .ok_or_else(|| format!("model {id}: no card models/{id}.toml"))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(file, text)| {
            toml::from_str(text).map_err(|e| format!("{file}: invalid seed card: {e}"))
        })
        .collect()
}

/// The seed card with this id.
pub fn seed_card(id: &str) -> Option<SeedCard> {
    seed_cards().ok()?.into_iter().find(|c| c.id == id)
}

/// Where a seed model's weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsChoice {
    /// Seeded random weights of the card's full-size architecture.
    Random { seed: u64 },
    /// A checkpoint folder (config.json + *.safetensors).
    Dir(PathBuf),
}

/// Resolves the weights of seed model `id`: the command line's `--weights` (`random`, or a
/// root holding one folder per model id) wins over the stage's `weights` (`random`, or the
/// checkpoint folder itself); the default is `models/<id>`.
pub fn resolve_weights(id: &str, cli: Option<&str>, stage: Option<&str>) -> WeightsChoice {
    match (cli, stage) {
        (Some("random"), _) | (None, Some("random")) => WeightsChoice::Random { seed: RANDOM_SEED },
        (Some(root), _) => WeightsChoice::Dir(Path::new(root).join(id)),
        (None, Some(dir)) => WeightsChoice::Dir(PathBuf::from(dir)),
        (None, None) => WeightsChoice::Dir(Path::new("models").join(id)),
    }
}

/// A loaded seed model: the network, its config and where the weights came from.
pub struct SeedModel {
    pub card: SeedCard,
    pub detr: Detr,
    /// sha256 of the safetensors files (None for random weights).
    pub weights_sha256: Option<String>,
    pub untrained: bool,
}

impl SeedModel {
    /// Loads `card` from `weights` onto `device`. Errors say which folder was searched and
    /// how to fill it.
    /// With `masks`, a segmentation checkpoint's mask head is loaded and run too.
    pub fn load(
        card: &SeedCard,
        weights: &WeightsChoice,
        masks: bool,
        device: &Device,
    ) -> Result<Self, StageError> {
        let werr =
            |m: String| StageError::new(FailureKind::Weights, format!("model {}: {m}", card.id));
        if masks && card.checkpoint_class != "DetrForSegmentation" {
            return Err(StageError::new(
                FailureKind::Config,
                format!(
                    "model {}: masks need a DetrForSegmentation model (detr-layout); this is a {}",
                    card.id, card.checkpoint_class
                ),
            ));
        }
        match weights {
            WeightsChoice::Random { seed } => {
                let vb = checkpoint::random(*seed, device);
                let detr =
                    Detr::load(&card.config, &vb, false, masks).map_err(|e| werr(e.to_string()))?;
                Ok(Self {
                    card: card.clone(),
                    detr,
                    weights_sha256: None,
                    untrained: true,
                })
            }
            WeightsChoice::Dir(dir) => {
                let fix = checkpoint::download_fix(&card.hub_repo, dir);
                let v = checkpoint::read_config(dir, &fix).map_err(werr)?;
                let cfg = DetrConfig::from_hf(&v, None)
                    .map_err(|e| werr(format!("{}: {e}", dir.display())))?;
                let vb =
                    checkpoint::from_dir(dir, device).map_err(|e| werr(format!("{e}{fix}")))?;
                let segmentation = Detr::is_segmentation_checkpoint(&vb);
                let detr = Detr::load(&cfg, &vb, segmentation, masks).map_err(|e| {
                    werr(format!(
                        "{}: {e} (is this the right checkpoint for the model card's \
                         architecture? config.json and the weights must agree)",
                        dir.display()
                    ))
                })?;
                let mut card = card.clone();
                card.config = cfg;
                Ok(Self {
                    card,
                    detr,
                    weights_sha256: Some(hash_safetensors(dir).map_err(werr)?),
                    untrained: false,
                })
            }
        }
    }

    fn normalize(&self) -> Normalize {
        Normalize {
            mean: self.card.mean,
            std: self.card.std,
        }
    }

    /// Detections on each image (pixels of the image), batched with padding and pixel mask.
    pub fn detect(&self, images: &[Bgr<'_>]) -> candle_core::Result<Vec<Vec<Detection>>> {
        let prepared: Vec<_> = images
            .iter()
            .map(|img| preprocess::prepare(img, self.card.resize, self.normalize()))
            .collect();
        let batch = preprocess::batch(&prepared, self.detr.device())?;
        let out = self.detr.forward(&batch.pixels, &batch.sizes)?;
        let targets: Vec<(f32, f32)> = images
            .iter()
            .map(|i| (i.width as f32, i.height as f32))
            .collect();
        postprocess::detections(&out.logits, &out.boxes, &targets, self.card.threshold)
    }

    /// The model's label for a class id.
    pub fn label(&self, id: usize) -> &str {
        self.detr
            .config
            .labels
            .get(id)
            .map_or("unknown", String::as_str)
    }
}

/// sha256 over the folder's safetensors files, in name order.
pub fn hash_safetensors(dir: &Path) -> Result<String, String> {
    let files = checkpoint::checkpoint_files(dir)?;
    let hashes: Vec<String> = files
        .iter()
        .map(|f| crate::assets::sha256_file(f).map_err(|e| format!("{}: {e}", f.display())))
        .collect::<Result<_, _>>()?;
    Ok(if hashes.len() == 1 {
        hashes.into_iter().next().unwrap_or_default()
    } else {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for x in &hashes {
            h.update(x.as_bytes());
        }
        format!("{:x}", h.finalize())
    })
}

fn model_info(stage: StageKind, m: &SeedModel, fallback: Option<String>) -> ModelInfo {
    ModelInfo {
        stage,
        id: m.card.id.clone(),
        is_test_stage: false,
        weights_sha256: m.weights_sha256.clone(),
        untrained: m.untrained,
        fallback,
    }
}

/// Layout detection with a DETR (detr-layout, tatr-detection).
#[derive(Clone)]
pub struct DetrLayoutStage {
    /// Shared by the stage's replicas on other model workers.
    model: Arc<SeedModel>,
    /// Untrained weights: regions come from this (the embedded layout model).
    fallback: Option<LayoutStage>,
}

/// The embedded layout model an untrained seed layout stage takes its regions from.
pub const LAYOUT_FALLBACK: &str = "picodet-layout-cdla";

impl DetrLayoutStage {
    pub fn new(model: SeedModel, fallback: Option<LayoutStage>) -> Self {
        Self {
            model: Arc::new(model),
            fallback,
        }
    }

    pub fn model_ref(&self) -> &SeedModel {
        &self.model
    }
}

impl Stage for DetrLayoutStage {
    fn kind(&self) -> StageKind {
        StageKind::Layout
    }

    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(self.clone()))
    }

    fn model(&self) -> ModelInfo {
        model_info(
            StageKind::Layout,
            &self.model,
            self.fallback.as_ref().map(|_| LAYOUT_FALLBACK.to_string()),
        )
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        let mut images = Vec::with_capacity(batch.len());
        for page in batch.iter() {
            images.push(crate::models::page_bgr(page, StageKind::Layout)?);
        }
        let dets = self
            .model
            .detect(&images)
            .map_err(crate::models::model_error)?;
        let regions: Vec<Vec<Region>> = match &self.fallback {
            Some(f) => f.detect(&images).map_err(crate::models::model_error)?,
            None => dets
                .iter()
                .map(|d| {
                    let mut r: Vec<Region> = d
                        .iter()
                        .map(|x| {
                            let label = self.model.label(x.label);
                            let class = self
                                .model
                                .card
                                .classes
                                .get(label)
                                .cloned()
                                .unwrap_or_else(|| label.to_lowercase());
                            Region::detected(&class, x.bbox, x.score)
                        })
                        .collect();
                    routing::reading_order(&mut r);
                    r
                })
                .collect(),
        };
        for (page, r) in batch.iter_mut().zip(regions) {
            page.output.regions = r;
        }
        Ok(())
    }
}

/// Table structure recognition with Table Transformer: every table region's crop, batched
/// (mixed sizes padded, with a pixel mask), rows/columns/headers/spanning cells → a grid →
/// HTML with the OCR lines' text in their cells.
#[derive(Clone)]
pub struct TatrTableStage {
    /// Shared by the stage's replicas on other model workers.
    model: Arc<SeedModel>,
    /// Crops per forward pass.
    batch: usize,
}

impl TatrTableStage {
    pub fn new(model: SeedModel, batch: usize) -> Self {
        Self {
            model: Arc::new(model),
            batch: batch.max(1),
        }
    }
}

impl Stage for TatrTableStage {
    fn kind(&self) -> StageKind {
        StageKind::Table
    }

    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(self.clone()))
    }

    fn model(&self) -> ModelInfo {
        model_info(StageKind::Table, &self.model, None)
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        let mut crops = Vec::new();
        for (pi, page) in batch.iter().enumerate() {
            let img = crate::models::page_bgr(page, StageKind::Table)?;
            for (ri, r) in page.output.regions.iter().enumerate() {
                if route(&r.class) == Route::Table
                    && let Some(rect) = pixel_rect(r.bbox, 0.0, img.width, img.height)
                {
                    crops.push((pi, ri, rect));
                }
            }
        }
        for chunk in crops.chunks(self.batch) {
            let images: Vec<Bgr<'_>> = chunk
                .iter()
                .map(|(pi, _, rect)| {
                    crate::models::page_bgr(&batch[*pi], StageKind::Table).map(|i| i.crop(*rect))
                })
                .collect::<Result<_, _>>()?;
            let dets = self
                .model
                .detect(&images)
                .map_err(crate::models::model_error)?;
            let htmls: Vec<String> = chunk
                .iter()
                .zip(&dets)
                .map(|((pi, ri, rect), d)| {
                    let page = &batch[*pi];
                    let (ox, oy) = (rect[0] as f32, rect[1] as f32);
                    let grid = postprocess::table_grid(d);
                    // Each of the region's OCR lines goes to the cell it overlaps most.
                    let mut cells: BTreeMap<(usize, usize), Vec<&str>> = BTreeMap::new();
                    for l in page.output.lines.iter().filter(|l| l.region == Some(*ri)) {
                        let b = [
                            l.bbox[0] - ox,
                            l.bbox[1] - oy,
                            l.bbox[2] - ox,
                            l.bbox[3] - oy,
                        ];
                        let mut best = (0.0f32, None);
                        for r in 0..grid.rows.len() {
                            for c in 0..grid.columns.len() {
                                let cb = grid.cell(r, c);
                                let a = (b[2].min(cb[2]) - b[0].max(cb[0])).max(0.0)
                                    * (b[3].min(cb[3]) - b[1].max(cb[1])).max(0.0);
                                if a > best.0 {
                                    best = (a, Some((r, c)));
                                }
                            }
                        }
                        if let (_, Some(rc)) = best {
                            cells.entry(rc).or_default().push(&l.text);
                        }
                    }
                    grid.html(|r, c| cells.get(&(r, c)).map_or(String::new(), |t| t.join(" ")))
                })
                .collect();
            for ((pi, ri, _), html) in chunk.iter().zip(htmls) {
                batch[*pi].output.regions[*ri].html = Some(html);
            }
        }
        Ok(())
    }
}

/// The seed models' options (`weights`), and detr-layout's (`masks` too).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointOptions {
    /// `random` for seeded random weights of the full-size architecture (real compute,
    /// meaningless outputs), or the checkpoint folder (`hf download <repo> --local-dir
    /// <folder>`) [default: models/<model id>]. The command line's `--weights` takes precedence.
    pub weights: Option<String>,
}

fn check_weights(weights: &Option<String>) -> Result<(), (&'static str, String)> {
    if weights.as_deref().is_some_and(|w| w.trim().is_empty()) {
        return Err(("weights", "must be `random` or a folder".into()));
    }
    Ok(())
}

impl crate::models::registry::ModelOptions for CheckpointOptions {
    fn check(&self) -> Result<(), (&'static str, String)> {
        check_weights(&self.weights)
    }
}

/// detr-layout's options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetrLayoutOptions {
    /// As [`CheckpointOptions::weights`].
    pub weights: Option<String>,
    /// Also run the checkpoint's segmentation mask head (DetrForSegmentation; about 4.5× the
    /// detector's compute). The masks are discarded: this measures what a pipeline that keeps
    /// them pays.
    pub masks: bool,
}

impl crate::models::registry::ModelOptions for DetrLayoutOptions {
    fn check(&self) -> Result<(), (&'static str, String)> {
        check_weights(&self.weights)
    }
}

/// A seed model for a stage, from the weights the context and the stage's options choose.
fn load_for(
    req: &crate::models::registry::BuildRequest,
    weights: Option<&str>,
    masks: bool,
) -> Result<SeedModel, StageError> {
    let card = seed_card(req.id).ok_or_else(|| {
        StageError::new(FailureKind::Config, format!("no seed card `{}`", req.id))
    })?;
    let choice = resolve_weights(req.id, req.ctx.weights.as_deref(), weights);
    SeedModel::load(&card, &choice, masks, &req.ctx.device)
}

/// The registry's builder of detr-layout.
pub fn build_detr_layout(
    req: &crate::models::registry::BuildRequest,
) -> Result<Box<dyn Stage>, StageError> {
    let o: DetrLayoutOptions = req.options()?;
    layout_stage(req, o.weights.as_deref(), o.masks)
}

/// The registry's builder of tatr-detection.
pub fn build_table_detection(
    req: &crate::models::registry::BuildRequest,
) -> Result<Box<dyn Stage>, StageError> {
    let o: CheckpointOptions = req.options()?;
    layout_stage(req, o.weights.as_deref(), false)
}

fn layout_stage(
    req: &crate::models::registry::BuildRequest,
    weights: Option<&str>,
    masks: bool,
) -> Result<Box<dyn Stage>, StageError> {
    let model = load_for(req, weights, masks)?;
    // Untrained regions are noise: downstream stages get the embedded model's.
    let fallback = if model.untrained {
        let ctx = req.ctx;
        Some(LayoutStage::load(
            LAYOUT_FALLBACK,
            &ctx.cache_root,
            ctx.offline,
            &ctx.device,
        )?)
    } else {
        None
    };
    Ok(Box::new(DetrLayoutStage::new(model, fallback)))
}

/// The registry's builder of the Table Transformer structure models.
pub fn build_table(
    req: &crate::models::registry::BuildRequest,
) -> Result<Box<dyn Stage>, StageError> {
    let o: CheckpointOptions = req.options()?;
    let model = load_for(req, o.weights.as_deref(), false)?;
    // Table crops per forward pass: the stage's batch size (crops reach 1000 px, so SLANet's
    // floor of eight would hold gigabytes of ResNet activations).
    Ok(Box::new(TatrTableStage::new(model, req.batch_size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_cards_parse_and_name_their_repositories() {
        let cards = seed_cards().expect("cards");
        let ids: Vec<&str> = cards.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "detr-layout",
                "tatr-detection",
                "tatr-structure",
                "tatr-structure-v1.1"
            ]
        );
        let detr = &cards[0];
        assert_eq!(detr.hub_repo, "cmarkea/detr-layout-detection");
        assert_eq!(detr.config.num_queries, 100);
        assert_eq!(detr.config.labels.len(), 11);
        // Every DocLayNet class maps to a pipebench region class.
        for l in &detr.config.labels {
            assert!(detr.classes.contains_key(l), "{l} unmapped");
        }
        assert_eq!(cards[2].config.num_queries, 125);
        assert_eq!(cards[1].config.num_queries, 15);
    }

    #[test]
    fn weights_resolution_order() {
        assert_eq!(
            resolve_weights("detr-layout", None, None),
            WeightsChoice::Dir(PathBuf::from("models/detr-layout"))
        );
        assert_eq!(
            resolve_weights("detr-layout", Some("/w"), Some("random")),
            WeightsChoice::Dir(PathBuf::from("/w/detr-layout"))
        );
        assert_eq!(
            resolve_weights("x", None, Some("random")),
            WeightsChoice::Random { seed: RANDOM_SEED }
        );
        assert_eq!(
            resolve_weights("x", Some("random"), Some("ckpt")),
            WeightsChoice::Random { seed: RANDOM_SEED }
        );
        assert_eq!(
            resolve_weights("x", None, Some("ckpt")),
            WeightsChoice::Dir(PathBuf::from("ckpt"))
        );
    }

    #[test]
    fn a_missing_checkpoint_says_how_to_get_it() {
        let card = seed_card("detr-layout").expect("card");
        let dir = PathBuf::from("/nonexistent/detr-layout");
        let e = SeedModel::load(&card, &WeightsChoice::Dir(dir), false, &Device::Cpu)
            .err()
            .expect("missing");
        assert_eq!(e.kind, FailureKind::Weights);
        assert!(
            e.message
                .contains("hf download cmarkea/detr-layout-detection"),
            "{}",
            e.message
        );
        assert!(e.message.contains("--weights random"), "{}", e.message);
    }
}
