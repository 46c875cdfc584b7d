//! Einsum as kernels: GEMMs over strided views, with copies and reductions only where
//! the views cannot express the operand.
//!
//! Every operand is a buffer plus, per distinct label (a letter or an ellipsis dim), an
//! element stride. Views make three things free: a transposed operand is a permuted
//! stride list, a diagonal (`ii`) is one label whose stride is the sum of its dims'
//! strides, and a broadcast ellipsis dim has stride 0.
//!
//! Two operands `A`, `B` contract as one batched GEMM, `C[b] = A[b] · B[b]`, with the
//! labels grouped as
//! - batch: in `A`, `B` and the result;
//! - m: in `A` and the result only;  n: in `B` and the result only;
//! - k: in `A` and `B`, not the result (summed by the GEMM).
//!
//! Labels in only one operand and not in the result are summed out of it first (a
//! `Reduce`). The GEMM's views are `[batch, row, col]`, so each group must collapse to one
//! stride: its labels, in order, must be nested like the dims of a dense tensor (size-1
//! labels aside). When they are not (`bqhd` against a `bhqd` result, say), that operand is
//! first copied densely into `[batch, m, k]` (or `[batch, k, n]`) order, or the GEMM
//! writes a dense temp that is then copied into the result. The attention forms
//! (`bhqd,bhkd->bhqk`, `bhqk,bhkd->bhqd`, `bid,bjd->bij`) need no copy at all.
//!
//! One operand is a strided copy (transpose, diagonal) or a `Reduce`; three or more
//! contract left to right, each intermediate keeping only the labels still needed.
//!
//! This is exact up to f32 summation order: the GEMM and Reduce kernels accumulate in
//! f32 where the interpreter's Einsum accumulates in f64.

use edgecc_program::{ExprNode, Kernel, ReduceOp, View};

use super::{Builder, Loc, unsupported};
use crate::Error;
use crate::ir::einsum::Resolved;
use crate::ir::{Equation, NodeIndex};

/// An operand as the kernels read it: a buffer at element offset 0 and, per distinct
/// label, its element stride.
#[derive(Clone, Debug)]
struct Operand {
    loc: Loc,
    labels: Vec<usize>,
    strides: Vec<i64>,
}

impl Operand {
    /// Input `i` of a resolved equation, stored densely with `shape` at `loc`.
    fn dense(r: &Resolved, i: usize, shape: &[usize], loc: Loc) -> Operand {
        let ls = r.label_strides(i, shape);
        let mut labels: Vec<usize> = Vec::new();
        for &l in &r.inputs[i] {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        let strides = labels.iter().map(|&l| ls[l] as i64).collect();
        Operand {
            loc,
            labels,
            strides,
        }
    }

    fn stride(&self, l: usize) -> Option<i64> {
        self.labels
            .iter()
            .position(|&x| x == l)
            .map(|i| self.strides[i])
    }

    fn has(&self, l: usize) -> bool {
        self.labels.contains(&l)
    }
}

/// Row-major strides of the labels `order` laid out densely.
fn dense_strides(order: &[usize], sizes: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; order.len()];
    let mut acc = 1i64;
    for (i, &l) in order.iter().enumerate().rev() {
        s[i] = acc;
        acc *= sizes[l] as i64;
    }
    s
}

/// The labels `group`, in that order, of `op` as one (extent, stride), if they nest like
/// the dims of a dense tensor. An empty group (or one of size-1 labels) is `(1, 0)`.
fn merge(op: &Operand, group: &[usize], sizes: &[usize]) -> Option<(usize, i64)> {
    let mut merged: Option<(usize, i64)> = None;
    for &l in group {
        let s = op.stride(l)?;
        if sizes[l] == 1 {
            continue;
        }
        merged = match merged {
            None => Some((sizes[l], s)),
            Some((n, outer)) if outer == s * sizes[l] as i64 => Some((n * sizes[l], s)),
            Some(_) => return None,
        };
    }
    Some(merged.unwrap_or((1, 0)))
}

/// The labels of a two-operand contraction as the GEMM sees them.
struct Groups {
    batch: Vec<usize>,
    m: Vec<usize>,
    n: Vec<usize>,
    k: Vec<usize>,
}

/// Labels of both `a` and `b` that the result `keep` drops: the GEMM's k.
fn summed_labels(a: &Operand, b: &Operand, keep: &[usize]) -> Vec<usize> {
    a.labels
        .iter()
        .copied()
        .filter(|l| b.has(*l) && !keep.contains(l))
        .collect()
}

/// The groups when the GEMM writes the result `keep` directly (in `keep`'s order).
fn result_groups(a: &Operand, b: &Operand, keep: &[usize]) -> Groups {
    let pick = |f: &dyn Fn(usize) -> bool| keep.iter().copied().filter(|&l| f(l)).collect();
    Groups {
        batch: pick(&|l| a.has(l) && b.has(l)),
        m: pick(&|l| a.has(l) && !b.has(l)),
        n: pick(&|l| b.has(l) && !a.has(l)),
        k: summed_labels(a, b, keep),
    }
}

/// Whether a two-input Einsum over dense inputs of `shapes` lowers to exactly one GEMM
/// that reads both operands and writes the result in place: no copy, no reduction, no
/// diagonal. This is the case [`Builder::einsum`] handles with strides alone (the
/// attention forms `bihd,bjhd->bhij`, `bhij,bjhd->bihd`, ...). Graph passes that turn
/// transposes into an equation ask it first, so they never trade a copy for a copy.
pub fn is_one_gemm(eq: &Equation, shapes: &[&[usize]]) -> bool {
    let [sa, sb] = shapes else {
        return false;
    };
    let Ok(r) = eq.resolve(shapes) else {
        return false;
    };
    if r.sizes.contains(&0) {
        return false;
    }
    // The location is never read: only labels and strides matter here.
    let a = Operand::dense(&r, 0, sa, Loc::Temp(usize::MAX));
    let b = Operand::dense(&r, 1, sb, Loc::Temp(usize::MAX));
    let diagonal = |i: usize, op: &Operand| r.inputs[i].len() != op.labels.len();
    if diagonal(0, &a) || diagonal(1, &b) {
        return false;
    }
    let keep = &r.output;
    let alone =
        |x: &Operand, y: &Operand| x.labels.iter().any(|&l| !y.has(l) && !keep.contains(&l));
    if alone(&a, &b) || alone(&b, &a) {
        return false;
    }
    let gr = result_groups(&a, &b, keep);
    let c = Operand {
        loc: Loc::Temp(usize::MAX),
        labels: keep.clone(),
        strides: dense_strides(keep, &r.sizes),
    };
    let merges = |op: &Operand, groups: [&[usize]; 3]| {
        groups.iter().all(|g| merge(op, g, &r.sizes).is_some())
    };
    merges(&a, [&gr.batch, &gr.m, &gr.k])
        && merges(&b, [&gr.batch, &gr.k, &gr.n])
        && merges(&c, [&gr.batch, &gr.m, &gr.n])
}

fn product(labels: &[usize], sizes: &[usize]) -> usize {
    labels.iter().map(|&l| sizes[l]).product()
}

impl Builder<'_> {
    /// Lowers an Einsum node (any number of f32 inputs).
    pub(super) fn einsum(&mut self, n: NodeIndex, eq: &Equation) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let out = node.outputs[0];
        let shapes: Vec<&[usize]> = node.inputs.iter().map(|&i| self.shape(i)).collect();
        let r: Resolved = eq.resolve(&shapes).map_err(|m| unsupported(g, n, m))?;
        let sizes = r.sizes.clone();
        let out_order = r.output.clone();
        let target = self.loc(out);
        if product(&out_order, &sizes) == 0 {
            return Ok(());
        }
        if sizes.contains(&0) {
            // A summed label is empty: every sum is 0.
            let strides = dense_strides(&out_order, &sizes);
            let shape: Vec<usize> = out_order.iter().map(|&l| sizes[l]).collect();
            let buf = self.touch(target);
            self.push_elementwise(
                &shape,
                vec![],
                vec![ExprNode::Const(0.0)],
                View {
                    buf,
                    offset: 0,
                    strides,
                },
            );
            return Ok(());
        }
        let ops: Vec<Operand> = node
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &v)| Operand::dense(&r, i, self.shape(v), self.loc(v)))
            .collect();
        let mut cur = ops[0].clone();
        if ops.len() == 1 {
            self.sum_into(&cur, &out_order, Some(target), &sizes);
            return Ok(());
        }
        for i in 1..ops.len() {
            if i + 1 == ops.len() {
                cur = self.contract(&cur, &ops[i], &out_order, Some(target), &sizes);
            } else {
                let later: Vec<usize> = (0..sizes.len())
                    .filter(|l| out_order.contains(l) || ops[i + 1..].iter().any(|o| o.has(*l)))
                    .collect();
                cur = self.contract(&cur, &ops[i], &later, None, &sizes);
            }
        }
        Ok(())
    }

    /// An elementwise kernel over `shape` (rank 0 runs once, as `[1]`).
    fn push_elementwise(
        &mut self,
        shape: &[usize],
        mut inputs: Vec<View>,
        expr: Vec<ExprNode>,
        mut output: View,
    ) {
        let mut shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        if shape.is_empty() {
            shape.push(1);
            output.strides = vec![0];
            for v in &mut inputs {
                v.strides = vec![0];
            }
        }
        self.kernels.push(Kernel::Elementwise {
            shape,
            inputs,
            expr,
            output,
        });
    }

    /// Copies `op` (every label of which is in `order`) into `to`, dense in `order`.
    fn write_dense(&mut self, op: &Operand, order: &[usize], to: Loc, sizes: &[usize]) -> Operand {
        let shape: Vec<usize> = order.iter().map(|&l| sizes[l]).collect();
        let in_strides = order.iter().map(|&l| op.stride(l).unwrap_or(0)).collect();
        let out_strides = dense_strides(order, sizes);
        let input = View {
            buf: self.touch(op.loc),
            offset: 0,
            strides: in_strides,
        };
        let output = View {
            buf: self.touch(to),
            offset: 0,
            strides: out_strides.clone(),
        };
        self.push_elementwise(&shape, vec![input], vec![ExprNode::Input(0)], output);
        Operand {
            loc: to,
            labels: order.to_vec(),
            strides: out_strides,
        }
    }

    /// A new arena temp holding the labels `order` densely.
    fn dense_temp(&mut self, order: &[usize], sizes: &[usize]) -> Loc {
        self.temp((product(order, sizes) * 4) as u64)
    }

    /// `op` summed over its labels not in `order`, laid out densely in `order` in `to` (a
    /// new temp when `None`).
    fn sum_into(
        &mut self,
        op: &Operand,
        order: &[usize],
        to: Option<Loc>,
        sizes: &[usize],
    ) -> Operand {
        let to = to.unwrap_or_else(|| self.dense_temp(order, sizes));
        let summed: Vec<usize> = op
            .labels
            .iter()
            .copied()
            .filter(|l| !order.contains(l))
            .collect();
        if summed.is_empty() {
            return self.write_dense(op, order, to, sizes);
        }
        // Read in place when `op` is dense as `order` with the summed labels in one run
        // inserted somewhere; else copy it out as `[order, summed]` first.
        let in_place = op.strides == dense_strides(&op.labels, sizes)
            && (0..=order.len()).any(|at| {
                let mut want = order[..at].to_vec();
                want.extend(&summed);
                want.extend(&order[at..]);
                want == op.labels
            });
        let (src, outer, inner) = if in_place {
            let at = op
                .labels
                .iter()
                .position(|l| summed.contains(l))
                .unwrap_or(0);
            let outer = product(&op.labels[..at], sizes);
            let inner = product(&op.labels[at + summed.len()..], sizes);
            (op.loc, outer, inner)
        } else {
            let mut full = order.to_vec();
            full.extend(&summed);
            let t = self.dense_temp(&full, sizes);
            self.write_dense(op, &full, t, sizes);
            (t, product(order, sizes), 1)
        };
        let input = self.touch(src);
        let output = self.touch(to);
        self.kernels.push(Kernel::Reduce {
            op: ReduceOp::Sum,
            outer: outer as u64,
            len: product(&summed, sizes) as u64,
            inner: inner as u64,
            input,
            output,
        });
        Operand {
            loc: to,
            labels: order.to_vec(),
            strides: dense_strides(order, sizes),
        }
    }

    /// `a` and `b` contracted into the labels `keep`. With `to` (the node's result), the
    /// result is dense in the order `keep`; otherwise it is a new temp in GEMM order
    /// (batch, m, n).
    fn contract(
        &mut self,
        a: &Operand,
        b: &Operand,
        keep: &[usize],
        to: Option<Loc>,
        sizes: &[usize],
    ) -> Operand {
        // Labels of one side only that the result drops are summed out first.
        let own = |x: &Operand, y: &Operand| -> Vec<usize> {
            x.labels
                .iter()
                .copied()
                .filter(|&l| !y.has(l) && !keep.contains(&l))
                .collect()
        };
        let (drop_a, drop_b) = (own(a, b), own(b, a));
        let mut a = a.clone();
        let mut b = b.clone();
        if !drop_a.is_empty() {
            let order: Vec<usize> = a
                .labels
                .iter()
                .copied()
                .filter(|l| !drop_a.contains(l))
                .collect();
            a = self.sum_into(&a, &order, None, sizes);
        }
        if !drop_b.is_empty() {
            let order: Vec<usize> = b
                .labels
                .iter()
                .copied()
                .filter(|l| !drop_b.contains(l))
                .collect();
            b = self.sum_into(&b, &order, None, sizes);
        }
        let in_keep = |l: &usize| keep.contains(l);
        let Groups { batch, m, n, k } = if to.is_some() {
            result_groups(&a, &b, keep)
        } else {
            let (batch, m, n) = (
                a.labels
                    .iter()
                    .copied()
                    .filter(|l| in_keep(l) && b.has(*l))
                    .collect(),
                a.labels
                    .iter()
                    .copied()
                    .filter(|l| in_keep(l) && !b.has(*l))
                    .collect(),
                b.labels
                    .iter()
                    .copied()
                    .filter(|l| in_keep(l) && !a.has(*l))
                    .collect(),
            );
            Groups {
                batch,
                m,
                n,
                k: summed_labels(&a, &b, keep),
            }
        };
        let cat = |x: &[usize], y: &[usize], z: &[usize]| -> Vec<usize> {
            x.iter().chain(y).chain(z).copied().collect()
        };

        // Operands whose groups do not collapse to one stride are copied densely first.
        let groups_a = [batch.as_slice(), &m, &k];
        if groups_a.iter().any(|gr| merge(&a, gr, sizes).is_none()) {
            let order = cat(&batch, &m, &k);
            let t = self.dense_temp(&order, sizes);
            a = self.write_dense(&a, &order, t, sizes);
        }
        let groups_b = [batch.as_slice(), &k, &n];
        if groups_b.iter().any(|gr| merge(&b, gr, sizes).is_none()) {
            let order = cat(&batch, &k, &n);
            let t = self.dense_temp(&order, sizes);
            b = self.write_dense(&b, &order, t, sizes);
        }
        // The result: the target in `keep` order when its groups collapse, else a dense
        // temp in GEMM order that is then copied there.
        let gemm_order = cat(&batch, &m, &n);
        let (c, then_copy) = match to {
            Some(loc) => {
                let c = Operand {
                    loc,
                    labels: keep.to_vec(),
                    strides: dense_strides(keep, sizes),
                };
                if [&batch, &m, &n]
                    .iter()
                    .all(|gr| merge(&c, gr, sizes).is_some())
                {
                    (c, None)
                } else {
                    let t = self.dense_temp(&gemm_order, sizes);
                    let c = Operand {
                        loc: t,
                        labels: gemm_order.clone(),
                        strides: dense_strides(&gemm_order, sizes),
                    };
                    (c, Some(loc))
                }
            }
            None => {
                let t = self.dense_temp(&gemm_order, sizes);
                let c = Operand {
                    loc: t,
                    labels: gemm_order.clone(),
                    strides: dense_strides(&gemm_order, sizes),
                };
                (c, None)
            }
        };
        // Every group merges now (dense copies always do).
        let mg = |op: &Operand, gr: &[usize]| merge(op, gr, sizes).unwrap_or((1, 0));
        let (nb, a_bs) = mg(&a, &batch);
        let (mm, a_ms) = mg(&a, &m);
        let (kk, a_ks) = mg(&a, &k);
        let (_, b_bs) = mg(&b, &batch);
        let (_, b_ks) = mg(&b, &k);
        let (nn, b_ns) = mg(&b, &n);
        let (_, c_bs) = mg(&c, &batch);
        let (_, c_ms) = mg(&c, &m);
        let (_, c_ns) = mg(&c, &n);
        let bs = |s: i64| if nb == 1 { 0 } else { s };
        let view = |buf, strides: Vec<i64>| View {
            buf,
            offset: 0,
            strides,
        };
        let (ba, bb, bc) = (self.touch(a.loc), self.touch(b.loc), self.touch(c.loc));
        self.kernels.push(Kernel::Gemm {
            batch: nb as u32,
            m: mm as u32,
            n: nn as u32,
            k: kk as u32,
            a: view(ba, vec![bs(a_bs), a_ms, a_ks]),
            b: view(bb, vec![bs(b_bs), b_ks, b_ns]),
            alpha: 1.0,
            bias: None,
            residual: None,
            act: edgecc_program::Activation::None,
            c: view(bc, vec![bs(c_bs), c_ms, c_ns]),
        });
        match then_copy {
            Some(loc) => self.write_dense(&c, keep, loc, sizes),
            None => c,
        }
    }
}
