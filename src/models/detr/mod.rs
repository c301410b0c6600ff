//! DETR (Carion et al., "End-to-End Object Detection with Transformers", 2020,
//! <https://arxiv.org/abs/2005.12872>) and Table Transformer (Smock et al., "PubTables-1M",
//! 2022, <https://arxiv.org/abs/2110.00061>) in candle: one implementation for both, read from
//! the Hugging Face checkpoints (`DetrForObjectDetection`, `DetrForSegmentation`,
//! `TableTransformerForObjectDetection`) with their tensor names.
//!
//! - [`resnet`]: the ResNet backbone (timm and HF-ResNet namings, frozen batch norm folded);
//! - here: sine position embedding, the transformer (post-norm for DETR, pre-norm with a final
//!   encoder layer norm for Table Transformer), the class and box heads;
//! - [`preprocess`] / [`postprocess`]: transformers' `DetrImageProcessor` (resize rules, PIL
//!   bilinear resampling, normalization, padding with a pixel mask; softmax, threshold, box
//!   conversion).
//!
//! Checkpoints: cmarkea/detr-layout-detection is a `DetrForSegmentation` checkpoint (every
//! tensor under `detr.`, plus a mask head). The detector is read from under `detr.`; the mask
//! head, which costs about 4.5× the detector and whose masks the pipeline discards, is not
//! loaded.
//!
//! Correctness: `tests/detr_parity.rs` runs tiny random-weight checkpoints written by
//! transformers' `save_pretrained` (`tests/fixtures/detr/generate.py`) and matches the
//! reference's features, encoder and decoder states, logits, boxes and post-processed
//! detections within 1e-4.
//!
//! **Speed (CPU).** Attention runs as one fused op ([`crate::models::ops::attention`]: per
//! image, head and block of queries, scores kept in cache, heads read in place); layer norm
//! and softmax are vectorized row ops; the backbone's convolutions are the shared im2col-free
//! kernels with batch norm folded in. Other devices take candle's operations.
//!
//! **Batching.** Images of different sizes are padded bottom/right to the batch's largest and
//! carry their valid size (the pixel mask). Attention ignores padded positions, as in the
//! reference, and the backbone also zeroes its padded activations before every spatial
//! convolution (see [`resnet`]), so each image's outputs in a batch equal its outputs alone —
//! the property a benchmark comparing batch sizes needs (every strategy must find the same
//! regions). transformers skips that step, so its batched outputs drift from its unbatched
//! ones near the padding; ours match its unbatched outputs at any batch size.

pub mod mask_head;
pub mod postprocess;
pub mod preprocess;
pub mod resnet;
pub mod stage;

use candle_core::{DType, Device, Module, Result, Tensor};
use serde_json::Value;

use candle_nn::{Init, VarBuilder};

use crate::models::checkpoint::{TORCH_DEFAULT, uniform};
use crate::models::layers::{self, LayerNorm, Linear};
use crate::models::ops::attention::AttentionOp;
use crate::models::ops::pointwise::sigmoid;
use resnet::{ResNet, ResNetConfig};

/// Post-norm (DETR) or pre-norm (Table Transformer) transformer layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// `x = norm(x + f(x))`; no final encoder norm (DETR).
    Post,
    /// `x = x + f(norm(x))`; a final encoder norm (Table Transformer, `normalize_before`).
    Pre,
}

/// The architecture's shape: what `config.json` says, in our terms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetrConfig {
    pub backbone: ResNetConfig,
    pub norm: Norm,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_heads: usize,
    pub decoder_heads: usize,
    pub encoder_ffn: usize,
    pub decoder_ffn: usize,
    pub num_queries: usize,
    /// Class names in id order (the logits have one more column: no object).
    pub labels: Vec<String>,
}

impl DetrConfig {
    /// From a transformers `config.json` (`model_type` `detr` or `table-transformer`).
    /// `backbone` overrides the backbone the config names (for timm models other than
    /// resnet18/34/50/101, e.g. the parity fixtures' tiny ones).
    pub fn from_hf(v: &Value, backbone: Option<ResNetConfig>) -> std::result::Result<Self, String> {
        let norm = match v["model_type"].as_str() {
            Some("detr") => Norm::Post,
            Some("table-transformer") => Norm::Pre,
            other => {
                return Err(format!(
                    "config.json: model_type {other:?} is not a DETR (`detr` or `table-transformer`)"
                ));
            }
        };
        if v["dilation"].as_bool() == Some(true) {
            return Err("config.json: dilation (DC5 backbones) is not supported".into());
        }
        if let Some(p) = v["position_embedding_type"].as_str()
            && p != "sine"
        {
            return Err(format!(
                "config.json: position_embedding_type `{p}` is not supported (sine only)"
            ));
        }
        if let Some(a) = v["activation_function"].as_str()
            && a != "relu"
        {
            return Err(format!(
                "config.json: activation_function `{a}` is not supported (relu only)"
            ));
        }
        let backbone = match backbone {
            Some(b) => b,
            None => backbone_from_hf(v)?,
        };
        let n = |key: &str, default: usize| -> usize {
            v[key].as_u64().map_or(default, |x| x as usize)
        };
        let labels = labels_from_hf(v)?;
        Ok(Self {
            backbone,
            norm,
            d_model: n("d_model", 256),
            encoder_layers: n("encoder_layers", 6),
            decoder_layers: n("decoder_layers", 6),
            encoder_heads: n("encoder_attention_heads", 8),
            decoder_heads: n("decoder_attention_heads", 8),
            encoder_ffn: n("encoder_ffn_dim", 2048),
            decoder_ffn: n("decoder_ffn_dim", 2048),
            num_queries: n("num_queries", 100),
            labels,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }
}

/// `id2label` in id order.
fn labels_from_hf(v: &Value) -> std::result::Result<Vec<String>, String> {
    let map = v["id2label"]
        .as_object()
        .ok_or("config.json: no id2label (the class names)")?;
    let mut labels = vec![String::new(); map.len()];
    for (k, name) in map {
        let i: usize = k
            .parse()
            .map_err(|_| format!("config.json: id2label key `{k}` is not a number"))?;
        let slot = labels
            .get_mut(i)
            .ok_or_else(|| format!("config.json: id2label ids are not 0..{}", map.len()))?;
        *slot = name.as_str().unwrap_or_default().to_string();
    }
    Ok(labels)
}

/// The backbone a DETR `config.json` describes: an HF ResNet `backbone_config`, a timm one
/// (`backbone_config.model_type = timm_backbone`, transformers 5), or the legacy
/// `use_timm_backbone` + `backbone` fields (the hub checkpoints).
fn backbone_from_hf(v: &Value) -> std::result::Result<ResNetConfig, String> {
    let bc = &v["backbone_config"];
    let timm = |name: &str| {
        ResNetConfig::timm(name).ok_or_else(|| {
            format!(
                "config.json: timm backbone `{name}` is not supported (resnet18, resnet34, \
                 resnet50, resnet101)"
            )
        })
    };
    if bc.is_object() {
        return match bc["model_type"].as_str() {
            Some("resnet") => {
                if bc["downsample_in_bottleneck"].as_bool() == Some(true)
                    || bc["downsample_in_first_stage"].as_bool() == Some(true)
                {
                    return Err("config.json: backbone_config downsample_in_bottleneck / \
                         downsample_in_first_stage are not supported"
                        .into());
                }
                let list = |key: &str, default: &[usize]| -> Vec<usize> {
                    bc[key].as_array().map_or(default.to_vec(), |a| {
                        a.iter()
                            .filter_map(|x| x.as_u64().map(|x| x as usize))
                            .collect()
                    })
                };
                let block = match bc["layer_type"].as_str().unwrap_or("bottleneck") {
                    "basic" => resnet::Block::Basic,
                    "bottleneck" => resnet::Block::Bottleneck,
                    other => return Err(format!("config.json: ResNet layer_type `{other}`")),
                };
                Ok(ResNetConfig {
                    naming: resnet::Naming::HfResnet,
                    block,
                    depths: list("depths", &[3, 4, 6, 3]),
                    stem: bc["embedding_size"].as_u64().map_or(64, |x| x as usize),
                    widths: list("hidden_sizes", &[256, 512, 1024, 2048]),
                })
            }
            Some("timm_backbone") => timm(bc["backbone"].as_str().unwrap_or("resnet50")),
            other => Err(format!(
                "config.json: backbone_config model_type {other:?} is not supported (resnet, \
                 timm_backbone)"
            )),
        };
    }
    if v["use_timm_backbone"].as_bool().unwrap_or(true) {
        timm(v["backbone"].as_str().unwrap_or("resnet50"))
    } else {
        Err("config.json: use_timm_backbone is false but there is no backbone_config".into())
    }
}

/// Multi-head attention with position embeddings added to queries and keys (not values).
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

/// A `torch.nn.Linear` (weight [out, in], PyTorch's default initialization), its weight
/// stored [in, out] (see [`layers::linear`]).
pub(crate) fn linear(vb: &VarBuilder<'_>, din: usize, dout: usize) -> Result<Linear> {
    let weight = vb
        .get_with_hints((dout, din), "weight", TORCH_DEFAULT)?
        .t()?
        .contiguous()?;
    let bias = vb.get_with_hints(dout, "bias", uniform(1.0 / (din as f32).sqrt()))?;
    layers::linear(weight, Some(bias))
}

fn layer_norm(vb: &VarBuilder<'_>, d: usize) -> Result<LayerNorm> {
    Ok(LayerNorm {
        gamma: vb.get_with_hints(d, "weight", Init::Const(1.0))?,
        beta: vb.get_with_hints(d, "bias", Init::Const(0.0))?,
        eps: 1e-5,
    })
}

impl Attention {
    fn load(w: &VarBuilder<'_>, d: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            q: linear(&w.pp("q_proj"), d, d)?,
            k: linear(&w.pp("k_proj"), d, d)?,
            v: linear(&w.pp("v_proj"), d, d)?,
            out: linear(&w.pp("out_proj"), d, d)?,
            heads,
        })
    }

    /// `query` [B, Lq, d] (+ `query_pos`), `key` [B, Lk, d] (+ `key_pos`), values from `value`;
    /// `mask` the padded keys, if any.
    fn forward(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: Option<&KeyMask>,
    ) -> Result<Tensor> {
        let (b, lq, d) = query.dims3()?;
        let lk = key.dim(1)?;
        let hd = d / self.heads;
        let scale = (hd as f64).powf(-0.5);
        let q = self.q.forward(query)?;
        let k = self.k.forward(key)?;
        let v = self.v.forward(value)?;
        if q.device().is_cpu() && q.dtype() == DType::F32 {
            // One fused op (see ops::attention): no per-head copies, no score tensor.
            let op = AttentionOp {
                heads: self.heads,
                scale: scale as f32,
                masked: mask.map(|m| m.masked.as_slice()),
            };
            let o = q
                .contiguous()?
                .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)?;
            return self.out.forward(&o);
        }
        let split = |t: Tensor, l: usize| -> Result<Tensor> {
            t.reshape((b, l, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split((q * scale)?, lq)?;
        let k = split(k, lk)?;
        let v = split(v, lk)?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(&m.additive)?,
            None => scores,
        };
        let p = crate::models::ops::fused::softmax_rows(&scores)?;
        let o = p.matmul(&v)?.transpose(1, 2)?.reshape((b, lq, d))?;
        self.out.forward(&o)
    }
}

struct Ffn {
    fc1: Linear,
    fc2: Linear,
}

impl Ffn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.relu()?)
    }
}

struct EncoderLayer {
    attn: Attention,
    attn_norm: LayerNorm,
    ffn: Ffn,
    ffn_norm: LayerNorm,
}

struct DecoderLayer {
    self_attn: Attention,
    self_norm: LayerNorm,
    cross_attn: Attention,
    cross_norm: LayerNorm,
    ffn: Ffn,
    ffn_norm: LayerNorm,
}

/// What one forward pass gives (batch first).
pub struct DetrOutput {
    /// [B, Q, C + 1] class logits (the last column: no object).
    pub logits: Tensor,
    /// [B, Q, 4] boxes (cx, cy, w, h) relative to each image's unpadded size.
    pub boxes: Tensor,
    /// [B, C_backbone, h, w] the backbone's last feature map.
    pub features: Tensor,
    /// [B, h·w, d] the encoder's output.
    pub encoder_hidden: Tensor,
    /// [B, Q, d] the decoder's output (after its final layer norm).
    pub decoder_hidden: Tensor,
    /// [B, Q, H/4, W/4] mask logits, when the mask head is loaded.
    pub masks: Option<Tensor>,
}

/// The detector: backbone, transformer, heads.
pub struct Detr {
    pub config: DetrConfig,
    backbone: ResNet,
    input_projection: candle_core::Tensor,
    input_projection_bias: Tensor,
    query_pos: Tensor,
    encoder: Vec<EncoderLayer>,
    encoder_norm: Option<LayerNorm>,
    decoder: Vec<DecoderLayer>,
    decoder_norm: LayerNorm,
    class_head: Linear,
    box_head: [Linear; 3],
    mask_head: Option<mask_head::MaskHead>,
    device: Device,
}

impl Detr {
    /// True when `checkpoint` is a `DetrForSegmentation` one (the detector under `detr.`).
    /// Only for real checkpoints: random weights have every tensor.
    pub fn is_segmentation_checkpoint(checkpoint: &VarBuilder<'_>) -> bool {
        checkpoint.contains_tensor("detr.model.input_projection.weight")
    }

    /// Loads from a checkpoint's root. A `DetrForSegmentation` checkpoint's detector lives under
    /// `detr.`; its mask head (beside it) is loaded only with `masks`.
    pub fn load(
        cfg: &DetrConfig,
        root: &VarBuilder<'_>,
        segmentation: bool,
        masks: bool,
    ) -> Result<Self> {
        let top = if segmentation {
            root.pp("detr")
        } else {
            root.clone()
        };
        let m = top.pp("model");
        let d = cfg.d_model;
        let backbone = ResNet::load(
            &cfg.backbone,
            &m.pp("backbone").pp("conv_encoder").pp("model"),
        )?;
        let cb = cfg.backbone.channels();
        let ip = m.pp("input_projection");
        let input_projection = ip
            .get_with_hints((d, cb, 1, 1), "weight", TORCH_DEFAULT)?
            .reshape((d, cb))?;
        let input_projection_bias =
            ip.get_with_hints(d, "bias", uniform(1.0 / (cb as f32).sqrt()))?;
        let query_pos = m.pp("query_position_embeddings").get_with_hints(
            (cfg.num_queries, d),
            "weight",
            uniform(1.0),
        )?;
        let ffn = |w: &VarBuilder<'_>, dim: usize| -> Result<Ffn> {
            Ok(Ffn {
                fc1: linear(&w.pp("fc1"), d, dim)?,
                fc2: linear(&w.pp("fc2"), dim, d)?,
            })
        };
        let encoder = (0..cfg.encoder_layers)
            .map(|i| {
                let l = m.pp("encoder").pp("layers").pp(i.to_string());
                Ok(EncoderLayer {
                    attn: Attention::load(&l.pp("self_attn"), d, cfg.encoder_heads)?,
                    attn_norm: layer_norm(&l.pp("self_attn_layer_norm"), d)?,
                    ffn: ffn(&l, cfg.encoder_ffn)?,
                    ffn_norm: layer_norm(&l.pp("final_layer_norm"), d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let encoder_norm = match cfg.norm {
            Norm::Pre => Some(layer_norm(&m.pp("encoder").pp("layernorm"), d)?),
            Norm::Post => None,
        };
        let decoder = (0..cfg.decoder_layers)
            .map(|i| {
                let l = m.pp("decoder").pp("layers").pp(i.to_string());
                Ok(DecoderLayer {
                    self_attn: Attention::load(&l.pp("self_attn"), d, cfg.decoder_heads)?,
                    self_norm: layer_norm(&l.pp("self_attn_layer_norm"), d)?,
                    cross_attn: Attention::load(&l.pp("encoder_attn"), d, cfg.decoder_heads)?,
                    cross_norm: layer_norm(&l.pp("encoder_attn_layer_norm"), d)?,
                    ffn: ffn(&l, cfg.decoder_ffn)?,
                    ffn_norm: layer_norm(&l.pp("final_layer_norm"), d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let decoder_norm = layer_norm(&m.pp("decoder").pp("layernorm"), d)?;
        let class_head = linear(&top.pp("class_labels_classifier"), d, cfg.num_classes() + 1)?;
        let bp = top.pp("bbox_predictor").pp("layers");
        let box_head = [
            linear(&bp.pp("0"), d, d)?,
            linear(&bp.pp("1"), d, d)?,
            linear(&bp.pp("2"), d, 4)?,
        ];
        let mask_head = if masks {
            // Random weights have every tensor, a detector-only checkpoint no mask head.
            if !root.contains_tensor("mask_head.out_lay.weight") {
                candle_core::bail!(
                    "masks need a DetrForSegmentation checkpoint (tensors under `detr.` and a \
                     `mask_head`); this one is a detector only"
                );
            }
            Some(mask_head::MaskHead::load(
                root,
                d,
                cfg.encoder_heads,
                &cfg.backbone.widths,
            )?)
        } else {
            None
        };
        Ok(Self {
            config: cfg.clone(),
            backbone,
            mask_head,
            input_projection,
            input_projection_bias,
            query_pos,
            encoder,
            encoder_norm,
            decoder,
            decoder_norm,
            class_head,
            box_head,
            device: root.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs `pixels` [B, 3, H, W]; `sizes` holds each image's unpadded (h, w) (all (H, W) when
    /// none is padded).
    pub fn forward(&self, pixels: &Tensor, sizes: &[(usize, usize)]) -> Result<DetrOutput> {
        let (b, _, h, w) = pixels.dims4()?;
        if sizes.len() != b {
            candle_core::bail!("{} sizes for a batch of {b}", sizes.len());
        }
        let padded = sizes.iter().any(|s| *s != (h, w));
        let mut valid = padded.then(|| sizes.to_vec());
        let stages = self
            .backbone
            .forward_stages(pixels, &mut valid, self.mask_head.is_some())?;
        let features = stages.last().expect("a ResNet has stages").0.clone();
        let (_, cb, fh, fw) = features.dims4()?;
        let d = self.config.d_model;
        // Valid feature sizes: exact for padded batches, the whole map otherwise.
        let fvalid = valid.unwrap_or_else(|| vec![(fh, fw); b]);
        // 1×1 input projection as a matrix product over [B, h·w, C].
        let flat = features.flatten_from(2)?.transpose(1, 2)?; // [B, hw, C]
        let src = flat
            .reshape((b * fh * fw, cb))?
            .matmul(&self.input_projection.t()?)?
            .broadcast_add(&self.input_projection_bias)?
            .reshape((b, fh * fw, d))?;
        let pos = sine_position_embedding(&fvalid, fh, fw, d, &self.device)?;
        let mask = if padded {
            Some(KeyMask::new(&fvalid, fh, fw, &self.device)?)
        } else {
            None
        };
        let memory_input = src.clone();
        let mut x = src;
        for l in &self.encoder {
            x = self.encoder_layer(l, &x, &pos, mask.as_ref())?;
        }
        if let Some(n) = &self.encoder_norm {
            x = n.forward(&x)?;
        }
        let memory = x;
        let qpos = self
            .query_pos
            .unsqueeze(0)?
            .broadcast_as((b, self.config.num_queries, d))?;
        let mut t = Tensor::zeros((b, self.config.num_queries, d), DType::F32, &self.device)?;
        // The cross-attention keys (memory + position) are the same in every decoder layer.
        let key = memory.broadcast_add(&pos)?;
        for l in &self.decoder {
            t = self.decoder_layer(l, &t, &qpos, &memory, &key, mask.as_ref())?;
        }
        let t = self.decoder_norm.forward(&t)?;
        let logits = self.class_head.forward(&t)?;
        let bx = self.box_head[0].forward(&t)?.relu()?;
        let bx = self.box_head[1].forward(&bx)?.relu()?;
        let boxes = sigmoid(&self.box_head[2].forward(&bx)?)?;
        let masks = match &self.mask_head {
            Some(head) => {
                let projected = src_projected(&memory_input, b, d, fh, fw)?;
                Some(head.forward(
                    &projected,
                    &memory,
                    &t,
                    &stages,
                    mask.as_ref().map(|m| &m.additive),
                )?)
            }
            None => None,
        };
        Ok(DetrOutput {
            masks,
            logits,
            boxes,
            features,
            encoder_hidden: memory,
            decoder_hidden: t,
        })
    }

    fn encoder_layer(
        &self,
        l: &EncoderLayer,
        x: &Tensor,
        pos: &Tensor,
        mask: Option<&KeyMask>,
    ) -> Result<Tensor> {
        match self.config.norm {
            Norm::Post => {
                let qk = x.broadcast_add(pos)?;
                let x = l
                    .attn_norm
                    .forward(&(x + l.attn.forward(&qk, &qk, x, mask)?)?)?;
                l.ffn_norm.forward(&(&x + l.ffn.forward(&x)?)?)
            }
            Norm::Pre => {
                let n = l.attn_norm.forward(x)?;
                let qk = n.broadcast_add(pos)?;
                let x = (x + l.attn.forward(&qk, &qk, &n, mask)?)?;
                let n = l.ffn_norm.forward(&x)?;
                &x + l.ffn.forward(&n)?
            }
        }
    }

    fn decoder_layer(
        &self,
        l: &DecoderLayer,
        t: &Tensor,
        qpos: &Tensor,
        memory: &Tensor,
        key: &Tensor,
        mask: Option<&KeyMask>,
    ) -> Result<Tensor> {
        match self.config.norm {
            Norm::Post => {
                let qk = (t + qpos)?;
                let t = l
                    .self_norm
                    .forward(&(t + l.self_attn.forward(&qk, &qk, t, None)?)?)?;
                let q = (&t + qpos)?;
                let t = l
                    .cross_norm
                    .forward(&(&t + l.cross_attn.forward(&q, key, memory, mask)?)?)?;
                l.ffn_norm.forward(&(&t + l.ffn.forward(&t)?)?)
            }
            Norm::Pre => {
                let n = l.self_norm.forward(t)?;
                let qk = (&n + qpos)?;
                let t = (t + l.self_attn.forward(&qk, &qk, &n, None)?)?;
                let n = l.cross_norm.forward(&t)?;
                let q = (&n + qpos)?;
                let t = (&t + l.cross_attn.forward(&q, key, memory, mask)?)?;
                let n = l.ffn_norm.forward(&t)?;
                &t + l.ffn.forward(&n)?
            }
        }
    }
}

/// The projected feature map [B, d, h, w] back from its flattened [B, h·w, d] form.
fn src_projected(src: &Tensor, b: usize, d: usize, h: usize, w: usize) -> Result<Tensor> {
    src.transpose(1, 2)?.reshape((b, d, h, w))
}

/// DETR's sine position embedding for a feature map of `h`×`w` whose image `i` is valid on
/// `valid[i]`: `[B, h·w, d]`, the first d/2 channels encode y, the rest x, each as
/// `sin(p/T_0), cos(p/T_0), sin(p/T_2), …` with `p` the normalized cumulative position
/// (`cumsum(mask) / (last + 1e-6) · 2π`) and `T_i = 10000^(2⌊i/2⌋/(d/2))`.
pub fn sine_position_embedding(
    valid: &[(usize, usize)],
    h: usize,
    w: usize,
    d: usize,
    device: &Device,
) -> Result<Tensor> {
    let npf = d / 2;
    let scale = 2.0 * std::f32::consts::PI;
    let dim_t: Vec<f32> = (0..npf)
        .map(|i| 10000f32.powf((2 * (i / 2)) as f32 / npf as f32))
        .collect();
    let mut out = vec![0f32; valid.len() * h * w * d];
    for (b, &(vh, vw)) in valid.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                // cumsum of the mask along y (in column x) and along x (in row y).
                let col_valid = x < vw;
                let row_valid = y < vh;
                let cy = if col_valid { (y + 1).min(vh) } else { 0 } as f32;
                let last_y = if col_valid { vh } else { 0 } as f32;
                let cx = if row_valid { (x + 1).min(vw) } else { 0 } as f32;
                let last_x = if row_valid { vw } else { 0 } as f32;
                let ye = cy / (last_y + 1e-6) * scale;
                let xe = cx / (last_x + 1e-6) * scale;
                let o = &mut out[((b * h + y) * w + x) * d..][..d];
                for i in 0..npf {
                    let (py, px) = (ye / dim_t[i], xe / dim_t[i]);
                    if i % 2 == 0 {
                        o[i] = py.sin();
                        o[npf + i] = px.sin();
                    } else {
                        o[i] = py.cos();
                        o[npf + i] = px.cos();
                    }
                }
            }
        }
    }
    Tensor::from_vec(out, (valid.len(), h * w, d), device)
}

/// The padded positions of a batch's feature maps, as attention masks them.
pub struct KeyMask {
    /// [B, 1, 1, h·w]: 0 on valid positions, a large negative value on padding (added to
    /// the scores, as transformers does).
    pub additive: Tensor,
    /// [B × h·w]: true on padding (the fused CPU attention's form).
    pub masked: Vec<bool>,
}

impl KeyMask {
    fn new(valid: &[(usize, usize)], h: usize, w: usize, device: &Device) -> Result<Self> {
        let mut masked = vec![true; valid.len() * h * w];
        for (b, &(vh, vw)) in valid.iter().enumerate() {
            for y in 0..vh.min(h) {
                masked[(b * h + y) * w..(b * h + y) * w + vw.min(w)].fill(false);
            }
        }
        let additive: Vec<f32> = masked
            .iter()
            .map(|&m| if m { f32::MIN } else { 0.0 })
            .collect();
        Ok(Self {
            additive: Tensor::from_vec(additive, (valid.len(), 1, 1, h * w), device)?,
            masked,
        })
    }
}
