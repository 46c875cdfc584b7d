//! Raw byte copies, written as a 16-byte vector loop and a straight-line tail so that the
//! generated code calls no `memcpy`.

use cranelift_codegen::ir::{Value, types};

use crate::fx::Fx;

pub(crate) fn emit(fx: &mut Fx, bytes: u64, src: Value, dst: Value) {
    fx.for_n(bytes / 16, &[], |fx, i, _| {
        let s = fx.addp_scaled(src, i, 16);
        let d = fx.addp_scaled(dst, i, 16);
        let v = fx.load(types::I8X16, s, 0, true);
        fx.store(v, d, 0);
        vec![]
    });
    let mut at = (bytes / 16 * 16) as i64;
    for (ty, size) in [
        (types::I64, 8),
        (types::I32, 4),
        (types::I16, 2),
        (types::I8, 1),
    ] {
        if (bytes as i64 - at) >= size {
            let v = fx.load(ty, src, at, true);
            fx.store(v, dst, at);
            at += size;
        }
    }
}
