//! Small helpers the fusion passes share to match operator patterns: who produces a
//! value, whether an intermediate may disappear, and what a constant holds.
//!
//! A fusion may only delete an intermediate value that nothing else sees, so every
//! matcher asks [`single_use`] of each value inside a pattern and [`constant_value`] of
//! each constant operand, within [`REL_TOL`].

use crate::ir::{DType, Graph, Node, NodeIndex, Op, ValueId};

/// How close a constant must be to the value a pattern expects (relative).
pub const REL_TOL: f64 = 1e-6;

/// Whether `a` is `b` within [`REL_TOL`] relative (absolute for `b == 0`).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= REL_TOL * b.abs().max(f64::MIN_POSITIVE)
}

/// The node computing `v`, with its index.
pub fn producer(g: &Graph, v: ValueId) -> Option<(NodeIndex, &Node)> {
    let n = g.value(v).producer?;
    Some((n, g.node(n)))
}

/// The node computing `v` if its op satisfies `want`.
pub fn producer_if(
    g: &Graph,
    v: ValueId,
    want: impl Fn(&Op) -> bool,
) -> Option<(NodeIndex, &Node)> {
    producer(g, v).filter(|(_, node)| want(&node.op))
}

/// Whether `v` is read by exactly one node, once, and is not a graph output: the value
/// disappears when that reader is fused away.
pub fn single_use(g: &Graph, v: ValueId) -> bool {
    if g.outputs.contains(&v) {
        return false;
    }
    let readers = g.consumers(v);
    readers.len() == 1
        && g.node(readers[0])
            .inputs
            .iter()
            .filter(|&&i| i == v)
            .count()
            == 1
}

/// The only node reading `v` (once or more), if `v` is not also a graph output.
pub fn only_reader(g: &Graph, v: ValueId) -> Option<NodeIndex> {
    if g.outputs.contains(&v) {
        return None;
    }
    match g.consumers(v).as_slice() {
        [n] => Some(*n),
        _ => None,
    }
}

/// The value of an f32 constant whose elements are all the same (a scalar, or a splat).
pub fn constant_value(g: &Graph, v: ValueId) -> Option<f64> {
    let t = g.konst(v)?;
    if t.dtype != DType::F32 {
        return None;
    }
    let xs = t.as_f32()?;
    let first = *xs.first()?;
    xs.iter().all(|&x| x == first).then_some(f64::from(first))
}

/// Whether `v` is an f32 constant equal to `want` everywhere (within [`REL_TOL`]). A
/// splat may still broadcast its reader to a larger shape; matchers check the shape of
/// the pattern's result.
pub fn is_constant(g: &Graph, v: ValueId, want: f64) -> bool {
    constant_value(g, v).is_some_and(|c| close(c, want))
}

/// The other operand of a two-input node when one of its inputs is `v`.
pub fn other_operand(node: &Node, v: ValueId) -> Option<ValueId> {
    match node.inputs.as_slice() {
        [a, b] if *a == v => Some(*b),
        [a, b] if *b == v => Some(*a),
        _ => None,
    }
}

/// Gives `new` the name of `old`, makes every reader of `old` read `new`, so the fused
/// node's result keeps the name the pattern's last value had.
pub fn replace_value(g: &mut Graph, old: ValueId, new: ValueId) {
    let name = g.value(old).name.clone();
    g.value_mut(new).name = name;
    g.replace_uses(old, new);
}
