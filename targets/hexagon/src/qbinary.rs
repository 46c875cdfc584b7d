//! Integer Add and Mul of two 8-bit quantized tensors ([`Kernel::QBinary`]), in plain C and
//! on HVX.
//!
//! The arithmetic is [`QBinary::apply`]'s, all in 32 bits: operands minus their zero
//! points are 16-bit, every product of them and the `i16` multipliers fits a word, and
//! the rounding `(acc + 2^(s−1)) >> s` is computed as `(t + 1) >> 1` with `t = acc >>
//! (s − 1)`, which cannot overflow (`vavg:rnd` on HVX).
//!
//! On HVX a row of 128 bytes is widened into halfwords (even bytes in one vector, odd in
//! the other: `vzxt`/`vsxt`), multiplied into words by `vmpy` (which splits even and odd
//! lanes again), rounded, and packed back by the saturating `vsat` (words to halfwords),
//! the clamp on halfwords, and `vshuffe` (the low byte of each halfword), which undo the
//! splits in reverse order. Rows are the innermost dimension after merging every run of
//! dimensions the views walk contiguously; each operand's row is contiguous or one
//! broadcast byte (splatted); tails shorter than a vector run the scalar code.

use std::fmt::Write;

use edgecc_program::{DType, Kernel, QBinary, QBinaryOp, View};

use crate::Error;
use crate::c::{at, check_rank, close_loops, ctype, open_loops, ptr};

/// Helpers of the plain-C form (part of every file's prelude).
pub(crate) const PRELUDE: &str = r#"
/* QBinary's rounding without the overflow of acc + 2^(s-1): t = acc >> (s-1), then
   (t >> 1) + (t & 1) = floor((acc + 2^(s-1)) / 2^s). Then the zero point and the clamp. */
EC_FN int32_t ec_qround(int32_t acc, int s, int32_t zp, int32_t lo, int32_t hi) {
    const int32_t t = acc >> (s - 1);
    const int32_t r = (t >> 1) + (t & 1) + zp;
    return r < lo ? lo : r > hi ? hi : r;
}
"#;

/// Helpers of the HVX form (after the HVX prelude).
pub(crate) const HVX_PRELUDE: &str = r#"
/* 128 bytes widened to halfwords minus the zero point z: even bytes in lo, odd in hi. */
EC_FN HVX_VectorPair ec_widen_sub(HVX_Vector v, int sgn, int32_t z) {
    const HVX_VectorPair w = sgn ? Q6_Wh_vsxt_Vb(v) : Q6_Wuh_vzxt_Vub(v);
    const HVX_Vector zz = Q6_Vh_vsplat_R(z);
    return Q6_W_vcombine_VV(Q6_Vh_vsub_VhVh(Q6_V_hi_W(w), zz), Q6_Vh_vsub_VhVh(Q6_V_lo_W(w), zz));
}
/* ec_qround's first part on words: vavg(acc >> (s-1), 0):rnd, plus the zero point. */
EC_FN HVX_Vector ec_vqround(HVX_Vector acc, int s, int32_t zp) {
    const HVX_Vector t = Q6_Vw_vavg_VwVw_rnd(Q6_Vw_vasr_VwR(acc, s - 1), Q6_V_vzero());
    return Q6_Vw_vadd_VwVw(t, Q6_V_vsplat_R(zp));
}
/* The words of the even bytes' products (e) and the odd bytes' (o), each split even/odd
   by vmpy, back to 128 bytes in order, clamped to [lo, hi] (saturating to halfwords
   first changes nothing: lo and hi lie within a byte's range). */
EC_FN HVX_Vector ec_vqpack(HVX_VectorPair e, HVX_VectorPair o, int s, int32_t zp, int32_t lo, int32_t hi) {
    HVX_Vector he = Q6_Vh_vsat_VwVw(ec_vqround(Q6_V_hi_W(e), s, zp), ec_vqround(Q6_V_lo_W(e), s, zp));
    HVX_Vector ho = Q6_Vh_vsat_VwVw(ec_vqround(Q6_V_hi_W(o), s, zp), ec_vqround(Q6_V_lo_W(o), s, zp));
    const HVX_Vector l = Q6_Vh_vsplat_R(lo), h = Q6_Vh_vsplat_R(hi);
    he = Q6_Vh_vmin_VhVh(Q6_Vh_vmax_VhVh(he, l), h);
    ho = Q6_Vh_vmin_VhVh(Q6_Vh_vmax_VhVh(ho, l), h);
    return Q6_Vb_vshuffe_VbVb(ho, he);
}
/* (a - za)·ma + (b - zb)·mb on 128 lanes; ma, mb as halfword pairs (m | m << 16). */
EC_FN HVX_Vector ec_vqadd(HVX_Vector a, HVX_Vector b, int sa, int sb, int32_t za, int32_t zb,
                          int32_t ma, int32_t mb, int s, int32_t zp, int32_t lo, int32_t hi) {
    const HVX_VectorPair x = ec_widen_sub(a, sa, za), y = ec_widen_sub(b, sb, zb);
    HVX_VectorPair e = Q6_Ww_vmpy_VhRh(Q6_V_lo_W(x), ma);
    HVX_VectorPair o = Q6_Ww_vmpy_VhRh(Q6_V_hi_W(x), ma);
    e = Q6_Ww_vmpyacc_WwVhRh(e, Q6_V_lo_W(y), mb);
    o = Q6_Ww_vmpyacc_WwVhRh(o, Q6_V_hi_W(y), mb);
    return ec_vqpack(e, o, s, zp, lo, hi);
}
/* (a - za)·(b - zb)·m on 128 lanes; m as a halfword pair. */
EC_FN HVX_Vector ec_vqmul(HVX_Vector a, HVX_Vector b, int sa, int sb, int32_t za, int32_t zb,
                          int32_t m, int s, int32_t zp, int32_t lo, int32_t hi) {
    const HVX_VectorPair x = ec_widen_sub(a, sa, za), y = ec_widen_sub(b, sb, zb);
    HVX_VectorPair e = Q6_Ww_vmpy_VhVh(Q6_V_lo_W(x), Q6_V_lo_W(y));
    HVX_VectorPair o = Q6_Ww_vmpy_VhVh(Q6_V_hi_W(x), Q6_V_hi_W(y));
    e = Q6_W_vcombine_VV(Q6_Vw_vmpyi_VwRh(Q6_V_hi_W(e), m), Q6_Vw_vmpyi_VwRh(Q6_V_lo_W(e), m));
    o = Q6_W_vcombine_VV(Q6_Vw_vmpyi_VwRh(Q6_V_hi_W(o), m), Q6_Vw_vmpyi_VwRh(Q6_V_lo_W(o), m));
    return ec_vqpack(e, o, s, zp, lo, hi);
}
"#;

/// Why `k` (a [`Kernel::QBinary`]) cannot be emitted, or `None`.
pub(crate) fn unsupported(k: &Kernel) -> Option<String> {
    match k {
        Kernel::QBinary {
            a_dtype,
            b_dtype,
            q,
            ..
        } => q.check(*a_dtype, *b_dtype).err(),
        _ => Some("not a quantized binary kernel".into()),
    }
}

/// The parts of a [`Kernel::QBinary`] after its dimensions are merged.
struct Parts<'a> {
    shape: Vec<u64>,
    a: View,
    b: View,
    out: View,
    a_dtype: DType,
    b_dtype: DType,
    q: &'a QBinary,
}

fn parts(k: &Kernel) -> Result<Parts<'_>, Error> {
    let Kernel::QBinary {
        shape,
        a,
        a_dtype,
        b,
        b_dtype,
        q,
        output,
    } = k
    else {
        return Err(Error("not a quantized binary kernel".into()));
    };
    for (v, what) in [(a, "a"), (b, "b"), (output, "output")] {
        check_rank(v, shape.len(), what)?;
    }
    q.check(*a_dtype, *b_dtype)
        .map_err(|e| Error(format!("malformed program: {e}")))?;
    let (shape, strides) = merge_dims(shape, &[a, b, output]);
    let view = |v: &View, i: usize| View {
        buf: v.buf,
        offset: v.offset,
        strides: strides[i].clone(),
    };
    Ok(Parts {
        a: view(a, 0),
        b: view(b, 1),
        out: view(output, 2),
        shape,
        a_dtype: *a_dtype,
        b_dtype: *b_dtype,
        q,
    })
}

/// `shape` with size-1 dimensions dropped and each run of dimensions that every view walks
/// as one (stride of the outer = stride of the inner × its size) merged into one, and the
/// views' strides for it. An empty shape stays empty (one element).
pub(crate) fn merge_dims(shape: &[u64], views: &[&View]) -> (Vec<u64>, Vec<Vec<i64>>) {
    let mut dims: Vec<u64> = vec![];
    let mut strides: Vec<Vec<i64>> = vec![vec![]; views.len()];
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let merge = dims.last().is_some_and(|_| {
            views.iter().zip(&strides).all(|(v, st)| {
                let outer = *st.last().unwrap();
                outer == v.strides[d] * n as i64
            })
        });
        if merge {
            *dims.last_mut().unwrap() *= n;
            for (v, st) in views.iter().zip(strides.iter_mut()) {
                *st.last_mut().unwrap() = v.strides[d];
            }
        } else {
            dims.push(n);
            for (v, st) in views.iter().zip(strides.iter_mut()) {
                st.push(v.strides[d]);
            }
        }
    }
    (dims, strides)
}

/// The scalar value of one output element, given C expressions for the operand bytes.
fn scalar_expr(p: &Parts, x: &str, y: &str) -> String {
    let q = p.q;
    let acc = match q.op {
        QBinaryOp::Add { ma, mb } => format!(
            "((int32_t){x} - {}) * {ma} + ((int32_t){y} - {}) * {mb}",
            q.a_zero, q.b_zero
        ),
        QBinaryOp::Mul { m } => format!(
            "((int32_t){x} - {}) * ((int32_t){y} - {}) * {m}",
            q.a_zero, q.b_zero
        ),
    };
    format!(
        "({})ec_qround({acc}, {}, {}, {}, {})",
        ctype(q.dtype),
        q.shift,
        q.zero_point,
        q.lo,
        q.hi
    )
}

/// Plain C: one loop nest over the merged shape.
pub(crate) fn emit_c(s: &mut String, k: &Kernel) -> Result<(), Error> {
    let p = parts(k)?;
    let (ind, depth) = open_loops(s, &p.shape);
    let x = format!("{}[{}]", ptr(p.a.buf, ctype(p.a_dtype)), at(&p.a));
    let y = format!("{}[{}]", ptr(p.b.buf, ctype(p.b_dtype)), at(&p.b));
    let _ = writeln!(
        s,
        "{ind}{}[{}] = {};",
        ptr(p.out.buf, ctype(p.q.dtype)),
        at(&p.out),
        scalar_expr(&p, &x, &y)
    );
    close_loops(s, depth);
    Ok(())
}

/// HVX: rows of the innermost merged dimension, 128 bytes a step. Returns false (plain
/// C) when the output's row is not contiguous, an operand's row is neither contiguous
/// nor one broadcast byte, or the rows are shorter than a vector.
pub(crate) fn emit_hvx(s: &mut String, k: &Kernel) -> Result<bool, Error> {
    let p = parts(k)?;
    let Some(&len) = p.shape.last() else {
        return Ok(false);
    };
    let inner = |v: &View| *v.strides.last().unwrap();
    if inner(&p.out) != 1 || ![0, 1].contains(&inner(&p.a)) || ![0, 1].contains(&inner(&p.b)) {
        return Ok(false);
    }
    if len < 128 {
        return Ok(false);
    }
    let outer = &p.shape[..p.shape.len() - 1];
    let row_start = |v: &View| {
        let mut r = v.clone();
        r.strides.pop();
        format!("{} + {}", ptr(v.buf, "u8a"), at(&r))
    };
    let (ind, depth) = open_loops(s, outer);
    let _ = writeln!(
        s,
        "{ind}const u8a *pa = {};\n{ind}const u8a *pb = {};\n{ind}u8a *py = {};",
        row_start(&p.a),
        row_start(&p.b),
        row_start(&p.out)
    );
    let load = |v: &View, name: &str| {
        if inner(v) == 1 {
            format!("*(const HVX_UVector *)({name} + x)")
        } else {
            format!("Q6_Vb_vsplat_R({name}[0])")
        }
    };
    let q = p.q;
    let pair = |m: i16| (m as u16 as u32) * 0x1_0001;
    let (sa, sb) = (
        i32::from(p.a_dtype == DType::I8),
        i32::from(p.b_dtype == DType::I8),
    );
    let call = match q.op {
        QBinaryOp::Add { ma, mb } => format!(
            "ec_vqadd(va, vb, {sa}, {sb}, {}, {}, (int32_t){}u, (int32_t){}u, {}, {}, {}, {})",
            q.a_zero,
            q.b_zero,
            pair(ma),
            pair(mb),
            q.shift,
            q.zero_point,
            q.lo,
            q.hi
        ),
        QBinaryOp::Mul { m } => format!(
            "ec_vqmul(va, vb, {sa}, {sb}, {}, {}, (int32_t){}u, {}, {}, {}, {})",
            q.a_zero,
            q.b_zero,
            pair(m),
            q.shift,
            q.zero_point,
            q.lo,
            q.hi
        ),
    };
    let full = len - len % 128;
    let idx = |v: &View, name: &str| {
        let t = ctype(if name == "pa" { p.a_dtype } else { p.b_dtype });
        if inner(v) == 1 {
            format!("((const {t} *){name})[x]")
        } else {
            format!("((const {t} *){name})[0]")
        }
    };
    let tail = scalar_expr(&p, &idx(&p.a, "pa"), &idx(&p.b, "pb"));
    let _ = writeln!(
        s,
        "{ind}for (ix_t x = 0; x < {full}; x += 128) {{
{ind}    const HVX_Vector va = {}, vb = {};
{ind}    *(HVX_UVector *)(py + x) = {call};
{ind}}}
{ind}for (ix_t x = {full}; x < {len}; x++) (({} *)py)[x] = {tail};",
        load(&p.a, "pa"),
        load(&p.b, "pb"),
        ctype(q.dtype),
    );
    close_loops(s, depth);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgecc_program::Buffer;

    fn v(strides: &[i64]) -> View {
        View {
            buf: Buffer::Input(0),
            offset: 0,
            strides: strides.to_vec(),
        }
    }

    #[test]
    fn merges_contiguous_runs_and_drops_unit_dims() {
        // [2, 1, 3, 4] dense with a per-row broadcast second operand.
        let (shape, st) = merge_dims(&[2, 1, 3, 4], &[&v(&[12, 12, 4, 1]), &v(&[0, 0, 0, 1])]);
        assert_eq!(shape, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
        let (shape, st) = merge_dims(&[2, 3, 4], &[&v(&[12, 4, 1]), &v(&[12, 4, 1])]);
        assert_eq!((shape, st), (vec![24], vec![vec![1], vec![1]]));
        // Transposed: nothing merges.
        let (shape, _) = merge_dims(&[3, 4], &[&v(&[1, 3]), &v(&[4, 1])]);
        assert_eq!(shape, vec![3, 4]);
        let (shape, st) = merge_dims(&[1, 1], &[&v(&[5, 7])]);
        assert!(shape.is_empty() && st[0].is_empty());
    }
}
