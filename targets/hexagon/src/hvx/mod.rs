//! int8 kernels in HVX intrinsics (128-byte vectors, v66 and later): the GEMM (`gemm`)
//! and convolution (`conv`, any groups, so depthwise too) on `vrmpy`, which adds four
//! u8 × s8 (or s8 × s8) products into each of a vector's 32 int32 lanes; 8-bit max
//! pooling (`pool`); the byte tables every int8 elementwise op becomes (`table`); and the
//! integer Add/Mul (`crate::qbinary`, which keeps its plain-C and HVX forms together).
//! This module dispatches, and holds the HVX prelude and what the kernels share.
//!
//! An i8 input is flipped to u8 (`x ^ 0x80` is `x + 128`) with its zero point moved by
//! 128, so one instruction form serves both signednesses.
//!
//! The zero point never enters the inner loop: `Σ (x − z)·w = Σ x·w − z·Σ w`, and `z·Σ w`
//! is folded into the bias at compile time (or once per kernel for a run-time zero point).
//! int32 arithmetic wraps in both forms, so the sums equal the executor's bit for bit.
//! Requantization runs on the vectors too (`ec_vrequant`: the exact 64-bit product from
//! `vmpye`/`vmpyo`, rounding with carry, saturation), then each lane is stored as a byte.

use std::fmt::Write;

use edgecc_program::{Buffer, DType, Kernel, PoolKind, Program, QuantOut, ZeroPoint};

use crate::Error;
use crate::c::{ctype, ptr};

mod conv;
mod gemm;
mod pool;
mod table;

use conv::{Conv, MAX_CONV_K};
use gemm::Gemm;
use pool::max_pool;
use table::byte_table;

/// HVX declarations, after the common prelude.
pub(crate) fn prelude() -> String {
    let mut s = String::from(PRELUDE);
    // ec_taps4: four taps of 128 pixels each (unaligned loads) regrouped as four vectors
    // of 32 pixels × 4 taps, the operand layout of vrmpy. Two rounds of two-vector
    // shuffles; clang lowers each to HVX shuffles.
    let pairs = |base: usize| -> String {
        (0..64)
            .flat_map(|i| [base + i, 128 + base + i])
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let quads = |base: usize| -> String {
        (0..32)
            .flat_map(|i| {
                let j = 2 * (base + i);
                [j, j + 1, 128 + j, 129 + j]
            })
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = write!(
        s,
        "EC_FN void ec_taps4(const uint8_t *b, const int32_t *off, HVX_Vector *o) {{
    const ec_b128 t0 = *(const ec_bu128 *)(b + off[0]), t1 = *(const ec_bu128 *)(b + off[1]);
    const ec_b128 t2 = *(const ec_bu128 *)(b + off[2]), t3 = *(const ec_bu128 *)(b + off[3]);
    const ec_b128 lo01 = __builtin_shufflevector(t0, t1, {p0});
    const ec_b128 hi01 = __builtin_shufflevector(t0, t1, {p1});
    const ec_b128 lo23 = __builtin_shufflevector(t2, t3, {p0});
    const ec_b128 hi23 = __builtin_shufflevector(t2, t3, {p1});
    o[0] = (HVX_Vector)__builtin_shufflevector(lo01, lo23, {q0});
    o[1] = (HVX_Vector)__builtin_shufflevector(lo01, lo23, {q1});
    o[2] = (HVX_Vector)__builtin_shufflevector(hi01, hi23, {q0});
    o[3] = (HVX_Vector)__builtin_shufflevector(hi01, hi23, {q1});
}}
",
        p0 = pairs(0),
        p1 = pairs(64),
        q0 = quads(0),
        q1 = quads(32),
    );
    // ec_narrow4: byte 0 of every word of four vectors (requantized lanes, all within a
    // byte), in order, as one vector of 128 bytes.
    let words = |from: usize| -> String {
        (0..32)
            .map(|i| (4 * i + from).to_string())
            .chain((0..32).map(|i| (128 + 4 * i + from).to_string()))
            .chain((0..64).map(|_| "-1".to_string()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let halves: String = (0..64)
        .chain(128..192)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let _ = write!(
        s,
        "EC_FN HVX_Vector ec_narrow4(HVX_Vector a, HVX_Vector b, HVX_Vector c, HVX_Vector d) {{
    const ec_b128 ab = __builtin_shufflevector((ec_b128)a, (ec_b128)b, {w});
    const ec_b128 cd = __builtin_shufflevector((ec_b128)c, (ec_b128)d, {w});
    return (HVX_Vector)__builtin_shufflevector(ab, cd, {halves});
}}
",
        w = words(0),
    );
    s
}

const PRELUDE: &str = r#"
#if !defined(__HVX__) || __HVX_LENGTH__ != 128
#error "this file uses 128-byte HVX: compile with -mhvx -mhvx-length=128b (or emit it with --hvx off)"
#endif
#include <hexagon_types.h>
#include <hvx_hexagon_protos.h>

typedef uint8_t ec_b128 __attribute__((vector_size(128)));
typedef uint8_t ec_bu128 __attribute__((vector_size(128), aligned(1)));

/* Four activation bytes as one little-endian word, from any alignment (Hexagon traps on
   unaligned word loads); `n` < 4 reads only that many bytes, the rest are 0. */
EC_FN uint32_t ec_ld32(const uint8_t *p, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

/* Stores lanes [l, l + n) of v at dst, any alignment (1 <= n, l + n <= 128): the vector
   is rotated so lane l sits at dst's offset in its aligned block, then one or two
   predicated aligned stores write exactly those bytes. */
EC_FN void ec_store_lanes(uint8_t *dst, HVX_Vector v, int32_t l, int32_t n) {
    const int32_t a = (int32_t)((uint32_t)dst & 127u);
    HVX_Vector *base = (HVX_Vector *)(void *)(dst - a);
    const HVX_Vector r = Q6_V_vror_VR(v, (l - a) & 127);
    const HVX_VectorPred upto = Q6_Q_vsetq2_R(a + n > 128 ? 128 : a + n);
    Q6_vmem_QRIV(Q6_Q_and_QQn(upto, Q6_Q_vsetq_R(a)), base, r);
    if (a + n > 128) Q6_vmem_QRIV(Q6_Q_vsetq_R(a + n - 128), base + 1, r);
}

/* d[0, n) = s[0, n) ^ flip. Vector loads only while all 128 bytes lie before lim (the
   end of what may be read from s's buffer); the rest byte by byte. */
EC_FN void ec_copy_row(uint8_t *d, const uint8_t *s, int32_t n, uint8_t flip, const uint8_t *lim) {
    const int32_t avail = (int32_t)(lim - s);
    int32_t x = 0;
    for (; x < n && x + 128 <= avail; x += 128) {
        const HVX_Vector v = Q6_V_vxor_VV(*(const HVX_UVector *)(s + x), Q6_V_vsplat_R(flip * 0x01010101));
        ec_store_lanes(d + x, v, 0, n - x < 128 ? n - x : 128);
    }
    for (; x < n; x++) d[x] = (uint8_t)(s[x] ^ flip);
}

/* ec_requant on 32 lanes, bit for bit: the 64-bit product acc * m (the pair is the
   exact product, hi:lo), plus 2^(s-1) with the carry, shifted right by s, saturated to
   int32 (the clamp below makes that exact), plus the zero point, clamped. `s` is a
   literal at every call, so the branches fold away. */
EC_FN HVX_Vector ec_vrequant(HVX_Vector acc, HVX_Vector m, int s, int32_t zp, int32_t lo, int32_t hi) {
    HVX_VectorPair p = Q6_W_vmpye_VwVuh(acc, m);
    p = Q6_W_vmpyoacc_WVwVh(p, acc, m);
    HVX_Vector h = Q6_V_hi_W(p), l = Q6_V_lo_W(p), r;
    if (s <= 32) {
        HVX_Vector rnd = Q6_V_vsplat_R((int32_t)(1u << (s - 1)));
        HVX_Vector l2 = Q6_Vw_vadd_VwVw(l, rnd);
        h = Q6_Vw_condacc_QVwVw(Q6_Q_vcmp_gt_VuwVuw(rnd, l2), h, Q6_V_vsplat_R(1));
        l = l2;
    } else {
        h = Q6_Vw_vadd_VwVw(h, Q6_V_vsplat_R((int32_t)(1u << (s - 33))));
    }
    if (s < 32) {
        /* The result fits int32 exactly when hi >> (s - 1) is 0 or -1. */
        HVX_Vector ovf = Q6_Vw_vasr_VwR(h, s - 1);
        r = Q6_V_vor_VV(Q6_Vw_vasl_VwR(h, 32 - s), Q6_Vuw_vlsr_VuwR(l, s));
        r = Q6_V_vmux_QVV(Q6_Q_vcmp_gt_VwVw(ovf, Q6_V_vzero()), Q6_V_vsplat_R(INT32_MAX), r);
        r = Q6_V_vmux_QVV(Q6_Q_vcmp_gt_VwVw(Q6_V_vsplat_R(-1), ovf), Q6_V_vsplat_R(INT32_MIN), r);
    } else {
        r = Q6_Vw_vasr_VwR(h, s - 32);
    }
    r = Q6_Vw_vadd_VwVw_sat(r, Q6_V_vsplat_R(zp));
    r = Q6_Vw_vmax_VwVw(r, Q6_V_vsplat_R(lo));
    return Q6_Vw_vmin_VwVw(r, Q6_V_vsplat_R(hi));
}
"#;

/// Emits `k` with HVX and returns true, or returns false for the plain-C fallback.
pub(crate) fn kernel(s: &mut String, k: &Kernel, p: &Program) -> Result<bool, Error> {
    match k {
        Kernel::QGemm {
            m,
            n,
            k,
            a,
            a_dtype,
            a_zero,
            b,
            bias,
            out,
            c,
        } => {
            if a.strides.len() != 2
                || c.strides.len() != 2
                || (a.strides[1] != 1 && *k > 1)
                || *m == 0
                || *n == 0
                || *k == 0
            {
                return Ok(false);
            }
            let g = Gemm {
                m: *m,
                n: *n,
                k: *k,
                a_ptr: ptr(a.buf, "u8a"),
                a_offset: a.offset,
                a_row: a.strides[0],
                a_aligned: word_aligned(a.buf, a.offset) && a.strides[0] % 4 == 0,
                signed: *a_dtype == DType::I8,
                zero: *a_zero,
                a_dtype: *a_dtype,
                b: const_bytes(p, *b, (*k as usize) * (*n as usize))?,
                bias: match bias {
                    Some(c) => Some(const_i32(p, *c, *n as usize)?),
                    None => None,
                },
                out,
                c_ptr: ptr(c.buf, ctype(out.dtype())),
                c_offset: c.offset,
                c_strides: (c.strides[0], c.strides[1]),
            };
            g.emit(s)?;
            Ok(true)
        }
        Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial,
            window,
            input,
            in_dtype,
            in_zero,
            weight,
            bias,
            out,
            output,
            ..
        } => {
            let g = *groups;
            if g == 0 || c_in % g != 0 || c_out % g != 0 {
                return Err(Error(
                    "malformed program: groups must divide c_in and c_out".into(),
                ));
            }
            let kk = (c_in / g) as u64 * window.kh as u64 * window.kw as u64;
            let pixels = spatial.out_h as u64 * spatial.out_w as u64;
            if kk > MAX_CONV_K || kk == 0 || pixels == 0 || spatial.n == 0 || *c_out == 0 {
                return Ok(false);
            }
            let conv = Conv {
                in_limit: readable(p, *input),
                c_in: *c_in,
                c_out: *c_out,
                groups: g,
                sp: *spatial,
                w: *window,
                input: *input,
                signed: *in_dtype == DType::I8,
                in_dtype: *in_dtype,
                zero: *in_zero,
                weight: const_bytes(p, *weight, (*c_out as usize) * kk as usize)?,
                bias: match bias {
                    Some(c) => Some(const_i32(p, *c, *c_out as usize)?),
                    None => None,
                },
                out,
                output: *output,
            };
            conv.emit(s)?;
            Ok(true)
        }
        Kernel::Pool {
            kind: PoolKind::Max,
            dtype: dtype @ (DType::U8 | DType::I8),
            channels,
            spatial,
            window,
            input,
            output,
        } => Ok(max_pool(
            s,
            readable(p, *input),
            *dtype == DType::I8,
            *channels,
            spatial,
            window,
            (*input, *output),
        )),
        Kernel::Gather {
            outer: 1,
            axis_len: 256,
            inner: 1,
            count,
            elem_bytes: 1,
            data: Buffer::Const(table),
            indices,
            index_bytes: 1,
            output,
            elementwise: false,
        } => {
            byte_table(s, const_bytes(p, *table, 256)?, *count, *indices, *output);
            Ok(true)
        }
        Kernel::QBinary { .. } => crate::qbinary::emit_hvx(s, k),
        _ => Ok(false),
    }
}

/// How many bytes may be read from the start of `buf`: to the end of its input, output,
/// constant or the arena. Vector loads of a row may run past the row, never past this.
pub(super) fn readable(p: &Program, buf: Buffer) -> u64 {
    match buf {
        Buffer::Arena { offset } => p.arena_size.saturating_sub(offset),
        Buffer::Input(i) => p.inputs.get(i as usize).map_or(0, |t| t.byte_size()),
        Buffer::Output(i) => p.outputs.get(i as usize).map_or(0, |t| t.byte_size()),
        Buffer::Const(c) => p
            .consts
            .get(c.0 as usize)
            .map_or(0, |c| c.data.len() as u64),
    }
}

/// Whether `buf + offset` is 4-byte aligned whatever the caller passes: the arena is
/// at least 64-byte aligned (the ABI) and constants are 128-byte aligned; inputs and
/// outputs are the caller's and may be anywhere.
pub(super) fn word_aligned(buf: Buffer, offset: u64) -> bool {
    matches!(buf, Buffer::Arena { .. } | Buffer::Const(_)) && offset.is_multiple_of(4)
}

pub(super) fn const_bytes(
    p: &Program,
    c: edgecc_program::ConstId,
    len: usize,
) -> Result<&[u8], Error> {
    match p.consts.get(c.0 as usize) {
        Some(k) if k.data.len() >= len => Ok(&k.data[..len]),
        _ => Err(Error(format!(
            "malformed program: constant {} is missing or shorter than {len} bytes",
            c.0
        ))),
    }
}

pub(super) fn const_i32(
    p: &Program,
    c: edgecc_program::ConstId,
    len: usize,
) -> Result<Vec<i32>, Error> {
    let b = const_bytes(p, c, len * 4)?;
    Ok(b.chunks_exact(4)
        .map(|w| i32::from_le_bytes(w.try_into().unwrap()))
        .collect())
}

/// A `static const` array of `T` aligned for vector loads.
pub(super) fn array<T: std::fmt::Display>(s: &mut String, ty: &str, name: &str, items: &[T]) {
    let _ = write!(
        s,
        "    static const {ty} {name}[{}] __attribute__((aligned(128))) = {{",
        items.len().max(1)
    );
    for (i, x) in items.iter().enumerate() {
        if i % 24 == 0 {
            s.push_str("\n       ");
        }
        let _ = write!(s, " {x},");
    }
    if items.is_empty() {
        s.push_str(" 0");
    }
    s.push_str("\n    };\n");
}

/// The store of lane value `acc` (already requantized by [`requant`]) at `dst[idx]`.
pub(super) fn store(out: &QuantOut, dst: &str, idx: &str) -> String {
    format!("{dst}[{idx}] = ({})acc;", ctype(out.dtype()))
}

/// `acc{j} = ec_vrequant(acc{j}, m, ..)` for a requantizing output, with `m` the
/// multiplier vector expression; nothing for int32 outputs.
pub(super) fn requant(
    s: &mut String,
    out: &QuantOut,
    j: impl std::fmt::Display,
    m: &str,
    ind: &str,
) {
    if let QuantOut::Requant(r) = out {
        let _ = writeln!(
            s,
            "{ind}acc{j} = ec_vrequant(acc{j}, {m}, {}, {}, {}, {});",
            r.shift, r.zero_point, r.lo, r.hi
        );
    }
}

/// The zero point as a u8-domain value (`z + 128` for i8 inputs), as a C expression.
pub(super) fn zero_expr(z: ZeroPoint, d: DType, signed: bool) -> String {
    let flip = if signed { " + 128" } else { "" };
    match z {
        ZeroPoint::Const(v) => format!("{}", v + if signed { 128 } else { 0 }),
        ZeroPoint::Runtime(b) => format!("((int32_t){}[0]{flip})", ptr(b, ctype(d))),
    }
}
