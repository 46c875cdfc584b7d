//! Dtype conversion (ONNX Cast) of a dense run of elements, with the semantics of
//! `edgecc_program::exec::convert_element`: every source element is widened to an `i64`
//! (sign- or zero-extended, bool bytes normalised to 0/1) or kept as an `f32`, then
//! narrowed to the target. Float → integer uses Cranelift's saturating `fcvt_to_sint_sat`
//! (truncation, NaN → 0) and, for the byte types, a clamp of the `i32` result;
//! integer → float is `fcvt_from_sint` from `i64` (round to nearest even).
//!
//! Same-type conversions (except bool, which is normalised) are the byte copy of
//! [`crate::kernels::copy`]; `f32 ↔ i32` runs four lanes at a time with the vector forms
//! of the same instructions, `u8/i8 ↔ f32` (a quantized model's float edges) eight at a
//! time ([`bytes_floats`]), then a scalar tail.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::FloatCC, condcodes::IntCC, types};
use edgecc_program::DType;

use crate::fx::Fx;
use crate::kernels::copy;

/// A source element after loading: a float or an integer widened to `i64`.
enum Elem {
    F(Value),
    I(Value),
}

fn load(fx: &mut Fx, from: DType, p: Value) -> Elem {
    match from {
        DType::F32 => Elem::F(fx.load(types::F32, p, 0, true)),
        DType::I32 => {
            let v = fx.load(types::I32, p, 0, true);
            Elem::I(fx.b.ins().sextend(types::I64, v))
        }
        DType::I64 => Elem::I(fx.load(types::I64, p, 0, true)),
        DType::U8 => {
            let v = fx.load(types::I8, p, 0, true);
            Elem::I(fx.b.ins().uextend(types::I64, v))
        }
        DType::I8 => {
            let v = fx.load(types::I8, p, 0, true);
            Elem::I(fx.b.ins().sextend(types::I64, v))
        }
        DType::Bool => {
            let v = fx.load(types::I8, p, 0, true);
            let b = fx.b.ins().icmp_imm_u(IntCC::NotEqual, v, 0);
            Elem::I(fx.b.ins().uextend(types::I64, b))
        }
    }
}

/// `x` truncated and saturated to `[lo, hi]` (within i32), NaN → 0, as an `i8`.
fn f32_to_byte(fx: &mut Fx, x: Value, lo: i64, hi: i64) -> Value {
    let v = fx.b.ins().fcvt_to_sint_sat(types::I32, x);
    let lo_c = fx.b.ins().iconst(types::I32, lo);
    let hi_c = fx.b.ins().iconst(types::I32, hi);
    let below = fx.b.ins().icmp(IntCC::SignedLessThan, v, lo_c);
    let v = fx.b.ins().select(below, lo_c, v);
    let above = fx.b.ins().icmp(IntCC::SignedGreaterThan, v, hi_c);
    let v = fx.b.ins().select(above, hi_c, v);
    fx.b.ins().ireduce(types::I8, v)
}

fn convert(fx: &mut Fx, to: DType, e: Elem) -> Value {
    match (to, e) {
        (DType::F32, Elem::F(x)) => x,
        (DType::F32, Elem::I(i)) => fx.b.ins().fcvt_from_sint(types::F32, i),
        (DType::I32, Elem::F(x)) => fx.b.ins().fcvt_to_sint_sat(types::I32, x),
        (DType::I64, Elem::F(x)) => fx.b.ins().fcvt_to_sint_sat(types::I64, x),
        (DType::U8, Elem::F(x)) => f32_to_byte(fx, x, 0, 255),
        (DType::I8, Elem::F(x)) => f32_to_byte(fx, x, -128, 127),
        (DType::I64, Elem::I(i)) => i,
        (DType::I32, Elem::I(i)) => fx.b.ins().ireduce(types::I32, i),
        (DType::U8 | DType::I8, Elem::I(i)) => fx.b.ins().ireduce(types::I8, i),
        (DType::Bool, Elem::F(x)) => {
            let z = fx.b.ins().f32const(0.0);
            // Unordered counts as not equal: NaN is true.
            fx.b.ins().fcmp(FloatCC::NotEqual, x, z)
        }
        (DType::Bool, Elem::I(i)) => fx.b.ins().icmp_imm_u(IntCC::NotEqual, i, 0),
    }
}

pub(crate) fn emit(fx: &mut Fx, count: u64, from: DType, to: DType, src: Value, dst: Value) {
    let (fs, ts) = (from.size() as i64, to.size() as i64);
    if from == to && from != DType::Bool {
        copy::emit(fx, count * fs as u64, src, dst);
        return;
    }
    let mut done = 0u64;
    let vector = match (from, to) {
        (DType::F32, DType::I32) => Some((types::F32X4, types::I32X4)),
        (DType::I32, DType::F32) => Some((types::I32X4, types::F32X4)),
        _ => None,
    };
    if let Some((vin, vout)) = vector {
        fx.for_n(count / 4, &[], |fx, i, _| {
            let s = fx.addp_scaled(src, i, 16);
            let d = fx.addp_scaled(dst, i, 16);
            let v = fx.load(vin, s, 0, true);
            let r = if vout == types::I32X4 {
                fx.b.ins().fcvt_to_sint_sat(vout, v)
            } else {
                fx.b.ins().fcvt_from_sint(vout, v)
            };
            fx.store(r, d, 0);
            vec![]
        });
        done = count / 4 * 4;
    }
    if vector.is_none() {
        done = bytes_floats(fx, count, from, to, src, dst);
    }
    let src = fx.addp(src, done as i64 * fs);
    let dst = fx.addp(dst, done as i64 * ts);
    fx.for_n(count - done, &[], |fx, i, _| {
        let s = fx.addp_scaled(src, i, fs);
        let d = fx.addp_scaled(dst, i, ts);
        let e = load(fx, from, s);
        let v = convert(fx, to, e);
        fx.store(v, d, 0);
        vec![]
    });
}

/// The conversions at the edges of a quantized model's float work, 8 elements a step:
/// u8/i8 → f32 widens to i32 lanes (exact) then converts; f32 → u8/i8 truncates with
/// saturation to i32 (NaN → 0) and narrows with saturation twice, which composes to the
/// byte's range, i.e. exactly the scalar path's `x as u8`. Returns how many elements it
/// converted (a multiple of 8); 0 for other pairs.
fn bytes_floats(fx: &mut Fx, count: u64, from: DType, to: DType, src: Value, dst: Value) -> u64 {
    let steps = count / 8;
    match (from, to) {
        (DType::U8 | DType::I8, DType::F32) => {
            let signed = from == DType::I8;
            fx.for_n(steps, &[], |fx, i, _| {
                let s = fx.addp_scaled(src, i, 8);
                let d = fx.addp_scaled(dst, i, 32);
                let h = if signed {
                    fx.sload8x8(s, 0, true)
                } else {
                    fx.uload8x8(s, 0, true)
                };
                for (half, off) in [(false, 0), (true, 16)] {
                    let w = match (signed, half) {
                        (true, false) => fx.b.ins().swiden_low(h),
                        (true, true) => fx.b.ins().swiden_high(h),
                        (false, false) => fx.b.ins().uwiden_low(h),
                        (false, true) => fx.b.ins().uwiden_high(h),
                    };
                    let f = fx.b.ins().fcvt_from_sint(types::F32X4, w);
                    fx.store(f, d, off);
                }
                vec![]
            });
        }
        (DType::F32, DType::U8 | DType::I8) => {
            fx.for_n(steps, &[], |fx, i, _| {
                let s = fx.addp_scaled(src, i, 32);
                let d = fx.addp_scaled(dst, i, 8);
                let a = fx.load(types::F32X4, s, 0, true);
                let b = fx.load(types::F32X4, s, 16, true);
                let a = fx.b.ins().fcvt_to_sint_sat(types::I32X4, a);
                let b = fx.b.ins().fcvt_to_sint_sat(types::I32X4, b);
                let h = fx.b.ins().snarrow(a, b);
                let bytes = if to == DType::U8 {
                    fx.b.ins().unarrow(h, h)
                } else {
                    fx.b.ins().snarrow(h, h)
                };
                let lo = fx.bitcast(types::I64X2, bytes);
                let lo = fx.b.ins().extractlane(lo, 0);
                fx.store(lo, d, 0);
                vec![]
            });
        }
        _ => return 0,
    }
    steps * 8
}
