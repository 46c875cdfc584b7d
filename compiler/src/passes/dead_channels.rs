//! Dead FFN-channel elimination: physically removes hidden channels of a feed-forward block
//! `Linear1 → elementwise activation chain → Linear2` that provably contribute a constant.
//!
//! The chain is every node reading the first projection's output, transitively, up to the
//! second projection: each must be elementwise with its other operands scalars or
//! per-channel constants (so channel `j` of every chain value depends only on channel `j` of
//! the projection: exporters' erf GELU `Div/Erf/Add/Mul/Mul`, Gelu, Relu, tanh GELU, a bias
//! add...), no chain value may be read elsewhere, and all of it must end in one projection.
//!
//! Channel `j` is dead, for finite inputs, when
//! - `W1[:,j]` is exactly zero: then the chain's value in channel `j` is the constant
//!   `c_j = chain(b_j)` (`b_j` = Gemm's bias, else 0), which the interpreter evaluates. If
//!   `c_j == 0` the channel is dropped; otherwise `c_j·W2[j,:]` is folded into the second
//!   projection's constant bias add (if it has none, the channel is kept). So a zero column
//!   with a non-zero bias add in the chain is folded, not kept: it is a constant channel; or
//! - `W2[j,:]` is exactly zero.
//!
//! Removal slices W1's columns, per-channel constants of the chain and W2's rows.

use std::collections::{HashMap, HashSet};

use super::Pass;
use super::pruning::{
    Linear, Rebuild, finite_scalar, group_is_zero, is_elementwise, is_per_tensor_quant,
    is_table_lookup, keep_names_unique, linear, region_label, replace_with_constant, slice_groups,
};
use crate::Error;
use crate::interp;
use crate::ir::{Binary, DType, Data, Graph, NodeIndex, Op, Tensor, ValueId};

pub struct DeadChannels;

/// A matched feed-forward block.
struct Ffn {
    first: Linear,
    /// Chain nodes in topological order.
    chain: Vec<NodeIndex>,
    second: Linear,
    /// The constant bias add after the second projection: node and constant's input index.
    bias2: Option<(NodeIndex, usize)>,
    channels: usize,
    /// A DynamicQuantizeLinear in the chain, whose result the second projection reads.
    dql: Option<NodeIndex>,
}

impl Pass for DeadChannels {
    fn name(&self) -> &'static str {
        "dead-channels"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let order = g.topo_order();
        let mut gone: HashSet<NodeIndex> = HashSet::new();
        let (mut total, mut removed) = (0, 0);
        let mut per_layer = Vec::new();
        for &n in &order {
            if gone.contains(&n) {
                continue;
            }
            let Some(first) = linear(g, n) else { continue };
            let Some(ffn) = match_ffn(g, &order, first) else {
                continue;
            };
            let Some(plan) = plan(g, &ffn)? else { continue };
            let n_dead = ffn.channels - plan.keep.len();
            total += ffn.channels;
            removed += n_dead;
            let mut nodes = vec![ffn.first.node];
            nodes.extend(&ffn.chain);
            nodes.push(ffn.second.node);
            nodes.extend(ffn.bias2.map(|(a, _)| a));
            let label = region_label(g, &[ffn.first.node, ffn.second.node], &nodes);
            let why = plan
                .why
                .as_ref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            per_layer.push(format!("{label} {n_dead}/{}{why}", ffn.channels));
            if n_dead == 0 {
                continue;
            }
            gone.insert(ffn.first.node);
            gone.extend(ffn.chain.iter().copied());
            gone.insert(ffn.second.node);
            remove_channels(g, &ffn, plan)?;
        }
        let mut s = format!("removed {removed} of {total} channels");
        if !per_layer.is_empty() {
            s += &format!(": {}", per_layer.join(", "));
        }
        Ok(s)
    }
}

/// Follows `first`'s output through an elementwise chain to a second projection.
fn match_ffn(g: &Graph, order: &[NodeIndex], first: Linear) -> Option<Ffn> {
    let channels = *g.value(first.output).shape.last()?;
    let mut chain_vals: HashSet<ValueId> = HashSet::from([first.output]);
    let mut chain = Vec::new();
    let mut second: Option<Linear> = None;
    let mut dql = None;
    let start = order.iter().position(|&n| n == first.node)? + 1;
    for &n in &order[start..] {
        let node = g.node(n);
        if !node.inputs.iter().any(|v| chain_vals.contains(v)) {
            continue;
        }
        if let Some(lin) = linear(g, n) {
            let w = g.konst(lin.weight)?;
            if second.is_some()
                || !chain_vals.contains(&lin.input)
                || w.shape[lin.in_axis()] != channels
            {
                return None;
            }
            second = Some(lin);
            continue;
        }
        let out_shape = &g.value(node.outputs[0]).shape;
        if out_shape.last() != Some(&channels) {
            return None;
        }
        if node.op.is_view() {
            // Leading dims regroup ([1,S,C] <-> [S,C]); channels stay the last axis.
            chain_vals.insert(node.outputs[0]);
            chain.push(n);
            continue;
        }
        if node.op == Op::DynamicQuantizeLinear {
            // Only its codes are per channel; its scale and zero point are not.
            if dql.is_some() {
                return None;
            }
            dql = Some(n);
            chain_vals.insert(node.outputs[0]);
            chain.push(n);
            continue;
        }
        if is_table_lookup(g, n) {
            if g.value(node.inputs[1]).shape != *out_shape || !chain_vals.contains(&node.inputs[1])
            {
                return None;
            }
            chain_vals.insert(node.outputs[0]);
            chain.push(n);
            continue;
        }
        if !is_elementwise(&node.op) && !is_per_tensor_quant(g, n) {
            return None;
        }
        for &v in &node.inputs {
            if chain_vals.contains(&v) {
                if g.value(v).shape != *out_shape {
                    return None;
                }
                continue;
            }
            if node.op == Op::Binary(Binary::Mul) && finite_scalar(g, v) && g.konst(v).is_none() {
                continue; // dynamic quantization's rescale
            }
            let t = g.konst(v)?;
            let r = t.shape.len();
            let per_channel = r <= out_shape.len()
                && t.shape[..r.saturating_sub(1)].iter().all(|&d| d == 1)
                && (t.len() == 1 || t.shape[r - 1] == channels);
            if !per_channel {
                return None;
            }
        }
        for &o in &node.outputs {
            if g.value(o).shape != *out_shape {
                return None;
            }
            chain_vals.insert(o);
        }
        chain.push(n);
    }
    let second = second?;
    if chain_vals.iter().any(|v| g.outputs.contains(v)) {
        return None;
    }
    // A DynamicQuantizeLinear must quantize exactly what the second projection reads.
    if let Some(d) = dql {
        let outs = &g.node(d).outputs;
        let x_zero = second.quant.as_ref().map(|q| q.x_zero);
        if second.input != outs[0] || x_zero != Some(outs[2]) {
            return None;
        }
    }
    // The second projection's constant bias add, if it is the only reader.
    let out = second.output;
    let readers = g.consumers(out);
    let bias2 = match readers.as_slice() {
        [a] if g.node(*a).op == Op::Binary(Binary::Add) && !g.outputs.contains(&out) => {
            let node = g.node(*a);
            let k = node.inputs.iter().position(|&v| v != out)?;
            let t = g.konst(node.inputs[k])?;
            let n_out = *g.value(out).shape.last()?;
            let ok = t.dtype == DType::F32
                && t.shape.last() == Some(&n_out)
                && t.shape[..t.shape.len() - 1].iter().all(|&d| d == 1)
                && g.value(node.outputs[0]).shape == g.value(out).shape
                && second.quant.is_none();
            ok.then_some((*a, k))
        }
        _ => None,
    };
    Some(Ffn {
        first,
        chain,
        second,
        bias2,
        channels,
        dql,
    })
}

/// What to remove: the kept channels and the second bias with constant channels folded in
/// (the float bias add's constant, or a QGemm's int32 bias).
struct Plan {
    keep: Vec<usize>,
    bias2: Option<Tensor>,
    qbias: Option<Tensor>,
    /// Why channels with zero weights were kept, when some were.
    why: Option<String>,
}

fn plan(g: &Graph, f: &Ffn) -> Result<Option<Plan>, Error> {
    let c = f.channels;
    let w1 = g.konst(f.first.weight).expect("weight");
    let w2 = g.konst(f.second.weight).expect("weight");
    let w2_in = f.second.in_axis();
    let zero_in: Vec<bool> = (0..c)
        .map(|j| group_is_zero(w1, f.first.out_axis, 1, j))
        .collect();
    let zero_out: Vec<bool> = (0..c).map(|j| group_is_zero(w2, w2_in, 1, j)).collect();
    let all = Plan {
        keep: (0..c).collect(),
        bias2: None,
        qbias: None,
        why: None,
    };
    if !zero_in.iter().any(|&z| z) && !zero_out.iter().any(|&z| z) {
        return Ok(Some(all));
    }
    let Some(at) = chain_at_zero(g, f)? else {
        return Ok(None);
    };
    if let Some(d) = f.dql {
        // DynamicQuantizeLinear's range spans every channel (and 0): a channel may go only
        // if it is exactly 0.0 there, so that its codes are the zero point (contributing
        // `(x − x_zero)·W2 = 0`) and the range of what is left is the same.
        let x = at
            .value
            .as_f32()
            .expect("DynamicQuantizeLinear input is f32");
        let dead = |j: usize| zero_in[j] && at.known[j] && x[j] == 0.0;
        let keep: Vec<usize> = (0..c).filter(|&j| !dead(j)).collect();
        let kept: Vec<String> = keep
            .iter()
            .filter(|&&j| zero_in[j] || zero_out[j])
            .map(|j| j.to_string())
            .collect();
        let why = (!kept.is_empty()).then(|| {
            format!(
                "kept channels {}: DynamicQuantizeLinear {} ranges over their non-zero values",
                kept.join(","),
                g.node(d).name
            )
        });
        return Ok(Some(Plan {
            why,
            ..Plan { keep, ..all }
        }));
    }
    let n_out = w2.shape[f.second.out_axis];
    let mut bias2 = f
        .bias2
        .map(|(a, k)| g.konst(g.node(a).inputs[k]).expect("bias").clone());
    let second_zero = f
        .second
        .quant
        .as_ref()
        .and_then(|q| g.konst(q.x_zero))
        .and_then(|t| t.to_i64s())
        .and_then(|z| z.first().copied());
    let mut qbias: Option<Vec<i32>> = match (&f.second.quant, second_zero) {
        (Some(_), Some(_)) => {
            let b = g.konst(f.second.bias.expect("QGemm bias")).expect("bias");
            b.to_i64s().map(|v| v.iter().map(|&x| x as i32).collect())
        }
        _ => None,
    };
    let mut keep = Vec::new();
    for j in 0..c {
        if zero_out[j] {
            continue;
        }
        if !(zero_in[j] && at.known[j]) {
            keep.push(j);
            continue;
        }
        if f.second.quant.is_some() {
            // The constant code c_j contributes (c_j − x_zero)·W2[j,:] to the exact int32
            // accumulator: nothing, or a constant folded into the int32 bias.
            let (Some(cj), Some(z), Some(qb), Some(w)) = (
                at.value.to_i64s().map(|v| v[j]),
                second_zero,
                qbias.as_mut(),
                w2.to_i64s(),
            ) else {
                keep.push(j);
                continue;
            };
            if cj == z {
                continue;
            }
            for (o, b) in qb.iter_mut().enumerate().take(n_out) {
                *b = b.wrapping_add(((cj - z) * w[j * n_out + o]) as i32);
            }
            continue;
        }
        let Some(cj) = at.value.as_f32().map(|x| x[j]).filter(|x| x.is_finite()) else {
            keep.push(j);
            continue;
        };
        if cj == 0.0 {
            continue;
        }
        let (Some(b), Some(w2d)) = (bias2.as_mut(), w2.as_f32()) else {
            keep.push(j);
            continue;
        };
        let Some(bd) = b.as_f32() else {
            keep.push(j);
            continue;
        };
        let mut bd = bd.to_vec();
        for (o, x) in bd.iter_mut().enumerate().take(n_out) {
            let w = if w2_in == 0 {
                w2d[j * n_out + o]
            } else {
                w2d[o * c + j]
            };
            *x += f.second.alpha * cj * w;
        }
        *b = Tensor::f32(b.shape.clone(), bd);
    }
    let qbias = qbias.map(|v| Tensor {
        dtype: DType::I32,
        shape: vec![v.len()],
        data: Data::I32(v),
    });
    Ok(Some(Plan {
        keep,
        bias2,
        qbias,
        why: None,
    }))
}

/// The chain's per-channel values when the first projection's product is zero.
struct AtZero {
    /// At the second projection's input, or at the DynamicQuantizeLinear's input.
    value: Tensor,
    /// Which channels are known constants (a rescale by a run-time scalar keeps only the
    /// zero ones).
    known: Vec<bool>,
}

/// The chain's value in every channel when the first projection's product is zero, by
/// running the chain's ops on per-channel vectors; `None` if an op cannot run on them.
fn chain_at_zero(g: &Graph, f: &Ffn) -> Result<Option<AtZero>, Error> {
    let c = f.channels;
    let start = f.first.at_zero(g)?;
    let mut vals: HashMap<ValueId, (Tensor, Vec<bool>)> =
        HashMap::from([(f.first.output, (start, vec![true; c]))]);
    for &n in &f.chain {
        let node = g.node(n);
        if node.op.is_view() {
            let v = vals[&node.inputs[0]].clone();
            vals.insert(node.outputs[0], v);
            continue;
        }
        if Some(n) == f.dql {
            let (t, known) = vals[&node.inputs[0]].clone();
            return Ok(t.as_f32().is_some().then_some(AtZero { value: t, known }));
        }
        let known: Vec<bool> = (0..c)
            .map(|j| {
                node.inputs
                    .iter()
                    .filter_map(|v| vals.get(v))
                    .all(|(_, k)| k[j])
            })
            .collect();
        if let Some(k) = (0..node.inputs.len())
            .find(|&k| !vals.contains_key(&node.inputs[k]) && g.konst(node.inputs[k]).is_none())
        {
            // `x · s` with `s` a finite run-time scalar: 0 where x is 0, unknown elsewhere.
            let (t, _) = &vals[&node.inputs[1 - k]];
            let Some(x) = t.as_f32() else {
                return Ok(None);
            };
            let known = (0..c).map(|j| known[j] && x[j] == 0.0).collect();
            vals.insert(node.outputs[0], (t.clone(), known));
            continue;
        }
        let table = is_table_lookup(g, n);
        let args: Vec<Tensor> = node
            .inputs
            .iter()
            .enumerate()
            .map(|(i, v)| match vals.get(v) {
                Some((t, _)) => t.clone(),
                None => {
                    let mut t = g.konst(*v).expect("checked constant").clone();
                    if !(table && i == 0) {
                        t.shape = if t.len() == 1 { vec![] } else { vec![c] };
                    }
                    t
                }
            })
            .collect();
        let refs: Vec<&Tensor> = args.iter().collect();
        // An op the per-channel evaluation cannot run leaves the block alone.
        let Ok(out) = interp::eval(&node.op, &refs) else {
            return Ok(None);
        };
        for (&o, t) in node.outputs.iter().zip(out) {
            vals.insert(o, (t, known.clone()));
        }
    }
    let last = g.node(f.second.node).inputs[0];
    let (value, known) = vals[&last].clone();
    Ok(Some(AtZero { value, known }))
}

fn remove_channels(g: &mut Graph, f: &Ffn, plan: Plan) -> Result<(), Error> {
    if let (Some((a, k)), Some(b)) = (f.bias2, plan.bias2) {
        let mut inputs = g.node(a).inputs.clone();
        let old = inputs[k];
        inputs[k] = g.add_const(g.value(old).name.clone(), b);
        let new = inputs[k];
        g.set_op(a, Op::Binary(Binary::Add), inputs)?;
        keep_names_unique(g, new, old);
    }
    let mut nodes = vec![f.first.node];
    nodes.extend(&f.chain);
    nodes.push(f.second.node);
    if plan.keep.is_empty() {
        // With a folded int32 bias, or a DynamicQuantizeLinear whose scale is read after
        // the second projection, one (zero) input channel stays rather than the second
        // projection becoming a constant here.
        if plan.qbias.is_none() && f.dql.is_none() {
            return replace_with_constant(g, &f.second, &nodes);
        }
    }
    let keep = if plan.keep.is_empty() {
        vec![0]
    } else {
        plan.keep.clone()
    };
    let slice = |g: &Graph, v: ValueId, axis: usize| {
        slice_groups(g.konst(v).expect("constant"), axis, 1, &keep).ok_or_else(|| {
            Error::Internal("slicing a per-channel constant of no program dtype".into())
        })
    };
    let mut rb = Rebuild {
        nodes: nodes.clone(),
        exits: vec![f.second.output],
        ..Rebuild::default()
    };
    if let Some(d) = f.dql {
        // Its scale and zero point are read after the second projection too.
        rb.exits.extend(&g.node(d).outputs[1..]);
    }
    rb.consts.insert(
        (f.first.node, f.first.weight_input()),
        slice(g, f.first.weight, f.first.out_axis)?,
    );
    if let Some(b) = f.first.bias {
        let r = g.value(b).shape.len();
        rb.consts
            .insert((f.first.node, f.first.bias_input()), slice(g, b, r - 1)?);
    }
    if let Some(m) = f.first.quant.as_ref().and_then(|q| q.multipliers)
        && g.value(m).num_elements() > 1
    {
        rb.consts.insert((f.first.node, 4), slice(g, m, 0)?);
    }
    let mut w2 = slice(g, f.second.weight, f.second.in_axis())?;
    if plan.keep.is_empty() {
        // The one channel kept for shape's sake contributes nothing.
        let n = w2.len();
        w2 = Tensor::from_le_bytes(
            w2.dtype,
            w2.shape.clone(),
            &vec![0; n * w2.dtype.bits() / 8],
        )
        .expect("a zero weight");
    }
    rb.consts
        .insert((f.second.node, f.second.weight_input()), w2);
    if let Some(qb) = plan.qbias {
        rb.consts.insert((f.second.node, f.second.bias_input()), qb);
    }
    for &n in &f.chain {
        let node = g.node(n);
        if let Op::Reshape { shape, allowzero } = &node.op {
            let mut shape = shape.clone();
            let last = shape.len() - 1;
            if shape[last] > 0 {
                shape[last] = keep.len() as i64;
            }
            let allowzero = *allowzero;
            rb.ops.insert(n, Op::Reshape { shape, allowzero });
        }
        let table = is_table_lookup(g, n);
        for (i, &v) in node.inputs.iter().enumerate() {
            let Some(t) = g.konst(v) else { continue };
            if t.len() > 1 && t.shape.last() == Some(&f.channels) && !(table && i == 0) {
                rb.consts.insert((n, i), slice(g, v, t.shape.len() - 1)?);
            }
        }
    }
    rb.apply(g)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{random, run_on_copy as run_checked};
    use super::*;
    use crate::ir::{DType, Unary};

    enum Act {
        Gelu,
        Relu,
        Sigmoid,
    }

    /// x[1,3,4] → W1 [4,6] + b1 → activation → W2 [6,4] (+ b2). `zero_w1` zeroes W1's
    /// columns, `zero_b1` b1's entries, `zero_w2` W2's rows.
    fn build(act: Act, zero_w1: &[usize], zero_b1: &[usize], zero_w2: &[usize], b2: bool) -> Graph {
        let mut w1 = random(&[4, 6], 1).as_f32().unwrap().to_vec();
        let mut b1 = random(&[6], 2).as_f32().unwrap().to_vec();
        let mut w2 = random(&[6, 4], 3).as_f32().unwrap().to_vec();
        for &j in zero_w1 {
            (0..4).for_each(|i| w1[i * 6 + j] = 0.0);
        }
        for &j in zero_b1 {
            b1[j] = 0.0;
        }
        for &j in zero_w2 {
            w2[j * 4..(j + 1) * 4].fill(0.0);
        }
        let mut g = Graph::new("ffn");
        let x = g.add_input("x", DType::F32, vec![1, 3, 4]);
        g.inputs.push(x);
        let w1 = g.add_const("w1", Tensor::f32(vec![4, 6], w1));
        let b1 = g.add_const("b1", Tensor::f32(vec![6], b1));
        let w2 = g.add_const("w2", Tensor::f32(vec![6, 4], w2));
        let mut n = 0;
        let mut node = |g: &mut Graph, op: Op, ins: Vec<ValueId>| {
            n += 1;
            g.add_node(format!("ffn/n{n}"), op, ins).unwrap().1[0]
        };
        let h = node(&mut g, Op::MatMul, vec![x, w1]);
        let h = node(&mut g, Op::Binary(Binary::Add), vec![h, b1]);
        let a = match act {
            Act::Gelu => {
                // The exporters' erf GELU, with a per-channel scale thrown in.
                let sqrt2 =
                    g.add_const("sqrt2", Tensor::f32(vec![], vec![std::f32::consts::SQRT_2]));
                let one = g.add_const("one", Tensor::f32(vec![1], vec![1.0]));
                let half = g.add_const("half", Tensor::f32(vec![1, 1, 6], vec![0.5; 6]));
                let d = node(&mut g, Op::Binary(Binary::Div), vec![h, sqrt2]);
                let e = node(&mut g, Op::Unary(Unary::Erf), vec![d]);
                let e = node(&mut g, Op::Binary(Binary::Add), vec![e, one]);
                let m = node(&mut g, Op::Binary(Binary::Mul), vec![h, e]);
                node(&mut g, Op::Binary(Binary::Mul), vec![m, half])
            }
            Act::Relu => node(&mut g, Op::Unary(Unary::Relu), vec![h]),
            Act::Sigmoid => node(&mut g, Op::Unary(Unary::Sigmoid), vec![h]),
        };
        let mut y = node(&mut g, Op::MatMul, vec![a, w2]);
        if b2 {
            let b2 = g.add_const("b2", random(&[4], 4));
            y = node(&mut g, Op::Binary(Binary::Add), vec![b2, y]);
        }
        g.outputs.push(y);
        g
    }

    /// The hidden width left (W1's output features).
    fn width(g: &Graph) -> usize {
        let w1 = g
            .values()
            .find(|(v, val)| val.name == "w1" && g.is_used(*v))
            .unwrap();
        let s = &w1.1.shape;
        if g.node_indices()
            .any(|n| matches!(g.node(n).op, Op::Gemm { .. }))
        {
            s[0]
        } else {
            s[1]
        }
    }

    #[test]
    fn quantized_ffns_report_what_they_removed_and_kept() {
        let cases = [
            (
                include_str!("../../tests/filetests/dead-channels/qdq-w1-zero-and-w2-rows.ir"),
                "removed 3 of 6 channels: ffn 3/6",
            ),
            (
                include_str!("../../tests/filetests/dead-channels/qdq-constant-channel-folded.ir"),
                "removed 1 of 6 channels: ffn 1/6",
            ),
            (
                include_str!("../../tests/filetests/dead-channels/dynamic-w1-zero.ir"),
                "removed 2 of 6 channels: ffn 2/6",
            ),
            (
                include_str!("../../tests/filetests/dead-channels/keep-dynamic-w2-rows.ir"),
                "removed 0 of 6 channels: ffn 0/6 (kept channels 1: DynamicQuantizeLinear \
                 ffn/act_dql ranges over their non-zero values)",
            ),
        ];
        for (text, want) in cases {
            let g = crate::ir::parse::parse(text).unwrap();
            assert_eq!(run_checked(&g, &DeadChannels).1, want);
        }
    }

    #[test]
    fn zero_w1_columns_and_bias_are_removed() {
        let g = build(Act::Gelu, &[1, 4], &[1, 4], &[], true);
        let (g, s) = run_checked(&g, &DeadChannels);
        assert_eq!(s, "removed 2 of 6 channels: ffn 2/6");
        assert_eq!(width(&g), 4);
        let half = g
            .values()
            .find(|(v, val)| val.name == "half" && g.is_used(*v));
        assert_eq!(
            half.unwrap().1.shape,
            [1, 1, 4],
            "per-channel constant sliced"
        );
    }

    #[test]
    fn zero_w2_rows_are_removed() {
        let (g, s) = run_checked(&build(Act::Relu, &[], &[], &[0, 5], false), &DeadChannels);
        assert!(s.starts_with("removed 2 of 6"), "{s}");
        assert_eq!(width(&g), 4);
    }

    #[test]
    fn a_constant_channel_folds_into_the_second_bias() {
        let (g, s) = run_checked(&build(Act::Sigmoid, &[2], &[], &[], true), &DeadChannels);
        assert!(s.starts_with("removed 1 of 6"), "{s}");
        assert_eq!(width(&g), 5);
    }

    #[test]
    fn a_constant_channel_without_a_second_bias_is_kept() {
        let (g, s) = run_checked(&build(Act::Sigmoid, &[2], &[2], &[], false), &DeadChannels);
        assert!(s.starts_with("removed 0 of 6"), "{s}");
        assert_eq!(width(&g), 6);
        // Relu(0) = 0: the same channel without the second bias can go.
        let (g, s) = run_checked(&build(Act::Relu, &[2], &[2], &[], false), &DeadChannels);
        assert!(s.starts_with("removed 1 of 6"), "{s}");
        assert_eq!(width(&g), 5);
    }

    #[test]
    fn every_channel_dead_leaves_the_bias() {
        let all: Vec<usize> = (0..6).collect();
        let (g, s) = run_checked(&build(Act::Relu, &[], &[], &all, true), &DeadChannels);
        assert!(s.starts_with("removed 6 of 6"), "{s}");
        assert_eq!(g.node_count(), 1);
    }

    /// x[3,4] → Gemm{alpha=0.5 beta=2 trans_b}(W1 [6,4], b1) → Sigmoid →
    /// Gemm{alpha=0.25 trans_b}(W2 [4,6]) (+ b2): the scales enter the folded constants.
    fn build_gemm(zero_w1_rows: &[usize], zero_w2_cols: &[usize]) -> Graph {
        let mut w1 = random(&[6, 4], 1).as_f32().unwrap().to_vec();
        let mut w2 = random(&[4, 6], 3).as_f32().unwrap().to_vec();
        for &j in zero_w1_rows {
            w1[j * 4..(j + 1) * 4].fill(0.0);
        }
        for &j in zero_w2_cols {
            (0..4).for_each(|o| w2[o * 6 + j] = 0.0);
        }
        let mut g = Graph::new("ffn");
        let x = g.add_input("x", DType::F32, vec![3, 4]);
        g.inputs.push(x);
        let w1 = g.add_const("w1", Tensor::f32(vec![6, 4], w1));
        let b1 = g.add_const("b1", random(&[6], 2));
        let w2 = g.add_const("w2", Tensor::f32(vec![4, 6], w2));
        let b2 = g.add_const("b2", random(&[4], 4));
        let gemm = |alpha, beta| Op::Gemm {
            alpha,
            beta,
            trans_a: false,
            trans_b: true,
        };
        let h = g
            .add_node("fc1", gemm(0.5, 2.0), vec![x, w1, b1])
            .unwrap()
            .1[0];
        let a = g
            .add_node("act", Op::Unary(Unary::Sigmoid), vec![h])
            .unwrap()
            .1[0];
        let y = g.add_node("fc2", gemm(0.25, 1.0), vec![a, w2]).unwrap().1[0];
        let y = g
            .add_node("fc2/add", Op::Binary(Binary::Add), vec![y, b2])
            .unwrap()
            .1[0];
        g.outputs.push(y);
        g
    }

    #[test]
    fn gemm_scales_enter_the_folded_channel() {
        let (g, s) = run_checked(&build_gemm(&[1, 3], &[]), &DeadChannels);
        assert!(s.starts_with("removed 2 of 6"), "{s}");
        assert_eq!(width(&g), 4);
        let (g, s) = run_checked(&build_gemm(&[], &[0, 1, 2, 3, 4, 5]), &DeadChannels);
        assert!(s.starts_with("removed 6 of 6"), "{s}");
        assert_eq!(g.node_count(), 1);
    }

    #[test]
    fn a_partly_zero_column_is_kept() {
        let mut g = build(Act::Gelu, &[], &[3], &[], true);
        let w1 = g.values().find(|(_, v)| v.name == "w1").unwrap().0;
        let mut t = g.konst(w1).unwrap().clone();
        let mut d = t.as_f32().unwrap().to_vec();
        (0..3).for_each(|i| d[i * 6 + 3] = 0.0);
        t = Tensor::f32(t.shape.clone(), d);
        g.value_mut(w1).konst = Some(t);
        let (_, s) = run_checked(&g, &DeadChannels);
        assert!(s.starts_with("removed 0 of 6"), "{s}");
    }
}
