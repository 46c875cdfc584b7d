//! Float functions without libm, as C: the transcendentals of the Cranelift target
//! (`targets/cranelift/src/math.rs`) ported term for term, the same coefficients and
//! special-value rules, plus a correctly rounded square root and the fused activations.
//!
//! Hexagon has no libm and clang-19 turns `sqrtf`, `fmaf` (and `__builtin_sqrtf`) into
//! calls, so everything here is arithmetic on `float` and `uint32_t`/`uint64_t`; float
//! division is inline on every core (`sfrecipa` with fix-ups, correctly rounded). `a * b +
//! c` in one expression may be contracted into Hexagon's fused multiply-add (clang's
//! default `-ffp-contract=on`): the polynomials are written that way on purpose, and the
//! errors below were measured so, under qemu-hexagon (v67), against `f64` references
//! (`cargo test -p edgecc-hexagon --test math -- --nocapture`); the Cranelift target
//! measures 1.16e-7, 1.09e-7, 1.82e-7, 2.95e-7 and 7.9e-8 for the first five:
//!
//! | function     | measured max error                                              |
//! |--------------|-----------------------------------------------------------------|
//! | `ec_exp`     | relative 1.18e-7 (0.99 ulp) on `[-87, 88.3]`; subnormal results within one subnormal step |
//! | `ec_tanh`    | absolute 1.05e-7 on `[-20, 20]`                                 |
//! | `ec_sigmoid` | relative 1.79e-7 on `[-20, 20]`                                 |
//! | `ec_erf`     | absolute 2.92e-7 on `[-6, 6]` (at −3.56)                        |
//! | `ec_log`     | relative 7.76e-8 (0.65 ulp) over every binade, subnormals too   |
//! | `ec_sqrt`    | none: correctly rounded (all 2^32 inputs checked on the host)   |
//! | `ec_pow`     | relative 0.75 × (`|y·log|x|| · 2^-23 + 2^-23`) on a grid        |
//!
//! Special values follow `edgecc_program::exec` (NaN in, NaN out; `exp(-inf) = 0`,
//! `log(0) = -inf`, `erf(±inf) = ±1`, powf's rules), unlike the Cranelift target's `exp`,
//! which gives a finite result for NaN. Two clang-19 Hexagon back-end quirks shape the
//! code: `x < c ? c : x` becomes `sfmax`, which drops a NaN operand, and `fcmp one` (what
//! LLVM makes of `!(x < inf)`) is lowered as true for NaN; so NaN is tested with `x != x`.
//!
//! `tests/math.rs` fails when a function is worse than the Cranelift target's bound
//! (exp 3e-7, tanh 3e-7, sigmoid 5e-7, erf 3.5e-7, log 3e-7; sqrt and `1/x` bit for bit).

use std::fmt::Write;

use edgecc_program::poly::{
    ERF_CLAMP, ERF_P, ERF_Q, EXP_P, LN2_HI, LN2_LO, LOG_P, LOG2E, SQRT_HALF_BITS,
};
use edgecc_program::{Activation, BinaryOp, UnaryOp};

use crate::c::float_lit;

/// `p = c[0]; p = p * t + c[i]...` as C statements (Horner, contractible).
fn horner(s: &mut String, p: &str, t: &str, c: &[f32]) {
    let _ = writeln!(s, "    float {p} = {};", float_lit(c[0]));
    for &k in &c[1..] {
        let _ = writeln!(s, "    {p} = {p} * {t} + {};", float_lit(k));
    }
}

/// The C helpers, emitted once per file when some kernel calls one of them.
pub(crate) fn helpers() -> String {
    let mut s = String::from(
        "\n/* Float functions without libm (targets/hexagon/src/math.rs states each one's\n   measured error). */\n",
    );
    // e^x: clamp, Cody-Waite reduction with n found by the 1.5*2^23 rounding trick,
    // Cephes' polynomial, 2^n as two normal factors. NaN is returned explicitly: clang's
    // Hexagon back end turns `x < c ? c : x` into `sfmax`, which drops a NaN operand.
    let _ = writeln!(
        s,
        "EC_FN float ec_exp(float x0) {{
    float x = x0 < -104.0f ? -104.0f : x0;
    x = x > 89.0f ? 89.0f : x;
    const float t = x * {log2e} + 12582912.0f;
    const float n = t - 12582912.0f;
    float r = x - n * {hi};
    r = r - n * {lo};",
        log2e = float_lit(LOG2E),
        hi = float_lit(LN2_HI),
        lo = float_lit(LN2_LO),
    );
    horner(&mut s, "p", "r", &EXP_P);
    s.push_str(
        "    const float r2 = r * r;
    const float er = p * r2 + (r + 1.0f);
    const int32_t k = (int32_t)(ec_bits(t) - 0x4b400000u);
    const int32_t ka = k >> 1, kb = k - ka;
    const float y = er * ec_float((uint32_t)(ka + 127) << 23);
    const float z = y * ec_float((uint32_t)(kb + 127) << 23);
    return x0 != x0 ? x0 : z;
}
/* sign(x) * (1 - 2 / (e^(2|x|) + 1)): no overflow for any x; NaN gives NaN. */
EC_FN float ec_tanh(float x) {
    const float a = ec_abs(x);
    const float e = ec_exp(a + a);
    const float t = 1.0f - 2.0f / (e + 1.0f);
    return ec_float(ec_bits(t) | (ec_bits(x) & 0x80000000u));
}
EC_FN float ec_sigmoid(float x) {
    const float e = ec_exp(-x);
    return 1.0f / (1.0f + e);
}
",
    );
    // erf: x·P(x²)/Q(x²) on the clamped x, exactly ±1 from the clamp on, NaN for NaN
    // (explicitly, as in ec_exp).
    let _ = writeln!(
        s,
        "EC_FN float ec_erf(float x) {{
    float c = x < -{cl} ? -{cl} : x;
    c = c > {cl} ? {cl} : c;
    const float z = c * c;",
        cl = float_lit(ERF_CLAMP)
    );
    horner(&mut s, "p", "z", &ERF_P);
    horner(&mut s, "q", "z", &ERF_Q);
    let _ = writeln!(
        s,
        "    const float cp = c * p;
    float r = cp / q;
    if ({cl} <= ec_abs(x)) r = ec_float(0x3f800000u | (ec_bits(x) & 0x80000000u));
    return x != x ? x : r;
}}",
        cl = float_lit(ERF_CLAMP)
    );
    // log: subnormals scaled by 2^23, x = 2^k·m with m in [√½, √2) by musl's bit offset,
    // Cephes' polynomial in f = m − 1, k·ln2 in two parts; special values last. (Not
    // `!(x < inf)`: LLVM folds it into `fcmp one x, inf`, which clang-19's Hexagon back
    // end lowers as true for NaN.)
    let _ = writeln!(
        s,
        "EC_FN float ec_log(float x) {{
    const int sub = x < {tiny};
    const float xn = sub ? x * 8388608.0f : x;
    const uint32_t ix = ec_bits(xn) + 0x{off:x}u;
    const int32_t k = (int32_t)ix >> 23;
    const float m = ec_float((ix & 0x7fffffu) + 0x{sq:x}u);
    const float kf = (float)(k - 127) - (sub ? 23.0f : 0.0f);
    const float f = m - 1.0f;
    const float z = f * f;",
        off = 0x3f80_0000u32 - SQRT_HALF_BITS,
        sq = SQRT_HALF_BITS,
        tiny = float_lit(f32::MIN_POSITIVE),
    );
    horner(&mut s, "p", "f", &LOG_P);
    let _ = writeln!(
        s,
        "    const float pf = p * f;
    float y = pf * z;
    y = kf * {lo} + y;
    y = z * -0.5f + y;
    float r = f + y;
    r = kf * {hi} + r;
    if (x != x || x == ec_float(0x7f800000u)) r = x;
    if (x < 0.0f) r = ec_float(0x7fc00000u);
    if (x == 0.0f) r = ec_float(0xff800000u);
    return r;
}}",
        lo = float_lit(LN2_LO),
        hi = float_lit(LN2_HI),
    );
    s.push_str(SQRT_AND_REST);
    let _ = write!(
        s,
        "/* The fused activations, as edgecc_program::exec::activate spells them. */
EC_FN float ec_gelu(float x) {{
    const float xs = x * {rsqrt2};
    const float e = ec_erf(xs);
    const float hx = x * 0.5f;
    return hx * (1.0f + e);
}}
EC_FN float ec_gelu_tanh(float x) {{
    const float x2 = x * x;
    const float x3 = x2 * x;
    const float k = x3 * 0.044715f;
    const float u = x + k;
    const float t = u * {c};
    const float e = ec_tanh(t);
    const float hx = x * 0.5f;
    return hx * (1.0f + e);
}}
EC_FN float ec_hardswish(float x) {{
    const float s = x * {sixth};
    const float t = s + 0.5f;
    return x * ec_clip(t, 0.0f, 1.0f);
}}
",
        rsqrt2 = float_lit(std::f32::consts::FRAC_1_SQRT_2),
        c = float_lit((2.0f64 / std::f64::consts::PI).sqrt() as f32),
        sixth = float_lit(1.0f32 / 6.0),
    );
    s
}

/// The square root and `pow` (no coefficients to format).
const SQRT_AND_REST: &str = r#"/* Correctly rounded square root. x = m·2^p with m a 24-bit integer; M = m·2^s (s = 23
   or 24 making p - s even) so that sqrt(x) = sqrt(M)·2^((p-s)/2) with sqrt(M) in
   [2^23, 2^24). Y, the rounded sqrt(M), is estimated in float (reciprocal square root by
   the bit trick and three Newton steps, one correction from the exact residual), then
   fixed with exact 64-bit residuals: Y is right iff Y² - Y < M <= Y² + Y (a tie is
   impossible for an integer M). Y = 2^24 carries into the exponent. */
EC_FN float ec_sqrt(float x) {
    const uint32_t u = ec_bits(x);
    if (u - 1u >= 0x7f7fffffu) {
        /* ±0, +inf and NaN are their own roots; negatives give NaN. */
        if (u == 0u || u == 0x80000000u || (u >= 0x7f800000u && u <= 0x7fffffffu)) return x;
        return ec_float(0x7fc00000u);
    }
    int32_t e = (int32_t)(u >> 23);
    uint32_t m = u & 0x7fffffu;
    if (e == 0) {
        const int32_t z = __builtin_clz(m) - 8;
        m <<= z;
        e = 1 - z;
    } else {
        m |= 0x800000u;
    }
    int32_t p = e - 150;
    const int32_t sh = (p & 1) ? 23 : 24;
    const uint64_t M = (uint64_t)m << sh;
    p -= sh;
    const float t = (float)M;
    const float ht = 0.5f * t;
    float r = ec_float(0x5f3759dfu - (ec_bits(t) >> 1));
    r = r * (1.5f - ht * r * r);
    r = r * (1.5f - ht * r * r);
    r = r * (1.5f - ht * r * r);
    uint32_t y = (uint32_t)(t * r + 0.5f);
    const int64_t d = (int64_t)(M - (uint64_t)y * y);
    y = (uint32_t)((int32_t)y + (int32_t)((float)d * (0.5f * r)));
    while ((uint64_t)y * y - y >= M) y--;
    while ((uint64_t)y * y + y < M) y++;
    return ec_float((uint32_t)((p / 2 + 149) << 23) + y);
}
/* Float comparisons on integers, IEEE's order (-0 == +0; NaN compares false, tested
   first): clang-19's Hexagon back end gets unordered compares against a constant wrong
   (x < +inf is folded into `fcmp one`, lowered as true for NaN). */
EC_FN int ec_fnan(float x) { return (ec_bits(x) & 0x7fffffffu) > 0x7f800000u; }
EC_FN int32_t ec_fkey(float x) {
    const uint32_t b = ec_bits(x);
    return (b >> 31) ? -(int32_t)(b & 0x7fffffffu) : (int32_t)b;
}
/* Max and min that propagate NaN (Reduce), unlike ec_max and ec_min. */
EC_FN float ec_nmax(float a, float x) { return a != a ? a : x != x ? x : x > a ? x : a; }
EC_FN float ec_nmin(float a, float x) { return a != a ? a : x != x ? x : x < a ? x : a; }
/* x^y = exp(y·log|x|) with C powf's special values, as the Cranelift target. */
EC_FN float ec_pow(float x, float y) {
    const float a = ec_abs(x);
    const float l = ec_log(a);
    const float t = y * l;
    float r = ec_exp(t);
    const float yi = ec_round(y);
    const float h = y * 0.5f;
    const int is_int = yi == y;
    const int odd = is_int && ec_round(h) != h;
    if ((ec_bits(x) >> 31) && odd) r = -r;
    if (x < 0.0f && !is_int && a < ec_float(0x7f800000u)) r = ec_float(0x7fc00000u);
    if (x != x || y != y) r = ec_float(0x7fc00000u);
    if (y == 0.0f || x == 1.0f || (a == 1.0f && ec_abs(y) == ec_float(0x7f800000u))) r = 1.0f;
    return r;
}
"#;

/// Whether emitted kernel code calls any helper of [`helpers`].
pub(crate) fn used(kernels: &str) -> bool {
    [
        "ec_exp(",
        "ec_tanh(",
        "ec_sigmoid(",
        "ec_erf(",
        "ec_log(",
        "ec_sqrt(",
        "ec_pow(",
        "ec_gelu(",
        "ec_gelu_tanh(",
        "ec_hardswish(",
        "ec_nmax(",
        "ec_nmin(",
        "ec_fkey(",
    ]
    .iter()
    .any(|f| kernels.contains(f))
}

/// The C expression of `act` applied to the float expression `v` (a variable name: it
/// may be evaluated more than once).
pub(crate) fn activation(act: Activation, v: &str) -> String {
    match act {
        Activation::None => v.to_string(),
        Activation::Relu => format!("ec_relu({v})"),
        Activation::Clip { lo, hi } => {
            format!("ec_clip({v}, {}, {})", float_lit(lo), float_lit(hi))
        }
        Activation::Sigmoid => format!("ec_sigmoid({v})"),
        Activation::Tanh => format!("ec_tanh({v})"),
        Activation::Gelu { tanh: false } => format!("ec_gelu({v})"),
        Activation::Gelu { tanh: true } => format!("ec_gelu_tanh({v})"),
        Activation::HardSwish => format!("ec_hardswish({v})"),
    }
}

/// The C expression of a unary op on the variable `x`.
pub(crate) fn unary(op: UnaryOp, x: &str) -> String {
    match op {
        UnaryOp::Neg => format!("-{x}"),
        UnaryOp::Abs => format!("ec_abs({x})"),
        UnaryOp::Relu => format!("ec_relu({x})"),
        UnaryOp::Round => format!("ec_round({x})"),
        UnaryOp::Exp => format!("ec_exp({x})"),
        UnaryOp::Tanh => format!("ec_tanh({x})"),
        UnaryOp::Sigmoid => format!("ec_sigmoid({x})"),
        UnaryOp::Sqrt => format!("ec_sqrt({x})"),
        UnaryOp::Reciprocal => format!("1.0f / {x}"),
        UnaryOp::Erf => format!("ec_erf({x})"),
        UnaryOp::Log => format!("ec_log({x})"),
    }
}

/// The C expression of a binary op on the variables `a` and `b` (one rounding each: no
/// multiply-add can be contracted out of it).
pub(crate) fn binary(op: BinaryOp, a: &str, b: &str) -> String {
    match op {
        BinaryOp::Add => format!("{a} + {b}"),
        BinaryOp::Sub => format!("{a} - {b}"),
        BinaryOp::Mul => format!("{a} * {b}"),
        BinaryOp::Div => format!("{a} / {b}"),
        BinaryOp::Max => format!("ec_max({a}, {b})"),
        BinaryOp::Min => format!("ec_min({a}, {b})"),
        BinaryOp::Pow => format!("ec_pow({a}, {b})"),
    }
}
