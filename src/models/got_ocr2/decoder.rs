//! GOT-OCR 2.0's language model: a Qwen2 decoder (q/k/v projections with bias, o without,
//! SiLU-gated MLP, RMSNorm, rotary positions with θ = 1e6, tied head) with a KV cache of
//! *slots*, so several sequences of different lengths decode together and a finished one's slot
//! is refilled by a new sequence (continuous batching).
//!
//! Why not candle-transformers' `qwen2`: its `Model::forward` takes token ids only (GOT splices
//! image features into the embeddings), shares one position offset across the batch (sequences
//! in a continuous batch sit at different positions), its KV cache grows by `cat` for the whole
//! batch (no per-sequence slots), and it builds the rotary tables in the model dtype. The
//! layers themselves are candle-nn's (`Linear`, `RmsNorm`, `Embedding`, `rotary_emb::rope`,
//! `ops::softmax_last_dim`); only the cache and the attention around it are ours, and the
//! linear layers of decode steps run through `ops::skinny` (candle's matmul packs the weights
//! for 2–16 rows: batched steps cost 3–4× a single one; see that module).
//!
//! **The cache.** Per layer one key and one value tensor of shape (slots, kv_heads, context,
//! head_dim). The sequences of a decode step occupy slots `0..n` (the generation loop keeps
//! them packed: [`SlotCache::move_slot`]), so attention reads `narrow`ed views of the cache, no
//! copy; each row attends to its own positions through an additive mask (0 or −∞). A prefill
//! runs one sequence alone and writes its keys and values into its slot.
//!
//! **Batch invariance.** A sequence's prefill is always computed alone; in a decode step every
//! row's attention is its own (masked positions contribute exactly zero), and the projections
//! of up to 16 rows compute each output the same way whatever the rows (`ops::skinny`), so a
//! sequence's tokens are identical alone and in any batch (tested against transformers in
//! `tests/got_ocr2.rs`).

use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use crate::models::ops::skinny::SkinnyLinear;

use super::TextConfig;
use crate::models::checkpoint::{self, TORCH_DEFAULT, rms_norm};

/// One decoder layer.
#[derive(Debug, Clone)]
struct Layer {
    q: SkinnyLinear,
    k: SkinnyLinear,
    v: SkinnyLinear,
    o: SkinnyLinear,
    gate: SkinnyLinear,
    up: SkinnyLinear,
    down: SkinnyLinear,
    norm1: RmsNorm,
    norm2: RmsNorm,
}

fn linear(vb: &VarBuilder, name: &str, i: usize, o: usize, bias: bool) -> Result<SkinnyLinear> {
    Ok(SkinnyLinear::new(checkpoint::linear(vb, name, i, o, bias)?))
}

impl Layer {
    fn load(c: &TextConfig, vb: &VarBuilder) -> Result<Self> {
        let (h, d) = (c.hidden_size, c.head_dim());
        let att = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Self {
            q: linear(&att, "q_proj", h, c.num_attention_heads * d, true)?,
            k: linear(&att, "k_proj", h, c.num_key_value_heads * d, true)?,
            v: linear(&att, "v_proj", h, c.num_key_value_heads * d, true)?,
            o: linear(&att, "o_proj", c.num_attention_heads * d, h, false)?,
            gate: linear(&mlp, "gate_proj", h, c.intermediate_size, false)?,
            up: linear(&mlp, "up_proj", h, c.intermediate_size, false)?,
            down: linear(&mlp, "down_proj", c.intermediate_size, h, false)?,
            norm1: rms_norm(vb, "input_layernorm", h, c.rms_norm_eps)?,
            norm2: rms_norm(vb, "post_attention_layernorm", h, c.rms_norm_eps)?,
        })
    }

    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.gate.forward(x)?.silu()?;
        self.down.forward(&(g * self.up.forward(x)?)?)
    }
}

/// The key/value cache of up to `slots` sequences of up to `context` positions each.
#[derive(Debug)]
pub struct SlotCache {
    /// Per layer: (slots, kv_heads, context, head_dim).
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Positions filled in each slot.
    len: Vec<usize>,
    context: usize,
}

impl SlotCache {
    pub fn slots(&self) -> usize {
        self.len.len()
    }

    pub fn context(&self) -> usize {
        self.context
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
            .map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64)
            .sum()
    }

    /// Moves the sequence in slot `from` to slot `to` (the generation loop keeps the live
    /// sequences in slots `0..n`); `from` becomes free.
    pub fn move_slot(&mut self, from: usize, to: usize) -> Result<()> {
        if from == to {
            return Ok(());
        }
        if self.len[from] > 0 {
            self.copy_slot(from, to)?;
        }
        self.len[to] = self.len[from];
        self.len[from] = 0;
        Ok(())
    }

    /// Copies the sequence in slot `from` into slot `to` too (benchmarks fill a batch with
    /// one prefilled prompt).
    pub fn copy_slot(&mut self, from: usize, to: usize) -> Result<()> {
        let n = self.len[from];
        for t in self.k.iter().chain(&self.v) {
            // A fresh copy: the view may be strided, and `slice_set` refuses a source that
            // shares the destination's storage.
            let src = t.narrow(0, from, 1)?.narrow(2, 0, n)?;
            let src = if src.is_contiguous() {
                src.copy()?
            } else {
                src.contiguous()?
            };
            t.narrow(0, to, 1)?.slice_set(&src, 2, 0)?;
        }
        self.len[to] = n;
        Ok(())
    }

    /// Empties `slot`.
    pub fn clear(&mut self, slot: usize) {
        self.len[slot] = 0;
    }

    /// Writes `k`, `v` (1, kv_heads, t, head_dim) of layer `layer` at positions `at..at + t`
    /// of `slot`.
    fn write(&self, layer: usize, slot: usize, at: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let t = k.dim(2)?;
        if at + t > self.context {
            candle_core::bail!(
                "KV cache: a sequence reached {} positions, the cache holds {} (raise max_new_tokens' context)",
                at + t,
                self.context
            );
        }
        self.k[layer]
            .narrow(0, slot, 1)?
            .slice_set(&k.contiguous()?, 2, at)?;
        self.v[layer]
            .narrow(0, slot, 1)?
            .slice_set(&v.contiguous()?, 2, at)
    }
}

/// The Qwen2 decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub config: TextConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    head: SkinnyLinear,
    /// Rotary tables (max positions, head_dim / 2), in f32 as transformers builds them.
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl Decoder {
    /// Loads the decoder from `vb` (the checkpoint's `language_model.model`) and the head
    /// from `head` (None: tied to the embeddings).
    pub fn load(c: &TextConfig, vb: &VarBuilder, head: Option<&VarBuilder>) -> Result<Self> {
        let embed_w = vb.pp("embed_tokens").get_with_hints(
            (c.vocab_size, c.hidden_size),
            "weight",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let embed = Embedding::new(embed_w.clone(), c.hidden_size);
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(c, &vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = rms_norm(vb, "norm", c.hidden_size, c.rms_norm_eps)?;
        let head = SkinnyLinear::new(match head {
            Some(h) if !c.tie_word_embeddings => Linear::new(
                h.get_with_hints((c.vocab_size, c.hidden_size), "weight", TORCH_DEFAULT)?,
                None,
            ),
            _ => Linear::new(embed_w, None),
        });
        let (cos, sin) = rope_tables(c, vb.device())?;
        Ok(Self {
            config: c.clone(),
            embed,
            layers,
            norm,
            head,
            cos,
            sin,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A cache for `slots` sequences of up to `context` positions.
    pub fn new_cache(&self, slots: usize, context: usize) -> Result<SlotCache> {
        let c = &self.config;
        let context = context.min(self.cos.dim(0)?);
        let shape = (slots, c.num_key_value_heads, context, c.head_dim());
        let mk = || Tensor::zeros(shape, DType::F32, &self.device);
        Ok(SlotCache {
            k: (0..c.num_hidden_layers)
                .map(|_| mk())
                .collect::<Result<_>>()?,
            v: (0..c.num_hidden_layers)
                .map(|_| mk())
                .collect::<Result<_>>()?,
            len: vec![0; slots],
            context,
        })
    }

    /// The embeddings of `ids`: (t, hidden).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(ids, &self.device)?;
        self.embed.forward(&ids)
    }

    /// Runs one sequence's prompt embeddings (t, hidden) into `slot` (which must be empty) and
    /// gives the logits at its last position (vocab).
    pub fn prefill(&self, embeds: &Tensor, cache: &mut SlotCache, slot: usize) -> Result<Tensor> {
        let c = &self.config;
        let (t, _) = embeds.dims2()?;
        let (heads, kvh, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let group = heads / kvh;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        // Causal mask for the grouped query rows (group × t rows per kv head, head-major).
        let mask: Vec<f32> = (0..group * t)
            .flat_map(|r| {
                let qi = r % t;
                (0..t).map(move |j| if j <= qi { 0.0 } else { f32::NEG_INFINITY })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (group * t, t), &self.device)?;
        let scale = 1.0 / (d as f64).sqrt();
        let mut x = embeds.unsqueeze(0)?;
        for (li, l) in self.layers.iter().enumerate() {
            let xn = l.norm1.forward(&x)?;
            let q =
                l.q.forward(&xn)?
                    .reshape((1, t, heads, d))?
                    .transpose(1, 2)?;
            let k = l.k.forward(&xn)?.reshape((1, t, kvh, d))?.transpose(1, 2)?;
            let v = l.v.forward(&xn)?.reshape((1, t, kvh, d))?.transpose(1, 2)?;
            let q = candle_nn::rotary_emb::rope(&q.contiguous()?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k.contiguous()?, &cos, &sin)?;
            let v = v.contiguous()?;
            cache.write(li, slot, 0, &k, &v)?;
            let qg = q.reshape((1, kvh, group * t, d))?;
            let s = ((qg * scale)?.matmul(&k.t()?)?).broadcast_add(&mask)?;
            let p = candle_nn::ops::softmax_last_dim(&s)?;
            let o = p
                .matmul(&v)?
                .reshape((1, heads, t, d))?
                .transpose(1, 2)?
                .reshape((1, t, heads * d))?;
            x = (x + l.o.forward(&o)?)?;
            let xn = l.norm2.forward(&x)?;
            x = (&x + l.mlp(&xn)?)?;
        }
        cache.len[slot] = t;
        let last = x.i((0, t - 1))?.unsqueeze(0)?;
        self.head.forward(&self.norm.forward(&last)?)?.squeeze(0)
    }

    /// One decode step for the sequences in slots `0..tokens.len()`: each gets its last token
    /// at its next position; gives the logits (n, vocab).
    pub fn step(&self, tokens: &[u32], cache: &mut SlotCache) -> Result<Tensor> {
        let c = &self.config;
        let n = tokens.len();
        let (heads, kvh, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let group = heads / kvh;
        let pos: Vec<u32> = (0..n).map(|i| cache.len[i] as u32).collect();
        let span = pos.iter().map(|p| *p as usize + 1).max().unwrap_or(1);
        let pos_t = Tensor::new(pos.as_slice(), &self.device)?;
        let cos = self.cos.index_select(&pos_t, 0)?.unsqueeze(1)?;
        let sin = self.sin.index_select(&pos_t, 0)?.unsqueeze(1)?;
        let mask: Vec<f32> = pos
            .iter()
            .flat_map(|p| {
                (0..span).map(move |j| {
                    if j <= *p as usize {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (n, 1, 1, span), &self.device)?;
        let scale = 1.0 / (d as f64).sqrt();
        let mut x = self.embed(tokens)?.unsqueeze(1)?;
        for (li, l) in self.layers.iter().enumerate() {
            let xn = l.norm1.forward(&x)?;
            let q =
                l.q.forward(&xn)?
                    .reshape((n, 1, heads, d))?
                    .transpose(1, 2)?;
            let k = l.k.forward(&xn)?.reshape((n, 1, kvh, d))?.transpose(1, 2)?;
            let v = l.v.forward(&xn)?.reshape((n, 1, kvh, d))?.transpose(1, 2)?;
            let q = candle_nn::rotary_emb::rope(&q.contiguous()?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k.contiguous()?, &cos, &sin)?;
            let v = v.contiguous()?;
            for (i, p) in pos.iter().enumerate() {
                cache.write(li, i, *p as usize, &k.narrow(0, i, 1)?, &v.narrow(0, i, 1)?)?;
            }
            let kc = cache.k[li].narrow(0, 0, n)?.narrow(2, 0, span)?;
            let vc = cache.v[li].narrow(0, 0, n)?.narrow(2, 0, span)?;
            let qg = q.reshape((n, kvh, group, d))?;
            let s = ((qg * scale)?.matmul(&kc.t()?)?).broadcast_add(&mask)?;
            let p = candle_nn::ops::softmax_last_dim(&s)?;
            let o = p.matmul(&vc)?.reshape((n, 1, heads * d))?;
            x = (x + l.o.forward(&o)?)?;
            let xn = l.norm2.forward(&x)?;
            x = (&x + l.mlp(&xn)?)?;
        }
        for i in 0..n {
            cache.len[i] += 1;
        }
        let x = self.norm.forward(&x.squeeze(1)?)?;
        self.head.forward(&x)
    }
}

/// transformers' Qwen2 rotary tables: inverse frequencies θ^(−2i/d) in f32, times the position
/// in f32, cosine and sine (the halves are duplicated by `rope`).
fn rope_tables(c: &TextConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let d = c.head_dim();
    let n = c.max_position_embeddings;
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / (c.theta() as f32).powf((2 * i) as f32 / d as f32))
        .collect();
    let mut cos = Vec::with_capacity(n * d / 2);
    let mut sin = Vec::with_capacity(n * d / 2);
    for p in 0..n {
        for f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, d / 2), device)?,
        Tensor::from_vec(sin, (n, d / 2), device)?,
    ))
}

/// Greedy choice of each row of `logits` (n, vocab).
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_vec1::<u32>()
}
