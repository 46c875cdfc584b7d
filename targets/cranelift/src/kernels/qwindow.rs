//! Sliding windows over 8-bit NCHW planes: depthwise integer convolution and max
//! pooling of `U8`/`I8` values.
//!
//! The fast forms work on a padded copy of each plane: max pooling here
//! ([`emit_max_pool`]: 3×3 stride 2 over 32 channels of 64×64 takes 0.18 M guest
//! instructions on a Cortex-A76, the f32 kernel 0.35 M), the depthwise convolution in
//! [`super::qdepthwise`]. What follows is the direct form they fall back to for planes
//! too big to copy to the stack or wide strides. Both direct kernels split each output row at compile time (as [`super::window`] does for f32) into
//! the interior columns, where every tap of a window row is inside the input, and the
//! border columns. Interior columns are computed several outputs at a time with no
//! bounds logic: max pooling 16 outputs per `i8x16` (`umax`/`smax`; at stride 1 one load
//! per tap, other strides gather the lanes), the depthwise convolution 4 outputs per
//! `i32x4` (taps widened `i8 → i16 → i32`, multiplied by the splatted weight, added to
//! the accumulators), followed by the vector requantization of [`super::qgemm`]. Border
//! points are computed one at a time: an out-of-bounds tap loads from the plane's first
//! element and its value is replaced by the neutral element (nothing for the
//! convolution, whose padding is the zero point, i.e. a real 0; the dtype's minimum for
//! the max), so there is no branch per tap and no read outside the input.

use cranelift_codegen::ir::{
    InstBuilder, StackSlotData, StackSlotKind, Value, condcodes::IntCC, types,
};
use edgecc_program::{DType, QuantOut, Spatial, Window, ZeroPoint};

use crate::error::Error;
use crate::fx::Fx;
use crate::kernels::qconv::QConv;
use crate::kernels::{qdepthwise, qgemm};

/// The per-channel requantization operands of a depthwise convolution: the multipliers
/// (the single one repeated), then, with `bounds` (x86_64, whose clamp-first epilogue
/// reads them), the low and high accumulator bounds of [`qgemm::acc_bounds`], each
/// region `channels + 4` i32s (so that a 16-byte load at any channel stays inside it);
/// zeros for an `I32` output.
pub(crate) fn multipliers(out: &QuantOut, channels: u64, bounds: bool) -> Vec<u8> {
    let m = |c: u64| match out {
        _ if c >= channels => 0,
        QuantOut::Requant(r) if r.multiplier.len() == 1 => r.multiplier[0],
        QuantOut::Requant(r) => r.multiplier[c as usize],
        QuantOut::I32 => 0,
    };
    let bound = |c: u64, side: usize| match out {
        QuantOut::Requant(r) if c < channels => {
            let (lo, hi) = qgemm::acc_bounds(r, m(c)).0;
            if side == 0 { lo } else { hi }
        }
        _ => 0,
    };
    let n = channels + 4;
    let nb = if bounds { n } else { 0 };
    (0..n)
        .map(m)
        .chain((0..nb).map(|c| bound(c, 0)))
        .chain((0..nb).map(|c| bound(c, 1)))
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// Bytes between the regions of [`multipliers`].
pub(crate) fn mult_region(channels: u64) -> i64 {
    4 * (channels as i64 + 4)
}

/// Output indices `lo..hi` for which every tap is in bounds along one dimension.
fn interior(out: u32, size: u32, k: u32, s: u32, d: u32, pad: u32) -> (u64, u64) {
    let (size, s, pad) = (size as i64, s as i64, pad as i64);
    let span = (k as i64 - 1) * d as i64;
    let lo = (pad + s - 1) / s;
    let hi_incl = (size - 1 - span + pad).div_euclid(s);
    let hi = (hi_incl + 1).clamp(0, out as i64);
    let lo = lo.min(hi);
    (lo as u64, hi as u64)
}

/// One plane's geometry and the pointers of the current channel.
struct Plane<'a> {
    s: &'a Spatial,
    w: &'a Window,
    input: Value,
    output: Value,
}

/// The in-bounds flag and the (always readable) byte address of tap `(ky, kx)` of output
/// `(oy, ox)`.
fn tap(fx: &mut Fx, pl: &Plane, oy: Value, ox: Value, ky: u64, kx: u64) -> (Value, Value) {
    let (s, w) = (pl.s, pl.w);
    let iy = fx.b.ins().imul_imm_s(oy, w.stride_h as i64);
    let iy =
        fx.b.ins()
            .iadd_imm_s(iy, ky as i64 * w.dilation_h as i64 - w.pad_top as i64);
    let ix = fx.b.ins().imul_imm_s(ox, w.stride_w as i64);
    let ix =
        fx.b.ins()
            .iadd_imm_s(ix, kx as i64 * w.dilation_w as i64 - w.pad_left as i64);
    let vy =
        fx.b.ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, iy, s.in_h as i64);
    let vx =
        fx.b.ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, ix, s.in_w as i64);
    let ok = fx.b.ins().band(vy, vx);
    let at = fx.b.ins().imul_imm_s(iy, s.in_w as i64);
    let at = fx.b.ins().iadd(at, ix);
    let zero = fx.iconst(0);
    let at = fx.b.ins().select(ok, at, zero);
    (ok, fx.addp_scaled(pl.input, at, 1))
}

/// Calls `point(fx, oy, ox, interior_vector)` over one plane: border points one by one
/// (`None`), interior runs `lanes` outputs at a time (`Some(lanes)`), the last run
/// overlapping its neighbour when the interior width is not a multiple of `lanes`.
fn plane_loop(
    fx: &mut Fx,
    s: &Spatial,
    w: &Window,
    lanes: u64,
    point: &mut dyn FnMut(&mut Fx, Value, Value, bool),
) {
    let (y_lo, y_hi) = interior(s.out_h, s.in_h, w.kh, w.stride_h, w.dilation_h, w.pad_top);
    let (x_lo, x_hi) = interior(s.out_w, s.in_w, w.kw, w.stride_w, w.dilation_w, w.pad_left);
    let ow = s.out_w as u64;
    let border_row =
        |fx: &mut Fx, oy: Value, point: &mut dyn FnMut(&mut Fx, Value, Value, bool)| {
            fx.for_n(ow, &[], |fx, ox, _| {
                point(fx, oy, ox, false);
                vec![]
            });
        };
    fx.for_n(y_lo, &[], |fx, oy, _| {
        border_row(fx, oy, point);
        vec![]
    });
    fx.for_n(y_hi - y_lo, &[], |fx, j, _| {
        let oy = fx.b.ins().iadd_imm_s(j, y_lo as i64);
        for (lo, hi) in [(0, x_lo), (x_hi, ow)] {
            fx.for_n(hi - lo, &[], |fx, j, _| {
                let ox = fx.b.ins().iadd_imm_s(j, lo as i64);
                point(fx, oy, ox, false);
                vec![]
            });
        }
        let width = x_hi - x_lo;
        if width >= lanes {
            fx.for_n(width / lanes, &[], |fx, j, _| {
                let ox = fx.b.ins().imul_imm_s(j, lanes as i64);
                let ox = fx.b.ins().iadd_imm_s(ox, x_lo as i64);
                point(fx, oy, ox, true);
                vec![]
            });
            if width % lanes != 0 {
                let ox = fx.iconst((x_hi - lanes) as i64);
                point(fx, oy, ox, true);
            }
        } else {
            fx.for_n(width, &[], |fx, j, _| {
                let ox = fx.b.ins().iadd_imm_s(j, x_lo as i64);
                point(fx, oy, ox, false);
                vec![]
            });
        }
        vec![]
    });
    fx.for_n(s.out_h as u64 - y_hi, &[], |fx, j, _| {
        let oy = fx.b.ins().iadd_imm_s(j, y_hi as i64);
        border_row(fx, oy, point);
        vec![]
    });
}

/// Loads `lanes` (4 or 16) input bytes of interior outputs `ox .. ox + lanes` at tap
/// `(ky, kx)` of row `oy` as an `i8x16` (lanes beyond `lanes` undefined): one load at
/// unit stride, lane inserts otherwise.
fn tap_vec(fx: &mut Fx, pl: &Plane, oy: Value, ox: Value, ky: u64, kx: u64, lanes: u64) -> Value {
    let (s, w) = (pl.s, pl.w);
    let iy = fx.b.ins().imul_imm_s(oy, w.stride_h as i64);
    let iy =
        fx.b.ins()
            .iadd_imm_s(iy, ky as i64 * w.dilation_h as i64 - w.pad_top as i64);
    let ix = fx.b.ins().imul_imm_s(ox, w.stride_w as i64);
    let ix =
        fx.b.ins()
            .iadd_imm_s(ix, kx as i64 * w.dilation_w as i64 - w.pad_left as i64);
    let at = fx.b.ins().imul_imm_s(iy, s.in_w as i64);
    let at = fx.b.ins().iadd(at, ix);
    let p = fx.addp_scaled(pl.input, at, 1);
    if w.stride_w == 1 && lanes == 16 {
        return fx.load(types::I8X16, p, 0, true);
    }
    if w.stride_w == 1 && lanes == 4 {
        let word = fx.load(types::I32, p, 0, true);
        let v = fx.b.ins().scalar_to_vector(types::I32X4, word);
        return fx.bitcast(types::I8X16, v);
    }
    let zero = fx.vconst_bytes(types::I8X16, vec![0; 16]);
    let mut v = zero;
    for l in 0..lanes as u8 {
        let x = fx.load(types::I8, p, l as i64 * w.stride_w as i64, true);
        v = fx.b.ins().insertlane(v, x, l);
    }
    v
}

/// Max pooling of `channels` planes of `U8` or `I8` bytes: over a padded copy of each
/// plane when it fits (see [`emit_padded_max_pool`]), else directly.
pub(crate) fn emit_max_pool(
    fx: &mut Fx,
    dtype: DType,
    channels: u64,
    s: &Spatial,
    w: &Window,
    input: Value,
    output: Value,
) {
    let ph = s.in_h as u64 + w.pad_top as u64 + w.pad_bottom as u64;
    let pw = s.in_w as u64 + w.pad_left as u64 + w.pad_right as u64;
    if w.stride_w <= 2
        && ph * pw + qdepthwise::SLACK <= qdepthwise::PADDED_MAX
        && qdepthwise::windows_fit(s, w)
    {
        emit_padded_max_pool(fx, dtype, channels, s, w, input, output);
    } else {
        emit_direct_max_pool(fx, dtype, channels, s, w, input, output);
    }
}

/// Max pooling over a copy of each plane padded with the dtype's minimum (the neutral
/// element, so padding taps change nothing and an all-padding window gives the
/// minimum, as defined): every output is interior, 16 per `i8x16` (`umax`/`smax`), at
/// stride 1 one load per tap, at stride 2 two loads and an even-byte `uzp1`; a row width
/// that is not a multiple of 16 ends with a vector overlapping the previous one, a row
/// narrower than 16 stores its valid bytes one by one.
fn emit_padded_max_pool(
    fx: &mut Fx,
    dtype: DType,
    channels: u64,
    s: &Spatial,
    w: &Window,
    input: Value,
    output: Value,
) {
    let signed = dtype == DType::I8;
    let (ih, iw) = (s.in_h as u64, s.in_w as u64);
    let (pt, pl) = (w.pad_top as u64, w.pad_left as u64);
    let ph = ih + pt + w.pad_bottom as u64;
    let pw = iw + pl + w.pad_right as u64;
    let (oh, ow) = (s.out_h as u64, s.out_w as u64);
    let slot = fx.b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (ph * pw + qdepthwise::SLACK) as u32,
        4,
    ));
    let pad = fx.b.ins().stack_addr(crate::fx::PTR, slot, 0);
    let min = fx.b.ins().iconst(types::I8, if signed { 0x80 } else { 0 });
    let minv = fx.b.ins().splat(types::I8X16, min);
    let sw = w.stride_w as i64;
    const EVEN: [u8; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
    fx.for_n(channels, &[], |fx, c, _| {
        let src = fx.addp_scaled(input, c, (ih * iw) as i64);
        qdepthwise::pad_plane(fx, src, pad, (ih, iw), (ph, pw), (pt, pl), (min, minv));
        let out = fx.addp_scaled(output, c, (oh * ow) as i64);
        fx.for_n(oh, &[], |fx, oy, _| {
            let row = fx.b.ins().imul_imm_s(oy, (w.stride_h as u64 * pw) as i64);
            let row = fx.addp_scaled(pad, row, 1);
            let orow = fx.addp_scaled(out, oy, ow as i64);
            let vector = |fx: &mut Fx, src: Value, dst: Value, valid: u64| {
                let mut m: Option<Value> = None;
                for ky in 0..w.kh as i64 {
                    for kx in 0..w.kw as i64 {
                        let off = ky * w.dilation_h as i64 * pw as i64 + kx * w.dilation_w as i64;
                        let mut v = fx.load(types::I8X16, src, off, false);
                        if sw == 2 {
                            let v1 = fx.load(types::I8X16, src, off + 16, false);
                            v = qgemm::shuffle(fx, v, v1, EVEN);
                        }
                        m = Some(match m {
                            None => v,
                            Some(m) if signed => fx.b.ins().smax(m, v),
                            Some(m) => fx.b.ins().umax(m, v),
                        });
                    }
                }
                let m = m.expect("a window has at least one tap");
                if valid == 16 {
                    fx.store(m, dst, 0);
                } else {
                    for l in 0..valid as u8 {
                        let b = fx.b.ins().extractlane(m, l);
                        fx.store(b, dst, l as i64);
                    }
                }
            };
            if ow < 16 {
                vector(fx, row, orow, ow);
            } else {
                fx.for_n(ow / 16, &[row, orow], |fx, _, c| {
                    vector(fx, c[0], c[1], 16);
                    vec![fx.addp(c[0], 16 * sw), fx.addp(c[1], 16)]
                });
                if !ow.is_multiple_of(16) {
                    let back = (ow - 16) as i64;
                    let src = fx.addp(row, back * sw);
                    let dst = fx.addp(orow, back);
                    vector(fx, src, dst, 16);
                }
            }
            vec![]
        });
        vec![]
    });
}

/// Max pooling with the border points computed one at a time (planes too big for a
/// padded copy, strides above 2).
fn emit_direct_max_pool(
    fx: &mut Fx,
    dtype: DType,
    channels: u64,
    s: &Spatial,
    w: &Window,
    input: Value,
    output: Value,
) {
    let signed = dtype == DType::I8;
    let (in_plane, out_plane) = (
        s.in_h as i64 * s.in_w as i64,
        s.out_h as i64 * s.out_w as i64,
    );
    let (kh, kw) = (w.kh as u64, w.kw as u64);
    let min = if signed { -128 } else { 0 };
    fx.for_n(channels, &[], |fx, c, _| {
        let pl = Plane {
            s,
            w,
            input: fx.addp_scaled(input, c, in_plane),
            output: fx.addp_scaled(output, c, out_plane),
        };
        plane_loop(fx, s, w, 16, &mut |fx, oy, ox, vector| {
            let at = fx.b.ins().imul_imm_s(oy, s.out_w as i64);
            let at = fx.b.ins().iadd(at, ox);
            let dst = fx.addp_scaled(pl.output, at, 1);
            if vector {
                let mut m: Option<Value> = None;
                for ky in 0..kh {
                    for kx in 0..kw {
                        let v = tap_vec(fx, &pl, oy, ox, ky, kx, 16);
                        m = Some(match m {
                            None => v,
                            Some(m) if signed => fx.b.ins().smax(m, v),
                            Some(m) => fx.b.ins().umax(m, v),
                        });
                    }
                }
                let m = m.expect("a window has at least one tap");
                fx.store(m, dst, 0);
                return;
            }
            let mut m = fx.b.ins().iconst(types::I32, min);
            for ky in 0..kh {
                for kx in 0..kw {
                    let (ok, p) = tap(fx, &pl, oy, ox, ky, kx);
                    let v = fx.load8(signed, p, 0, true);
                    let bigger = fx.b.ins().smax(m, v);
                    m = fx.b.ins().select(ok, bigger, m);
                }
            }
            fx.store8(m, dst, 0);
        });
        vec![]
    });
}

/// A depthwise integer convolution (`groups == c_in == c_out`); `mults`: the data index
/// of the per-channel multipliers ([`multipliers`]).
pub(crate) fn emit_depthwise(fx: &mut Fx, cv: &QConv, mults: usize) -> Result<(), Error> {
    let (s, w) = (&cv.s, &cv.w);
    let signed = cv.in_dtype == DType::I8;
    let input = fx.buf(cv.input);
    let output = fx.buf(cv.output);
    let wts = fx.buf(edgecc_program::Buffer::Const(cv.weight));
    let bias = cv.bias.map(|b| fx.buf(edgecc_program::Buffer::Const(b)));
    let mtab = fx.data_addr(mults);
    let za = match cv.in_zero {
        ZeroPoint::Const(z) => fx.b.ins().iconst(types::I32, z as i64),
        ZeroPoint::Runtime(buf) => {
            let p = fx.buf(buf);
            fx.load8(signed, p, 0, true)
        }
    };
    let esize = cv.out.dtype().size() as i64;
    let (in_plane, out_plane) = (
        s.in_h as i64 * s.in_w as i64,
        s.out_h as i64 * s.out_w as i64,
    );
    let (kh, kw) = (w.kh as u64, w.kw as u64);
    let c = cv.c_out as u64;
    let za_v = fx.b.ins().splat(types::I32X4, za);
    fx.for_n(s.n as u64, &[], |fx, ni, _| {
        fx.for_n(c, &[], |fx, ch, _| {
            let plane = fx.b.ins().imul_imm_s(ni, c as i64);
            let plane = fx.b.ins().iadd(plane, ch);
            let pl = Plane {
                s,
                w,
                input: fx.addp_scaled(input, plane, in_plane),
                output: fx.addp_scaled(output, plane, out_plane * esize),
            };
            let wch = fx.addp_scaled(wts, ch, (kh * kw) as i64);
            let taps: Vec<Value> = (0..(kh * kw) as i64)
                .map(|t| fx.load8(true, wch, t, true))
                .collect();
            let b0 = match bias {
                Some(b) => {
                    let p = fx.addp_scaled(b, ch, 4);
                    fx.load(types::I32, p, 0, true)
                }
                None => fx.b.ins().iconst(types::I32, 0),
            };
            let mp = fx.addp_scaled(mtab, ch, 4);
            let mv = match cv.out {
                QuantOut::Requant(rq) => Some(qgemm::mult_at(
                    fx,
                    rq,
                    mp,
                    0,
                    mult_region(cv.c_out as u64),
                    true,
                )),
                QuantOut::I32 => None,
            };
            let bv = fx.b.ins().splat(types::I32X4, b0);
            let tap_vs: Vec<Value> = taps
                .iter()
                .map(|&t| fx.b.ins().splat(types::I32X4, t))
                .collect();
            plane_loop(fx, s, w, 4, &mut |fx, oy, ox, vector| {
                let at = fx.b.ins().imul_imm_s(oy, s.out_w as i64);
                let at = fx.b.ins().iadd(at, ox);
                let dst = fx.addp_scaled(pl.output, at, esize);
                let acc = if vector {
                    let mut acc = bv;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let v = tap_vec(fx, &pl, oy, ox, ky, kx, 4);
                            let v = if signed {
                                let h = fx.b.ins().swiden_low(v);
                                fx.b.ins().swiden_low(h)
                            } else {
                                let h = fx.b.ins().uwiden_low(v);
                                fx.b.ins().uwiden_low(h)
                            };
                            let x = fx.b.ins().isub(v, za_v);
                            let p = fx.b.ins().imul(x, tap_vs[(ky * kw + kx) as usize]);
                            acc = fx.b.ins().iadd(acc, p);
                        }
                    }
                    acc
                } else {
                    let mut acc = b0;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let (ok, p) = tap(fx, &pl, oy, ox, ky, kx);
                            let v = fx.load8(signed, p, 0, true);
                            let x = fx.b.ins().isub(v, za);
                            let x = fx.b.ins().imul(x, taps[(ky * kw + kx) as usize]);
                            let zero = fx.b.ins().iconst(types::I32, 0);
                            let x = fx.b.ins().select(ok, x, zero);
                            acc = fx.b.ins().iadd(acc, x);
                        }
                    }
                    fx.b.ins().splat(types::I32X4, acc)
                };
                let lanes = if vector { 4 } else { 1 };
                let (y, dtype) = match cv.out {
                    QuantOut::I32 => (acc, DType::I32),
                    QuantOut::Requant(rq) => (
                        qgemm::requant(fx, rq, acc, mv.expect("multipliers of a requant")),
                        rq.dtype,
                    ),
                };
                qgemm::store_lanes(fx, y, dtype, dst, 0, esize, lanes);
            });
            vec![]
        });
        vec![]
    });
    Ok(())
}
