//! The integer Add and Mul of two 8-bit quantized tensors ([`Kernel::QBinary`]), bit for
//! bit `edgecc_program::QBinary::apply`, with no float math.
//!
//! The multipliers carry 30 bits, so `acc` needs up to 48 bits; the vector code computes
//! the result exactly in 32-bit lanes by the contract's split: `m = mh·2^15 + ml` with
//! `mh = m >> 15` (i16) and `ml = m & 0x7fff`, a high sum `H` of 16×16→32 products with
//! the `mh` and a low sum `L` with the `ml`, and `H + (L >> 15)`, which drops only low bits
//! that cannot reach the result because `shift ≥ 16`. How each kernel's step computes that
//! ([`Plan`]) is chosen at compile time from exact bounds over every pair of operand bytes
//! (the corners of their ranges: every quantity bounded is monotone in each operand):
//!
//! - Add on the raw bytes `a`, `b`: `T = a·ma + b·mb + C` with one constant `C = 2^(s−1) −
//!   za·ma − zb·mb (+ zero_point·2^s)` is `(acc + 2^(s−1)) (+ zero_point·2^s)`, so
//!   `⌊T / 2^s⌋` is the rounded result (plus the zero point). Split `C = Ch·2^15 + Cl`
//!   (`0 ≤ Cl < 2^15`); then `V = H + Ch + ((L + Cl) >> 15)` is `⌊T / 2^15⌋` and the result
//!   is `V >> (s − 15)`. `H` and the sums into `V` may wrap (they are exact modulo 2^32);
//!   only `L + Cl` is shifted and must not overflow, and the true `V` must lie in i32. With
//!   the bytes (`|a| ≤ 255`) and `|m| ≤ 2^30`, `|L| < 2^24` and, without the zero point,
//!   `|V| < 2^24 + 2^30`, so that form always holds; the zero point joins `C` (saving a
//!   saturating add per 8 lanes) when the bounds say `V` still fits.
//! - On aarch64, an Add with shift `s` in `24..=31` scales both operands by `2^k`, `k = 31
//!   − s`, while widening them (one `umull`/`smull` by `2^k` per 8 bytes instead of
//!   `uxtl`/`sxtl`): that is the same computation at shift 31, whose result is `V >> 16`,
//!   i.e. the high halves of the 32-bit lanes, which one `uzp2` per 8 lanes narrows to i16
//!   without a shift or a saturation (the bounds check that `2^k·a` fits i16, that `L + Cl`
//!   does not overflow and that `V` fits i32: the result plus the zero point then lies in
//!   i16). `Ch` then need not be added to every 32-bit lane: its low 16 bits (signed) join
//!   `Cl` in the low sum's constant (`(L + Cl + Ch_lo·2^15) >> 15` adds `Ch_lo` when it does
//!   not overflow) and its high part is added to the 16-bit results, modulo 2^16 (adding a
//!   multiple of 2^16 to `V` adds its quotient to the high half). Every example model's
//!   Adds have shift 29 or 30 and take this form.
//! - x86_64 computes an Add's sums with `pmaddwd` on interleaved operand pairs `(a_i, b_i)`
//!   and multiplier pairs `(mah, mbh)`, `(mal, mbl)`: one instruction for each of `H` and
//!   `L` per 4 lanes (the bytes are interleaved before widening when both operands have the
//!   same signedness). aarch64 has no such instruction (`smull` + `smull2` + `addp` is no
//!   shorter than two `smull` and an `add`) and multiplies each operand.
//! - Mul: the zero points subtracted in i16 (`|x − z| ≤ 255`), `P = (a − za)·(b − zb)` by
//!   16×16→32 multiplies (`|P| ≤ 255²`), `H = P·mh` and `L = P·ml` by 32-bit multiplies
//!   (both below 2^31 in magnitude), and `V = H + (L >> 15) + K/2^15` with `K = 2^(s−1) (+
//!   zero_point·2^s)`, a multiple of 2^15, when the bounds say `V` fits i32; otherwise (a
//!   product near 2^31 with a large shift) the contract's own form `t = (H + (L >> 15)) >>
//!   (s − 16)`, `(t >> 1) + (t & 1)`.
//!
//! Then a saturating narrow to i16 (or the `uzp2` above), `+ zero_point` saturating in
//! i16 unless the constant holds it, a saturating narrow to the output's 8 bits and the
//! clamp to `[lo, hi]` on the bytes (only the bounds narrower than the dtype). Each
//! saturation only moves a value that lies past `[lo, hi]` anyway (`lo`, `hi` and the zero
//! point are in the output's range, the narrowed values 2^15 away), so this is exactly
//! `clamp(zero_point + r, lo, hi)`.
//!
//! Where the innermost dimension writes contiguous bytes and reads each operand
//! contiguously or broadcast (stride 0: a bias vector along the rows, a scalar), 16
//! elements are one step, addressed as `base + off` with one byte offset counted down to
//! 0 (`sub`, `cmp`, `b.ge`). A residual Add is 53 aarch64 instructions per 16 elements,
//! loop included (`cnn_qdq`'s, `edgecc compile --target aarch64-neon --emit asm`; one of
//! them recomputes an operand's base in the arena, which the optimizer rematerialises in
//! the loop): 2 loads, 4 `umull` (widening and scaling), 16 `smull`, 18 adds, 4 `sshr`,
//! 2 `uzp2`, 2 `sqxtun`, the store and the loop. It was 39 with 15-bit multipliers, whose
//! products with the raw bytes fit 32 bits whole: the split costs the 8 low-half
//! products, their sums and the carries of `L`.
//!
//! When the next dimension out broadcasts an operand (a bias Add: `[rows, n] + [n]`, or an
//! attention mask along the heads and rows), the rows run innermost, one 16-column block
//! at a time, and an Add sums that operand's products and the constants first: all of it
//! is then invariant in the row loop and hoisted out of it (Cranelift hoists a `vconst`
//! out of one loop only, so the constants also leave the row loop this way instead of
//! being rebuilt per row). A bias Add's step is then 37 aarch64 instructions.
//!
//! The rest of the innermost dimension, and every dimension that is strided in another
//! way, runs one element at a time in 64-bit registers, where `acc` and its rounding are
//! exact as written in the contract. An output in place of an operand (identical views)
//! reads each 16 bytes before writing them.
//!
//! [`Kernel::QBinary`]: edgecc_program::Kernel::QBinary

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use edgecc_program::{DType, QBinary, QBinaryOp, View};

use super::mask::{bases, nest, readonly, simplify};
use super::qgemm::shuffle;
use crate::error::{Error, unsupported};
use crate::fx::{Fx, PTR};

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
    let plan = Plan::new(q, [a_dtype, b_dtype], fx.feat.aarch64)
        .ok_or_else(|| unsupported(format!("quantized Add/Mul: no exact plan for {q:?}")))?;
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
    // When the next dimension out broadcasts an operand (a bias vector along the rows),
    // the rows run innermost, one 16-column block at a time: that operand's bytes, its
    // products and the constants are then invariant in the row loop and hoisted out of it.
    let rows = match dims.last() {
        Some(d) if nvec > 0 && d.strides[..2].contains(&0) => dims.pop(),
        _ => None,
    };
    let first = match &rows {
        Some(r) if r.strides[0] == 0 && r.strides[1] != 0 => 0,
        _ => 1,
    };
    // One step of 16 elements at the addresses `at` (a, b, output).
    let mut step = |fx: &mut Fx, at: &[Value]| {
        let bytes: [Value; 2] = std::array::from_fn(|i| {
            if inner.strides[i] == 0 {
                let s = fx.load(types::I8, at[i], 0, ro[i]);
                fx.b.ins().splat(types::I8X16, s)
            } else {
                fx.load(types::I8X16, at[i], 0, ro[i])
            }
        });
        let r = vector_apply(fx, &plan, q, bytes, signed, first);
        fx.store(r, at[2], 0);
    };
    let step16: Vec<i64> = inner.strides.iter().map(|s| 16 * s).collect();
    let mut body = |fx: &mut Fx, p: &[Value]| match &rows {
        Some(rows) => {
            let ends = fx.for_n(nvec, p, |fx, _, v| {
                offset_loop(fx, rows.size, &rows.strides, v, &mut step);
                advance(fx, v, &step16)
            });
            fx.for_n(if tail > 0 { rows.size } else { 0 }, &ends, |fx, _, v| {
                fx.for_n(tail, v, |fx, _, w| {
                    scalar(fx, w);
                    advance(fx, w, &inner.strides)
                });
                advance(fx, v, &rows.strides)
            });
        }
        None => {
            offset_loop(fx, nvec, &step16, p, &mut step);
            let ends: Vec<Value> = p
                .iter()
                .zip(&step16)
                .map(|(&v, &s)| fx.addp(v, nvec as i64 * s))
                .collect();
            fx.for_n(tail, &ends, |fx, _, v| {
                scalar(fx, v);
                advance(fx, v, &inner.strides)
            });
        }
    };
    nest(fx, &dims, &ptrs, &mut body)
}

/// Each pointer advanced by its byte stride.
fn advance(fx: &mut Fx, ptrs: &[Value], strides: &[i64]) -> Vec<Value> {
    ptrs.iter()
        .zip(strides)
        .map(|(&p, &s)| fx.addp(p, s))
        .collect()
}

/// `body(addresses)` for `n` steps of the views at `bases` advancing by `strides` bytes.
/// When every non-zero stride is the same `S > 0` (the usual case), the loop's only
/// induction variable is one byte offset counted down from `S·(n − 1)` to 0, last step
/// first: a subtract, a compare and a branch per step (`sub`, `cmp`, `b.ge` on aarch64),
/// the addresses `base + off` folded into the loads and the store. (Counting up would
/// compare with `S·n`, a constant the optimizer rematerialises in the loop, as it does
/// `base + S·n` when counting up to 0.) The order is free: each step reads its own bytes
/// before it writes them, and the output overlaps an operand only with the same view.
/// Otherwise one pointer per view advances, as in [`Fx::for_n`].
fn offset_loop(
    fx: &mut Fx,
    n: u64,
    strides: &[i64],
    bases: &[Value],
    body: &mut dyn FnMut(&mut Fx, &[Value]),
) {
    if n == 0 {
        return;
    }
    if n == 1 {
        return body(fx, bases);
    }
    let moving: Vec<i64> = strides.iter().copied().filter(|&s| s != 0).collect();
    let common = moving
        .first()
        .copied()
        .filter(|&s| s > 0 && moving.iter().all(|&x| x == s));
    let Some(stride) = common else {
        fx.for_n(n, bases, |fx, _, v| {
            body(fx, v);
            advance(fx, v, strides)
        });
        return;
    };
    let start = fx.iconst(stride * (n as i64 - 1));
    let head = fx.b.create_block();
    let exit = fx.b.create_block();
    fx.b.append_block_param(head, PTR);
    fx.b.ins().jump(head, &[start.into()]);
    fx.b.switch_to_block(head);
    let off = fx.b.block_params(head)[0];
    let at: Vec<Value> = bases
        .iter()
        .zip(strides)
        .map(|(&p, &s)| if s == 0 { p } else { fx.b.ins().iadd(p, off) })
        .collect();
    body(fx, &at);
    let next = fx.b.ins().iadd_imm_s(off, -stride);
    let more =
        fx.b.ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, next, 0);
    fx.b.ins().brif(more, head, &[next.into()], exit, &[]);
    fx.b.switch_to_block(exit);
}

/// `QBinary::apply` on one pair of operands loaded as i32 (sign- or zero-extended), in
/// 64-bit registers: `|acc| < 2^48`, so the definition's arithmetic is exact as written.
fn scalar_apply(fx: &mut Fx, q: &QBinary, x: Value, y: Value) -> Value {
    let x = fx.b.ins().sextend(types::I64, x);
    let y = fx.b.ins().sextend(types::I64, y);
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
    let acc = fx.b.ins().iadd_imm_s(acc, 1 << (s - 1));
    let r = fx.b.ins().sshr_imm_s(acc, s);
    let r = fx.b.ins().iadd_imm_s(r, q.zero_point as i64);
    let lo = fx.b.ins().iconst(types::I64, q.lo as i64);
    let hi = fx.b.ins().iconst(types::I64, q.hi as i64);
    let r = fx.b.ins().smax(r, lo);
    fx.b.ins().smin(r, hi)
}

/// The byte values of an operand dtype.
fn byte_range(d: DType) -> (i64, i64) {
    if d == DType::I8 {
        (-128, 127)
    } else {
        (0, 255)
    }
}

fn fits_i32(v: i128) -> bool {
    (i32::MIN as i128..=i32::MAX as i128).contains(&v)
}

fn fits_i16(v: i128) -> bool {
    (i16::MIN as i128..=i16::MAX as i128).contains(&v)
}

/// `m = mh·2^15 + ml` with `mh` an i16 and `0 ≤ ml < 2^15` (for `m` in `QBinary::MULTIPLIERS`).
fn split(m: i32) -> (i16, i16) {
    ((m >> 15) as i16, (m & 0x7fff) as i16)
}

/// The low 32 bits of `v` as an i32 (the sums into `V` are exact modulo 2^32).
fn wrap(v: i128) -> i32 {
    v as u32 as i32
}

/// How the 16-element step computes a kernel's results (see the module doc), fixed at
/// compile time from its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Add(AddPlan),
    Mul(MulPlan),
}

/// An Add on the raw bytes scaled by `2^k`: `V = H + ch + ((L + cl) >> 15)`, result
/// `V >> shift` (`shift = s + k − 15`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddPlan {
    k: u32,
    /// `(mah, mbh)` and `(mal, mbl)`.
    hi: [i16; 2],
    lo: [i16; 2],
    ch: i32,
    cl: i32,
    /// Whether the output zero point is in the constant.
    zp_in: bool,
    shift: u32,
    /// The high-half form's constant added to the 16-bit results (wrapping) instead of
    /// `Ch` before them: see [`add_plan`].
    post: Option<i16>,
}

/// A Mul of the centred operands: `P = x·y`, `H = P·mh`, `L = P·ml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MulPlan {
    mh: i32,
    ml: i32,
    round: MulRound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MulRound {
    /// `V = H + (L >> 15) + kh`, result `V >> shift` (`shift = s − 15`); `kh` holds
    /// `2^(s−16)` and, when `zp_in`, `zero_point·2^(s−15)`.
    Folded { kh: i32, zp_in: bool, shift: u32 },
    /// `t = (H + (L >> 15)) >> (s − 16)`, result `(t >> 1) + (t & 1)`, zero point after.
    Split { s: u32 },
}

impl Plan {
    /// The plan for `q` on operands of `dtypes`; `None` only if no form is exact, which
    /// cannot happen for parameters that pass `QBinary::check` (the module doc).
    fn new(q: &QBinary, dtypes: [DType; 2], aarch64: bool) -> Option<Plan> {
        let (ra, rb) = (byte_range(dtypes[0]), byte_range(dtypes[1]));
        match q.op {
            QBinaryOp::Add { ma, mb } => {
                let s = q.shift;
                // The shift-31 form (high halves) on aarch64, else the plain one.
                let mut ks = vec![];
                if aarch64 && (24..=31).contains(&s) {
                    ks.push(31 - s);
                }
                if !ks.contains(&0) {
                    ks.push(0);
                }
                let high = |k: u32| aarch64 && s + k == 31;
                ks.into_iter()
                    .flat_map(|k| {
                        [
                            (k, true, true),
                            (k, true, false),
                            (k, false, true),
                            (k, false, false),
                        ]
                    })
                    .filter(|&(k, _, post)| high(k) || !post)
                    .find_map(|(k, zp_in, post)| add_plan(q, (ma, mb), (ra, rb), k, zp_in, post))
                    .map(Plan::Add)
            }
            QBinaryOp::Mul { m } => Some(Plan::Mul(mul_plan(q, m, (ra, rb))?)),
        }
    }

    /// The shift of the final `V` and whether the zero point is already in it; `None`
    /// for the split Mul rounding.
    fn last_shift(&self) -> Option<(u32, bool)> {
        match *self {
            Plan::Add(p) => Some((p.shift, p.zp_in)),
            Plan::Mul(MulPlan {
                round: MulRound::Folded { zp_in, shift, .. },
                ..
            }) => Some((shift, zp_in)),
            Plan::Mul(_) => None,
        }
    }
}

/// The Add form with operands scaled by `2^k` and the zero point in the constant when
/// `zp_in`, if the bounds over every pair of bytes in `ra × rb` say it is exact.
///
/// With `post` (the high-half form only), `Ch ≡ Ch_hi·2^16 + Ch_lo` modulo 2^32 with
/// `−2^15 ≤ Ch_lo < 2^15`: `Ch_lo·2^15` joins the low sum's constant (`(L + Cl +
/// Ch_lo·2^15) >> 15 = ((L + Cl) >> 15) + Ch_lo` when that sum does not overflow, which
/// the bounds check) and `Ch_hi` is added to the high halves in i16, modulo 2^16: `V` and
/// `V − Ch_hi·2^16` agree in their low 16 bits, so their high halves differ by `Ch_hi`
/// modulo 2^16, and the result is in i16. That is one add per 8 lanes instead of one per 4.
fn add_plan(
    q: &QBinary,
    (ma, mb): (i32, i32),
    (ra, rb): ((i64, i64), (i64, i64)),
    k: u32,
    zp_in: bool,
    post: bool,
) -> Option<AddPlan> {
    let s = q.shift;
    let (ma128, mb128) = (ma as i128, mb as i128);
    let zp = if zp_in {
        (q.zero_point as i128) << s
    } else {
        0
    };
    let c = ((1i128 << (s - 1)) - q.a_zero as i128 * ma128 - q.b_zero as i128 * mb128 + zp) << k;
    let (ch, mut cl) = (c >> 15, c & 0x7fff);
    let mut ch = wrap(ch);
    let mut post_add = None;
    if post {
        let lo = ch as i16;
        post_add = Some(((ch as i64 - lo as i64) >> 16) as i16);
        cl += (lo as i128) << 15;
        ch = 0;
    }
    let ((mah, mal), (mbh, mbl)) = (split(ma), split(mb));
    for (a, b) in [(ra.0, rb.0), (ra.0, rb.1), (ra.1, rb.0), (ra.1, rb.1)] {
        let (a, b) = ((a as i128) << k, (b as i128) << k);
        let l = a * mal as i128 + b * mbl as i128;
        // `V = ⌊T / 2^15⌋` for `T = (a·ma + b·mb)·2^k + C`.
        let v = (a * ma128 + b * mb128 + c) >> 15;
        if !(fits_i16(a) && fits_i16(b) && fits_i32(l) && fits_i32(l + cl) && fits_i32(v)) {
            return None;
        }
    }
    Some(AddPlan {
        k,
        hi: [mah, mbh],
        lo: [mal, mbl],
        ch,
        cl: cl as i32,
        zp_in,
        shift: s + k - 15,
        post: post_add,
    })
}

/// The Mul form: the folded rounding (with the zero point when it fits) if `V` fits i32
/// for every product of centred bytes, else the contract's split rounding.
fn mul_plan(q: &QBinary, m: i32, (ra, rb): ((i64, i64), (i64, i64))) -> Option<MulPlan> {
    let s = q.shift;
    let (mh, ml) = split(m);
    let (xa, xb) = (
        [ra.0 - q.a_zero as i64, ra.1 - q.a_zero as i64],
        [rb.0 - q.b_zero as i64, rb.1 - q.b_zero as i64],
    );
    if ![xa, xb].iter().flatten().all(|&x| fits_i16(x as i128)) {
        return None;
    }
    let ps: Vec<i128> = xa
        .iter()
        .flat_map(|&x| xb.iter().map(move |&y| (x * y) as i128))
        .collect();
    // `H = P·mh`, `L = P·ml` and `H + (L >> 15)` fit i32 (the contract's bound).
    for &p in &ps {
        let (h, l) = (p * mh as i128, p * ml as i128);
        if !(fits_i32(h) && fits_i32(l) && fits_i32(h + (l >> 15))) {
            return None;
        }
    }
    let folded = [true, false].into_iter().find_map(|zp_in| {
        let zp = if zp_in {
            (q.zero_point as i128) << s
        } else {
            0
        };
        let k = (1i128 << (s - 1)) + zp;
        ps.iter()
            .all(|&p| fits_i32((p * m as i128 + k) >> 15))
            .then(|| MulRound::Folded {
                kh: wrap(k >> 15),
                zp_in,
                shift: s - 15,
            })
    });
    Some(MulPlan {
        mh: mh as i32,
        ml: ml as i32,
        round: folded.unwrap_or(MulRound::Split { s }),
    })
}

/// An `i16x8` with `v` in every lane, from the constant pool.
fn i16x8(fx: &mut Fx, v: i32) -> Value {
    i16x8_pair(fx, v, v)
}

/// An `i16x8` with lanes `a, b, a, b, ...`.
fn i16x8_pair(fx: &mut Fx, a: i32, b: i32) -> Value {
    let bytes: Vec<u8> = (0..4)
        .flat_map(|_| [(a as i16).to_le_bytes(), (b as i16).to_le_bytes()])
        .flatten()
        .collect();
    fx.vconst_bytes(types::I16X8, bytes)
}

/// An `i8x16` with the byte `v` in every lane.
fn i8x16(fx: &mut Fx, v: i32) -> Value {
    fx.vconst_bytes(types::I8X16, vec![v as u8; 16])
}

/// The byte masks of `shuffle` that interleave the low (`zip1`, `punpckl*`) or high halves
/// of two vectors by lanes of `bytes` bytes, and that keep the odd 16-bit lanes (`uzp2`).
fn zip_mask(bytes: u8, high: bool) -> [u8; 16] {
    let base = if high { 8 } else { 0 };
    std::array::from_fn(|i| {
        let (lane, byte) = (i as u8 / bytes, i as u8 % bytes);
        let src = base + (lane / 2) * bytes + byte;
        if lane % 2 == 0 { src } else { 16 + src }
    })
}

const UZP2_16: [u8; 16] = [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31];

/// Lanes 0–3 (`high` false) or 4–7 of an `i16x8` widened to `i32x4`.
fn half(fx: &mut Fx, v: Value, high: bool) -> Value {
    if high {
        fx.b.ins().swiden_high(v)
    } else {
        fx.b.ins().swiden_low(v)
    }
}

/// The low (`high` false) or high 8 bytes widened to `i16x8`.
fn widen8(fx: &mut Fx, bytes: Value, signed: bool, high: bool) -> Value {
    match (signed, high) {
        (true, false) => fx.b.ins().swiden_low(bytes),
        (true, true) => fx.b.ins().swiden_high(bytes),
        (false, false) => fx.b.ins().uwiden_low(bytes),
        (false, true) => fx.b.ins().uwiden_high(bytes),
    }
}

/// The low or high 8 bytes times `2^k` as `i16x8`: one widening multiply by the byte
/// `2^k` (`umull`/`smull` on aarch64) when it is one, else a widen and a shift.
fn widen8_scaled(fx: &mut Fx, bytes: Value, signed: bool, high: bool, k: u32) -> Value {
    if k == 0 {
        return widen8(fx, bytes, signed, high);
    }
    if k <= 6 || (!signed && k == 7) {
        let c = i8x16(fx, 1 << k);
        let x = widen8(fx, bytes, signed, high);
        let c = widen8(fx, c, signed, high);
        return fx.b.ins().imul(x, c);
    }
    let x = widen8(fx, bytes, signed, high);
    let k = fx.b.ins().iconst(types::I32, k as i64);
    fx.b.ins().ishl(x, k)
}

/// `(x_f·m_f + c) + x_o·m_o` of `i16x8` operands and multipliers as `i32x4` for lanes 0–3
/// (`high` false) or 4–7, `f = first` and `o` the other operand, exact modulo 2^32
/// (16×16→32 multiplies, which aarch64 emits as `smull`/`smull2`); terms with a zero
/// multiplier are left out, `None` when nothing is left. The first operand's term and the
/// constant come first so that, when that operand is the same in every step of a loop (a
/// bias vector along the rows), their sum is loop-invariant and hoisted.
fn products(
    fx: &mut Fx,
    xs: [Value; 2],
    ms: [i16; 2],
    high: bool,
    first: usize,
    c: i32,
) -> Option<Value> {
    let mut sum = None;
    for (n, i) in [first, 1 - first].into_iter().enumerate() {
        if ms[i] != 0 {
            let mv = i16x8(fx, ms[i] as i32);
            let (x, mv) = (half(fx, xs[i], high), half(fx, mv, high));
            let p = fx.b.ins().imul(x, mv);
            sum = Some(match sum {
                Some(s) => fx.b.ins().iadd(s, p),
                None => p,
            });
        }
        if n == 0 && c != 0 {
            sum = Some(add_const(fx, sum, c));
        }
    }
    sum
}

/// `x_0·m_0 + x_1·m_1` per lane from interleaved pairs `(x_0, x_1)` (one `pmaddwd`).
fn pair_products(fx: &mut Fx, pairs: Value, ms: [i16; 2]) -> Option<Value> {
    if ms == [0, 0] {
        return None;
    }
    let mv = i16x8_pair(fx, ms[0] as i32, ms[1] as i32);
    let (pl, ml) = (half(fx, pairs, false), half(fx, mv, false));
    let (ph, mh) = (half(fx, pairs, true), half(fx, mv, true));
    let lo = fx.b.ins().imul(pl, ml);
    let hi = fx.b.ins().imul(ph, mh);
    Some(fx.b.ins().iadd_pairwise(lo, hi))
}

/// `v >> n` (arithmetic) of a vector by a constant.
fn vsshr(fx: &mut Fx, v: Value, n: u32) -> Value {
    let n = fx.b.ins().iconst(types::I32, n as i64);
    fx.b.ins().sshr(v, n)
}

/// `v + c` for an `i32x4` and a constant, nothing when `c` is 0; `v` absent is 0.
fn add_const(fx: &mut Fx, v: Option<Value>, c: i32) -> Value {
    match v {
        Some(v) if c == 0 => v,
        Some(v) => {
            let c = fx.i32x4_const([c; 4]);
            fx.b.ins().iadd(v, c)
        }
        None => fx.i32x4_const([c; 4]),
    }
}

/// The Add's `V` for the four groups of 4 lanes (0–3, 4–7, 8–11, 12–15); operand `first`
/// and the constants are summed first (see [`products`]).
fn add_groups(
    fx: &mut Fx,
    p: &AddPlan,
    bytes: [Value; 2],
    signed: [bool; 2],
    first: usize,
) -> Vec<Value> {
    // With both low halves 0, `L` is 0 and `(0 + cl) >> 15` joins `ch`.
    let no_low = p.lo == [0, 0];
    let ch = if no_low {
        p.ch.wrapping_add(p.cl >> 15)
    } else {
        p.ch
    };
    // `(H + ch, L + cl)` per group.
    let mut sums: Vec<(Option<Value>, Option<Value>)> = Vec::with_capacity(4);
    if fx.feat.aarch64 {
        for h in [false, true] {
            let xs: [Value; 2] =
                std::array::from_fn(|i| widen8_scaled(fx, bytes[i], signed[i], h, p.k));
            for g in [false, true] {
                let hs = products(fx, xs, p.hi, g, first, ch);
                let ls = if no_low {
                    None
                } else {
                    products(fx, xs, p.lo, g, first, p.cl)
                };
                sums.push((hs, ls));
            }
        }
    } else {
        // Pairs `(a_i, b_i)` as i16: interleave the bytes, then widen, when both operands
        // widen alike; else widen, then interleave the 16-bit lanes.
        let mut pairs = Vec::with_capacity(4);
        if signed[0] == signed[1] {
            for h in [false, true] {
                let ab = shuffle(fx, bytes[0], bytes[1], zip_mask(1, h));
                for g in [false, true] {
                    pairs.push(widen8_scaled(fx, ab, signed[0], g, p.k));
                }
            }
        } else {
            for h in [false, true] {
                let x = widen8_scaled(fx, bytes[0], signed[0], h, p.k);
                let y = widen8_scaled(fx, bytes[1], signed[1], h, p.k);
                let (x8, y8) = (fx.bitcast(types::I8X16, x), fx.bitcast(types::I8X16, y));
                for g in [false, true] {
                    let z = shuffle(fx, x8, y8, zip_mask(2, g));
                    pairs.push(fx.bitcast(types::I16X8, z));
                }
            }
        }
        for pr in pairs {
            let hs = pair_products(fx, pr, p.hi);
            let hs = Some(add_const(fx, hs, ch));
            let ls = if no_low {
                None
            } else {
                let ls = pair_products(fx, pr, p.lo);
                Some(add_const(fx, ls, p.cl))
            };
            sums.push((hs, ls));
        }
    }
    sums.into_iter()
        .map(|(h, l)| {
            let h = h.unwrap_or_else(|| fx.i32x4_const([0; 4]));
            match l {
                // `(L + cl) >> 15`.
                Some(l) => {
                    let l = vsshr(fx, l, 15);
                    fx.b.ins().iadd(h, l)
                }
                None => h,
            }
        })
        .collect()
}

/// The Mul's `V` (or `H + (L >> 15)` for the split rounding) for the four groups.
fn mul_groups(
    fx: &mut Fx,
    p: &MulPlan,
    q: &QBinary,
    bytes: [Value; 2],
    signed: [bool; 2],
) -> Vec<Value> {
    let mut out = Vec::with_capacity(4);
    let zeros = [q.a_zero, q.b_zero];
    for h in [false, true] {
        let xs: [Value; 2] = std::array::from_fn(|i| {
            let x = widen8(fx, bytes[i], signed[i], h);
            if zeros[i] == 0 {
                x
            } else {
                let z = i16x8(fx, zeros[i]);
                fx.b.ins().isub(x, z)
            }
        });
        for g in [false, true] {
            let (x, y) = (half(fx, xs[0], g), half(fx, xs[1], g));
            let prod = fx.b.ins().imul(x, y);
            let mut v = if p.mh == 0 {
                None
            } else {
                let c = fx.i32x4_const([p.mh; 4]);
                Some(fx.b.ins().imul(prod, c))
            };
            if p.ml != 0 {
                let c = fx.i32x4_const([p.ml; 4]);
                let l = fx.b.ins().imul(prod, c);
                let l = vsshr(fx, l, 15);
                v = Some(match v {
                    Some(v) => fx.b.ins().iadd(v, l),
                    None => l,
                });
            }
            let kh = match p.round {
                MulRound::Folded { kh, .. } => kh,
                MulRound::Split { .. } => 0,
            };
            out.push(add_const(fx, v, kh));
        }
    }
    out
}

/// The 16 results of `QBinary::apply` as bytes, from both operands' 16 bytes; an Add sums
/// operand `first`'s terms first (see [`products`]).
fn vector_apply(
    fx: &mut Fx,
    plan: &Plan,
    q: &QBinary,
    bytes: [Value; 2],
    signed: [bool; 2],
    first: usize,
) -> Value {
    let v = match plan {
        Plan::Add(p) => add_groups(fx, p, bytes, signed, first),
        Plan::Mul(p) => mul_groups(fx, p, q, bytes, signed),
    };
    // Two i16x8 of results (plus the zero point when `zp_in`), lanes 0–7 and 8–15.
    let mut words = Vec::with_capacity(2);
    let zp_in = match plan.last_shift() {
        Some((16, zp_in)) if fx.feat.aarch64 => {
            // The high halves of `V`: `V >> 16`, exact in i16 because `V` fits i32.
            for pair in v.chunks(2) {
                let (x, y) = (
                    fx.bitcast(types::I8X16, pair[0]),
                    fx.bitcast(types::I8X16, pair[1]),
                );
                let w = shuffle(fx, x, y, UZP2_16);
                let w = fx.bitcast(types::I16X8, w);
                words.push(match plan {
                    Plan::Add(AddPlan { post: Some(c), .. }) if *c != 0 => {
                        let c = i16x8(fx, *c as i32);
                        fx.b.ins().iadd(w, c)
                    }
                    _ => w,
                });
            }
            zp_in
        }
        Some((shift, zp_in)) => {
            for pair in v.chunks(2) {
                let x = vsshr(fx, pair[0], shift);
                let y = vsshr(fx, pair[1], shift);
                words.push(fx.b.ins().snarrow(x, y));
            }
            zp_in
        }
        None => {
            let Plan::Mul(MulPlan {
                round: MulRound::Split { s },
                ..
            }) = *plan
            else {
                unreachable!("only the split Mul rounding has no last shift")
            };
            let one = fx.i32x4_const([1; 4]);
            let r: Vec<Value> = v
                .into_iter()
                .map(|h| {
                    let t = if s == 16 { h } else { vsshr(fx, h, s - 16) };
                    let half = vsshr(fx, t, 1);
                    let odd = fx.b.ins().band(t, one);
                    fx.b.ins().iadd(half, odd)
                })
                .collect();
            for pair in r.chunks(2) {
                words.push(fx.b.ins().snarrow(pair[0], pair[1]));
            }
            false
        }
    };
    if !zp_in {
        let zp = i16x8(fx, q.zero_point);
        for w in &mut words {
            *w = fx.b.ins().sadd_sat(*w, zp);
        }
    }
    // The saturating narrow already clamps to the dtype's range; `[lo, hi]` only when
    // narrower.
    let (full_lo, full_hi) = if q.dtype == DType::U8 {
        (0, 255)
    } else {
        (-128, 127)
    };
    let (narrow_lo, narrow_hi) = (q.lo > full_lo, q.hi < full_hi);
    if q.dtype == DType::U8 {
        let mut v = fx.b.ins().unarrow(words[0], words[1]);
        if narrow_lo {
            let lo = i8x16(fx, q.lo);
            v = fx.b.ins().umax(v, lo);
        }
        if narrow_hi {
            let hi = i8x16(fx, q.hi);
            v = fx.b.ins().umin(v, hi);
        }
        v
    } else {
        let mut v = fx.b.ins().snarrow(words[0], words[1]);
        if narrow_lo {
            let lo = i8x16(fx, q.lo);
            v = fx.b.ins().smax(v, lo);
        }
        if narrow_hi {
            let hi = i8x16(fx, q.hi);
            v = fx.b.ins().smin(v, hi);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector step's arithmetic of `plan` in plain i32 lanes (wrapping where the code
    /// wraps, checked where it must not overflow): what `vector_apply` emits, lane by lane.
    fn emulate(plan: &Plan, q: &QBinary, a: i32, b: i32) -> i32 {
        let sat16 = |v: i32| v.clamp(i16::MIN as i32, i16::MAX as i32);
        let (w, zp_in) = match *plan {
            Plan::Add(p) => {
                let (a, b) = (a << p.k, b << p.k);
                assert!(fits_i16(a as i128) && fits_i16(b as i128));
                let h = (a * p.hi[0] as i32).wrapping_add(b * p.hi[1] as i32);
                let l = (a * p.lo[0] as i32)
                    .checked_add(b * p.lo[1] as i32)
                    .and_then(|l| l.checked_add(p.cl))
                    .expect("L + cl overflows");
                let v = h.wrapping_add(p.ch).wrapping_add(l >> 15);
                match p.post {
                    Some(c) => {
                        assert_eq!(p.shift, 16);
                        (((v >> 16) as i16).wrapping_add(c) as i32, p.zp_in)
                    }
                    None => (sat16(v >> p.shift), p.zp_in),
                }
            }
            Plan::Mul(p) => {
                let prod = (a - q.a_zero) * (b - q.b_zero);
                let h = prod.checked_mul(p.mh).unwrap();
                let l = prod.checked_mul(p.ml).unwrap();
                let h = h.checked_add(l >> 15).unwrap();
                match p.round {
                    MulRound::Folded { kh, zp_in, shift } => {
                        (sat16(h.wrapping_add(kh) >> shift), zp_in)
                    }
                    MulRound::Split { s } => {
                        let t = h >> (s - 16);
                        (sat16((t >> 1) + (t & 1)), false)
                    }
                }
            }
        };
        let w = if zp_in { w } else { sat16(w + q.zero_point) };
        let (lo, hi) = if q.dtype == DType::U8 {
            (0, 255)
        } else {
            (-128, 127)
        };
        w.clamp(lo, hi).clamp(q.lo, q.hi)
    }

    /// Every plan (both targets' choices) equals `QBinary::apply` on every pair of bytes,
    /// for random parameters over the contract's ranges and the extremes: multipliers
    /// −2^30, 2^30 − 1, 0, ±1 and ones with a full low half, shifts 16, 24..=31 and 46,
    /// zero points at the ends of their ranges.
    #[test]
    fn plans_equal_the_definition_on_every_byte_pair() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |lo: i64, hi: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            lo + (seed % (hi - lo + 1) as u64) as i64
        };
        let (mlo, mhi) = (-(1i64 << 30), (1i64 << 30) - 1);
        let special = [
            mlo,
            mhi,
            0,
            1,
            -1,
            0x7fff,
            -0x8000,
            (1 << 29) + 0x7fff,
            -0x7fff,
        ];
        let mut kinds = std::collections::BTreeSet::new();
        // A sum at the edge of i16 before the zero point (shift 24, both multipliers
        // 2^30 − 1): the high-half form without the zero point in the constant.
        let edge = QBinary {
            op: QBinaryOp::Add {
                ma: mhi as i32,
                mb: mhi as i32,
            },
            a_zero: 0,
            b_zero: 0,
            shift: 24,
            dtype: DType::U8,
            zero_point: 255,
            lo: 0,
            hi: 255,
        };
        let mut cases = vec![(edge, [DType::U8; 2])];
        for case in 0..400 {
            let dt = |v: i64| if v % 2 == 0 { DType::U8 } else { DType::I8 };
            let (da, db, dy) = (dt(next(0, 1)), dt(next(0, 1)), dt(next(0, 1)));
            let mult = |next: &mut dyn FnMut(i64, i64) -> i64| match next(0, 3) {
                0 => special[next(0, special.len() as i64 - 1) as usize] as i32,
                // A typical residual or bias ratio: a 30-bit multiplier.
                1 => (next(1 << 28, mhi) * if next(0, 1) == 0 { 1 } else { -1 }) as i32,
                _ => next(mlo, mhi) as i32,
            };
            let op = if case % 3 == 0 {
                QBinaryOp::Mul { m: mult(&mut next) }
            } else {
                QBinaryOp::Add {
                    ma: mult(&mut next),
                    mb: mult(&mut next),
                }
            };
            let zero = |next: &mut dyn FnMut(i64, i64) -> i64, d: DType| {
                let (lo, hi) = byte_range(d);
                match next(0, 3) {
                    0 => lo as i32,
                    1 => hi as i32,
                    _ => next(lo, hi) as i32,
                }
            };
            let shift = match next(0, 4) {
                0 => 16,
                1 => 46,
                2 => next(24, 31),
                _ => next(16, 46),
            } as u32;
            let (ylo, yhi) = byte_range(dy);
            let (l, h) = (next(ylo, yhi) as i32, next(ylo, yhi) as i32);
            let wide = next(0, 1) == 0;
            let q = QBinary {
                op,
                a_zero: zero(&mut next, da),
                b_zero: zero(&mut next, db),
                shift,
                dtype: dy,
                zero_point: zero(&mut next, dy),
                lo: if wide { ylo as i32 } else { l.min(h) },
                hi: if wide { yhi as i32 } else { l.max(h) },
            };
            cases.push((q, [da, db]));
        }
        for (q, [da, db]) in cases {
            q.check(da, db).unwrap();
            for aarch64 in [false, true] {
                let plan = Plan::new(&q, [da, db], aarch64).expect("a plan");
                kinds.insert(format!("{:?}", kind(&plan)));
                let (ra, rb) = (byte_range(da), byte_range(db));
                for a in ra.0..=ra.1 {
                    for b in rb.0..=rb.1 {
                        let (a, b) = (a as i32, b as i32);
                        assert_eq!(
                            emulate(&plan, &q, a, b),
                            q.apply(a, b),
                            "{q:?} {plan:?} a={a} b={b}"
                        );
                    }
                }
            }
        }
        // Every form was exercised.
        for k in [
            "AddHighPost(true)",
            "AddHighPost(false)",
            "AddHigh(true)",
            "AddShift(true)",
            "AddShift(false)",
            "MulFolded(true)",
            "MulSplit",
        ] {
            assert!(kinds.contains(k), "no {k} among {kinds:?}");
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Kind {
        AddHighPost(bool),
        AddHigh(bool),
        AddShift(bool),
        MulFolded(bool),
        MulSplit,
    }

    fn kind(p: &Plan) -> Kind {
        match *p {
            Plan::Add(a) if a.post.is_some() => Kind::AddHighPost(a.zp_in),
            Plan::Add(a) if a.shift == 16 => Kind::AddHigh(a.zp_in),
            Plan::Add(a) => Kind::AddShift(a.zp_in),
            Plan::Mul(MulPlan {
                round: MulRound::Folded { zp_in, .. },
                ..
            }) => Kind::MulFolded(zp_in),
            Plan::Mul(_) => Kind::MulSplit,
        }
    }

    /// The examples' residual and bias Adds (shift 29 and 30, u8) take the high-half form
    /// with the zero point in the constant on aarch64, and keep it in the constant on
    /// x86_64.
    #[test]
    fn example_adds_take_the_short_forms() {
        let q = QBinary {
            op: QBinaryOp::Add {
                ma: 1010138490,
                mb: 528231573,
            },
            a_zero: 0,
            b_zero: 127,
            shift: 30,
            dtype: DType::U8,
            zero_point: 63,
            lo: 0,
            hi: 255,
        };
        let u = [DType::U8; 2];
        let Some(Plan::Add(p)) = Plan::new(&q, u, true) else {
            panic!()
        };
        assert_eq!((p.k, p.shift, p.zp_in, p.ch), (1, 16, true, 0));
        assert!(p.post.is_some());
        let Some(Plan::Add(p)) = Plan::new(&q, u, false) else {
            panic!()
        };
        assert_eq!((p.k, p.shift, p.zp_in), (0, 15, true));
    }
}
