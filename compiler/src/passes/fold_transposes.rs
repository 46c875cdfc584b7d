//! Transpose folding: a MatMul whose operands are Transposes and/or whose only reader is
//! a Transpose becomes one `Einsum` that reads the Transposes' inputs directly and writes
//! the transposed result, with the permutations folded into the equation.
//!
//! Attention as exporters write it transposes the per-head layout four times per layer:
//!
//! ```text
//! q: [b,s,h,d] --Transpose[0,2,1,3]--> [b,h,s,d] ┐
//! k: [b,t,h,d] --Transpose[0,2,3,1]--> [b,h,d,t] ┴ MatMul -> [b,h,s,t]   = bshd,bthd->bhst
//! p: [b,h,s,t], v: [b,t,h,d] --Transpose[0,2,1,3]--> [b,h,t,d]
//!    MatMul -> [b,h,s,d] --Transpose[0,2,1,3]--> [b,s,h,d]               = bhst,bthd->bshd
//! ```
//!
//! Each Transpose is a strided copy; the einsum lowering reads and writes those layouts
//! with strides in one GEMM. The rewrite is exact (the same sums of the same products,
//! only the index bookkeeping moves). It is done only when
//! [`crate::lower::einsum::is_one_gemm`] says the equation needs no copy, so it never
//! trades a Transpose for an einsum-internal copy; when folding every Transpose would
//! need one, the largest subset that does not is folded. A folded operand Transpose must
//! be read only by the MatMul, and the MatMul's result only by the folded Transpose (and
//! not be a graph output). Operands must have the same rank (2 or more) and equal batch
//! dims: numpy broadcasting of the batch is left to MatMul.

use super::Pass;
use super::pattern::{only_reader, other_operand, producer_if, single_use};
use crate::Error;
use crate::ir::{Binary, DType, Equation, Graph, NodeIndex, Op, ValueId};
use crate::lower::einsum::is_one_gemm;

pub struct FoldTransposes;

impl Pass for FoldTransposes {
    fn name(&self) -> &'static str {
        "fold-transposes"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let hoisted = hoist_scalar_scales(g)?;
        let (mut matmuls, mut transposes) = (0, 0);
        for n in g.topo_order() {
            if g.node_indices().all(|m| m != n) || g.node(n).op != Op::MatMul {
                continue;
            }
            if let Some(f) = best_fold(g, n) {
                transposes += f.folded();
                matmuls += 1;
                apply(g, n, f)?;
            }
        }
        Ok(format!(
            "folded {transposes} Transposes into {matmuls} MatMuls ({hoisted} scalar scales moved before their Transpose)"
        ))
    }
}

/// `MatMul(Mul(Transpose(x), c), ..)` with a one-element constant `c` becomes
/// `MatMul(Transpose(Mul(x, c)), ..)` (newer exporters scale q and k after the head
/// transpose), so the Transpose is next to the MatMul. Exact: scaling every element by the
/// same constant commutes with permuting them.
fn hoist_scalar_scales(g: &mut Graph) -> Result<usize, Error> {
    let mut hoisted = 0;
    for t in g.topo_order() {
        if g.node_indices().all(|m| m != t) {
            continue;
        }
        let tn = g.node(t).clone();
        let Op::Transpose { perm } = &tn.op else {
            continue;
        };
        let tv = tn.outputs[0];
        if !single_use(g, tv) {
            continue;
        }
        let mul = g.consumers(tv)[0];
        let mn = g.node(mul).clone();
        if mn.op != Op::Binary(Binary::Mul) || g.value(mn.outputs[0]).shape != g.value(tv).shape {
            continue;
        }
        let Some(c) = other_operand(&mn, tv) else {
            continue;
        };
        let scalar = g
            .konst(c)
            .is_some_and(|k| k.dtype == DType::F32 && k.len() == 1);
        let to_matmul = only_reader(g, mn.outputs[0]).is_some_and(|r| g.node(r).op == Op::MatMul);
        if !scalar || !to_matmul {
            continue;
        }
        // The scaled input, then the Transpose in the Mul's place (same result type).
        let ins = if mn.inputs[0] == tv {
            vec![tn.inputs[0], c]
        } else {
            vec![c, tn.inputs[0]]
        };
        g.remove_node(t);
        let name = format!("{}.before_transpose", mn.name);
        let (_, scaled) = g.add_node(name, Op::Binary(Binary::Mul), ins)?;
        let op = Op::Transpose { perm: perm.clone() };
        g.set_op(mul, op, vec![scaled[0]])?;
        hoisted += 1;
    }
    Ok(hoisted)
}

/// A foldable Transpose next to the MatMul: its node and permutation.
#[derive(Clone)]
struct Side {
    node: NodeIndex,
    perm: Vec<usize>,
    /// The Transpose's input (for operands) or output (for the result).
    value: ValueId,
    /// A shape-keeping Reshape between the MatMul and the result Transpose.
    via: Option<NodeIndex>,
}

struct Fold {
    eq: Equation,
    a: Option<Side>,
    b: Option<Side>,
    out: Option<Side>,
}

impl Fold {
    fn folded(&self) -> usize {
        [&self.a, &self.b, &self.out]
            .iter()
            .filter(|s| s.is_some())
            .count()
    }
}

/// The Transpose producing operand `v`, if only the MatMul reads its result.
fn operand_transpose(g: &Graph, v: ValueId) -> Option<Side> {
    let (n, node) = producer_if(g, v, |op| matches!(op, Op::Transpose { .. }))?;
    let Op::Transpose { perm } = &node.op else {
        return None;
    };
    single_use(g, v).then(|| Side {
        node: n,
        perm: perm.clone(),
        value: node.inputs[0],
        via: None,
    })
}

/// The Transpose that is the only reader of the MatMul's result, possibly through a
/// Reshape that keeps the shape (which the exporters leave after the context MatMul).
fn result_transpose(g: &Graph, v: ValueId) -> Option<Side> {
    let mut n = only_reader(g, v)?;
    let mut via = None;
    if matches!(g.node(n).op, Op::Reshape { .. })
        && g.value(g.node(n).outputs[0]).shape == g.value(v).shape
    {
        via = Some(n);
        n = only_reader(g, g.node(n).outputs[0])?;
    }
    let node = g.node(n);
    let Op::Transpose { perm } = &node.op else {
        return None;
    };
    Some(Side {
        node: n,
        perm: perm.clone(),
        value: node.outputs[0],
        via,
    })
}

fn letters(labels: &[u8]) -> String {
    labels.iter().map(|&c| c as char).collect()
}

/// Labels of a Transpose's input given its output's labels: `out[i] = in[perm[i]]`.
fn unpermute(out: &[u8], perm: &[usize]) -> Vec<u8> {
    let mut inp = vec![0; out.len()];
    for (i, &p) in perm.iter().enumerate() {
        inp[p] = out[i];
    }
    inp
}

/// Among the ways of folding the Transposes around MatMul `n`, the one folding the most
/// for which the einsum is still one copy-free GEMM.
fn best_fold(g: &Graph, n: NodeIndex) -> Option<Fold> {
    let node = g.node(n);
    let (a, b, c) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (sa, sb) = (&g.value(a).shape, &g.value(b).shape);
    let r = sa.len();
    if r < 2 || sb.len() != r || sa[..r - 2] != sb[..r - 2] || r > 23 {
        return None;
    }
    if [a, b].iter().any(|&v| g.value(v).dtype != DType::F32) {
        return None;
    }
    // Batch dims 'a'.., then m = 'x', k = 'y', n = 'z'.
    let batch: Vec<u8> = (0..r - 2).map(|i| b'a' + i as u8).collect();
    let la: Vec<u8> = batch.iter().copied().chain([b'x', b'y']).collect();
    let lb: Vec<u8> = batch.iter().copied().chain([b'y', b'z']).collect();
    let lc: Vec<u8> = batch.iter().copied().chain([b'x', b'z']).collect();
    let sides = [
        operand_transpose(g, a),
        operand_transpose(g, b),
        result_transpose(g, c),
    ];
    // Subsets of the available sides, most folded first (ties: a, then b, then result).
    let mut masks: Vec<u8> = (1..8u8)
        .filter(|m| (0..3).all(|i| m & (1 << i) == 0 || sides[i].is_some()))
        .collect();
    masks.sort_by_key(|m| std::cmp::Reverse(m.count_ones()));
    for mask in masks {
        let pick = |i: usize| (mask & (1 << i) != 0).then(|| sides[i].clone().expect("available"));
        let (fa, fb, fo) = (pick(0), pick(1), pick(2));
        let ia = fa.as_ref().map_or(la.clone(), |s| unpermute(&la, &s.perm));
        let ib = fb.as_ref().map_or(lb.clone(), |s| unpermute(&lb, &s.perm));
        let io: Vec<u8> = fo
            .as_ref()
            .map_or(lc.clone(), |s| s.perm.iter().map(|&p| lc[p]).collect());
        let text = format!("{},{}->{}", letters(&ia), letters(&ib), letters(&io));
        let Ok(eq) = Equation::parse(&text) else {
            continue;
        };
        let va = fa.as_ref().map_or(a, |s| s.value);
        let vb = fb.as_ref().map_or(b, |s| s.value);
        let shapes = [g.value(va).shape.as_slice(), g.value(vb).shape.as_slice()];
        if is_one_gemm(&eq, &shapes) {
            return Some(Fold {
                eq,
                a: fa,
                b: fb,
                out: fo,
            });
        }
    }
    None
}

fn apply(g: &mut Graph, n: NodeIndex, f: Fold) -> Result<(), Error> {
    let node = g.node(n).clone();
    let va = f.a.as_ref().map_or(node.inputs[0], |s| s.value);
    let vb = f.b.as_ref().map_or(node.inputs[1], |s| s.value);
    let op = Op::Einsum(f.eq);
    match &f.out {
        // The result Transpose becomes the Einsum in place (its value keeps its name).
        Some(o) => {
            g.set_op(o.node, op, vec![va, vb])?;
            g.remove_node(n);
            if let Some(r) = o.via {
                g.remove_node(r);
            }
        }
        None => g.set_op(n, op, vec![va, vb])?,
    }
    for s in [f.a, f.b].into_iter().flatten() {
        g.remove_node(s.node);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{ops, run_checked};

    /// The BERT attention core: scores = q·kᵀ, context = softmax-free p·v.
    fn attention(batch: usize, extra_reader: bool) -> Graph {
        let (s, h, d) = (5, 2, 3);
        let mut g = Graph::new("t");
        let inp = |g: &mut Graph, name: &str| {
            let v = g.add_input(name, DType::F32, vec![batch, s, h, d]);
            g.inputs.push(v);
            v
        };
        let (q, k, v) = (inp(&mut g, "q"), inp(&mut g, "k"), inp(&mut g, "v"));
        let tr = |g: &mut Graph, x, perm: &[usize], name: &str| {
            let op = Op::Transpose {
                perm: perm.to_vec(),
            };
            g.add_node(name, op, vec![x]).unwrap().1[0]
        };
        let qt = tr(&mut g, q, &[0, 2, 1, 3], "tq");
        let kt = tr(&mut g, k, &[0, 2, 3, 1], "tk");
        let vt = tr(&mut g, v, &[0, 2, 1, 3], "tv");
        let sc = g.add_node("mm", Op::MatMul, vec![qt, kt]).unwrap().1[0];
        let ctx = g.add_node("mm1", Op::MatMul, vec![sc, vt]).unwrap().1[0];
        let out = tr(&mut g, ctx, &[0, 2, 1, 3], "tout");
        g.outputs.push(out);
        if extra_reader {
            g.outputs.push(kt);
        }
        g
    }

    #[test]
    fn folds_the_four_attention_transposes() {
        let mut g = attention(1, false);
        let s = run_checked(&FoldTransposes, &mut g, 1e-5);
        assert_eq!(
            s,
            "folded 4 Transposes into 2 MatMuls (0 scalar scales moved before their Transpose)"
        );
        assert_eq!(ops(&g), ["Einsum", "Einsum"]);
        let eqs: Vec<String> = g
            .topo_order()
            .into_iter()
            .map(|n| g.node(n).op.to_string())
            .collect();
        assert_eq!(
            eqs,
            [
                "Einsum{equation=axby,azby->abxz}",
                "Einsum{equation=abxy,aybz->axbz}"
            ]
        );
    }

    /// The newer (SDPA) export: q and k scaled after the head transpose, and a Reshape
    /// that keeps the shape between the context MatMul and its Transpose.
    #[test]
    fn folds_the_scaled_sdpa_form() {
        let (s, h, d) = (5, 2, 3);
        let mut g = Graph::new("t");
        let mut x = Vec::new();
        for name in ["q", "k", "v"] {
            let v = g.add_input(name, DType::F32, vec![1, s, h, d]);
            g.inputs.push(v);
            x.push(v);
        }
        let tr = |g: &mut Graph, x, perm: &[usize]| {
            let op = Op::Transpose {
                perm: perm.to_vec(),
            };
            let name = format!("n{}", g.node_count());
            g.add_node(name, op, vec![x]).unwrap().1[0]
        };
        let c = g.add_const("c", crate::ir::Tensor::f32(vec![], vec![0.7]));
        let qt = tr(&mut g, x[0], &[0, 2, 1, 3]);
        let kt = tr(&mut g, x[1], &[0, 2, 3, 1]);
        let vt = tr(&mut g, x[2], &[0, 2, 1, 3]);
        let mul = Op::Binary(Binary::Mul);
        let qs = g.add_node("mq", mul.clone(), vec![qt, c]).unwrap().1[0];
        let ks = g.add_node("mk", mul, vec![c, kt]).unwrap().1[0];
        let sc = g.add_node("mm", Op::MatMul, vec![qs, ks]).unwrap().1[0];
        let ctx = g.add_node("mm1", Op::MatMul, vec![sc, vt]).unwrap().1[0];
        let same = Op::Reshape {
            shape: vec![1, -1, s as i64, d as i64],
            allowzero: false,
        };
        let r = g.add_node("r", same, vec![ctx]).unwrap().1[0];
        let out = tr(&mut g, r, &[0, 2, 1, 3]);
        g.outputs.push(out);
        let summary = run_checked(&FoldTransposes, &mut g, 1e-5);
        assert_eq!(
            summary,
            "folded 4 Transposes into 2 MatMuls (2 scalar scales moved before their Transpose)"
        );
        assert_eq!(ops(&g), ["Mul", "Mul", "Einsum", "Einsum"]);
    }

    #[test]
    fn keeps_a_transpose_with_another_reader() {
        let mut g = attention(1, true);
        let s = run_checked(&FoldTransposes, &mut g, 1e-5);
        assert_eq!(
            s,
            "folded 3 Transposes into 2 MatMuls (0 scalar scales moved before their Transpose)"
        );
        assert_eq!(ops(&g), ["Transpose", "Einsum", "Einsum"]);
    }

    #[test]
    fn folds_only_what_stays_copy_free_with_batch_2() {
        // With batch 2, [b,h] no longer collapses to one stride in the [b,s,h,d] layout:
        // folding would need a copy inside the einsum, so nothing is folded.
        let mut g = attention(2, false);
        let before = ops(&g);
        let s = run_checked(&FoldTransposes, &mut g, 1e-5);
        assert_eq!(
            s,
            "folded 0 Transposes into 0 MatMuls (0 scalar scales moved before their Transpose)"
        );
        assert_eq!(ops(&g), before);
    }

    #[test]
    fn folds_a_2d_transposed_operand() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", DType::F32, vec![4, 3]);
        let w = g.add_input("w", DType::F32, vec![5, 3]);
        g.inputs.extend([x, w]);
        let wt = g
            .add_node("t", Op::Transpose { perm: vec![1, 0] }, vec![w])
            .unwrap()
            .1[0];
        let y = g.add_node("mm", Op::MatMul, vec![x, wt]).unwrap().1[0];
        g.outputs.push(y);
        let s = run_checked(&FoldTransposes, &mut g, 1e-5);
        assert_eq!(
            s,
            "folded 1 Transposes into 1 MatMuls (0 scalar scales moved before their Transpose)"
        );
        assert_eq!(ops(&g), ["Einsum"]);
    }
}
