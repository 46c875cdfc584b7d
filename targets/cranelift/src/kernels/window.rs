//! Sliding-window kernels over NCHW planes: max/average pooling and depthwise
//! convolution, which differ only in how a window's taps are combined.
//!
//! Each plane's output is split at compile time into the *interior*, where every tap of
//! the window is inside the input, and the border. The interior is computed four output
//! columns at a time (f32x4) with no bounds logic: at stride 1 a tap's four inputs are one
//! vector load, at stride 2 two loads of 8 consecutive inputs split into even/odd lanes
//! (one `uzp1`/`uzp2` on aarch64, `shufps` on x86_64, the pair shared by two taps), lane
//! loads otherwise; an interior width that is not a multiple of 4 ends with a vector
//! overlapping the previous one. Border rows (up to [`BORDER_ROWS`] at each end, windows
//! up to [`UNROLL_TAPS`]) are emitted one by one with the window rows inside the input
//! known at compile time, so their interior columns are vectors too, over those rows
//! only; likewise the border columns (up to [`BORDER_ROWS`] at each side) are single
//! outputs with their in-bounds taps known, unchecked. The remaining border points (more
//! border rows or columns, bigger windows) are computed one at a time: an out-of-bounds tap
//! loads from the plane's first element instead and its value is replaced by the neutral
//! element, so there is no branch per tap and no read outside the input. Taps are
//! unrolled for windows up to 8 wide/tall.

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

/// Border rows at each end emitted one by one (see [`emit`]) up to this many.
const BORDER_ROWS: u64 = 4;

/// The taps `lo..hi` of output row `oy` that are inside the input (`oy·s − pad + t·d ∈
/// [0, size)`); a contiguous range, since the input row grows with the tap.
fn valid_taps(oy: u64, size: u32, k: u32, s: u32, d: u32, pad: u32) -> (u64, u64) {
    let y0 = oy as i64 * s as i64 - pad as i64;
    let ok = |t: u64| (0..size as i64).contains(&(y0 + t as i64 * d as i64));
    let lo = (0..k as u64).find(|&t| ok(t)).unwrap_or(k as u64);
    let hi = (lo..k as u64).find(|&t| !ok(t)).unwrap_or(k as u64);
    (lo, hi)
}

/// One output row: checked scalar border columns, then the interior columns `x_lo..x_hi`
/// as vectors of 4 outputs (the last one overlapping its neighbour when the width is
/// not a multiple of 4) when there are at least 4 of them, else as scalars. `ky`: the
/// window rows in bounds for this output row (a border row, `oy` constant), or `None`
/// for an interior row (all in bounds).
#[allow(clippy::too_many_arguments)]
fn row(
    fx: &mut Fx,
    how: Combine,
    pl: &Plane,
    s: &Spatial,
    w: &Window,
    oy: Value,
    (x_lo, x_hi): (u64, u64),
    ky: Option<(u64, u64)>,
) {
    let ow = s.out_w as u64;
    let small = w.kh as u64 <= UNROLL_TAPS && w.kw as u64 <= UNROLL_TAPS;
    let full_y = (0, w.kh as u64);
    for (lo, hi) in [(0, x_lo), (x_hi, ow)] {
        if hi - lo <= BORDER_ROWS && small {
            // Few border columns: each with its in-bounds taps known, unchecked.
            for ox in lo..hi {
                let kx = valid_taps(ox, s.in_w, w.kw, w.stride_w, w.dilation_w, w.pad_left);
                let ox = fx.iconst(ox as i64);
                let at = point_ptrs(fx, pl, s, w, oy, ox);
                point_known(fx, how, W::S1, pl, s, w, at, ky.unwrap_or(full_y), kx);
            }
            continue;
        }
        fx.for_n_unrolled(hi - lo, 2, &[], |fx, j, _| {
            let ox = fx.b.ins().iadd_imm_s(j, lo as i64);
            point(fx, how, W::S1, pl, s, w, oy, ox, true);
            vec![]
        });
    }
    let width = x_hi - x_lo;
    if width >= 4 && small {
        let taps = ky.unwrap_or(full_y);
        let kx = (0, w.kw as u64);
        // The input and output pointers are carried by the loop, so every load is one
        // `ldr q, [ptr, #imm]` (a pointer computed from the index would be re-added per
        // load: `add` + `ldr [reg, reg]`).
        let ox = fx.iconst(x_lo as i64);
        let (ip, op) = point_ptrs(fx, pl, s, w, oy, ox);
        fx.for_n(width / 4, &[ip, op], |fx, _, c| {
            point_known(fx, how, W::V4, pl, s, w, (c[0], c[1]), taps, kx);
            let ip = fx.addp(c[0], 16 * w.stride_w as i64);
            let op = fx.addp(c[1], 16);
            vec![ip, op]
        });
        if width % 4 != 0 {
            // Recomputes up to 3 outputs of the previous vector (same values).
            let ox = fx.iconst(x_hi as i64 - 4);
            let at = point_ptrs(fx, pl, s, w, oy, ox);
            point_known(fx, how, W::V4, pl, s, w, at, taps, kx);
        }
        return;
    }
    let checked = ky.is_some();
    let nvec = if checked { 0 } else { width / 4 };
    fx.for_n(nvec, &[], |fx, j, _| {
        let ox = fx.b.ins().imul_imm_s(j, 4);
        let ox = fx.b.ins().iadd_imm_s(ox, x_lo as i64);
        point(fx, how, W::V4, pl, s, w, oy, ox, false);
        vec![]
    });
    let rest = x_lo + nvec * 4;
    fx.for_n_unrolled(x_hi - rest, 3, &[], |fx, j, _| {
        let ox = fx.b.ins().iadd_imm_s(j, rest as i64);
        point(fx, how, W::S1, pl, s, w, oy, ox, checked);
        vec![]
    });
}

/// One output `(oy, ox)` (`W::S1`) or four neighbours `(oy, ox..ox + 4)` (`W::V4`, all
/// window columns) whose taps in window rows `ky` and columns `kx` are all inside the
/// input (the others are outside and skipped); the window is at most [`UNROLL_TAPS`] wide
/// and tall, so every tap's offset is a constant. For vectors, a tap's four inputs are one
/// vector load at stride 1; at stride 2, two loads of 8 consecutive inputs split into even
/// and odd lanes (`uzp1`/`uzp2`, `shufps`), shared by the taps `2j` and `2j + 1`, and
/// never reading past the window's last input; lane loads otherwise. The first tap
/// starts the accumulator (no neutral element combined in).
#[allow(clippy::too_many_arguments)]
fn point_known(
    fx: &mut Fx,
    how: Combine,
    w: W,
    pl: &Plane,
    s: &Spatial,
    win: &Window,
    (base, out): (Value, Value),
    (ky0, ky1): (u64, u64),
    (kx0, kx1): (u64, u64),
) {
    let iw = s.in_w as i64;
    let (kh, kw) = (win.kh as u64, win.kw as u64);
    let (sw, dw) = (win.stride_w as i64, win.dilation_w as i64);
    let span = (kw as i64 - 1) * dw;
    let neutral = match how {
        Combine::Pool(PoolKind::Max) => f32::NEG_INFINITY,
        _ => 0.0,
    };
    let mut acc: Option<Value> = None;
    for ky in ky0..ky1 {
        let row = ky as i64 * win.dilation_h as i64 * iw * 4;
        for kx in kx0..kx1 {
            let t = kx as i64 * dw;
            let x = if w == W::S1 {
                fx.load(types::F32, base, row + t * 4, true)
            } else if sw == 1 {
                fx.load(types::F32X4, base, row + t * 4, true)
            } else if sw == 2 && span >= 1 {
                // Inputs t, t+2, t+4, t+6: even lanes of t..t+8, or odd lanes of t-1..t+7.
                let (b0, odd) = if t % 2 == 1 || t == span {
                    (t - 1, true)
                } else {
                    (t, false)
                };
                let v0 = fx.load(types::F32X4, base, row + b0 * 4, true);
                let v1 = fx.load(types::F32X4, base, row + b0 * 4 + 16, true);
                let v0 = fx.bitcast(types::I8X16, v0);
                let v1 = fx.bitcast(types::I8X16, v1);
                let first = u8::from(odd);
                let mask: Vec<u8> = (0..16u8)
                    .map(|i| (first + 2 * (i / 4)) * 4 + i % 4)
                    .collect();
                let imm = fx.b.func.dfg.immediates.push(mask.into());
                let sh = fx.b.ins().shuffle(v0, v1, imm);
                fx.bitcast(types::F32X4, sh)
            } else {
                fx.load_w(W::V4, base, row + t * 4, sw * 4, true)
            };
            acc = Some(match (how, acc) {
                (Combine::Pool(PoolKind::Max), Some(a)) => fx.max(w, a, x),
                // fmax(-inf, x) is x, NaN included; x64's max pattern is not.
                (Combine::Pool(PoolKind::Max), None) if fx.feat.aarch64 => x,
                (Combine::Pool(PoolKind::Max), None) => {
                    let n = fx.fconst(w, neutral);
                    fx.max(w, n, x)
                }
                (Combine::Pool(PoolKind::Avg { .. }), Some(a)) => fx.b.ins().fadd(a, x),
                (Combine::Pool(PoolKind::Avg { .. }), None) => x,
                (Combine::Depthwise { .. }, a) => {
                    let wv = fx.load(
                        types::F32,
                        pl.wts.unwrap(),
                        ((ky * kw + kx) * 4) as i64,
                        true,
                    );
                    let wv = fx.splat(w, wv);
                    match a {
                        Some(a) => fx.mul_add(x, wv, a),
                        None => fx.b.ins().fmul(x, wv),
                    }
                }
            });
        }
    }
    let acc = acc.unwrap_or_else(|| fx.fconst(w, neutral));
    let v = match how {
        Combine::Pool(PoolKind::Max) => acc,
        Combine::Pool(PoolKind::Avg { count_include_pad }) => {
            let n = if count_include_pad {
                kh * kw
            } else {
                (ky1 - ky0) * (kx1 - kx0)
            };
            let d = fx.fconst(w, n.max(1) as f32);
            fx.b.ins().fdiv(acc, d)
        }
        Combine::Depthwise { act, .. } => {
            let b = fx.splat(w, pl.bias.unwrap());
            let v = fx.b.ins().fadd(acc, b);
            activate(fx, w, act, v)
        }
    };
    fx.store(v, out, 0);
}

/// For [`point_known`]: the addresses of input `(oy·sh − pad_top, ox·sw − pad_left)`
/// (the window's first tap, possibly outside the input: only taps inside are read) and
/// of output `(oy, ox)`.
fn point_ptrs(
    fx: &mut Fx,
    pl: &Plane,
    s: &Spatial,
    win: &Window,
    oy: Value,
    ox: Value,
) -> (Value, Value) {
    let (iw, ow) = (s.in_w as i64, s.out_w as i64);
    let y0 = fx.b.ins().imul_imm_s(oy, win.stride_h as i64);
    let y0 = fx.b.ins().iadd_imm_s(y0, -(win.pad_top as i64));
    let x0 = fx.b.ins().imul_imm_s(ox, win.stride_w as i64);
    let x0 = fx.b.ins().iadd_imm_s(x0, -(win.pad_left as i64));
    let off = fx.b.ins().imul_imm_s(y0, iw);
    let off = fx.b.ins().iadd(off, x0);
    let base = fx.addp_scaled(pl.inp, off, 4);
    let o = fx.b.ins().imul_imm_s(oy, ow);
    let o = fx.b.ins().iadd(o, ox);
    (base, fx.addp_scaled(pl.out, o, 4))
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
    let small = kh <= UNROLL_TAPS && kw <= UNROLL_TAPS;
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
            // Border rows: when few, each is emitted on its own with its in-bounds window
            // rows known at compile time, so its interior columns run as vectors too.
            // Otherwise every point is checked.
            for (lo, hi) in [(0, y_lo), (y_hi, oh)] {
                if hi - lo <= BORDER_ROWS && small {
                    for oy in lo..hi {
                        let ky = valid_taps(oy, s.in_h, w.kh, w.stride_h, w.dilation_h, w.pad_top);
                        let oy = fx.iconst(oy as i64);
                        row(fx, how, &pl, s, w, oy, (x_lo, x_hi), Some(ky));
                    }
                    continue;
                }
                fx.for_n(hi - lo, &[], |fx, i, _| {
                    let oy = fx.b.ins().iadd_imm_s(i, lo as i64);
                    fx.for_n(ow, &[], |fx, ox, _| {
                        point(fx, how, W::S1, &pl, s, w, oy, ox, true);
                        vec![]
                    });
                    vec![]
                });
            }
            // Interior rows.
            fx.for_n(y_hi - y_lo, &[], |fx, i, _| {
                let oy = fx.b.ins().iadd_imm_s(i, y_lo as i64);
                row(fx, how, &pl, s, w, oy, (x_lo, x_hi), None);
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
