//! Depthwise integer convolution (`Kernel::QConv` with `groups == c_in == c_out`) over a
//! padded copy of each plane.
//!
//! Per channel, the input plane is first copied into a stack area with its padding
//! filled with the zero point's byte (so a padding tap contributes `(zero − zero)·w = 0`,
//! exactly the definition), which makes every output an interior one: no bounds logic,
//! no scalar border points. Outputs are then computed `L` at a time (16 at stride 1, 8 at
//! stride 2, 4 up to stride 5, each tap one 16-byte load, strided lanes gathered by one
//! shuffle): taps widened to `i16`, multiplied by the tap's weight with the widening
//! `smull`/`smull2` (`i16 × i16 → i32`; the weights are stored one byte each and
//! broadcast once per channel by lane shuffles of a loaded vector, which the optimizer
//! cannot fold into the multiply, see [`channel_weights`]), summed in i32 from
//! `bias − zero · Σ w` (every tap is present in the padded plane, so the zero point
//! folds out of the loop) and requantized with [`super::qgemm::requant`]. A row whose width is not a multiple of `L` ends with a
//! vector overlapping the previous one; rows narrower than `L` compute one vector and
//! store its valid lanes (the stack area has slack for the over-read).
//!
//! With `has_dotprod` and windows at most 4 wide ([`dot_form`]) each window row of 4
//! outputs is one 16-byte load, one `tbl` giving each output's lane its taps and one
//! `sdot` with the row's weights (zero padded to 4), u8 inputs flipped to s8 as in
//! [`super::qgemm`]: 3×3 over 32 channels of 32×32 takes 0.29 M guest instructions
//! (Cortex-A76) against 0.45 M in the widening form and 0.27 M for the f32 kernel.
//!
//! Planes whose padded copy would exceed [`PADDED_MAX`] bytes, and strides above 5, take
//! the direct kernel of [`super::qwindow`] instead.

use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind, Value, types};
use edgecc_program::{Buffer, DType, QuantOut, ZeroPoint};

use crate::error::Error;
use crate::fx::{Fx, PTR};
use crate::kernels::qconv::{self, QConv};
use crate::kernels::{qgemm, qwindow};

/// Largest padded plane copied to the stack, in bytes.
pub(crate) const PADDED_MAX: u64 = 64 * 1024;

/// Over-read slack after the padded plane: the widest read past a valid window start is
/// the `sdot` form's last 16-byte load of a vector, `12·sw + 15 ≤ 75` bytes (`sw ≤ 5`).
pub(crate) const SLACK: u64 = 80;

/// Whether every window of the `Spatial`'s outputs lies inside the padded plane (the
/// program could state more outputs than the geometry gives; the direct kernels, which
/// check every tap, handle that).
pub(crate) fn windows_fit(s: &edgecc_program::Spatial, w: &edgecc_program::Window) -> bool {
    let fits = |out: u32, size: u32, k: u32, st: u32, d: u32, p0: u32, p1: u32| {
        let (out, size, k, st, d) = (out as u64, size as u64, k as u64, st as u64, d as u64);
        let span = size + p0 as u64 + p1 as u64;
        out == 0 || (out - 1) * st + (k - 1) * d < span
    };
    fits(
        s.out_h,
        s.in_h,
        w.kh,
        w.stride_h,
        w.dilation_h,
        w.pad_top,
        w.pad_bottom,
    ) && fits(
        s.out_w,
        s.in_w,
        w.kw,
        w.stride_w,
        w.dilation_w,
        w.pad_left,
        w.pad_right,
    )
}

/// Output lanes per vector for a horizontal stride, if this kernel handles it.
fn lanes_for(stride_w: u32) -> Option<u64> {
    match stride_w {
        1 => Some(16),
        2 => Some(8),
        3..=5 => Some(4),
        _ => None,
    }
}

/// Whether [`emit`] handles `cv` (else the direct kernel does).
pub(crate) fn handles(cv: &QConv) -> bool {
    let (s, w) = (&cv.s, &cv.w);
    let ph = s.in_h as u64 + w.pad_top as u64 + w.pad_bottom as u64;
    let pw = s.in_w as u64 + w.pad_left as u64 + w.pad_right as u64;
    lanes_for(w.stride_w).is_some() && ph * pw + SLACK <= PADDED_MAX && windows_fit(s, w)
}

/// How the products are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `sdot` per window row of 4 outputs (aarch64 with `has_dotprod`, windows at most 4
    /// wide whose 4 outputs' taps lie in one 16-byte load: `3·sw + (kw−1)·dw ≤ 15`).
    Dot,
    /// `pmaddwd` over pairs of taps (x86_64): the two taps' inputs interleaved as `i16`,
    /// times `[w_a, w_b]` in every pair.
    Pairs,
    /// Widening `smull`/`smull2` per tap (aarch64 without `has_dotprod`).
    Widen,
}

impl Form {
    pub fn of(cv: &QConv, t: qgemm::QTile) -> Form {
        let w = &cv.w;
        if t.pairs {
            Form::Pairs
        } else if t.sdot
            && w.kw <= 4
            && 3 * w.stride_w as u64 + (w.kw as u64 - 1) * w.dilation_w as u64 <= 15
        {
            Form::Dot
        } else {
            Form::Widen
        }
    }
}

/// The weights as `form` reads them, one byte each, then each channel's sum of weights
/// as an `i32`, then [`WEIGHT_SLACK`] zero bytes: `Widen`: `[channel][tap]`; `Dot`:
/// `[channel][window row][4 bytes]`, the row's up to 4 taps zero padded; `Pairs`:
/// `[channel][tap pair][2 bytes]` (an odd last tap paired with a zero weight). The
/// kernel broadcasts them to vectors once per channel ([`channel_weights`]).
pub(crate) fn pack_weights(w: &[u8], channels: u64, (kh, kw): (u64, u64), form: Form) -> Vec<u8> {
    let taps = kh * kw;
    let per_channel = weight_bytes(form, kh, kw);
    let mut out = Vec::with_capacity((channels * (per_channel + 4)) as usize + WEIGHT_SLACK);
    let wt = |c: u64, t: u64| -> i8 {
        if t < taps {
            w[(c * taps + t) as usize] as i8
        } else {
            0
        }
    };
    for c in 0..channels {
        match form {
            Form::Dot => {
                for ky in 0..kh {
                    for kx in 0..4 {
                        out.push(if kx < kw {
                            wt(c, ky * kw + kx) as u8
                        } else {
                            0
                        });
                    }
                }
            }
            Form::Pairs | Form::Widen => {
                for t in 0..per_channel {
                    out.push(wt(c, t) as u8);
                }
            }
        }
    }
    for c in 0..channels {
        let sum: i32 = (0..taps).map(|t| wt(c, t) as i32).sum();
        out.extend(sum.to_le_bytes());
    }
    out.resize(out.len() + WEIGHT_SLACK, 0);
    out
}

/// Zero bytes after [`pack_weights`]' tables, so that the last channel's 16-byte weight
/// loads stay inside the data.
const WEIGHT_SLACK: usize = 16;

/// Bytes of weights per channel in [`pack_weights`]' layout.
fn weight_bytes(form: Form, kh: u64, kw: u64) -> u64 {
    match form {
        Form::Dot => 4 * kh,
        Form::Pairs => 2 * (kh * kw).div_ceil(2),
        Form::Widen => kh * kw,
    }
}

/// The weight operands of the channel whose packed weights are at `wch`: `Dot`: per
/// window row an `i8x16` with the row's 4 bytes in every 32-bit lane; `Pairs`: per tap
/// pair an `i16x8` with the pair in every 32-bit lane; `Widen`: per tap an `i16x8`
/// splat. Read 16 bytes at a time (sign-extended to `i16` for `Pairs` and `Widen`) and
/// broadcast by lane, so the operands are shuffles of a loaded vector, which the
/// optimizer cannot fold into the widening multiplies (a `splat` of a scalar would be:
/// `swiden_low(splat x)` becomes `splat(sextend x)`, and `smull` is lost).
fn channel_weights(fx: &mut Fx, form: Form, wch: Value, (kh, kw): (u64, u64)) -> Vec<Value> {
    let n = match form {
        Form::Dot => kh,
        Form::Pairs => (kh * kw).div_ceil(2),
        Form::Widen => kh * kw,
    };
    // Operands per 16-byte load, and per `i16x8` half of one.
    let (per_load, per_half) = match form {
        Form::Dot => (4, 4),
        Form::Pairs => (8, 4),
        Form::Widen => (16, 8),
    };
    let mut ops = Vec::with_capacity(n as usize);
    for q in 0..n.div_ceil(per_load) {
        let v = fx.load(types::I8X16, wch, 16 * q as i64, true);
        for i in 0..(n - per_load * q).min(per_load) {
            let op = match form {
                Form::Dot => qgemm::splat_lane32(fx, v, i as u8),
                Form::Pairs | Form::Widen => {
                    let half = if i < per_half {
                        fx.b.ins().swiden_low(v)
                    } else {
                        fx.b.ins().swiden_high(v)
                    };
                    let half = fx.bitcast(types::I8X16, half);
                    let l = (i % per_half) as u8;
                    let p = if form == Form::Pairs {
                        qgemm::splat_lane32(fx, half, l)
                    } else {
                        let mask: [u8; 16] = std::array::from_fn(|j| 2 * l + j as u8 % 2);
                        qgemm::shuffle(fx, half, half, mask)
                    };
                    fx.bitcast(types::I16X8, p)
                }
            };
            ops.push(op);
        }
    }
    ops
}

/// Emits the kernel; `wtab`: data index of [`pack_weights`], `mults`: of the
/// per-channel multipliers (`qwindow::multipliers`).
pub(crate) fn emit(
    fx: &mut Fx,
    cv: &QConv,
    wtab: usize,
    mults: usize,
    form: Form,
) -> Result<(), Error> {
    let dot = form == Form::Dot;
    let (s, w) = (&cv.s, &cv.w);
    let signed = cv.in_dtype == DType::I8;
    let lanes = if dot {
        16
    } else {
        lanes_for(w.stride_w).expect("checked by `handles`")
    };
    // The `sdot` form flips u8 inputs to s8 (`x − 128`) and adds `128 · Σ w` back.
    let flip = dot && !signed;
    let (ih, iw) = (s.in_h as u64, s.in_w as u64);
    let (pt, pl) = (w.pad_top as u64, w.pad_left as u64);
    let ph = ih + pt + w.pad_bottom as u64;
    let pw = iw + pl + w.pad_right as u64;
    let (oh, ow) = (s.out_h as u64, s.out_w as u64);
    let esize = cv.out.dtype().size() as i64;
    let input = fx.buf(cv.input);
    let output = fx.buf(cv.output);
    let wts = fx.data_addr(wtab);
    let mtab = fx.data_addr(mults);
    let bias = cv.bias.map(|b| fx.buf(Buffer::Const(b)));
    let slot = fx.b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (ph * pw + SLACK) as u32,
        4,
    ));
    let pad = fx.b.ins().stack_addr(PTR, slot, 0);
    let (zb, za) = match cv.in_zero {
        ZeroPoint::Const(z) => (
            fx.b.ins().iconst(types::I8, (z as u8) as i64),
            fx.b.ins().iconst(types::I32, z as i64),
        ),
        ZeroPoint::Runtime(buf) => {
            let p = fx.buf(buf);
            let b = fx.load(types::I8, p, 0, true);
            let z = if signed {
                fx.b.ins().sextend(types::I32, b)
            } else {
                fx.b.ins().uextend(types::I32, b)
            };
            (b, z)
        }
    };
    let zv = fx.b.ins().splat(types::I8X16, zb);
    // The `sdot` form's tap gather: output lane `i` takes bytes `i·sw + kx·dw`.
    let tbl = dot.then(|| {
        let (sw, dw, kw) = (w.stride_w as u64, w.dilation_w as u64, w.kw as u64);
        let mask: Vec<u8> = (0..16u64)
            .map(|i| (i / 4 * sw + if i % 4 < kw { i % 4 * dw } else { 0 }) as u8)
            .collect();
        fx.vconst_bytes(types::I8X16, mask)
    });
    let per_channel = weight_bytes(form, w.kh as u64, w.kw as u64);
    let sums = fx.addp(wts, (c_total(cv) * per_channel) as i64);
    // Σ (x − zero)·w = Σ x'·w + (flip − zero)·Σ w with x' the (flipped) input.
    let za = if flip {
        let f = fx.b.ins().iconst(types::I32, 128);
        fx.b.ins().isub(za, f)
    } else {
        za
    };
    let c = cv.c_out as u64;
    fx.for_n(s.n as u64, &[], |fx, ni, _| {
        fx.for_n(c, &[], |fx, ch, _| {
            let plane = fx.b.ins().imul_imm_s(ni, c as i64);
            let plane = fx.b.ins().iadd(plane, ch);
            let src = fx.addp_scaled(input, plane, (ih * iw) as i64);
            pad_plane(fx, src, pad, (ih, iw), (ph, pw), (pt, pl), (zb, zv));
            let out = fx.addp_scaled(output, plane, (oh * ow) as i64 * esize);
            let wch = fx.addp_scaled(wts, ch, per_channel as i64);
            let wv = channel_weights(fx, form, wch, (w.kh as u64, w.kw as u64));
            let b0 = match bias {
                Some(b) => {
                    let p = fx.addp_scaled(b, ch, 4);
                    fx.load(types::I32, p, 0, true)
                }
                None => fx.b.ins().iconst(types::I32, 0),
            };
            let sp = fx.addp_scaled(sums, ch, 4);
            let wsum = fx.load(types::I32, sp, 0, true);
            let zw = fx.b.ins().imul(za, wsum);
            let b0 = fx.b.ins().isub(b0, zw);
            let bv = fx.b.ins().splat(types::I32X4, b0);
            let mv = match cv.out {
                QuantOut::Requant(rq) => {
                    let p = fx.addp_scaled(mtab, ch, 4);
                    Some(qgemm::mult_at(fx, rq, p, 0, qwindow::mult_region(c), true))
                }
                QuantOut::I32 => None,
            };
            fx.for_n(oh, &[], |fx, oy, _| {
                let row = fx.b.ins().imul_imm_s(oy, (w.stride_h as u64 * pw) as i64);
                let row = fx.addp_scaled(pad, row, 1);
                let orow = fx.addp_scaled(out, oy, ow as i64 * esize);
                // `src`, `dst`: the window start and output of the vector's first output.
                let vector = |fx: &mut Fx, src: Value, dst: Value, valid: u64| {
                    let acc = match form {
                        Form::Dot => outputs_dot(fx, cv, src, pw, &wv, bv, (flip, tbl)),
                        Form::Pairs => outputs_pairs(fx, cv, lanes, src, pw, &wv, bv),
                        Form::Widen => outputs(fx, cv, lanes, src, pw, &wv, bv),
                    };
                    store(fx, cv.out, mv, &acc, dst, esize, valid);
                };
                let (sstep, dstep) = ((lanes * w.stride_w as u64) as i64, lanes as i64 * esize);
                if ow < lanes {
                    vector(fx, row, orow, ow);
                } else {
                    // Pointers carried by the loop, so every load is `ldr q, [ptr, #imm]`.
                    fx.for_n(ow / lanes, &[row, orow], |fx, _, c| {
                        vector(fx, c[0], c[1], lanes);
                        vec![fx.addp(c[0], sstep), fx.addp(c[1], dstep)]
                    });
                    if !ow.is_multiple_of(lanes) {
                        // Recomputes up to `lanes − 1` outputs of the previous vector.
                        let back = (ow - lanes) as i64;
                        let src = fx.addp(row, back * w.stride_w as i64);
                        let dst = fx.addp(orow, back * esize);
                        vector(fx, src, dst, lanes);
                    }
                }
                vec![]
            });
            vec![]
        });
        vec![]
    });
    Ok(())
}

/// Channels of a depthwise convolution.
fn c_total(cv: &QConv) -> u64 {
    cv.c_out as u64
}

/// Copies the `ih × iw` plane at `src` into `dst` (`ph × pw`) at `(pt, pl)`, filling
/// the rest with the zero point's byte.
pub(crate) fn pad_plane(
    fx: &mut Fx,
    src: Value,
    dst: Value,
    (ih, iw): (u64, u64),
    (ph, pw): (u64, u64),
    (pt, pl): (u64, u64),
    z: (Value, Value),
) {
    let pr = pw - iw - pl;
    fx.for_n(pt, &[], |fx, y, _| {
        let row = fx.addp_scaled(dst, y, pw as i64);
        qconv::fill_row(fx, z, row, pw);
        vec![]
    });
    let first = fx.addp(dst, (pt * pw) as i64);
    fx.for_n(ih, &[], |fx, y, _| {
        let row = fx.addp_scaled(first, y, pw as i64);
        let from = fx.addp_scaled(src, y, iw as i64);
        qconv::fill_row(fx, z, row, pl);
        let to = fx.addp(row, pl as i64);
        qconv::copy_row(fx, from, 1, to, iw);
        let after = fx.addp(row, (pl + iw) as i64);
        qconv::fill_row(fx, z, after, pr);
        vec![]
    });
    let below = fx.addp(dst, ((pt + ih) * pw) as i64);
    fx.for_n(ph - pt - ih, &[], |fx, y, _| {
        let row = fx.addp_scaled(below, y, pw as i64);
        qconv::fill_row(fx, z, row, pw);
        vec![]
    });
}

/// The `lanes / 4` accumulators (`i32x4`) of `lanes` outputs whose window starts at
/// `src` in the padded plane (row length `pw`).
#[allow(clippy::too_many_arguments)]
fn outputs(
    fx: &mut Fx,
    cv: &QConv,
    lanes: u64,
    src: Value,
    pw: u64,
    wv: &[Value],
    bias: Value,
) -> Vec<Value> {
    let w = &cv.w;
    let signed = cv.in_dtype == DType::I8;
    let mut acc = vec![bias; (lanes / 4) as usize];
    for ky in 0..w.kh as u64 {
        for kx in 0..w.kw as u64 {
            let v = tap_lanes(fx, cv, src, pw, ky, kx);
            let halves = if lanes > 8 { 2 } else { 1 };
            let wt = wv[(ky * w.kw as u64 + kx) as usize];
            for h in 0..halves {
                let x = match (signed, h) {
                    (true, 0) => fx.b.ins().swiden_low(v),
                    (true, _) => fx.b.ins().swiden_high(v),
                    (false, 0) => fx.b.ins().uwiden_low(v),
                    (false, _) => fx.b.ins().uwiden_high(v),
                };
                for q in 0..2u64 {
                    let i = (2 * h + q) as usize;
                    if i >= acc.len() {
                        break;
                    }
                    let ins = &mut fx.b;
                    let (xw, ww) = if q == 0 {
                        (ins.ins().swiden_low(x), ins.ins().swiden_low(wt))
                    } else {
                        (ins.ins().swiden_high(x), ins.ins().swiden_high(wt))
                    };
                    let p = ins.ins().imul(xw, ww);
                    acc[i] = ins.ins().iadd(acc[i], p);
                }
            }
        }
    }
    acc
}

/// Tap `(ky, kx)` of `lanes` outputs whose windows start at `src`, in the low lanes of
/// an `i8x16` (strided lanes gathered by one shuffle).
fn tap_lanes(fx: &mut Fx, cv: &QConv, src: Value, pw: u64, ky: u64, kx: u64) -> Value {
    let w = &cv.w;
    let off = (ky * w.dilation_h as u64 * pw + kx * w.dilation_w as u64) as i64;
    let v = fx.load(types::I8X16, src, off, false);
    let sw = w.stride_w as u64;
    if sw == 1 {
        return v;
    }
    let mask: [u8; 16] = std::array::from_fn(|i| ((i as u64 * sw) % 16) as u8);
    qgemm::shuffle(fx, v, v, mask)
}

/// The `pmaddwd` form of [`outputs`]: per pair of taps and 8 outputs, the two taps'
/// inputs widened to `i16` and interleaved (`punpcklwd`/`punpckhwd`), then one
/// `pmaddwd` per 4 outputs with the pair's weights.
#[allow(clippy::too_many_arguments)]
fn outputs_pairs(
    fx: &mut Fx,
    cv: &QConv,
    lanes: u64,
    src: Value,
    pw: u64,
    wv: &[Value],
    bias: Value,
) -> Vec<Value> {
    const LO: [u8; 16] = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
    const HI: [u8; 16] = [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31];
    let w = &cv.w;
    let signed = cv.in_dtype == DType::I8;
    let (kw, taps) = (w.kw as u64, w.kh as u64 * w.kw as u64);
    let mut acc = vec![bias; (lanes / 4) as usize];
    for (p, &wp) in wv.iter().enumerate() {
        let (ta, tb) = (2 * p as u64, (2 * p as u64 + 1).min(taps - 1));
        let va = tap_lanes(fx, cv, src, pw, ta / kw, ta % kw);
        let vb = tap_lanes(fx, cv, src, pw, tb / kw, tb % kw);
        for h in 0..lanes.div_ceil(8) {
            let widen = |fx: &mut Fx, v: Value| {
                let x = match (signed, h) {
                    (true, 0) => fx.b.ins().swiden_low(v),
                    (true, _) => fx.b.ins().swiden_high(v),
                    (false, 0) => fx.b.ins().uwiden_low(v),
                    (false, _) => fx.b.ins().uwiden_high(v),
                };
                fx.bitcast(types::I8X16, x)
            };
            let (xa, xb) = (widen(fx, va), widen(fx, vb));
            for (q, mask) in [LO, HI].into_iter().enumerate() {
                let i = (2 * h + q as u64) as usize;
                if i >= acc.len() {
                    break;
                }
                let ab = qgemm::shuffle(fx, xa, xb, mask);
                let ab = fx.bitcast(types::I16X8, ab);
                let d = qgemm::pmaddwd(fx, ab, wp);
                acc[i] = fx.b.ins().iadd(acc[i], d);
            }
        }
    }
    acc
}

/// The `sdot` form of [`outputs`] for 16 outputs: per window row and 4 outputs, one
/// 16-byte load, one shuffle that gives each output's lane its up to 4 taps, one `sdot`
/// with the row's weights.
fn outputs_dot(
    fx: &mut Fx,
    cv: &QConv,
    src: Value,
    pw: u64,
    wv: &[Value],
    bias: Value,
    (flip, tbl): (bool, Option<Value>),
) -> Vec<Value> {
    let w = &cv.w;
    let tbl = tbl.expect("the sdot form's gather mask");
    let mut acc = vec![bias; 4];
    for (ky, &wrow) in wv.iter().enumerate() {
        for (q, a) in acc.iter_mut().enumerate() {
            let off =
                (ky as u64 * w.dilation_h as u64 * pw + 4 * q as u64 * w.stride_w as u64) as i64;
            let v = fx.load(types::I8X16, src, off, false);
            let v = qgemm::flip_vec(fx, flip, v);
            let taps = fx.b.ins().swizzle(v, tbl);
            *a = qgemm::dot_tree(fx, taps, wrow, *a);
        }
    }
    acc
}

/// Requantizes (or not) and stores the first `valid` of the accumulators' lanes at `dst`.
fn store(
    fx: &mut Fx,
    out: &QuantOut,
    m: Option<qgemm::Mult>,
    acc: &[Value],
    dst: Value,
    esize: i64,
    valid: u64,
) {
    let (ys, dtype): (Vec<Value>, DType) = match out {
        QuantOut::I32 => (acc.to_vec(), DType::I32),
        QuantOut::Requant(rq) => (
            acc.iter()
                .map(|&x| qgemm::requant(fx, rq, x, m.expect("multipliers of a requant")))
                .collect(),
            rq.dtype,
        ),
    };
    if dtype != DType::I32 && ys.len() == 4 && valid == 16 {
        // All 16 outputs as bytes in one store.
        let a = fx.b.ins().snarrow(ys[0], ys[1]);
        let b = fx.b.ins().snarrow(ys[2], ys[3]);
        let bytes = if dtype == DType::U8 {
            fx.b.ins().unarrow(a, b)
        } else {
            fx.b.ins().snarrow(a, b)
        };
        fx.store(bytes, dst, 0);
        return;
    }
    for (q, &y) in ys.iter().enumerate() {
        let first = 4 * q as u64;
        if first >= valid {
            break;
        }
        qgemm::store_lanes(
            fx,
            y,
            dtype,
            dst,
            first as i64 * esize,
            esize,
            (valid - first).min(4),
        );
    }
}
