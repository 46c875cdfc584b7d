//! Matching and rewriting helpers shared by the structured-pruning passes (`dead-heads`,
//! `dead-channels`): recognising a linear layer with constant weights, slicing constants
//! along an axis, and rebuilding a region of the graph with smaller constants.

use std::collections::HashMap;

use crate::Error;
use crate::ir::{DType, Graph, NodeIndex, Op, Tensor, ValueId};

/// A `MatMul(x, W)` or `Gemm(x, W, C)` whose weight (and bias) are f32 constants.
#[derive(Clone, Debug)]
pub struct Linear {
    pub node: NodeIndex,
    pub input: ValueId,
    pub weight: ValueId,
    /// The axis of `W` that indexes output features (1 for `[in,out]`, 0 for Gemm `trans_b`).
    pub out_axis: usize,
    /// Gemm's `C` when it is a per-output-feature constant (`[out]` or `[1,out]`).
    pub bias: Option<ValueId>,
    /// Gemm's scale of the product (1 for MatMul).
    pub alpha: f32,
    /// Gemm's scale of `C`.
    pub beta: f32,
    pub output: ValueId,
}

impl Linear {
    /// The axis of `W` that indexes input features.
    pub fn in_axis(&self) -> usize {
        1 - self.out_axis
    }
}

/// The constant f32 data of `v`, if it is one.
pub fn const_f32(g: &Graph, v: ValueId) -> Option<&Tensor> {
    g.konst(v).filter(|t| t.dtype == DType::F32)
}

/// Recognises `n` as a linear layer with constant weights. Gemm must not transpose `A`
/// (alpha and beta scale whole results, so slicing features is valid for any values).
pub fn linear(g: &Graph, n: NodeIndex) -> Option<Linear> {
    let node = g.node(n);
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
    })
}

/// Keeps, along `axis`, the groups of `group` consecutive indices listed in `keep`
/// (group `k` is indices `k*group .. (k+1)*group`). `None` for non-f32 data.
pub fn slice_groups(t: &Tensor, axis: usize, group: usize, keep: &[usize]) -> Option<Tensor> {
    let x = t.as_f32()?;
    let outer: usize = t.shape[..axis].iter().product();
    let n = t.shape[axis];
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * keep.len() * group * inner);
    for o in 0..outer {
        for &k in keep {
            for i in k * group..(k + 1) * group {
                let base = (o * n + i) * inner;
                out.extend_from_slice(&x[base..base + inner]);
            }
        }
    }
    let mut shape = t.shape.clone();
    shape[axis] = keep.len() * group;
    Some(Tensor::f32(shape, out))
}

/// Whether every element of group `k` (indices `k*group .. (k+1)*group` along `axis`) is
/// exactly zero (`-0.0` counts as zero). `false` for non-f32 data.
pub fn group_is_zero(t: &Tensor, axis: usize, group: usize, k: usize) -> bool {
    let Some(x) = t.as_f32() else {
        return false;
    };
    let outer: usize = t.shape[..axis].iter().product();
    let n = t.shape[axis];
    let inner: usize = t.shape[axis + 1..].iter().product();
    (0..outer).all(|o| {
        (k * group..(k + 1) * group).all(|i| {
            let base = (o * n + i) * inner;
            x[base..base + inner].iter().all(|&v| v == 0.0)
        })
    })
}

/// Whether every element of `t` is exactly zero.
pub fn all_zero(t: &Tensor) -> bool {
    t.as_f32().is_some_and(|x| x.iter().all(|&v| v == 0.0))
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
/// features are all dead: zero, or Gemm's `beta·C` broadcast. Then removes `nodes`, which
/// must be the only other readers of each other's outputs.
pub fn replace_with_constant(g: &mut Graph, lin: &Linear, nodes: &[NodeIndex]) {
    let val = g.value(lin.output);
    let (name, shape) = (val.name.clone(), val.shape.clone());
    let n: usize = shape.iter().product();
    let mut data = vec![0.0; n];
    if let Some(c) = lin.bias.and_then(|c| g.konst(c)).and_then(|t| t.as_f32()) {
        for (i, x) in data.iter_mut().enumerate() {
            *x = lin.beta * c[i % c.len()];
        }
    }
    let z = g.add_const(name, Tensor::f32(shape, data));
    g.replace_uses(lin.output, z);
    for &n in nodes {
        g.remove_node(n);
    }
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
