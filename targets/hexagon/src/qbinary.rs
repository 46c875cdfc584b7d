//! Integer Add and Mul of two 8-bit quantized tensors ([`Kernel::QBinary`]), in plain C and
//! on HVX.
//!
//! The arithmetic is [`QBinary::apply`]'s, in 32 bits by the split form the contract
//! documents: each 30-bit multiplier as `mh·2^15 + ml` (both halves fit i16), the products
//! with the high halves summed into `H` and with the low halves into `L`, then `H' = H +
//! (L >> 15)` rounded by `shift − 15`: `t = H' >> (shift − 16)`, `(t >> 1) + (t & 1)`,
//! which is `(t + 1) >> 1` without its overflow (`vavg:rnd` on HVX).
//!
//! On HVX a row of 128 bytes is widened into halfwords (even bytes in one vector, odd in
//! the other: `vzxt`/`vsxt`), multiplied into words by `vmpy` (which splits even and odd
//! lanes again; a Mul's word products then by `vmpyi` with each half), rounded, and packed
//! back by the saturating `vsat` (words to halfwords), the clamp on halfwords, and
//! `vshuffe` (the low byte of each halfword), which undo the splits in reverse order. Rows
//! are the innermost dimension after merging every run of dimensions the views walk
//! contiguously; each operand's row is contiguous or one broadcast byte (splatted); tails
//! shorter than a vector run the scalar code.

use std::fmt::Write;

use edgecc_program::{DType, Kernel, QBinary, QBinaryOp, View};

use crate::Error;
use crate::c::{at, check_rank, close_loops, ctype, open_loops, ptr};

/// Helpers of the plain-C form (in files with a QBinary kernel).
pub(crate) const PRELUDE: &str = r#"
/* QBinary's result from the split sums H and L: H' = H + (L >> 15), rounded by s - 15
   as t = H' >> (s - 16), (t >> 1) + (t & 1) (no overflow), then the zero point and the
   clamp. */
EC_FN int32_t ec_qround(int32_t h, int32_t l, int s, int32_t zp, int32_t lo, int32_t hi) {
    const int32_t t = (h + (l >> 15)) >> (s - 16);
    const int32_t r = (t >> 1) + (t & 1) + zp;
    return r < lo ? lo : r > hi ? hi : r;
}
/* (x·ma + y·mb) / 2^s with ma = mah·2^15 + mal, mb = mbh·2^15 + mbl. */
EC_FN int32_t ec_qadd(int32_t x, int32_t y, int32_t mah, int32_t mal, int32_t mbh, int32_t mbl,
                      int s, int32_t zp, int32_t lo, int32_t hi) {
    return ec_qround(x * mah + y * mbh, x * mal + y * mbl, s, zp, lo, hi);
}
/* x·y·m / 2^s with m = mh·2^15 + ml. */
EC_FN int32_t ec_qmul(int32_t x, int32_t y, int32_t mh, int32_t ml, int s, int32_t zp,
                      int32_t lo, int32_t hi) {
    const int32_t p = x * y;
    return ec_qround(p * mh, p * ml, s, zp, lo, hi);
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
/* H' = H + (L >> 15) on each vector of a pair. */
EC_FN HVX_VectorPair ec_vjoin(HVX_VectorPair h, HVX_VectorPair l) {
    return Q6_W_vcombine_VV(Q6_Vw_vadd_VwVw(Q6_V_hi_W(h), Q6_Vw_vasr_VwR(Q6_V_hi_W(l), 15)),
                            Q6_Vw_vadd_VwVw(Q6_V_lo_W(h), Q6_Vw_vasr_VwR(Q6_V_lo_W(l), 15)));
}
/* ec_qround on words: vavg(H' >> (s - 16), 0):rnd, plus the zero point. */
EC_FN HVX_Vector ec_vqround(HVX_Vector h, int s, int32_t zp) {
    const HVX_Vector t = Q6_Vw_vavg_VwVw_rnd(Q6_Vw_vasr_VwR(h, s - 16), Q6_V_vzero());
    return Q6_Vw_vadd_VwVw(t, Q6_V_vsplat_R(zp));
}
/* The words H' of the even bytes (e) and of the odd bytes (o), each split even/odd by
   vmpy, back to 128 bytes in order, clamped to [lo, hi] (saturating to halfwords first
   changes nothing: lo and hi lie within a byte's range). */
EC_FN HVX_Vector ec_vqpack(HVX_VectorPair e, HVX_VectorPair o, int s, int32_t zp, int32_t lo, int32_t hi) {
    HVX_Vector he = Q6_Vh_vsat_VwVw(ec_vqround(Q6_V_hi_W(e), s, zp), ec_vqround(Q6_V_lo_W(e), s, zp));
    HVX_Vector ho = Q6_Vh_vsat_VwVw(ec_vqround(Q6_V_hi_W(o), s, zp), ec_vqround(Q6_V_lo_W(o), s, zp));
    const HVX_Vector l = Q6_Vh_vsplat_R(lo), h = Q6_Vh_vsplat_R(hi);
    he = Q6_Vh_vmin_VhVh(Q6_Vh_vmax_VhVh(he, l), h);
    ho = Q6_Vh_vmin_VhVh(Q6_Vh_vmax_VhVh(ho, l), h);
    return Q6_Vb_vshuffe_VbVb(ho, he);
}
/* (a - za)·ma + (b - zb)·mb on 128 lanes; each multiplier's halves as halfword pairs
   (h | h << 16). */
EC_FN HVX_Vector ec_vqadd(HVX_Vector a, HVX_Vector b, int sa, int sb, int32_t za, int32_t zb,
                          int32_t mah, int32_t mal, int32_t mbh, int32_t mbl,
                          int s, int32_t zp, int32_t lo, int32_t hi) {
    const HVX_VectorPair x = ec_widen_sub(a, sa, za), y = ec_widen_sub(b, sb, zb);
    HVX_VectorPair eh = Q6_Ww_vmpy_VhRh(Q6_V_lo_W(x), mah), oh = Q6_Ww_vmpy_VhRh(Q6_V_hi_W(x), mah);
    HVX_VectorPair el = Q6_Ww_vmpy_VhRh(Q6_V_lo_W(x), mal), ol = Q6_Ww_vmpy_VhRh(Q6_V_hi_W(x), mal);
    eh = Q6_Ww_vmpyacc_WwVhRh(eh, Q6_V_lo_W(y), mbh);
    oh = Q6_Ww_vmpyacc_WwVhRh(oh, Q6_V_hi_W(y), mbh);
    el = Q6_Ww_vmpyacc_WwVhRh(el, Q6_V_lo_W(y), mbl);
    ol = Q6_Ww_vmpyacc_WwVhRh(ol, Q6_V_hi_W(y), mbl);
    return ec_vqpack(ec_vjoin(eh, el), ec_vjoin(oh, ol), s, zp, lo, hi);
}
/* (a - za)·(b - zb)·m on 128 lanes; m's halves as halfword pairs. */
EC_FN HVX_Vector ec_vqmul(HVX_Vector a, HVX_Vector b, int sa, int sb, int32_t za, int32_t zb,
                          int32_t mh, int32_t ml, int s, int32_t zp, int32_t lo, int32_t hi) {
    const HVX_VectorPair x = ec_widen_sub(a, sa, za), y = ec_widen_sub(b, sb, zb);
    const HVX_VectorPair e = Q6_Ww_vmpy_VhVh(Q6_V_lo_W(x), Q6_V_lo_W(y));
    const HVX_VectorPair o = Q6_Ww_vmpy_VhVh(Q6_V_hi_W(x), Q6_V_hi_W(y));
#define EC_TIMES(p, m) Q6_W_vcombine_VV(Q6_Vw_vmpyi_VwRh(Q6_V_hi_W(p), m), Q6_Vw_vmpyi_VwRh(Q6_V_lo_W(p), m))
    const HVX_VectorPair ej = ec_vjoin(EC_TIMES(e, mh), EC_TIMES(e, ml));
    const HVX_VectorPair oj = ec_vjoin(EC_TIMES(o, mh), EC_TIMES(o, ml));
#undef EC_TIMES
    return ec_vqpack(ej, oj, s, zp, lo, hi);
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

/// The high and low halves of a 30-bit multiplier (`m = h·2^15 + l`, `0 <= l < 2^15`).
fn halves(m: i32) -> (i32, i32) {
    (m >> 15, m & 0x7fff)
}

/// The scalar value of one output element, given C expressions for the operand bytes.
fn scalar_expr(p: &Parts, x: &str, y: &str) -> String {
    let q = p.q;
    let x = format!("(int32_t){x} - {}", q.a_zero);
    let y = format!("(int32_t){y} - {}", q.b_zero);
    let call = match q.op {
        QBinaryOp::Add { ma, mb } => {
            let ((ah, al), (bh, bl)) = (halves(ma), halves(mb));
            format!("ec_qadd({x}, {y}, {ah}, {al}, {bh}, {bl}")
        }
        QBinaryOp::Mul { m } => {
            let (h, l) = halves(m);
            format!("ec_qmul({x}, {y}, {h}, {l}")
        }
    };
    format!(
        "({}){call}, {}, {}, {}, {})",
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
    // A multiplier half in both halfwords of a word, for `vmpy(Vu.h, Rt.h)`.
    let pair = |h: i32| format!("(int32_t){}u", (h as u16 as u32) * 0x1_0001);
    let (sa, sb) = (
        i32::from(p.a_dtype == DType::I8),
        i32::from(p.b_dtype == DType::I8),
    );
    let call = match q.op {
        QBinaryOp::Add { ma, mb } => {
            let ((ah, al), (bh, bl)) = (halves(ma), halves(mb));
            format!(
                "ec_vqadd(va, vb, {sa}, {sb}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                q.a_zero,
                q.b_zero,
                pair(ah),
                pair(al),
                pair(bh),
                pair(bl),
                q.shift,
                q.zero_point,
                q.lo,
                q.hi
            )
        }
        QBinaryOp::Mul { m } => {
            let (h, l) = halves(m);
            format!(
                "ec_vqmul(va, vb, {sa}, {sb}, {}, {}, {}, {}, {}, {}, {}, {})",
                q.a_zero,
                q.b_zero,
                pair(h),
                pair(l),
                q.shift,
                q.zero_point,
                q.lo,
                q.hi
            )
        }
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
