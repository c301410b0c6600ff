//! DePlot as the figure stage (`model = "deplot"`, the seed profile's figure model).
//!
//! **Work per stage call**: each figure region of the call's pages (layout class `figure`) is
//! cropped, drawn under DePlot's question and cut into patches ([`super::processor`]); the
//! encoder runs one figure at a time (`vision` in the generation figures: its time and the
//! figures encoded); then the shared generation loop (`models::generate`) decodes the tables in
//! the stage's batching mode (`batching`, `decode_batch`; `auto` takes the strategy's, as GOT's
//! does). Continuous batching refills a finished table's place from the call's other figures;
//! unlike GOT's stage, DePlot's does not take pages from the stage's queue while it runs
//! (figures are few per page).
//!
//! **Output**: the decoded text (DePlot's linearized table: `TITLE | … <0x0A> a | b <0x0A> …`)
//! becomes the region's `text`, and [`parse_table`] turns it into the region's `data` (title,
//! header, rows), which the outputs write as JSON and as a Markdown table.
//!
//! **Untrained weights** (`--weights random`): the full-size model computes as the real one
//! does, but its decoder never writes its end token. Each figure's length then comes from an
//! oracle, stated in the report (`ModelInfo::fallback`) and in the card (`models/deplot.toml`):
//! the figure's text layer laid out as a table ([`oracle_table`]) and counted in tokens, or
//! `tokens_without_text` for a figure without text (a raster chart). The text written is the
//! oracle's table, so the outputs stay meaningful and equal across strategies.

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{Pix2Struct, Pix2StructConfig, Sequences, processor};
use crate::corpus::render::TextChar;
use crate::models::checkpoint;
use crate::models::detr::stage::{WeightsChoice, resolve_weights};
use crate::models::generate::{self, Batching, GenerationStats, Request};
use crate::models::got_ocr2::stage::{TextLayers, token_estimate};
use crate::models::routing::{self, Route};
use crate::models::{FailureKind, ModelInfo, Stage, StageError};
use crate::page::{DataTable, PageWork};
use crate::vocab::StageKind;

/// DePlot's options (`[stages.figure]` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeplotOptions {
    /// `random`, or the checkpoint folder (`hf download google/deplot --local-dir <folder>`)
    /// [default: models/deplot]; `--weights` takes precedence.
    pub weights: Option<String>,
    /// Patches per figure, at most [default: the checkpoint's `preprocessor_config.json`, else
    /// 2048, the processor's default].
    pub max_patches: Option<usize>,
    /// At most this many tokens per table.
    pub max_new_tokens: usize,
    /// Tables decoding together, at most (`static` and `continuous`).
    pub decode_batch: usize,
    /// `single`, `static`, `continuous`, or `auto` (from the strategy: see `plan.rs`).
    pub batching: Batching,
    /// Draw DePlot's question above each chart, as the checkpoint was trained.
    pub header: bool,
}

/// Tokens per table by default (DePlot's examples generate up to 512).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;
/// Patches per figure without a preprocessor config (transformers' default).
pub const DEFAULT_MAX_PATCHES: usize = 2048;

impl Default for DeplotOptions {
    fn default() -> Self {
        Self {
            weights: None,
            max_patches: None,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            decode_batch: 8,
            batching: Batching::Auto,
            header: true,
        }
    }
}

impl crate::models::registry::ModelOptions for DeplotOptions {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_new_tokens == 0 {
            return Err(("max_new_tokens", "must be at least 1".into()));
        }
        if self.decode_batch == 0 {
            return Err(("decode_batch", "must be at least 1".into()));
        }
        if self.max_patches.is_some_and(|p| !(1..=16384).contains(&p)) {
            return Err(("max_patches", "must be 1 to 16384".into()));
        }
        if self.weights.as_deref().is_some_and(|w| w.trim().is_empty()) {
            return Err(("weights", "must be `random` or a folder".into()));
        }
        Ok(())
    }
}

/// DePlot's card (`models/deplot.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeplotCard {
    pub id: String,
    pub architecture: String,
    pub task: String,
    pub description: String,
    pub license: String,
    pub reference: String,
    pub hub_repo: String,
    pub checkpoint_class: String,
    pub oracle: OracleCard,
}

/// How untrained runs get their lengths (see the card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OracleCard {
    pub letters_per_token: f64,
    pub tokens_without_text: usize,
}

/// The card.
pub fn card() -> Result<DeplotCard, String> {
    let (file, text) = crate::models::registry::card_file("deplot")
        .ok_or("model deplot: no card models/deplot.toml")?;
    toml::from_str(text).map_err(|e| format!("{file}: invalid card: {e}"))
}

/// DePlot's linearized table → title, header, rows. Lines are separated by `<0x0A>` (the
/// newline byte token as the tokenizer may leave it) or a newline; cells by `|`. A first line
/// `TITLE | …` is the title; the next line is the header. None for text without a cell.
pub fn parse_table(text: &str) -> Option<DataTable> {
    let text = text.replace("<0x0A>", "\n");
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .peekable();
    let mut t = DataTable::default();
    if let Some(first) = lines.peek()
        && first
            .first()
            .is_some_and(|c| c.eq_ignore_ascii_case("title"))
    {
        let title = lines.next().unwrap_or_default()[1..].join(" | ");
        t.title = (!title.trim().is_empty()).then(|| title.trim().to_string());
    }
    t.header = lines.next().unwrap_or_default();
    t.rows = lines.collect();
    (t.title.is_some() || !t.header.is_empty()).then_some(t)
}

/// The oracle's table of a figure: its text-layer characters (centre inside `rect`) grouped
/// into lines (a character joins the line whose vertical centre is within half its height)
/// and cells (a horizontal gap wider than half the character's height starts a cell), written
/// as DePlot writes tables. Empty when the figure has no text.
pub fn oracle_table(chars: &[TextChar], rect: [usize; 4]) -> String {
    let inside: Vec<&TextChar> = chars
        .iter()
        .filter(|c| {
            let (cx, cy) = ((c.bbox[0] + c.bbox[2]) / 2.0, (c.bbox[1] + c.bbox[3]) / 2.0);
            cx >= rect[0] as f32
                && cx < rect[2] as f32
                && cy >= rect[1] as f32
                && cy < rect[3] as f32
        })
        .collect();
    // Lines: (centre y, height, chars).
    let mut lines: Vec<(f32, f32, Vec<&TextChar>)> = Vec::new();
    for c in inside {
        let cy = (c.bbox[1] + c.bbox[3]) / 2.0;
        let h = (c.bbox[3] - c.bbox[1]).max(1.0);
        match lines
            .iter_mut()
            .find(|(y, lh, _)| (cy - *y).abs() <= 0.5 * lh.max(h))
        {
            Some(l) => l.2.push(c),
            None => lines.push((cy, h, vec![c])),
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    lines
        .into_iter()
        .map(|(_, h, mut cs)| {
            cs.sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
            let mut cells: Vec<String> = vec![String::new()];
            let mut right = f32::NEG_INFINITY;
            for c in cs {
                if c.bbox[0] - right > 0.5 * h && !cells.last().is_some_and(String::is_empty) {
                    cells.push(String::new());
                }
                cells.last_mut().expect("a cell").push(c.ch);
                right = c.bbox[2];
            }
            cells.join(" | ")
        })
        .collect::<Vec<_>>()
        .join(" <0x0A> ")
}

/// The loaded model and what every replica shares.
struct Shared {
    card: DeplotCard,
    model: Pix2Struct,
    tokenizer: Option<tokenizers::Tokenizer>,
    header: Option<RgbImage>,
    max_patches: usize,
    weights_sha256: Option<String>,
    untrained: bool,
    /// Untrained: the text layers of the run's pages (read when the stage was built).
    text_layers: TextLayers,
}

/// The figure stage.
pub struct DeplotStage {
    shared: Arc<Shared>,
    opts: DeplotOptions,
    stats: Option<GenerationStats>,
}

/// A figure: (page in the call, region, rect in page pixels).
type Item = (usize, usize, [usize; 4]);

impl DeplotStage {
    /// Loads the model from `weights` (DePlot's full size for random weights).
    pub fn load(
        opts: DeplotOptions,
        weights: &WeightsChoice,
        device: &Device,
    ) -> Result<Self, StageError> {
        let card = card().map_err(|m| StageError::new(FailureKind::Config, m))?;
        let werr = |m: String| StageError::new(FailureKind::Weights, format!("model deplot: {m}"));
        let header = if opts.header {
            Some(processor::header_image().map_err(werr)?)
        } else {
            None
        };
        let (model, tokenizer, max_patches, sha, untrained) = match weights {
            WeightsChoice::Random { seed } => {
                let vb = checkpoint::random(*seed, device);
                let model = Pix2Struct::load(&Pix2StructConfig::default(), &vb)
                    .map_err(|e| werr(e.to_string()))?;
                (model, None, DEFAULT_MAX_PATCHES, None, true)
            }
            WeightsChoice::Dir(dir) => {
                let fix = checkpoint::download_fix(&card.hub_repo, dir);
                let v = checkpoint::read_config(dir, &fix).map_err(werr)?;
                let cfg = Pix2StructConfig::from_hf(&v)
                    .map_err(|e| werr(format!("{}: {e}", dir.join("config.json").display())))?;
                let tok_path = dir.join("tokenizer.json");
                if !tok_path.exists() {
                    return Err(werr(format!(
                        "{}: missing: a trained DePlot needs its tokenizer to write tables{fix}",
                        tok_path.display()
                    )));
                }
                let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| {
                    werr(format!(
                        "{}: {e} (the checkpoint's tokenizer.json must be a `tokenizers` file)",
                        tok_path.display()
                    ))
                })?;
                let pre = dir.join("preprocessor_config.json");
                let max_patches = std::fs::read_to_string(&pre)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| v.get("max_patches").and_then(|m| m.as_u64()))
                    .map_or(DEFAULT_MAX_PATCHES, |m| m as usize);
                let vb =
                    checkpoint::from_dir(dir, device).map_err(|e| werr(format!("{e}{fix}")))?;
                let model = Pix2Struct::load(&cfg, &vb).map_err(|e| {
                    werr(format!(
                        "{}: {e} (config.json and the weights must agree)",
                        dir.display()
                    ))
                })?;
                let sha = crate::models::detr::stage::hash_safetensors(dir).map_err(werr)?;
                (model, Some(tokenizer), max_patches, Some(sha), false)
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                max_patches: opts.max_patches.unwrap_or(max_patches),
                card,
                model,
                tokenizer,
                header,
                weights_sha256: sha,
                untrained,
                text_layers: TextLayers::new(),
            }),
            opts,
            stats: None,
        })
    }

    /// Untrained: the oracle's source (the run's text layers).
    pub fn with_oracle(mut self, text_layers: TextLayers) -> Self {
        if let Some(s) = Arc::get_mut(&mut self.shared) {
            s.text_layers = text_layers;
        }
        self
    }

    pub fn model(&self) -> &Pix2Struct {
        &self.shared.model
    }

    /// Patches per figure this stage uses.
    pub fn max_patches(&self) -> usize {
        self.shared.max_patches
    }

    fn oracle_label(&self) -> Option<String> {
        let o = &self.shared.card.oracle;
        self.shared.untrained.then(|| {
            format!(
                "lengths and tables from an oracle: each figure's text layer laid out as a table \
                 (digits and symbols 1 token each, letters / {}), {} tokens without text, at most max_new_tokens",
                o.letters_per_token, o.tokens_without_text
            )
        })
    }

    /// Each figure's oracle table (untrained).
    fn references(&self, batch: &[PageWork], items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|(pi, _, rect)| {
                self.shared
                    .text_layers
                    .get(batch[*pi].id.as_ref())
                    .and_then(Option::as_ref)
                    .map(|chars| oracle_table(chars, *rect))
                    .unwrap_or_default()
            })
            .collect()
    }

    fn reference_tokens(&self, text: &str) -> usize {
        let o = &self.shared.card.oracle;
        if text.trim().is_empty() {
            o.tokens_without_text
        } else {
            token_estimate(text, o.letters_per_token)
        }
    }

    fn run(&self, batch: &mut [PageWork]) -> Result<GenerationStats, StageError> {
        let s = &self.shared;
        let mut items: Vec<Item> = Vec::new();
        for (pi, page) in batch.iter().enumerate() {
            if !page
                .output
                .regions
                .iter()
                .any(|r| routing::route(&r.class) == Route::Figure)
            {
                continue;
            }
            let img = crate::models::page_bgr(page, StageKind::Figure)?;
            for (ri, r) in page.output.regions.iter().enumerate() {
                if routing::route(&r.class) == Route::Figure
                    && let Some(rect) = routing::pixel_rect(r.bbox, 0.0, img.width, img.height)
                {
                    items.push((pi, ri, rect));
                }
            }
        }
        let mut gs = GenerationStats::default();
        if items.is_empty() {
            return Ok(gs);
        }
        let references = s.untrained.then(|| self.references(batch, &items));
        // The encoder, one figure at a time.
        let t = Instant::now();
        let mut images = Vec::with_capacity(items.len());
        for (pi, _, rect) in &items {
            let crop = crate::models::page_bgr(&batch[*pi], StageKind::Figure)?.crop(*rect);
            let rgb = crate::models::got_ocr2::processor::to_rgb(&crop);
            let patch = s.model.config.vision_config.patch_side();
            let patches = processor::preprocess(&rgb, s.header.as_ref(), s.max_patches, patch);
            let device = s.model.decoder.device();
            let x = patches.tensor(device).map_err(crate::models::model_error)?;
            let mask = super::Encoder::key_mask(&x).map_err(crate::models::model_error)?;
            let states = s
                .model
                .encoder
                .forward_masked(&x, &mask)
                .map_err(crate::models::model_error)?;
            images.push((states, mask));
        }
        gs.vision_ns = t.elapsed().as_nanos() as u64;
        gs.images = items.len() as u64;
        let requests: Vec<Request> = items
            .iter()
            .enumerate()
            .map(|(i, _)| Request {
                max_new_tokens: self.opts.max_new_tokens,
                forced_len: references.as_ref().map(|r| self.reference_tokens(&r[i])),
            })
            .collect();
        let slots = match self.opts.batching {
            Batching::Single => 1,
            _ => self.opts.decode_batch.min(items.len()).max(1),
        };
        let cache = s
            .model
            .decoder
            .new_cache(slots, self.opts.max_new_tokens + 1, s.max_patches)
            .map_err(crate::models::model_error)?;
        let kv = cache.bytes();
        let mut seqs = Sequences {
            model: &s.model,
            cache,
            images,
        };
        let eos = s.model.config.text_config.eos_token_id;
        let out = generate::generate(&mut seqs, &requests, self.opts.batching, slots, &[eos])
            .map_err(crate::models::model_error)?;
        for (i, (pi, ri, _)) in items.iter().enumerate() {
            let text = match (&references, &s.tokenizer) {
                (Some(r), _) => r[i].clone(),
                (None, Some(tok)) => tok.decode(&out.tokens[i], true).map_err(|e| {
                    StageError::new(
                        FailureKind::Model,
                        format!("model deplot: decoding the tokens: {e}"),
                    )
                })?,
                (None, None) => String::new(),
            };
            let region = &mut batch[*pi].output.regions[*ri];
            region.data = parse_table(&text);
            region.text = Some(text);
        }
        gs.add(&out.stats);
        gs.kv_cache_bytes = gs.kv_cache_bytes.max(kv);
        Ok(gs)
    }
}

impl Stage for DeplotStage {
    fn kind(&self) -> StageKind {
        StageKind::Figure
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Figure,
            id: self.shared.card.id.clone(),
            is_test_stage: false,
            weights_sha256: self.shared.weights_sha256.clone(),
            untrained: self.shared.untrained,
            fallback: self.oracle_label(),
        }
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        let stats = self.run(batch)?;
        self.stats.get_or_insert_with(Default::default).add(&stats);
        Ok(())
    }

    fn take_generation(&mut self) -> Option<GenerationStats> {
        self.stats.take()
    }

    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(Self {
            shared: Arc::clone(&self.shared),
            opts: self.opts.clone(),
            stats: None,
        }))
    }
}

/// The registry's builder.
pub fn build(req: &crate::models::registry::BuildRequest) -> Result<Box<dyn Stage>, StageError> {
    let o: DeplotOptions = req.options()?;
    let ctx = req.ctx;
    let choice = resolve_weights(req.id, ctx.weights.as_deref(), o.weights.as_deref());
    let stage = DeplotStage::load(o, &choice, &ctx.device)?;
    if !stage.shared.untrained {
        return Ok(Box::new(stage));
    }
    Ok(Box::new(stage.with_oracle(ctx.text_layers())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linearized_table_parses_into_title_header_and_rows() {
        let t = parse_table(
            "TITLE | Sales by year <0x0A> Year | Sales <0x0A> 2019 | 10 <0x0A> 2020 | 12.5",
        )
        .expect("a table");
        assert_eq!(t.title.as_deref(), Some("Sales by year"));
        assert_eq!(t.header, vec!["Year", "Sales"]);
        assert_eq!(t.rows, vec![vec!["2019", "10"], vec!["2020", "12.5"]]);
        let md = t.markdown();
        assert!(
            md.contains("| Year | Sales |\n| --- | --- |\n| 2019 | 10 |"),
            "{md}"
        );
        // Newlines instead of the byte token, no title.
        let t = parse_table("a | b\n1 | 2\n").expect("a table");
        assert_eq!((t.title, t.header.len(), t.rows.len()), (None, 2, 1));
        assert!(parse_table("  ").is_none());
    }

    #[test]
    fn the_oracle_lays_a_figures_text_out_in_lines_and_cells() {
        let ch = |c: char, x: f32, y: f32| TextChar {
            ch: c,
            bbox: [x, y, x + 8.0, y + 10.0],
        };
        let chars = vec![
            ch('1', 60.0, 50.0),
            ch('0', 68.0, 50.0),
            ch('A', 10.0, 50.0),
            ch('B', 10.0, 20.0),
            ch('C', 18.0, 21.0),
            ch('Z', 500.0, 20.0), // outside
        ];
        assert_eq!(oracle_table(&chars, [0, 0, 200, 100]), "BC <0x0A> A | 10");
        assert_eq!(oracle_table(&chars, [0, 0, 5, 5]), "");
    }

    #[test]
    fn the_card_parses() {
        let c = card().expect("card");
        assert_eq!(c.id, "deplot");
        assert!(c.oracle.tokens_without_text > 0);
    }
}
