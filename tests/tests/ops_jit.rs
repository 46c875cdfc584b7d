//! Every op, compiled for the host with the JIT, against the reference interpreter, on
//! random shapes (odd sizes, vector tails, size-1 dims, every broadcast form) and random
//! attributes. Tolerances and their reasons: `ops_common/mod.rs`.

mod ops_common;

use ops_common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn unary_and_clip(p in unary_strategy()) {
        jit_case(&p, build_unary)?;
    }

    #[test]
    fn binary_broadcast(p in binary_strategy()) {
        jit_case(&p, build_binary)?;
    }

    #[test]
    fn matmul(p in matmul_strategy()) {
        jit_case(&p, build_matmul)?;
    }

    #[test]
    fn gemm(p in gemm_strategy()) {
        jit_case(&p, build_gemm)?;
    }

    #[test]
    fn gemm_epilogue(p in epilogue_strategy()) {
        jit_case(&p, build_epilogue)?;
    }

    #[test]
    fn conv(p in conv_strategy()) {
        jit_case(&p, build_conv)?;
    }

    #[test]
    fn pool(p in pool_strategy()) {
        jit_case(&p, build_pool)?;
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn global_average_pool(p in gap_strategy()) {
        jit_case(&p, build_gap)?;
    }

    #[test]
    fn batch_norm(p in bn_strategy()) {
        jit_case(&p, build_bn)?;
    }

    #[test]
    fn flatten(p in flatten_strategy()) {
        jit_case(&p, build_flatten)?;
    }

    #[test]
    fn reshape(p in reshape_strategy()) {
        jit_case(&p, build_reshape)?;
    }

    #[test]
    fn transpose(p in transpose_strategy()) {
        jit_case(&p, build_transpose)?;
    }

    #[test]
    fn concat(p in concat_strategy()) {
        jit_case(&p, build_concat)?;
    }

    #[test]
    fn softmax(p in softmax_strategy()) {
        jit_case(&p, build_softmax)?;
    }

    /// LayerNormalization as one row kernel: lengths with vector tails and 1, scale and
    /// bias constant or runtime, full or one value, with and without Mean/InvStdDev.
    #[test]
    fn layer_norm_forms(p in ln_form_strategy()) {
        jit_case(&p, build_ln_form)?;
    }

    #[test]
    fn attention_softmax(p in attention_softmax_strategy()) {
        jit_case(&p, build_attention_softmax)?;
    }

    #[test]
    fn einsum(p in einsum_strategy()) {
        jit_case(&p, build_einsum)?;
    }

    #[test]
    fn chains(p in chain_strategy()) {
        jit_case(&p, build_chain)?;
    }
}

/// Every scaled/masked softmax form at least once, whatever proptest samples, on the
/// scalar executor (the kernel contract's reference) and the JIT.
#[test]
fn attention_softmax_every_form() {
    let mut net = Net::new();
    for p in every_attention_softmax_case() {
        build_attention_softmax(&mut net, &p);
    }
    if let Err(e) = net.check_exec() {
        panic!("scalar executor: {e}");
    }
    if let Err(e) = net.check_jit() {
        panic!("{e}");
    }
}

/// Every chain at least once, whatever proptest samples.
#[test]
fn every_chain() {
    for which in 0..CHAINS {
        for (a, b) in [(1, 1), (3, 7), (5, 13)] {
            let p = ChainP {
                which,
                a,
                b,
                seed: which as u64 * 31 + a as u64,
            };
            jit_case(&p, build_chain).unwrap();
        }
    }
}

/// Batches like the aarch64 ones on the JIT: many independent instances in one graph,
/// so the memory planner shares the arena among many temps. A third of the aarch64
/// count, to stay within the 64 inputs/outputs of the runtime's checked call.
#[test]
fn batch_graphs() {
    for seed in 1..=8 {
        let net = batch_net(seed, 3);
        assert!(net.g.inputs.len() <= 64 && net.g.outputs.len() <= 64);
        if let Err(e) = net.check_jit() {
            panic!("seed {seed}:\n{e}");
        }
    }
}

/// MatMul batches that are broadcast partially on both sides (e.g. [2,1] against [1,3]):
/// the lowering copies the partially broadcast operand out to the full batch first.
#[test]
fn matmul_partial_broadcast() {
    use edgecc::ir::Op;
    for (sa, sb) in [
        (vec![2, 1, 3, 4], vec![1, 3, 4, 5]),
        (vec![3, 2, 4], vec![2, 3, 4, 5]),
        (vec![2, 3, 3, 4], vec![3, 4, 5]),
        (vec![2, 1, 3, 4], vec![2, 3, 4, 5]),
    ] {
        let mut rng = ops_common::Rng::new(7);
        let mut net = Net::new();
        let a = net.input(rng.tensor(&sa, -1.0, 1.0));
        let b = net.input(rng.tensor(&sb, -1.0, 1.0));
        let y = net.node(Op::MatMul, &[a, b]);
        net.output(y, format!("MatMul {sa:?} x {sb:?}"), Tol::scale(1e-5));
        net.check_jit()
            .unwrap_or_else(|e| panic!("{sa:?} x {sb:?}: {e}"));
    }
}

/// Regression: AveragePool with count_include_pad=1 and ceil_mode=1, when the last window
/// runs past the end padding. ONNX (and onnxruntime, and the interpreter) divide by the
/// number of window positions inside the padded input, not the full kernel size. X =
/// [1,1,3], kernel [2], strides [2], no pads, ceil_mode: the output is [(x0+x1)/2, x2/1].
/// Lowering pools a zero-padded copy for this case.
#[test]
fn average_pool_ceil_mode_count_include_pad() {
    use edgecc::ir::{AutoPad, Op, Tensor, WindowAttrs};
    for (spatial, k, s, pads) in [
        (vec![3], vec![2], vec![2], vec![0, 0]),
        (vec![6], vec![3], vec![2], vec![1, 1]),
        (vec![5, 5], vec![2, 2], vec![2, 2], vec![0, 0, 0, 0]),
    ] {
        let r = spatial.len();
        let mut shape = vec![1, 1];
        shape.extend(&spatial);
        let n: usize = shape.iter().product();
        let mut net = Net::new();
        let x = net.input(Tensor::f32(shape, (1..=n).map(|v| v as f32).collect()));
        let y = net.node(
            Op::AveragePool {
                window: WindowAttrs {
                    kernel: k.clone(),
                    strides: s.clone(),
                    dilations: vec![1; r],
                    pads: pads.clone(),
                    auto_pad: AutoPad::NotSet,
                    ceil_mode: true,
                },
                count_include_pad: true,
            },
            &[x],
        );
        net.output(
            y,
            format!("AveragePool {spatial:?} k{k:?} s{s:?} pads{pads:?} ceil count_include_pad"),
            Tol::rel(1e-6, 0.0),
        );
        net.check_jit().unwrap();
    }
}

/// Regression: exp used to saturate at e^88.37626 ≈ 2.4e38 although f32 reaches
/// e^88.72 ≈ 3.4e38, so for x in (88.3763, 88.7228] it was up to 30% low.
#[test]
fn exp_near_overflow() {
    use edgecc::ir::{Op, Tensor, Unary};
    let mut net = Net::new();
    let x = net.input(Tensor::f32(vec![4], vec![88.38, 88.5, 88.6, 88.72]));
    let y = net.node(Op::Unary(Unary::Exp), &[x]);
    net.output(y, "Exp near overflow", Tol::rel(EXP_REL, 0.0));
    net.check_jit().unwrap();
}

/// Regression: a model with more than `edgecc_runtime::MAX_IO` = 64 inputs runs on the JIT
/// (through `Model::run_with` and caller-provided pointer arrays), as it does as an
/// aarch64 executable (ops_aarch64.rs has ~150 inputs).
#[test]
fn jit_more_than_64_inputs() {
    use edgecc::ir::{Binary, Op, Tensor};
    let mut net = Net::new();
    let mut acc = net.input(Tensor::f32(vec![3], vec![1.0, 2.0, 3.0]));
    for i in 0..64 {
        let x = net.input(Tensor::f32(vec![3], vec![i as f32; 3]));
        acc = net.node(Op::Binary(Binary::Add), &[acc, x]);
    }
    net.output(acc, "sum of 65 inputs", Tol::exact());
    net.check_jit().unwrap();
}

proptest! {
    #![proptest_config(config(64))]

    /// Compare, And/Or/Xor, Not, Where and Tile in every dtype on random broadcast shapes,
    /// on the JIT and on the scalar executor.
    #[test]
    fn masks(p in mask_strategy()) {
        let mut net = Net::new();
        build_mask(&mut net, &p);
        net.check_exec().map_err(TestCaseError::fail)?;
        net.check_jit().map_err(TestCaseError::fail)?;
    }
}

/// Every mask op in every dtype it takes, in one graph on the executor and in graphs of
/// ten on the JIT (its checked call takes at most 64 inputs and outputs).
#[test]
fn every_mask_op_and_dtype() {
    let cases = every_mask_case();
    let mut net = Net::new();
    for p in &cases {
        build_mask(&mut net, p);
    }
    net.check_exec().unwrap();
    for chunk in cases.chunks(10) {
        let mut net = Net::new();
        for p in chunk {
            build_mask(&mut net, p);
        }
        net.check_jit().unwrap();
    }
}

/// An int64 attention mask and input ids, as PyTorch exports them, through Cast(bool),
/// Not, Equal, Or, Where and Softmax.
#[test]
fn attention_mask_model() {
    let net = attention_mask_net();
    net.check_exec().unwrap();
    net.check_jit().unwrap();
}

/// Expand, Transpose, Concat, Slice, Split and Gather move elements of every dtype
/// (1-, 4- and 8-byte), on the JIT and the executor.
#[test]
fn data_movement_every_dtype() {
    for (i, dtype) in MASK_DTYPES.into_iter().enumerate() {
        let mut net = Net::new();
        build_movement(&mut net, dtype, i as u64);
        net.check_exec().unwrap();
        net.check_jit().unwrap();
    }
}

/// Every Einsum form at least once, with sizes > 1 (so no group collapses by accident) and
/// with ellipsis dims that broadcast, whatever proptest samples.
#[test]
fn einsum_every_form() {
    for (i, &equation) in EINSUM_FORMS.iter().enumerate() {
        for (sizes, ellipsis, forms) in [
            (vec![2, 3, 4, 5, 6, 7, 3, 2], vec![3, 2], vec![0, 3, 1]),
            (vec![5, 1, 3, 1, 4, 2, 1, 3], vec![1, 4], vec![2, 0, 0]),
        ] {
            let p = EinsumP {
                equation,
                sizes,
                ellipsis,
                forms,
                consts: vec![false, i % 3 == 0, false],
                seed: i as u64,
            };
            jit_case(&p, build_einsum).unwrap_or_else(|e| panic!("{equation}: {e}"));
        }
    }
}

/// The attention einsums at transformer sizes (64-wide heads, odd sequence lengths).
#[test]
fn einsum_attention_sizes() {
    for equation in ["bhqd,bhkd->bhqk", "bhqk,bhkd->bhqd", "bid,bjd->bij"] {
        let p = EinsumP {
            equation,
            sizes: vec![2, 4, 33, 64, 17],
            ellipsis: vec![],
            forms: vec![0],
            consts: vec![false],
            seed: 5,
        };
        jit_case(&p, build_einsum).unwrap_or_else(|e| panic!("{equation}: {e}"));
    }
}

/// HardSigmoid and HardSwish as elementwise kernels (inputs across both bends, ±3 and
/// the NaN-free range), and HardSwish and GELU as the epilogue of a Conv.
#[test]
fn hard_activations_and_conv_epilogues() {
    use edgecc::ir::{Op, WindowAttrs};
    let mut net = Net::new();
    let mut rng = ops_common::Rng::new(7);
    for op in [
        Op::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        Op::HardSigmoid {
            alpha: -0.75,
            beta: 0.125,
        },
        Op::HardSwish,
    ] {
        let x = net.input(rng.tensor(&[3, 37], -5.0, 5.0));
        let y = net.node(op.clone(), &[x]);
        net.output(y, format!("{op}"), Tol::rel(2.0 * U, 0.0));
    }
    for act in [
        Op::HardSwish,
        Op::Gelu { tanh: false },
        Op::Gelu { tanh: true },
    ] {
        let x = net.input(rng.tensor(&[1, 3, 6, 7], -1.0, 1.0));
        let w = net.konst(rng.tensor(&[5, 3, 3, 3], -1.0, 1.0));
        let b = net.konst(rng.tensor(&[5], -1.0, 1.0));
        let window = WindowAttrs {
            kernel: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            auto_pad: edgecc::ir::AutoPad::NotSet,
            ceil_mode: false,
        };
        let y = net.node(Op::Conv { window, group: 1 }, &[x, w, b]);
        let z = net.node(act.clone(), &[y]);
        net.output(z, format!("Conv+{act}"), Tol::scale(CHAIN_SCALE));
    }
    net.check_jit().unwrap();
}

/// Conv → Add(skip) → activation in every conv code-generation form is one Conv kernel
/// with a residual and matches the interpreter.
#[test]
fn conv_residual_epilogue() {
    let net = ops_common::conv_residual_net();
    ops_common::assert_conv_residual_kernels(&net);
    net.check_exec().unwrap();
    net.check_jit().unwrap();
}

/// FusedMatMul nodes built directly with transposed batched operands (the batch fold
/// does not apply to a transposed A), alpha, a row-broadcast residual and each
/// activation kind.
#[test]
fn fused_matmul_transposed_operands() {
    use edgecc::ir::{Act, Op};
    let mut net = Net::new();
    let mut rng = ops_common::Rng::new(11);
    let acts = [
        Act::None,
        Act::Relu,
        Act::Clip {
            min: -0.5,
            max: 0.5,
        },
        Act::Sigmoid,
        Act::Tanh,
        Act::Gelu { tanh: false },
        Act::Gelu { tanh: true },
        Act::HardSwish,
    ];
    for (i, act) in acts.into_iter().enumerate() {
        let (trans_a, trans_b) = (i % 2 == 1, i / 2 % 2 == 1);
        let (m, k, n) = (5 + i, 9, 7);
        let sa = if trans_a { [2, k, m] } else { [2, m, k] };
        let sb = if trans_b { [2, n, k] } else { [2, k, n] };
        let a = net.input(rng.tensor(&sa, -1.0, 1.0));
        let b = net.konst(rng.tensor(&sb, -1.0, 1.0));
        let bias = net.konst(rng.tensor(&[n], -1.0, 1.0));
        let r = net.input(rng.tensor(&[m, 1], -1.0, 1.0));
        let op = Op::FusedMatMul {
            alpha: 1.5,
            trans_a,
            trans_b,
            bias: true,
            residual: true,
            act,
        };
        let y = net.node(op.clone(), &[a, b, bias, r]);
        net.output(y, format!("{op}"), Tol::scale(CHAIN_SCALE));
    }
    net.check_jit().unwrap();
}
