//! The integer Add and Mul of two 8-bit quantized tensors ([`Kernel::QBinary`]), bit for
//! bit `edgecc_program::QBinary::apply`, with no float math.
//!
//! Dimensions are simplified as for the mask kernels (size-1 dimensions dropped,
//! contiguous pairs merged) and every loop carries one pointer per view. Where the
//! innermost dimension writes contiguous bytes and reads each operand contiguously or
//! broadcast (stride 0: a bias vector along the rows, a scalar), 16 elements are one step:
//!
//! - each operand's 16 bytes (one load, or one byte splat) widened to two `i16x8`
//!   (`uxtl`/`sxtl`, `pmovzxbw`/`pmovsxbw`);
//! - Mul: the zero points subtracted (`|x − z| ≤ 255` fits i16), `(x − za)·(y − zb)` as
//!   16×16→32 multiplies of each half (`imul(swiden_low(x), swiden_low(y))`, which aarch64
//!   emits as `smull`/`smull2`; at most 255², exact), one i32 multiply by `m` (below 2^31
//!   for any i16 `m`, as the contract says), then the rounding `(acc >> s) + ((acc >>
//!   (s − 1)) & 1)`, which is `(acc + 2^(s−1)) >> s` without its overflow;
//! - Add: `a·ma + b·mb` on the raw bytes (the same 16×16→32 multiplies, one add per 4
//!   lanes), plus one constant `2^(s−1) − za·ma − zb·mb (+ zero_point·2^s)`, then one
//!   shift: `|acc| < 2^24`, so nothing overflows and the zero points cost nothing in the
//!   loop ([`add_constant`]);
//! - saturating narrows to i16, `+ zero_point` saturating in i16 (unless the Add's
//!   constant holds it), a saturating narrow to the output's 8 bits and the clamp to
//!   `[lo, hi]` on the bytes (only the bounds narrower than the dtype). Each saturation
//!   only moves a value that lies past `[lo, hi]` anyway (`lo`, `hi` and the zero point are
//!   in the output's range, the narrowed values 2^15 away), so this is exactly
//!   `clamp(zero_point + r, lo, hi)`.
//!
//! A residual Add is 39 aarch64 instructions per 16 elements, loop included (`cnn_qdq`'s,
//! `edgecc compile --target aarch64-neon --emit asm`).
//!
//! The rest of the innermost dimension, and every dimension that is strided in another
//! way, runs the same arithmetic one element at a time in i32 registers. An output in place
//! of an operand (identical views) reads each 16 bytes before writing them.
//!
//! [`Kernel::QBinary`]: edgecc_program::Kernel::QBinary

use cranelift_codegen::ir::{InstBuilder, Value, types};
use edgecc_program::{DType, QBinary, QBinaryOp, View};

use super::mask::{bases, nest, readonly, simplify};
use crate::error::{Error, unsupported};
use crate::fx::Fx;

/// `Kernel::QBinary`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_qbinary(
    fx: &mut Fx,
    shape: &[u64],
    a: &View,
    a_dtype: DType,
    b: &View,
    b_dtype: DType,
    q: &QBinary,
    output: &View,
) -> Result<(), Error> {
    q.check(a_dtype, b_dtype)
        .map_err(|e| unsupported(format!("quantized Add/Mul: {e}")))?;
    if shape.contains(&0) {
        return Ok(());
    }
    let views = [(a, 1), (b, 1), (output, 1)];
    let mut dims = simplify(shape, &views)?;
    let ptrs = bases(fx, &views)?;
    let ro = [readonly(a.buf, output.buf), readonly(b.buf, output.buf)];
    let signed = [a_dtype == DType::I8, b_dtype == DType::I8];
    let scalar = |fx: &mut Fx, p: &[Value]| {
        let x = fx.load8(signed[0], p[0], 0, ro[0]);
        let y = fx.load8(signed[1], p[1], 0, ro[1]);
        let r = scalar_apply(fx, q, x, y);
        fx.store8(r, p[2], 0);
    };
    // 16 elements a step along a contiguous innermost dimension.
    let vector = dims.last().is_some_and(|d| {
        d.size >= 16 && d.strides[2] == 1 && d.strides[..2].iter().all(|s| (0..=1).contains(s))
    });
    if !vector {
        let mut body = scalar;
        return nest(fx, &dims, &ptrs, &mut body);
    }
    let Some(inner) = dims.pop() else {
        return Err(unsupported("quantized Add/Mul without dimensions"));
    };
    let (nvec, tail) = (inner.size / 16, inner.size % 16);
    let mut body = |fx: &mut Fx, p: &[Value]| {
        let ends = fx.for_n(nvec, p, |fx, _, v| {
            let mut halves = Vec::with_capacity(2);
            for i in 0..2 {
                let bytes = if inner.strides[i] == 0 {
                    let s = fx.load(types::I8, v[i], 0, ro[i]);
                    fx.b.ins().splat(types::I8X16, s)
                } else {
                    fx.load(types::I8X16, v[i], 0, ro[i])
                };
                // An Add's zero points join its rounding constant (see `add_constant`).
                let zero = match (add_constant(q), i) {
                    (Some(_), _) => 0,
                    (None, 0) => q.a_zero,
                    (None, _) => q.b_zero,
                };
                halves.push(widen_centered(fx, bytes, signed[i], zero));
            }
            let r = vector_apply(fx, q, &halves[0], &halves[1]);
            fx.store(r, v[2], 0);
            v.iter()
                .zip(&inner.strides)
                .map(|(&v, &s)| fx.addp(v, 16 * s))
                .collect()
        });
        fx.for_n(tail, &ends, |fx, _, v| {
            scalar(fx, v);
            v.iter()
                .zip(&inner.strides)
                .map(|(&v, &s)| fx.addp(v, s))
                .collect()
        });
    };
    nest(fx, &dims, &ptrs, &mut body)
}

/// `QBinary::apply` on one pair of operands already loaded as i32 (sign- or zero-extended):
/// every intermediate fits i32 for parameters that pass `QBinary::check`.
fn scalar_apply(fx: &mut Fx, q: &QBinary, x: Value, y: Value) -> Value {
    let x = fx.b.ins().iadd_imm_s(x, -(q.a_zero as i64));
    let y = fx.b.ins().iadd_imm_s(y, -(q.b_zero as i64));
    let acc = match q.op {
        QBinaryOp::Add { ma, mb } => {
            let p = fx.b.ins().imul_imm_s(x, ma as i64);
            let r = fx.b.ins().imul_imm_s(y, mb as i64);
            fx.b.ins().iadd(p, r)
        }
        QBinaryOp::Mul { m } => {
            let p = fx.b.ins().imul(x, y);
            fx.b.ins().imul_imm_s(p, m as i64)
        }
    };
    let s = q.shift as i64;
    let high = fx.b.ins().sshr_imm_s(acc, s);
    let half = fx.b.ins().sshr_imm_s(acc, s - 1);
    let half = fx.b.ins().band_imm_s(half, 1);
    let r = fx.b.ins().iadd(high, half);
    let r = fx.b.ins().iadd_imm_s(r, q.zero_point as i64);
    let lo = fx.b.ins().iconst(types::I32, q.lo as i64);
    let hi = fx.b.ins().iconst(types::I32, q.hi as i64);
    let r = fx.b.ins().smax(r, lo);
    fx.b.ins().smin(r, hi)
}

/// An `i16x8` with `v` in every lane, from the constant pool.
fn i16x8(fx: &mut Fx, v: i32) -> Value {
    let bytes: Vec<u8> = (0..8).flat_map(|_| (v as i16).to_le_bytes()).collect();
    fx.vconst_bytes(types::I16X8, bytes)
}

/// An `i8x16` with the byte `v` in every lane.
fn i8x16(fx: &mut Fx, v: i32) -> Value {
    fx.vconst_bytes(types::I8X16, vec![v as u8; 16])
}

/// 16 bytes as two `i16x8` (low and high lanes) minus the zero point.
fn widen_centered(fx: &mut Fx, bytes: Value, signed: bool, zero: i32) -> [Value; 2] {
    let (lo, hi) = if signed {
        (fx.b.ins().swiden_low(bytes), fx.b.ins().swiden_high(bytes))
    } else {
        (fx.b.ins().uwiden_low(bytes), fx.b.ins().uwiden_high(bytes))
    };
    if zero == 0 {
        return [lo, hi];
    }
    let z = i16x8(fx, zero);
    [fx.b.ins().isub(lo, z), fx.b.ins().isub(hi, z)]
}

/// `a · b` of two `i16x8` as two `i32x4` (lanes 0–3, 4–7), exact.
fn widening_mul(fx: &mut Fx, a: Value, b: Value) -> [Value; 2] {
    let (al, bl) = (fx.b.ins().swiden_low(a), fx.b.ins().swiden_low(b));
    let (ah, bh) = (fx.b.ins().swiden_high(a), fx.b.ins().swiden_high(b));
    [fx.b.ins().imul(al, bl), fx.b.ins().imul(ah, bh)]
}

/// For an Add, the constant `c` with `(a·ma + b·mb + c) >> shift = zero_point + round(acc
/// / 2^shift)` for the raw operand bytes `a`, `b`, and whether the zero point is in it:
/// `c = 2^(shift−1) − za·ma − zb·mb (+ zero_point·2^shift)`. An Add's `acc` is below 2^24
/// in magnitude (`|x − z| ≤ 255`, `|m| ≤ 2^15`), so `acc + 2^(shift−1)` cannot overflow
/// and the plain rounding shift is exact; the zero point joins when that still fits int32
/// for every input (adding a multiple of 2^shift before the shift adds it after), which
/// saves its saturating add. `None` for a Mul, whose product may reach 2^31.
fn add_constant(q: &QBinary) -> Option<(i32, bool)> {
    let QBinaryOp::Add { ma, mb } = q.op else {
        return None;
    };
    let (ma, mb) = (ma as i64, mb as i64);
    // The largest |a·ma + b·mb| over raw bytes of either signedness.
    let raw = 255 * (ma.abs() + mb.abs());
    let c = (1i64 << (q.shift - 1)) - q.a_zero as i64 * ma - q.b_zero as i64 * mb;
    let with_zero = c + ((q.zero_point as i64) << q.shift);
    let fits = |c: i64| raw + c.abs() < 1 << 31;
    if fits(with_zero) {
        Some((with_zero as i32, true))
    } else if fits(c) {
        Some((c as i32, false))
    } else {
        None
    }
}

/// The 16 results of `QBinary::apply` as bytes, from both operands' halves (raw for an Add
/// with an [`add_constant`], centred on their zero points otherwise).
fn vector_apply(fx: &mut Fx, q: &QBinary, x: &[Value; 2], y: &[Value; 2]) -> Value {
    // Four i32x4 accumulators, lanes 0–3, 4–7, 8–11, 12–15.
    let mut acc = Vec::with_capacity(4);
    for h in 0..2 {
        match q.op {
            QBinaryOp::Add { ma, mb } => {
                let (ma, mb) = (i16x8(fx, ma as i32), i16x8(fx, mb as i32));
                let px = widening_mul(fx, x[h], ma);
                let py = widening_mul(fx, y[h], mb);
                for k in 0..2 {
                    acc.push(fx.b.ins().iadd(px[k], py[k]));
                }
            }
            QBinaryOp::Mul { m } => {
                let m = fx.i32x4_const([m as i32; 4]);
                let p = widening_mul(fx, x[h], y[h]);
                for pk in p {
                    acc.push(fx.b.ins().imul(pk, m));
                }
            }
        }
    }
    let s = fx.b.ins().iconst(types::I32, q.shift as i64);
    let (rounded, zero_added): (Vec<Value>, bool) = match add_constant(q) {
        Some((c, zero_added)) => {
            let c = fx.i32x4_const([c; 4]);
            let r = acc
                .into_iter()
                .map(|a| {
                    let a = fx.b.ins().iadd(a, c);
                    fx.b.ins().sshr(a, s)
                })
                .collect();
            (r, zero_added)
        }
        None => {
            let one = fx.i32x4_const([1; 4]);
            let s1 = fx.b.ins().iconst(types::I32, q.shift as i64 - 1);
            let r = acc
                .into_iter()
                .map(|a| {
                    let high = fx.b.ins().sshr(a, s);
                    let half = fx.b.ins().sshr(a, s1);
                    let half = fx.b.ins().band(half, one);
                    fx.b.ins().iadd(high, half)
                })
                .collect();
            (r, false)
        }
    };
    let mut words = Vec::with_capacity(2);
    for pair in rounded.chunks(2) {
        let w = fx.b.ins().snarrow(pair[0], pair[1]);
        words.push(if zero_added {
            w
        } else {
            let zp = i16x8(fx, q.zero_point);
            fx.b.ins().sadd_sat(w, zp)
        });
    }
    // The saturating narrow already clamps to the dtype's range; `[lo, hi]` only when
    // narrower.
    let (full_lo, full_hi) = if q.dtype == DType::U8 {
        (0, 255)
    } else {
        (-128, 127)
    };
    let (narrow_lo, narrow_hi) = (q.lo > full_lo, q.hi < full_hi);
    let (lo, hi) = (i8x16(fx, q.lo), i8x16(fx, q.hi));
    if q.dtype == DType::U8 {
        let mut v = fx.b.ins().unarrow(words[0], words[1]);
        if narrow_lo {
            v = fx.b.ins().umax(v, lo);
        }
        if narrow_hi {
            v = fx.b.ins().umin(v, hi);
        }
        v
    } else {
        let mut v = fx.b.ins().snarrow(words[0], words[1]);
        if narrow_lo {
            v = fx.b.ins().smax(v, lo);
        }
        if narrow_hi {
            v = fx.b.ins().smin(v, hi);
        }
        v
    }
}
