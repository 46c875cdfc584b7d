//! Measured accuracy of the C float functions (`src/math.rs`) under qemu-hexagon, against
//! `f64` references, over dense sweeps of their useful ranges: the bounds the Cranelift
//! target's `tests/math.rs` holds its polynomials to, so both targets are equally
//! accurate. `cargo test -p edgecc-hexagon --test math -- --nocapture` prints the
//! measured errors quoted in `src/math.rs`.
//!
//! The sweeps are made by the program itself (an integer grid from two short vectors by a
//! broadcast `IntElementwise` add, converted or reinterpreted as floats), so the C file
//! and the harness stay small; the executor computes the same inputs bit for bit, and
//! every output is also checked against it (special values exactly).

mod common;

use common::*;

use edgecc_program::{BinaryOp, Buffer, DType, ExprNode, IntOp, Kernel, UnaryOp, View};

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn i32_input(b: &mut Builder, v: &[i32]) -> Buffer {
    b.input(DType::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn f32_input(b: &mut Builder, v: &[f32]) -> Buffer {
    b.input(DType::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn view(buf: Buffer, strides: &[i64]) -> View {
    View {
        buf,
        offset: 0,
        strides: strides.to_vec(),
    }
}

/// `hi[i] + lo[j]` over the grid `[hi.len(), lo.len()]`, row-major, as i32 in the arena.
fn grid(b: &mut Builder, hi: &[i32], lo: &[i32]) -> (Buffer, u64) {
    let (h, l) = (hi.len() as u64, lo.len() as u64);
    let (a, c) = (i32_input(b, hi), i32_input(b, lo));
    let t = b.arena(h * l * 4);
    b.p.kernels.push(Kernel::IntElementwise {
        shape: vec![h, l],
        dtype: DType::I32,
        op: IntOp::Add,
        a: view(a, &[1, 0]),
        b: Some(view(c, &[0, 1])),
        output: view(t, &[l as i64, 1]),
    });
    (t, h * l)
}

/// An output holding `n` floats computed by `expr` over the f32 view of `src` (1-D).
fn floats(b: &mut Builder, src: Buffer, n: u64, expr: Vec<ExprNode>) -> Buffer {
    let x = b.output(DType::F32, n);
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![n],
        inputs: vec![view(src, &[1])],
        expr,
        output: view(x, &[1]),
    });
    x
}

/// `n ≈ count` evenly spaced floats from `lo` to `hi`: `lo + k · step` for the integers
/// `k` of a grid (converted to f32 in the arena first).
fn linear(b: &mut Builder, lo: f32, hi: f32, count: u32) -> (Buffer, u64) {
    let cols = 500u32;
    let rows = count.div_ceil(cols);
    let his: Vec<i32> = (0..rows).map(|r| (r * cols) as i32).collect();
    let los: Vec<i32> = (0..cols as i32).collect();
    let (t, n) = grid(b, &his, &los);
    let f = b.arena(n * 4);
    b.p.kernels.push(Kernel::Convert {
        count: n,
        from: DType::I32,
        to: DType::F32,
        input: t,
        output: f,
    });
    let step = (hi - lo) / (n - 1) as f32;
    let x = floats(
        b,
        f,
        n,
        vec![
            ExprNode::Input(0),
            ExprNode::Const(step),
            ExprNode::Binary(BinaryOp::Mul, 0, 1),
            ExprNode::Const(lo),
            ExprNode::Binary(BinaryOp::Add, 2, 3),
        ],
    );
    (x, n)
}

/// 1024 floats of every binade with biased exponent in `exps` (0: subnormals), mantissas
/// spread over 23 bits: bit patterns reinterpreted as floats.
fn binades(b: &mut Builder, exps: std::ops::RangeInclusive<i32>) -> (Buffer, u64) {
    let his: Vec<i32> = exps.map(|e| e << 23).collect();
    let los: Vec<i32> = (0..1024).map(|j| j * 8191).collect();
    let (t, n) = grid(b, &his, &los);
    (floats(b, t, n, vec![ExprNode::Input(0)]), n)
}

/// `op` over the floats of output `x`, into a new output.
fn apply(b: &mut Builder, op: UnaryOp, x: Buffer, n: u64) -> Buffer {
    floats(b, x, n, vec![ExprNode::Input(0), ExprNode::Unary(op, 0)])
}

/// The program's outputs under qemu-hexagon (plain C: the helpers are the same with HVX);
/// the sweeps `xs` (made by integer, conversion and arithmetic kernels) must be the
/// executor's bit for bit.
fn run(b: &Builder, tag: &str, xs: &[Buffer]) -> Vec<Vec<f32>> {
    let (got, _) = run_qemu_with(b, tag, edgecc_hexagon::Hvx::Off);
    let p = &b.p;
    let ins: Vec<&[u8]> = b.inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = p
        .outputs
        .iter()
        .map(|t| vec![0; t.byte_size() as usize])
        .collect();
    let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let mut arena = vec![0u8; p.arena_size as usize];
    edgecc_program::exec::run(p, &ins, &mut refs, &mut arena).expect("exec");
    for x in xs {
        let Buffer::Output(i) = *x else {
            unreachable!()
        };
        assert!(
            got[i as usize] == outs[i as usize],
            "sweep {i} differs from the executor's"
        );
    }
    got.iter().map(|g| f32s(g)).collect()
}

/// The largest `err(x, y)` over a sweep, and where.
fn worst(xs: &[f32], ys: &[f32], err: impl Fn(f32, f32) -> Option<f64>) -> (f64, f32) {
    let mut w = (0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(ys) {
        if let Some(e) = err(x, y)
            && e > w.0
        {
            w = (e, x);
        }
    }
    w
}

fn rel(r: f64, y: f32) -> f64 {
    ((y as f64 - r) / r).abs()
}

#[test]
fn exp_tanh_sigmoid_errors() {
    let mut b = Builder::new();
    let (xe, ne) = linear(&mut b, -87.0, 88.3, 200_000);
    let ye = apply(&mut b, UnaryOp::Exp, xe, ne);
    let (xt, nt) = linear(&mut b, 88.3, 88.72, 10_000);
    let yt = apply(&mut b, UnaryOp::Exp, xt, nt);
    let (xs, ns) = linear(&mut b, -103.9, -87.0, 10_000);
    let ys = apply(&mut b, UnaryOp::Exp, xs, ns);
    let special = [
        88.73f32,
        100.0,
        1e30,
        -104.0,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::NAN,
    ];
    let xsp = f32_input(&mut b, &special);
    let ysp = apply(&mut b, UnaryOp::Exp, xsp, special.len() as u64);
    let (xh, nh) = linear(&mut b, -20.0, 20.0, 100_000);
    let th = apply(&mut b, UnaryOp::Tanh, xh, nh);
    let sg = apply(&mut b, UnaryOp::Sigmoid, xh, nh);
    let sat = [
        -1e30f32,
        -100.0,
        100.0,
        1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::NAN,
    ];
    let xsat = f32_input(&mut b, &sat);
    let tsat = apply(&mut b, UnaryOp::Tanh, xsat, sat.len() as u64);
    let ssat = apply(&mut b, UnaryOp::Sigmoid, xsat, sat.len() as u64);
    let out = run(&b, "exp", &[xe, xt, xs, xh]);
    let o = |buf: Buffer| match buf {
        Buffer::Output(i) => &out[i as usize],
        _ => unreachable!(),
    };
    let (e, at) = worst(o(xe), o(ye), |x, y| Some(rel((x as f64).exp(), y)));
    println!(
        "exp: max relative error {e:.3e} ({:.2} × f32::EPSILON) at {at}",
        e / f32::EPSILON as f64
    );
    assert!(e < 3e-7, "exp max relative error {e:e} at {at}");
    let (e, at) = worst(o(xt), o(yt), |x, y| Some(rel((x as f64).exp(), y)));
    assert!(e < 3e-7, "exp near overflow: {e:e} at {at}");
    // Results in the subnormal range: within one subnormal step plus the relative bound.
    for (&x, &y) in o(xs).iter().zip(o(ys)) {
        let r = (x as f64).exp();
        assert!(
            (y as f64 - r).abs() <= 3e-7 * r + 2f64.powi(-149),
            "exp({x}) = {y:e}, want {r:e}"
        );
    }
    let s = o(ysp);
    assert_eq!(
        &s[..9],
        &[
            f32::INFINITY,
            f32::INFINITY,
            f32::INFINITY,
            0.0,
            0.0,
            f32::INFINITY,
            0.0,
            1.0,
            1.0
        ]
    );
    assert!(s[9].is_nan());
    let (mut t_abs, mut s_rel) = (0.0f64, 0.0f64);
    for ((&x, &t), &sg) in o(xh).iter().zip(o(th)).zip(o(sg)) {
        t_abs = t_abs.max((t as f64 - (x as f64).tanh()).abs());
        s_rel = s_rel.max(rel(1.0 / (1.0 + (-x as f64).exp()), sg));
    }
    println!("tanh: max absolute error {t_abs:.3e}; sigmoid: max relative error {s_rel:.3e}");
    assert!(t_abs < 3e-7, "tanh abs error {t_abs:e}");
    assert!(s_rel < 5e-7, "sigmoid rel error {s_rel:e}");
    let t = o(tsat);
    assert_eq!(&t[..6], &[-1.0, -1.0, 1.0, 1.0, 1.0, -1.0]);
    assert!(t[6] == 0.0 && t[6].is_sign_negative() && t[7].is_nan());
    let sv = o(ssat);
    assert!(sv[0] >= 0.0 && sv[0] < 1e-37 && sv[1] == 0.0 && sv[2] == 1.0 && sv[3] == 1.0);
    assert!(
        sv[4] == 1.0 && sv[5] == 0.0 && sv[6] == 0.5 && sv[7].is_nan(),
        "{sv:?}"
    );
}

/// `erf` of an `f64`: the series for `|x| < 3`, the continued fraction beyond (~1e-15).
fn erf64(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

#[test]
fn erf_and_log_errors() {
    let mut b = Builder::new();
    let (xe, ne) = linear(&mut b, -6.0, 6.0, 200_000);
    let ye = apply(&mut b, UnaryOp::Erf, xe, ne);
    let special = [
        f32::NEG_INFINITY,
        -1e30,
        0.0,
        -0.0,
        1e30,
        f32::INFINITY,
        f32::NAN,
    ];
    let xsp = f32_input(&mut b, &special);
    let ysp = apply(&mut b, UnaryOp::Erf, xsp, special.len() as u64);
    // Every binade of positive floats, subnormals included, and dense around 1.
    let (xl, nl) = binades(&mut b, 0..=254);
    let yl = apply(&mut b, UnaryOp::Log, xl, nl);
    let (xd, nd) = linear(&mut b, 0.5, 2.0, 100_000);
    let yd = apply(&mut b, UnaryOp::Log, xd, nd);
    let (x1, n1) = linear(&mut b, 0.999, 1.001, 20_000);
    let y1 = apply(&mut b, UnaryOp::Log, x1, n1);
    let lsp = [
        0.0f32,
        -0.0,
        -1.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        1.0,
    ];
    let xls = f32_input(&mut b, &lsp);
    let yls = apply(&mut b, UnaryOp::Log, xls, lsp.len() as u64);
    let out = run(&b, "erf-log", &[xe, xl, xd, x1]);
    let o = |buf: Buffer| match buf {
        Buffer::Output(i) => &out[i as usize],
        _ => unreachable!(),
    };
    let (e, at) = worst(o(xe), o(ye), |x, y| {
        Some((y as f64 - erf64(x as f64)).abs())
    });
    println!("erf: max absolute error {e:.3e} (at x = {at})");
    assert!(e < 3.5e-7, "erf max absolute error {e:e}");
    let s = o(ysp);
    assert_eq!(&s[..6], &[-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]);
    assert!(s[3].is_sign_negative() && s[6].is_nan());
    let mut worst_rel = (0.0f64, 0.0f32);
    for (xs, ys) in [(o(xl), o(yl)), (o(xd), o(yd)), (o(x1), o(y1))] {
        let w = worst(xs, ys, |x, y| {
            let r = (x as f64).ln();
            if x == 0.0 {
                None
            } else if r == 0.0 {
                assert_eq!(y, 0.0, "log(1)");
                None
            } else {
                Some(rel(r, y))
            }
        });
        if w.0 > worst_rel.0 {
            worst_rel = w;
        }
    }
    let (e, at) = worst_rel;
    println!(
        "log: max relative error {e:.3e} ({:.2} × f32::EPSILON) at {at:e}",
        e / f32::EPSILON as f64
    );
    assert!(e < 3e-7, "log max relative error {e:e} at {at:e}");
    let s = o(yls);
    assert_eq!(s[0], f32::NEG_INFINITY);
    assert_eq!(s[1], f32::NEG_INFINITY);
    assert!(s[2].is_nan() && s[3].is_nan() && s[5].is_nan());
    assert_eq!(s[4], f32::INFINITY);
    assert_eq!(s[6], 0.0);
}

/// The square root is correctly rounded and the reciprocal is the IEEE quotient: both
/// bit for bit the executor's over every binade (subnormals too) and the special values.
/// (Every one of the 2^32 inputs of `ec_sqrt` was also checked on the host, by the same C
/// compiled for x86-64 with `-mfma`, against `sqrtf`.)
#[test]
fn sqrt_and_reciprocal_are_exact() {
    let mut b = Builder::new();
    let (x, n) = binades(&mut b, 0..=255);
    let sq = apply(&mut b, UnaryOp::Sqrt, x, n);
    let rc = apply(&mut b, UnaryOp::Reciprocal, x, n);
    let neg = floats(
        &mut b,
        x,
        n,
        vec![ExprNode::Input(0), ExprNode::Unary(UnaryOp::Neg, 0)],
    );
    let sqn = apply(&mut b, UnaryOp::Sqrt, neg, n);
    let rcn = apply(&mut b, UnaryOp::Reciprocal, neg, n);
    let out = run(&b, "sqrt", &[x, neg]);
    let o = |buf: Buffer| match buf {
        Buffer::Output(i) => &out[i as usize],
        _ => unreachable!(),
    };
    for (i, &x) in o(x).iter().enumerate() {
        let (s, r) = (o(sq)[i], o(rc)[i]);
        assert!(
            s.to_bits() == x.sqrt().to_bits() || (s.is_nan() && x.is_nan()),
            "sqrt({x:e}) = {s:e}, want {:e}",
            x.sqrt()
        );
        assert!(
            r.to_bits() == (1.0 / x).to_bits() || (r.is_nan() && x.is_nan()),
            "1/{x:e} = {r:e}"
        );
        let (s, r) = (o(sqn)[i], o(rcn)[i]);
        if x == 0.0 {
            assert!(s.to_bits() == 0x8000_0000, "sqrt(-0) = {s:e}");
        } else {
            assert!(s.is_nan(), "sqrt(-{x:e}) = {s:e}");
        }
        assert!(
            r.to_bits() == (1.0 / -x).to_bits() || (r.is_nan() && x.is_nan()),
            "1/-{x:e} = {r:e}"
        );
    }
    println!("sqrt, reciprocal: {n} inputs (every binade, both signs) bit for bit");
}

/// `pow` over every special base and exponent (C `powf`'s rules) and a grid of ordinary
/// ones. Bound (as the Cranelift target's): `exp(y·log|x|)` carries `|y·log|x||·2^-23`
/// relative error from the rounded product, plus a few ulp from exp and log.
#[test]
fn pow_special_values_and_error() {
    let mut b = Builder::new();
    let mut bases = vec![
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
        1e-40,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    bases.extend((1..=60).map(|i| i as f32 * 0.37));
    let mut exps = vec![
        0.0f32,
        -0.0,
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
    exps.extend((-20..=20).map(|i| i as f32 * 0.61));
    let (nb, ne) = (bases.len() as u64, exps.len() as u64);
    let xb = f32_input(&mut b, &bases);
    let xe = f32_input(&mut b, &exps);
    let y = b.output(DType::F32, nb * ne);
    b.p.kernels.push(Kernel::Elementwise {
        shape: vec![nb, ne],
        inputs: vec![view(xb, &[1, 0]), view(xe, &[0, 1])],
        expr: vec![
            ExprNode::Input(0),
            ExprNode::Input(1),
            ExprNode::Binary(BinaryOp::Pow, 0, 1),
        ],
        output: view(y, &[ne as i64, 1]),
    });
    let out = run(&b, "pow", &[]);
    let mut worst_units = 0.0f64;
    for (i, &x) in bases.iter().enumerate() {
        for (j, &e) in exps.iter().enumerate() {
            let g = out[0][i * ne as usize + j];
            let w = x.powf(e);
            if w.is_nan() || w.is_infinite() || w == 0.0 {
                assert!(
                    (w.is_nan() && g.is_nan()) || g.to_bits() == w.to_bits(),
                    "pow({x:e}, {e:e}) = {g:e}, want {w:e}"
                );
                continue;
            }
            let want = (x as f64).powf(e as f64);
            let t = (e as f64 * (x as f64).abs().ln()).abs();
            let bound = want.abs() * (t * 2.4e-7 + 1e-6) + 1e-44;
            let err = (g as f64 - want).abs();
            assert!(
                err == 0.0 || err <= bound,
                "pow({x:e}, {e:e}) = {g:e}, want {want:e} (error {err:e} > {bound:e})"
            );
            if want != 0.0 {
                worst_units = worst_units
                    .max(err / (want.abs() * (t * 2f64.powi(-23) + f32::EPSILON as f64)));
            }
        }
    }
    println!(
        "pow: {} cases; max error {worst_units:.2} × (|y·log|x||·2^-23 + 2^-23) relative",
        nb * ne
    );
}
