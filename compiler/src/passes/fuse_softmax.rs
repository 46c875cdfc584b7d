//! Attention softmax fusion: `Softmax(Add(Mul(s, c), mask))` over the last axis — the
//! scaled, masked attention scores — becomes one `AttentionSoftmax{scale=c}(s, mask)`,
//! lowered to one softmax kernel that scales and masks each row as it reads it, instead
//! of an elementwise kernel writing the whole score tensor and a softmax reading it back.
//!
//! Recognized (Add and Mul in either operand order):
//!
//! ```text
//! Softmax(Add(Mul(s, c) | Div(s, c), mask))   -> AttentionSoftmax{scale=c | 1/c}(s, mask)
//! Softmax(Mul(s, c) | Div(s, c))              -> AttentionSoftmax{scale=c | 1/c}(s)
//! Softmax(Add(s, mask))                       -> AttentionSoftmax{scale=1}(s, mask)
//! ```
//!
//! where `c` is a one-element f32 constant, `mask` any f32 tensor (constant or computed)
//! broadcasting to `s`'s shape, the Softmax is over the last axis, and the Mul/Div and Add
//! results are read only by the pattern and are not graph outputs. The fused op computes
//! `scale·s` in f32, adds the mask in f32, then the softmax: for Mul it is exactly the
//! unfused arithmetic; for Div, `s·(1/c)` may differ from `s/c` by one rounding (an ulp
//! of the score, far below the softmax's own error). Not recognized: masks applied with
//! `Where(cond, -inf, s)` (DistilBERT's older export) and softmax over another axis.

use super::Pass;
use super::pattern::{producer, single_use};
use crate::Error;
use crate::ir::infer::{broadcast, norm_axis};
use crate::ir::{Binary, DType, Graph, NodeIndex, Op, ValueId};

pub struct FuseSoftmax;

impl Pass for FuseSoftmax {
    fn name(&self) -> &'static str {
        "fuse-softmax"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let (mut scaled, mut masked) = (0, 0);
        let mut fused = 0;
        for n in g.topo_order() {
            let Some(m) = match_softmax(g, n) else {
                continue;
            };
            fused += 1;
            scaled += usize::from(m.scale != 1.0);
            masked += usize::from(m.mask.is_some());
            let mut inputs = vec![m.x];
            inputs.extend(m.mask);
            g.set_op(n, Op::AttentionSoftmax { scale: m.scale }, inputs)?;
            for r in m.removed {
                g.remove_node(r);
            }
        }
        Ok(format!(
            "fused {fused} Softmaxes ({scaled} scaled, {masked} masked)"
        ))
    }
}

struct SoftmaxMatch {
    x: ValueId,
    scale: f32,
    mask: Option<ValueId>,
    removed: Vec<NodeIndex>,
}

/// `(s, scale)` when `v` is `Mul(s, c)`, `Mul(c, s)` or `Div(s, c)` with a one-element f32
/// constant `c`, read only by the pattern; the node is returned for removal.
fn scaled(g: &Graph, v: ValueId) -> Option<(ValueId, f32, NodeIndex)> {
    let (n, node) = producer(g, v)?;
    if !single_use(g, v) {
        return None;
    }
    let scalar = |c: ValueId| {
        g.konst(c)
            .filter(|t| t.dtype == DType::F32 && t.len() == 1)
            .and_then(|t| t.as_f32().map(|x| x[0]))
    };
    let [a, b] = node.inputs[..] else {
        return None;
    };
    let full = |s: ValueId| g.value(s).shape == g.value(v).shape;
    match node.op {
        Op::Binary(Binary::Mul) => {
            if let Some(c) = scalar(b).filter(|_| full(a)) {
                Some((a, c, n))
            } else {
                scalar(a).filter(|_| full(b)).map(|c| (b, c, n))
            }
        }
        Op::Binary(Binary::Div) => scalar(b)
            .filter(|&c| c != 0.0 && full(a))
            .map(|c| (a, 1.0 / c, n)),
        _ => None,
    }
}

fn match_softmax(g: &Graph, n: NodeIndex) -> Option<SoftmaxMatch> {
    let node = g.node(n);
    let Op::Softmax { axis, .. } = node.op else {
        return None;
    };
    let input = node.inputs[0];
    let shape = g.value(input).shape.clone();
    // coerce_2d flattens from `axis` on: at the last axis that is the plain softmax.
    if shape.is_empty() || norm_axis(axis, shape.len()).ok()? != shape.len() - 1 {
        return None;
    }
    if g.value(input).dtype != DType::F32 {
        return None;
    }
    // Scale without a mask.
    if let Some((x, scale, mul)) = scaled(g, input) {
        return Some(SoftmaxMatch {
            x,
            scale,
            mask: None,
            removed: vec![mul],
        });
    }
    let (add, an) = producer(g, input)?;
    if an.op != Op::Binary(Binary::Add) || !single_use(g, input) {
        return None;
    }
    let [p, q] = an.inputs[..] else {
        return None;
    };
    let fits = |mask: ValueId| {
        g.value(mask).dtype == DType::F32
            && broadcast(&g.value(mask).shape, &shape).ok().as_ref() == Some(&shape)
    };
    // Prefer the scaled operand as the scores; else the full-shape one.
    for (s, mask) in [(p, q), (q, p)] {
        if let Some((x, scale, mul)) = scaled(g, s)
            && fits(mask)
            && mask != s
        {
            return Some(SoftmaxMatch {
                x,
                scale,
                mask: Some(mask),
                removed: vec![add, mul],
            });
        }
    }
    for (s, mask) in [(p, q), (q, p)] {
        if g.value(s).shape == shape && fits(mask) && mask != s {
            return Some(SoftmaxMatch {
                x: s,
                scale: 1.0,
                mask: Some(mask),
                removed: vec![add],
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Tensor;
    use crate::passes::testing::{ops, random, run_checked};

    #[derive(Clone, Copy, PartialEq)]
    enum Scale {
        None,
        Mul,
        MulSwapped,
        Div,
    }

    /// `Softmax(Add(scale(s), mask))` over `[1, 2, 3, 5]` scores.
    fn attention(scale: Scale, mask: Option<&[usize]>, const_mask: bool, axis: i64) -> Graph {
        let mut g = Graph::new("t");
        let s = g.add_input("s", DType::F32, vec![1, 2, 3, 5]);
        g.inputs.push(s);
        let c = g.add_const("c", Tensor::f32(vec![], vec![0.35]));
        let mul = Op::Binary(Binary::Mul);
        let mut t = match scale {
            Scale::None => s,
            Scale::Mul => g.add_node("scale", mul, vec![s, c]).unwrap().1[0],
            Scale::MulSwapped => g.add_node("scale", mul, vec![c, s]).unwrap().1[0],
            Scale::Div => {
                let div = Op::Binary(Binary::Div);
                g.add_node("scale", div, vec![s, c]).unwrap().1[0]
            }
        };
        if let Some(ms) = mask {
            let m = if const_mask {
                g.add_const("mask", random(ms, 7))
            } else {
                let m = g.add_input("mask", DType::F32, ms.to_vec());
                g.inputs.push(m);
                m
            };
            t = g
                .add_node("add", Op::Binary(Binary::Add), vec![t, m])
                .unwrap()
                .1[0];
        }
        let sm = Op::Softmax {
            axis,
            coerce_2d: false,
        };
        let y = g.add_node("softmax", sm, vec![t]).unwrap().1[0];
        g.outputs.push(y);
        g
    }

    #[test]
    fn fuses_scale_and_mask_forms() {
        let masks: [Option<&[usize]>; 4] = [
            None,
            Some(&[1, 1, 3, 5]),
            Some(&[1, 1, 1, 5]),
            Some(&[1, 2, 3, 5]),
        ];
        for scale in [Scale::None, Scale::Mul, Scale::MulSwapped, Scale::Div] {
            for mask in masks {
                for const_mask in [false, true] {
                    if scale == Scale::None && mask.is_none() {
                        continue;
                    }
                    let mut g = attention(scale, mask, const_mask, -1);
                    let s = run_checked(&FuseSoftmax, &mut g, 1e-6);
                    assert!(s.starts_with("fused 1 Softmaxes"), "{s}");
                    assert_eq!(ops(&g), ["AttentionSoftmax"]);
                    let want = match scale {
                        Scale::None => 1.0,
                        Scale::Div => 1.0 / 0.35,
                        _ => 0.35,
                    };
                    let n = g.topo_order()[0];
                    assert_eq!(g.node(n).op, Op::AttentionSoftmax { scale: want });
                    assert_eq!(g.node(n).inputs.len(), 1 + usize::from(mask.is_some()));
                }
            }
        }
    }

    #[test]
    fn leaves_other_axes_and_bare_softmax() {
        for (scale, mask, axis) in [
            (Scale::Mul, Some(&[1, 1, 3, 5][..]), 2),
            (Scale::None, None, -1),
        ] {
            let mut g = attention(scale, mask, true, axis);
            let before = ops(&g);
            let s = run_checked(&FuseSoftmax, &mut g, 0.0);
            assert_eq!(s, "fused 0 Softmaxes (0 scaled, 0 masked)");
            assert_eq!(ops(&g), before);
        }
    }

    #[test]
    fn leaves_scores_read_elsewhere() {
        let mut g = attention(Scale::Mul, Some(&[1, 1, 3, 5]), true, -1);
        let add = g
            .node_indices()
            .find(|&n| g.node(n).op == Op::Binary(Binary::Add))
            .unwrap();
        g.outputs.push(g.node(add).outputs[0]);
        let s = run_checked(&FuseSoftmax, &mut g, 0.0);
        assert_eq!(s, "fused 0 Softmaxes (0 scaled, 0 masked)");
    }
}
