//! BatchNorm folding: an inference-mode BatchNormalization with constant parameters that
//! is the only reader of a Conv (or of a Gemm / 2-D MatMul with constant weights) is
//! merged into that op's weights and bias.
//!
//! BatchNorm computes `y = (x − mean)·s + B` per channel with `s = scale/√(var + ε)`.
//! For `x = W∗in + b` (channel `co` = the Conv's output channel, or the GEMM's output
//! column, which is BatchNorm's axis 1 exactly when the result is 2-D):
//!
//! ```text
//! y[co] = (W[co]∗in)·s[co] + (b[co] − mean[co])·s[co] + B[co]
//!       = W'[co]∗in + b'[co],   W'[co] = W[co]·s[co],   b' = (b − mean)·s + B
//! ```
//!
//! exact in real arithmetic; `s` and the new constants are computed in f64 and rounded
//! once to f32, so the only difference from the unfused graph is where the f32 rounding
//! happens. It removes one full pass over the activation (the per-channel multiply-add
//! kernel the lowering emits for BatchNorm). Weights shared with another reader are not
//! rewritten (the new weights are new constants, the old ones stay for the other reader).

use super::Pass;
use super::pattern::{only_reader, replace_value};
use crate::Error;
use crate::ir::{DType, Graph, NodeIndex, Op, Tensor};

pub struct FoldBatchNorm;

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold-batchnorm"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let (mut conv, mut gemm) = (0, 0);
        for bn in g.topo_order() {
            let Some(m) = match_fold(g, bn) else {
                continue;
            };
            if matches!(g.node(m.producer).op, Op::Conv { .. }) {
                conv += 1;
            } else {
                gemm += 1;
            }
            apply(g, bn, m)?;
        }
        Ok(format!(
            "folded {conv} BatchNorms into Conv, {gemm} into Gemm/MatMul"
        ))
    }
}

/// A BatchNorm that can disappear into its producer.
struct Fold {
    producer: NodeIndex,
    /// Per output channel: the multiplier `s` and the new bias `(b − mean)·s + B`.
    scale: Vec<f64>,
    shift: Vec<f64>,
}

/// The per-channel `s` and `B − mean·s` of a BatchNorm with constant f32 parameters.
fn bn_params(g: &Graph, bn: NodeIndex) -> Option<(Vec<f64>, Vec<f64>)> {
    let node = g.node(bn);
    let Op::BatchNorm { epsilon } = node.op else {
        return None;
    };
    let p: Vec<Vec<f64>> = node.inputs[1..5]
        .iter()
        .map(|&v| {
            let t = g.konst(v)?;
            (t.dtype == DType::F32).then(|| t.to_f64s()).flatten()
        })
        .collect::<Option<_>>()?;
    let (scale, bias, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
    let s: Vec<f64> = scale
        .iter()
        .zip(var)
        .map(|(&k, &v)| k / (v + f64::from(epsilon)).sqrt())
        .collect();
    let t = bias
        .iter()
        .zip(mean)
        .zip(&s)
        .map(|((&b, &m), &k)| b - m * k)
        .collect();
    Some((s, t))
}

fn match_fold(g: &Graph, bn: NodeIndex) -> Option<Fold> {
    let node = g.node(bn);
    let x = *node.inputs.first()?;
    let (producer, pnode) = super::pattern::producer(g, x)?;
    if only_reader(g, x)? != bn || g.node(bn).inputs[1..].contains(&x) {
        return None;
    }
    let (s, t) = bn_params(g, bn)?;
    let channels = *g.value(x).shape.get(1)?;
    if s.len() != channels || g.value(x).dtype != DType::F32 {
        return None;
    }
    let w = g.konst(*pnode.inputs.get(1)?)?;
    if w.dtype != DType::F32 {
        return None;
    }
    let bias = match pnode.inputs.get(2) {
        Some(&b) => Some(g.konst(b)?.to_f64s()?),
        None => None,
    };
    match &pnode.op {
        Op::Conv { .. } => {
            if w.shape.first() != Some(&channels) {
                return None;
            }
        }
        Op::Gemm { .. } | Op::MatMul => {
            // BatchNorm's channel axis 1 is the GEMM's column axis only for a 2-D result.
            if g.value(x).shape.len() != 2 || w.shape.len() != 2 {
                return None;
            }
            if matches!(pnode.op, Op::MatMul) && g.value(pnode.inputs[0]).shape.len() != 2 {
                return None;
            }
            // A bias that is not one value per column (or a scalar) cannot absorb a
            // per-column shift as one vector.
            if let Some(&b) = pnode.inputs.get(2) {
                let shape = &g.value(b).shape;
                let per_column = shape.last() == Some(&channels);
                if !(shape.iter().product::<usize>() == 1
                    || per_column && shape[..shape.len() - 1].iter().all(|&d| d == 1))
                {
                    return None;
                }
            }
        }
        _ => return None,
    }
    let beta = match pnode.op {
        Op::Gemm { beta, .. } => f64::from(beta),
        _ => 1.0,
    };
    let shift = (0..channels)
        .map(|c| {
            let b = bias
                .as_ref()
                .map_or(0.0, |b| beta * b[if b.len() == 1 { 0 } else { c }]);
            b * s[c] + t[c]
        })
        .collect();
    Some(Fold {
        producer,
        scale: s,
        shift,
    })
}

fn apply(g: &mut Graph, bn: NodeIndex, m: Fold) -> Result<(), Error> {
    let pnode = g.node(m.producer).clone();
    let w = g
        .konst(pnode.inputs[1])
        .expect("matched a constant")
        .clone();
    let wv = w.to_f64s().expect("f32 weights");
    let c = m.scale.len();
    let (new_w, op) = match pnode.op {
        Op::Conv { .. } => {
            let per = wv.len() / c;
            let v = wv
                .iter()
                .enumerate()
                .map(|(i, &x)| (x * m.scale[i / per]) as f32)
                .collect();
            (v, pnode.op.clone())
        }
        Op::Gemm { alpha, trans_b, .. } => {
            // Output column j reads row j of B when trans_b, else column j.
            let v = scale_columns(&wv, &w.shape, trans_b, &m.scale);
            (
                v,
                Op::Gemm {
                    alpha,
                    beta: 1.0,
                    trans_a: matches!(pnode.op, Op::Gemm { trans_a: true, .. }),
                    trans_b,
                },
            )
        }
        _ => {
            let v = scale_columns(&wv, &w.shape, false, &m.scale);
            (
                v,
                Op::Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: false,
                },
            )
        }
    };
    let name = pnode.name.clone();
    let wc = g.add_const(
        format!("{name}.folded_weight"),
        Tensor::f32(w.shape.clone(), new_w),
    );
    let bc = g.add_const(
        format!("{name}.folded_bias"),
        Tensor::f32(vec![c], m.shift.iter().map(|&x| x as f32).collect()),
    );
    g.set_op(m.producer, op, vec![pnode.inputs[0], wc, bc])?;
    let bn_out = g.node(bn).outputs[0];
    replace_value(g, bn_out, pnode.outputs[0]);
    g.remove_node(bn);
    Ok(())
}

/// `w` (2-D, row-major) with output column `j` multiplied by `s[j]`; the output columns
/// are `w`'s rows when `rows_are_columns`.
fn scale_columns(w: &[f64], shape: &[usize], rows_are_columns: bool, s: &[f64]) -> Vec<f32> {
    let cols = shape[1];
    w.iter()
        .enumerate()
        .map(|(i, &x)| {
            let j = if rows_are_columns { i / cols } else { i % cols };
            (x * s[j]) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ValueId;
    use crate::ir::{AutoPad, WindowAttrs};
    use crate::passes::testing::{ops, random, run_checked};

    fn bn_consts(g: &mut Graph, c: usize) -> Vec<ValueId> {
        let var: Vec<f32> = random(&[c], 4)
            .as_f32()
            .unwrap()
            .iter()
            .map(|v| v.abs() + 0.1)
            .collect();
        vec![
            g.add_const("scale", random(&[c], 1)),
            g.add_const("B", random(&[c], 2)),
            g.add_const("mean", random(&[c], 3)),
            g.add_const("var", Tensor::f32(vec![c], var)),
        ]
    }

    fn conv_bn(with_bias: bool, extra_reader: bool) -> Graph {
        let mut g = Graph::new("t");
        let x = g.add_input("x", DType::F32, vec![1, 3, 6, 6]);
        g.inputs.push(x);
        let w = g.add_const("w", random(&[4, 3, 3, 3], 5));
        let mut ins = vec![x, w];
        if with_bias {
            ins.push(g.add_const("b", random(&[4], 6)));
        }
        let window = WindowAttrs {
            kernel: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        };
        let (_, c) = g
            .add_node("conv", Op::Conv { window, group: 1 }, ins)
            .unwrap();
        let mut bn_ins = vec![c[0]];
        bn_ins.extend(bn_consts(&mut g, 4));
        let (_, y) = g
            .add_node("bn", Op::BatchNorm { epsilon: 1e-5 }, bn_ins)
            .unwrap();
        g.outputs.push(y[0]);
        if extra_reader {
            let (_, r) = g
                .add_node("relu", Op::Unary(crate::ir::Unary::Relu), vec![c[0]])
                .unwrap();
            g.outputs.push(r[0]);
        }
        g
    }

    #[test]
    fn folds_into_conv_with_and_without_bias() {
        for bias in [true, false] {
            let mut g = conv_bn(bias, false);
            let s = run_checked(&FoldBatchNorm, &mut g, 1e-5);
            assert_eq!(s, "folded 1 BatchNorms into Conv, 0 into Gemm/MatMul");
            assert_eq!(ops(&g), ["Conv"]);
            assert_eq!(g.value(g.outputs[0]).name, "bn:0");
        }
    }

    #[test]
    fn leaves_a_conv_with_another_reader() {
        let mut g = conv_bn(true, true);
        run_checked(&FoldBatchNorm, &mut g, 0.0);
        assert_eq!(ops(&g), ["Conv", "BatchNormalization", "Relu"]);
    }

    fn gemm_bn(op: Op, w_shape: &[usize], rank: usize) -> Graph {
        let mut g = Graph::new("t");
        let shape = if rank == 2 { vec![3, 5] } else { vec![2, 3, 5] };
        let x = g.add_input("x", DType::F32, shape);
        g.inputs.push(x);
        let w = g.add_const("w", random(w_shape, 5));
        let mut ins = vec![x, w];
        if matches!(op, Op::Gemm { .. }) {
            ins.push(g.add_const("b", random(&[4], 6)));
        }
        let (_, h) = g.add_node("mm", op, ins).unwrap();
        let c = g.value(h[0]).shape[1];
        let mut bn_ins = vec![h[0]];
        bn_ins.extend(bn_consts(&mut g, c));
        let (_, y) = g
            .add_node("bn", Op::BatchNorm { epsilon: 1e-3 }, bn_ins)
            .unwrap();
        g.outputs.push(y[0]);
        g
    }

    #[test]
    fn folds_into_gemm_and_matmul() {
        for trans_b in [false, true] {
            let w = if trans_b { [4, 5] } else { [5, 4] };
            let op = Op::Gemm {
                alpha: 0.5,
                beta: 2.0,
                trans_a: false,
                trans_b,
            };
            let mut g = gemm_bn(op, &w, 2);
            run_checked(&FoldBatchNorm, &mut g, 1e-5);
            assert_eq!(ops(&g), ["Gemm"]);
        }
        let mut g = gemm_bn(Op::MatMul, &[5, 4], 2);
        run_checked(&FoldBatchNorm, &mut g, 1e-5);
        assert_eq!(ops(&g), ["Gemm"]);
    }

    #[test]
    fn leaves_a_3d_matmul() {
        // BatchNorm's axis 1 is not the MatMul's column axis here.
        let mut g = gemm_bn(Op::MatMul, &[5, 3], 3);
        run_checked(&FoldBatchNorm, &mut g, 0.0);
        assert_eq!(ops(&g), ["MatMul", "BatchNormalization"]);
    }
}
