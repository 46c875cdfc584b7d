//! GEMM epilogue fusion: a matrix product and the bias, skip connection and activation
//! after it become one [`Op::FusedMatMul`], which lowers to one GEMM kernel that applies
//! them to each output tile while it is still in registers.
//!
//! Exporters write a dense layer as `MatMul → Add(bias)`, a transformer sublayer's end
//! as `… → Add(bias) → Add(residual)`, and an FFN as `MatMul → Add(bias) → Gelu`. Each
//! Add or activation is otherwise an elementwise kernel, a full pass over the output
//! (merged into one loop by lowering, but still one more read and write of every
//! element). The pattern, each step optional but in this order:
//!
//! ```text
//! y0 = MatMul(A, B)          or Gemm(A, B[, C]) with beta = 1 (C is the bias)
//! ys = Mul(y0, s)            s: a one-element constant (attention's 1/√d), or
//!                            Div(y0, d) with 1/d exact (d a power of two)
//! y1 = Add(ys, bias)         bias: a constant along the last dim ([N], [1, N], ...)
//! y2 = Add(y1, residual)     residual: a computed value broadcasting to y1's shape
//! y3 = act(y2)               Relu, Clip, Sigmoid, Tanh, Gelu, HardSwish
//! ```
//!
//! Either operand order of an Add matches. Every intermediate must have the next step as
//! its only reader and must not be a graph output, so nothing else sees a value that no
//! longer exists. A and B must have rank >= 2 (a rank-1 MatMul stays as it is).
//!
//! Why it is exact: [`Op::FusedMatMul`] is defined as those ops in that order, and the
//! interpreter computes it that way, rounding after each (the product as MatMul, then
//! times alpha in f32 — which is the Mul, or the Div by a power of two, bit for bit — each
//! sum in f32, the activation as its own op). For a chain that starts at a MatMul the
//! rewrite only renames it. A Gemm rounds `alpha·A·B + C` once in f64, the fused op after
//! the product, after alpha and after C: a Gemm with alpha != 1 or a C moves by an ulp or
//! two. The scale step is taken only onto an alpha of 1 and before any bias (a Gemm's C
//! is scaled by the Mul after it; the fused op adds its bias after alpha). The GEMM
//! kernel adds bias then residual to the f32 product, as the unfused kernels did. A
//! residual is never reordered before a bias (an `Add(residual)` followed by
//! `Add(bias)` would round differently; it is left alone after the residual step).
//!
//! Convolutions get the same treatment for a skip connection (ResNet's `Conv → Add(skip)
//! → Relu`, MobileNet's `Conv → Add(skip)`): into an [`Op::FusedConv`], which lowers to
//! one Conv kernel whose GEMM epilogue adds the residual:
//!
//! ```text
//! y0 = Conv(X, W[, B])
//! y1 = Add(y0, residual)     residual: a computed value of exactly y0's shape
//! y2 = act(y1)               as above, optional
//! ```
//!
//! The residual step is required: a lone Conv → activation is already one kernel (lowering
//! folds the activation). The interpreter computes the fused op as Conv, Add, activation,
//! so the rewrite is exact; the kernel adds the residual to the same f32 conv-plus-bias
//! value the Add read.
//!
//! Cost and gain: one walk over the nodes. Every dense layer loses its bias kernel, every
//! sublayer end its residual one, attention scores their scale-and-mask one (when
//! fold-transposes left the scores a MatMul); `docs/benchmarks.md` has the kernel and
//! instruction counts with and without the fusion passes.

use super::Pass;
use crate::Error;
use crate::ir::{Act, Binary, Graph, NodeIndex, Op, ValueId};

pub struct FuseEpilogue;

impl Pass for FuseEpilogue {
    fn name(&self) -> &'static str {
        "fuse-epilogue"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let (mut fused, mut scales, mut biases, mut residuals, mut acts) = (0, 0, 0, 0, 0);
        let mut convs = 0;
        let mut removed = std::collections::HashSet::new();
        for n in g.topo_order() {
            // Nodes of earlier chains are gone; a chain's last node is now FusedMatMul.
            if removed.contains(&n) {
                continue;
            }
            if let Some(chain) = match_conv(g, n) {
                fused += 1;
                convs += 1;
                residuals += 1;
                acts += usize::from(chain.act != Act::None);
                removed.extend(chain.nodes[..chain.nodes.len() - 1].iter().copied());
                rewrite_conv(g, chain)?;
                continue;
            }
            let Some(chain) = match_chain(g, n) else {
                continue;
            };
            scales += usize::from(chain.alpha != 1.0);
            biases += usize::from(chain.bias.is_some());
            residuals += usize::from(chain.residual.is_some());
            acts += usize::from(chain.act != Act::None);
            removed.extend(chain.nodes[..chain.nodes.len() - 1].iter().copied());
            rewrite(g, chain)?;
            fused += 1;
        }
        Ok(format!(
            "fused {fused} epilogues ({convs} conv, {scales} scale, {biases} bias, {residuals} residual, {acts} activation)"
        ))
    }
}

/// A matched chain: the product node, the nodes after it (in order) and what they add.
struct Chain {
    nodes: Vec<NodeIndex>,
    a: ValueId,
    b: ValueId,
    alpha: f32,
    trans: [bool; 2],
    bias: Option<ValueId>,
    residual: Option<ValueId>,
    act: Act,
}

/// The chain starting at product node `n`, if it absorbs at least one step.
fn match_chain(g: &Graph, n: NodeIndex) -> Option<Chain> {
    let node = g.node(n);
    let rank2 = |v: ValueId| g.value(v).shape.len() >= 2;
    let mut chain = match &node.op {
        Op::MatMul if rank2(node.inputs[0]) && rank2(node.inputs[1]) => Chain {
            nodes: vec![n],
            a: node.inputs[0],
            b: node.inputs[1],
            alpha: 1.0,
            trans: [false; 2],
            bias: None,
            residual: None,
            act: Act::None,
        },
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } if *beta == 1.0 || node.inputs.len() == 2 => Chain {
            nodes: vec![n],
            a: node.inputs[0],
            b: node.inputs[1],
            alpha: *alpha,
            trans: [*trans_a, *trans_b],
            bias: node.inputs.get(2).copied(),
            residual: None,
            act: Act::None,
        },
        _ => return None,
    };
    let mut y = node.outputs[0];
    // Scale: a one-element constant multiplier, only onto an alpha of 1 and before any
    // bias (a Gemm's C would be scaled by it too; the fused op adds the bias after alpha).
    if chain.alpha == 1.0
        && chain.bias.is_none()
        && let Some((u, s)) = single_scale(g, y)
    {
        chain.alpha = s;
        chain.nodes.push(u);
        y = g.node(u).outputs[0];
    }
    // Bias: a constant Add along the last dim.
    if chain.bias.is_none()
        && let Some((u, other)) = single_add(g, y)
        && is_row_bias(g, other, y)
    {
        chain.bias = Some(other);
        chain.nodes.push(u);
        y = g.node(u).outputs[0];
    }
    // Residual: a computed Add that does not grow the output.
    if let Some((u, other)) = single_add(g, y)
        && g.konst(other).is_none()
        && other != y
    {
        chain.residual = Some(other);
        chain.nodes.push(u);
        y = g.node(u).outputs[0];
    }
    if let Some(u) = single_reader(g, y)
        && let Some(act) = Act::of(&g.node(u).op)
    {
        chain.act = act;
        chain.nodes.push(u);
    }
    // A lone Gemm (with or without C) is already one kernel; so is a lone MatMul.
    (chain.nodes.len() > 1).then_some(chain)
}

/// A matched convolution chain: the Conv node, the Add and activation after it.
struct ConvChain {
    nodes: Vec<NodeIndex>,
    residual: ValueId,
    act: Act,
}

/// The chain `Conv → Add(residual) → act?` starting at Conv node `n`.
fn match_conv(g: &Graph, n: NodeIndex) -> Option<ConvChain> {
    let node = g.node(n);
    if !matches!(node.op, Op::Conv { .. }) {
        return None;
    }
    let y = node.outputs[0];
    let (u, residual) = single_add(g, y)?;
    // Exactly the output's shape (the kernel reads it densely), computed (a constant
    // would be a bias of another form, left alone), and not the conv itself.
    if g.value(residual).shape != g.value(y).shape || g.konst(residual).is_some() || residual == y {
        return None;
    }
    let mut chain = ConvChain {
        nodes: vec![n, u],
        residual,
        act: Act::None,
    };
    if let Some(a) = single_reader(g, g.node(u).outputs[0])
        && let Some(act) = Act::of(&g.node(a).op)
    {
        chain.act = act;
        chain.nodes.push(a);
    }
    Some(chain)
}

/// Replaces a conv chain by one FusedConv in the place of its last node, like [`rewrite`].
fn rewrite_conv(g: &mut Graph, c: ConvChain) -> Result<(), Error> {
    let last = *c.nodes.last().expect("a conv chain has a Conv and an Add");
    let conv = g.node(c.nodes[0]);
    let Op::Conv { window, group } = conv.op.clone() else {
        unreachable!("match_conv starts at a Conv");
    };
    let mut inputs = conv.inputs.clone();
    let bias = inputs.len() == 3;
    inputs.push(c.residual);
    let name = c
        .nodes
        .iter()
        .map(|&n| g.node(n).name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let op = Op::FusedConv {
        window,
        group,
        bias,
        residual: true,
        act: c.act,
    };
    g.set_op(last, op, inputs)?;
    g.set_node_name(last, name);
    for &n in &c.nodes[..c.nodes.len() - 1] {
        g.remove_node(n);
    }
    Ok(())
}

/// The only reader of `v`, when `v` is not a graph output.
fn single_reader(g: &Graph, v: ValueId) -> Option<NodeIndex> {
    if g.outputs.contains(&v) {
        return None;
    }
    match g.consumers(v).as_slice() {
        [u] => Some(*u),
        _ => None,
    }
}

/// `v`'s only reader when it is `Add(v, other)` or `Add(other, v)` with a result of
/// `v`'s own shape, and that `other`.
fn single_add(g: &Graph, v: ValueId) -> Option<(NodeIndex, ValueId)> {
    let u = single_reader(g, v)?;
    let node = g.node(u);
    if node.op != Op::Binary(Binary::Add) || g.value(node.outputs[0]).shape != g.value(v).shape {
        return None;
    }
    let other = match node.inputs.as_slice() {
        [x, o] if *x == v => *o,
        [o, x] if *x == v => *o,
        _ => return None,
    };
    Some((u, other))
}

/// `v`'s only reader when it is `Mul(v, s)`, `Mul(s, v)` or `Div(v, d)` by a one-element
/// constant, with a result of `v`'s shape, and the factor: `s`, or `1/d` when that is
/// exact (`d` a power of two in the normal range, so `x/d == x·(1/d)` for every `x`).
fn single_scale(g: &Graph, v: ValueId) -> Option<(NodeIndex, f32)> {
    let u = single_reader(g, v)?;
    let node = g.node(u);
    if g.value(node.outputs[0]).shape != g.value(v).shape {
        return None;
    }
    let scalar = |c: ValueId| -> Option<f32> {
        let t = g.konst(c)?;
        match t.as_f32()? {
            [x] if x.is_finite() => Some(*x),
            _ => None,
        }
    };
    match (&node.op, node.inputs.as_slice()) {
        (Op::Binary(Binary::Mul), [x, c]) if *x == v && *c != v => Some((u, scalar(*c)?)),
        (Op::Binary(Binary::Mul), [c, x]) if *x == v && *c != v => Some((u, scalar(*c)?)),
        (Op::Binary(Binary::Div), [x, c]) if *x == v && *c != v => {
            let d = scalar(*c)?;
            let r = 1.0 / d;
            let pow2 = |f: f32| f.is_normal() && f.to_bits() & 0x007f_ffff == 0;
            (pow2(d) && pow2(r)).then_some((u, r))
        }
        _ => None,
    }
}

/// Whether `c` is a constant that varies along the last dim of `y` only (`[N]`,
/// `[1, N]`, `[1, 1, N]`, or one value broadcast: `[1]`).
fn is_row_bias(g: &Graph, c: ValueId, y: ValueId) -> bool {
    let (cs, ys) = (&g.value(c).shape, &g.value(y).shape);
    g.konst(c).is_some()
        && cs.len() <= ys.len()
        && cs.iter().rev().skip(1).all(|&d| d == 1)
        && cs.last().is_none_or(|&d| d == 1 || Some(&d) == ys.last())
}

/// Replaces the chain by one FusedMatMul in the place of its last node, which keeps its
/// output (so its readers and graph outputs need no change), named after all of them.
fn rewrite(g: &mut Graph, c: Chain) -> Result<(), Error> {
    let last = *c.nodes.last().expect("a chain has a product node");
    let name = c
        .nodes
        .iter()
        .map(|&n| g.node(n).name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let mut inputs = vec![c.a, c.b];
    inputs.extend(c.bias);
    inputs.extend(c.residual);
    let op = Op::FusedMatMul {
        alpha: c.alpha,
        trans_a: c.trans[0],
        trans_b: c.trans[1],
        bias: c.bias.is_some(),
        residual: c.residual.is_some(),
        act: c.act,
    };
    g.set_op(last, op, inputs)?;
    g.set_node_name(last, name);
    for &n in &c.nodes[..c.nodes.len() - 1] {
        g.remove_node(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp;
    use crate::ir::{DType, Tensor, Unary, verify};
    use crate::passes::testing::random_values;

    fn konst(g: &mut Graph, name: &str, shape: &[usize], seed: u64) -> ValueId {
        let len = shape.iter().product();
        g.add_const(name, Tensor::f32(shape.to_vec(), random_values(len, seed)))
    }

    fn input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
        let v = g.add_input(name, DType::F32, shape.to_vec());
        g.inputs.push(v);
        v
    }

    fn node(g: &mut Graph, name: &str, op: Op, ins: Vec<ValueId>) -> ValueId {
        g.add_node(name, op, ins).unwrap().1[0]
    }

    /// Seeded random values for every graph input.
    fn inputs_of(g: &Graph) -> Vec<Tensor> {
        g.inputs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let shape = g.value(v).shape.clone();
                Tensor::f32(
                    shape.clone(),
                    random_values(shape.iter().product(), 100 + i as u64),
                )
            })
            .collect()
    }

    /// Runs the pass and checks the interpreter gives the same outputs before and after;
    /// returns the pass summary.
    fn run_checked(g: &mut Graph) -> String {
        let inputs = inputs_of(g);
        let before = interp::run(g, &inputs).unwrap();
        let summary = FuseEpilogue.run(g).unwrap();
        verify::verify(g).unwrap();
        let after = interp::run(g, &inputs).unwrap();
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(a.shape, b.shape);
            for (x, y) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{x} vs {y} after fusion"
                );
            }
        }
        summary
    }

    fn ops(g: &Graph) -> Vec<String> {
        g.topo_order()
            .into_iter()
            .map(|n| g.node(n).op.to_string())
            .collect()
    }

    /// `x[2,5,8] · w[8,6] + b[6] + r → gelu`, the bias on either side of its Add.
    #[test]
    fn matmul_bias_residual_gelu_becomes_one_node() {
        for bias_first in [false, true] {
            let mut g = Graph::new("g");
            let x = input(&mut g, "x", &[2, 5, 8]);
            let r = input(&mut g, "r", &[2, 5, 6]);
            let w = konst(&mut g, "w", &[8, 6], 1);
            let b = konst(&mut g, "b", &[6], 2);
            let h = node(&mut g, "mm", Op::MatMul, vec![x, w]);
            let ins = if bias_first { vec![b, h] } else { vec![h, b] };
            let h = node(&mut g, "add_b", Op::Binary(Binary::Add), ins);
            let h = node(&mut g, "add_r", Op::Binary(Binary::Add), vec![r, h]);
            let y = node(&mut g, "gelu", Op::Gelu { tanh: false }, vec![h]);
            g.outputs.push(y);
            let s = run_checked(&mut g);
            assert_eq!(
                s,
                "fused 1 epilogues (0 conv, 0 scale, 1 bias, 1 residual, 1 activation)"
            );
            assert_eq!(ops(&g), ["FusedMatMul{act=gelu bias residual}"]);
            let n = g.topo_order()[0];
            assert_eq!(g.node(n).name, "mm+add_b+add_r+gelu");
            assert_eq!(g.node(n).inputs, vec![x, w, b, r]);
            assert_eq!(g.outputs, vec![y]);
        }
    }

    /// Gemm's C is the bias; a following Relu and a residual of a smaller broadcast
    /// shape are fused, alpha and transposes kept.
    #[test]
    fn gemm_with_c_takes_residual_and_activation() {
        let mut g = Graph::new("g");
        let x = input(&mut g, "x", &[7, 4]);
        let r = input(&mut g, "r", &[1, 5]);
        let w = konst(&mut g, "w", &[5, 7], 3);
        let c = konst(&mut g, "c", &[4, 1], 4);
        let gemm = Op::Gemm {
            alpha: 0.5,
            beta: 1.0,
            trans_a: true,
            trans_b: true,
        };
        let h = node(&mut g, "gemm", gemm, vec![x, w, c]);
        let h = node(&mut g, "add", Op::Binary(Binary::Add), vec![h, r]);
        let y = node(&mut g, "relu", Op::Unary(Unary::Relu), vec![h]);
        g.outputs.push(y);
        run_checked(&mut g);
        assert_eq!(
            ops(&g),
            ["FusedMatMul{act=relu alpha=0.5 trans_a trans_b bias residual}"]
        );
    }

    /// Each activation kind alone after a MatMul.
    #[test]
    fn every_activation_is_fused() {
        let acts = [
            Op::Unary(Unary::Relu),
            Op::Unary(Unary::Sigmoid),
            Op::Unary(Unary::Tanh),
            Op::Clip {
                min: -0.25,
                max: 0.5,
            },
            Op::Gelu { tanh: false },
            Op::Gelu { tanh: true },
            Op::HardSwish,
        ];
        for op in acts {
            let mut g = Graph::new("g");
            let x = input(&mut g, "x", &[3, 9]);
            let w = konst(&mut g, "w", &[9, 4], 5);
            let h = node(&mut g, "mm", Op::MatMul, vec![x, w]);
            let want = Act::of(&op).unwrap();
            let y = node(&mut g, "act", op, vec![h]);
            g.outputs.push(y);
            run_checked(&mut g);
            let n = g.topo_order()[0];
            assert!(
                matches!(g.node(n).op, Op::FusedMatMul { act, bias: false, residual: false, .. } if act == want)
            );
        }
    }

    /// Attention scores: `MatMul → Mul(0.25) → Add(mask)` and `MatMul → Div(8) → Add(mask)`
    /// take the scale as alpha and the mask as residual; a Div by 3 (1/3 inexact) and a
    /// scale after a Gemm with alpha != 1 are left alone.
    #[test]
    fn scalar_scale_becomes_alpha() {
        let cases: [(Binary, f32, bool, &str); 4] = [
            (
                Binary::Mul,
                0.25,
                false,
                "FusedMatMul{act=none alpha=0.25 residual}",
            ),
            (
                Binary::Div,
                8.0,
                false,
                "FusedMatMul{act=none alpha=0.125 residual}",
            ),
            (Binary::Div, 3.0, false, "MatMul"),
            (Binary::Mul, 0.25, true, "Gemm{alpha=0.5 beta=1.0}"),
        ];
        for (op, s, gemm, first) in cases {
            let mut g = Graph::new("g");
            let (a_shape, b_shape): (&[usize], &[usize]) = if gemm {
                (&[5, 8], &[8, 5])
            } else {
                (&[2, 5, 8], &[2, 8, 5])
            };
            let a = input(&mut g, "a", a_shape);
            let b = input(&mut g, "b", b_shape);
            let mask = input(&mut g, "mask", &[1, 5]);
            let c = g.add_const("s", Tensor::f32(vec![], vec![s]));
            let h = if gemm {
                let op = Op::Gemm {
                    alpha: 0.5,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: false,
                };
                node(&mut g, "gemm", op, vec![a, b])
            } else {
                node(&mut g, "mm", Op::MatMul, vec![a, b])
            };
            let h = node(&mut g, "scale", Op::Binary(op), vec![h, c]);
            let y = node(&mut g, "add", Op::Binary(Binary::Add), vec![h, mask]);
            g.outputs.push(y);
            let before = interp::run(&g, &inputs_of(&g)).unwrap();
            run_checked(&mut g);
            assert_eq!(ops(&g)[0], first, "{op:?} {s}");
            // The scale as alpha is bit for bit the Mul (or the Div by a power of two).
            let after = interp::run(&g, &inputs_of(&g)).unwrap();
            assert_eq!(before[0].as_f32(), after[0].as_f32(), "{op:?} {s}");
        }
    }

    /// `Gemm(A, B, C) → Mul(s)` scales C too, so the Mul is no alpha: only the Relu after
    /// it would be fused, and here there is none, so nothing changes.
    #[test]
    fn scale_after_gemm_bias_is_left_alone() {
        let mut g = Graph::new("g");
        let x = input(&mut g, "x", &[4, 8]);
        let w = konst(&mut g, "w", &[8, 6], 1);
        let c = konst(&mut g, "c", &[6], 2);
        let s = g.add_const("s", Tensor::f32(vec![], vec![0.25]));
        let gemm = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        };
        let h = node(&mut g, "gemm", gemm, vec![x, w, c]);
        let y = node(&mut g, "scale", Op::Binary(Binary::Mul), vec![h, s]);
        g.outputs.push(y);
        run_checked(&mut g);
        assert_eq!(ops(&g), ["Gemm{alpha=1.0 beta=1.0}", "Mul"]);
    }

    /// A bias that varies along rows is not a bias; as a constant it is no residual
    /// either, so nothing is fused.
    #[test]
    fn bias_not_along_last_dim_is_left_alone() {
        let mut g = Graph::new("g");
        let x = input(&mut g, "x", &[4, 8]);
        let w = konst(&mut g, "w", &[8, 6], 1);
        let b = konst(&mut g, "b", &[4, 1], 2);
        let h = node(&mut g, "mm", Op::MatMul, vec![x, w]);
        let y = node(&mut g, "add", Op::Binary(Binary::Add), vec![h, b]);
        g.outputs.push(y);
        let s = run_checked(&mut g);
        assert_eq!(
            s,
            "fused 0 epilogues (0 conv, 0 scale, 0 bias, 0 residual, 0 activation)"
        );
        assert_eq!(ops(&g), ["MatMul", "Add"]);
    }

    /// The bias Add's result is read twice: the chain stops before it.
    #[test]
    fn intermediate_read_twice_stops_the_chain() {
        let mut g = Graph::new("g");
        let x = input(&mut g, "x", &[4, 8]);
        let w = konst(&mut g, "w", &[8, 6], 1);
        let b = konst(&mut g, "b", &[6], 2);
        let h = node(&mut g, "mm", Op::MatMul, vec![x, w]);
        let hb = node(&mut g, "add", Op::Binary(Binary::Add), vec![h, b]);
        let y = node(&mut g, "relu", Op::Unary(Unary::Relu), vec![hb]);
        let z = node(&mut g, "tanh", Op::Unary(Unary::Tanh), vec![hb]);
        g.outputs.extend([y, z]);
        run_checked(&mut g);
        assert_eq!(ops(&g), ["FusedMatMul{act=none bias}", "Relu", "Tanh"]);
    }

    /// A graph output in the middle of the chain ends it there.
    #[test]
    fn graph_output_in_the_middle_ends_the_chain() {
        let mut g = Graph::new("g");
        let x = input(&mut g, "x", &[4, 8]);
        let w = konst(&mut g, "w", &[8, 6], 1);
        let h = node(&mut g, "mm", Op::MatMul, vec![x, w]);
        let y = node(&mut g, "relu", Op::Unary(Unary::Relu), vec![h]);
        g.outputs.extend([h, y]);
        run_checked(&mut g);
        assert_eq!(ops(&g), ["MatMul", "Relu"]);
    }

    /// Exp is no epilogue; a residual before a bias is not reordered; a Gemm with
    /// beta != 1 is left to lowering.
    #[test]
    fn other_shapes_are_left_alone() {
        let mut g = Graph::new("g");
        let x = input(&mut g, "x", &[4, 8]);
        let r = input(&mut g, "r", &[4, 6]);
        let w = konst(&mut g, "w", &[8, 6], 1);
        let b = konst(&mut g, "b", &[6], 2);
        let h = node(&mut g, "mm", Op::MatMul, vec![x, w]);
        let y = node(&mut g, "exp", Op::Unary(Unary::Exp), vec![h]);
        let h2 = node(&mut g, "mm2", Op::MatMul, vec![x, w]);
        let h2 = node(&mut g, "add_r", Op::Binary(Binary::Add), vec![h2, r]);
        let z = node(&mut g, "add_b", Op::Binary(Binary::Add), vec![h2, b]);
        let gemm = Op::Gemm {
            alpha: 1.0,
            beta: 2.0,
            trans_a: false,
            trans_b: false,
        };
        let h3 = node(&mut g, "gemm", gemm, vec![x, w, b]);
        let u = node(&mut g, "relu", Op::Unary(Unary::Relu), vec![h3]);
        g.outputs.extend([y, z, u]);
        run_checked(&mut g);
        assert_eq!(
            ops(&g),
            [
                "MatMul",
                "Exp",
                "FusedMatMul{act=none residual}",
                "Add",
                "Gemm{alpha=1.0 beta=2.0}",
                "Relu"
            ]
        );
    }

    fn window3() -> crate::ir::WindowAttrs {
        crate::ir::WindowAttrs {
            kernel: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            auto_pad: crate::ir::AutoPad::NotSet,
            ceil_mode: false,
        }
    }

    /// A ResNet block end `Conv(x, W, b) → Add(skip) → Relu`, the skip on either side of
    /// the Add, with and without the bias, grouped and depthwise, becomes one FusedConv.
    #[test]
    fn conv_residual_relu_becomes_one_node() {
        for (skip_first, with_bias, group) in [
            (false, true, 1),
            (true, true, 1),
            (false, false, 2),
            (true, false, 4),
        ] {
            let mut g = Graph::new("g");
            let x = input(&mut g, "x", &[2, 4, 5, 6]);
            let r = input(&mut g, "r", &[2, 4, 5, 6]);
            let w = konst(&mut g, "w", &[4, 4 / group, 3, 3], 1);
            let mut ins = vec![x, w];
            if with_bias {
                ins.push(konst(&mut g, "b", &[4], 2));
            }
            let conv = Op::Conv {
                window: window3(),
                group,
            };
            let h = node(&mut g, "conv", conv, ins.clone());
            let add_ins = if skip_first { vec![r, h] } else { vec![h, r] };
            let h = node(&mut g, "add", Op::Binary(Binary::Add), add_ins);
            let y = node(&mut g, "relu", Op::Unary(Unary::Relu), vec![h]);
            g.outputs.push(y);
            let s = run_checked(&mut g);
            assert_eq!(
                s,
                "fused 1 epilogues (1 conv, 0 scale, 0 bias, 1 residual, 1 activation)"
            );
            let n = g.topo_order()[0];
            let bias = if with_bias { " bias" } else { "" };
            assert_eq!(
                ops(&g),
                [format!(
                    "FusedConv{{kernel=[3,3] strides=[1,1] dilations=[1,1] pads=[1,1,1,1] group={group} act=relu{bias} residual}}"
                )]
            );
            assert_eq!(g.node(n).name, "conv+add+relu");
            ins.push(r);
            assert_eq!(g.node(n).inputs, ins);
            assert_eq!(g.outputs, vec![y]);
        }
    }

    /// MobileNet's `Conv → Add(skip)` with no activation after it.
    #[test]
    fn conv_residual_without_activation() {
        let mut g = Graph::new("g");
        let x = input(&mut g, "x", &[1, 3, 4, 4]);
        let r = input(&mut g, "r", &[1, 5, 4, 4]);
        let w = konst(&mut g, "w", &[5, 3, 1, 1], 1);
        let mut window = window3();
        window.kernel = vec![1, 1];
        window.pads = vec![0; 4];
        let h = node(&mut g, "conv", Op::Conv { window, group: 1 }, vec![x, w]);
        let y = node(&mut g, "add", Op::Binary(Binary::Add), vec![h, r]);
        let z = node(&mut g, "exp", Op::Unary(Unary::Exp), vec![y]);
        g.outputs.push(z);
        run_checked(&mut g);
        assert_eq!(
            ops(&g),
            [
                "FusedConv{kernel=[1,1] strides=[1,1] dilations=[1,1] pads=[0,0,0,0] group=1 act=none residual}",
                "Exp"
            ]
        );
    }

    /// Not fused: a residual that broadcasts (not the output's shape), a constant one, a
    /// conv output read twice, a conv output that is a graph output, and a lone
    /// Conv → Relu (lowering folds that already).
    #[test]
    fn conv_chains_that_are_left_alone() {
        let cases: [(&[usize], bool, u8); 5] = [
            (&[1, 4, 1, 1], false, 0),
            (&[1, 4, 5, 6], true, 0),
            (&[1, 4, 5, 6], false, 1),
            (&[1, 4, 5, 6], false, 2),
            (&[1, 4, 5, 6], false, 3),
        ];
        for (rshape, constant, how) in cases {
            let mut g = Graph::new("g");
            let x = input(&mut g, "x", &[1, 4, 5, 6]);
            let r = if constant {
                konst(&mut g, "r", rshape, 3)
            } else {
                input(&mut g, "r", rshape)
            };
            let w = konst(&mut g, "w", &[4, 4, 3, 3], 1);
            let conv = Op::Conv {
                window: window3(),
                group: 1,
            };
            let h = node(&mut g, "conv", conv, vec![x, w]);
            if how == 3 {
                let y = node(&mut g, "relu", Op::Unary(Unary::Relu), vec![h]);
                g.outputs.push(y);
            } else {
                let y = node(&mut g, "add", Op::Binary(Binary::Add), vec![h, r]);
                let y = node(&mut g, "relu", Op::Unary(Unary::Relu), vec![y]);
                g.outputs.push(y);
                if how == 1 {
                    let t = node(&mut g, "tanh", Op::Unary(Unary::Tanh), vec![h]);
                    g.outputs.push(t);
                }
                if how == 2 {
                    g.outputs.push(h);
                }
            }
            let s = run_checked(&mut g);
            assert!(
                s.starts_with("fused 0 epilogues"),
                "{rshape:?} {constant} {how}: {s}"
            );
            assert!(ops(&g).iter().all(|o| !o.starts_with("FusedConv")));
        }
    }
}
