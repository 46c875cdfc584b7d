//! Gather along the middle axis: first every index is checked (one pass over `indices`,
//! OR-ing the out-of-range flags, no early exit inside the loop), and the kernel returns
//! `STATUS_INDEX_OUT_OF_RANGE` before writing anything if one is bad; then each selected
//! row of `inner · elem_bytes` contiguous bytes is copied with the 16-byte vector copy of
//! [`crate::kernels::copy`].

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use edgecc_program::STATUS_INDEX_OUT_OF_RANGE;

use crate::fx::Fx;
use crate::kernels::copy;

pub(crate) struct Gather {
    pub outer: u64,
    pub axis_len: u64,
    pub inner: u64,
    pub count: u64,
    pub elem_bytes: u32,
    pub index_bytes: u32,
    /// One index per output element (GatherElements).
    pub elementwise: bool,
}

/// The index at position `i` (an `i64`), as an `i64` in `[0, axis_len)` when it was in
/// range; the second value is non-zero (`i8`) when it was not.
fn index(fx: &mut Fx, g: &Gather, indices: Value, i: Value) -> (Value, Value) {
    let p = fx.addp_scaled(indices, i, g.index_bytes as i64);
    let v = if g.index_bytes == 1 {
        let v = fx.load(types::I8, p, 0, true);
        fx.b.ins().sextend(types::I64, v)
    } else if g.index_bytes == 4 {
        let v = fx.load(types::I32, p, 0, true);
        fx.b.ins().sextend(types::I64, v)
    } else {
        fx.load(types::I64, p, 0, true)
    };
    let neg = fx.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, 0);
    let wrapped = fx.b.ins().iadd_imm_s(v, g.axis_len as i64);
    let adj = fx.b.ins().select(neg, wrapped, v);
    let bad =
        fx.b.ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, adj, g.axis_len as i64);
    (adj, bad)
}

pub(crate) fn emit(fx: &mut Fx, g: &Gather, data: Value, indices: Value, out: Value) {
    if g.count == 0 {
        return;
    }
    if byte_table(g) {
        // A 256-entry byte table read with byte indices (a quantized elementwise function):
        // every byte is a valid index (a u8 byte read as signed wraps back to itself), so
        // there is nothing to check, and the index is the byte zero-extended.
        fx.for_n(g.count, &[], |fx, i, _| {
            let ip = fx.addp(indices, 0);
            let ip = fx.b.ins().iadd(ip, i);
            let b = fx.load8(false, ip, 0, true);
            let b = fx.b.ins().uextend(types::I64, b);
            let src = fx.b.ins().iadd(data, b);
            let v = fx.load8(false, src, 0, true);
            let dst = fx.b.ins().iadd(out, i);
            fx.store8(v, dst, 0);
            vec![]
        });
        return;
    }
    let n_idx = if g.elementwise {
        g.outer * g.count * g.inner
    } else {
        g.count
    };
    let none = fx.b.ins().iconst(types::I8, 0);
    let bad = fx.for_n(n_idx, &[none], |fx, i, acc| {
        let (_, bad) = index(fx, g, indices, i);
        vec![fx.b.ins().bor(acc[0], bad)]
    })[0];
    let fail = fx.b.create_block();
    let ok = fx.b.create_block();
    fx.b.ins().brif(bad, fail, &[], ok, &[]);
    fx.b.switch_to_block(fail);
    let status =
        fx.b.ins()
            .iconst(types::I32, STATUS_INDEX_OUT_OF_RANGE as i64);
    fx.b.ins().return_(&[status]);
    fx.b.switch_to_block(ok);
    if g.elementwise {
        elements(fx, g, data, indices, out);
        return;
    }
    let row = g.inner * g.elem_bytes as u64;
    if g.outer == 0 || row == 0 {
        return;
    }
    fx.for_n(g.outer, &[], |fx, o, _| {
        let src_o = fx.addp_scaled(data, o, (g.axis_len * row) as i64);
        let dst_o = fx.addp_scaled(out, o, (g.count * row) as i64);
        fx.for_n(g.count, &[], |fx, i, _| {
            let (j, _) = index(fx, g, indices, i);
            let src = fx.addp_scaled(src_o, j, row as i64);
            let dst = fx.addp_scaled(dst_o, i, row as i64);
            copy::emit(fx, row, src, dst);
            vec![]
        });
        vec![]
    });
}

/// Whether `g` is a lookup in one 256-entry byte table with 1-byte indices.
fn byte_table(g: &Gather) -> bool {
    g.index_bytes == 1
        && g.axis_len == 256
        && g.elem_bytes == 1
        && g.inner == 1
        && g.outer == 1
        && !g.elementwise
}

/// GatherElements: element `(o, i, k)` from `data[o, idx[o, i, k], k]`, one element of
/// `elem_bytes` at a time; the indices were checked already.
fn elements(fx: &mut Fx, g: &Gather, data: Value, indices: Value, out: Value) {
    let eb = g.elem_bytes as i64;
    let (count, inner) = (g.count as i64, g.inner as i64);
    fx.for_n(g.outer, &[], |fx, o, _| {
        let src_o = fx.addp_scaled(data, o, g.axis_len as i64 * inner * eb);
        let first = fx.b.ins().imul_imm_s(o, count * inner);
        fx.for_n(g.count * g.inner, &[], |fx, p, _| {
            // p = i·inner + k within this outer block; the index is at first + p.
            let at = fx.b.ins().iadd(first, p);
            let (j, _) = index(fx, g, indices, at);
            let k = if inner == 1 {
                fx.iconst(0)
            } else {
                fx.b.ins().urem_imm_u(p, inner)
            };
            let row = fx.b.ins().imul_imm_s(j, inner);
            let e = fx.b.ins().iadd(row, k);
            let src = fx.addp_scaled(src_o, e, eb);
            let dst = fx.addp_scaled(out, at, eb);
            copy::emit(fx, eb as u64, src, dst);
            vec![]
        });
        vec![]
    });
}
