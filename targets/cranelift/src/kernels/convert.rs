//! Dtype conversion (ONNX Cast) of a dense run of elements, with the semantics of
//! `edgecc_program::exec::convert_element`: every source element is widened to an `i64`
//! (sign- or zero-extended, bool bytes normalised to 0/1) or kept as an `f32`, then
//! narrowed to the target. Float → integer uses Cranelift's saturating `fcvt_to_sint_sat`
//! (truncation, NaN → 0) and, for the byte types, a clamp of the `i32` result;
//! integer → float is `fcvt_from_sint` from `i64` (round to nearest even).
//!
//! Same-type conversions (except bool, which is normalised) are the byte copy of
//! [`crate::kernels::copy`]; `f32 ↔ i32` runs four lanes at a time with the vector forms
//! of the same instructions, then a scalar tail.

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
