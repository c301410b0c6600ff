//! GOT-OCR 2.0 (`GotOcr2ForConditionalGeneration`, stepfun-ai/GOT-OCR-2.0-hf; Wei et al. 2024,
//! "General OCR Theory", arXiv:2409.01704): a SAM ViT-B image encoder (1024² → 64×64 patches,
//! windowed and global attention with decomposed relative positions, a conv neck to 256
//! channels), a projector (two 3×3 stride-2 convolutions and a linear: 256 image tokens per
//! tile) and a Qwen2 decoder that writes the text token by token.
//!
//! - **Vision**: candle-transformers' `segment_anything::ImageEncoderViT`, unchanged, through a
//!   renaming [`VarBuilder`] (SAM's tensor names → the checkpoint's, [`sam_name`]). Its
//!   absolute positions are added with a same-shape add, so it encodes one image per call:
//!   [`GotOcr2::vision_features`] loops over the images of a batch (a 4096-token image already
//!   fills the matrix products; on CPU batching images buys nothing). Its limits are checked at
//!   load ([`VisionConfig::check`]): MLP width 4 × hidden, LayerNorm eps 1e-6.
//! - **Projector**: candle-nn convolutions and linear.
//! - **Decoder**: ours ([`decoder`]), with a slot KV cache for batched and continuous
//!   generation; why candle-transformers' qwen2 does not fit is in that module's doc.
//! - **Processor**: [`processor`] (resize, normalization, tiles, the chat prompt).
//! - **Stage**: [`stage`] (the OCR stage, region or page scope, oracle lengths for untrained
//!   weights).

pub mod decoder;
pub mod processor;
pub mod stage;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::models::checkpoint::{TORCH_DEFAULT, uniform};

/// The vision tower (`vision_config`); defaults are GOT-OCR 2.0's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub output_channels: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub window_size: usize,
    pub global_attn_indexes: Vec<usize>,
    pub mlp_dim: usize,
    pub layer_norm_eps: f64,
    pub qkv_bias: bool,
    pub use_abs_pos: bool,
    pub use_rel_pos: bool,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            output_channels: 256,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 1024,
            patch_size: 16,
            window_size: 14,
            global_attn_indexes: vec![2, 5, 8, 11],
            mlp_dim: 3072,
            layer_norm_eps: 1e-6,
            qkv_bias: true,
            use_abs_pos: true,
            use_rel_pos: true,
        }
    }
}

impl VisionConfig {
    /// What candle-transformers' SAM encoder fixes: a checkpoint that differs is refused by
    /// name rather than computed wrongly.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.mlp_dim != 4 * self.hidden_size {
            return Err(format!(
                "vision mlp_dim {} ≠ 4 × hidden_size {} (the SAM encoder fixes it)",
                self.mlp_dim, self.hidden_size
            ));
        }
        if (self.layer_norm_eps - 1e-6).abs() > 1e-12 {
            return Err(format!(
                "vision layer_norm_eps {} ≠ 1e-6 (the SAM encoder fixes it)",
                self.layer_norm_eps
            ));
        }
        if !self.use_abs_pos || !self.use_rel_pos {
            return Err("vision use_abs_pos and use_rel_pos must be true".into());
        }
        if !self.image_size.is_multiple_of(self.patch_size * 4) {
            return Err(format!(
                "image_size {} must be a multiple of 4 × patch_size",
                self.image_size
            ));
        }
        Ok(())
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Image tokens per tile (two stride-2 convolutions after the patch grid).
    pub fn image_tokens(&self) -> usize {
        let g = self.grid().div_ceil(4);
        g * g
    }
}

/// The language model (`text_config`, Qwen2); defaults are GOT-OCR 2.0's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// transformers v5 writes θ here instead (`rope_parameters.rope_theta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

/// transformers v5's rotary parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_type: Option<String>,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 151_860,
            hidden_size: 1024,
            intermediate_size: 2816,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            num_key_value_heads: 16,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_parameters: None,
            max_position_embeddings: 32_768,
            tie_word_embeddings: true,
        }
    }
}

impl TextConfig {
    /// The rotary base, wherever the config put it.
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .map_or(self.rope_theta, |r| r.rope_theta)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Bytes of f32 weights one decode step reads (every layer, the norm and the head; the
    /// embedding rows read are negligible): why a step for 8 sequences costs little more than
    /// one for 1.
    pub fn decode_weight_bytes(&self) -> u64 {
        let (h, kv) = (self.hidden_size, self.num_key_value_heads * self.head_dim());
        let layer = h * h * 2 + h * kv * 2 + 3 * h * self.intermediate_size;
        ((layer * self.num_hidden_layers + self.vocab_size * h) * 4) as u64
    }
}

/// The whole model's configuration (a checkpoint's `config.json`, or a card's full size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GotConfig {
    #[serde(default)]
    pub vision_config: VisionConfig,
    #[serde(default)]
    pub text_config: TextConfig,
    /// `<imgpad>`: the prompt positions the image features replace.
    #[serde(default = "default_image_token")]
    pub image_token_index: u32,
}

fn default_image_token() -> u32 {
    151_859
}

impl Default for GotConfig {
    fn default() -> Self {
        Self {
            vision_config: VisionConfig::default(),
            text_config: TextConfig::default(),
            image_token_index: default_image_token(),
        }
    }
}

impl GotConfig {
    /// A checkpoint's `config.json` (transformers' names; missing keys take GOT's values).
    pub fn from_hf(v: &serde_json::Value) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        cfg.vision_config.check()?;
        let t = &cfg.text_config;
        if let Some(kind) = t
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_type.as_deref())
            && kind != "default"
        {
            return Err(format!(
                "text rope_type `{kind}`: only the default rotary embedding is supported"
            ));
        }
        if !t
            .num_attention_heads
            .is_multiple_of(t.num_key_value_heads.max(1))
        {
            return Err(
                "text num_attention_heads must be a multiple of num_key_value_heads".into(),
            );
        }
        Ok(cfg)
    }
}

/// SAM's tensor name (as candle-transformers' encoder asks for it) → GOT's checkpoint name.
pub fn sam_name(name: &str) -> String {
    let n = name
        .replace("patch_embed.proj.", "patch_embed.projection.")
        .replace(".blocks.", ".layers.")
        .replace(".norm1.", ".layer_norm1.")
        .replace(".norm2.", ".layer_norm2.");
    n.replace("neck.0.", "neck.conv1.")
        .replace("neck.1.", "neck.layer_norm1.")
        .replace("neck.2.", "neck.conv2.")
        .replace("neck.3.", "neck.layer_norm2.")
}

/// The checkpoint's prefixes: transformers saves `vision_tower`, `multi_modal_projector`,
/// `language_model.model` (older conversions) or the same under `model.` (v5 in memory).
struct Prefixes {
    vision: &'static str,
    projector: &'static str,
    language: &'static str,
    head: &'static str,
}

fn prefixes(vb: &VarBuilder) -> Prefixes {
    if vb.contains_tensor("model.language_model.embed_tokens.weight") {
        Prefixes {
            vision: "model.vision_tower",
            projector: "model.multi_modal_projector",
            language: "model.language_model",
            head: "lm_head",
        }
    } else {
        Prefixes {
            vision: "vision_tower",
            projector: "multi_modal_projector",
            language: "language_model.model",
            head: "language_model.lm_head",
        }
    }
}

/// GOT-OCR 2.0.
pub struct GotOcr2 {
    pub config: GotConfig,
    vision: candle_transformers::models::segment_anything::image_encoder::ImageEncoderViT,
    conv1: Conv2d,
    conv2: Conv2d,
    proj: Linear,
    pub decoder: decoder::Decoder,
}

impl GotOcr2 {
    pub fn load(config: &GotConfig, vb: &VarBuilder<'static>) -> Result<Self> {
        let v = &config.vision_config;
        v.check().map_err(candle_core::Error::msg)?;
        let p = prefixes(vb);
        let sam = vb.clone().rename_f(sam_name).pp(p.vision);
        let vision =
            candle_transformers::models::segment_anything::image_encoder::ImageEncoderViT::new(
                v.image_size,
                v.patch_size,
                3,
                v.hidden_size,
                v.num_hidden_layers,
                v.num_attention_heads,
                v.output_channels,
                v.qkv_bias,
                true,
                true,
                v.window_size,
                &v.global_attn_indexes,
                sam,
            )?;
        let t = &config.text_config;
        let pv = vb.pp(p.projector);
        let conv = |name: &str, i: usize, o: usize| -> Result<Conv2d> {
            let w = pv
                .pp(name)
                .get_with_hints((o, i, 3, 3), "weight", TORCH_DEFAULT)?;
            Ok(Conv2d::new(
                w,
                None,
                Conv2dConfig {
                    padding: 1,
                    stride: 2,
                    ..Default::default()
                },
            ))
        };
        let c = v.output_channels;
        let conv1 = conv("conv_upsampler1", c, 2 * c)?;
        let conv2 = conv("conv_upsampler2", 2 * c, t.hidden_size)?;
        let pl = pv.pp("multimodal_projector");
        let proj = Linear::new(
            pl.get_with_hints((t.hidden_size, t.hidden_size), "weight", TORCH_DEFAULT)?,
            Some(pl.get_with_hints(
                t.hidden_size,
                "bias",
                uniform(1.0 / (t.hidden_size as f32).sqrt()),
            )?),
        );
        let head = vb.pp(p.head);
        let has_head = head.contains_tensor("weight");
        let decoder = decoder::Decoder::load(t, &vb.pp(p.language), has_head.then_some(&head))?;
        Ok(Self {
            config: config.clone(),
            vision,
            conv1,
            conv2,
            proj,
            decoder,
        })
    }

    /// The vision tower's output (n, output_channels, grid, grid) for pixels (n, 3, S, S),
    /// image by image (see the module doc).
    pub fn vision_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let n = pixels.dim(0)?;
        let outs = (0..n)
            .map(|i| self.vision.forward(&pixels.narrow(0, i, 1)?))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&outs, 0)
    }

    /// The projector: vision features → image tokens (n, tokens, text hidden).
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        let x = self.conv2.forward(&self.conv1.forward(features)?)?;
        let x = x.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        self.proj.forward(&x)
    }

    /// Image tokens for pixels (n, 3, S, S): (n, tokens, text hidden).
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        self.project(&self.vision_features(pixels)?)
    }

    /// A prompt's embeddings (t, hidden) with the rows of its `<imgpad>` tokens replaced, in
    /// order, by `image` (tokens, hidden; several tiles' tokens concatenated).
    pub fn prompt_embeddings(&self, ids: &[u32], image: &Tensor) -> Result<Tensor> {
        let e = self.decoder.embed(ids)?;
        let pad = self.config.image_token_index;
        let n_pad = ids.iter().filter(|&&i| i == pad).count();
        let n_img = image.dim(0)?;
        if n_pad != n_img {
            candle_core::bail!("the prompt has {n_pad} image tokens, the image gives {n_img}");
        }
        // Splice runs of text rows and image rows in order.
        let mut parts = Vec::new();
        let (mut i, mut img_at) = (0, 0);
        while i < ids.len() {
            let is_pad = ids[i] == pad;
            let start = i;
            while i < ids.len() && (ids[i] == pad) == is_pad {
                i += 1;
            }
            if is_pad {
                parts.push(image.narrow(0, img_at, i - start)?);
                img_at += i - start;
            } else {
                parts.push(e.narrow(0, start, i - start)?);
            }
        }
        Tensor::cat(&parts, 0)
    }
}

/// Prompts with their images, generated through the shared loop (`models::generate`): the
/// loop's [`Decode`](crate::models::generate::Decode) for GOT. Sequence `i` is `prompts[i]`
/// with `images[i]` (its tiles' tokens) spliced in at its `<imgpad>` tokens; its embeddings
/// are made at its prefill. A refill (continuous batching from the stage's queue) pushes its
/// sequences' prompts and images after the others.
pub struct Sequences<'a> {
    pub model: &'a GotOcr2,
    pub cache: decoder::SlotCache,
    pub prompts: Vec<Vec<u32>>,
    pub images: Vec<Tensor>,
}

impl crate::models::generate::Decode for Sequences<'_> {
    type Error = candle_core::Error;

    fn prefill(&mut self, seq: usize, slot: usize) -> Result<u32> {
        let e = self
            .model
            .prompt_embeddings(&self.prompts[seq], &self.images[seq])?;
        let logits = self.model.decoder.prefill(&e, &mut self.cache, slot)?;
        logits.argmax(0)?.to_scalar::<u32>()
    }

    fn step(&mut self, last: &[u32]) -> Result<Vec<u32>> {
        let logits = self.model.decoder.step(last, &mut self.cache)?;
        decoder::argmax_rows(&logits)
    }

    fn move_slot(&mut self, from: usize, to: usize) -> Result<()> {
        self.cache.move_slot(from, to)
    }

    fn free(&mut self, slot: usize) {
        self.cache.clear(slot);
    }
}
