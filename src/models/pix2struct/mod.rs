//! Pix2Struct (`Pix2StructForConditionalGeneration`; Lee et al. 2023, arXiv:2210.03347), the
//! architecture of DePlot (`google/deplot`; Liu et al. 2023, arXiv:2212.10505), which turns a
//! chart into its data table: an encoder over variable-resolution image patches and a T5-style
//! decoder that writes the linearized table token by token.
//!
//! - **Encoder** ([`Encoder`]): each input row is `[row id, column id, 16·16·3 pixels]` (ids
//!   from 1; padding rows all zero); a linear patch projection plus row and column embeddings,
//!   pre-norm layers with T5's RMS norm (candle-nn's `RmsNorm`), attention **without** the
//!   1/√d scale whose keys are masked where the patch is padding, a gated GELU (tanh form) MLP,
//!   and a final norm.
//! - **Decoder** ([`TextDecoder`]): causal self-attention (no scale) whose relative-position
//!   bias — unidirectional buckets, computed in the first layer — is shared by all layers;
//!   cross-attention over the encoder states, whose keys and values are computed **once per
//!   image** when its sequence enters the cache; a gated GELU MLP; an untied head. The
//!   decoder starts from token 0 and stops at token 1 (the config's ids).
//! - **Why not candle-transformers' `t5`**: its blocks are private, its decoder computes
//!   bidirectional buckets, it takes no encoder or cross-attention masks (Pix2Struct pads every
//!   image to `max_patches`), it recomputes cross-attention keys and values at every step, and
//!   its tensor names differ. What fits is candle-nn's: `Linear`, `Embedding`, `RmsNorm`,
//!   `ops::softmax_last_dim`; the decode steps' linear layers run through `ops::skinny` like
//!   GOT's (a step reads every weight once for all its rows).
//! - **Generation**: the decoder implements [`crate::models::generate::Decode`] through
//!   [`Sequences`], so DePlot gets the same batching modes as GOT-OCR 2.0 from the same loop:
//!   "prefill" of an encoder-decoder sequence is writing its image's cross-attention keys and
//!   values into its slot and running the start token.
//! - **The cache** ([`SlotCache`]): per layer, self-attention keys and values (slots, heads,
//!   context, d_kv) and cross-attention keys and values (slots, heads, patches, d_kv), plus each
//!   slot's additive key mask over the patches. Live sequences sit in slots `0..n` so a step
//!   reads `narrow`ed views. Unlike GOT's, a DePlot step reads per sequence the cross keys and
//!   values of its image (2 × 12 layers × 2048 × 768 f32 = 151 MB at the default size): a
//!   step's cost grows with its rows faster than GOT's, whose per-row cache is short.
//! - **Processor**: [`processor`] (DePlot's header, standardization, resize, patches).
//! - **Stage**: [`stage`] (the figure stage, tables parsed from the linearized output, the
//!   oracle of untrained weights).

pub mod processor;
pub mod stage;

use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::models::checkpoint::{linear, rms_norm};
use crate::models::ops::attention::AttentionOp;
use crate::models::ops::fused;
use crate::models::ops::skinny::SkinnyLinear;

/// The encoder (`vision_config`); defaults are DePlot's (pix2struct-base).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    /// Pixels per patch row (16 · 16 · 3).
    pub patch_embed_hidden_size: usize,
    pub d_ff: usize,
    pub d_kv: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub layer_norm_eps: f64,
    /// Rows of the row and column embedding tables.
    pub seq_len: usize,
    pub dense_act_fn: String,
}

impl VisionConfig {
    /// Pixels per patch side: `patch_embed_hidden_size` is 3 · side².
    pub fn patch_side(&self) -> usize {
        ((self.patch_embed_hidden_size / 3) as f64).sqrt().round() as usize
    }
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            patch_embed_hidden_size: 768,
            d_ff: 2048,
            d_kv: 64,
            num_attention_heads: 12,
            num_hidden_layers: 12,
            layer_norm_eps: 1e-6,
            seq_len: 4096,
            dense_act_fn: "gelu_new".into(),
        }
    }
}

/// The decoder (`text_config`); defaults are DePlot's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    pub dense_act_fn: String,
    pub decoder_start_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: u32,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 50244,
            hidden_size: 768,
            d_kv: 64,
            d_ff: 2048,
            num_layers: 12,
            num_heads: 12,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            dense_act_fn: "gelu_new".into(),
            decoder_start_token_id: 0,
            eos_token_id: 1,
            pad_token_id: 0,
        }
    }
}

/// The whole model's configuration (`config.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pix2StructConfig {
    pub vision_config: VisionConfig,
    pub text_config: TextConfig,
}

impl Pix2StructConfig {
    /// From a checkpoint's `config.json` (keys it does not name keep DePlot's values; the
    /// top-level start and end ids win over `text_config`'s, as in transformers).
    pub fn from_hf(v: &serde_json::Value) -> std::result::Result<Self, String> {
        let mut c: Self = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let top = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as u32);
        if let Some(s) = top("decoder_start_token_id") {
            c.text_config.decoder_start_token_id = s;
        }
        if let Some(e) = top("eos_token_id") {
            c.text_config.eos_token_id = e;
        }
        c.check()?;
        Ok(c)
    }

    /// What this port computes: gated `gelu_new` MLPs, heads × d_kv = hidden.
    pub fn check(&self) -> std::result::Result<(), String> {
        let (v, t) = (&self.vision_config, &self.text_config);
        for (what, act) in [("vision", &v.dense_act_fn), ("text", &t.dense_act_fn)] {
            if act != "gelu_new" && act != "gelu_pytorch_tanh" {
                return Err(format!(
                    "{what}_config.dense_act_fn = {act}: only gelu_new is implemented"
                ));
            }
        }
        if t.num_heads * t.d_kv != t.hidden_size {
            return Err("text_config: num_heads × d_kv must equal hidden_size".into());
        }
        let side = v.patch_side();
        if 3 * side * side != v.patch_embed_hidden_size {
            return Err(format!(
                "vision_config.patch_embed_hidden_size = {}: not 3 × a square patch",
                v.patch_embed_hidden_size
            ));
        }
        if t.relative_attention_num_buckets < 2 {
            return Err("text_config.relative_attention_num_buckets must be at least 2".into());
        }
        Ok(())
    }
}

fn skinny(vb: &VarBuilder, name: &str, i: usize, o: usize) -> Result<SkinnyLinear> {
    Ok(SkinnyLinear::new(linear(vb, name, i, o, false)?))
}

fn embedding(vb: &VarBuilder, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
    let w = vb.pp(name).get_with_hints(
        (rows, dim),
        "weight",
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )?;
    Ok(Embedding::new(w, dim))
}

/// T5's gated MLP: `wo(gelu_new(wi_0 x) · wi_1 x)`.
#[derive(Debug, Clone)]
struct GatedMlp<L> {
    wi_0: L,
    wi_1: L,
    wo: L,
}

impl<L: Module> GatedMlp<L> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = fused::gelu_tanh_mul(&self.wi_0.forward(x)?, &self.wi_1.forward(x)?)?;
        self.wo.forward(&g)
    }
}

/// One encoder layer.
#[derive(Debug, Clone)]
struct EncoderLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    mlp: GatedMlp<Linear>,
    norm_att: RmsNorm,
    norm_mlp: RmsNorm,
}

/// The encoder over flattened patches.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub config: VisionConfig,
    projection: Linear,
    rows: Embedding,
    cols: Embedding,
    layers: Vec<EncoderLayer>,
    norm: RmsNorm,
}

impl Encoder {
    /// Loads `encoder.*`.
    pub fn load(c: &VisionConfig, vb: &VarBuilder) -> Result<Self> {
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let inner = c.num_attention_heads * c.d_kv;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp("encoder").pp("layer").pp(i);
                let a = l.pp("attention");
                let m = l.pp("mlp");
                Ok(EncoderLayer {
                    q: linear(&a, "query", h, inner, false)?,
                    k: linear(&a, "key", h, inner, false)?,
                    v: linear(&a, "value", h, inner, false)?,
                    o: linear(&a, "output", inner, h, false)?,
                    mlp: GatedMlp {
                        wi_0: linear(&m, "wi_0", h, c.d_ff, false)?,
                        wi_1: linear(&m, "wi_1", h, c.d_ff, false)?,
                        wo: linear(&m, "wo", c.d_ff, h, false)?,
                    },
                    norm_att: rms_norm(&l, "pre_attention_layer_norm", h, c.layer_norm_eps)?,
                    norm_mlp: rms_norm(&l, "pre_mlp_layer_norm", h, c.layer_norm_eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: c.clone(),
            projection: linear(&e, "patch_projection", c.patch_embed_hidden_size, h, true)?,
            rows: embedding(&e, "row_embedder", c.seq_len, h)?,
            cols: embedding(&e, "column_embedder", c.seq_len, h)?,
            layers,
            norm: rms_norm(vb, "layernorm", h, c.layer_norm_eps)?,
        })
    }

    /// The additive key mask of `patches` (b, p, 2 + pixels): 0 where a row is a patch,
    /// −∞ where it is padding (all zero), as transformers derives it (`sum != 0`).
    pub fn key_mask(patches: &Tensor) -> Result<Tensor> {
        let valid = patches.sum(D::Minus1)?.ne(0f32)?;
        let zeros = Tensor::zeros(valid.shape(), DType::F32, patches.device())?;
        let neg = Tensor::full(f32::NEG_INFINITY, valid.shape(), patches.device())?;
        valid.where_cond(&zeros, &neg)
    }

    /// The encoder states (b, p, hidden) of `patches` (b, p, 2 + pixels).
    pub fn forward(&self, patches: &Tensor) -> Result<Tensor> {
        self.forward_masked(patches, &Self::key_mask(patches)?)
    }

    /// [`Self::forward`] with the patches' key mask already made ([`Self::key_mask`]; the
    /// decoder's cross-attention needs it too).
    pub fn forward_masked(&self, patches: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, p, _) = patches.dims3()?;
        let (heads, d) = (c.num_attention_heads, c.d_kv);
        let ids = |i: usize| -> Result<Tensor> {
            patches
                .narrow(2, i, 1)?
                .squeeze(2)?
                .to_dtype(DType::U32)?
                .contiguous()
        };
        let pixels = patches.narrow(2, 2, patches.dim(2)? - 2)?.contiguous()?;
        let mut x = self.projection.forward(&pixels)?;
        x = (x + self.rows.forward(&ids(0)?)?)?;
        x = (x + self.cols.forward(&ids(1)?)?)?;
        let padded = mask.min_all()?.to_scalar::<f32>()? < 0.0;
        // The fused attention (CPU): padding keys as flags, no score tensor.
        let flags: Option<Vec<bool>> = padded
            .then(|| -> Result<Vec<bool>> {
                Ok(mask
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|m| *m < 0.0)
                    .collect())
            })
            .transpose()?;
        let mask = padded.then(|| mask.reshape((b, 1, 1, p))).transpose()?;
        let fused = x.device().is_cpu() && x.dtype() == DType::F32;
        for l in &self.layers {
            let xn = l.norm_att.forward(&x)?;
            let (q, k, v) = (l.q.forward(&xn)?, l.k.forward(&xn)?, l.v.forward(&xn)?);
            let o = if fused {
                // ops::attention: each (head, block of queries) task keeps its scores in L2
                // and reads the heads in place. Measured with bench-deplot at 2048 patches: 8.1 s
                // op by op (scores of 201 MB per layer, faulted in afresh), 3.7 s with this op
                // and the fused gated GELU; torch 3.8 s.
                let op = AttentionOp {
                    heads,
                    scale: 1.0,
                    masked: flags.as_deref(),
                };
                q.contiguous()?
                    .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)?
            } else {
                let split = |t: Tensor| -> Result<Tensor> {
                    t.reshape((b, p, heads, d))?.transpose(1, 2)?.contiguous()
                };
                let (q, k, v) = (split(q)?, split(k)?, split(v)?);
                let mut s = q.matmul(&k.t()?)?;
                if let Some(m) = &mask {
                    s = s.broadcast_add(m)?;
                }
                let a = candle_nn::ops::softmax_last_dim(&s)?;
                a.matmul(&v)?.transpose(1, 2)?.reshape((b, p, heads * d))?
            };
            x = (x + l.o.forward(&o)?)?;
            let xn = l.norm_mlp.forward(&x)?;
            x = (&x + l.mlp.forward(&xn)?)?;
        }
        self.norm.forward(&x)
    }
}

/// One decoder layer.
#[derive(Debug, Clone)]
struct DecoderLayer {
    self_q: SkinnyLinear,
    self_k: SkinnyLinear,
    self_v: SkinnyLinear,
    self_o: SkinnyLinear,
    cross_q: SkinnyLinear,
    /// Cross keys and values are computed once per image (many rows): candle's matmul.
    cross_k: Linear,
    cross_v: Linear,
    cross_o: SkinnyLinear,
    mlp: GatedMlp<SkinnyLinear>,
    norm_self: RmsNorm,
    norm_cross: RmsNorm,
    norm_mlp: RmsNorm,
}

/// The key/value cache of up to `slots` sequences (see the module doc).
#[derive(Debug)]
pub struct SlotCache {
    /// Per layer: (slots, heads, context, d_kv).
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Per layer: (slots, heads, patches, d_kv).
    cross_k: Vec<Tensor>,
    cross_v: Vec<Tensor>,
    /// (slots, patches): 0 or −∞ per patch of the slot's image.
    cross_mask: Tensor,
    /// Positions filled in each slot.
    len: Vec<usize>,
    context: usize,
}

impl SlotCache {
    pub fn slots(&self) -> usize {
        self.len.len()
    }

    /// Positions held by `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.len[slot]
    }

    /// Bytes the cache holds (allocated once, whatever the occupancy).
    pub fn bytes(&self) -> u64 {
        self.k
            .iter()
            .chain(&self.v)
            .chain(&self.cross_k)
            .chain(&self.cross_v)
            .chain(std::iter::once(&self.cross_mask))
            .map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64)
            .sum()
    }

    /// Moves the sequence in `from` to the free slot `to`.
    pub fn move_slot(&mut self, from: usize, to: usize) -> Result<()> {
        if from == to {
            return Ok(());
        }
        let n = self.len[from];
        let copy = |t: &Tensor, upto: Option<usize>| -> Result<()> {
            let src = t.narrow(0, from, 1)?;
            let src = match upto {
                Some(n) => src.narrow(2, 0, n)?,
                None => src,
            };
            // A fresh copy: `slice_set` refuses a source sharing the destination's storage.
            let src = src.contiguous()?.copy()?;
            t.narrow(0, to, 1)?.slice_set(&src, 2, 0)
        };
        for t in self.k.iter().chain(&self.v) {
            if n > 0 {
                copy(t, Some(n))?;
            }
        }
        for t in self.cross_k.iter().chain(&self.cross_v) {
            copy(t, None)?;
        }
        let m = self.cross_mask.narrow(0, from, 1)?.copy()?;
        self.cross_mask.slice_set(&m, 0, to)?;
        self.len[to] = n;
        self.len[from] = 0;
        Ok(())
    }

    /// Empties `slot`.
    pub fn clear(&mut self, slot: usize) {
        self.len[slot] = 0;
    }
}

/// The decoder with its head.
#[derive(Debug, Clone)]
pub struct TextDecoder {
    pub config: TextConfig,
    embed: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    head: SkinnyLinear,
    /// The first layer's relative-position bias, (buckets, heads), on the host.
    bias: Vec<Vec<f32>>,
    device: Device,
}

/// T5's bucket of a key `distance` positions behind the query (unidirectional: keys ahead
/// are masked anyway): exact below half the buckets, logarithmic up to `max_distance`.
/// Computed in f32 as transformers does (a bucket edge can hinge on the last bit).
pub fn relative_bucket(distance: usize, buckets: usize, max_distance: usize) -> usize {
    let exact = buckets / 2;
    if distance < exact {
        return distance;
    }
    let denom = (max_distance as f64 / exact as f64).ln() as f32;
    let large = ((distance as f32 / exact as f32).ln() / denom * (buckets - exact) as f32) as usize;
    (exact + large).min(buckets - 1)
}

impl TextDecoder {
    /// Loads `decoder.*` (the head is `decoder.lm_head`).
    pub fn load(c: &TextConfig, vb: &VarBuilder) -> Result<Self> {
        let h = c.hidden_size;
        let inner = c.num_heads * c.d_kv;
        let layers = (0..c.num_layers)
            .map(|i| {
                let l = vb.pp("layer").pp(i);
                let s = l.pp("self_attention");
                let sa = s.pp("attention");
                let x = l.pp("encoder_decoder_attention");
                let xa = x.pp("attention");
                let m = l.pp("mlp");
                let mm = m.pp("DenseReluDense");
                Ok(DecoderLayer {
                    self_q: skinny(&sa, "query", h, inner)?,
                    self_k: skinny(&sa, "key", h, inner)?,
                    self_v: skinny(&sa, "value", h, inner)?,
                    self_o: skinny(&sa, "output", inner, h)?,
                    cross_q: skinny(&xa, "query", h, inner)?,
                    cross_k: linear(&xa, "key", h, inner, false)?,
                    cross_v: linear(&xa, "value", h, inner, false)?,
                    cross_o: skinny(&xa, "output", inner, h)?,
                    mlp: GatedMlp {
                        wi_0: skinny(&mm, "wi_0", h, c.d_ff)?,
                        wi_1: skinny(&mm, "wi_1", h, c.d_ff)?,
                        wo: skinny(&mm, "wo", c.d_ff, h)?,
                    },
                    norm_self: rms_norm(&s, "layer_norm", h, c.layer_norm_epsilon)?,
                    norm_cross: rms_norm(&x, "layer_norm", h, c.layer_norm_epsilon)?,
                    norm_mlp: rms_norm(&m, "layer_norm", h, c.layer_norm_epsilon)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bias = vb
            .pp("layer.0.self_attention.attention.relative_attention_bias")
            .get_with_hints(
                (c.relative_attention_num_buckets, c.num_heads),
                "weight",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )?
            .to_vec2::<f32>()?;
        Ok(Self {
            config: c.clone(),
            embed: embedding(vb, "embed_tokens", c.vocab_size, h)?,
            layers,
            norm: rms_norm(vb, "final_layer_norm", h, c.layer_norm_epsilon)?,
            head: skinny(vb, "lm_head", h, c.vocab_size)?,
            bias,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of weights a decode step reads: every layer's projections except the cross keys
    /// and values (computed once per image), and the head.
    pub fn step_weight_bytes(&self) -> u64 {
        let c = &self.config;
        let (h, inner) = (c.hidden_size, c.num_heads * c.d_kv);
        let per_layer = 6 * h * inner + 3 * h * c.d_ff;
        ((c.num_layers * per_layer + c.vocab_size * h) * 4) as u64
    }

    /// Bytes of cross-attention keys and values a step reads per sequence over `patches`.
    pub fn cross_bytes_per_sequence(&self, patches: usize) -> u64 {
        let c = &self.config;
        (2 * c.num_layers * c.num_heads * c.d_kv * patches * 4) as u64
    }

    /// A cache for `slots` sequences of up to `context` tokens over images of `patches` rows.
    pub fn new_cache(&self, slots: usize, context: usize, patches: usize) -> Result<SlotCache> {
        let c = &self.config;
        let mk = |len: usize| -> Result<Vec<Tensor>> {
            (0..c.num_layers)
                .map(|_| Tensor::zeros((slots, c.num_heads, len, c.d_kv), DType::F32, &self.device))
                .collect()
        };
        Ok(SlotCache {
            k: mk(context)?,
            v: mk(context)?,
            cross_k: mk(patches)?,
            cross_v: mk(patches)?,
            cross_mask: Tensor::zeros((slots, patches), DType::F32, &self.device)?,
            len: vec![0; slots],
            context,
        })
    }

    /// Starts a sequence in the empty `slot`: its image's encoder states (1, p, hidden) and key
    /// mask (1, p) become the slot's cross keys and values; then the start token runs. Gives
    /// the logits of the first generated token (vocab).
    pub fn start(
        &self,
        states: &Tensor,
        mask: &Tensor,
        cache: &mut SlotCache,
        slot: usize,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (_, p, _) = states.dims3()?;
        if p != cache.cross_mask.dim(1)? {
            candle_core::bail!(
                "an image of {p} patches in a cache made for {}",
                cache.cross_mask.dim(1)?
            );
        }
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((1, p, c.num_heads, c.d_kv))?
                .transpose(1, 2)?
                .contiguous()
        };
        for (li, l) in self.layers.iter().enumerate() {
            let k = split(l.cross_k.forward(states)?)?;
            let v = split(l.cross_v.forward(states)?)?;
            cache.cross_k[li].narrow(0, slot, 1)?.slice_set(&k, 2, 0)?;
            cache.cross_v[li].narrow(0, slot, 1)?.slice_set(&v, 2, 0)?;
        }
        cache
            .cross_mask
            .slice_set(&mask.reshape((1, p))?.contiguous()?, 0, slot)?;
        cache.len[slot] = 0;
        let logits = self.run(&[c.decoder_start_token_id], slot, cache)?;
        logits.squeeze(0)
    }

    /// One decode step for the sequences in slots `0..tokens.len()`: logits (n, vocab).
    pub fn step(&self, tokens: &[u32], cache: &mut SlotCache) -> Result<Tensor> {
        self.run(tokens, 0, cache)
    }

    /// Runs `tokens` (one per slot) in slots `first..first + n`, each at its next position.
    fn run(&self, tokens: &[u32], first: usize, cache: &mut SlotCache) -> Result<Tensor> {
        let c = &self.config;
        let n = tokens.len();
        let (heads, d) = (c.num_heads, c.d_kv);
        let pos: Vec<usize> = (first..first + n).map(|i| cache.len[i]).collect();
        let span = pos.iter().map(|p| p + 1).max().unwrap_or(1);
        if span > cache.context {
            candle_core::bail!(
                "KV cache: a sequence reached {span} tokens, the cache holds {} (raise max_new_tokens)",
                cache.context
            );
        }
        // Relative-position bias and causal mask: (n, heads, 1, span).
        let mut bias = vec![0f32; n * heads * span];
        for (i, p) in pos.iter().enumerate() {
            for h in 0..heads {
                let row = &mut bias[(i * heads + h) * span..(i * heads + h + 1) * span];
                for (j, b) in row.iter_mut().enumerate() {
                    *b = if j <= *p {
                        let bucket = relative_bucket(
                            p - j,
                            c.relative_attention_num_buckets,
                            c.relative_attention_max_distance,
                        );
                        self.bias[bucket][h]
                    } else {
                        f32::NEG_INFINITY
                    };
                }
            }
        }
        let bias = Tensor::from_vec(bias, (n, heads, 1, span), &self.device)?;
        let cross_mask = cache
            .cross_mask
            .narrow(0, first, n)?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        let mut x = self
            .embed
            .forward(&Tensor::new(tokens, &self.device)?)?
            .unsqueeze(1)?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((n, 1, heads, d))?.transpose(1, 2)?.contiguous()
        };
        for (li, l) in self.layers.iter().enumerate() {
            let xn = l.norm_self.forward(&x)?;
            let q = split(l.self_q.forward(&xn)?)?;
            let k = split(l.self_k.forward(&xn)?)?;
            let v = split(l.self_v.forward(&xn)?)?;
            for (i, p) in pos.iter().enumerate() {
                cache.k[li].narrow(0, first + i, 1)?.slice_set(
                    &k.narrow(0, i, 1)?.contiguous()?,
                    2,
                    *p,
                )?;
                cache.v[li].narrow(0, first + i, 1)?.slice_set(
                    &v.narrow(0, i, 1)?.contiguous()?,
                    2,
                    *p,
                )?;
            }
            let kc = cache.k[li].narrow(0, first, n)?.narrow(2, 0, span)?;
            let vc = cache.v[li].narrow(0, first, n)?.narrow(2, 0, span)?;
            let s = (q.matmul(&kc.t()?)? + &bias)?;
            let a = candle_nn::ops::softmax_last_dim(&s)?;
            let o = a.matmul(&vc)?.reshape((n, 1, heads * d))?;
            x = (x + l.self_o.forward(&o)?)?;

            let xn = l.norm_cross.forward(&x)?;
            let q = split(l.cross_q.forward(&xn)?)?;
            let kc = cache.cross_k[li].narrow(0, first, n)?;
            let vc = cache.cross_v[li].narrow(0, first, n)?;
            let s = q.matmul(&kc.t()?)?.broadcast_add(&cross_mask)?;
            let a = candle_nn::ops::softmax_last_dim(&s)?;
            let o = a.matmul(&vc)?.reshape((n, 1, heads * d))?;
            x = (x + l.cross_o.forward(&o)?)?;

            let xn = l.norm_mlp.forward(&x)?;
            x = (&x + l.mlp.forward(&xn)?)?;
        }
        for i in first..first + n {
            cache.len[i] += 1;
        }
        let x = self.norm.forward(&x.squeeze(1)?)?;
        self.head.forward(&x)
    }
}

/// The whole model.
#[derive(Debug, Clone)]
pub struct Pix2Struct {
    pub config: Pix2StructConfig,
    pub encoder: Encoder,
    pub decoder: TextDecoder,
}

impl Pix2Struct {
    /// Loads a checkpoint in transformers' saved names (`encoder.*`, `decoder.*`).
    pub fn load(c: &Pix2StructConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            config: c.clone(),
            encoder: Encoder::load(&c.vision_config, &vb.pp("encoder"))?,
            decoder: TextDecoder::load(&c.text_config, &vb.pp("decoder"))?,
        })
    }
}

/// The sequences of a generation call: one image's encoder states and key mask each.
pub struct Sequences<'a> {
    pub model: &'a Pix2Struct,
    pub cache: SlotCache,
    /// Per sequence: (1, p, hidden) encoder states and (1, p) key mask.
    pub images: Vec<(Tensor, Tensor)>,
}

impl crate::models::generate::Decode for Sequences<'_> {
    type Error = candle_core::Error;

    fn prefill(&mut self, seq: usize, slot: usize) -> Result<u32> {
        let (states, mask) = &self.images[seq];
        let logits = self
            .model
            .decoder
            .start(states, mask, &mut self.cache, slot)?;
        logits.argmax(0)?.to_scalar::<u32>()
    }

    fn step(&mut self, last: &[u32]) -> Result<Vec<u32>> {
        let logits = self.model.decoder.step(last, &mut self.cache)?;
        logits.argmax(D::Minus1)?.to_vec1::<u32>()
    }

    fn move_slot(&mut self, from: usize, to: usize) -> Result<()> {
        self.cache.move_slot(from, to)
    }

    fn free(&mut self, slot: usize) {
        self.cache.clear(slot);
    }
}

/// Encoder states of image `i` of a batch `states` (b, p, hidden) with its mask, as
/// [`Sequences::images`] holds them.
pub fn image_of(states: &Tensor, mask: &Tensor, i: usize) -> Result<(Tensor, Tensor)> {
    Ok((
        states.i(i..i + 1)?.contiguous()?,
        mask.i(i..i + 1)?.contiguous()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_near_and_logarithmic_far() {
        // DePlot's: 32 buckets, 128 positions.
        let b: Vec<usize> = [0, 1, 15, 16, 20, 32, 64, 127, 128, 500]
            .iter()
            .map(|d| relative_bucket(*d, 32, 128))
            .collect();
        assert_eq!(b, vec![0, 1, 15, 16, 17, 21, 26, 31, 31, 31]);
        // The fixtures': 8 buckets, 16 positions; 8 sits exactly on a bucket edge.
        let b: Vec<usize> = (0..20).map(|d| relative_bucket(d, 8, 16)).collect();
        assert_eq!(
            b,
            vec![0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7]
        );
    }
}
