//! Compiled (x86_64 JIT) against the interpreter for the transformer-export ops that have
//! kernels: reductions over adjacent axes (Sum, Mean, Max, Min, Prod), LayerNormalization
//! (with its Mean and InvStdDev outputs), tanh-Gelu, Pow by the
//! exponents the kernels express, Squeeze/Unsqueeze views.

mod ops_common;

use edgecc::ir::{Binary, Op, ReduceKind, Tensor};
use ops_common::{Net, Rng, Tol};
use proptest::prelude::*;

/// Reductions: an f32 sum of `len` terms in a different order than the f64 interpreter;
/// bound (len+2)·2^-24·Σ|x| ≤ (len+2)·2^-24·len·max|x|, stated as relative to the scale.
fn reduce_case(shape: Vec<usize>, a: usize, b: usize, kind: ReduceKind, keepdims: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut net = Net::new();
    let x = net.input(rng.tensor(&shape, -2.0, 2.0));
    let axes: Vec<i64> = (a..b).map(|d| d as i64).collect();
    let y = net.node(
        Op::Reduce {
            kind,
            axes: Some(axes),
            keepdims,
        },
        &[x],
    );
    let len: usize = shape[a..b].iter().product();
    let tol = match kind {
        ReduceKind::Max => Tol::exact(),
        _ => Tol::scale((len as f64 + 2.0) * 6e-8 * len as f64),
    };
    net.output(y, format!("{kind:?} {shape:?} axes {a}..{b}"), tol);
    net.check_jit().unwrap();
}

proptest! {
    #![proptest_config(ops_common::config(32))]

    #[test]
    fn reductions_over_adjacent_axes(
        shape in prop::collection::vec(1usize..7, 1..5),
        pick in (0usize..8, 0usize..8),
        kind in prop_oneof![Just(ReduceKind::Sum), Just(ReduceKind::Mean), Just(ReduceKind::Max)],
        keepdims in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let r = shape.len();
        let a = pick.0 % r;
        let b = a + 1 + pick.1 % (r - a);
        reduce_case(shape, a, b, kind, keepdims, seed);
    }

    /// LayerNorm: mean and variance in f32 (the interpreter uses f64) over `len` terms,
    /// then one divide; the normalized values are O(1), so an absolute bound of
    /// (len+8)·2^-24·4 on values of scale ~3 holds.
    #[test]
    fn layer_norm(
        outer in prop::collection::vec(1usize..5, 0..3),
        inner in prop::collection::vec(1usize..17, 1..3),
        bias in any::<bool>(),
        broadcast_scale in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut shape = outer.clone();
        shape.extend(&inner);
        let axis = -(inner.len() as i64);
        let len: usize = inner.iter().product();
        let mut net = Net::new();
        let x = net.input(rng.tensor(&shape, -3.0, 5.0));
        let scale_shape = if broadcast_scale { vec![*inner.last().unwrap()] } else { inner.clone() };
        let scale = net.konst(rng.tensor(&scale_shape, 0.5, 1.5));
        let mut ins = vec![x, scale];
        if bias {
            ins.push(net.konst(rng.tensor(&scale_shape, -1.0, 1.0)));
        }
        if broadcast_scale && inner.len() > 1 {
            // A 1-D scale over 2-D normalized dims broadcasts along the last dim only:
            // the lowering refuses it (partial broadcast), which the interpreter handles.
            return Ok(());
        }
        let y = net.node(Op::LayerNorm { axis, epsilon: 1e-5, stats: false }, &ins);
        net.output(y, format!("LayerNorm {shape:?}"), Tol::rel(0.0, (len as f64 + 8.0) * 2.4e-7 * 4.0));
        net.check_jit().unwrap();
    }

    /// LayerNormalization with its Mean and InvStdDev outputs, on every axis and a few
    /// epsilons (tolerances: `build_ln_stats`), on the JIT and the scalar executor.
    #[test]
    fn layer_norm_with_mean_and_inv_std_dev(p in ops_common::ln_stats_strategy()) {
        let mut net = Net::new();
        ops_common::build_ln_stats(&mut net, &p);
        net.check_jit().map_err(TestCaseError::fail)?;
        net.check_exec().map_err(TestCaseError::fail)?;
    }

    /// ReduceMin, ReduceProd and ReduceMax over adjacent axes, with NaN and ±inf in some
    /// cases.
    #[test]
    fn reduce_min_and_prod(p in ops_common::min_prod_strategy()) {
        let mut net = Net::new();
        ops_common::build_reduce(&mut net, &p);
        net.check_jit().map_err(TestCaseError::fail)?;
        net.check_exec().map_err(TestCaseError::fail)?;
    }

    /// tanh-Gelu: tanh's polynomial (≤ 3e-7 absolute) scaled by x/2, plus a few roundings.
    #[test]
    fn gelu_tanh(shape in prop::collection::vec(1usize..9, 1..4), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut net = Net::new();
        let x = net.input(rng.tensor(&shape, -6.0, 6.0));
        let y = net.node(Op::Gelu { tanh: true }, &[x]);
        net.output(y, "Gelu tanh", Tol::rel(1e-6, 2e-6));
        net.check_jit().unwrap();
    }
}

#[test]
fn pow_by_supported_exponents_and_views() {
    for e in [1.0f32, 2.0, 0.5, -1.0] {
        let mut rng = Rng::new(e.to_bits() as u64);
        let mut net = Net::new();
        let x = net.input(rng.tensor(&[3, 5], 0.1, 4.0));
        let k = net.konst(Tensor::f32(vec![], vec![e]));
        let y = net.node(Op::Binary(Binary::Pow), &[x, k]);
        let u = net.node(Op::Unsqueeze { axes: vec![0, -1] }, &[y]);
        let s = net.node(
            Op::Squeeze {
                axes: Some(vec![0]),
            },
            &[u],
        );
        // x·x, sqrt and 1/x are correctly rounded; the interpreter's powf may differ by an ulp.
        net.output(s, format!("Pow {e}"), Tol::rel(2.4e-7, 0.0));
        net.check_jit().unwrap();
    }
}

/// Erf (backend bound 3.5e-7 absolute), Log (3e-7 relative), erf-Gelu (erf's bound scaled
/// by |x|/2 plus a few roundings), and Gather of embedding rows by i64 token ids (exact).
#[test]
fn erf_log_gelu_and_gather() {
    let mut rng = Rng::new(11);
    let mut net = Net::new();
    let x = net.input(rng.tensor(&[7, 9], -4.0, 4.0));
    let e = net.node(Op::Unary(edgecc::ir::Unary::Erf), &[x]);
    net.output(e, "Erf", Tol::rel(0.0, 3.6e-7));
    let p = net.input(rng.tensor(&[5, 11], 1e-3, 1e3));
    let l = net.node(Op::Unary(edgecc::ir::Unary::Log), &[p]);
    net.output(l, "Log", Tol::rel(3.1e-7, 1e-7));
    let gx = net.input(rng.tensor(&[4, 13], -6.0, 6.0));
    let gelu = net.node(Op::Gelu { tanh: false }, &[gx]);
    net.output(gelu, "Gelu", Tol::rel(1e-6, 2e-6));
    let table = net.konst(rng.tensor(&[10, 6], -1.0, 1.0));
    let ids = net.input(Tensor::i64(vec![2, 3], vec![0, 9, -1, 4, 4, -10]));
    let rows = net.node(Op::Gather { axis: 0 }, &[table, ids]);
    net.output(rows, "Gather rows", Tol::exact());
    let col_ids = net.input(Tensor::i64(vec![3], vec![5, 0, -6]));
    let cols = net.node(Op::Gather { axis: 1 }, &[table, col_ids]);
    net.output(cols, "Gather columns", Tol::exact());
    net.check_jit().unwrap();
}

/// The attention-mask chain of BERT exports: an i64 mask input → Unsqueeze → Cast(f32) →
/// (1 - m) · -10000 → added to scores → Softmax. Cast of an i64 is exact for 0/1.
#[test]
fn attention_mask_cast_chain() {
    use edgecc::ir::DType;
    let mut rng = Rng::new(5);
    let mut net = Net::new();
    let mask = net.input(Tensor::i64(vec![1, 6], vec![1, 1, 1, 1, 0, 0]));
    let scores = net.input(rng.tensor(&[1, 2, 6, 6], -3.0, 3.0));
    let m = net.node(Op::Unsqueeze { axes: vec![1, 2] }, &[mask]);
    let mf = net.node(Op::Cast { to: DType::F32 }, &[m]);
    let one = net.konst(Tensor::f32(vec![], vec![1.0]));
    let inv = net.node(Op::Binary(Binary::Sub), &[one, mf]);
    let big = net.konst(Tensor::f32(vec![], vec![-10000.0]));
    let bias = net.node(Op::Binary(Binary::Mul), &[inv, big]);
    let s = net.node(Op::Binary(Binary::Add), &[scores, bias]);
    let p = net.node(
        Op::Softmax {
            axis: -1,
            coerce_2d: false,
        },
        &[s],
    );
    net.output(p, "masked softmax", Tol::rel(2e-6, 1e-30));
    // f32 → i64 truncates toward zero; back to f32 is exact for these magnitudes.
    let ints = net.node(Op::Cast { to: DType::I64 }, &[s]);
    let back = net.node(Op::Cast { to: DType::F32 }, &[ints]);
    net.output(back, "round trip through i64", Tol::exact());
    net.check_jit().unwrap();
}

/// Data movement of elements that are not 4 bytes wide, and GatherElements / GatherND with
/// constant indices (as PyTorch exports write them for attention masks and position ids):
/// compiled as one gather through a table of source positions. Exact.
#[test]
fn moves_of_bool_and_i64_and_constant_index_gathers() {
    use edgecc::ir::DType;
    let mut rng = Rng::new(21);
    let mut net = Net::new();
    let ids = net.input(Tensor::i64(
        vec![2, 3, 4],
        (0..24).map(|i| (i * 7919 - 50) << 36).collect(),
    ));
    let t = net.node(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[ids],
    );
    net.output(t, "Transpose i64", Tol::exact());
    let s = net.node(
        Op::Slice {
            starts: vec![1, -1],
            ends: vec![3, 0],
            axes: vec![1, 2],
            steps: vec![1, -2],
        },
        &[ids],
    );
    net.output(s, "Slice i64 with negative step", Tol::exact());
    let tiled = net.node(
        Op::Tile {
            repeats: vec![1, 2, 3],
        },
        &[ids],
    );
    net.output(tiled, "Tile i64", Tol::exact());
    let mask = net.input(Tensor::i64(vec![1, 6], vec![1, 1, 0, 1, 0, 0]));
    let b = net.node(Op::Cast { to: DType::Bool }, &[mask]);
    let e = net.node(
        Op::Expand {
            shape: vec![3, 1, 6],
        },
        &[b],
    );
    net.output(e, "Expand bool", Tol::exact());
    let rows = net.konst(Tensor::i64(vec![2, 2, 2], vec![0, 5, 0, 0, 0, -1, 0, 2]));
    let nd = net.node(Op::GatherND { batch_dims: 0 }, &[b, rows]);
    net.output(nd, "GatherND bool, index tuples", Tol::exact());
    let x = net.input(rng.tensor(&[3, 4, 5], -1.0, 1.0));
    let slices = net.konst(Tensor::i64(vec![3, 2, 1], vec![1, -1, 0, 3, 2, 2]));
    let nd_rows = net.node(Op::GatherND { batch_dims: 1 }, &[x, slices]);
    net.output(nd_rows, "GatherND f32 rows, batch_dims 1", Tol::exact());
    let pos = net.konst(Tensor::i64(
        vec![3, 2, 5],
        (0..30).map(|i| (i * 5 % 8) as i64 - 4).collect(),
    ));
    let ge = net.node(Op::GatherElements { axis: 1 }, &[x, pos]);
    net.output(ge, "GatherElements f32 axis 1", Tol::exact());
    let ge_ids = net.konst(Tensor::i64(
        vec![1, 3, 4],
        vec![1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1],
    ));
    let ge_i64 = net.node(Op::GatherElements { axis: 0 }, &[ids, ge_ids]);
    net.output(ge_i64, "GatherElements i64 axis 0", Tol::exact());
    net.check_jit().unwrap();
}

/// Elementwise chains as exporters write them (bias Add → GELU as Div/Erf/Add/Mul/Mul, a
/// residual Add) become one loop; a value that is also read later, or through another
/// view, stops a merge. Compiled against the interpreter.
#[test]
fn elementwise_chains_merge_into_one_kernel() {
    use edgecc::ir::Unary;
    let mut rng = Rng::new(31);
    let mut net = Net::new();
    let x = net.input(rng.tensor(&[1, 5, 12], -3.0, 3.0));
    let bias = net.konst(rng.tensor(&[12], -0.5, 0.5));
    let h = net.node(Op::Binary(Binary::Add), &[x, bias]);
    let sqrt2 = net.konst(Tensor::f32(vec![], vec![std::f32::consts::SQRT_2]));
    let d = net.node(Op::Binary(Binary::Div), &[h, sqrt2]);
    let e = net.node(Op::Unary(Unary::Erf), &[d]);
    let one = net.konst(Tensor::f32(vec![], vec![1.0]));
    let a = net.node(Op::Binary(Binary::Add), &[e, one]);
    let m = net.node(Op::Binary(Binary::Mul), &[h, a]);
    let half = net.konst(Tensor::f32(vec![], vec![0.5]));
    let gelu = net.node(Op::Binary(Binary::Mul), &[m, half]);
    let residual = net.node(Op::Binary(Binary::Add), &[gelu, x]);
    net.output(residual, "bias + erf GELU + residual", Tol::rel(1e-6, 2e-6));
    // A transposed copy merges into its reader, which then reads exp(y) through two
    // views; exp(y) itself is read twice, through different views, so it stays apart.
    let y = net.input(rng.tensor(&[6, 6], -1.0, 1.0));
    let ey = net.node(Op::Unary(Unary::Exp), &[y]);
    let t = net.node(Op::Transpose { perm: vec![1, 0] }, &[ey]);
    let s = net.node(Op::Binary(Binary::Add), &[t, ey]);
    net.output(s, "exp(y)ᵀ + exp(y)", Tol::rel(4e-7, 1e-30));
    net.check_jit().unwrap();

    let lowered = edgecc::lower::lower(&net.g, "ops").unwrap();
    // The bias, GELU and residual block is one kernel (the bias result, read twice,
    // merges once the rest is one kernel); then exp, then transpose + add.
    assert_eq!(
        lowered.kernel_nodes,
        ["n3+n5+n6+n8+n9+n11+n12", "n14", "n15+n16"],
        "{:?}",
        lowered.program.kernels
    );
    assert_eq!(lowered.merged_elementwise, 7);
}

/// Pow with an exponent that is not one of the exact constants: run time exponents over
/// every special base and exponent (C `powf`'s rules: x^0 = 1, 1^y = 1, (-1)^±inf = 1,
/// negative bases with odd / even / non-integer exponents, ±0, ±inf, NaN), and a constant
/// i64 exponent tensor. Bound: `exp(y·log|x|)` carries `|y·log|x||·2^-23` relative error
/// from the rounded product, plus a few ulp from exp and log.
#[test]
fn pow_general_exponents() {
    let bases = [
        -2.0f32,
        -1.0,
        -0.5,
        -0.0,
        0.0,
        0.5,
        1.0,
        2.0,
        3.7,
        1e-3,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    let exps = [
        0.0f32,
        1.0,
        2.0,
        3.0,
        -1.0,
        -3.0,
        0.5,
        -0.5,
        2.5,
        10.0,
        -10.0,
        40.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    let mut net = Net::new();
    let x = net.input(Tensor::f32(vec![bases.len(), 1], bases.to_vec()));
    let y = net.input(Tensor::f32(vec![1, exps.len()], exps.to_vec()));
    let p = net.node(Op::Binary(Binary::Pow), &[x, y]);
    let bound: Vec<f64> = bases
        .iter()
        .flat_map(|&b| {
            exps.iter().map(move |&e| {
                let want = (b as f64).powf(e as f64).abs();
                let t = (e as f64 * (b as f64).abs().ln()).abs();
                if want.is_finite() && t.is_finite() {
                    want * (t * 2.4e-7 + 1e-6) + 1e-44
                } else {
                    0.0
                }
            })
        })
        .collect();
    net.output(p, "Pow(x, y) at run time", Tol::elem(bound));
    let ids = net.input(Tensor::f32(
        vec![2, 3],
        vec![1.5, 0.25, 7.0, 0.9, 2.0, 1e-2],
    ));
    let e = net.konst(Tensor::i64(vec![3], vec![3, -2, 5]));
    let q = net.node(Op::Binary(Binary::Pow), &[ids, e]);
    net.output(q, "Pow(x, const i64 [3, -2, 5])", Tol::rel(4e-6, 1e-30));
    net.check_exec().unwrap();
    net.check_jit().unwrap();
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    net.check_cross(&target).unwrap();
}

/// The CumSum cases: every axis of a 3-D input, each flag combination, f32/i32/i64.
fn cumsum_net() -> Net {
    use edgecc::ir::DType;
    let mut net = Net::new();
    let mut seed = 300;
    for dtype in [DType::F32, DType::I32, DType::I64] {
        for axis in [0i64, 1, 2, -1] {
            for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)]
            {
                seed += 1;
                ops_common::build_cumsum(
                    &mut net,
                    &[3, 5, 4],
                    axis,
                    exclusive,
                    reverse,
                    dtype,
                    seed,
                );
            }
        }
        ops_common::build_cumsum(&mut net, &[17], 0, false, false, dtype, seed + 100);
    }
    net
}

/// CumSum over every axis, exclusive and reverse, f32 (sequential sums, exact) and
/// i32/i64 with values that wrap, on the lowered-program executor and the JIT.
#[test]
fn cumsum_axes_flags_and_dtypes() {
    let net = cumsum_net();
    net.check_exec().unwrap();
    net.check_jit().unwrap();
}

/// Integer Add/Sub/Mul/Max/Min with broadcasting, Neg and Abs on i32 and i64, with
/// operands near the ends of the range so sums and products wrap.
#[test]
fn integer_arithmetic_wraps_and_broadcasts() {
    use edgecc::ir::DType;
    let mut net = Net::new();
    ops_common::build_int_arith(&mut net, DType::I32, 1);
    ops_common::build_int_arith(&mut net, DType::I64, 2);
    net.check_exec().unwrap();
    net.check_jit().unwrap();
}

/// RoBERTa's run-time position ids (Equal/Not/Cast/CumSum/Mul/Cast/Add on ints) and the
/// position embedding lookup they drive.
#[test]
fn roberta_position_ids_chain() {
    let mut net = Net::new();
    ops_common::roberta_position_ids(&mut net);
    net.check_exec().unwrap();
    net.check_jit().unwrap();
}
