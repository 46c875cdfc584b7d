//! Merges chains of elementwise kernels into one loop before memory planning.
//!
//! An elementwise kernel whose result only the next kernel reads — also elementwise, over
//! the same iteration shape, through the very view it was written with — is folded into
//! that kernel's expression: the intermediate is never stored, and the arena temp that
//! held it disappears from the plan. Exporters write GELU as Div → Erf → Add → Mul → Mul
//! and every bias or residual as its own Add; each was a full pass over memory.
//!
//! Results are bit for bit those of the unmerged kernels: every expression node still
//! rounds to f32 (targets contract no multiply-add in elementwise code), and only the
//! store and reload of the intermediate go away.

use std::cell::RefCell;

use edgecc_program::{Buffer, ExprNode, Kernel, View};

use super::map_buffers;

/// Merged expressions stay at most this long, and read at most this many views, so the
/// generated loops keep their operands in registers.
const MAX_NODES: usize = 96;
const MAX_INPUTS: usize = 8;

/// The arena temps a kernel touches (during lowering, `Arena { offset }` is a temp id).
pub(super) fn temps_of(k: &Kernel) -> Vec<usize> {
    let seen = RefCell::new(Vec::new());
    let mut k = k.clone();
    map_buffers(&mut k, &|b| {
        if let Buffer::Arena { offset } = b {
            seen.borrow_mut().push(offset as usize);
        }
        b
    });
    seen.into_inner()
}

/// Whether the innermost dimension of `v` is unit-strided or broadcast, so the elementwise
/// emitter's vector loop can read it.
fn vector_friendly(v: &View) -> bool {
    matches!(v.strides.last(), None | Some(0) | Some(1))
}

/// Whether two views over an iteration of `shape` address the same elements: strides of
/// size-1 dimensions do not matter (the lowering writes them dense and reads them as 0).
fn same(shape: &[u64], a: &View, b: &View) -> bool {
    a.buf == b.buf
        && a.offset == b.offset
        && shape
            .iter()
            .zip(a.strides.iter().zip(&b.strides))
            .all(|(&n, (x, y))| n == 1 || x == y)
}

/// `consumer` with every read of the producer's result replaced by the producer's
/// expression, or `None` when the merge is not allowed.
fn merge(producer: &Kernel, consumer: &Kernel) -> Option<Kernel> {
    let (
        Kernel::Elementwise {
            shape: ps,
            inputs: pi,
            expr: pe,
            output: po,
        },
        Kernel::Elementwise {
            shape: cs,
            inputs: ci,
            expr: ce,
            output: co,
        },
    ) = (producer, consumer)
    else {
        return None;
    };
    // The consumer reads the intermediate, and only through the view it was written with.
    let eq = |a: &View, b: &View| same(cs, a, b);
    if ps != cs || !ci.iter().any(|v| eq(v, po)) || ci.iter().any(|v| v.buf == po.buf && !eq(v, po))
    {
        return None;
    }
    let mut inputs: Vec<View> = Vec::new();
    let slot = |v: &View, inputs: &mut Vec<View>| -> u32 {
        match inputs.iter().position(|x| eq(x, v)) {
            Some(i) => i as u32,
            None => {
                inputs.push(v.clone());
                (inputs.len() - 1) as u32
            }
        }
    };
    // The producer's nodes first (its inputs renumbered), then the consumer's, with reads
    // of the intermediate pointing at the producer's result.
    let mut expr: Vec<ExprNode> = Vec::with_capacity(pe.len() + ce.len());
    for n in pe {
        expr.push(match *n {
            ExprNode::Input(k) => ExprNode::Input(slot(&pi[k as usize], &mut inputs)),
            other => other,
        });
    }
    let result = (pe.len() - 1) as u32;
    // Consumer node i lands at `at[i]`: reads of the intermediate are not copied.
    let mut at: Vec<u32> = Vec::with_capacity(ce.len());
    for n in ce {
        let shift = |a: u32| at[a as usize];
        let node = match *n {
            ExprNode::Input(k) if eq(&ci[k as usize], po) => {
                at.push(result);
                continue;
            }
            ExprNode::Input(k) => ExprNode::Input(slot(&ci[k as usize], &mut inputs)),
            ExprNode::Const(c) => ExprNode::Const(c),
            ExprNode::Unary(op, a) => ExprNode::Unary(op, shift(a)),
            ExprNode::Binary(op, a, b) => ExprNode::Binary(op, shift(a), shift(b)),
            ExprNode::Clip { x, lo, hi } => ExprNode::Clip {
                x: shift(x),
                lo,
                hi,
            },
        };
        at.push(expr.len() as u32);
        expr.push(node);
    }
    // The result is the last node (a consumer that ends on a bare read of the
    // intermediate after other nodes would need one more node to say so).
    if *at.last()? != expr.len() as u32 - 1 {
        return None;
    }
    // The output may alias an input only through the identical view (in place).
    if inputs.iter().any(|v| v.buf == co.buf && !eq(v, co)) {
        return None;
    }
    let vectorised = |ins: &[View], out: &View| {
        out.strides.last() == Some(&1) && ins.iter().all(vector_friendly)
    };
    if vectorised(pi, po) && vectorised(ci, co) && !vectorised(&inputs, co) {
        return None;
    }
    if expr.len() > MAX_NODES || inputs.len() > MAX_INPUTS {
        return None;
    }
    Some(Kernel::Elementwise {
        shape: cs.clone(),
        inputs,
        expr,
        output: co.clone(),
    })
}

/// Merges elementwise chains in `kernels` (their labels in `nodes` follow). Returns how
/// many kernels were merged away; the caller recomputes temp lifetimes.
pub(super) fn elementwise_chains(kernels: &mut Vec<Kernel>, nodes: &mut Vec<String>) -> usize {
    // A value read twice within a chain (GELU's `x · (1 + erf(x/√2))`) merges once the
    // chain after it is one kernel: repeat until nothing changes.
    let mut total = 0;
    loop {
        let merged = one_sweep(kernels, nodes);
        if merged == 0 {
            return total;
        }
        total += merged;
    }
}

fn one_sweep(kernels: &mut Vec<Kernel>, nodes: &mut Vec<String>) -> usize {
    // The last kernel (index at the start of the sweep) touching each temp. A merge at j
    // changes nothing after j + 1, so these stay right with `merged` as the shift.
    let mut last_use: Vec<usize> = Vec::new();
    for (step, k) in kernels.iter().enumerate() {
        for t in temps_of(k) {
            if last_use.len() <= t {
                last_use.resize(t + 1, 0);
            }
            last_use[t] = step;
        }
    }
    let mut merged = 0;
    let mut j = 0;
    while j + 1 < kernels.len() {
        let Kernel::Elementwise { output, .. } = &kernels[j] else {
            j += 1;
            continue;
        };
        let Buffer::Arena { offset: t } = output.buf else {
            j += 1;
            continue;
        };
        let t = t as usize;
        // The intermediate must be dead after the consumer, unless the consumer writes it
        // whole again (in place): later readers then see the consumer's result, as before.
        let consumer_rewrites = matches!(&kernels[j + 1],
            Kernel::Elementwise { output: co, shape, .. } if same(shape, co, output));
        let read_later = last_use.get(t).is_some_and(|&l| l > j + 1 + merged);
        if read_later && !consumer_rewrites {
            j += 1;
            continue;
        }
        match merge(&kernels[j], &kernels[j + 1]) {
            Some(k) => {
                kernels[j + 1] = k;
                kernels.remove(j);
                let label = nodes.remove(j);
                if nodes[j] != label {
                    nodes[j] = format!("{label}+{}", nodes[j]);
                }
                merged += 1;
            }
            None => j += 1,
        }
    }
    merged
}
