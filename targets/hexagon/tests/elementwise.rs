//! The strided elementwise kernels as plain C under qemu-hexagon, against the executor:
//! every unary and binary float op over special values (NaN, ±inf, ±0, subnormals) and
//! random ones, broadcasts (stride 0), transposed views, 1-sized dims and in place;
//! comparisons of every dtype, the boolean connectives, `Select` of every element size
//! and wrapping integer arithmetic. Everything but the transcendentals is bit for bit
//! (NaN payloads aside); exp, tanh, sigmoid, erf, log and pow are within the bounds
//! `tests/math.rs` measures, with their special values exact.

mod common;

use common::*;

use edgecc_program::{
    BinaryOp, Buffer, CmpOp, DType, ExprNode, IntOp, Kernel, LogicOp, UnaryOp, View,
};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn view(buf: Buffer, offset: u64, strides: &[i64]) -> View {
    View {
        buf,
        offset,
        strides: strides.to_vec(),
    }
}

/// Special values, then `random` more from a wide spread of magnitudes.
fn values(rng: &mut Rng, random: usize) -> Vec<f32> {
    let mut v = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -2.5,
        3.5,
        f32::MIN_POSITIVE,
        -1e-40,
        f32::from_bits(1),
        f32::MAX,
        -f32::MAX,
        88.0,
        -90.0,
        1e-3,
        8388609.0,
        -4.5,
    ];
    for _ in 0..random {
        let m = (rng.next() % 2000) as f32 / 100.0 - 10.0;
        let e = (rng.range(-12, 12)) as f32;
        v.push(m * 2f32.powf(e));
    }
    v
}

/// The bound of a transcendental at `x` with the executor's result `w`.
fn bound(op: UnaryOp, w: f32) -> f64 {
    let w = w.abs() as f64;
    match op {
        UnaryOp::Exp => 3e-7 * w + 2f64.powi(-149),
        UnaryOp::Sigmoid | UnaryOp::Log => 5e-7 * w,
        UnaryOp::Tanh | UnaryOp::Erf => 3.5e-7,
        _ => 0.0,
    }
}

#[test]
fn float_ops_match_the_executor() {
    let mut rng = Rng(0xe1e3_e47a_0001_0002);
    let mut b = Builder::new();
    let xs = values(&mut rng, 44);
    let n = xs.len() as u64;
    let x = b.input(DType::F32, f32_bytes(&xs));
    let unary = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Relu,
        UnaryOp::Round,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Exp,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Erf,
        UnaryOp::Log,
    ];
    let mut checks: Vec<(String, Option<UnaryOp>)> = vec![];
    for op in unary {
        let y = b.output(DType::F32, n);
        b.p.kernels.push(Kernel::Elementwise {
            shape: vec![n],
            inputs: vec![view(x, 0, &[1])],
            expr: vec![ExprNode::Input(0), ExprNode::Unary(op, 0)],
            output: view(y, 0, &[1]),
        });
        checks.push((format!("{op:?}"), Some(op)));
    }
    // Every binary op but Pow (tests/math.rs) on the grid of values × values: a
    // broadcast of each operand (stride 0), the output transposed.
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
    ] {
        let y = b.output(DType::F32, n * n);
        b.p.kernels.push(Kernel::Elementwise {
            shape: vec![n, n],
            inputs: vec![view(x, 0, &[1, 0]), view(x, 0, &[0, 1])],
            expr: vec![
                ExprNode::Input(0),
                ExprNode::Input(1),
                ExprNode::Binary(op, 0, 1),
            ],
            output: view(y, 0, &[1, n as i64]),
        });
        checks.push((format!("{op:?}"), None));
    }
    // Clip (NaN passes), and a chain with constants, over [2, 1, n/2] with a 1-sized dim.
    let y = b.output(DType::F32, n);
    let h = n / 2;
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![2, 1, h],
        inputs: vec![view(x, 0, &[h as i64, 7, 1])],
        expr: vec![
            ExprNode::Input(0),
            ExprNode::Clip {
                x: 0,
                lo: -1.5,
                hi: 2.0,
            },
            ExprNode::Const(3.0),
            ExprNode::Binary(BinaryOp::Mul, 1, 2),
            ExprNode::Unary(UnaryOp::Neg, 3),
            ExprNode::Binary(BinaryOp::Sub, 4, 0),
        ],
        output: view(y, 0, &[h as i64, 0, 1]),
    });
    checks.push(("clip chain".into(), None));
    // In place in the arena: x ← max(x, 0.25) · x, reading and writing the same view.
    let t = b.arena(n * 4);
    b.p.kernels.push(Kernel::Copy {
        bytes: n * 4,
        src: x,
        dst: t,
    });
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![n],
        inputs: vec![view(t, 0, &[1])],
        expr: vec![
            ExprNode::Input(0),
            ExprNode::Const(0.25),
            ExprNode::Binary(BinaryOp::Max, 0, 1),
            ExprNode::Binary(BinaryOp::Mul, 2, 0),
        ],
        output: view(t, 0, &[1]),
    });
    let y = b.output(DType::F32, n);
    b.p.kernels.push(Kernel::Copy {
        bytes: n * 4,
        src: t,
        dst: y,
    });
    checks.push(("in place".into(), None));
    let (got, want) = run_both(&b, "float-ops");
    for ((what, op), (g, w)) in checks.iter().zip(got.iter().zip(&want)) {
        let (g, w) = (f32s(g), f32s(w));
        for (i, (&gv, &wv)) in g.iter().zip(&w).enumerate() {
            let x = xs.get(i).copied().unwrap_or(f32::NAN);
            // Which zero max(-0, +0) is, IEEE leaves open (the contract's Relu compares
            // x > 0, so Relu(-0) is +0 here; the executor's f32::max gives -0).
            let zero_sign_open = matches!(what.as_str(), "Relu" | "Max" | "Min");
            if wv.is_nan() || gv.is_nan() || wv.is_infinite() || wv == 0.0 || op.is_none() {
                assert!(
                    (wv.is_nan() && gv.is_nan())
                        || gv.to_bits() == wv.to_bits()
                        || (zero_sign_open && gv == 0.0 && wv == 0.0),
                    "{what}[{i}] (x = {x:e}): got {gv:e}, executor {wv:e}"
                );
                continue;
            }
            let e = (gv as f64 - wv as f64).abs();
            let bd = bound(op.unwrap(), wv);
            assert!(
                e <= bd,
                "{what}({x:e}): got {gv:e}, executor {wv:e} (error {e:e} > {bd:e})"
            );
        }
    }
}

fn bytes_of(dtype: DType, v: &[i64]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| match dtype {
            DType::I32 => (x as i32).to_le_bytes().to_vec(),
            DType::I64 => x.to_le_bytes().to_vec(),
            _ => vec![x as u8],
        })
        .collect()
}

#[test]
fn compare_logic_select_and_integers_match_the_executor_bit_for_bit() {
    let mut rng = Rng(0xc0a9_a7e5_0000_0003);
    let mut b = Builder::new();
    let ops = [
        CmpOp::Equal,
        CmpOp::Less,
        CmpOp::LessOrEqual,
        CmpOp::Greater,
        CmpOp::GreaterOrEqual,
    ];
    // Per dtype: values whose every pair is compared (a grid by broadcasting).
    let f = values(&mut rng, 4);
    let cases: Vec<(DType, Vec<u8>, u64)> = vec![
        (DType::F32, f32_bytes(&f), f.len() as u64),
        (
            DType::I32,
            bytes_of(
                DType::I32,
                &[i32::MIN as i64, -7, -1, 0, 1, 7, i32::MAX as i64],
            ),
            7,
        ),
        // Values 2^53 + 1 apart that a float would round together, and the extremes.
        (
            DType::I64,
            bytes_of(
                DType::I64,
                &[
                    i64::MIN,
                    -(1 << 53) - 1,
                    -(1 << 53),
                    0,
                    1 << 53,
                    (1 << 53) + 1,
                    i64::MAX,
                ],
            ),
            7,
        ),
        (DType::U8, vec![0, 1, 127, 128, 200, 255], 6),
        (DType::I8, vec![0x80, 0xff, 0, 1, 0x7f], 5),
        (DType::Bool, vec![0, 1, 2, 255], 4),
    ];
    for (dtype, data, n) in &cases {
        let x = b.input(*dtype, data.clone());
        for op in ops {
            let y = b.output(DType::Bool, n * n);
            b.p.kernels.push(Kernel::Compare {
                shape: vec![*n, *n],
                op,
                dtype: *dtype,
                a: view(x, 0, &[1, 0]),
                b: view(x, 0, &[0, 1]),
                output: view(y, 0, &[*n as i64, 1]),
            });
        }
    }
    // A constant operand (clang folds the loads): x < +inf, x > -inf, x <= +inf with NaN
    // in x must be false, as IEEE has it.
    let inf = b.konst(
        DType::F32,
        f32_bytes(&[f32::INFINITY, f32::NEG_INFINITY, f32::NAN]),
    );
    let x = b.input(DType::F32, f32_bytes(&f));
    let n = f.len() as u64;
    for (op, at) in [
        (CmpOp::Less, 0),
        (CmpOp::Greater, 1),
        (CmpOp::LessOrEqual, 0),
        (CmpOp::GreaterOrEqual, 1),
        (CmpOp::Equal, 2),
        (CmpOp::GreaterOrEqual, 2),
    ] {
        let y = b.output(DType::Bool, n);
        b.p.kernels.push(Kernel::Compare {
            shape: vec![n],
            op,
            dtype: DType::F32,
            a: view(x, 0, &[1]),
            b: view(Buffer::Const(inf), at, &[0]),
            output: view(y, 0, &[1]),
        });
    }
    // Logic over bytes that are not just 0 and 1, b broadcast over rows.
    let bools = b.input(DType::Bool, vec![0, 1, 2, 255, 0, 7]);
    for op in [LogicOp::And, LogicOp::Or, LogicOp::Xor, LogicOp::Not] {
        let y = b.output(DType::Bool, 12);
        b.p.kernels.push(Kernel::Logic {
            shape: vec![2, 6],
            op,
            a: view(bools, 0, &[0, 1]),
            b: (op != LogicOp::Not).then(|| view(bools, 1, &[1, 0])),
            output: view(y, 0, &[6, 1]),
        });
    }
    // Select of 1-, 4- and 8-byte elements: cond broadcast along rows, a transposed, b
    // broadcast along columns.
    for eb in [1u32, 4, 8] {
        let (r, c) = (3u64, 5u64);
        let cond = b.input(DType::Bool, vec![1, 0, 3, 0, 255]);
        let dt = match eb {
            1 => DType::U8,
            4 => DType::I32,
            _ => DType::I64,
        };
        let a = b.input(dt, rng.bytes((r * c) as usize * eb as usize));
        let bb = b.input(dt, rng.bytes(r as usize * eb as usize));
        let y = b.output(dt, r * c);
        b.p.kernels.push(Kernel::Select {
            shape: vec![r, c],
            elem_bytes: eb,
            cond: view(cond, 0, &[0, 1]),
            a: view(a, 0, &[1, r as i64]),
            b: view(bb, 0, &[1, 0]),
            output: view(y, 0, &[c as i64, 1]),
        });
    }
    // Integer arithmetic, wrapping at the extremes, b broadcast; Neg and Abs of MIN.
    for dtype in [DType::I32, DType::I64] {
        let (lo, hi) = if dtype == DType::I32 {
            (i32::MIN as i64, i32::MAX as i64)
        } else {
            (i64::MIN, i64::MAX)
        };
        let av = [lo, lo + 1, -3, -1, 0, 1, 5, hi - 1, hi];
        let bv = [hi, -1, 3, lo];
        let a = b.input(dtype, bytes_of(dtype, &av));
        let bb = b.input(dtype, bytes_of(dtype, &bv));
        for op in [
            IntOp::Add,
            IntOp::Sub,
            IntOp::Mul,
            IntOp::Max,
            IntOp::Min,
            IntOp::Neg,
            IntOp::Abs,
        ] {
            let y = b.output(dtype, 36);
            b.p.kernels.push(Kernel::IntElementwise {
                shape: vec![9, 4],
                dtype,
                op,
                a: view(a, 0, &[1, 0]),
                b: op.is_binary().then(|| view(bb, 0, &[0, 1])),
                output: view(y, 0, &[4, 1]),
            });
        }
        // In place: t ← t · 3 over a copy in the arena.
        let bytes = 9 * dtype.size() as u64;
        let t = b.arena(bytes);
        b.p.kernels.push(Kernel::Copy {
            bytes,
            src: a,
            dst: t,
        });
        let three = b.konst(dtype, bytes_of(dtype, &[3]));
        b.p.kernels.push(Kernel::IntElementwise {
            shape: vec![9],
            dtype,
            op: IntOp::Mul,
            a: view(t, 0, &[1]),
            b: Some(view(Buffer::Const(three), 0, &[0])),
            output: view(t, 0, &[1]),
        });
        let y = b.output(dtype, 9);
        b.p.kernels.push(Kernel::Copy {
            bytes,
            src: t,
            dst: y,
        });
    }
    let (got, want) = run_both(&b, "cmp-logic");
    assert_same(&b.p, &got, &want);
}
