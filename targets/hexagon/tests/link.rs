//! The object clang-19 makes of the emitted C needs nothing from outside: a program using
//! every kernel of the contract and every op, activation, reduction, comparison, dtype
//! conversion and element size, emitted with and without HVX and compiled for v66, v67,
//! v68 and v73 at -O2 (and -O3, -O0 on some), has no undefined symbol (`llvm-nm-19 -u` prints
//! nothing): no libm (`expf`, `sqrtf`, `fmaf`), no compiler-rt (`__hexagon_divsi3`,
//! `__hexagon_divsf3`, `__hexagon_umoddi3`, ...), no libc (`memcpy`, `memset`).
//! (Not -Os: optimizing for size, clang itself calls compiler-rt's `__hexagon_divsf3`
//! for a float division and the `__save_r16_through_*` prologue helpers.)

mod common;

use std::process::Command;

use common::*;
use edgecc_hexagon::{Hvx, Options};
use edgecc_program::{
    Activation, BinaryOp, Buffer, CmpOp, DType, ExprNode, IntOp, Kernel, LogicOp, PoolKind,
    QBinary, QBinaryOp, QuantOut, ReduceOp, SoftmaxMask, Spatial, UnaryOp, View, Window, ZeroPoint,
};

/// Every kernel kind, by name: a new variant of [`Kernel`] does not compile here until
/// this test covers it.
fn kind(k: &Kernel) -> &'static str {
    match k {
        Kernel::Gemm { .. } => "gemm",
        Kernel::Conv { .. } => "conv",
        Kernel::QGemm { .. } => "qgemm",
        Kernel::QConv { .. } => "qconv",
        Kernel::Pool { .. } => "pool",
        Kernel::Elementwise { .. } => "elementwise",
        Kernel::Softmax { .. } => "softmax",
        Kernel::LayerNorm { .. } => "layer_norm",
        Kernel::Reduce { .. } => "reduce",
        Kernel::Copy { .. } => "copy",
        Kernel::Gather { .. } => "gather",
        Kernel::Convert { .. } => "convert",
        Kernel::Compare { .. } => "compare",
        Kernel::Logic { .. } => "logic",
        Kernel::Select { .. } => "select",
        Kernel::IntElementwise { .. } => "int_elementwise",
        Kernel::QBinary { .. } => "qbinary",
        Kernel::CumSum { .. } => "cumsum",
    }
}
const KINDS: usize = 18;

/// Every unary op (a new one does not compile here until listed).
fn unary_ops() -> Vec<UnaryOp> {
    let all = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Relu,
        UnaryOp::Exp,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Erf,
        UnaryOp::Log,
        UnaryOp::Round,
    ];
    for op in all {
        match op {
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Relu
            | UnaryOp::Exp
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Sqrt
            | UnaryOp::Reciprocal
            | UnaryOp::Erf
            | UnaryOp::Log
            | UnaryOp::Round => {}
        }
    }
    all.to_vec()
}

fn binary_ops() -> Vec<BinaryOp> {
    let all = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ];
    for op in all {
        match op {
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Max
            | BinaryOp::Min
            | BinaryOp::Pow => {}
        }
    }
    all.to_vec()
}

fn activations() -> Vec<Activation> {
    let all = [
        Activation::None,
        Activation::Relu,
        Activation::Clip { lo: 0.0, hi: 6.0 },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu { tanh: false },
        Activation::Gelu { tanh: true },
        Activation::HardSwish,
    ];
    for a in all {
        match a {
            Activation::None
            | Activation::Relu
            | Activation::Clip { .. }
            | Activation::Sigmoid
            | Activation::Tanh
            | Activation::Gelu { .. }
            | Activation::HardSwish => {}
        }
    }
    all.to_vec()
}

const DTYPES: [DType; 6] = [
    DType::F32,
    DType::U8,
    DType::I8,
    DType::I32,
    DType::I64,
    DType::Bool,
];

fn v(buf: Buffer, strides: &[i64]) -> View {
    View {
        buf,
        offset: 0,
        strides: strides.to_vec(),
    }
}

fn window3() -> Window {
    Window {
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 1,
        pad_left: 1,
        pad_bottom: 1,
        pad_right: 1,
    }
}

/// One program with every kernel and op; every buffer is a 64-element slot of the arena
/// (the test only compiles it).
fn everything() -> Builder {
    let mut b = Builder::new();
    let x = b.input(DType::F32, vec![0; 4 * 64]);
    let y = b.output(DType::F32, 64);
    let a = |i: u64| Buffer::Arena { offset: 512 * i };
    b.p.arena_size = 512 * 8;
    let w = b.konst(DType::F32, vec![0; 4 * 64]);
    let wq = b.konst(DType::I8, vec![1; 64]);
    let sp = Spatial {
        n: 1,
        in_h: 4,
        in_w: 4,
        out_h: 4,
        out_w: 4,
    };
    for act in activations() {
        b.p.kernels.push(Kernel::Gemm {
            batch: 2,
            m: 5,
            n: 6,
            k: 3,
            a: v(x, &[15, 3, 1]),
            b: v(Buffer::Const(w), &[0, 1, 3]),
            alpha: 0.5,
            bias: Some(v(Buffer::Const(w), &[0, 0, 1])),
            residual: Some(v(a(1), &[30, 6, 1])),
            act,
            c: v(a(0), &[30, 6, 1]),
        });
        b.p.kernels.push(Kernel::Conv {
            c_in: 2,
            c_out: 2,
            groups: 1,
            spatial: sp,
            window: window3(),
            input: x,
            weight: w,
            bias: Some(w),
            residual: Some(a(1)),
            act,
            output: a(0),
            scratch: None,
        });
    }
    for dt in [DType::U8, DType::I8] {
        b.p.kernels.push(Kernel::QGemm {
            m: 5,
            n: 40,
            k: 1,
            a: v(a(2), &[1, 1]),
            a_dtype: dt,
            a_zero: ZeroPoint::Runtime(a(3)),
            b: wq,
            bias: None,
            out: QuantOut::I32,
            c: v(a(0), &[40, 1]),
        });
        b.p.kernels.push(Kernel::QConv {
            c_in: 2,
            c_out: 2,
            groups: 2,
            spatial: sp,
            window: window3(),
            input: a(2),
            in_dtype: dt,
            in_zero: ZeroPoint::Const(3),
            weight: wq,
            bias: None,
            out: QuantOut::Requant(edgecc_program::Requant {
                dtype: dt,
                multiplier: vec![1 << 30],
                shift: 31,
                zero_point: 0,
                lo: -128,
                hi: 127,
            }),
            output: a(0),
            scratch: None,
        });
    }
    for (op, (da, db)) in [
        QBinaryOp::Add {
            ma: 300 << 15,
            mb: -7 << 15,
        },
        QBinaryOp::Mul { m: 12345 << 12 },
    ]
    .into_iter()
    .zip([(DType::U8, DType::I8), (DType::I8, DType::U8)])
    {
        b.p.kernels.push(Kernel::QBinary {
            shape: vec![4, 40],
            a: v(a(1), &[40, 1]),
            a_dtype: da,
            b: v(a(2), &[0, 1]),
            b_dtype: db,
            q: QBinary {
                op,
                a_zero: 3,
                b_zero: 2,
                shift: 27,
                dtype: da,
                zero_point: 5,
                lo: 0,
                hi: 100,
            },
            output: v(a(0), &[40, 1]),
        });
    }
    for (kind, dtype) in [
        (PoolKind::Max, DType::F32),
        (
            PoolKind::Avg {
                count_include_pad: true,
            },
            DType::F32,
        ),
        (
            PoolKind::Avg {
                count_include_pad: false,
            },
            DType::F32,
        ),
        (PoolKind::Max, DType::U8),
        (PoolKind::Max, DType::I8),
    ] {
        b.p.kernels.push(Kernel::Pool {
            kind,
            dtype,
            channels: 2,
            spatial: sp,
            window: window3(),
            input: a(2),
            output: a(0),
        });
    }
    let mut expr = vec![
        ExprNode::Input(0),
        ExprNode::Input(1),
        ExprNode::Const(2.0),
        ExprNode::Binary(BinaryOp::Add, 0, 2),
    ];
    for op in unary_ops() {
        expr.push(ExprNode::Unary(op, expr.len() as u32 - 1));
    }
    for op in binary_ops() {
        expr.push(ExprNode::Binary(op, expr.len() as u32 - 1, 1));
    }
    expr.push(ExprNode::Clip {
        x: expr.len() as u32 - 1,
        lo: -1.0,
        hi: 1.0,
    });
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![4, 16],
        inputs: vec![v(x, &[16, 1]), v(a(1), &[0, 1])],
        expr,
        output: v(y, &[16, 1]),
    });
    b.p.kernels.push(Kernel::Softmax {
        outer: 4,
        len: 16,
        inner: 1,
        input: x,
        output: a(0),
        scale: 0.125,
        mask: Some(SoftmaxMask {
            outer: vec![2, 2],
            view: v(a(1), &[16, 0, 1, 0]),
        }),
    });
    b.p.kernels.push(Kernel::LayerNorm {
        outer: 4,
        len: 16,
        epsilon: 1e-5,
        input: x,
        scale: Some(v(Buffer::Const(w), &[1])),
        bias: Some(v(a(1), &[0])),
        output: a(0),
        mean: Some(a(2)),
        inv_std: Some(a(3)),
    });
    for op in [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Prod,
    ] {
        for inner in [1, 4] {
            b.p.kernels.push(Kernel::Reduce {
                op,
                outer: 2,
                len: 8,
                inner,
                input: x,
                output: a(0),
            });
        }
    }
    b.p.kernels.push(Kernel::Copy {
        bytes: 256,
        src: x,
        dst: a(0),
    });
    for (index_bytes, elementwise) in [(1, false), (4, true), (8, false)] {
        b.p.kernels.push(Kernel::Gather {
            outer: 2,
            axis_len: 4,
            inner: 3,
            count: 2,
            elem_bytes: 8,
            data: x,
            indices: a(1),
            index_bytes,
            output: a(0),
            elementwise,
        });
    }
    for from in DTYPES {
        for to in DTYPES {
            b.p.kernels.push(Kernel::Convert {
                count: 16,
                from,
                to,
                input: a(1),
                output: a(0),
            });
        }
    }
    for dtype in DTYPES {
        for op in [
            CmpOp::Equal,
            CmpOp::Less,
            CmpOp::LessOrEqual,
            CmpOp::Greater,
            CmpOp::GreaterOrEqual,
        ] {
            b.p.kernels.push(Kernel::Compare {
                shape: vec![4, 4],
                op,
                dtype,
                a: v(a(1), &[4, 1]),
                b: v(a(2), &[0, 1]),
                output: v(a(0), &[4, 1]),
            });
        }
    }
    for op in [LogicOp::And, LogicOp::Or, LogicOp::Xor, LogicOp::Not] {
        b.p.kernels.push(Kernel::Logic {
            shape: vec![8],
            op,
            a: v(a(1), &[1]),
            b: (op != LogicOp::Not).then(|| v(a(2), &[1])),
            output: v(a(0), &[1]),
        });
    }
    for elem_bytes in [1, 4, 8] {
        b.p.kernels.push(Kernel::Select {
            shape: vec![3, 4],
            elem_bytes,
            cond: v(a(3), &[0, 1]),
            a: v(a(1), &[4, 1]),
            b: v(a(2), &[1, 0]),
            output: v(a(0), &[4, 1]),
        });
    }
    for dtype in [DType::I32, DType::I64] {
        for op in [
            IntOp::Add,
            IntOp::Sub,
            IntOp::Mul,
            IntOp::Max,
            IntOp::Min,
            IntOp::Neg,
            IntOp::Abs,
        ] {
            b.p.kernels.push(Kernel::IntElementwise {
                shape: vec![8],
                dtype,
                op,
                a: v(a(1), &[1]),
                b: op.is_binary().then(|| v(a(2), &[1])),
                output: v(a(0), &[1]),
            });
        }
        for (exclusive, reverse) in [(false, false), (true, true)] {
            b.p.kernels.push(Kernel::CumSum {
                outer: 2,
                len: 4,
                inner: 2,
                dtype,
                exclusive,
                reverse,
                input: a(1),
                output: a(0),
            });
        }
    }
    b.p.kernels.push(Kernel::CumSum {
        outer: 2,
        len: 4,
        inner: 1,
        dtype: DType::F32,
        exclusive: true,
        reverse: false,
        input: a(1),
        output: a(0),
    });
    b
}

#[test]
fn every_kernel_and_op_compiles_to_an_object_without_undefined_symbols() {
    let b = everything();
    let mut kinds: Vec<&str> = b.p.kernels.iter().map(kind).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        KINDS,
        "every kernel kind is in the program: {kinds:?}"
    );
    let dir = std::env::temp_dir().join(format!("edgecc-hexagon-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (hvx, tag) in [(Hvx::B128, "hvx"), (Hvx::Off, "plain")] {
        let c = edgecc_hexagon::emit_c(&b.p, &Options { hvx }).expect("emit_c");
        let file = format!("{tag}.c");
        std::fs::write(dir.join(&file), &c).unwrap();
        // -O2 (what the docs say) for every core, -O3 and -O0 on one each.
        let (o3, o0) = if hvx == Hvx::Off {
            ("v66", "v67")
        } else {
            ("v73", "v68")
        };
        let configs = ["v66", "v67", "v68", "v73"]
            .map(|cpu| (cpu, "-O2"))
            .into_iter()
            .chain([(o3, "-O3"), (o0, "-O0")]);
        std::thread::scope(|scope| {
            for (cpu, opt) in configs {
                let (dir, file) = (&dir, &file);
                scope.spawn(move || {
                    let obj = format!("{tag}-{cpu}{opt}.o");
                    compile(dir, cpu, hvx, &[opt, "-c", file, "-o", &obj]);
                    let out = Command::new("llvm-nm-19")
                        .arg("-u")
                        .arg(dir.join(&obj))
                        .output()
                        .unwrap_or_else(|e| {
                            panic!("llvm-nm-19 not runnable ({e}); apt-get install llvm-19")
                        });
                    assert!(out.status.success(), "llvm-nm-19 failed: {out:?}");
                    let undefined = String::from_utf8_lossy(&out.stdout);
                    assert!(
                        undefined.trim().is_empty(),
                        "{tag} -m{cpu} {opt}: undefined symbols\n{undefined}"
                    );
                });
            }
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}
