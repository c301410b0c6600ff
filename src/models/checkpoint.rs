//! Weights through candle-nn's [`VarBuilder`]: a Hugging Face checkpoint folder
//! (`model.safetensors`, possibly sharded, + `config.json`) memory-mapped, or seeded random
//! tensors of the shapes the model asks for.
//!
//! Model code reads weights the candle-transformers way: `vb.pp("a").pp("b").get_with_hints(
//! shape, "c", init)` reads tensor `a.b.c` and checks its shape, so `pp` mirrors the
//! checkpoint's names. The `init` hint says how a random tensor is drawn and is ignored for a
//! checkpoint.
//!
//! [`SeededRandom`] is the backend of `--weights random`: every tensor comes from a generator
//! seeded by the run's seed and the tensor's full name, so a random-weight run is reproducible,
//! adding a tensor never changes another one's values, and it costs exactly what the trained
//! model costs (same shapes, same operations). Any model loaded through a [`VarBuilder`] gets
//! random weights this way without code of its own. The generator and its per-name seeding
//! are those of pipebench before it used candle-nn, so seed-profile outputs did not change.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// What every checkpoint model's card (`models/<id>.toml`) starts with, whatever its
/// architecture: for `pipebench models` and messages. Each architecture reads its whole card
/// as its own type (DETR's `SeedCard`, GOT's `GotCard`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CardHeader {
    pub id: String,
    pub architecture: String,
    pub task: String,
    pub license: String,
    pub hub_repo: String,
}

/// The headers of the cards of every checkpoint model, in registry order.
pub fn checkpoint_cards() -> std::result::Result<Vec<CardHeader>, String> {
    crate::models::registry::checkpoint_models()
        .into_iter()
        .map(|id| {
            let (file, text) = crate::models::registry::card_file(id)
                .ok_or_else(|| format!("model {id}: no card models/{id}.toml"))?;
            toml::from_str(text).map_err(|e| format!("{file}: invalid card: {e}"))
        })
        .collect()
}

/// PyTorch's default initialization of `nn.Linear` and `nn.Conv2d` weights: Kaiming uniform
/// with `a = √5`, that is uniform in ±1/√fan_in (gain 1/√3). Its scale keeps activations of
/// order one through deep stacks, so no NaN, infinity or subnormal slows a random-weight run.
/// (candle-nn's own `linear` asks for Kaiming normal with the ReLU gain, which the random
/// backend honours too; the seed models ask for this one, which they have always used.)
pub const TORCH_DEFAULT: Init = Init::Kaiming {
    dist: NormalOrUniform::Uniform,
    fan: FanInOut::FanIn,
    // 1/√3, the gain of `kaiming_uniform_(a = √5)`.
    non_linearity: NonLinearity::ExplicitGain(0.577_350_269_189_625_8),
};

/// Uniform in ±`bound` (biases: ±1/√fan_in, PyTorch's default; embeddings: ±1).
pub fn uniform(bound: f32) -> Init {
    Init::Uniform {
        lo: -f64::from(bound),
        up: f64::from(bound),
    }
}

/// Linear layer `name` (`i` → `o`, weight (o, i) as PyTorch stores it) from `vb`; random
/// weights get PyTorch's default initialization.
pub fn linear(
    vb: &VarBuilder,
    name: &str,
    i: usize,
    o: usize,
    bias: bool,
) -> candle_core::Result<candle_nn::Linear> {
    let vb = vb.pp(name);
    let w = vb.get_with_hints((o, i), "weight", TORCH_DEFAULT)?;
    let b = if bias {
        Some(vb.get_with_hints(o, "bias", uniform(1.0 / (i as f32).sqrt()))?)
    } else {
        None
    };
    Ok(candle_nn::Linear::new(w, b))
}

/// RMS norm `name` of `size` from `vb` (random weights: ones).
pub fn rms_norm(
    vb: &VarBuilder,
    name: &str,
    size: usize,
    eps: f64,
) -> candle_core::Result<candle_nn::RmsNorm> {
    let w = vb
        .pp(name)
        .get_with_hints(size, "weight", Init::Const(1.0))?;
    Ok(candle_nn::RmsNorm::new(w, eps))
}

/// The checkpoint in `dir` (a folder filled by `hf download` or `save_pretrained`), its
/// safetensors files memory-mapped; tensors are read as f32 onto `device`.
pub fn from_dir(dir: &Path, device: &Device) -> std::result::Result<VarBuilder<'static>, String> {
    let files = checkpoint_files(dir)?;
    if files.is_empty() {
        return Err(format!(
            "{}: no model*.safetensors file (a checkpoint saved with save_pretrained, \
             or fetched with `hf download`, has model.safetensors)",
            dir.display()
        ));
    }
    // SAFETY: the files are mapped read-only and must not be truncated or rewritten while the
    // builder lives; it lives only while the model loads (every tensor is copied out of the
    // map), and pipebench never writes into a checkpoint folder.
    unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device) }
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The advice appended to every error about a missing or unreadable checkpoint folder `dir`
/// of the model whose weights are on the hub as `hub_repo`.
pub fn download_fix(hub_repo: &str, dir: &Path) -> String {
    format!(
        "\n  fix: `hf download {hub_repo} --local-dir {}` (on a machine that reaches the \
         Hugging Face hub, then copy the folder here), or pass `--weights random` \
         to measure the architecture with untrained weights",
        dir.display()
    )
}

/// The checkpoint's `config.json` in `dir`, parsed; errors name the file, and a missing one
/// ends with `fix` ([`download_fix`]).
pub fn read_config(dir: &Path, fix: &str) -> std::result::Result<serde_json::Value, String> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("no checkpoint at {} ({e}){fix}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Seeded random weights (see [`SeededRandom`]), f32 on `device`.
pub fn random(seed: u64, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededRandom { seed }), DType::F32, device.clone())
}

/// The checkpoint's safetensors files in `dir`, in name order (empty when there is none).
pub fn checkpoint_files(dir: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_checkpoint_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// `model.safetensors` or a shard of it (`model-00001-of-00002.safetensors`): what
/// `save_pretrained` writes. Other safetensors files in the folder are not weights.
pub fn is_checkpoint_file(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "safetensors")
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("model"))
}

/// A [`SimpleBackend`] that has every tensor: the values of tensor `name` are drawn from
/// SplitMix64 seeded by `seed` and an FNV-1a hash of `name`, with the distribution the
/// [`Init`] hint asks for (computed in f32).
#[derive(Debug, Clone, Copy)]
pub struct SeededRandom {
    pub seed: u64,
}

impl SimpleBackend for SeededRandom {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let values = random_values(self.seed, name, &s, h);
        Tensor::from_vec(values, s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights: tensor `{name}` was asked for without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// One tensor's random stream: SplitMix64 seeded by the run seed and the tensor's name.
struct Stream(u64);

impl Stream {
    fn new(seed: u64, name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Self(seed ^ h)
    }

    /// 24 random bits → [0, 1).
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    fn symmetric(&mut self) -> f32 {
        2.0 * self.unit() - 1.0
    }

    /// Standard normal (Box–Muller, two draws per value).
    fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.unit(); // (0, 1]: the logarithm stays finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// The values of tensor `name` of `shape` under `init`.
fn random_values(seed: u64, name: &str, shape: &Shape, init: Init) -> Vec<f32> {
    let n = shape.elem_count();
    let mut s = Stream::new(seed, name);
    let normal = |s: &mut Stream, mean: f32, std: f32| -> Vec<f32> {
        (0..n).map(|_| mean + std * s.normal()).collect()
    };
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Uniform { lo, up } => {
            // mid + half·[-1, 1): for a symmetric range mid is 0 and half the bound, exactly.
            let (lo, up) = (lo as f32, up as f32);
            let (mid, half) = ((up + lo) / 2.0, (up - lo) / 2.0);
            (0..n).map(|_| mid + half * s.symmetric()).collect()
        }
        Init::Randn { mean, stdev } => normal(&mut s, mean as f32, stdev as f32),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan.for_shape(shape).max(1) as f32;
            let gain = non_linearity.gain();
            match dist {
                // bound = √3·std = √3·gain/√fan; √3·gain is rounded to f32 first, so
                // TORCH_DEFAULT's bound is 1/√fan computed in f32, as it always was.
                NormalOrUniform::Uniform => {
                    let bound = (3f64.sqrt() * gain) as f32 / fan.sqrt();
                    (0..n).map(|_| s.symmetric() * bound).collect()
                }
                NormalOrUniform::Normal => normal(&mut s, 0.0, gain as f32 / fan.sqrt()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values")
    }

    #[test]
    fn random_weights_are_reproducible_and_bounded() {
        let vb = random(7, &Device::Cpu).pp("layer").pp("0");
        let a = values(
            &vb.get_with_hints((4, 8), "weight", TORCH_DEFAULT)
                .expect("a"),
        );
        let b = values(
            &vb.get_with_hints((4, 8), "weight", TORCH_DEFAULT)
                .expect("b"),
        );
        let other = values(&vb.get_with_hints((4, 8), "bias", TORCH_DEFAULT).expect("c"));
        assert_eq!(a, b);
        assert_ne!(a, other, "different names draw different values");
        let bound = 1.0 / 8f32.sqrt();
        assert!(a.iter().all(|v| v.abs() <= bound), "{a:?}");
        assert!(a.iter().any(|v| *v != 0.0));
        let ones = values(
            &vb.get_with_hints(3, "gamma", Init::Const(1.0))
                .expect("ones"),
        );
        assert_eq!(ones, [1.0; 3]);
    }

    /// The values pipebench drew before its weights went through candle-nn (computed by that
    /// code): a change here changes every seed-profile output digest.
    #[test]
    fn random_weights_keep_their_values() {
        let vb = random(0x5eed, &Device::Cpu);
        let conv = vb
            .pp("model.backbone.conv_encoder.model.conv1")
            .get_with_hints((64, 3, 7, 7), "weight", TORCH_DEFAULT)
            .expect("conv");
        let conv = values(&conv);
        let bits: Vec<u32> = conv[..3].iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, [1025102716, 3175907331, 3180480584]);
        let sum: f64 = conv.iter().map(|x| f64::from(*x)).sum();
        assert!((sum - 2.803662875428927).abs() < 1e-9, "{sum}");
        let bias = vb
            .pp("model.input_projection")
            .get_with_hints(256, "bias", uniform(1.0 / 2048f32.sqrt()))
            .expect("bias");
        let bits: Vec<u32> = values(&bias)[..3].iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, [3157961705, 1015166265, 3162978904]);
    }

    #[test]
    fn torch_default_bound_is_one_over_root_fan_in_exactly() {
        for fan in 1..4096usize {
            let gain = match TORCH_DEFAULT {
                Init::Kaiming { non_linearity, .. } => non_linearity.gain(),
                _ => unreachable!("TORCH_DEFAULT is a Kaiming init"),
            };
            let bound = (3f64.sqrt() * gain) as f32 / (fan as f32).sqrt();
            assert_eq!(
                bound.to_bits(),
                (1.0 / (fan as f32).sqrt()).to_bits(),
                "{fan}"
            );
        }
    }

    #[test]
    fn normal_hints_draw_normal_values() {
        let vb = random(1, &Device::Cpu);
        let v = values(
            &vb.get_with_hints(
                20_000,
                "w",
                Init::Randn {
                    mean: 1.0,
                    stdev: 2.0,
                },
            )
            .expect("randn"),
        );
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "{var}");
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = HashMap::new();
        t.insert(
            "a.w".to_string(),
            Tensor::zeros((2, 3), DType::F32, &Device::Cpu).expect("t"),
        );
        candle_core::safetensors::save(&t, dir.path().join("model.safetensors")).expect("save");
        // Not a checkpoint file: ignored.
        candle_core::safetensors::save(&t, dir.path().join("inputs.safetensors")).expect("save");
        let vb = from_dir(dir.path(), &Device::Cpu)
            .expect("checkpoint")
            .pp("a");
        let e = vb.get((2, 3), "b").expect_err("missing");
        assert!(e.to_string().contains("a.b"), "{e}");
        let e = vb.get((3, 2), "w").expect_err("shape");
        assert!(e.to_string().contains("[2, 3]"), "{e}");
        assert!(vb.get((2, 3), "w").is_ok());
        assert!(vb.contains_tensor("w") && !vb.contains_tensor("b"));

        let empty = tempfile::tempdir().expect("tempdir");
        let e = from_dir(empty.path(), &Device::Cpu)
            .err()
            .expect("no checkpoint");
        assert!(e.contains("no model*.safetensors"), "{e}");
    }
}
