//! The emitted C against the scalar executor of the lowered program, under qemu-hexagon.
//!
//! Each test builds one program of several kernels (each writing its own output), emits C
//! with and without HVX, links it with a freestanding harness (inputs compiled in, outputs
//! written to stdout) and compares the bytes with [`edgecc_program::exec::run`].

mod common;

use common::*;
use std::path::Path;

use edgecc_program::{
    BinaryOp, Buffer, DType, ExprNode, Kernel, PoolKind, QuantOut, Requant, Spatial, UnaryOp, View,
    ZeroPoint,
};

#[test]
fn qgemm_programs_match_the_executor() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut b = Builder::new();
    let cases = [
        (3u32, 5u32, 7u32, DType::U8, DType::U8, false, false),
        (1, 17, 33, DType::I8, DType::I8, true, true),
        (5, 9, 13, DType::U8, DType::I8, true, false),
        (4, 6, 11, DType::I8, DType::U8, false, true),
        // Column blocks of 32 with tails, four-row blocks with a row tail, k a multiple
        // of 4 (no tail word) and k with one.
        (9, 70, 64, DType::U8, DType::U8, true, false),
        (8, 33, 12, DType::I8, DType::I8, false, true),
        (2, 3, 19, DType::U8, DType::I8, false, false),
    ];
    for (ci, &(m, n, k, adt, odt, per_channel, relu)) in cases.iter().enumerate() {
        let a = b.input(adt, rng.bytes((m * k) as usize));
        let w = b.konst(DType::I8, rng.bytes((k * n) as usize));
        let bias =
            (ci % 2 == 0).then(|| b.konst(DType::I32, i32_bytes(&mut rng, n as usize, 5000)));
        // The last case stores raw i32 accumulators (MatMulInteger).
        let out = if ci == cases.len() - 1 {
            QuantOut::I32
        } else {
            QuantOut::Requant(requant(&mut rng, odt, n, per_channel, relu))
        };
        let c = b.output(out.dtype(), (m * n) as u64);
        b.p.kernels.push(Kernel::QGemm {
            m,
            n,
            k,
            a: View {
                buf: a,
                offset: 0,
                strides: vec![k as i64, 1],
            },
            a_dtype: adt,
            a_zero: ZeroPoint::Const(if adt == DType::U8 {
                128 + ci as i32
            } else {
                -3
            }),
            b: w,
            bias,
            out,
            c: View {
                buf: c,
                offset: 0,
                strides: vec![n as i64, 1],
            },
        });
    }
    // A transposed output view and a run-time zero point.
    let (m, n, k) = (3u32, 4u32, 9u32);
    let a = b.input(DType::U8, rng.bytes((m * k) as usize));
    let zp = b.input(DType::U8, vec![77]);
    let w = b.konst(DType::I8, rng.bytes((k * n) as usize));
    let r = requant(&mut rng, DType::U8, n, true, false);
    let c = b.output(DType::U8, (m * n) as u64);
    b.p.kernels.push(Kernel::QGemm {
        m,
        n,
        k,
        a: View {
            buf: a,
            offset: 0,
            strides: vec![k as i64, 1],
        },
        a_dtype: DType::U8,
        a_zero: ZeroPoint::Runtime(zp),
        b: w,
        bias: None,
        out: QuantOut::Requant(r),
        c: View {
            buf: c,
            offset: 0,
            strides: vec![1, m as i64],
        },
    });
    // A read from the arena (word-aligned rows: the aligned load path) with a row stride
    // wider than k, an i8 run-time zero point, 37 columns.
    let (m, n, k, row) = (6u32, 37u32, 20u32, 24u32);
    let src = b.input(DType::I8, rng.bytes((m * row) as usize));
    let staged = b.arena((m * row) as u64 + 64);
    let Buffer::Arena { offset } = staged else {
        unreachable!()
    };
    b.p.kernels.push(Kernel::Copy {
        bytes: (m * row) as u64,
        src,
        dst: Buffer::Arena {
            offset: offset + 64,
        },
    });
    let zp = b.input(DType::I8, vec![0xfa]);
    let w = b.konst(DType::I8, rng.bytes((k * n) as usize));
    let bias = b.konst(DType::I32, i32_bytes(&mut rng, n as usize, 9000));
    let r = requant(&mut rng, DType::I8, n, false, true);
    let c = b.output(DType::I8, (m * n) as u64);
    b.p.kernels.push(Kernel::QGemm {
        m,
        n,
        k,
        a: View {
            buf: staged,
            offset: 64,
            strides: vec![row as i64, 1],
        },
        a_dtype: DType::I8,
        a_zero: ZeroPoint::Runtime(zp),
        b: w,
        bias: Some(bias),
        out: QuantOut::Requant(r),
        c: View {
            buf: c,
            offset: 0,
            strides: vec![n as i64, 1],
        },
    });
    // A small shift: acc · m / 2^s overflows int32 and must saturate before the clamp
    // (both signs, since the zero point 128 spreads the accumulators around 0).
    let (m, n, k) = (5u32, 40u32, 16u32);
    let a = b.input(DType::U8, rng.bytes((m * k) as usize));
    let w = b.konst(DType::I8, rng.bytes((k * n) as usize));
    let c = b.output(DType::U8, (m * n) as u64);
    b.p.kernels.push(Kernel::QGemm {
        m,
        n,
        k,
        a: View {
            buf: a,
            offset: 0,
            strides: vec![k as i64, 1],
        },
        a_dtype: DType::U8,
        a_zero: ZeroPoint::Const(128),
        b: w,
        bias: None,
        out: QuantOut::Requant(Requant {
            dtype: DType::U8,
            multiplier: vec![(1 << 30) + 12345],
            shift: 3,
            zero_point: 7,
            lo: 0,
            hi: 255,
        }),
        c: View {
            buf: c,
            offset: 0,
            strides: vec![n as i64, 1],
        },
    });
    // Exact ties (acc / 2 for odd acc) round toward +inf: multiplier 2^30, shift 31.
    let (m, n, k) = (4u32, 5u32, 3u32);
    let small = |rng: &mut Rng, n: u32| -> Vec<u8> {
        (0..n).map(|_| rng.range(-5, 5) as i8 as u8).collect()
    };
    let a = b.input(DType::I8, small(&mut rng, m * k));
    let w = b.konst(DType::I8, small(&mut rng, k * n));
    let c = b.output(DType::I8, (m * n) as u64);
    b.p.kernels.push(Kernel::QGemm {
        m,
        n,
        k,
        a: View {
            buf: a,
            offset: 0,
            strides: vec![k as i64, 1],
        },
        a_dtype: DType::I8,
        a_zero: ZeroPoint::Const(1),
        b: w,
        bias: None,
        out: QuantOut::Requant(Requant {
            dtype: DType::I8,
            multiplier: vec![1 << 30],
            shift: 31,
            zero_point: 0,
            lo: -128,
            hi: 127,
        }),
        c: View {
            buf: c,
            offset: 0,
            strides: vec![n as i64, 1],
        },
    });
    let (got, want) = run_both(&b, "qgemm");
    assert_same(&b.p, &got, &want);
    assert!(
        want.iter().flatten().any(|&x| x != 0),
        "outputs are not all zero"
    );
}

#[test]
fn qconv_programs_match_the_executor() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut b = Builder::new();
    // (n, c_in, c_out, groups, in_h, in_w, window, in dtype, out dtype, per-channel, relu)
    let cases = [
        (
            1u32,
            3u32,
            5u32,
            1u32,
            7u32,
            6u32,
            window((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
            DType::U8,
            DType::U8,
            true,
            true,
        ),
        (
            2,
            6,
            4,
            2,
            9,
            8,
            window((3, 2), (2, 1), (1, 2), (1, 0, 2, 1)),
            DType::I8,
            DType::I8,
            false,
            false,
        ),
        (
            1,
            7,
            7,
            7,
            8,
            9,
            window((3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
            DType::U8,
            DType::I8,
            true,
            false,
        ),
        (
            1,
            5,
            3,
            1,
            4,
            5,
            window((1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
            DType::I8,
            DType::U8,
            true,
            true,
        ),
        (
            1,
            4,
            6,
            1,
            10,
            7,
            window((2, 3), (3, 2), (2, 1), (0, 2, 1, 0)),
            DType::U8,
            DType::U8,
            false,
            false,
        ),
        // Ten output channels (two blocks of four and a tail of two), 143 pixels (four
        // vectors and a tail), k = 81 (a tail word).
        (
            1,
            9,
            10,
            1,
            11,
            13,
            window((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
            DType::U8,
            DType::U8,
            true,
            false,
        ),
        // Depthwise over 12x12 (k = 9), i8.
        (
            1,
            8,
            8,
            8,
            12,
            12,
            window((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
            DType::I8,
            DType::I8,
            true,
            true,
        ),
        // Stride 1 with dilation and uneven padding (the wide-grid path).
        (
            1,
            3,
            6,
            1,
            9,
            11,
            window((3, 3), (1, 1), (2, 1), (2, 0, 1, 3)),
            DType::U8,
            DType::I8,
            true,
            false,
        ),
        // A 40x40 input too large for one band: several bands of output rows.
        (
            1,
            16,
            5,
            1,
            40,
            40,
            window((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
            DType::I8,
            DType::U8,
            false,
            true,
        ),
        // k = 540: past the HVX kernel's im2col block, so the plain-C kernel runs.
        (
            1,
            60,
            3,
            1,
            5,
            5,
            window((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
            DType::U8,
            DType::U8,
            false,
            false,
        ),
    ];
    for (ci, &(n, c_in, c_out, groups, in_h, in_w, w, idt, odt, pc, relu)) in
        cases.iter().enumerate()
    {
        let out_h = out_size(
            in_h,
            w.kh,
            w.stride_h,
            w.dilation_h,
            w.pad_top,
            w.pad_bottom,
        );
        let out_w = out_size(
            in_w,
            w.kw,
            w.stride_w,
            w.dilation_w,
            w.pad_left,
            w.pad_right,
        );
        let input = b.input(idt, rng.bytes((n * c_in * in_h * in_w) as usize));
        let wt = b.konst(
            DType::I8,
            rng.bytes((c_out * (c_in / groups) * w.kh * w.kw) as usize),
        );
        let bias =
            (ci != 1).then(|| b.konst(DType::I32, i32_bytes(&mut rng, c_out as usize, 3000)));
        let out = QuantOut::Requant(requant(&mut rng, odt, c_out, pc, relu));
        let output = b.output(odt, (n * c_out * out_h * out_w) as u64);
        let spatial = Spatial {
            n,
            in_h,
            in_w,
            out_h,
            out_w,
        };
        let sb = Kernel::qconv_scratch_bytes(c_in, c_out, groups, &spatial, &w);
        let scratch = (sb > 0).then(|| b.arena(sb));
        b.p.kernels.push(Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial,
            window: w,
            input,
            in_dtype: idt,
            in_zero: ZeroPoint::Const(if idt == DType::U8 { 120 + ci as i32 } else { 5 }),
            weight: wt,
            bias,
            out,
            output,
            scratch,
        });
    }
    // Run-time zero points (DynamicQuantizeLinear), i8 and u8, one storing int32.
    for (idt, zp, out) in [
        (DType::I8, 0xf3u8, QuantOut::I32),
        (
            DType::U8,
            141,
            QuantOut::Requant(requant(&mut rng, DType::U8, 6, true, false)),
        ),
    ] {
        let (c_in, c_out, h, w) = (5u32, 6u32, 6u32, 7u32);
        let win = window((3, 3), (1, 2), (1, 1), (1, 1, 1, 1));
        let (out_h, out_w) = (out_size(h, 3, 1, 1, 1, 1), out_size(w, 3, 2, 1, 1, 1));
        let input = b.input(idt, rng.bytes((c_in * h * w) as usize));
        let zero = b.input(idt, vec![zp]);
        let wt = b.konst(DType::I8, rng.bytes((c_out * c_in * 9) as usize));
        let output = b.output(out.dtype(), (c_out * out_h * out_w) as u64);
        let spatial = Spatial {
            n: 1,
            in_h: h,
            in_w: w,
            out_h,
            out_w,
        };
        let sb = Kernel::qconv_scratch_bytes(c_in, c_out, 1, &spatial, &win);
        let scratch = (sb > 0).then(|| b.arena(sb));
        b.p.kernels.push(Kernel::QConv {
            c_in,
            c_out,
            groups: 1,
            spatial,
            window: win,
            input,
            in_dtype: idt,
            in_zero: ZeroPoint::Runtime(zero),
            weight: wt,
            bias: None,
            out,
            output,
            scratch,
        });
    }
    let (got, want) = run_both(&b, "qconv");
    assert_same(&b.p, &got, &want);
    assert!(
        want.iter().flatten().any(|&x| x != 0),
        "outputs are not all zero"
    );
}

/// u8 max pooling, a quantize/dequantize pair (Elementwise + Convert), a byte-table
/// Gather, a Select move and a Copy through the arena, in one run.
#[test]
fn pool_quantize_gather_select_match_the_executor() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut b = Builder::new();
    // 8-bit max pools: 3x3 stride 2 pad 1 (u8, i8); 2x2 stride 2; dilation with uneven
    // padding; ceil-mode output (the last windows reach past the input); padding wider
    // than the window (windows with no input give the minimum); a 100x100 plane, past the
    // HVX kernel's stack band (the plain-C kernel).
    let cases = [
        (
            DType::U8,
            (3, 3),
            (2, 2),
            (1, 1),
            (1, 1, 1, 1),
            (9, 7),
            None,
        ),
        (
            DType::I8,
            (3, 3),
            (2, 2),
            (1, 1),
            (1, 1, 1, 1),
            (9, 7),
            None,
        ),
        (
            DType::U8,
            (2, 2),
            (2, 2),
            (1, 1),
            (0, 0, 0, 0),
            (8, 8),
            None,
        ),
        (
            DType::I8,
            (3, 3),
            (1, 1),
            (2, 1),
            (2, 0, 1, 1),
            (11, 13),
            None,
        ),
        (
            DType::U8,
            (2, 2),
            (2, 2),
            (1, 1),
            (0, 0, 0, 0),
            (7, 7),
            Some((4, 4)),
        ),
        (
            DType::I8,
            (2, 2),
            (1, 1),
            (1, 1),
            (2, 2, 2, 2),
            (3, 4),
            None,
        ),
        (
            DType::U8,
            (3, 3),
            (2, 2),
            (1, 1),
            (1, 1, 1, 1),
            (100, 100),
            None,
        ),
    ];
    for (dt, k, st, d, pad, (ih, iw), ceil) in cases {
        let w = window(k, st, d, pad);
        let (oh, ow) = ceil.unwrap_or((
            out_size(ih, k.0, st.0, d.0, pad.0, pad.2),
            out_size(iw, k.1, st.1, d.1, pad.1, pad.3),
        ));
        let input = b.input(dt, rng.bytes(3 * (ih * iw) as usize));
        let output = b.output(dt, 3 * (oh * ow) as u64);
        b.p.kernels.push(Kernel::Pool {
            kind: PoolKind::Max,
            dtype: dt,
            channels: 3,
            spatial: Spatial {
                n: 1,
                in_h: ih,
                in_w: iw,
                out_h: oh,
                out_w: ow,
            },
            window: w,
            input,
            output,
        });
    }
    // f32 max and both averages, with a window hanging over the padding and NaN inputs.
    for kind in [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: true,
        },
        PoolKind::Avg {
            count_include_pad: false,
        },
    ] {
        let w = window((3, 2), (2, 1), (1, 2), (2, 1, 1, 1));
        let (ih, iw) = (6, 5);
        let (oh, ow) = (out_size(ih, 3, 2, 1, 2, 1), out_size(iw, 2, 1, 2, 1, 1));
        let vals: Vec<u8> = (0..2 * ih * iw)
            .flat_map(|i| {
                let v = if i == 7 {
                    f32::NAN
                } else {
                    rng.range(-1000, 1000) as f32 * 0.013
                };
                v.to_le_bytes()
            })
            .collect();
        let input = b.input(DType::F32, vals);
        let output = b.output(DType::F32, 2 * (oh * ow) as u64);
        b.p.kernels.push(Kernel::Pool {
            kind,
            dtype: DType::F32,
            channels: 2,
            spatial: Spatial {
                n: 1,
                in_h: ih,
                in_w: iw,
                out_h: oh,
                out_w: ow,
            },
            window: w,
            input,
            output,
        });
    }
    // Quantize: q = convert(clip(round(x / s) + zp, 0, 255)), then dequantize (q - zp) * s.
    let xs: Vec<f32> = (0..37)
        .map(|i| (i as f32 - 18.0) * 0.37 + if i % 5 == 0 { 0.5 * 0.1 } else { 0.0 })
        .chain([0.25, -0.25, 0.75, 1e9, -1e9, f32::NAN, -0.0, 2.5 * 0.1])
        .collect();
    let n = xs.len() as u64;
    let x = b.input(
        DType::F32,
        xs.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let t = b.arena(n * 4);
    let dense = |buf| View {
        buf,
        offset: 0,
        strides: vec![1],
    };
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![n],
        inputs: vec![dense(x)],
        expr: vec![
            ExprNode::Input(0),
            ExprNode::Const(0.1),
            ExprNode::Binary(BinaryOp::Div, 0, 1),
            ExprNode::Unary(UnaryOp::Round, 2),
            ExprNode::Const(3.0),
            ExprNode::Binary(BinaryOp::Add, 3, 4),
            ExprNode::Clip {
                x: 5,
                lo: 0.0,
                hi: 255.0,
            },
        ],
        output: dense(t),
    });
    let q = b.output(DType::U8, n);
    b.p.kernels.push(Kernel::Convert {
        count: n,
        from: DType::F32,
        to: DType::U8,
        input: t,
        output: q,
    });
    let qf = b.arena(n * 4);
    b.p.kernels.push(Kernel::Convert {
        count: n,
        from: DType::U8,
        to: DType::F32,
        input: q,
        output: qf,
    });
    let deq = b.output(DType::F32, n);
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![n],
        inputs: vec![dense(qf)],
        expr: vec![
            ExprNode::Input(0),
            ExprNode::Const(3.0),
            ExprNode::Binary(BinaryOp::Sub, 0, 1),
            ExprNode::Const(0.1),
            ExprNode::Binary(BinaryOp::Mul, 2, 3),
            ExprNode::Unary(UnaryOp::Neg, 4),
            ExprNode::Unary(UnaryOp::Abs, 5),
            ExprNode::Const(-1.0),
            ExprNode::Binary(BinaryOp::Max, 6, 7),
            ExprNode::Binary(BinaryOp::Min, 8, 0),
            ExprNode::Unary(UnaryOp::Relu, 9),
        ],
        output: dense(deq),
    });
    // f32 -> i8 and f32 -> i32 saturating conversions of the raw inputs (NaN, ±1e9).
    let i8o = b.output(DType::I8, n);
    b.p.kernels.push(Kernel::Convert {
        count: n,
        from: DType::F32,
        to: DType::I8,
        input: x,
        output: i8o,
    });
    let i32o = b.output(DType::I32, n);
    b.p.kernels.push(Kernel::Convert {
        count: n,
        from: DType::F32,
        to: DType::I32,
        input: x,
        output: i32o,
    });
    // Every Convert pair over values at the edges of each type.
    let raw: Vec<(DType, Vec<u8>)> = vec![
        (
            DType::F32,
            [
                0.0f32,
                -0.0,
                0.5,
                -0.99,
                255.5,
                -129.0,
                3e9,
                -3e9,
                1e19,
                -1e19,
                f32::NAN,
                f32::INFINITY,
                16777217.0,
                7.0,
            ]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        ),
        (
            DType::I64,
            [
                0i64,
                1,
                -1,
                255,
                256,
                -129,
                i64::MAX,
                i64::MIN,
                (1 << 53) + 1,
                (1 << 24) + 1,
                1 << 31,
                -(1 << 31) - 1,
                3,
                200,
            ]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        ),
        (
            DType::I32,
            [
                0i32,
                1,
                -1,
                255,
                256,
                -129,
                i32::MAX,
                i32::MIN,
                (1 << 24) + 1,
                16777219,
                65536,
                -65537,
                3,
                200,
            ]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        ),
        (
            DType::U8,
            vec![0, 1, 127, 128, 255, 200, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
        (
            DType::I8,
            vec![0, 1, 127, 128, 255, 200, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
        (
            DType::Bool,
            vec![0, 1, 2, 255, 0, 7, 0, 0, 1, 1, 0, 3, 4, 0],
        ),
    ];
    for (from, data) in &raw {
        let input = b.input(*from, data.clone());
        for to in [
            DType::F32,
            DType::I64,
            DType::I32,
            DType::U8,
            DType::I8,
            DType::Bool,
        ] {
            let output = b.output(to, 14);
            b.p.kernels.push(Kernel::Convert {
                count: 14,
                from: *from,
                to,
                input,
                output,
            });
        }
    }
    // Byte-table gathers: 256-entry tables indexed by bytes read as signed, 29 bytes
    // (only the tail loop of the HVX kernel) and 300 (two vectors and a tail) holding
    // every byte value, from an unaligned offset of the arena.
    for (n, at) in [(29u64, 0u64), (300, 3)] {
        let table = b.konst(DType::U8, rng.bytes(256));
        let mut bytes = rng.bytes(n as usize);
        for (i, x) in bytes.iter_mut().enumerate().take(256.min(n as usize)) {
            *x = (i as u8).wrapping_mul(167);
        }
        let src = b.input(DType::U8, bytes);
        let staged = b.arena(n + 64);
        let Buffer::Arena { offset } = staged else {
            unreachable!()
        };
        b.p.kernels.push(Kernel::Copy {
            bytes: n,
            src,
            dst: Buffer::Arena {
                offset: offset + at,
            },
        });
        let g = b.output(DType::U8, n);
        b.p.kernels.push(Kernel::Gather {
            outer: 1,
            axis_len: 256,
            inner: 1,
            count: n,
            elem_bytes: 1,
            data: Buffer::Const(table),
            indices: Buffer::Arena {
                offset: offset + at,
            },
            index_bytes: 1,
            output: g,
            elementwise: false,
        });
    }
    // Select as a strided byte move (transpose 3x5 -> 5x3) and a copy through the arena.
    let src = b.input(DType::U8, rng.bytes(15));
    let cond = b.konst(DType::Bool, vec![1]);
    let tr = b.arena(15);
    b.p.kernels.push(Kernel::Select {
        shape: vec![5, 3],
        elem_bytes: 1,
        cond: View {
            buf: Buffer::Const(cond),
            offset: 0,
            strides: vec![0, 0],
        },
        a: View {
            buf: src,
            offset: 0,
            strides: vec![1, 5],
        },
        b: View {
            buf: src,
            offset: 0,
            strides: vec![1, 5],
        },
        output: View {
            buf: tr,
            offset: 0,
            strides: vec![3, 1],
        },
    });
    let cp = b.output(DType::U8, 15);
    b.p.kernels.push(Kernel::Copy {
        bytes: 15,
        src: tr,
        dst: cp,
    });
    let (got, want) = run_both(&b, "misc");
    assert_same(&b.p, &got, &want);
}

/// An out-of-range index makes `run` return STATUS_INDEX_OUT_OF_RANGE.
#[test]
fn gather_out_of_range_returns_status_1() {
    let mut b = Builder::new();
    let table = b.konst(DType::F32, vec![0; 40]);
    let idx = b.input(
        DType::I32,
        [3i32, 10].iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let g = b.output(DType::F32, 2);
    b.p.kernels.push(Kernel::Gather {
        outer: 1,
        axis_len: 10,
        inner: 1,
        count: 2,
        elem_bytes: 4,
        data: Buffer::Const(table),
        indices: idx,
        index_bytes: 4,
        output: g,
        elementwise: false,
    });
    let (_, status) = run_qemu(&b, "gather-oob");
    assert_eq!(status, edgecc_program::STATUS_INDEX_OUT_OF_RANGE);
}

/// What the contract does not allow (2-byte Gather indices, average pooling of bytes,
/// integer arithmetic on f32, running sums of bytes, `Not` with two operands) is refused
/// in one error that lists every such kernel with its reason, and no other kernel.
#[test]
fn unsupported_kernels_are_listed_in_one_error() {
    let mut b = Builder::new();
    let x = b.input(DType::F32, vec![0; 16]);
    let y = b.output(DType::F32, 4);
    let dense = |buf| View {
        buf,
        offset: 0,
        strides: vec![1],
    };
    b.p.kernels.push(Kernel::Gather {
        outer: 1,
        axis_len: 4,
        inner: 1,
        count: 2,
        elem_bytes: 4,
        data: x,
        indices: x,
        index_bytes: 2,
        output: y,
        elementwise: false,
    });
    // Supported (an exponential): not listed.
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![4],
        inputs: vec![dense(x)],
        expr: vec![ExprNode::Input(0), ExprNode::Unary(UnaryOp::Exp, 0)],
        output: dense(y),
    });
    b.p.kernels.push(Kernel::Pool {
        kind: PoolKind::Avg {
            count_include_pad: false,
        },
        dtype: DType::U8,
        channels: 1,
        spatial: Spatial {
            n: 1,
            in_h: 2,
            in_w: 2,
            out_h: 1,
            out_w: 1,
        },
        window: window((2, 2), (1, 1), (1, 1), (0, 0, 0, 0)),
        input: x,
        output: y,
    });
    b.p.kernels.push(Kernel::IntElementwise {
        shape: vec![4],
        dtype: DType::F32,
        op: edgecc_program::IntOp::Add,
        a: dense(x),
        b: Some(dense(x)),
        output: dense(y),
    });
    b.p.kernels.push(Kernel::CumSum {
        outer: 1,
        len: 4,
        inner: 1,
        dtype: DType::U8,
        exclusive: false,
        reverse: false,
        input: x,
        output: y,
    });
    b.p.kernels.push(Kernel::Logic {
        shape: vec![4],
        op: edgecc_program::LogicOp::Not,
        a: dense(x),
        b: Some(dense(x)),
        output: dense(y),
    });
    let e = edgecc_hexagon::emit_c(&b.p, &edgecc_hexagon::Options::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "not supported by the hexagon target: \
         kernel 0 (gather): 2-byte indices; \
         kernel 2 (pool): Avg { count_include_pad: false } pooling of u8; \
         kernel 3 (int_elementwise): integer arithmetic on f32; \
         kernel 4 (cumsum): running sums of u8; \
         kernel 5 (logic): Not with the wrong number of operands"
    );
}

/// The example int8 CNN compiled by the pipeline, emitted as C and run under qemu-hexagon
/// gives exactly the x86_64 JIT's output (and the executor's).
#[test]
fn digits_cnn_qdq_matches_the_jit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/digits_cnn_qdq");
    let opts = edgecc::pipeline::Options {
        name: "m".into(),
        ..Default::default()
    };
    let c = edgecc::pipeline::compile(&dir.join("model.onnx"), &opts).expect("compile");
    let program = c.lowered.program;
    let x = edgecc::io::read_tensor(&dir.join("input_0.npy")).expect("input");
    let inputs = vec![x.to_le_bytes().expect("input bytes")];
    let jit = edgecc::run_target::run_jit(&program, &inputs).expect("jit");
    let kinds: Vec<&str> = program.kernels.iter().map(|k| k.name()).collect();
    assert!(
        kinds.contains(&"qconv") && kinds.contains(&"qgemm") && kinds.contains(&"pool"),
        "{kinds:?}"
    );
    let b = Builder { p: program, inputs };
    let (got, want) = run_both(&b, "digits");
    assert_eq!(got, want, "hexagon vs executor");
    assert_eq!(got, jit, "hexagon vs the x86_64 JIT");
}
