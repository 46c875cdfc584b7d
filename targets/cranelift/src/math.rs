//! Inline f32 transcendentals for `f32x4` and scalar lanes: no libm call, no table.
//!
//! `exp(x)`: clamp `x` to `[-104, 89]` (outside, the f32 result is 0 or +inf anyway), then
//! Cody–Waite reduction `x = n·ln2 + r` with `n = round(x·log2 e)` found by adding
//! `1.5·2^23` (the float add rounds to an integer and leaves `n` in the low mantissa bits),
//! `ln2` split into an exactly representable head `0.693359375` (so `n·head` is exact for
//! `|n| ≤ 150`) and a tail. `e^r` on `|r| ≤ ln2/2` is Cephes' degree-7 minimax form
//! `1 + r + r²·P5(r)`. `2^n` is applied as two factors `2^(n>>1)` and `2^(n - (n>>1))`, each
//! `(k + 127) << 23` reinterpreted as a float and always normal, so results down in the
//! subnormal range and up to `f32::MAX` are right and larger inputs give `+inf`. Measured
//! max relative error against an f64 reference on `[-87, 88.72]`: 1.16e-7, about one
//! `f32::EPSILON`; subnormal results are within one subnormal step (`tests/math.rs`,
//! `cargo test -p edgecc-cranelift --test math -- --nocapture`). NaN gives NaN (one compare
//! and select at the end, as `exec` and onnxruntime have it).
//!
//! `tanh(x) = sign(x)·(1 − 2/(e^{2|x|} + 1))`: no overflow for any `x`; measured max
//! absolute error 1.09e-7 on `[-20, 20]`, so near 0 the *relative* error grows.
//!
//! `sigmoid(x) = 1/(1 + e^{−x})`: measured max relative error 1.82e-7 on `[-20, 20]`.
//!
//! `erf(x)`: Eigen's/XNNPACK's rational form `x·P(x²)/Q(x²)` (numerator degree 13, odd;
//! denominator degree 8, even) after clamping `x` to `±3.832507`, where `erf` rounds to
//! `±1` in f32, and exactly `±1` from there on (NaN-transparent, so NaN gives NaN). Measured max absolute error
//! 2.95e-7 on `[-6, 6]` (at `|x| ≈ 2.8`, about 2.5 ulp of 1): the coefficients alone are
//! within 7e-8 in exact arithmetic, the rest is f32 rounding of the evaluation.
//!
//! `ln(x)`: normalise subnormals by `2^23`, split `x = 2^k·m` with `m ∈ [√½, √2)` by
//! adding `1 − √½` to the bits (musl's trick: exponent and mantissa with integer ops, no
//! branch), then Cephes' `f − f²/2 + f³·P8(f)` with `f = m − 1`, plus `k·ln2` in the same
//! head/tail split as exp. Special values by selects: `±0 → −inf`, negative (and `−inf`)
//! `→ NaN`, `+inf → +inf`, NaN `→` NaN. Measured max relative error 7.9e-8 (0.66
//! `f32::EPSILON`) over every binade of normal floats and subnormal powers of two.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Value, types};
use edgecc_program::poly::{
    ERF_CLAMP, ERF_P, ERF_Q, EXP_P, LN2_HI, LN2_LO, LOG_P, LOG2E, SQRT_HALF_BITS,
};

use crate::fx::{Fx, W};

const ROUND_MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23

/// `e^x` lane-wise.
pub(crate) fn exp(fx: &mut Fx, w: W, x: Value) -> Value {
    // Outside [-104, 89] the result is 0 or +inf in f32 anyway; inside, 2^n is applied as
    // two factors 2^(n>>1) and 2^(n - n>>1), each a normal float, so results in the
    // subnormal range and up to f32::MAX come out right and overflow gives +inf.
    let lo = fx.fconst(w, -104.0);
    let hi = fx.fconst(w, 89.0);
    let input = x;
    let x = fx.max(w, x, lo);
    let x = fx.min(w, x, hi);
    let log2e = fx.fconst(w, LOG2E);
    let magic = fx.fconst(w, ROUND_MAGIC);
    let t = fx.mul_add(x, log2e, magic);
    let n = fx.b.ins().fsub(t, magic);
    let c_hi = fx.fconst(w, -LN2_HI);
    let c_lo = fx.fconst(w, -LN2_LO);
    let r = fx.mul_add(n, c_hi, x);
    let r = fx.mul_add(n, c_lo, r);
    let mut p = fx.fconst(w, EXP_P[0]);
    for &c in &EXP_P[1..] {
        let c = fx.fconst(w, c);
        p = fx.mul_add(p, r, c);
    }
    let r2 = fx.b.ins().fmul(r, r);
    let one = fx.fconst(w, 1.0);
    let r1 = fx.b.ins().fadd(r, one);
    let e_r = fx.mul_add(p, r2, r1);
    // bits(t) = 0x4B400000 + n; split n = na + nb with na = n >> 1 and build each 2^k as
    // (k + 127) << 23.
    let tb = fx.bitcast(w.ity(), t);
    let magic_bits = fx.iconst_w(w, -0x4B40_0000);
    let n = fx.b.ins().iadd(tb, magic_bits);
    let one_bit = fx.b.ins().iconst(types::I32, 1);
    let na = fx.b.ins().sshr(n, one_bit);
    let nb = fx.b.ins().isub(n, na);
    let bias = fx.iconst_w(w, 127);
    let sh = fx.b.ins().iconst(types::I32, 23);
    let ea = fx.b.ins().iadd(na, bias);
    let ea = fx.b.ins().ishl(ea, sh);
    let eb = fx.b.ins().iadd(nb, bias);
    let eb = fx.b.ins().ishl(eb, sh);
    let sa = fx.bitcast(w.ty(), ea);
    let sb = fx.bitcast(w.ty(), eb);
    let y = fx.b.ins().fmul(e_r, sa);
    let y = fx.b.ins().fmul(y, sb);
    // NaN in, NaN out (the clamp above turned it into a bound on x86_64 and into garbage
    // bits of `n` on aarch64).
    let nan = fx.b.ins().fcmp(FloatCC::Unordered, input, input);
    fx.pick(w, nan, input, y)
}

/// `x^y` lane-wise as `exp(y · log|x|)`, with C `powf`'s special values (see
/// `edgecc_program::BinaryOp::Pow`) set by selects afterwards.
pub(crate) fn pow(fx: &mut Fx, w: W, x: Value, y: Value) -> Value {
    let a = fx.b.ins().fabs(x);
    let la = log(fx, w, a);
    let t = fx.b.ins().fmul(y, la);
    let mut r = exp(fx, w, t);
    // Integer and odd exponents: nearest(y) == y, and nearest(y/2) != y/2.
    let yi = fx.b.ins().nearest(y);
    let is_int = fx.b.ins().fcmp(FloatCC::Equal, yi, y);
    let half = fx.fconst(w, 0.5);
    let h = fx.b.ins().fmul(y, half);
    let hi = fx.b.ins().nearest(h);
    let h_frac = fx.b.ins().fcmp(FloatCC::NotEqual, hi, h);
    let odd = fx.b.ins().band(is_int, h_frac);
    // A negative base (sign bit set: -0 counts, as in C) with an odd exponent: negative.
    let ity = w.ity();
    let xb = fx.bitcast(ity, x);
    let zero_i = fx.iconst_w(w, 0);
    let neg_sign = fx.b.ins().icmp(IntCC::SignedLessThan, xb, zero_i);
    let flip = fx.b.ins().band(neg_sign, odd);
    let nr = fx.b.ins().fneg(r);
    r = fx.pick(w, flip, nr, r);
    // A finite x < 0 with a non-integer exponent: NaN (-inf^y is ±0 or ±inf, as
    // computed); NaN in: NaN out.
    let zero = fx.fconst(w, 0.0);
    let nan = fx.fconst(w, f32::NAN);
    let inf = fx.fconst(w, f32::INFINITY);
    let below = fx.b.ins().fcmp(FloatCC::LessThan, x, zero);
    let finite = fx.b.ins().fcmp(FloatCC::LessThan, a, inf);
    let frac = fx.b.ins().bnot(is_int);
    let bad = fx.b.ins().band(below, frac);
    let bad = fx.b.ins().band(bad, finite);
    r = fx.pick(w, bad, nan, r);
    let x_nan = fx.b.ins().fcmp(FloatCC::Unordered, x, y);
    r = fx.pick(w, x_nan, nan, r);
    // x^0 = 1, 1^y = 1, (-1)^±inf = 1, whatever else holds.
    let one = fx.fconst(w, 1.0);
    let y0 = fx.b.ins().fcmp(FloatCC::Equal, y, zero);
    let x1 = fx.b.ins().fcmp(FloatCC::Equal, x, one);
    let a1 = fx.b.ins().fcmp(FloatCC::Equal, a, one);
    let ya = fx.b.ins().fabs(y);
    let yinf = fx.b.ins().fcmp(FloatCC::Equal, ya, inf);
    let a1_inf = fx.b.ins().band(a1, yinf);
    let unit = fx.b.ins().bor(y0, x1);
    let unit = fx.b.ins().bor(unit, a1_inf);
    fx.pick(w, unit, one, r)
}

/// `tanh(x)` lane-wise.
pub(crate) fn tanh(fx: &mut Fx, w: W, x: Value) -> Value {
    let xb = fx.bitcast(w.ity(), x);
    let sign_mask = fx.iconst_w(w, i32::MIN);
    let sign = fx.b.ins().band(xb, sign_mask);
    let a = fx.b.ins().fabs(x);
    let a2 = fx.b.ins().fadd(a, a);
    let e = exp(fx, w, a2);
    let one = fx.fconst(w, 1.0);
    let two = fx.fconst(w, 2.0);
    let d = fx.b.ins().fadd(e, one);
    let q = fx.b.ins().fdiv(two, d);
    let t = fx.b.ins().fsub(one, q);
    let tb = fx.bitcast(w.ity(), t);
    let r = fx.b.ins().bor(tb, sign);
    fx.bitcast(w.ty(), r)
}

/// `1 / (1 + e^-x)` lane-wise.
pub(crate) fn sigmoid(fx: &mut Fx, w: W, x: Value) -> Value {
    let nx = fx.b.ins().fneg(x);
    let e = exp(fx, w, nx);
    let one = fx.fconst(w, 1.0);
    let d = fx.b.ins().fadd(e, one);
    fx.b.ins().fdiv(one, d)
}

/// `x < lo ? lo : x`, then `hi < x ? hi : x` (NaN passes through).
fn clamp(fx: &mut Fx, w: W, x: Value, lo: f32, hi: f32) -> Value {
    let lo = fx.fconst(w, lo);
    let hi = fx.fconst(w, hi);
    let c = fx.b.ins().fcmp(FloatCC::LessThan, x, lo);
    let x = fx.pick(w, c, lo, x);
    let c = fx.b.ins().fcmp(FloatCC::LessThan, hi, x);
    fx.pick(w, c, hi, x)
}

/// Horner evaluation of `c[0]·t^(n-1) + ... + c[n-1]`.
fn horner(fx: &mut Fx, w: W, t: Value, c: &[f32]) -> Value {
    let mut p = fx.fconst(w, c[0]);
    for &k in &c[1..] {
        let k = fx.fconst(w, k);
        p = fx.mul_add(p, t, k);
    }
    p
}

/// `erf(x)` lane-wise.
pub(crate) fn erf(fx: &mut Fx, w: W, x: Value) -> Value {
    let x0 = x;
    let x = clamp(fx, w, x, -ERF_CLAMP, ERF_CLAMP);
    let x2 = fx.b.ins().fmul(x, x);
    let p = horner(fx, w, x2, &ERF_P);
    let p = fx.b.ins().fmul(x, p);
    let q = horner(fx, w, x2, &ERF_Q);
    let r = fx.b.ins().fdiv(p, q);
    // The rational ends a little below 1 at the clamp; from there on erf is ±1 in f32.
    let a = fx.b.ins().fabs(x0);
    let lim = fx.fconst(w, ERF_CLAMP);
    let big = fx.b.ins().fcmp(FloatCC::LessThanOrEqual, lim, a);
    let xb = fx.bitcast(w.ity(), x0);
    let sign_mask = fx.iconst_w(w, i32::MIN);
    let sign = fx.b.ins().band(xb, sign_mask);
    let one = fx.iconst_w(w, 1.0f32.to_bits() as i32);
    let one = fx.b.ins().bor(sign, one);
    let one = fx.bitcast(w.ty(), one);
    fx.pick(w, big, one, r)
}

/// `ln(x)` lane-wise.
pub(crate) fn log(fx: &mut Fx, w: W, x: Value) -> Value {
    // Subnormals (and 0, negatives: overridden below) are scaled by 2^23 first.
    let tiny = fx.fconst(w, f32::MIN_POSITIVE);
    let is_sub = fx.b.ins().fcmp(FloatCC::LessThan, x, tiny);
    let scale = fx.fconst(w, 8_388_608.0); // 2^23
    let xs = fx.b.ins().fmul(x, scale);
    let xn = fx.pick(w, is_sub, xs, x);
    let k_adj = {
        let a = fx.fconst(w, 23.0);
        let z = fx.fconst(w, 0.0);
        fx.pick(w, is_sub, a, z)
    };
    // Split x = 2^k · m with m in [√½, √2) (musl's bit trick): offsetting the bits by
    // 1 − √½ moves the exponent boundary to √½.
    let bits = fx.bitcast(w.ity(), xn);
    let off = fx.iconst_w(w, (0x3f80_0000 - SQRT_HALF_BITS) as i32);
    let ix = fx.b.ins().iadd(bits, off);
    let sh = fx.b.ins().iconst(types::I32, 23);
    let k = fx.b.ins().sshr(ix, sh);
    let bias = fx.iconst_w(w, -0x7f);
    let k = fx.b.ins().iadd(k, bias);
    let mask = fx.iconst_w(w, 0x007f_ffff);
    let mb = fx.b.ins().band(ix, mask);
    let sq = fx.iconst_w(w, SQRT_HALF_BITS as i32);
    let mb = fx.b.ins().iadd(mb, sq);
    let m = fx.bitcast(w.ty(), mb);
    let kf = fx.b.ins().fcvt_from_sint(w.ty(), k);
    let kf = fx.b.ins().fsub(kf, k_adj);
    let one = fx.fconst(w, 1.0);
    let f = fx.b.ins().fsub(m, one);
    let z = fx.b.ins().fmul(f, f);
    let p = horner(fx, w, f, &LOG_P);
    let pf = fx.b.ins().fmul(p, f);
    let y = fx.b.ins().fmul(pf, z);
    let c_lo = fx.fconst(w, LN2_LO);
    let y = fx.mul_add(kf, c_lo, y);
    let mhalf = fx.fconst(w, -0.5);
    let y = fx.mul_add(z, mhalf, y);
    let r = fx.b.ins().fadd(f, y);
    let c_hi = fx.fconst(w, LN2_HI);
    let r = fx.mul_add(kf, c_hi, r);
    // Special values: +inf and NaN give x itself, negatives NaN, ±0 −inf.
    let inf = fx.fconst(w, f32::INFINITY);
    let finite = fx.b.ins().fcmp(FloatCC::LessThan, x, inf);
    let r = fx.pick(w, finite, r, x);
    let zero = fx.fconst(w, 0.0);
    let neg = fx.b.ins().fcmp(FloatCC::LessThan, x, zero);
    let nan = fx.fconst(w, f32::NAN);
    let r = fx.pick(w, neg, nan, r);
    let is_zero = fx.b.ins().fcmp(FloatCC::Equal, x, zero);
    let ninf = fx.fconst(w, f32::NEG_INFINITY);
    fx.pick(w, is_zero, ninf, r)
}
