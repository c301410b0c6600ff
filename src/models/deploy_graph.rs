//! Reads the parameters of a deploy-form PaddlePaddle → ONNX export in forward order.
//!
//! Paddle's exporter names weights by creation counter (`conv2d_161.w_0`,
//! `learnable_affine_block_3.w_1`, `p2o.pd_op.reshape.8.0` for folded biases), so names say
//! nothing about structure. What is reliable is the graph order: nodes appear in the order the
//! forward pass runs them. [`ParamCursor`] turns the node list into a sequence of typed
//! parameter groups (a convolution with its folded bias, a batch norm, a learnable affine
//! block), and a model's loader takes them in the order its own forward pass uses them; every
//! take checks the kind and the shapes, so a structural mismatch is a load error naming the
//! position, never silent garbage. The parity tests then check the numbers.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::onnx::{Attr, OnnxModel, OnnxTensor, TensorData};

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("{model}: parameter {index}: expected {expected}, found {found}")]
    Mismatch {
        model: String,
        index: usize,
        expected: String,
        found: String,
    },
    #[error("{model}: ran out of parameters: expected {expected} at position {index}")]
    Exhausted {
        model: String,
        index: usize,
        expected: String,
    },
    #[error("{model}: {message}")]
    Bad { model: String, message: String },
    #[error(
        "{model}: {count} parameter groups left unused after loading: the architecture does not match the checkpoint"
    )]
    Leftover { model: String, count: usize },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Reads and parses an ONNX file for model `name`.
pub fn read_onnx(name: &str, path: &std::path::Path) -> Result<OnnxModel, GraphError> {
    let bytes = std::fs::read(path).map_err(|e| GraphError::Bad {
        model: name.into(),
        message: format!("{}: {e}", path.display()),
    })?;
    super::onnx::parse(&bytes).map_err(|e| GraphError::Bad {
        model: name.into(),
        message: e.to_string(),
    })
}

/// A convolution (or transposed convolution) with its bias.
#[derive(Debug, Clone)]
pub struct ConvParams {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: (usize, usize),
    /// (top, left, bottom, right) as in ONNX `pads`.
    pub pads: [usize; 4],
    pub groups: usize,
}

/// A batch norm in inference form.
#[derive(Debug, Clone)]
pub struct BnParams {
    pub scale: Tensor,
    pub bias: Tensor,
    pub mean: Tensor,
    pub var: Tensor,
    pub eps: f64,
}

#[derive(Debug, Clone)]
pub enum Param {
    Conv(ConvParams),
    ConvTranspose(ConvParams),
    BatchNorm(BnParams),
    /// Learnable affine block: `x * scale + bias` with scalars.
    Lab {
        scale: f64,
        bias: f64,
    },
    /// `x @ weight + bias`, weight [in, out].
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// Layer norm over the last axis (exported decomposed: mean, sub, pow, mean, add eps,
    /// sqrt, div, mul gamma, add beta).
    LayerNorm {
        gamma: Tensor,
        beta: Tensor,
        eps: f64,
    },
}

impl Param {
    fn kind(&self) -> String {
        match self {
            Param::Conv(c) => format!("Conv{:?}", c.weight.dims()),
            Param::ConvTranspose(c) => format!("ConvTranspose{:?}", c.weight.dims()),
            Param::BatchNorm(b) => format!("BatchNorm[{}]", b.scale.elem_count()),
            Param::Lab { .. } => "LearnableAffine".into(),
            Param::Linear { weight, .. } => format!("Linear{:?}", weight.dims()),
            Param::LayerNorm { gamma, .. } => format!("LayerNorm[{}]", gamma.elem_count()),
        }
    }
}

fn to_tensor(t: &OnnxTensor, dev: &Device) -> candle_core::Result<Tensor> {
    match &t.data {
        TensorData::F32(v) => Tensor::from_vec(v.clone(), t.dims.clone(), dev),
        _ => candle_core::bail!("tensor {} is not f32", t.name),
    }
}

fn ints(a: Option<&Attr>) -> Vec<i64> {
    match a {
        Some(Attr::Ints(v)) => v.clone(),
        _ => Vec::new(),
    }
}

/// Parameters of a model in forward order.
pub struct ParamCursor {
    model: String,
    params: Vec<Param>,
    next: usize,
}

impl ParamCursor {
    /// Extracts the parameter groups of `onnx` in graph order onto `dev`.
    pub fn new(model: &str, onnx: &OnnxModel, dev: &Device) -> Result<Self, GraphError> {
        let bad = |m: String| GraphError::Bad {
            model: model.to_string(),
            message: m,
        };
        // Identity nodes only rename; resolve names through them.
        let mut alias: HashMap<&str, &str> = HashMap::new();
        for n in &onnx.nodes {
            if n.op_type == "Identity" && !n.inputs.is_empty() && !n.outputs.is_empty() {
                alias.insert(n.outputs[0].as_str(), n.inputs[0].as_str());
            }
        }
        let resolve = |s: &str| -> String {
            let mut cur = s.to_string();
            while let Some(a) = alias.get(cur.as_str()) {
                cur = a.to_string();
            }
            cur
        };
        // A convolution's bias was folded by the exporter into the `Add` with a [1, C, 1, 1]
        // constant that consumes its output.
        let mut folded_bias: HashMap<String, &OnnxTensor> = HashMap::new();
        for n in &onnx.nodes {
            if n.op_type == "Add" && n.inputs.len() == 2 {
                let (a, b) = (&n.inputs[0], &n.inputs[1]);
                if let Some(t) = onnx.tensors.get(b)
                    && t.dims.len() == 4
                    && !onnx.tensors.contains_key(a)
                {
                    folded_bias.insert(resolve(a), t);
                }
            }
        }
        // Who consumes each (resolved) value, for patterns that span nodes.
        let mut consumers: HashMap<String, Vec<&super::onnx::OnnxNode>> = HashMap::new();
        for n in &onnx.nodes {
            for i in &n.inputs {
                consumers.entry(resolve(i)).or_default().push(n);
            }
        }
        // The constant operand of an `op` node consuming `value`, and that node's output.
        let const_consumer = |value: &str, op: &str| -> Option<(&OnnxTensor, String)> {
            consumers
                .get(&resolve(value))?
                .iter()
                .filter(|c| c.op_type == op)
                .find_map(|c| {
                    let t = c.inputs.iter().find_map(|i| onnx.tensors.get(i.as_str()))?;
                    Some((t, c.outputs.first()?.clone()))
                })
        };
        let tensor = |name: &str| {
            onnx.tensors
                .get(name)
                .ok_or_else(|| bad(format!("missing tensor {name}")))
        };
        let scalar = |name: &str| -> Result<f64, GraphError> {
            match &tensor(name)?.data {
                TensorData::F32(v) if v.len() == 1 => Ok(v[0] as f64),
                _ => Err(bad(format!("{name} is not a scalar"))),
            }
        };
        let mut params = Vec::new();
        for n in &onnx.nodes {
            match n.op_type.as_str() {
                "Conv" | "ConvTranspose" => {
                    let weight = to_tensor(tensor(&n.inputs[1])?, dev)?;
                    let out = resolve(&n.outputs[0]);
                    let bias = match n.inputs.get(2) {
                        Some(b) => Some(to_tensor(tensor(b)?, dev)?.flatten_all()?),
                        None => folded_bias
                            .get(&out)
                            .map(|t| to_tensor(t, dev).and_then(|t| t.flatten_all()))
                            .transpose()?,
                    };
                    let s = ints(n.attr("strides"));
                    let p = ints(n.attr("pads"));
                    let groups = match n.attr("group") {
                        Some(Attr::Int(g)) => *g as usize,
                        _ => 1,
                    };
                    let c = ConvParams {
                        weight,
                        bias,
                        stride: (
                            *s.first().unwrap_or(&1) as usize,
                            *s.get(1).unwrap_or(&1) as usize,
                        ),
                        pads: [0, 1, 2, 3].map(|i| p.get(i).copied().unwrap_or(0) as usize),
                        groups,
                    };
                    params.push(if n.op_type == "Conv" {
                        Param::Conv(c)
                    } else {
                        Param::ConvTranspose(c)
                    });
                }
                "BatchNormalization" => {
                    let eps = match n.attr("epsilon") {
                        Some(Attr::Float(e)) => *e as f64,
                        _ => 1e-5,
                    };
                    let t = |i: usize| -> Result<Tensor, GraphError> {
                        Ok(to_tensor(tensor(&n.inputs[i])?, dev)?)
                    };
                    params.push(Param::BatchNorm(BnParams {
                        scale: t(1)?,
                        bias: t(2)?,
                        mean: t(3)?,
                        var: t(4)?,
                        eps,
                    }));
                }
                "Mul" => {
                    // A learnable affine block is `Mul(scale, x)` then `Add(., bias)` with two
                    // one-element parameters `<name>.w_0` / `<name>.w_1`. PP-OCRv5's export calls
                    // them learnable_affine_block_N; PP-OCRv4's mobile_one_block_N (after a conv)
                    // and whswish_b_N (after hard-swish).
                    let scale = n.inputs.iter().find(|i| {
                        i.ends_with(".w_0")
                            && onnx
                                .tensors
                                .get(i.as_str())
                                .is_some_and(|t| t.numel() == 1 && t.dims.len() == 1)
                    });
                    if let Some(s) = scale {
                        let b = format!("{}.w_1", s.trim_end_matches(".w_0"));
                        params.push(Param::Lab {
                            scale: scalar(s)?,
                            bias: scalar(&b)?,
                        });
                    }
                }
                "MatMul" => {
                    let w = n
                        .inputs
                        .iter()
                        .find_map(|i| onnx.tensors.get(i.as_str()).filter(|t| t.dims.len() == 2));
                    if let Some(w) = w {
                        let bias = const_consumer(&n.outputs[0], "Add")
                            .filter(|(t, _)| t.dims.len() == 1)
                            .map(|(t, _)| to_tensor(t, dev))
                            .transpose()?;
                        params.push(Param::Linear {
                            weight: to_tensor(w, dev)?,
                            bias,
                        });
                    }
                }
                "Div" => {
                    // LayerNorm: Div(x - mean, Sqrt(var + eps)), then Mul gamma, Add beta.
                    let denom = resolve(n.inputs.get(1).map_or("", String::as_str));
                    let sqrt = onnx.nodes.iter().find(|m| {
                        m.op_type == "Sqrt"
                            && m.outputs.first().is_some_and(|o| resolve(o) == denom)
                    });
                    if let Some(sqrt) = sqrt {
                        let var = resolve(&sqrt.inputs[0]);
                        let add_eps = onnx.nodes.iter().find(|m| {
                            m.op_type == "Add"
                                && m.outputs.first().is_some_and(|o| resolve(o) == var)
                        });
                        let eps = add_eps
                            .and_then(|a| {
                                a.inputs.iter().find_map(|i| onnx.tensors.get(i.as_str()))
                            })
                            .and_then(|t| match &t.data {
                                TensorData::F32(v) if v.len() == 1 => Some(v[0] as f64),
                                _ => None,
                            })
                            .ok_or_else(|| bad("layer norm without an epsilon".into()))?;
                        let (gamma, mul_out) = const_consumer(&n.outputs[0], "Mul")
                            .ok_or_else(|| bad("layer norm without gamma".into()))?;
                        let (beta, _) = const_consumer(&mul_out, "Add")
                            .ok_or_else(|| bad("layer norm without beta".into()))?;
                        params.push(Param::LayerNorm {
                            gamma: to_tensor(gamma, dev)?,
                            beta: to_tensor(beta, dev)?,
                            eps,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            model: model.to_string(),
            params,
            next: 0,
        })
    }

    fn take(&mut self, expected: &str) -> Result<(usize, Param), GraphError> {
        let index = self.next;
        let p = self
            .params
            .get(index)
            .cloned()
            .ok_or_else(|| GraphError::Exhausted {
                model: self.model.clone(),
                index,
                expected: expected.into(),
            })?;
        self.next += 1;
        Ok((index, p))
    }

    fn mismatch(&self, index: usize, expected: &str, found: &Param) -> GraphError {
        GraphError::Mismatch {
            model: self.model.clone(),
            index,
            expected: expected.into(),
            found: found.kind(),
        }
    }

    /// The next convolution; `in_ch`/`out_ch`/`kernel` are checked where given.
    pub fn conv(
        &mut self,
        groups_depthwise: bool,
        kernel: Option<usize>,
    ) -> Result<ConvParams, GraphError> {
        let what = if groups_depthwise {
            "depthwise Conv"
        } else {
            "Conv"
        };
        let (i, p) = self.take(what)?;
        match p {
            Param::Conv(c) => {
                let (out_c, _, kh, _) = c.weight.dims4()?;
                let dw_ok = (c.groups == out_c && out_c > 1) == groups_depthwise;
                let k_ok = kernel.is_none_or(|k| k == kh);
                if dw_ok && k_ok {
                    Ok(c)
                } else {
                    Err(self.mismatch(i, &format!("{what} k{kernel:?}"), &Param::Conv(c)))
                }
            }
            other => Err(self.mismatch(i, what, &other)),
        }
    }

    pub fn conv_transpose(&mut self) -> Result<ConvParams, GraphError> {
        match self.take("ConvTranspose")? {
            (_, Param::ConvTranspose(c)) => Ok(c),
            (i, other) => Err(self.mismatch(i, "ConvTranspose", &other)),
        }
    }

    pub fn batch_norm(&mut self) -> Result<BnParams, GraphError> {
        match self.take("BatchNorm")? {
            (_, Param::BatchNorm(b)) => Ok(b),
            (i, other) => Err(self.mismatch(i, "BatchNorm", &other)),
        }
    }

    pub fn lab(&mut self) -> Result<(f64, f64), GraphError> {
        match self.take("LearnableAffine")? {
            (_, Param::Lab { scale, bias }) => Ok((scale, bias)),
            (i, other) => Err(self.mismatch(i, "LearnableAffine", &other)),
        }
    }

    pub fn linear(&mut self) -> Result<(Tensor, Option<Tensor>), GraphError> {
        match self.take("Linear")? {
            (_, Param::Linear { weight, bias }) => Ok((weight, bias)),
            (i, other) => Err(self.mismatch(i, "Linear", &other)),
        }
    }

    pub fn layer_norm(&mut self) -> Result<(Tensor, Tensor, f64), GraphError> {
        match self.take("LayerNorm")? {
            (_, Param::LayerNorm { gamma, beta, eps }) => Ok((gamma, beta, eps)),
            (i, other) => Err(self.mismatch(i, "LayerNorm", &other)),
        }
    }

    /// Every parameter must have been used.
    pub fn finish(self) -> Result<(), GraphError> {
        let left = self.params.len() - self.next;
        if left == 0 {
            Ok(())
        } else {
            Err(GraphError::Leftover {
                model: self.model,
                count: left,
            })
        }
    }
}
