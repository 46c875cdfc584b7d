//! Measured accuracy of the inline exp/tanh/sigmoid/erf/log polynomials (generated code, JIT)
//! against `f64` references, over dense sweeps of their useful ranges.
mod common;

use common::*;
use edgecc_program::{Buffer, ExprNode, Kernel, UnaryOp};

fn unary(op: UnaryOp, xs: &[f32]) -> Vec<f32> {
    let n = xs.len() as u64;
    let p = program(
        vec![io("x", &[n])],
        vec![io("y", &[n])],
        vec![],
        0,
        vec![Kernel::Elementwise {
            shape: vec![n],
            inputs: vec![view(Buffer::Input(0), 0, &[1])],
            expr: vec![ExprNode::Input(0), ExprNode::Unary(op, 0)],
            output: view(Buffer::Output(0), 0, &[1]),
        }],
    );
    run_jit(&p, &[xs.to_vec()]).remove(0)
}

fn sweep(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
        .collect()
}

#[test]
fn exp_error() {
    let xs = sweep(-87.0, 88.3, 200_003);
    let ys = unary(UnaryOp::Exp, &xs);
    let worst = xs.iter().zip(&ys).map(|(&x, &y)| {
        let r = (x as f64).exp();
        ((y as f64 - r) / r).abs()
    });
    let max = worst.fold(0.0f64, f64::max);
    println!(
        "exp: max relative error {max:.3e} ({:.2} × f32::EPSILON)",
        max / f32::EPSILON as f64
    );
    assert!(max < 3e-7, "exp max relative error {max:e}");
    // The ends of f32's range: up to f32::MAX, overflow to +inf, and results in the
    // subnormal range within one subnormal step (2^-149) plus the relative bound.
    let xs = sweep(88.3, 88.72, 10_001);
    for (&x, &y) in xs.iter().zip(&unary(UnaryOp::Exp, &xs)) {
        let r = (x as f64).exp();
        assert!(
            ((y as f64 - r) / r).abs() < 3e-7,
            "exp({x}) = {y}, want {r}"
        );
    }
    let far = unary(UnaryOp::Exp, &[88.73, 100.0, 1e30, -104.0, -1e30]);
    assert_eq!(
        far,
        vec![f32::INFINITY, f32::INFINITY, f32::INFINITY, 0.0, 0.0]
    );
    // NaN in, NaN out, in a vector lane and in a scalar tail lane.
    let nan = unary(UnaryOp::Exp, &[f32::NAN, 1.0, 0.0, -f32::NAN, f32::NAN]);
    assert!(
        nan[0].is_nan() && nan[3].is_nan() && nan[4].is_nan(),
        "{nan:?}"
    );
    assert_eq!(&nan[1..3], &[std::f32::consts::E, 1.0]);
    let xs = sweep(-103.9, -87.0, 10_001);
    for (&x, &y) in xs.iter().zip(&unary(UnaryOp::Exp, &xs)) {
        let r = (x as f64).exp();
        assert!(
            (y as f64 - r).abs() <= 3e-7 * r + 2f64.powi(-149),
            "exp({x}) = {y:e}, want {r:e}"
        );
    }
}

#[test]
fn tanh_and_sigmoid_error() {
    let xs = sweep(-20.0, 20.0, 100_001);
    let th = unary(UnaryOp::Tanh, &xs);
    let sg = unary(UnaryOp::Sigmoid, &xs);
    let (mut t_abs, mut s_rel) = (0.0f64, 0.0f64);
    for ((&x, &t), &s) in xs.iter().zip(&th).zip(&sg) {
        t_abs = t_abs.max((t as f64 - (x as f64).tanh()).abs());
        let r = 1.0 / (1.0 + (-x as f64).exp());
        s_rel = s_rel.max(((s as f64 - r) / r).abs());
    }
    println!("tanh: max absolute error {t_abs:.3e}; sigmoid: max relative error {s_rel:.3e}");
    assert!(t_abs < 3e-7, "tanh abs error {t_abs:e}");
    assert!(s_rel < 5e-7, "sigmoid rel error {s_rel:e}");
    // Saturation: no NaN or overflow far out.
    let big = unary(UnaryOp::Tanh, &[-1e30, -100.0, 100.0, 1e30]);
    assert_eq!(big, vec![-1.0, -1.0, 1.0, 1.0]);
    let sbig = unary(UnaryOp::Sigmoid, &[-1e30, 1e30, 0.0]);
    assert!(
        sbig[0] >= 0.0 && sbig[0] < 1e-37 && sbig[1] == 1.0 && sbig[2] == 0.5,
        "{sbig:?}"
    );
}

/// `erf` of an `f64` (Abramowitz–Stegun 7.1.26 is too coarse; this is the series for
/// `|x| < 3` and the continued fraction beyond, both to ~1e-15).
fn erf64(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // erf(x) = 2/√π · Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = e^{-x²}/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

#[test]
fn erf_error() {
    let xs = sweep(-6.0, 6.0, 200_001);
    let ys = unary(UnaryOp::Erf, &xs);
    let (mut max, mut at) = (0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(&ys) {
        let e = (y as f64 - erf64(x as f64)).abs();
        if e > max {
            (max, at) = (e, x);
        }
    }
    println!("erf: max absolute error {max:.3e} (at x = {at})");
    assert!(max < 3.5e-7, "erf max absolute error {max:e}");
    let special = unary(
        UnaryOp::Erf,
        &[
            f32::NEG_INFINITY,
            -1e30,
            0.0,
            -0.0,
            1e30,
            f32::INFINITY,
            f32::NAN,
        ],
    );
    println!("erf special: {special:?}");
    assert_eq!(&special[..6], &[-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]);
    assert!(special[6].is_nan());
}

#[test]
fn log_error() {
    // Every binade of positive normal floats (relative error), dense around 1 (where the
    // result goes to 0 and the relative error is the hard case).
    let mut xs: Vec<f32> = Vec::new();
    for e in -126..128 {
        let b = 2f32.powi(e);
        xs.extend(sweep(b, b * 1.999_999, 1_001));
    }
    xs.extend(sweep(0.5, 2.0, 200_001));
    xs.extend(sweep(0.999, 1.001, 20_001));
    let ys = unary(UnaryOp::Log, &xs);
    let (mut rel, mut abs) = (0.0f64, 0.0f64);
    for (&x, &y) in xs.iter().zip(&ys) {
        let r = (x as f64).ln();
        let e = (y as f64 - r).abs();
        abs = abs.max(e);
        if r != 0.0 {
            rel = rel.max(e / r.abs());
        } else {
            assert_eq!(y, 0.0, "log(1)");
        }
    }
    println!(
        "log: max relative error {rel:.3e} ({:.2} × f32::EPSILON), max absolute {abs:.3e}",
        rel / f32::EPSILON as f64
    );
    assert!(rel < 3e-7, "log max relative error {rel:e}");
    // Subnormals are exact inputs.
    let sub: Vec<f32> = (0..23).map(|i| f32::from_bits(1 << i)).collect();
    let ys = unary(UnaryOp::Log, &sub);
    for (&x, &y) in sub.iter().zip(&ys) {
        let r = (x as f64).ln();
        assert!(
            ((y as f64 - r) / r).abs() < 3e-7,
            "log({x:e}) = {y}, want {r}"
        );
    }
    let special = unary(
        UnaryOp::Log,
        &[
            0.0,
            -0.0,
            -1.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            1.0,
        ],
    );
    assert_eq!(special[0], f32::NEG_INFINITY);
    assert_eq!(special[1], f32::NEG_INFINITY);
    assert!(special[2].is_nan() && special[3].is_nan() && special[5].is_nan());
    assert_eq!(special[4], f32::INFINITY);
    assert_eq!(special[6], 0.0);
}
