//! Dead attention-head elimination: physically removes heads whose contribution to a
//! multi-head attention block's output is provably zero.
//!
//! Structured pruning tools zero a head's weights but keep the model's shapes, so every
//! runtime still spends the full cost on it. This pass finds each attention block from its
//! Softmax, following a *head layout* through it: every value of the block either has the
//! heads on one axis (`Split`, e.g. `[B,H,S,D]`) or packed head-major in its last axis
//! (`Flat`, e.g. `[B,S,H·D]` after a projection); a fused Q/K/V projection's output packs
//! three such blocks (`Packed`) that a Split, or a reshape to `[.., 3, H·D]` (`Sel`) and
//! constant Gathers, take apart. The block is accepted only if every op in
//! it computes each head independently (elementwise ops, transposes and reshapes that keep
//! the head axis, batched MatMuls and Softmax over non-head axes), its only ways in are
//! linear projections with constant weights and its only way out is one such projection
//! (the output projection `Wo`); no other node may read a block value.
//!
//! Head `h` is dead, for finite inputs, when
//! - its slice of the V projection (weight columns and bias) is exactly zero and V reaches
//!   `probs·V` through layout ops, bias adds and constant scalings only, and `probs·V`
//!   reaches `Wo` through layout ops only: then its context is zero whatever Q and K are; or
//! - `Wo`'s input rows for head `h` are exactly zero.
//!
//! A head with zero Q and K but non-zero V is kept (uniform attention still averages V), as
//! is one with zero V weights but a non-zero V bias. Removing heads slices the projections'
//! weights and biases, `Wo`'s rows and any per-head constant, and rewrites the head count in
//! reshape and Split sizes, so the attention kernels shrink. When every head of a block is
//! dead the output projection's result is a constant (zero, or Gemm's `beta·C`): it becomes
//! one (its bias add is then folded by the following fold-constants).

use std::collections::{HashMap, HashSet, VecDeque};

use super::Pass;
use super::pruning::{
    Linear, Rebuild, aligned_axis, all_equal, finite_scalar, group_is, group_is_zero,
    is_elementwise, is_per_tensor_quant, is_table_lookup, linear, region_label,
    replace_with_constant, slice_groups,
};
use crate::Error;
use crate::ir::{Binary, DType, Graph, NodeIndex, Op, QBinaryOp, ValueId};

pub struct DeadHeads;

/// Where a block value keeps its heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// One head per index of this axis.
    Split(usize),
    /// The last axis holds the heads head-major, this many features each.
    Flat(usize),
    /// A fused Q/K/V projection split by a reshape: the last axis is `Flat(d)` and axis
    /// `sel` picks Q, K or V.
    Sel { d: usize, sel: usize },
    /// A fused projection's output: the last axis holds `k` (3 for Q/K/V) blocks of
    /// head-major heads of `d` features each.
    Packed { d: usize, k: usize },
}

impl Layout {
    /// Features per head and fused blocks of the last axis, for the layouts that pack
    /// heads there.
    fn packed(self) -> Option<(usize, usize)> {
        match self {
            Layout::Split(_) => None,
            Layout::Flat(d) | Layout::Sel { d, .. } => Some((d, 1)),
            Layout::Packed { d, k } => Some((d, k)),
        }
    }
}

/// How the non-1 axes of `from` map to those of `to` when the two shapes differ only by
/// size-1 axes (a reshape, Unsqueeze or Squeeze that moves no data): `map[i]` is the axis
/// of `to` for axis `i` of `from` (`None` for size-1 axes of `from`).
fn unit_map(from: &[usize], to: &[usize]) -> Option<Vec<Option<usize>>> {
    let big = |s: &[usize]| -> Vec<usize> { (0..s.len()).filter(|&i| s[i] != 1).collect() };
    let (bf, bt) = (big(from), big(to));
    if bf.len() != bt.len() || bf.iter().zip(&bt).any(|(&i, &j)| from[i] != to[j]) {
        return None;
    }
    let mut map = vec![None; from.len()];
    for (&i, &j) in bf.iter().zip(&bt) {
        map[i] = Some(j);
    }
    Some(map)
}

/// `l` moved through a data-preserving change of size-1 axes from `from` to `to`.
fn through_unit_axes(l: Layout, from: &[usize], to: &[usize]) -> Option<Layout> {
    let map = unit_map(from, to)?;
    let last_ok = map.last().copied().flatten() == Some(to.len().checked_sub(1)?);
    match l {
        Layout::Split(a) => map[a].map(Layout::Split),
        Layout::Flat(_) | Layout::Packed { .. } if last_ok => Some(l),
        Layout::Sel { d, sel } if last_ok => map[sel].map(|sel| Layout::Sel { d, sel }),
        _ => None,
    }
}

/// A constant operand that varies per head and must be sliced with them.
struct HeadConst {
    node: NodeIndex,
    input: usize,
    /// The operand's axis that indexes heads (or head-major features).
    axis: usize,
    /// Features per head along that axis (1 for a `Split` value).
    group: usize,
    /// Fused blocks of heads along that axis (3 for a fused Q/K/V bias).
    k: usize,
}

/// A matched attention block.
struct Block {
    heads: usize,
    layout: HashMap<ValueId, Layout>,
    nodes: HashSet<NodeIndex>,
    /// Input projections with the head width and fused block count of their output.
    entries: Vec<(Linear, usize, usize)>,
    /// The output projection with the head width of its input.
    exit: Option<(Linear, usize)>,
    head_consts: Vec<HeadConst>,
    /// DynamicQuantizeLinear nodes in the block (their scale depends on every head).
    dqls: Vec<NodeIndex>,
}

impl Block {
    /// The output projection (a matched block has one) and the head width of its input.
    fn exit(&self) -> &(Linear, usize) {
        self.exit
            .as_ref()
            .expect("a matched block has an output projection")
    }
}

impl Pass for DeadHeads {
    fn name(&self) -> &'static str {
        "dead-heads"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let softmaxes: Vec<NodeIndex> = g
            .topo_order()
            .into_iter()
            .filter(|&n| matches!(g.node(n).op, Op::Softmax { .. }))
            .collect();
        let mut removed_nodes: HashSet<NodeIndex> = HashSet::new();
        let (mut total, mut removed) = (0, 0);
        let mut per_layer = Vec::new();
        let mut unmatched = Vec::new();
        for s in softmaxes {
            if removed_nodes.contains(&s) {
                continue;
            }
            let rank = g.value(g.node(s).outputs[0]).shape.len();
            if rank < 3 {
                continue; // a classifier's softmax, not attention
            }
            let block = match match_block(g, s) {
                Ok(b) => b,
                Err(why) => {
                    unmatched.push(format!("{} ({why})", g.node(s).name));
                    continue;
                }
            };
            let (dead, kept) = dead_heads(g, &block);
            let n_dead = dead.iter().filter(|&&d| d).count();
            total += block.heads;
            removed += n_dead;
            per_layer.push(format!(
                "{} {n_dead}/{}{}",
                block_label(g, &block),
                block.heads,
                kept.map(|k| format!(" ({k})")).unwrap_or_default()
            ));
            if n_dead == 0 {
                continue;
            }
            let keep: Vec<usize> = (0..block.heads).filter(|&h| !dead[h]).collect();
            removed_nodes.extend(block.nodes.iter().copied());
            remove_heads(g, &block, &keep)?;
        }
        let mut s = format!("removed {removed} of {total} heads");
        if !per_layer.is_empty() {
            s += &format!(": {}", per_layer.join(", "));
        }
        if !unmatched.is_empty() {
            s += &format!("; not matched: {}", unmatched.join(", "));
        }
        Ok(s)
    }
}

/// A name for the block, for the report.
fn block_label(g: &Graph, b: &Block) -> String {
    let projections: Vec<NodeIndex> = b
        .entries
        .iter()
        .map(|(l, _, _)| l.node)
        .chain([b.exit().0.node])
        .collect();
    let mut nodes: Vec<NodeIndex> = b.nodes.iter().copied().collect();
    nodes.sort_unstable();
    region_label(g, &projections, &nodes)
}

/// Grows the block around Softmax `s`, assigning a head layout to every value in it.
fn match_block(g: &Graph, s: NodeIndex) -> Result<Block, String> {
    let out = g.node(s).outputs[0];
    let rank = g.value(out).shape.len();
    let mut b = Block {
        heads: g.value(out).shape[rank - 3],
        layout: HashMap::new(),
        nodes: HashSet::new(),
        entries: Vec::new(),
        exit: None,
        head_consts: Vec::new(),
        dqls: Vec::new(),
    };
    let mut queue = VecDeque::new();
    set(&mut b, &mut queue, out, Layout::Split(rank - 3))?;
    while let Some(v) = queue.pop_front() {
        if g.outputs.contains(&v) {
            return Err(format!("{} is a graph output", g.value(v).name));
        }
        let mut around = Vec::new();
        match g.value(v).producer {
            Some(p) => around.push(p),
            None => return Err(format!("{} is a graph input", g.value(v).name)),
        }
        around.extend(g.consumers(v));
        for n in around {
            if !b.nodes.insert(n) {
                continue;
            }
            if b.nodes.len() > 400 {
                return Err("too large".into());
            }
            if let Some(lin) = linear(g, n) {
                let (lin_in, lin_out) = (b.layout.get(&lin.input), b.layout.get(&lin.output));
                let w = &g.konst(lin.weight).expect("linear weight").shape;
                match (lin_in, lin_out) {
                    (None, Some(&l @ (Layout::Flat(_) | Layout::Packed { .. })))
                        if l.packed()
                            .is_some_and(|(d, k)| w[lin.out_axis] == k * b.heads * d) =>
                    {
                        let (d, k) = l.packed().expect("packed");
                        b.entries.push((lin, d, k));
                    }
                    (Some(&Layout::Flat(d)), None) if w[lin.in_axis()] == b.heads * d => {
                        if b.exit.is_some() {
                            return Err("more than one output projection".into());
                        }
                        b.exit = Some((lin, d));
                    }
                    _ => return Err(format!("projection {} does not fit", g.node(n).name)),
                }
                continue;
            }
            visit(g, n, &mut b, &mut queue)?;
        }
    }
    let exit = &b.exit.as_ref().ok_or("no output projection")?.0;
    let leaks = b
        .entries
        .iter()
        .any(|(l, _, _)| b.layout.contains_key(&l.input))
        || b.layout.contains_key(&exit.output);
    if leaks {
        return Err("a projection reads its own block".into());
    }
    if b.entries.is_empty() {
        return Err("no input projection".into());
    }
    Ok(b)
}

/// Records `v`'s layout, queueing it when new; a different earlier layout is a mismatch.
fn set(b: &mut Block, q: &mut VecDeque<ValueId>, v: ValueId, l: Layout) -> Result<(), String> {
    match b.layout.get(&v) {
        Some(&old) if old == l => Ok(()),
        Some(_) => Err("heads on different axes".into()),
        None => {
            b.layout.insert(v, l);
            q.push_back(v);
            Ok(())
        }
    }
}

/// Applies the layout rule of node `n` (not a projection), from whichever of its values
/// already has a layout to the others.
fn visit(g: &Graph, n: NodeIndex, b: &mut Block, q: &mut VecDeque<ValueId>) -> Result<(), String> {
    let node = g.node(n).clone();
    let shape = |v: ValueId| g.value(v).shape.clone();
    let known = |b: &Block, v: ValueId| b.layout.get(&v).copied();
    let h = b.heads;
    match &node.op {
        Op::Transpose { perm } => {
            let (i, o) = (node.inputs[0], node.outputs[0]);
            let last = perm.len() - 1;
            let pos = |a: usize| perm.iter().position(|&p| p == a).ok_or("bad perm");
            match (known(b, i), known(b, o)) {
                (_, Some(Layout::Split(a))) => set(b, q, i, Layout::Split(perm[a])),
                (Some(Layout::Split(a)), _) => set(b, q, o, Layout::Split(pos(a)?)),
                _ if perm[last] != last => Err("transpose of packed heads".into()),
                (_, Some(Layout::Sel { d, sel })) => {
                    set(b, q, i, Layout::Sel { d, sel: perm[sel] })
                }
                (Some(Layout::Sel { d, sel }), _) => {
                    set(b, q, o, Layout::Sel { d, sel: pos(sel)? })
                }
                (Some(l), _) | (_, Some(l)) => {
                    set(b, q, i, l)?;
                    set(b, q, o, l)
                }
                (None, None) => Err("no layout".into()),
            }
        }
        // A one-input Concat is a copy (GPT-2's TorchScript export appends the new keys
        // and values to an empty cache).
        op @ (Op::Reshape { .. }
        | Op::Identity
        | Op::Unsqueeze { .. }
        | Op::Squeeze { .. }
        | Op::Concat { .. })
            if !matches!(op, Op::Concat { .. }) || node.inputs.len() == 1 =>
        {
            let (i, o) = (node.inputs[0], node.outputs[0]);
            let (si, so) = (shape(i), shape(o));
            if si == so {
                let l = known(b, i).or(known(b, o)).ok_or("no layout")?;
                set(b, q, i, l)?;
                return set(b, q, o, l);
            }
            let moved = match (known(b, i), known(b, o)) {
                (Some(l), _) => through_unit_axes(l, &si, &so).map(|lo| (l, lo)),
                (_, Some(l)) => through_unit_axes(l, &so, &si).map(|li| (li, l)),
                _ => None,
            };
            if let Some((li, lo)) = moved {
                set(b, q, i, li)?;
                return set(b, q, o, lo);
            }
            if !matches!(node.op, Op::Reshape { .. }) {
                return Err(format!("{} {} moves the heads", node.op.name(), node.name));
            }
            // A fused projection [.., k·H·d] <-> [.., k, H·d].
            let sel = |packed: &[usize], sel: &[usize], d: usize| -> Option<(Layout, Layout)> {
                let r = sel.len();
                let k = *sel.get(r.checked_sub(2)?)?;
                (k >= 2 && sel[r - 1] == h * d && packed.last() == Some(&(k * h * d)))
                    .then_some((Layout::Packed { d, k }, Layout::Sel { d, sel: r - 2 }))
            };
            match (known(b, i), known(b, o)) {
                (Some(Layout::Packed { d, .. }), _) | (_, Some(Layout::Sel { d, .. })) => {
                    let (li, lo) = sel(&si, &so, d).ok_or("fused projection regrouped")?;
                    set(b, q, i, li)?;
                    return set(b, q, o, lo);
                }
                _ => {}
            }
            // Packed heads stay packed when only the leading dims change ([S,E] <-> [1,S,E]).
            let flat = known(b, i).or(known(b, o));
            if let Some(Layout::Flat(d)) = flat
                && si.last() == so.last()
                && si.last() == Some(&(h * d))
            {
                set(b, q, i, Layout::Flat(d))?;
                return set(b, q, o, Layout::Flat(d));
            }
            // Flat [.., H·d] <-> Split [.., H, d], in either direction (the leading dims
            // may regroup: the elements keep their order).
            let pair = |flat: &[usize], split: &[usize]| -> Option<(Layout, Layout)> {
                let r = split.len();
                (r >= 2 && split[r - 2] == h && flat.last() == Some(&(h * split[r - 1])))
                    .then(|| (Layout::Flat(split[r - 1]), Layout::Split(r - 2)))
            };
            let (li, lo) = if let Some((f, s)) = pair(&si, &so) {
                (f, s)
            } else if let Some((f, s)) = pair(&so, &si) {
                (s, f)
            } else {
                return Err(format!("reshape {} regroups heads", node.name));
            };
            set(b, q, i, li)?;
            set(b, q, o, lo)
        }
        Op::Split { axis, sizes } => {
            // Q, K and V out of a fused projection, split along its last axis.
            let i = node.inputs[0];
            let si = shape(i);
            let r = si.len() as i64;
            let k = node.outputs.len();
            let flat = node.outputs.iter().find_map(|&o| match known(b, o) {
                Some(Layout::Flat(d)) => Some(d),
                _ => None,
            });
            let d = match (known(b, i), flat) {
                (Some(Layout::Packed { d, k: kk }), _) if kk == k => d,
                (None, Some(d)) => d,
                _ => return Err(format!("split {} across heads", node.name)),
            };
            if (*axis + r) % r != r - 1 || sizes.iter().any(|&s| s != h * d) {
                return Err(format!("split {} across heads", node.name));
            }
            set(b, q, i, Layout::Packed { d, k })?;
            node.outputs
                .iter()
                .try_for_each(|&o| set(b, q, o, Layout::Flat(d)))
        }
        Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } if !is_per_tensor_quant(g, n) => {
            Err(format!(
                "{} {} quantizes per axis",
                node.op.name(),
                node.name
            ))
        }
        Op::DynamicQuantizeLinear => {
            // Its scale and zero point (outputs 1 and 2) come from the whole tensor: which
            // heads may go is decided in `dead_heads`.
            let (i, o) = (node.inputs[0], node.outputs[0]);
            let l = known(b, i).or(known(b, o)).ok_or("no layout")?;
            b.dqls.push(n);
            set(b, q, i, l)?;
            set(b, q, o, l)
        }
        Op::Gather { .. } if is_table_lookup(g, n) => {
            // An elementwise function of 8-bit values as a lookup table.
            let (i, o) = (node.inputs[1], node.outputs[0]);
            if shape(i) != shape(o) {
                return Err(format!("gather {} reshapes", node.name));
            }
            let l = known(b, i).or(known(b, o)).ok_or("no layout")?;
            set(b, q, i, l)?;
            set(b, q, o, l)
        }
        Op::Gather { axis } => {
            // Picking Q, K or V out of a fused projection.
            let (i, o) = (node.inputs[0], node.outputs[0]);
            let idx = g
                .konst(node.inputs[1])
                .ok_or("gather by a run-time index")?;
            let si = shape(i);
            let ax = if *axis < 0 {
                *axis + si.len() as i64
            } else {
                *axis
            };
            let ax = usize::try_from(ax).map_err(|_| "bad gather axis")?;
            if !idx.shape.is_empty() || ax + 1 >= si.len() {
                return Err(format!("gather {} across heads", node.name));
            }
            match (known(b, i), known(b, o)) {
                (Some(Layout::Sel { d, sel }), _) if sel == ax => set(b, q, o, Layout::Flat(d)),
                (None, Some(Layout::Flat(d))) => set(b, q, i, Layout::Sel { d, sel: ax }),
                _ => Err(format!("gather {} across heads", node.name)),
            }
        }
        Op::Softmax { axis, coerce_2d } => {
            let (i, o) = (node.inputs[0], node.outputs[0]);
            let r = shape(o).len() as i64;
            let ax = if *axis < 0 { axis + r } else { *axis } as usize;
            let l = known(b, i).or(known(b, o)).ok_or("no layout")?;
            match l {
                Layout::Split(a) if a != ax && (!coerce_2d || ax as i64 == r - 1) => {
                    set(b, q, i, l)?;
                    set(b, q, o, l)
                }
                _ => Err("softmax across heads".into()),
            }
        }
        Op::MatMul => {
            let vals = [node.inputs[0], node.inputs[1], node.outputs[0]];
            let r = shape(vals[2]).len();
            if vals
                .iter()
                .any(|&v| shape(v).len() != r || g.konst(v).is_some())
            {
                return Err(format!("matmul {} broadcasts over heads", node.name));
            }
            let l = vals.iter().find_map(|&v| known(b, v)).ok_or("no layout")?;
            match l {
                Layout::Split(a) if a + 2 < r => vals.iter().try_for_each(|&v| set(b, q, v, l)),
                _ => Err(format!("matmul {} mixes heads", node.name)),
            }
        }
        op if is_elementwise(op) || is_per_tensor_quant(g, n) => {
            let o = node.outputs[0];
            let so = shape(o);
            let inner: Vec<usize> = (0..node.inputs.len())
                .filter(|&i| {
                    let v = node.inputs[i];
                    g.konst(v).is_none() && shape(v) == so
                })
                .collect();
            let l = inner
                .iter()
                .map(|&i| node.inputs[i])
                .chain([o])
                .find_map(|v| known(b, v))
                .ok_or("no layout")?;
            for (i, &v) in node.inputs.iter().enumerate() {
                if inner.contains(&i) {
                    set(b, q, v, l)?;
                    continue;
                }
                if b.layout.contains_key(&v) {
                    return Err(format!("{} broadcasts a block value", node.name));
                }
                let sv = shape(v);
                if let Layout::Sel { sel, .. } = l
                    && aligned_axis(sel, so.len(), sv.len()).is_some_and(|ax| sv[ax] != 1)
                {
                    return Err(format!("{} mixes Q, K and V", node.name));
                }
                let (axis, size, group, k) = match l {
                    Layout::Split(a) => (a, h, 1, 1),
                    Layout::Flat(d) | Layout::Sel { d, .. } => (so.len() - 1, h * d, d, 1),
                    Layout::Packed { d, k } => (so.len() - 1, k * h * d, d, k),
                };
                let Some(ax) = aligned_axis(axis, so.len(), sv.len()) else {
                    continue;
                };
                if sv[ax] == 1 {
                    continue;
                }
                if sv[ax] != size || g.konst(v).is_none() {
                    return Err(format!("{} mixes a per-head value", node.name));
                }
                b.head_consts.push(HeadConst {
                    node: n,
                    input: i,
                    axis: ax,
                    group,
                    k,
                });
            }
            for &v in &node.outputs {
                set(b, q, v, l)?;
            }
            Ok(())
        }
        op => Err(format!("{} {} in the block", op.name(), node.name)),
    }
}

/// Which heads provably contribute nothing to the block's output, and why heads whose `Wo`
/// rows are zero were kept, if some were.
fn dead_heads(g: &Graph, b: &Block) -> (Vec<bool>, Option<String>) {
    let (exit, d_out) = b.exit();
    let wo = g.konst(exit.weight).expect("weight");
    let by_wo: Vec<bool> = (0..b.heads)
        .map(|h| group_is_zero(wo, exit.in_axis(), *d_out, h))
        .collect();
    let v = v_dead(g, b);
    let by_v = v
        .as_ref()
        .map(|(d, _)| d.clone())
        .unwrap_or_else(|| vec![false; b.heads]);
    // A DynamicQuantizeLinear ranges over every head: removing a head leaves its scale and
    // zero point as they are only when the head's values there are exactly zero, which
    // `v_dead` proves for the ones on the context path of zero-V heads.
    let on_path = v.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
    let ranged = b.dqls.iter().find(|n| !on_path.contains(n));
    let wo_ok = b.dqls.is_empty();
    let dead: Vec<bool> = (0..b.heads)
        .map(|h| match ranged {
            Some(_) => false,
            None => by_v[h] || (by_wo[h] && wo_ok),
        })
        .collect();
    let kept: Vec<String> = (0..b.heads)
        .filter(|&h| (by_wo[h] || by_v[h]) && !dead[h])
        .map(|h| h.to_string())
        .collect();
    let why = (!kept.is_empty()).then(|| {
        let dql = ranged.or(b.dqls.first()).expect("a DynamicQuantizeLinear");
        format!(
            "kept heads {}: DynamicQuantizeLinear {} ranges over their non-zero values",
            kept.join(","),
            g.node(*dql).name
        )
    });
    (dead, why)
}

/// What value means "zero" at a point of the path between a projection and `probs·V` (or
/// `probs·V` and `Wo`): `0.0` in float, or the integer code that (de)quantizes to it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Zero {
    Float,
    /// A constant integer code (a constant zero point, or 0 for an int32 accumulator).
    Code(i64),
    /// The zero point DynamicQuantizeLinear computes (its output 2).
    Dynamic(ValueId),
}

/// The zero point input `i` of node `n` stands for: its constant value (0 when absent),
/// or DynamicQuantizeLinear's computed one.
fn zero_point(g: &Graph, n: NodeIndex, i: usize) -> Option<Zero> {
    let Some(&z) = g.node(n).inputs.get(i) else {
        return Some(Zero::Code(0));
    };
    if let Some(t) = g.konst(z) {
        return Some(Zero::Code(*t.to_i64s()?.first()?));
    }
    let p = g.value(z).producer?;
    (g.node(p).op == Op::DynamicQuantizeLinear && g.node(p).outputs.get(2) == Some(&z))
        .then_some(Zero::Dynamic(z))
}

/// Whether per-tensor (De)QuantizeLinear `n` has a constant, finite, non-zero scale: then
/// `Q(0) = zero_point` and `DQ(zero_point) = 0` exactly.
fn exact_scale(g: &Graph, n: NodeIndex) -> bool {
    is_per_tensor_quant(g, n)
        && g.konst(g.node(n).inputs[1])
            .and_then(|t| t.to_f64s())
            .is_some_and(|s| s.iter().all(|&s| s.is_finite() && s != 0.0))
}

/// Heads whose V slice is zero, when the block's output is `probs·V` moved by layout ops
/// and per-tensor quantizations, and V is a projection plus bias adds, constant (or
/// finite scalar) scalings, casts and per-tensor (de)quantizations (`None` otherwise);
/// with the DynamicQuantizeLinear nodes on the way from `probs·V` to `Wo`.
///
/// Walking back from `Wo`'s input, `Zero` tracks which value the zero context of a dead
/// head has at each point: the exit QGemm's input zero point (its rows then contribute
/// `(x − x_zero)·W = 0`), `0.0` before a QuantizeLinear with that zero point (or a
/// DynamicQuantizeLinear whose computed zero point it is: its range always holds 0, so a
/// zero head's codes are the zero point and removing them changes neither the scale nor
/// the zero point), and so on back to `probs·V`; then from V back to its projection, whose
/// dead output must be that zero: `0.0` for a float layer, `0` for a QGemm's int32
/// accumulator, the requantization's zero point for a requantized QGemm.
fn v_dead(g: &Graph, b: &Block) -> Option<(Vec<bool>, Vec<NodeIndex>)> {
    let layout_node = |node: &crate::ir::Node| {
        matches!(
            node.op,
            Op::Reshape { .. }
                | Op::Transpose { .. }
                | Op::Identity
                | Op::Unsqueeze { .. }
                | Op::Squeeze { .. }
        ) || matches!(node.op, Op::Concat { .. }) && node.inputs.len() == 1
    };
    // Back from Wo's input to probs·V.
    let exit = &b.exit().0;
    let mut want = match &exit.quant {
        Some(_) => zero_point(g, exit.node, 1)?,
        None => Zero::Float,
    };
    let mut dqls = Vec::new();
    let mut v = exit.input;
    let pv = loop {
        let p = g.value(v).producer?;
        let node = g.node(p);
        match (&node.op, want) {
            _ if layout_node(node) => v = node.inputs[0],
            (Op::MatMul, Zero::Float) if linear(g, p).is_none() => break p,
            (Op::QuantizeLinear { .. }, Zero::Code(_)) if exact_scale(g, p) => {
                if zero_point(g, p, 2)? != want {
                    return None;
                }
                want = Zero::Float;
                v = node.inputs[0];
            }
            (Op::DynamicQuantizeLinear, Zero::Dynamic(z))
                if node.outputs[2] == z && node.outputs[0] == v =>
            {
                dqls.push(p);
                want = Zero::Float;
                v = node.inputs[0];
            }
            (Op::DequantizeLinear { .. }, Zero::Float) if exact_scale(g, p) => {
                want = zero_point(g, p, 2)?;
                v = node.inputs[0];
            }
            _ => return None,
        }
    };
    // Back from V to its projection, collecting added constants and which block of a
    // fused projection V is.
    let mut added = Vec::new();
    let mut want = Zero::Float;
    let mut v = g.node(pv).inputs[1];
    let mut block = None;
    let entry = loop {
        if let Some((lin, _, _)) = b.entries.iter().find(|(l, _, _)| l.output == v) {
            break lin;
        }
        let p = g.value(v).producer?;
        let node = g.node(p);
        let konst = node.inputs.iter().position(|&i| g.konst(i).is_some());
        let other = |k: usize| node.inputs[1 - k];
        let float = want == Zero::Float;
        match (&node.op, konst) {
            _ if layout_node(node) => v = node.inputs[0],
            (Op::Split { .. }, _) => {
                if block.is_some() {
                    return None;
                }
                block = node.outputs.iter().position(|&o| o == v);
                v = node.inputs[0];
            }
            (Op::Gather { .. }, Some(1)) => {
                let sel = match b.layout.get(&node.inputs[0]) {
                    Some(&Layout::Sel { sel, .. }) => sel,
                    _ => return None,
                };
                let k = g.value(node.inputs[0]).shape[sel] as i64;
                let i = g.konst(node.inputs[1])?.to_i64s()?[0];
                let i = if i < 0 { i + k } else { i };
                if block.is_some() || !(0..k).contains(&i) {
                    return None;
                }
                block = Some(i as usize);
                v = node.inputs[0];
            }
            (Op::Binary(Binary::Add), Some(k)) if float => {
                let out = node.outputs[0];
                let l = b.layout.get(&out).copied();
                added.push((node.inputs[k], g.value(out).shape.len(), l, 0));
                v = other(k);
            }
            (Op::QBinary(q), Some(k)) if !float => {
                // Integer Add or Mul: operands at their zero points give an accumulator
                // of 0, so the output zero point.
                if want != Zero::Code(i64::from(q.zero_point.clamp(q.lo, q.hi))) {
                    return None;
                }
                let (z_other, z_const) = if k == 1 {
                    (q.a_zero, q.b_zero)
                } else {
                    (q.b_zero, q.a_zero)
                };
                if let QBinaryOp::Add { .. } = q.op {
                    let out = node.outputs[0];
                    let l = b.layout.get(&out).copied();
                    let r = g.value(out).shape.len();
                    added.push((node.inputs[k], r, l, i64::from(z_const)));
                }
                want = Zero::Code(i64::from(z_other));
                v = other(k);
            }
            (Op::Binary(Binary::Mul), Some(k)) if float => {
                let c = g.konst(node.inputs[k])?.as_f32()?;
                if !c.iter().all(|x| x.is_finite()) {
                    return None;
                }
                v = other(k);
            }
            (Op::Binary(Binary::Mul), None) if float => {
                // Dynamic quantization's rescale by `y_scale · w_scale`.
                let k = (0..2).find(|&k| finite_scalar(g, node.inputs[k]))?;
                v = other(k);
            }
            (Op::Binary(Binary::Div), Some(1)) if float => {
                let c = g.konst(node.inputs[1])?.as_f32()?;
                if c.contains(&0.0) || !c.iter().all(|x| x.is_finite()) {
                    return None;
                }
                v = node.inputs[0];
            }
            (Op::Cast { to: DType::F32 }, _) if float => {
                // An integer 0 casts to 0.0.
                let from = g.value(node.inputs[0]).dtype;
                if !matches!(
                    from,
                    DType::I32 | DType::I8 | DType::U8 | DType::I16 | DType::I64
                ) {
                    return None;
                }
                want = Zero::Code(0);
                v = node.inputs[0];
            }
            (Op::DequantizeLinear { .. }, _) if float && exact_scale(g, p) => {
                want = zero_point(g, p, 2)?;
                v = node.inputs[0];
            }
            (Op::QuantizeLinear { .. }, _) if !float && exact_scale(g, p) => {
                if zero_point(g, p, 2)? != want {
                    return None;
                }
                want = Zero::Float;
                v = node.inputs[0];
            }
            _ => return None,
        }
    };
    // What the projection's dead output features compute.
    let out_zero = match &entry.quant {
        None => Zero::Float,
        Some(q) => match q.requant {
            None => Zero::Code(0),
            Some(r) => Zero::Code(i64::from(r.zero_point.clamp(r.lo, r.hi))),
        },
    };
    if want != out_zero {
        return None;
    }
    let (_, d, k) = b.entries.iter().find(|(l, _, _)| l.node == entry.node)?;
    let block = match (block, k) {
        (None, 1) => 0,
        (Some(s), _) => s,
        _ => return None,
    };
    let w = g.konst(entry.weight)?;
    let zero = |h: usize| -> bool {
        let group = block * b.heads + h;
        group_is_zero(w, entry.out_axis, *d, group)
            && entry.bias.is_none_or(|c| {
                let t = g.konst(c).expect("bias");
                group_is_zero(t, t.shape.len() - 1, *d, group)
            })
            && added.iter().all(|&(c, out_rank, l, zero)| {
                let t = g.konst(c).expect("const");
                const_head_is(t, out_rank, l, b.heads, group, zero)
            })
    };
    Some(((0..b.heads).map(zero).collect(), dqls))
}

/// Whether constant `t`, broadcast against a block value of rank `out_rank` and layout `l`,
/// is `zero` (0, or a quantized operand's zero point) for head `h` (counting the heads of
/// every block of a fused projection).
fn const_head_is(
    t: &crate::ir::Tensor,
    out_rank: usize,
    l: Option<Layout>,
    heads: usize,
    h: usize,
    zero: i64,
) -> bool {
    let (axis, size, group) = match l {
        Some(Layout::Split(a)) => (a, heads, 1),
        Some(Layout::Flat(d)) => (out_rank - 1, heads * d, d),
        Some(Layout::Packed { d, k }) => (out_rank - 1, k * heads * d, d),
        Some(Layout::Sel { .. }) | None => return false,
    };
    match aligned_axis(axis, out_rank, t.shape.len()) {
        Some(ax) if t.shape[ax] == size => group_is(t, ax, group, h, zero),
        _ => all_equal(t, zero),
    }
}

/// Rebuilds block `b` with only heads `keep`.
fn remove_heads(g: &mut Graph, b: &Block, keep: &[usize]) -> Result<(), Error> {
    let order: Vec<NodeIndex> = g
        .topo_order()
        .into_iter()
        .filter(|n| b.nodes.contains(n))
        .collect();
    let exit = &b.exit().0;
    if keep.is_empty() && b.dqls.is_empty() {
        return replace_with_constant(g, exit, &order);
    }
    // A DynamicQuantizeLinear's scale is read after the output projection: one dead head
    // (zero where it is quantized, so the scale is the same) stays for it.
    let one = [0];
    let keep = if keep.is_empty() { &one[..] } else { keep };
    let heads = b.heads;
    let slice = |g: &Graph, v: ValueId, axis: usize, group: usize, k: usize| {
        let t = g.konst(v).expect("constant");
        let keep: Vec<usize> = (0..k)
            .flat_map(|s| keep.iter().map(move |&h| s * heads + h))
            .collect();
        slice_groups(t, axis, group, &keep).ok_or_else(|| {
            Error::Internal("slicing a per-head constant of no program dtype".into())
        })
    };
    let mut rb = Rebuild {
        nodes: order.clone(),
        exits: vec![exit.output],
        ..Rebuild::default()
    };
    for &d in &b.dqls {
        // Its scale and zero point are read outside the block too.
        rb.exits.extend(&g.node(d).outputs[1..]);
    }
    for (lin, d, k) in &b.entries {
        rb.consts.insert(
            (lin.node, lin.weight_input()),
            slice(g, lin.weight, lin.out_axis, *d, *k)?,
        );
        if let Some(c) = lin.bias {
            let r = g.value(c).shape.len();
            rb.consts
                .insert((lin.node, lin.bias_input()), slice(g, c, r - 1, *d, *k)?);
        }
        // A QGemm's per-output-channel multipliers go with their channels.
        if let Some(m) = lin.quant.as_ref().and_then(|q| q.multipliers)
            && g.value(m).num_elements() > 1
        {
            rb.consts.insert((lin.node, 4), slice(g, m, 0, *d, *k)?);
        }
    }
    rb.consts.insert(
        (exit.node, exit.weight_input()),
        slice(g, exit.weight, exit.in_axis(), b.exit().1, 1)?,
    );
    for hc in &b.head_consts {
        let v = g.node(hc.node).inputs[hc.input];
        rb.consts
            .insert((hc.node, hc.input), slice(g, v, hc.axis, hc.group, hc.k)?);
    }
    let kept = keep.len() as i64;
    for &n in &order {
        if let Op::Split { axis, sizes } = &g.node(n).op
            && let Some(&Layout::Flat(d)) = b.layout.get(&g.node(n).outputs[0])
        {
            let sizes = vec![keep.len() * d; sizes.len()];
            rb.ops.insert(n, Op::Split { axis: *axis, sizes });
        }
        if let Op::Reshape { shape, allowzero } = &g.node(n).op {
            let out = g.node(n).outputs[0];
            let mut shape = shape.clone();
            match b.layout.get(&out) {
                Some(Layout::Split(a)) if shape[*a] > 0 => shape[*a] = kept,
                Some(Layout::Split(_)) | None => {}
                Some(&l) => {
                    let (d, k) = l.packed().expect("packed layout");
                    let last = shape.len() - 1;
                    if shape[last] > 0 {
                        shape[last] = (k * d) as i64 * kept;
                    }
                }
            }
            rb.ops.insert(
                n,
                Op::Reshape {
                    shape,
                    allowzero: *allowzero,
                },
            );
        }
    }
    rb.apply(g)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{random, run_on_copy as run_checked};
    use super::*;
    use crate::ir::{DType, Tensor};

    /// Per-head weights of a 2-head, width-4 attention block (`[in,out]` layout).
    struct Weights {
        wq: Tensor,
        bq: Tensor,
        wk: Tensor,
        bk: Tensor,
        wv: Tensor,
        bv: Tensor,
        wo: Tensor,
        bo: Tensor,
    }

    fn weights() -> Weights {
        Weights {
            wq: random(&[4, 4], 1),
            bq: random(&[4], 2),
            wk: random(&[4, 4], 3),
            bk: random(&[4], 4),
            wv: random(&[4, 4], 5),
            bv: random(&[4], 6),
            wo: random(&[4, 4], 7),
            bo: random(&[4], 8),
        }
    }

    /// Zeroes columns `cols` of a `[rows, n]` matrix (or entries of a vector).
    fn zero_cols(t: &mut Tensor, cols: std::ops::Range<usize>) {
        let n = *t.shape.last().unwrap();
        let mut d = t.as_f32().unwrap().to_vec();
        for (i, x) in d.iter_mut().enumerate() {
            if cols.contains(&(i % n)) {
                *x = 0.0;
            }
        }
        *t = Tensor::f32(t.shape.clone(), d);
    }

    fn zero_rows(t: &mut Tensor, rows: std::ops::Range<usize>) {
        let n = t.shape[1];
        let mut d = t.as_f32().unwrap().to_vec();
        for r in rows {
            d[r * n..(r + 1) * n].fill(0.0);
        }
        *t = Tensor::f32(t.shape.clone(), d);
    }

    fn transposed(t: &Tensor) -> Tensor {
        let (r, c) = (t.shape[0], t.shape[1]);
        let d = t.as_f32().unwrap();
        Tensor::f32(
            vec![c, r],
            (0..r * c).map(|i| d[(i % r) * c + i / r]).collect(),
        )
    }

    /// x[1,3,4] → BERT-style attention with 2 heads of 2. `gemm` writes the projections as
    /// 2-D Gemm{trans_b} on x[3,4]; `head_bias` adds a per-head constant to the scores;
    /// `probs_out` makes the attention probabilities a graph output.
    fn build(w: &Weights, gemm: bool, head_bias: bool, probs_out: bool) -> Graph {
        let mut g = Graph::new("attention");
        let s = if gemm { vec![3, 4] } else { vec![1, 3, 4] };
        let x = g.add_input("x", DType::F32, s);
        g.inputs.push(x);
        let mut n = 0;
        let mut node = |g: &mut Graph, op: Op, ins: Vec<ValueId>| {
            n += 1;
            g.add_node(format!("attn/n{n}"), op, ins).unwrap().1[0]
        };
        let proj = |g: &mut Graph, w: &Tensor, b: &Tensor, name: &str| {
            if gemm {
                let w = g.add_const(format!("{name}.w"), transposed(w));
                let b = g.add_const(format!("{name}.b"), b.clone());
                let op = Op::Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: true,
                };
                let y = g
                    .add_node(format!("attn/{name}"), op, vec![x, w, b])
                    .unwrap()
                    .1[0];
                g.add_node(
                    format!("attn/{name}/r"),
                    Op::Reshape {
                        shape: vec![1, 3, 4],
                        allowzero: false,
                    },
                    vec![y],
                )
                .unwrap()
                .1[0]
            } else {
                let w = g.add_const(format!("{name}.w"), w.clone());
                let b = g.add_const(format!("{name}.b"), b.clone());
                let y = g
                    .add_node(format!("attn/{name}"), Op::MatMul, vec![x, w])
                    .unwrap()
                    .1[0];
                g.add_node(
                    format!("attn/{name}/add"),
                    Op::Binary(Binary::Add),
                    vec![b, y],
                )
                .unwrap()
                .1[0]
            }
        };
        let q = proj(&mut g, &w.wq, &w.bq, "q");
        let k = proj(&mut g, &w.wk, &w.bk, "k");
        let v = proj(&mut g, &w.wv, &w.bv, "v");
        let split = Op::Reshape {
            shape: vec![1, 3, -1, 2],
            allowzero: false,
        };
        let t0213 = Op::Transpose {
            perm: vec![0, 2, 1, 3],
        };
        let q = node(&mut g, split.clone(), vec![q]);
        let q = node(&mut g, t0213.clone(), vec![q]);
        let k = node(&mut g, split.clone(), vec![k]);
        let k = node(&mut g, t0213.clone(), vec![k]);
        let k = node(
            &mut g,
            Op::Transpose {
                perm: vec![0, 1, 3, 2],
            },
            vec![k],
        );
        let v = node(&mut g, split, vec![v]);
        let v = node(&mut g, t0213.clone(), vec![v]);
        let s = node(&mut g, Op::MatMul, vec![q, k]);
        let c = g.add_const("scale", Tensor::f32(vec![], vec![0.7]));
        let mut s = node(&mut g, Op::Binary(Binary::Div), vec![s, c]);
        if head_bias {
            let hb = g.add_const("head_bias", random(&[2, 1, 3], 9));
            s = node(&mut g, Op::Binary(Binary::Add), vec![s, hb]);
        }
        let p = node(
            &mut g,
            Op::Softmax {
                axis: -1,
                coerce_2d: false,
            },
            vec![s],
        );
        let ctx = node(&mut g, Op::MatMul, vec![p, v]);
        let ctx = node(&mut g, t0213, vec![ctx]);
        let merged = if gemm { vec![3, 4] } else { vec![1, 3, 4] };
        let ctx = node(
            &mut g,
            Op::Reshape {
                shape: merged.iter().map(|&d| d as i64).collect(),
                allowzero: false,
            },
            vec![ctx],
        );
        let y = if gemm {
            let wo = g.add_const("o.w", transposed(&w.wo));
            let bo = g.add_const("o.b", w.bo.clone());
            let op = Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            };
            g.add_node("attn/o", op, vec![ctx, wo, bo]).unwrap().1[0]
        } else {
            let wo = g.add_const("o.w", w.wo.clone());
            let bo = g.add_const("o.b", w.bo.clone());
            let y = g.add_node("attn/o", Op::MatMul, vec![ctx, wo]).unwrap().1[0];
            g.add_node("attn/o/add", Op::Binary(Binary::Add), vec![y, bo])
                .unwrap()
                .1[0]
        };
        g.outputs.push(y);
        if probs_out {
            g.outputs.push(p);
        }
        g
    }

    /// The head count the softmax computes (None when no softmax is left).
    fn heads_left(g: &Graph) -> Option<usize> {
        g.node_indices()
            .find(|&n| matches!(g.node(n).op, Op::Softmax { .. }))
            .map(|n| g.value(g.node(n).outputs[0]).shape[1])
    }

    /// The pass's report on a filetest's graph (the interpreter checks the result).
    fn report_on(text: &str) -> String {
        let g = crate::ir::parse::parse(text).unwrap();
        run_checked(&g, &DeadHeads).1
    }

    #[test]
    fn quantized_blocks_report_what_they_removed_and_kept() {
        let cases = [
            (
                include_str!("../../tests/filetests/dead-heads/qdq-v-zero.ir"),
                "removed 1 of 2 heads: attn 1/2",
            ),
            (
                include_str!("../../tests/filetests/dead-heads/qdq-wo-rows-zero.ir"),
                "removed 1 of 2 heads: attn 1/2",
            ),
            (
                include_str!("../../tests/filetests/dead-heads/keep-qdq-v-bias.ir"),
                "removed 0 of 2 heads: attn 0/2",
            ),
            (
                include_str!("../../tests/filetests/dead-heads/dynamic-v-zero.ir"),
                "removed 1 of 2 heads: attn 1/2",
            ),
            (
                include_str!("../../tests/filetests/dead-heads/keep-dynamic-wo-rows.ir"),
                "removed 0 of 2 heads: attn 0/2 (kept heads 1: DynamicQuantizeLinear \
                 attn/ctx_dql ranges over their non-zero values)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(report_on(text), want);
        }
    }

    #[test]
    fn zero_v_removes_the_head() {
        let mut w = weights();
        zero_cols(&mut w.wv, 2..4);
        zero_cols(&mut w.bv, 2..4);
        let (g, s) = run_checked(&build(&w, false, false, false), &DeadHeads);
        assert_eq!(s, "removed 1 of 2 heads: attn 1/2");
        assert_eq!(heads_left(&g), Some(1));
        let wq = g
            .node_indices()
            .find(|&n| g.node(n).name == "attn/q")
            .unwrap();
        assert_eq!(g.value(g.node(wq).inputs[1]).shape, [4, 2]);
    }

    #[test]
    fn zero_output_rows_remove_the_head() {
        let mut w = weights();
        zero_rows(&mut w.wo, 0..2);
        let (g, s) = run_checked(&build(&w, false, true, false), &DeadHeads);
        assert!(s.starts_with("removed 1 of 2 heads"), "{s}");
        assert_eq!(heads_left(&g), Some(1));
        // The per-head score bias was sliced with the heads.
        let hb = g
            .values()
            .filter(|(v, val)| val.name == "head_bias" && g.is_used(*v))
            .map(|(_, val)| val.shape.clone())
            .collect::<Vec<_>>();
        assert_eq!(hb, [vec![1, 1, 3]]);
    }

    #[test]
    fn gemm_projections_with_transposed_weights() {
        let mut w = weights();
        zero_cols(&mut w.wv, 0..2);
        zero_cols(&mut w.bv, 0..2);
        let (g, s) = run_checked(&build(&w, true, false, false), &DeadHeads);
        assert!(s.starts_with("removed 1 of 2 heads"), "{s}");
        assert_eq!(heads_left(&g), Some(1));
    }

    #[test]
    fn all_heads_dead_leaves_the_bias() {
        let mut w = weights();
        zero_cols(&mut w.wv, 0..2);
        zero_cols(&mut w.bv, 0..2);
        zero_rows(&mut w.wo, 2..4);
        let (g, s) = run_checked(&build(&w, false, false, false), &DeadHeads);
        assert!(s.starts_with("removed 2 of 2 heads"), "{s}");
        assert_eq!(heads_left(&g), None);
        assert_eq!(g.node_count(), 1, "only the bias add is left");
    }

    #[test]
    fn all_heads_dead_leaves_gemms_scaled_bias() {
        let mut w = weights();
        zero_cols(&mut w.wv, 0..4);
        zero_cols(&mut w.bv, 0..4);
        let mut g = build(&w, true, false, false);
        let o = g
            .node_indices()
            .find(|&n| g.node(n).name == "attn/o")
            .unwrap();
        let op = Op::Gemm {
            alpha: 0.5,
            beta: 2.0,
            trans_a: false,
            trans_b: true,
        };
        let ins = g.node(o).inputs.clone();
        g.set_op(o, op, ins).unwrap();
        let (g, s) = run_checked(&g, &DeadHeads);
        assert!(s.starts_with("removed 2 of 2 heads"), "{s}");
        assert_eq!(g.node_count(), 0);
    }

    #[test]
    fn a_shared_constant_keeps_one_definition_per_name() {
        let mut w = weights();
        zero_cols(&mut w.wv, 2..4);
        zero_cols(&mut w.bv, 2..4);
        let mut g = build(&w, false, false, false);
        // The query bias is also read outside the block.
        let qb = g.values().find(|(_, v)| v.name == "q.b").unwrap().0;
        let y = g.outputs[0];
        let z = g
            .add_node("outside", Op::Binary(Binary::Add), vec![y, qb])
            .unwrap()
            .1[0];
        g.outputs = vec![z];
        let (g, s) = run_checked(&g, &DeadHeads);
        assert!(s.starts_with("removed 1 of 2 heads"), "{s}");
        let mut names: Vec<(&str, &[usize])> = g
            .values()
            .filter(|(v, _)| g.is_used(*v))
            .map(|(_, v)| (v.name.as_str(), v.shape.as_slice()))
            .collect();
        names.sort();
        let n = names.len();
        names.dedup_by_key(|(name, _)| *name);
        assert_eq!(names.len(), n, "{names:?}");
        assert!(names.contains(&("q.b", &[4][..])) && names.contains(&("q.b.pruned", &[2][..])));
    }

    #[test]
    fn zero_query_and_key_keep_the_head() {
        let mut w = weights();
        for t in [&mut w.wq, &mut w.bq, &mut w.wk, &mut w.bk] {
            zero_cols(t, 2..4);
        }
        let (g, s) = run_checked(&build(&w, false, false, false), &DeadHeads);
        assert_eq!(s, "removed 0 of 2 heads: attn 0/2");
        assert_eq!(heads_left(&g), Some(2));
    }

    #[test]
    fn zero_v_weights_with_a_bias_keep_the_head() {
        let mut w = weights();
        zero_cols(&mut w.wv, 2..4);
        let (_, s) = run_checked(&build(&w, false, false, false), &DeadHeads);
        assert!(s.starts_with("removed 0 of 2 heads"), "{s}");
    }

    #[test]
    fn a_reader_outside_the_block_keeps_every_head() {
        let mut w = weights();
        zero_cols(&mut w.wv, 2..4);
        zero_cols(&mut w.bv, 2..4);
        let (g, s) = run_checked(&build(&w, false, false, true), &DeadHeads);
        assert!(
            s.starts_with("removed 0 of 0 heads; not matched: attn/"),
            "{s}"
        );
        assert_eq!(heads_left(&g), Some(2));
    }
}
