//! int8 kernels in HVX intrinsics (128-byte vectors, v66 and later).
//!
//! Both kernels are built on `vrmpy`, which adds four u8 × s8 (or s8 × s8) products into
//! each of a vector's 32 int32 lanes:
//!
//! - **GEMM** vectorizes over 32 output columns. The weights are packed at compile time
//!   into one 128-byte vector per (32 columns, 4 k) — lane `j` holds `b[4q..4q+4, j]` — and
//!   each row's 4 activation bytes are splatted across a vector. Four rows share each
//!   weight load.
//! - **Convolution** (any groups, so depthwise too) vectorizes over 32 output pixels of an
//!   NCHW plane. A block of 32 pixels is gathered (im2col) into a stack buffer laid out
//!   `[k / 4][pixel][k % 4]`, so each vector holds 4 taps for 32 pixels, and the weights
//!   become scalar words `w[co, 4q..4q+4]` (`vrmpy(Vu.ub, Rt.b)`). Four output channels
//!   share each im2col load. An i8 input is flipped to u8 (`x ^ 0x80` is `x + 128`) with
//!   its zero point moved by 128, so one instruction form serves both.
//!
//! The zero point never enters the inner loop: `Σ (x − z)·w = Σ x·w − z·Σ w`, and `z·Σ w`
//! is folded into the bias at compile time (or once per kernel for a run-time zero point).
//! int32 arithmetic wraps in both forms, so the sums equal the executor's bit for bit.
//! Requantization runs on the vectors too (`ec_vrequant`: the exact 64-bit product from
//! `vmpye`/`vmpyo`, rounding with carry, saturation), then each lane is stored as a byte.

use std::fmt::Write;

use edgecc_program::{
    Buffer, DType, Kernel, PoolKind, Program, QuantOut, Spatial, Window, ZeroPoint,
};

use crate::Error;
use crate::c::{ctype, ptr};

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

/// The largest reduction (`c_in / groups · kh · kw`) the convolution handles: its im2col
/// block is `K · 32` bytes of stack (16 KiB here). Larger ones use the plain-C kernel.
const MAX_CONV_K: u64 = 512;

/// The stack a max pool's padded plane may take (and again its stride-1 maxima).
const MAX_POOL_BAND: u64 = 8 * 1024;

/// The stack a stride-1 convolution's padded input band may take.
const MAX_BAND: u32 = 16 * 1024;

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

/// A 256-entry byte table (every int8 elementwise op after `fold-requant`) with `vlut32`:
/// each instruction looks up the 32 entries of one segment (`index >> 5`), giving 0 for
/// indices in other segments, so eight of them OR-ed cover the table, 128 bytes at a time.
/// Every byte is a valid index (u8, or i8 wrapped by 256), so nothing is checked. Two
/// vectors hold the table in the order `vlut32` reads: entry `i` of each 128-entry half
/// at byte `2·(i mod 64) + i / 64`.
fn byte_table(s: &mut String, table: &[u8], count: u64, indices: Buffer, output: Buffer) {
    let mut lut = vec![0u8; 256];
    for (i, &v) in table.iter().enumerate() {
        let (half, j) = (i / 128, i % 128);
        lut[half * 128 + 2 * (j % 64) + j / 64] = v;
    }
    array(s, "uint8_t", "lut", &lut);
    let full = count - count % 128;
    let _ = writeln!(
        s,
        "    const u8a *X = {};
    u8a *Y = {};
    const HVX_Vector lo = *(const HVX_Vector *)lut, hi = *(const HVX_Vector *)(lut + 128);
    for (ix_t i = 0; i < {full}; i += 128) {{
        const HVX_Vector x = *(const HVX_UVector *)(X + i);
        HVX_Vector y = Q6_Vb_vlut32_VbVbR(x, lo, 0);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, lo, 1);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, lo, 2);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, lo, 3);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 4);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 5);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 6);
        y = Q6_Vb_vlut32or_VbVbVbR(y, x, hi, 7);
        *(HVX_UVector *)(Y + i) = y;
    }}
    for (ix_t i = {full}; i < {count}; i++) {{
        const uint8_t x = X[i];
        Y[i] = lut[(x & 128) + 2 * (x & 63) + ((x >> 6) & 1)];
    }}",
        ptr(indices, "u8a"),
        ptr(output, "u8a"),
    );
}

/// 8-bit max pooling on the padded wide grid, as the stride-1 convolution: each plane is
/// copied with its padding written out (the dtype's minimum), the stride-1 maximum of
/// every window is taken 128 positions at a time (one unaligned load and `vmax` per
/// tap), and the strided outputs are picked from it. i8 is flipped to u8 (`x ^ 0x80`
/// keeps the order) so `vmaxub` serves both. Returns false (plain C) for planes larger
/// than the stack band.
fn max_pool(
    s: &mut String,
    limit: u64,
    signed: bool,
    channels: u32,
    sp: &Spatial,
    w: &Window,
    (input, output): (Buffer, Buffer),
) -> bool {
    let ext_h = (w.kh.max(1) - 1) * w.dilation_h;
    let ext_w = (w.kw.max(1) - 1) * w.dilation_w;
    if sp.out_h == 0 || sp.out_w == 0 || channels == 0 || w.kh == 0 || w.kw == 0 {
        return false;
    }
    // Rows and columns of the padded plane, widened if a window reaches past the end
    // padding (ceil mode); those taps read the minimum, i.e. are ignored.
    let hp = (sp.in_h + w.pad_top + w.pad_bottom).max((sp.out_h - 1) * w.stride_h + ext_h + 1);
    let wp = (sp.in_w + w.pad_left + w.pad_right).max((sp.out_w - 1) * w.stride_w + ext_w + 1);
    let used = hp as u64 * wp as u64;
    let need =
        ((sp.out_h - 1) * w.stride_h) as u64 * wp as u64 + ((sp.out_w - 1) * w.stride_w) as u64 + 1;
    let need = need.next_multiple_of(128);
    if used + 128 > MAX_POOL_BAND || need > MAX_POOL_BAND {
        return false;
    }
    let band = used + 128;
    let taps: Vec<u32> = (0..w.kh)
        .flat_map(|ky| (0..w.kw).map(move |kx| ky * w.dilation_h * wp + kx * w.dilation_w))
        .collect();
    array(s, "int32_t", "toff", &taps);
    let flip = if signed { "0x80" } else { "0" };
    let t = if signed { "i8a" } else { "u8a" };
    let Spatial {
        in_h,
        in_w,
        out_h,
        out_w,
        ..
    } = *sp;
    let _ = writeln!(
        s,
        "    const u8a *X = {};
    {t} *Y = {};
    uint8_t band[{band}] __attribute__((aligned(128)));
    uint8_t mb[{need}] __attribute__((aligned(128)));
    for (ix_t i = {used}; i < {band}; i++) band[i] = 0;
    for (ix_t c = 0; c < {channels}; c++) {{
        const u8a *xc = X + c * {};
        for (ix_t y = 0; y < {hp}; y++) {{
            uint8_t *d = band + y * {wp};
            const ix_t iy = y - {};
            if (iy < 0 || iy >= {in_h}) {{
                for (ix_t x = 0; x < {wp}; x++) d[x] = 0;
                continue;
            }}
            const u8a *xr = xc + iy * {in_w};
            for (ix_t x = 0; x < {}; x++) d[x] = 0;
            ec_copy_row(d + {}, xr, {in_w}, {flip}, X + {limit});
            for (ix_t x = {}; x < {wp}; x++) d[x] = 0;
        }}
        for (ix_t p0 = 0; p0 < {need}; p0 += 128) {{
            HVX_Vector m = *(const HVX_UVector *)(band + p0);
            for (ix_t t = 1; t < {}; t++) m = Q6_Vub_vmax_VubVub(m, *(const HVX_UVector *)(band + p0 + toff[t]));
            *(HVX_Vector *)(mb + p0) = m;
        }}
        {t} *yc = Y + c * {};
        for (ix_t oy = 0; oy < {out_h}; oy++)
        for (ix_t ox = 0; ox < {out_w}; ox++)
            yc[oy * {out_w} + ox] = ({t})(mb[oy * {} + ox * {}] ^ {flip});
    }}",
        ptr(input, "u8a"),
        ptr(output, t),
        in_h * in_w,
        w.pad_top,
        w.pad_left,
        w.pad_left,
        w.pad_left + in_w,
        taps.len(),
        out_h * out_w,
        w.stride_h * wp,
        w.stride_w,
    );
    true
}

/// How many bytes may be read from the start of `buf`: to the end of its input, output,
/// constant or the arena. Vector loads of a row may run past the row, never past this.
fn readable(p: &Program, buf: Buffer) -> u64 {
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
fn word_aligned(buf: Buffer, offset: u64) -> bool {
    matches!(buf, Buffer::Arena { .. } | Buffer::Const(_)) && offset.is_multiple_of(4)
}

fn const_bytes(p: &Program, c: edgecc_program::ConstId, len: usize) -> Result<&[u8], Error> {
    match p.consts.get(c.0 as usize) {
        Some(k) if k.data.len() >= len => Ok(&k.data[..len]),
        _ => Err(Error(format!(
            "malformed program: constant {} is missing or shorter than {len} bytes",
            c.0
        ))),
    }
}

fn const_i32(p: &Program, c: edgecc_program::ConstId, len: usize) -> Result<Vec<i32>, Error> {
    let b = const_bytes(p, c, len * 4)?;
    Ok(b.chunks_exact(4)
        .map(|w| i32::from_le_bytes(w.try_into().unwrap()))
        .collect())
}

/// A `static const` array of `T` aligned for vector loads.
fn array<T: std::fmt::Display>(s: &mut String, ty: &str, name: &str, items: &[T]) {
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
fn store(out: &QuantOut, dst: &str, idx: &str) -> String {
    format!("{dst}[{idx}] = ({})acc;", ctype(out.dtype()))
}

/// `acc{j} = ec_vrequant(acc{j}, m, ..)` for a requantizing output, with `m` the
/// multiplier vector expression; nothing for int32 outputs.
fn requant(s: &mut String, out: &QuantOut, j: impl std::fmt::Display, m: &str, ind: &str) {
    if let QuantOut::Requant(r) = out {
        let _ = writeln!(
            s,
            "{ind}acc{j} = ec_vrequant(acc{j}, {m}, {}, {}, {}, {});",
            r.shift, r.zero_point, r.lo, r.hi
        );
    }
}

/// The zero point as a u8-domain value (`z + 128` for i8 inputs), as a C expression.
fn zero_expr(z: ZeroPoint, d: DType, signed: bool) -> String {
    let flip = if signed { " + 128" } else { "" };
    match z {
        ZeroPoint::Const(v) => format!("{}", v + if signed { 128 } else { 0 }),
        ZeroPoint::Runtime(b) => format!("((int32_t){}[0]{flip})", ptr(b, ctype(d))),
    }
}

struct Gemm<'a> {
    m: u32,
    n: u32,
    k: u32,
    a_ptr: String,
    a_offset: u64,
    a_row: i64,
    a_aligned: bool,
    signed: bool,
    zero: ZeroPoint,
    a_dtype: DType,
    b: &'a [u8],
    bias: Option<Vec<i32>>,
    out: &'a QuantOut,
    c_ptr: String,
    c_offset: u64,
    c_strides: (i64, i64),
}

impl Gemm<'_> {
    fn emit(&self, s: &mut String) -> Result<(), Error> {
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let nb = n.div_ceil(32);
        let k4 = k.div_ceil(4);
        // Packed weights: vector (jb, q), lane j, byte t = b[4q + t, 32 jb + j].
        let mut packed = vec![0i8; nb * k4 * 128];
        let mut colsum = vec![0i32; nb * 32];
        for kk in 0..k {
            for (j, cs) in colsum.iter_mut().enumerate().take(n) {
                let v = self.b[kk * n + j] as i8;
                let (jb, jl) = (j / 32, j % 32);
                packed[(jb * k4 + kk / 4) * 128 + jl * 4 + kk % 4] = v;
                *cs = cs.wrapping_add(v as i32);
            }
        }
        array(s, "int8_t", "wp", &packed);
        let bias: Vec<i32> = (0..nb * 32)
            .map(|j| {
                self.bias
                    .as_ref()
                    .and_then(|b| b.get(j).copied())
                    .unwrap_or(0)
            })
            .collect();
        match self.zero {
            ZeroPoint::Const(z) => {
                let folded: Vec<i32> = bias
                    .iter()
                    .zip(&colsum)
                    .map(|(b, cs)| b.wrapping_sub(z.wrapping_mul(*cs)))
                    .collect();
                array(s, "int32_t", "bz", &folded);
            }
            ZeroPoint::Runtime(_) => {
                array(s, "int32_t", "bb", &bias);
                array(s, "int32_t", "cs", &colsum);
                let _ = writeln!(
                    s,
                    "    const int32_t zp = {};",
                    zero_expr(self.zero, self.a_dtype, false)
                );
            }
        }
        if let QuantOut::Requant(r) = self.out
            && r.multiplier.len() != 1
        {
            if r.multiplier.len() < n {
                return Err(Error(
                    "malformed program: fewer multipliers than channels".into(),
                ));
            }
            let mut mv = r.multiplier[..n].to_vec();
            mv.resize(nb * 32, 0);
            array(s, "int32_t", "mv", &mv);
        }
        let _ = writeln!(s, "    const u8a *A = {} + {};", self.a_ptr, self.a_offset);
        if !(self.c_strides.1 == 1 && matches!(self.out, QuantOut::Requant(_))) {
            s.push_str("    int32_t acc_out[4][32] __attribute__((aligned(128)));\n");
        }
        let full = m - m % 4;
        if full > 0 {
            let _ = writeln!(s, "    for (ix_t i = 0; i < {full}; i += 4) {{");
            self.rows(s, 4, nb, k4);
            s.push_str("    }\n");
        }
        if m % 4 != 0 {
            let _ = writeln!(s, "    for (ix_t i = {full}; i < {m}; i++) {{");
            self.rows(s, 1, nb, k4);
            s.push_str("    }\n");
        }
        Ok(())
    }

    /// The body for `r` rows starting at `i`: every column block, the k loop, the stores.
    fn rows(&self, s: &mut String, r: usize, nb: usize, k4: usize) {
        let (n, k) = (self.n as usize, self.k as usize);
        let kf = k / 4;
        let vrmpy = if self.signed {
            "Q6_Vw_vrmpyacc_VwVbVb"
        } else {
            "Q6_Vw_vrmpyacc_VwVubVb"
        };
        let ld = |row: usize, at: &str, bytes: usize| {
            if self.a_aligned && bytes == 4 {
                format!("*(const uint32_t *)(r{row} + {at})")
            } else {
                format!("ec_ld32(r{row} + {at}, {bytes})")
            }
        };
        let _ = writeln!(s, "        for (ix_t jb = 0; jb < {nb}; jb++) {{");
        match self.zero {
            ZeroPoint::Const(_) => {
                s.push_str(
                    "            const HVX_Vector init = *(const HVX_Vector *)&bz[jb * 32];\n",
                );
            }
            ZeroPoint::Runtime(_) => {
                s.push_str(
                    "            int32_t ib[32] __attribute__((aligned(128)));\n            for (ix_t j = 0; j < 32; j++) ib[j] = (int32_t)((uint32_t)bb[jb * 32 + j] - (uint32_t)zp * (uint32_t)cs[jb * 32 + j]);\n            const HVX_Vector init = *(const HVX_Vector *)ib;\n",
                );
            }
        }
        let _ = writeln!(
            s,
            "            const HVX_Vector *w = (const HVX_Vector *)&wp[jb * {}];",
            k4 * 128
        );
        for row in 0..r {
            let _ = writeln!(
                s,
                "            HVX_Vector acc{row} = init;\n            const u8a *r{row} = A + (i + {row}) * {};",
                self.a_row
            );
        }
        if kf > 0 {
            let _ = writeln!(
                s,
                "            for (ix_t q = 0; q < {kf}; q++) {{\n                const HVX_Vector wv = w[q];"
            );
            for row in 0..r {
                let _ = writeln!(
                    s,
                    "                acc{row} = {vrmpy}(acc{row}, Q6_V_vsplat_R((int32_t){}), wv);",
                    ld(row, "4 * q", 4)
                );
            }
            s.push_str("            }\n");
        }
        if k % 4 != 0 {
            for row in 0..r {
                let _ = writeln!(
                    s,
                    "            acc{row} = {vrmpy}(acc{row}, Q6_V_vsplat_R((int32_t){}), w[{kf}]);",
                    ld(row, &format!("{}", 4 * kf), k % 4)
                );
            }
        }
        let mvec = match self.out {
            QuantOut::Requant(q) if q.multiplier.len() == 1 => {
                format!("Q6_V_vsplat_R({})", q.multiplier[0])
            }
            _ => "*(const HVX_Vector *)&mv[jb * 32]".to_string(),
        };
        let last = n - (nb - 1) * 32;
        let (c0, c1) = self.c_strides;
        if c1 == 1 && matches!(self.out, QuantOut::Requant(_)) {
            // Contiguous byte rows: narrow each vector and store its columns at once.
            let _ = writeln!(
                s,
                "            const ix_t nj = jb == {} ? {last} : 32;",
                nb - 1
            );
            for row in 0..r {
                requant(s, self.out, row, &mvec, "            ");
                let _ = writeln!(
                    s,
                    "            ec_store_lanes((uint8_t *)({} + {} + (i + {row}) * {c0} + jb * 32), ec_narrow4(acc{row}, acc{row}, acc{row}, acc{row}), 0, nj);",
                    self.c_ptr, self.c_offset
                );
            }
            s.push_str("        }\n");
            return;
        }
        for row in 0..r {
            requant(s, self.out, row, &mvec, "            ");
            let _ = writeln!(s, "            *(HVX_Vector *)acc_out[{row}] = acc{row};");
        }
        let _ = writeln!(
            s,
            "            const ix_t nj = jb == {} ? {last} : 32;\n            for (ix_t r = 0; r < {r}; r++)\n            for (ix_t j = 0; j < nj; j++) {{\n                const int32_t acc = acc_out[r][j];\n                const ix_t col = jb * 32 + j;\n                {}\n            }}\n        }}",
            nb - 1,
            store(
                self.out,
                &self.c_ptr,
                &format!("{} + (i + r) * {c0} + col * {c1}", self.c_offset),
            )
        );
    }
}

struct Conv<'a> {
    /// Bytes that may be read from the input's start (its buffer's end), for vector loads.
    in_limit: u64,
    c_in: u32,
    c_out: u32,
    groups: u32,
    sp: Spatial,
    w: Window,
    input: Buffer,
    signed: bool,
    in_dtype: DType,
    zero: ZeroPoint,
    weight: &'a [u8],
    bias: Option<Vec<i32>>,
    out: &'a QuantOut,
    output: Buffer,
}

impl Conv<'_> {
    fn emit(&self, s: &mut String) -> Result<(), Error> {
        let (g, c_out) = (self.groups as usize, self.c_out as usize);
        let cpg = (self.c_in / self.groups) as usize;
        let opg = c_out / g;
        let Window {
            kh,
            kw,
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
            ..
        } = self.w;
        let Spatial {
            n,
            in_h,
            in_w,
            out_h,
            out_w,
        } = self.sp;
        let k = cpg * (kh * kw) as usize;
        let k4 = k.div_ceil(4);
        // Weight words: w[co, 4q..4q+4] little-endian, zero past k.
        let mut words = vec![0i32; c_out * k4];
        let mut wsum = vec![0i32; c_out];
        for co in 0..c_out {
            for kk in 0..k {
                let v = self.weight[co * k + kk] as i8;
                let word = &mut words[co * k4 + kk / 4];
                *word |= ((v as u8 as u32) << (8 * (kk % 4))) as i32;
                wsum[co] = wsum[co].wrapping_add(v as i32);
            }
        }
        array(s, "int32_t", "wq", &words);
        let bias: Vec<i32> = (0..c_out)
            .map(|c| {
                self.bias
                    .as_ref()
                    .and_then(|b| b.get(c).copied())
                    .unwrap_or(0)
            })
            .collect();
        match self.zero {
            ZeroPoint::Const(z) => {
                let z = z + if self.signed { 128 } else { 0 };
                let folded: Vec<i32> = bias
                    .iter()
                    .zip(&wsum)
                    .map(|(b, ws)| b.wrapping_sub(z.wrapping_mul(*ws)))
                    .collect();
                array(s, "int32_t", "bz", &folded);
                let _ = writeln!(s, "    const uint8_t pad = {};", z as u8);
            }
            ZeroPoint::Runtime(_) => {
                array(s, "int32_t", "bb", &bias);
                array(s, "int32_t", "ws", &wsum);
                let _ = writeln!(
                    s,
                    "    const int32_t zp = {};\n    const uint8_t pad = (uint8_t)zp;",
                    zero_expr(self.zero, self.in_dtype, self.signed)
                );
            }
        }
        if let QuantOut::Requant(r) = self.out
            && r.multiplier.len() != 1
        {
            if r.multiplier.len() < c_out {
                return Err(Error(
                    "malformed program: fewer multipliers than channels".into(),
                ));
            }
            array(s, "int32_t", "mult", &r.multiplier[..c_out]);
        }
        if let Some(plan) = self.wide_plan() {
            self.emit_wide(s, plan, k, k4);
            return Ok(());
        }
        let planes = (out_h * out_w) as usize;
        let blocks = planes.div_ceil(32);
        let last = planes - (blocks - 1) * 32;
        let flip = if self.signed { " ^ 0x80" } else { "" };
        let _ = writeln!(
            s,
            "    const u8a *X = {};\n    {} *Y = {};\n    uint8_t col[{}] __attribute__((aligned(128)));\n    int32_t acc_out[4][32] __attribute__((aligned(128)));",
            ptr(self.input, "u8a"),
            ctype(self.out.dtype()),
            ptr(self.output, ctype(self.out.dtype())),
            k4 * 128
        );
        // Bytes of the last im2col word past k multiply zero weights; keep them defined.
        if !k.is_multiple_of(4) {
            let _ = writeln!(
                s,
                "    for (ix_t p = 0; p < 32; p++) *(uint32_t *)&col[{} + p * 4] = 0;",
                (k4 - 1) * 128
            );
        }
        let _ = writeln!(
            s,
            "    for (ix_t nn = 0; nn < {n}; nn++)\n    for (ix_t gr = 0; gr < {g}; gr++) {{\n        const u8a *xg = X + (nn * {} + gr * {cpg}) * {};\n        ix_t oy0 = 0, ox0 = 0;\n        for (ix_t pb = 0; pb < {blocks}; pb++) {{\n            const ix_t np = pb == {} ? {last} : 32;",
            self.c_in,
            in_h * in_w,
            blocks - 1
        );
        // im2col of the block: pixel p's tap kk at col[(kk / 4) * 128 + p * 4 + kk % 4].
        let _ = writeln!(
            s,
            "            ix_t oy = oy0, ox = ox0;\n            for (ix_t p = 0; p < np; p++) {{\n                ix_t kk = 0;\n                for (ix_t ci = 0; ci < {cpg}; ci++)\n                for (ix_t ky = 0; ky < {kh}; ky++) {{\n                    const ix_t iy = oy * {stride_h} - {pad_top} + ky * {dilation_h};\n                    const int rowok = iy >= 0 && iy < {in_h};\n                    const u8a *xr = xg + (ci * {in_h} + iy) * {in_w};\n                    for (ix_t kx = 0; kx < {kw}; kx++, kk++) {{\n                        const ix_t ix = ox * {stride_w} - {pad_left} + kx * {dilation_w};\n                        col[(kk >> 2) * 128 + p * 4 + (kk & 3)] = rowok && ix >= 0 && ix < {in_w} ? (uint8_t)(xr[ix]{flip}) : pad;\n                    }}\n                }}\n                if (++ox == {out_w}) {{ ox = 0; oy++; }}\n            }}\n            oy0 = oy; ox0 = ox;"
        );
        // Four output channels at a time share each im2col vector.
        let full = opg - opg % 4;
        let init = |c: &str| match self.zero {
            ZeroPoint::Const(_) => format!("Q6_V_vsplat_R(bz[{c}])"),
            ZeroPoint::Runtime(_) => format!(
                "Q6_V_vsplat_R((int32_t)((uint32_t)bb[{c}] - (uint32_t)zp * (uint32_t)ws[{c}]))"
            ),
        };
        let block = |s: &mut String, r: usize, co0: &str| {
            for j in 0..r {
                let _ = writeln!(
                    s,
                    "                HVX_Vector acc{j} = {};\n                const int32_t *w{j} = &wq[({co0} + {j}) * {k4}];",
                    init(&format!("{co0} + {j}"))
                );
            }
            let _ = writeln!(
                s,
                "                for (ix_t q = 0; q < {k4}; q++) {{\n                    const HVX_Vector v = ((const HVX_Vector *)col)[q];"
            );
            for j in 0..r {
                let _ = writeln!(
                    s,
                    "                    acc{j} = Q6_Vw_vrmpyacc_VwVubRb(acc{j}, v, w{j}[q]);"
                );
            }
            s.push_str("                }\n");
            for j in 0..r {
                let m = match self.out {
                    QuantOut::Requant(q) if q.multiplier.len() == 1 => {
                        format!("Q6_V_vsplat_R({})", q.multiplier[0])
                    }
                    _ => format!("Q6_V_vsplat_R(mult[{co0} + {j}])"),
                };
                requant(s, self.out, j, &m, "                ");
                let _ = writeln!(s, "                *(HVX_Vector *)acc_out[{j}] = acc{j};");
            }
            let _ = writeln!(
                s,
                "                for (ix_t j = 0; j < {r}; j++) {{\n                    const ix_t co = {co0} + j;\n                    {}    *yo = Y + (nn * {c_out} + co) * {planes} + pb * 32;\n                    for (ix_t p = 0; p < np; p++) {{\n                        const int32_t acc = acc_out[j][p];\n                        {}\n                    }}\n                }}",
                ctype(self.out.dtype()),
                store(self.out, "yo", "p")
            );
        };
        if full > 0 {
            let _ = writeln!(
                s,
                "            for (ix_t cb = 0; cb < {full}; cb += 4) {{\n                const ix_t cbase = gr * {opg} + cb;"
            );
            block(s, 4, "cbase");
            s.push_str("            }\n");
        }
        if opg % 4 != 0 {
            let _ = writeln!(
                s,
                "            {{\n                const ix_t cbase = gr * {opg} + {full};"
            );
            block(s, opg % 4, "cbase");
            s.push_str("            }\n");
        }
        s.push_str("        }\n    }\n");
        Ok(())
    }

    /// Whether the convolution runs on the padded wide grid, and with how many output
    /// rows per band: `(rows, padded width, band rows)`.
    ///
    /// With stride 1, output pixel `(oy, ox)` reads padded input `(oy + ky·dh, ox + kx·dw)`.
    /// Over a copy of the input with its padding written out (`Wp` wide), the output
    /// grid taken `Wp` wide (`ox ≥ out_w` computed and dropped) makes every tap a
    /// contiguous run: `band[tap offset + p]` for wide pixel `p`. So each tap of 128
    /// pixels is one unaligned vector load, with no im2col and no bounds checks.
    fn wide_plan(&self) -> Option<(u32, u32, u32)> {
        let w = &self.w;
        let sp = &self.sp;
        if w.stride_h != 1 || w.stride_w != 1 {
            return None;
        }
        let wp = sp.in_w + w.pad_left + w.pad_right;
        let ext = (w.kh - 1) * w.dilation_h;
        if sp.out_w + (w.kw - 1) * w.dilation_w != wp
            || sp.out_h + ext != sp.in_h + w.pad_top + w.pad_bottom
        {
            return None;
        }
        let cpg = self.c_in / self.groups;
        (1..=sp.out_h)
            .rev()
            .map(|rows| (rows, wp, rows + ext))
            .find(|&(_, wp, br)| (cpg as u64 * br as u64 * wp as u64 + 128) <= MAX_BAND as u64)
    }

    fn emit_wide(&self, s: &mut String, (rows, wp, br): (u32, u32, u32), k: usize, k4: usize) {
        let g = self.groups;
        let cpg = self.c_in / g;
        let opg = (self.c_out / g) as usize;
        let Window {
            kh,
            kw,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
            ..
        } = self.w;
        let Spatial {
            n,
            in_h,
            in_w,
            out_h,
            out_w,
        } = self.sp;
        let ext = (kh - 1) * dilation_h;
        let used = cpg * br * wp;
        let band = used + 128;
        // Band offset of each tap; taps past k read anything (their weights are 0).
        let mut toff = vec![0u32; k4 * 4];
        for (kk, t) in toff.iter_mut().enumerate().take(k) {
            let kk = kk as u32;
            let (ci, r) = (kk / (kh * kw), kk % (kh * kw));
            let (ky, kx) = (r / kw, r % kw);
            *t = ci * br * wp + ky * dilation_h * wp + kx * dilation_w;
        }
        array(s, "int32_t", "toff", &toff);
        let flip8 = if self.signed { "0x80" } else { "0" };
        let limit = self.in_limit;
        let oty = ctype(self.out.dtype());
        let _ = writeln!(
            s,
            "    const u8a *X = {};
    {oty} *Y = {};
    uint8_t band[{band}] __attribute__((aligned(128)));
{}
    /* Read past the last band row by the garbage lanes of the last vector. */
    for (ix_t i = {used}; i < {band}; i++) band[i] = pad;
    for (ix_t nn = 0; nn < {n}; nn++)
    for (ix_t gr = 0; gr < {g}; gr++) {{
        const u8a *xg = X + (nn * {} + gr * {cpg}) * {};
        for (ix_t oy0 = 0; oy0 < {out_h}; oy0 += {rows}) {{
            const ix_t rows = {out_h} - oy0 < {rows} ? {out_h} - oy0 : {rows};
            for (ix_t ci = 0; ci < {cpg}; ci++)
            for (ix_t r = 0; r < rows + {ext}; r++) {{
                const ix_t iy = oy0 + r - {pad_top};
                uint8_t *d = band + (ci * {br} + r) * {wp};
                if (iy < 0 || iy >= {in_h}) {{
                    for (ix_t x = 0; x < {wp}; x++) d[x] = pad;
                    continue;
                }}
                const u8a *xr = xg + (ci * {in_h} + iy) * {in_w};
                for (ix_t x = 0; x < {pad_left}; x++) d[x] = pad;
                ec_copy_row(d + {pad_left}, xr, {in_w}, {flip8}, X + {limit});
                for (ix_t x = {}; x < {wp}; x++) d[x] = pad;
            }}
            const ix_t pw = (rows - 1) * {wp} + {out_w};
            for (ix_t p0 = 0; p0 < pw; p0 += 128) {{
                const ix_t nl = pw - p0 < 128 ? pw - p0 : 128;
                const uint8_t *bp = band + p0;",
            ptr(self.input, "u8a"),
            ptr(self.output, oty),
            if self.out == &QuantOut::I32 {
                "    int32_t acc_out[4][128] __attribute__((aligned(128)));"
            } else {
                "    /* Requantized lanes are narrowed and stored straight from the vectors. */"
            },
            self.c_in,
            in_h * in_w,
            pad_left + in_w,
        );
        let full = opg - opg % 4;
        let planes = out_h * out_w;
        let block = |s: &mut String, r: usize| {
            for j in 0..r {
                let _ = writeln!(
                    s,
                    "                    const HVX_Vector b{j} = {};
                    const int32_t *w{j} = &wq[(cbase + {j}) * {k4}];",
                    self.init(&format!("cbase + {j}"))
                );
                for t in 0..4 {
                    let _ = writeln!(s, "                    HVX_Vector acc{t}_{j} = b{j};");
                }
            }
            let _ = writeln!(
                s,
                "                    for (ix_t q = 0; q < {k4}; q++) {{
                        HVX_Vector v[4];
                        ec_taps4(bp, &toff[q * 4], v);"
            );
            for j in 0..r {
                for t in 0..4 {
                    let _ = writeln!(
                        s,
                        "                        acc{t}_{j} = Q6_Vw_vrmpyacc_VwVubRb(acc{t}_{j}, v[{t}], w{j}[q]);"
                    );
                }
            }
            s.push_str(
                "                    }
",
            );
            for j in 0..r {
                let m = self.multiplier(&format!("cbase + {j}"));
                for t in 0..4 {
                    requant(s, self.out, format!("{t}_{j}"), &m, "                    ");
                    if self.out == &QuantOut::I32 {
                        let _ = writeln!(
                            s,
                            "                    *(HVX_Vector *)&acc_out[{j}][{}] = acc{t}_{j};",
                            32 * t
                        );
                    }
                }
            }
            if matches!(self.out, QuantOut::Requant(_)) {
                // Bytes: one narrowed vector per channel, stored a wide row at a time.
                for j in 0..r {
                    let _ = writeln!(
                        s,
                        "                    {{
                        const HVX_Vector o = ec_narrow4(acc0_{j}, acc1_{j}, acc2_{j}, acc3_{j});
                        uint8_t *yo = (uint8_t *)(Y + (nn * {} + cbase + {j}) * {planes} + oy0 * {out_w});
                        ix_t oy = p0 / {wp}, ox = p0 - oy * {wp};
                        for (ix_t l = 0; l < nl; oy++, ox = 0) {{
                            const ix_t run = {wp} - ox < nl - l ? {wp} - ox : nl - l;
                            if (ox < {out_w}) ec_store_lanes(yo + oy * {out_w} + ox, o, l, run < {out_w} - ox ? run : {out_w} - ox);
                            l += run;
                        }}
                    }}",
                        self.c_out
                    );
                }
                return;
            }
            let _ = writeln!(
                s,
                "                    for (ix_t j = 0; j < {r}; j++) {{
                        {oty} *yo = Y + (nn * {} + cbase + j) * {planes} + oy0 * {out_w};
                        ix_t oy = p0 / {wp}, ox = p0 - oy * {wp};
                        for (ix_t l = 0; l < nl; l++) {{
                            if (ox < {out_w}) yo[oy * {out_w} + ox] = ({oty})acc_out[j][l];
                            if (++ox == {wp}) {{ ox = 0; oy++; }}
                        }}
                    }}",
                self.c_out
            );
        };
        if full > 0 {
            let _ = writeln!(
                s,
                "                for (ix_t cb = 0; cb < {full}; cb += 4) {{
                    const ix_t cbase = gr * {opg} + cb;"
            );
            block(s, 4);
            s.push_str(
                "                }
",
            );
        }
        if !opg.is_multiple_of(4) {
            let _ = writeln!(
                s,
                "                {{
                    const ix_t cbase = gr * {opg} + {full};"
            );
            block(s, opg % 4);
            s.push_str(
                "                }
",
            );
        }
        s.push_str(
            "            }
        }
    }
",
        );
    }

    /// The bias (less the zero point's share) of channel `c`, splatted.
    fn init(&self, c: &str) -> String {
        match self.zero {
            ZeroPoint::Const(_) => format!("Q6_V_vsplat_R(bz[{c}])"),
            ZeroPoint::Runtime(_) => format!(
                "Q6_V_vsplat_R((int32_t)((uint32_t)bb[{c}] - (uint32_t)zp * (uint32_t)ws[{c}]))"
            ),
        }
    }

    /// The requantization multiplier of channel `c`, splatted.
    fn multiplier(&self, c: &str) -> String {
        match self.out {
            QuantOut::Requant(q) if q.multiplier.len() == 1 => {
                format!("Q6_V_vsplat_R({})", q.multiplier[0])
            }
            _ => format!("Q6_V_vsplat_R(mult[{c}])"),
        }
    }
}
