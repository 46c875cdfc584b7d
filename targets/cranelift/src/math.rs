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
//! `cargo test -p edgecc-cranelift --test math -- --nocapture`). NaN inputs give a finite
//! result: kernels feed exp max-subtracted or bounded values.
//!
//! `tanh(x) = sign(x)·(1 − 2/(e^{2|x|} + 1))`: no overflow for any `x`; measured max
//! absolute error 1.09e-7 on `[-20, 20]`, so near 0 the *relative* error grows.
//!
//! `sigmoid(x) = 1/(1 + e^{−x})`: measured max relative error 1.82e-7 on `[-20, 20]`.

use cranelift_codegen::ir::{InstBuilder, Value, types};

use crate::fx::{Fx, W};

const LOG2E: f32 = std::f32::consts::LOG2_E;
const ROUND_MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
const LN2_HI: f32 = 0.693_359_4; // 0x3f318000
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` lane-wise.
pub(crate) fn exp(fx: &mut Fx, w: W, x: Value) -> Value {
    // Outside [-104, 89] the result is 0 or +inf in f32 anyway; inside, 2^n is applied as
    // two factors 2^(n>>1) and 2^(n - n>>1), each a normal float, so results in the
    // subnormal range and up to f32::MAX come out right and overflow gives +inf.
    let lo = fx.fconst(w, -104.0);
    let hi = fx.fconst(w, 89.0);
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
    fx.b.ins().fmul(y, sb)
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
