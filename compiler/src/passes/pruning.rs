//! Matching and rewriting helpers shared by the structured-pruning passes (`dead-heads`,
//! `dead-channels`): recognising a linear layer with constant weights, slicing constants
//! along an axis, and rebuilding a region of the graph with smaller constants.

use std::collections::HashMap;

use crate::Error;
use crate::ir::{Binary, DType, Data, Graph, NodeIndex, Op, Requant, Tensor, ValueId};

/// A `MatMul(x, W)` or `Gemm(x, W, C)` whose weight (and bias) are f32 constants, or a
/// [`Op::QGemm`] (what `fold-requant` makes of a quantized one) whose int8 weight, int32
/// bias and multipliers are constants.
#[derive(Clone, Debug)]
pub struct Linear {
    pub node: NodeIndex,
    pub input: ValueId,
    pub weight: ValueId,
    /// The axis of `W` that indexes output features (1 for `[in,out]`, 0 for Gemm `trans_b`).
    pub out_axis: usize,
    /// Gemm's `C` when it is a per-output-feature constant (`[out]` or `[1,out]`); QGemm's
    /// int32 bias (`[out]`).
    pub bias: Option<ValueId>,
    /// Gemm's scale of the product (1 for MatMul and QGemm).
    pub alpha: f32,
    /// Gemm's scale of `C`.
    pub beta: f32,
    pub output: ValueId,
    /// For a QGemm: its requantization, input zero point and multipliers.
    pub quant: Option<QLinear>,
}

/// The integer side of a [`Linear`] that is a QGemm: `acc[.., n] = Σ_k (x[.., k] −
/// x_zero)·W[k, n] + bias[n]`, exact in int32, then stored as int32 or requantized per
/// output channel (`clamp(zero_point + round(acc·M[n] / 2^shift))`).
#[derive(Clone, Debug)]
pub struct QLinear {
    pub requant: Option<Requant>,
    /// The input's zero point (a constant, or DynamicQuantizeLinear's computed one).
    pub x_zero: ValueId,
    /// The multipliers (`[1]` or `[out]`), when requantized.
    pub multipliers: Option<ValueId>,
}

impl Linear {
    /// The axis of `W` that indexes input features.
    pub fn in_axis(&self) -> usize {
        1 - self.out_axis
    }

    /// The node's input index of the weight.
    pub fn weight_input(&self) -> usize {
        if self.quant.is_some() { 2 } else { 1 }
    }

    /// The node's input index of the bias.
    pub fn bias_input(&self) -> usize {
        if self.quant.is_some() { 3 } else { 2 }
    }

    /// What the layer computes for an output feature whose weights are all zero, one value
    /// per output feature: Gemm's `beta·C` (or 0) in f32; for a QGemm its bias requantized
    /// (or the int32 bias itself), evaluated by the interpreter's QGemm.
    pub fn at_zero(&self, g: &Graph) -> Result<Tensor, Error> {
        let konst = |v: Option<ValueId>, what: &str| {
            v.and_then(|v| g.konst(v))
                .ok_or_else(|| Error::Internal(format!("a linear layer's {what} is not constant")))
        };
        let n_out = konst(Some(self.weight), "weight")?.shape[self.out_axis];
        let Some(q) = &self.quant else {
            let mut data = vec![0.0; n_out];
            if let Some(c) = self.bias.and_then(|c| g.konst(c)).and_then(|t| t.as_f32()) {
                for (i, x) in data.iter_mut().enumerate() {
                    *x = self.beta * c[i % c.len()];
                }
            }
            return Ok(Tensor::f32(vec![n_out], data));
        };
        let a = Tensor {
            dtype: DType::U8,
            shape: vec![1, 1],
            data: Data::U8(vec![0]),
        };
        let za = Tensor {
            dtype: DType::U8,
            shape: vec![],
            data: Data::U8(vec![0]),
        };
        let w = Tensor {
            dtype: DType::I8,
            shape: vec![1, n_out],
            data: Data::I8(vec![0; n_out]),
        };
        let mut args = vec![&a, &za, &w, konst(self.bias, "int32 bias")?];
        if q.multipliers.is_some() {
            args.push(konst(q.multipliers, "multipliers")?);
        }
        let mut out = crate::interp::eval(&g.node(self.node).op, &args)
            .map_err(|e| Error::Internal(format!("QGemm at zero: {e}")))?
            .remove(0);
        out.shape = vec![n_out];
        Ok(out)
    }
}

/// The constant data of `v`, if it is an f32 one.
pub fn const_f32(g: &Graph, v: ValueId) -> Option<&Tensor> {
    g.konst(v).filter(|t| t.dtype == DType::F32)
}

/// Recognises `n` as a linear layer with constant weights. Gemm must not transpose `A`
/// (alpha and beta scale whole results, so slicing features is valid for any values).
pub fn linear(g: &Graph, n: NodeIndex) -> Option<Linear> {
    let node = g.node(n);
    if let Op::QGemm { requant } = node.op {
        return qlinear(g, n, requant);
    }
    let (out_axis, alpha, beta) = match node.op {
        Op::MatMul => (1, 1.0, 1.0),
        Op::Gemm {
            trans_a: false,
            trans_b,
            alpha,
            beta,
        } => (usize::from(!trans_b), alpha, beta),
        _ => return None,
    };
    let weight = *node.inputs.get(1)?;
    let w = const_f32(g, weight)?;
    if w.shape.len() != 2 || const_f32(g, node.inputs[0]).is_some() {
        return None;
    }
    let bias = match (&node.op, node.inputs.get(2)) {
        (Op::Gemm { .. }, Some(&c)) => {
            let t = const_f32(g, c)?;
            let n_out = w.shape[out_axis];
            let ok = match t.shape.as_slice() {
                [n] => *n == n_out,
                [1, n] => *n == n_out,
                _ => false,
            };
            if !ok {
                return None;
            }
            Some(c)
        }
        _ => None,
    };
    Some(Linear {
        node: n,
        input: node.inputs[0],
        weight,
        out_axis,
        bias,
        alpha,
        beta,
        output: node.outputs[0],
        quant: None,
    })
}

/// A QGemm with a constant `[K, N]` int8 weight, `[N]` int32 bias and `[1]` or `[N]`
/// multipliers.
fn qlinear(g: &Graph, n: NodeIndex, requant: Option<Requant>) -> Option<Linear> {
    let node = g.node(n);
    let [x, x_zero, weight, bias, rest @ ..] = node.inputs.as_slice() else {
        return None;
    };
    let w = g.konst(*weight).filter(|t| t.dtype == DType::I8)?;
    if w.shape.len() != 2 || g.konst(*x).is_some() {
        return None;
    }
    let n_out = w.shape[1];
    let b = g.konst(*bias).filter(|t| t.dtype == DType::I32)?;
    if b.shape != [n_out] {
        return None;
    }
    let multipliers = match (requant, rest) {
        (Some(_), [m]) => {
            let t = g.konst(*m)?;
            (t.shape == [1] || t.shape == [n_out]).then_some(*m)?;
            Some(*m)
        }
        (None, []) => None,
        _ => return None,
    };
    Some(Linear {
        node: n,
        input: *x,
        weight: *weight,
        out_axis: 1,
        bias: Some(*bias),
        alpha: 1.0,
        beta: 1.0,
        output: node.outputs[0],
        quant: Some(QLinear {
            requant,
            x_zero: *x_zero,
            multipliers,
        }),
    })
}

/// Keeps, along `axis`, the groups of `group` consecutive indices listed in `keep`
/// (group `k` is indices `k*group .. (k+1)*group`). `None` for data of a dtype the
/// program does not carry (f32, i32, i64, i8, u8 and bool are sliced).
pub fn slice_groups(t: &Tensor, axis: usize, group: usize, keep: &[usize]) -> Option<Tensor> {
    let bytes = t.to_le_bytes()?;
    let size = t.dtype.bits() / 8;
    let outer: usize = t.shape[..axis].iter().product();
    let n = t.shape[axis];
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * keep.len() * group * inner * size);
    for o in 0..outer {
        for &k in keep {
            for i in k * group..(k + 1) * group {
                let base = (o * n + i) * inner * size;
                out.extend_from_slice(&bytes[base..base + inner * size]);
            }
        }
    }
    let mut shape = t.shape.clone();
    shape[axis] = keep.len() * group;
    Tensor::from_le_bytes(t.dtype, shape, &out)
}

/// A test of whether element `i` of `t` is exactly `value` (`-0.0` counts as 0); `None`
/// for non-numeric data. Element by element on the tensor's own storage: the pruning
/// passes ask it once per head or channel of weights of millions of elements.
fn equal(t: &Tensor, value: i64) -> Option<Box<dyn Fn(usize) -> bool + '_>> {
    fn int<T: Copy + Into<i64>>(v: &[T], value: i64) -> Box<dyn Fn(usize) -> bool + '_> {
        Box::new(move |i| v[i].into() == value)
    }
    Some(match &t.data {
        Data::F32(v) => {
            let f = value as f32;
            Box::new(move |i| v[i] == f)
        }
        Data::I64(v) => int(v, value),
        Data::I32(v) => int(v, value),
        Data::I16(v) => int(v, value),
        Data::I8(v) => int(v, value),
        Data::U32(v) => int(v, value),
        Data::U16(v) => int(v, value),
        Data::U8(v) => int(v, value),
        _ => return None,
    })
}

/// Whether every element of group `k` (indices `k*group .. (k+1)*group` along `axis`) is
/// exactly zero (`-0.0` counts as zero). `false` for non-numeric data.
pub fn group_is_zero(t: &Tensor, axis: usize, group: usize, k: usize) -> bool {
    group_is(t, axis, group, k, 0)
}

/// Whether every element of group `k` is exactly `value` (a quantized tensor's zero
/// point, say).
pub fn group_is(t: &Tensor, axis: usize, group: usize, k: usize, value: i64) -> bool {
    let Some(x) = equal(t, value) else {
        return false;
    };
    let outer: usize = t.shape[..axis].iter().product();
    let n = t.shape[axis];
    let inner: usize = t.shape[axis + 1..].iter().product();
    (0..outer).all(|o| {
        (k * group..(k + 1) * group).all(|i| {
            let base = (o * n + i) * inner;
            (base..base + inner).all(&x)
        })
    })
}

/// Whether every element of `t` is exactly `value`.
pub fn all_equal(t: &Tensor, value: i64) -> bool {
    equal(t, value).is_some_and(|x| (0..t.len()).all(x))
}

/// Whether `n` is a QuantizeLinear or DequantizeLinear with per-tensor (one-element)
/// scale and zero point: elementwise, so it keeps any head or channel layout.
pub fn is_per_tensor_quant(g: &Graph, n: NodeIndex) -> bool {
    let node = g.node(n);
    matches!(
        node.op,
        Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. }
    ) && node.inputs[1..]
        .iter()
        .all(|&v| g.value(v).num_elements() == 1)
}

/// Whether `n` is a lookup table on 8-bit values (`Gather(table, x)` with a constant 1-D
/// table of 256 entries, what `fold-requant` makes of an elementwise function between
/// quantizations): elementwise in `x`.
pub fn is_table_lookup(g: &Graph, n: NodeIndex) -> bool {
    let node = g.node(n);
    matches!(node.op, Op::Gather { axis: 0 })
        && g.konst(node.inputs[0]).is_some_and(|t| t.shape.len() == 1)
        && g.konst(node.inputs[1]).is_none()
        && matches!(g.value(node.inputs[1]).dtype, DType::U8 | DType::I8)
}

/// Whether `v` is a finite scalar for finite inputs: a finite one-element constant,
/// DynamicQuantizeLinear's scale (a finite range over 255, or 1), or a product of such
/// (the scale chain `y_scale · w_scale` of dynamic quantization). `0·v` is then 0.
pub fn finite_scalar(g: &Graph, v: ValueId) -> bool {
    if g.value(v).num_elements() != 1 {
        return false;
    }
    if let Some(t) = g.konst(v) {
        return t.to_f64s().is_some_and(|x| x.iter().all(|x| x.is_finite()));
    }
    let Some(p) = g.value(v).producer else {
        return false;
    };
    let node = g.node(p);
    match node.op {
        Op::DynamicQuantizeLinear => node.outputs.get(1) == Some(&v),
        Op::Binary(Binary::Mul) => node.inputs.iter().all(|&i| finite_scalar(g, i)),
        _ => false,
    }
}

/// The axis of an operand of rank `operand_rank` that numpy broadcasting aligns with
/// `axis` of a result of rank `result_rank`, if the operand has one.
pub fn aligned_axis(axis: usize, result_rank: usize, operand_rank: usize) -> Option<usize> {
    (axis + operand_rank).checked_sub(result_rank)
}

/// Whether `op` computes each output element from the same-position elements of its
/// (broadcast) inputs, so it commutes with slicing any axis.
pub fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_)
            | Op::Binary(_)
            | Op::Clip { .. }
            | Op::Gelu { .. }
            | Op::Compare(_)
            | Op::Logic(_)
            | Op::Not
            | Op::Where
            | Op::Cast { .. }
            | Op::QBinary(_)
    )
}

/// A region of the graph to rebuild with some constant inputs and ops replaced.
#[derive(Default)]
pub struct Rebuild {
    /// The region's nodes in topological order.
    pub nodes: Vec<NodeIndex>,
    /// New constant data for input `i` of node `n`.
    pub consts: HashMap<(NodeIndex, usize), Tensor>,
    /// New ops (with new shape attributes) for some nodes.
    pub ops: HashMap<NodeIndex, Op>,
    /// Region values read outside the region; their readers are moved to the new values.
    pub exits: Vec<ValueId>,
}

impl Rebuild {
    /// Adds the rebuilt nodes (shape inference checks every one), moves the exits' readers to
    /// them and removes the old nodes. New values and constants keep the old names.
    pub fn apply(self, g: &mut Graph) -> Result<(), Error> {
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        let mut added = Vec::new();
        let mut new_consts = Vec::new();
        for &n in &self.nodes {
            let node = g.node(n).clone();
            let mut inputs = Vec::with_capacity(node.inputs.len());
            for (i, &v) in node.inputs.iter().enumerate() {
                inputs.push(match self.consts.get(&(n, i)) {
                    Some(t) => {
                        let name = g.value(v).name.clone();
                        let c = g.add_const(name, t.clone());
                        new_consts.push((c, v));
                        c
                    }
                    None => map.get(&v).copied().unwrap_or(v),
                });
            }
            let op = self.ops.get(&n).cloned().unwrap_or(node.op.clone());
            let (_, outs) = g.add_node(node.name.clone(), op, inputs).map_err(|e| {
                Error::Internal(format!("rebuilding {} with fewer features: {e}", node.name))
            })?;
            for (&o, &new) in node.outputs.iter().zip(&outs) {
                map.insert(o, new);
            }
            added.push(outs);
        }
        for &e in &self.exits {
            let new = *map
                .get(&e)
                .ok_or_else(|| Error::Internal("a rebuilt region's exit has no producer".into()))?;
            g.replace_uses(e, new);
        }
        for &n in &self.nodes {
            let old = g.node(n).outputs.clone();
            g.remove_node(n);
            for o in old {
                let name = g.value(o).name.clone();
                g.value_mut(map[&o]).name = name;
            }
        }
        for (new, old) in new_consts {
            keep_names_unique(g, new, old);
        }
        Ok(())
    }
}

/// A sliced constant takes its original's name; when the original is still read
/// elsewhere (an initializer shared by several layers), the copy gets a fresh name so
/// printed graphs keep one definition per name.
pub fn keep_names_unique(g: &mut Graph, new: ValueId, old: ValueId) {
    if !g.is_used(old) {
        return;
    }
    let base = g.value(old).name.clone();
    let taken = |g: &Graph, name: &str| g.values().any(|(v, val)| val.name == name && g.is_used(v));
    let mut name = format!("{base}.pruned");
    let mut i = 2;
    while taken(g, &name) {
        name = format!("{base}.pruned{i}");
        i += 1;
    }
    g.value_mut(new).name = name;
}

/// Replaces every reader of linear layer `lin`'s output by what it computes when its input
/// features are all dead ([`Linear::at_zero`] broadcast: zero, Gemm's `beta·C`, or a
/// QGemm's requantized bias). Then removes `nodes`, which must be the only other readers of
/// each other's outputs.
pub fn replace_with_constant(
    g: &mut Graph,
    lin: &Linear,
    nodes: &[NodeIndex],
) -> Result<(), Error> {
    let row = lin.at_zero(g)?;
    let val = g.value(lin.output);
    let (name, shape) = (val.name.clone(), val.shape.clone());
    let n: usize = shape.iter().product();
    let bytes = row.to_le_bytes().ok_or_else(|| {
        Error::Internal("a constant projection result of no program dtype".into())
    })?;
    let size = row.dtype.bits() / 8;
    let per_row = bytes.len().max(1);
    let data: Vec<u8> = (0..n * size).map(|i| bytes[i % per_row]).collect();
    let t = Tensor::from_le_bytes(row.dtype, shape, &data)
        .ok_or_else(|| Error::Internal("a constant projection result".into()))?;
    let z = g.add_const(name, t);
    g.replace_uses(lin.output, z);
    for &n in nodes {
        g.remove_node(n);
    }
    Ok(())
}

/// The common prefix of `names` cut back to the last `/` or `.` separator, without the
/// separator; empty when there is none.
pub fn common_prefix(names: &[&str]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(
            first
                .bytes()
                .zip(n.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let p = first.get(..len).unwrap_or("");
    match p.rfind(['/', '.']) {
        Some(i) => p[..i].trim_start_matches('/').to_string(),
        None => String::new(),
    }
}

/// A name for a matched region, for the pass report: the common prefix of the projections'
/// node names (TorchScript's `/m/encoder/layer.0/attention/...`), else of the named
/// constants its nodes read (dynamo's `m.encoder.layer.0.attention.self.query.bias`), else
/// the first projection's node name.
pub fn region_label(g: &Graph, projections: &[NodeIndex], nodes: &[NodeIndex]) -> String {
    let names: Vec<&str> = projections
        .iter()
        .map(|&n| g.node(n).name.as_str())
        .collect();
    let p = common_prefix(&names);
    if !p.is_empty() {
        return p;
    }
    let mut consts: Vec<&str> = nodes
        .iter()
        .flat_map(|&n| g.node(n).inputs.iter())
        .filter(|&&v| g.konst(v).is_some())
        .map(|&v| g.value(v).name.as_str())
        .filter(|s| s.contains(['.', '/']))
        .collect();
    consts.sort_unstable();
    consts.dedup();
    let p = common_prefix(&consts);
    if !p.is_empty() {
        return p;
    }
    names.first().map(|s| s.to_string()).unwrap_or_default()
}
