//! Sliding-window kernels over NCHW planes: max/average pooling and depthwise
//! convolution, which differ only in how a window's taps are combined.
//!
//! Each plane's output is split at compile time into the *interior*, where every tap of
//! the window is inside the input, and the border. The interior is computed four output
//! columns at a time (f32x4; the four inputs of a tap are one vector load at unit stride,
//! lane inserts otherwise) with no bounds logic, its last `< 4` columns with scalars. The
//! border computes one output at a time: an out-of-bounds tap loads from the plane's first
//! element instead and its value is replaced by the neutral element, so there is no branch
//! per tap and no read outside the input. Taps are unrolled for windows up to 8 wide/tall.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use edgecc_program::{Activation, PoolKind, Spatial, Window};

use crate::fx::{Fx, W};
use crate::kernels::activate;

/// How taps combine.
#[derive(Clone, Copy)]
pub(crate) enum Combine {
    Pool(PoolKind),
    /// Depthwise convolution: `weights` are `[c][kh][kw]`, `bias` is `[c]`.
    Depthwise {
        weights: Value,
        bias: Option<Value>,
        act: Activation,
    },
}

/// Taps unrolled up to this many per window dimension.
const UNROLL_TAPS: u64 = 8;

/// Output indices `lo..hi` for which every tap is in bounds along one dimension: `o·s −
/// pad + t·d ∈ [0, size)` for all `t < k`.
fn interior(out: u32, size: u32, k: u32, s: u32, d: u32, pad: u32) -> (u64, u64) {
    let (size, s, pad) = (size as i64, s as i64, pad as i64);
    let span = (k as i64 - 1) * d as i64;
    let lo = (pad + s - 1) / s; // ceil(pad / s)
    let hi_incl = (size - 1 - span + pad).div_euclid(s); // floor((size-1-span+pad)/s)
    let hi = (hi_incl + 1).clamp(0, out as i64);
    let lo = lo.min(hi);
    (lo as u64, hi as u64)
}

/// Per-plane state shared by every output point.
struct Plane {
    inp: Value,
    out: Value,
    wts: Option<Value>,
    bias: Option<Value>,
}

/// Emits the kernel over `n × c` planes of `input`, writing `output`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit(
    fx: &mut Fx,
    how: Combine,
    n: u64,
    c: u64,
    s: &Spatial,
    w: &Window,
    input: Value,
    output: Value,
) {
    let (ih, iw, oh, ow) = (s.in_h as i64, s.in_w as i64, s.out_h as u64, s.out_w as u64);
    let (kh, kw) = (w.kh as u64, w.kw as u64);
    let (y_lo, y_hi) = interior(s.out_h, s.in_h, w.kh, w.stride_h, w.dilation_h, w.pad_top);
    let (x_lo, x_hi) = interior(s.out_w, s.in_w, w.kw, w.stride_w, w.dilation_w, w.pad_left);
    fx.for_n(n, &[], |fx, ni, _| {
        fx.for_n(c, &[], |fx, ci, _| {
            let plane = fx.b.ins().imul_imm_s(ni, c as i64);
            let plane = fx.b.ins().iadd(plane, ci);
            let inp = fx.addp_scaled(input, plane, ih * iw * 4);
            let out = fx.addp_scaled(output, plane, oh as i64 * ow as i64 * 4);
            let (wts, bias) = match how {
                Combine::Depthwise { weights, bias, .. } => {
                    let wp = fx.addp_scaled(weights, ci, (kh * kw * 4) as i64);
                    let bv = match bias {
                        Some(b) => {
                            let p = fx.addp_scaled(b, ci, 4);
                            fx.load(types::F32, p, 0, true)
                        }
                        None => fx.fconst(W::S1, 0.0),
                    };
                    (Some(wp), Some(bv))
                }
                Combine::Pool(_) => (None, None),
            };
            let pl = Plane {
                inp,
                out,
                wts,
                bias,
            };
            // Border rows, checked.
            for (lo, hi) in [(0, y_lo), (y_hi, oh)] {
                fx.for_n(hi - lo, &[], |fx, i, _| {
                    let oy = fx.b.ins().iadd_imm_s(i, lo as i64);
                    fx.for_n(ow, &[], |fx, ox, _| {
                        point(fx, how, W::S1, &pl, s, w, oy, ox, true);
                        vec![]
                    });
                    vec![]
                });
            }
            // Interior rows: checked border columns, vector interior, scalar rest.
            fx.for_n(y_hi - y_lo, &[], |fx, i, _| {
                let oy = fx.b.ins().iadd_imm_s(i, y_lo as i64);
                for (lo, hi) in [(0, x_lo), (x_hi, ow)] {
                    fx.for_n_unrolled(hi - lo, 2, &[], |fx, j, _| {
                        let ox = fx.b.ins().iadd_imm_s(j, lo as i64);
                        point(fx, how, W::S1, &pl, s, w, oy, ox, true);
                        vec![]
                    });
                }
                let nvec = (x_hi - x_lo) / 4;
                fx.for_n(nvec, &[], |fx, j, _| {
                    let ox = fx.b.ins().imul_imm_s(j, 4);
                    let ox = fx.b.ins().iadd_imm_s(ox, x_lo as i64);
                    point(fx, how, W::V4, &pl, s, w, oy, ox, false);
                    vec![]
                });
                let rest = x_lo + nvec * 4;
                fx.for_n_unrolled(x_hi - rest, 3, &[], |fx, j, _| {
                    let ox = fx.b.ins().iadd_imm_s(j, rest as i64);
                    point(fx, how, W::S1, &pl, s, w, oy, ox, false);
                    vec![]
                });
                vec![]
            });
            vec![]
        });
        vec![]
    });
}

/// One output point (or four neighbouring ones for `W::V4`) at `(oy, ox)`. With
/// `checked`, taps outside the input are masked; otherwise all must be inside.
#[allow(clippy::too_many_arguments)]
fn point(
    fx: &mut Fx,
    how: Combine,
    w: W,
    pl: &Plane,
    s: &Spatial,
    win: &Window,
    oy: Value,
    ox: Value,
    checked: bool,
) {
    let (ih, iw, ow) = (s.in_h as i64, s.in_w as i64, s.out_w as i64);
    let (kh, kw) = (win.kh as u64, win.kw as u64);
    let neutral = match how {
        Combine::Pool(PoolKind::Max) => f32::NEG_INFINITY,
        _ => 0.0,
    };
    let acc0 = fx.fconst(w, neutral);
    let cnt0 = fx.fconst(W::S1, 0.0);
    let y0 = fx.b.ins().imul_imm_s(oy, win.stride_h as i64);
    let y0 = fx.b.ins().iadd_imm_s(y0, -(win.pad_top as i64));
    let x0 = fx.b.ins().imul_imm_s(ox, win.stride_w as i64);
    let x0 = fx.b.ins().iadd_imm_s(x0, -(win.pad_left as i64));
    let lane = win.stride_w as i64 * 4;
    let r = fx.for_n_unrolled(kh, UNROLL_TAPS, &[acc0, cnt0], |fx, ky, c| {
        let dy = fx.b.ins().imul_imm_s(ky, win.dilation_h as i64);
        let iy = fx.b.ins().iadd(y0, dy);
        let vy = fx.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, ih);
        let row = fx.b.ins().imul_imm_s(iy, iw);
        fx.for_n_unrolled(kw, UNROLL_TAPS, c, |fx, kx, c| {
            let dx = fx.b.ins().imul_imm_s(kx, win.dilation_w as i64);
            let ix = fx.b.ins().iadd(x0, dx);
            let mut off = fx.b.ins().iadd(row, ix);
            let mut valid = None;
            if checked {
                let vx = fx.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, ix, iw);
                let v = fx.b.ins().band(vy, vx);
                let zero = fx.iconst(0);
                off = fx.b.ins().select(v, off, zero);
                valid = Some(v);
            }
            let p = fx.addp_scaled(pl.inp, off, 4);
            let mut x = fx.load_w(w, p, 0, lane, true);
            if let Some(v) = valid {
                let nv = fx.fconst(w, neutral);
                x = fx.b.ins().select(v, x, nv);
            }
            match how {
                Combine::Pool(PoolKind::Max) => vec![fx.max(w, c[0], x), c[1]],
                Combine::Pool(PoolKind::Avg { .. }) => {
                    let sum = fx.b.ins().fadd(c[0], x);
                    let cnt = match valid {
                        Some(v) => {
                            let one = fx.fconst(W::S1, 1.0);
                            let z = fx.fconst(W::S1, 0.0);
                            let inc = fx.b.ins().select(v, one, z);
                            fx.b.ins().fadd(c[1], inc)
                        }
                        None => c[1],
                    };
                    vec![sum, cnt]
                }
                Combine::Depthwise { .. } => {
                    let t = fx.b.ins().imul_imm_s(ky, kw as i64);
                    let t = fx.b.ins().iadd(t, kx);
                    let wp = fx.addp_scaled(pl.wts.unwrap(), t, 4);
                    let wv = fx.load(types::F32, wp, 0, true);
                    let wv = fx.splat(w, wv);
                    vec![fx.mul_add(x, wv, c[0]), c[1]]
                }
            }
        })
    });
    let v = match how {
        Combine::Pool(PoolKind::Max) => r[0],
        Combine::Pool(PoolKind::Avg { count_include_pad }) => {
            let d = if count_include_pad || !checked {
                // Unchecked points have every tap inside, so both counts are kh·kw.
                fx.fconst(w, (kh * kw).max(1) as f32)
            } else {
                let one = fx.fconst(W::S1, 1.0);
                fx.max(W::S1, r[1], one)
            };
            fx.b.ins().fdiv(r[0], d)
        }
        Combine::Depthwise { act, .. } => {
            let b = fx.splat(w, pl.bias.unwrap());
            let v = fx.b.ins().fadd(r[0], b);
            activate(fx, w, act, v)
        }
    };
    let o = fx.b.ins().imul_imm_s(oy, ow);
    let o = fx.b.ins().iadd(o, ox);
    let p = fx.addp_scaled(pl.out, o, 4);
    fx.store(v, p, 0);
}
