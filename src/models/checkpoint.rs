//! Named weights for the seed models: a Hugging Face checkpoint folder (`model.safetensors`,
//! possibly sharded, + `config.json`) or seeded random weights of the same shapes.
//!
//! [`Weights`] is a small stand-in for candle-nn's `VarBuilder`: `pp("a").pp("b").get(shape,
//! "c")` reads tensor `a.b.c` and checks its shape, so model code mirrors the checkpoint's names.
//! With [`Checkpoint::Random`] every tensor is drawn from a generator seeded by the run's seed
//! and the tensor's name, so a random-weight run is reproducible and costs exactly what the
//! trained model costs (same shapes, same operations).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

/// How a tensor is initialized when the weights are random. The scales keep activations of
/// order one through deep stacks, so no NaN, infinity or subnormal slows the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in ±1/√fan_in, fan_in = the product of all dims but the first (linear and
    /// convolution weights, PyTorch's default bound).
    FanIn,
    /// Uniform in ±`bound`.
    Uniform(f32),
    /// Every element equal (batch-norm variances and scales, layer-norm gains: 1; biases: 0).
    Const(f32),
}

/// Where the tensors come from.
pub enum Checkpoint {
    /// Tensors read from safetensors files, by name.
    Tensors {
        tensors: HashMap<String, Tensor>,
        /// The folder they came from, for error messages.
        source: PathBuf,
    },
    /// Seeded random tensors of the requested shapes.
    Random { seed: u64, device: Device },
}

impl Checkpoint {
    /// Reads every `*.safetensors` file of `dir` (a folder filled by `hf download`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_checkpoint_file(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "{}: no model*.safetensors file (a checkpoint saved with save_pretrained, \
                 or fetched with `hf download`, has model.safetensors)",
                dir.display()
            ));
        }
        let mut tensors = HashMap::new();
        for f in &files {
            let t = candle_core::safetensors::load(f, device)
                .map_err(|e| format!("{}: {e}", f.display()))?;
            tensors.extend(t);
        }
        Ok(Checkpoint::Tensors {
            tensors,
            source: dir.to_path_buf(),
        })
    }

    pub fn from_tensors(tensors: HashMap<String, Tensor>, source: &Path) -> Self {
        Checkpoint::Tensors {
            tensors,
            source: source.to_path_buf(),
        }
    }

    pub fn is_random(&self) -> bool {
        matches!(self, Checkpoint::Random { .. })
    }

    /// True when some tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        match self {
            Checkpoint::Tensors { tensors, .. } => tensors.keys().any(|k| k.starts_with(prefix)),
            Checkpoint::Random { .. } => false,
        }
    }

    /// The root accessor.
    pub fn root(&self) -> Weights<'_> {
        Weights {
            ck: self,
            prefix: String::new(),
        }
    }

    fn device(&self) -> Device {
        match self {
            Checkpoint::Tensors { tensors, .. } => tensors
                .values()
                .next()
                .map_or(Device::Cpu, |t| t.device().clone()),
            Checkpoint::Random { device, .. } => device.clone(),
        }
    }
}

/// `model.safetensors` or a shard of it (`model-00001-of-00002.safetensors`): what
/// `save_pretrained` writes. Other safetensors files in the folder are not weights.
pub fn is_checkpoint_file(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "safetensors")
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("model"))
}

/// A view of a [`Checkpoint`] under a name prefix.
#[derive(Clone)]
pub struct Weights<'a> {
    ck: &'a Checkpoint,
    prefix: String,
}

impl<'a> Weights<'a> {
    /// The view under `name` (`a` → `a.name`).
    pub fn pp(&self, name: impl AsRef<str>) -> Weights<'a> {
        let name = name.as_ref();
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Weights {
            ck: self.ck,
            prefix,
        }
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn is_random(&self) -> bool {
        self.ck.is_random()
    }

    /// True when the checkpoint has tensor `name` here (random weights have every tensor).
    pub fn contains(&self, name: &str) -> bool {
        match self.ck {
            Checkpoint::Tensors { tensors, .. } => tensors.contains_key(&self.full(name)),
            Checkpoint::Random { .. } => true,
        }
    }

    /// Tensor `name` (f32), which must have `shape`.
    pub fn get(&self, shape: &[usize], name: &str, init: Init) -> candle_core::Result<Tensor> {
        let full = self.full(name);
        match self.ck {
            Checkpoint::Tensors { tensors, source } => {
                let t = tensors.get(&full).ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "{}: tensor `{full}` is missing (is this the right checkpoint for the \
                         model card's architecture?)",
                        source.display()
                    ))
                })?;
                if t.dims() != shape {
                    return Err(candle_core::Error::Msg(format!(
                        "{}: tensor `{full}` has shape {:?}, the model expects {shape:?} \
                         (config.json and the weights disagree)",
                        source.display(),
                        t.dims()
                    )));
                }
                t.to_dtype(DType::F32)
            }
            Checkpoint::Random { seed, device } => {
                let n: usize = shape.iter().product();
                let data = random_values(*seed, &full, n, shape, init);
                Tensor::from_vec(data, shape, device)
            }
        }
    }

    pub fn device(&self) -> Device {
        self.ck.device()
    }
}

/// Deterministic values for one tensor: SplitMix64 seeded by the run seed and an FNV-1a hash
/// of the tensor name (so adding a tensor never changes another one's values).
fn random_values(seed: u64, name: &str, n: usize, shape: &[usize], init: Init) -> Vec<f32> {
    let bound = match init {
        Init::Const(v) => return vec![v; n],
        Init::Uniform(b) => b,
        Init::FanIn => {
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            1.0 / (fan_in as f32).sqrt()
        }
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut state = seed ^ h;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // 24 random bits → [0, 1) → [-bound, bound).
            let u = (z >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * bound
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_are_reproducible_and_bounded() {
        let ck = Checkpoint::Random {
            seed: 7,
            device: Device::Cpu,
        };
        let w = ck.root().pp("layer").pp("0");
        let a = w.get(&[4, 8], "weight", Init::FanIn).expect("a");
        let b = w.get(&[4, 8], "weight", Init::FanIn).expect("b");
        let other = w.get(&[4, 8], "bias", Init::FanIn).expect("c");
        let av = a.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
        let bv = b.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
        let ov = other
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("v");
        assert_eq!(av, bv);
        assert_ne!(av, ov, "different names draw different values");
        let bound = 1.0 / 8f32.sqrt();
        assert!(av.iter().all(|v| v.abs() <= bound), "{av:?}");
        assert!(av.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        t.insert(
            "a.w".to_string(),
            Tensor::zeros((2, 3), DType::F32, &dev).expect("t"),
        );
        let ck = Checkpoint::from_tensors(t, Path::new("ckpt"));
        let w = ck.root().pp("a");
        let e = w.get(&[2, 3], "b", Init::FanIn).expect_err("missing");
        assert!(e.to_string().contains("`a.b` is missing"), "{e}");
        let e = w.get(&[3, 2], "w", Init::FanIn).expect_err("shape");
        assert!(e.to_string().contains("has shape [2, 3]"), "{e}");
        assert!(w.get(&[2, 3], "w", Init::FanIn).is_ok());
    }
}
