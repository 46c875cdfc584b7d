//! Every kernel kind compiled with the JIT and compared with `edgecc_program::exec`.
//!
//! Tolerances (`|got − want| ≤ atol + rtol·|want|`), and why:
//! - GEMM/conv: the generated code sums in another order (register blocking, FMA), so
//!   each output can differ by about `K·eps·max|a|·max|b|`; inputs are in [-1, 1], so
//!   `atol = K·1.2e-7·2`, rounded up to 1e-5 per 32 terms.
//! - exp-based (softmax, sigmoid, tanh, exp): the inline polynomial is within 3e-7
//!   relative (see `math.rs`), plus a division: `rtol = 2e-6`, `atol = 1e-6`.
//! - pure data movement, max, and single-operation arithmetic: exact.
mod common;

use common::*;
use edgecc_program::{
    Activation, BinaryOp, Buffer, ExprNode, Kernel, PoolKind, ReduceOp, UnaryOp, Window,
};

fn gemm_tol(k: u32) -> f32 {
    1e-5 * (1.0 + k as f32 / 32.0)
}

#[test]
fn gemm_plain_and_tails() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (4, 8, 16),
        (5, 13, 7),
        (9, 27, 33),
        (17, 3, 2),
        (8, 12, 1),
    ] {
        let p = gemm_program(
            1,
            m,
            n,
            k,
            false,
            false,
            false,
            false,
            false,
            None,
            Activation::None,
            1.0,
        );
        check_jit(&p, gemm_tol(k), 1e-5, &format!("gemm {m}x{n}x{k}"));
    }
}

#[test]
fn gemm_constant_operands_bias_act_alpha() {
    for (i, &(a_c, b_c)) in [(true, false), (false, true), (true, true)]
        .iter()
        .enumerate()
    {
        for (j, bias) in ["scalar", "row", "col", "full", "batch"].iter().enumerate() {
            let act = [
                Activation::Relu,
                Activation::Clip { lo: -0.5, hi: 0.5 },
                Activation::Sigmoid,
                Activation::Tanh,
                Activation::None,
            ][(i + j) % 5];
            let p = gemm_program(
                2,
                7,
                10,
                9,
                i == 1,
                j % 2 == 0,
                a_c,
                b_c,
                j == 3,
                Some(bias),
                act,
                0.5,
            );
            check_jit(
                &p,
                2e-5,
                2e-5,
                &format!("gemm const {a_c}/{b_c} bias {bias} {act:?}"),
            );
        }
    }
}

#[test]
fn conv_general_pointwise_depthwise_grouped() {
    let cases = [
        (1, 3, 8, 1, 9, 9, win(3, 1, 1, 1), true, Activation::Relu),
        (2, 4, 6, 2, 7, 5, win(3, 2, 1, 1), false, Activation::None),
        (
            1,
            8,
            5,
            1,
            6,
            6,
            win(1, 1, 1, 0),
            true,
            Activation::Clip { lo: 0.0, hi: 6.0 },
        ),
        (2, 6, 6, 6, 8, 7, win(3, 1, 1, 1), true, Activation::Relu),
        (1, 5, 5, 5, 9, 9, win(3, 2, 2, 2), false, Activation::None),
        (
            1,
            3,
            4,
            1,
            1,
            17,
            Window {
                kh: 1,
                kw: 3,
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                pad_top: 0,
                pad_left: 1,
                pad_bottom: 0,
                pad_right: 1,
            },
            true,
            Activation::Tanh,
        ),
        (
            1,
            2,
            3,
            1,
            10,
            10,
            win(5, 3, 1, 0),
            false,
            Activation::Sigmoid,
        ),
    ];
    for (i, &(n, ci, co, g, h, w, wn, b, act)) in cases.iter().enumerate() {
        let p = conv_program(n, ci, co, g, h, w, wn, b, act);
        check_jit(
            &p,
            gemm_tol(ci * wn.kh * wn.kw),
            2e-5,
            &format!("conv case {i}"),
        );
    }
}

#[test]
fn pool_max_avg_both_pad_modes() {
    for kind in [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: true,
        },
        PoolKind::Avg {
            count_include_pad: false,
        },
    ] {
        for wn in [win(2, 2, 1, 0), win(3, 1, 1, 1), win(3, 2, 2, 1)] {
            let p = pool_program(kind, 3, 9, 7, wn);
            check_jit(&p, 1e-6, 1e-6, &format!("pool {kind:?} {wn:?}"));
        }
    }
}

#[test]
fn elementwise_broadcast_and_transcendentals() {
    let expr = vec![
        ExprNode::Input(0),
        ExprNode::Input(1),
        ExprNode::Binary(BinaryOp::Mul, 0, 1),
        ExprNode::Const(0.25),
        ExprNode::Binary(BinaryOp::Add, 2, 3),
        ExprNode::Unary(UnaryOp::Sigmoid, 4),
        ExprNode::Unary(UnaryOp::Tanh, 0),
        ExprNode::Binary(BinaryOp::Max, 5, 6),
        ExprNode::Unary(UnaryOp::Exp, 7),
        ExprNode::Clip {
            x: 8,
            lo: 0.9,
            hi: 2.0,
        },
    ];
    let p = program(
        vec![io("x", &[3, 5, 11]), io("b", &[11])],
        vec![io("y", &[3, 5, 11])],
        vec![],
        0,
        vec![Kernel::Elementwise {
            shape: vec![3, 5, 11],
            inputs: vec![
                view(Buffer::Input(0), 0, &[55, 11, 1]),
                view(Buffer::Input(1), 0, &[0, 0, 1]),
            ],
            expr,
            output: view(Buffer::Output(0), 0, &[55, 11, 1]),
        }],
    );
    check_jit(&p, 1e-6, 2e-6, "elementwise expr");
    // A transpose (scalar path) with an arena round trip and an in-place update.
    let p = program(
        vec![io("x", &[4, 6])],
        vec![io("y", &[6, 4])],
        vec![],
        128,
        vec![
            Kernel::Elementwise {
                shape: vec![6, 4],
                inputs: vec![view(Buffer::Input(0), 0, &[1, 6])],
                expr: vec![ExprNode::Input(0)],
                output: view(Buffer::Arena { offset: 0 }, 0, &[4, 1]),
            },
            Kernel::Elementwise {
                shape: vec![24],
                inputs: vec![view(Buffer::Arena { offset: 0 }, 0, &[1])],
                expr: vec![
                    ExprNode::Input(0),
                    ExprNode::Unary(UnaryOp::Abs, 0),
                    ExprNode::Unary(UnaryOp::Sqrt, 1),
                    ExprNode::Unary(UnaryOp::Neg, 2),
                ],
                output: view(Buffer::Arena { offset: 0 }, 0, &[1]),
            },
            Kernel::Copy {
                bytes: 96,
                src: Buffer::Arena { offset: 0 },
                dst: Buffer::Output(0),
            },
        ],
    );
    check_jit(&p, 0.0, 0.0, "transpose + in place + copy");
}

#[test]
fn softmax_and_reduce_rows_and_columns() {
    for &(outer, len, inner) in &[(3, 10, 1), (2, 7, 9), (1, 1, 1), (2, 3, 4), (4, 33, 1)] {
        let total = outer * len * inner;
        let p = program(
            vec![io("x", &[total])],
            vec![
                io("s", &[total]),
                io("sum", &[outer * inner]),
                io("mean", &[outer * inner]),
                io("max", &[outer * inner]),
            ],
            vec![],
            0,
            vec![
                Kernel::Softmax {
                    outer,
                    len,
                    inner,
                    input: Buffer::Input(0),
                    output: Buffer::Output(0),
                    scale: 1.0,
                    mask: None,
                },
                Kernel::Reduce {
                    op: ReduceOp::Sum,
                    outer,
                    len,
                    inner,
                    input: Buffer::Input(0),
                    output: Buffer::Output(1),
                },
                Kernel::Reduce {
                    op: ReduceOp::Mean,
                    outer,
                    len,
                    inner,
                    input: Buffer::Input(0),
                    output: Buffer::Output(2),
                },
                Kernel::Reduce {
                    op: ReduceOp::Max,
                    outer,
                    len,
                    inner,
                    input: Buffer::Input(0),
                    output: Buffer::Output(3),
                },
            ],
        );
        // Sums are reassociated across 4 lanes: atol ~ len·eps.
        check_jit(
            &p,
            1e-6 * (1 + len) as f32,
            2e-6,
            &format!("softmax/reduce {outer}x{len}x{inner}"),
        );
    }
}

#[test]
fn copy_odd_byte_counts() {
    for bytes in [1u64, 3, 15, 16, 17, 31, 100] {
        let n = bytes.div_ceil(4);
        let p = program(
            vec![io("x", &[n])],
            vec![io("y", &[n])],
            vec![],
            0,
            vec![Kernel::Copy {
                bytes,
                src: Buffer::Input(0),
                dst: Buffer::Output(0),
            }],
        );
        check_jit(&p, 0.0, 0.0, &format!("copy {bytes}"));
    }
}

#[test]
fn malformed_program_is_an_error_not_a_crash() {
    let p = program(
        vec![io("x", &[4])],
        vec![io("y", &[4])],
        vec![],
        0,
        vec![Kernel::Elementwise {
            shape: vec![5],
            inputs: vec![view(Buffer::Input(0), 0, &[1])],
            expr: vec![ExprNode::Input(0)],
            output: view(Buffer::Output(0), 0, &[1]),
        }],
    );
    let e = edgecc_cranelift::compile_jit(&p).err().expect("must fail");
    assert!(e.to_string().contains("input 0"), "{e}");
}

/// A scaled or masked softmax is refused, not miscompiled, when its mask view leaves the
/// buffer, when it is not over the last axis, or when the mask dims do not cover `outer`.
#[test]
fn malformed_softmax_mask_is_an_error() {
    let softmax = |inner: u64, dims: Vec<u64>, strides: &[i64]| {
        program(
            vec![io("x", &[2, 3, 4]), io("m", &[3, 4])],
            vec![io("y", &[2, 3, 4])],
            vec![],
            0,
            vec![Kernel::Softmax {
                outer: 6 / inner,
                len: 4,
                inner,
                input: Buffer::Input(0),
                output: Buffer::Output(0),
                scale: 0.5,
                mask: Some(edgecc_program::SoftmaxMask {
                    outer: dims,
                    view: view(Buffer::Input(1), 0, strides),
                }),
            }],
        )
    };
    // The well-formed one compiles: [2,3] outer dims, the mask shared over the first.
    edgecc_cranelift::compile_jit(&softmax(1, vec![2, 3], &[0, 4, 1, 0])).expect("valid");
    for (p, want) in [
        (softmax(1, vec![2, 3], &[12, 4, 1, 0]), "mask"),
        (softmax(2, vec![3], &[4, 1, 0]), "last axis"),
        (softmax(1, vec![2, 2], &[0, 4, 1, 0]), "multiply"),
        (softmax(1, vec![2, 3], &[0, 2, 2, 0]), "not 0 or 1"),
    ] {
        let e = edgecc_cranelift::compile_jit(&p).err().expect("must fail");
        assert!(e.to_string().contains(want), "{e}");
    }
}

/// A layer norm is refused, not miscompiled, when its scale leaves the buffer or is
/// strided other than 0 or 1, when a statistics buffer is too short, or when it would
/// write an input.
#[test]
fn malformed_layer_norm_is_an_error() {
    let ln = |scale: &[i64], scale_len: u64, mean_len: u64, output: Buffer| {
        program(
            vec![io("x", &[2, 4]), io("s", &[scale_len])],
            vec![io("y", &[2, 4]), io("m", &[mean_len])],
            vec![],
            0,
            vec![Kernel::LayerNorm {
                outer: 2,
                len: 4,
                epsilon: 1e-5,
                input: Buffer::Input(0),
                scale: Some(view(Buffer::Input(1), 0, scale)),
                bias: None,
                output,
                mean: Some(Buffer::Output(1)),
                inv_std: None,
            }],
        )
    };
    edgecc_cranelift::compile_jit(&ln(&[1], 4, 2, Buffer::Output(0))).expect("valid");
    edgecc_cranelift::compile_jit(&ln(&[0], 1, 2, Buffer::Output(0))).expect("valid");
    for (p, want) in [
        (ln(&[1], 3, 2, Buffer::Output(0)), "scale"),
        (ln(&[2], 8, 2, Buffer::Output(0)), "not 0 or 1"),
        (ln(&[1, 0], 4, 2, Buffer::Output(0)), "strides"),
        (ln(&[1], 4, 1, Buffer::Output(0)), "Output(1)"),
        (ln(&[1], 4, 2, Buffer::Input(0)), "read-only"),
    ] {
        let e = edgecc_cranelift::compile_jit(&p).err().expect("must fail");
        assert!(e.to_string().contains(want), "{e}");
    }
}
