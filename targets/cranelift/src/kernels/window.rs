//! Sliding-window kernels over NCHW planes: max/average pooling and depthwise
//! convolution, which differ only in how a window's taps are combined.
//!
//! One output element at a time, taps unrolled for windows up to 8 wide and tall. An
//! out-of-bounds tap (padding) loads from the plane's first element instead and its
//! value is replaced by the neutral element, so there is no branch per tap and no read
//! outside the input.

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
    let (ih, iw, oh, ow) = (s.in_h as i64, s.in_w as i64, s.out_h as i64, s.out_w as i64);
    let (kh, kw) = (w.kh as u64, w.kw as u64);
    fx.for_n(n, &[], |fx, ni, _| {
        fx.for_n(c, &[], |fx, ci, _| {
            let plane = fx.b.ins().imul_imm_s(ni, c as i64);
            let plane = fx.b.ins().iadd(plane, ci);
            let inp = fx.addp_scaled(input, plane, ih * iw * 4);
            let out = fx.addp_scaled(output, plane, oh * ow * 4);
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
            fx.for_n(oh as u64, &[], |fx, oy, _| {
                fx.for_n(ow as u64, &[], |fx, ox, _| {
                    let neutral = match how {
                        Combine::Pool(PoolKind::Max) => f32::NEG_INFINITY,
                        _ => 0.0,
                    };
                    let acc0 = fx.fconst(W::S1, neutral);
                    let cnt0 = fx.fconst(W::S1, 0.0);
                    let y0 = fx.b.ins().imul_imm_s(oy, w.stride_h as i64);
                    let y0 = fx.b.ins().iadd_imm_s(y0, -(w.pad_top as i64));
                    let x0 = fx.b.ins().imul_imm_s(ox, w.stride_w as i64);
                    let x0 = fx.b.ins().iadd_imm_s(x0, -(w.pad_left as i64));
                    let r = fx.for_n_unrolled(kh, UNROLL_TAPS, &[acc0, cnt0], |fx, ky, c| {
                        let dy = fx.b.ins().imul_imm_s(ky, w.dilation_h as i64);
                        let iy = fx.b.ins().iadd(y0, dy);
                        let vy = fx.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, ih);
                        let row = fx.b.ins().imul_imm_s(iy, iw);
                        fx.for_n_unrolled(kw, UNROLL_TAPS, c, |fx, kx, c| {
                            let dx = fx.b.ins().imul_imm_s(kx, w.dilation_w as i64);
                            let ix = fx.b.ins().iadd(x0, dx);
                            let vx = fx.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, ix, iw);
                            let valid = fx.b.ins().band(vy, vx);
                            let off = fx.b.ins().iadd(row, ix);
                            let zero = fx.iconst(0);
                            let off = fx.b.ins().select(valid, off, zero);
                            let p = fx.addp_scaled(inp, off, 4);
                            let x = fx.load(types::F32, p, 0, true);
                            let nv = fx.fconst(W::S1, neutral);
                            let x = fx.b.ins().select(valid, x, nv);
                            match how {
                                Combine::Pool(PoolKind::Max) => vec![fx.max(W::S1, c[0], x), c[1]],
                                Combine::Pool(PoolKind::Avg { .. }) => {
                                    let one = fx.fconst(W::S1, 1.0);
                                    let z = fx.fconst(W::S1, 0.0);
                                    let inc = fx.b.ins().select(valid, one, z);
                                    vec![fx.b.ins().fadd(c[0], x), fx.b.ins().fadd(c[1], inc)]
                                }
                                Combine::Depthwise { .. } => {
                                    let t = fx.b.ins().imul_imm_s(ky, kw as i64);
                                    let t = fx.b.ins().iadd(t, kx);
                                    let wp = fx.addp_scaled(wts.unwrap(), t, 4);
                                    let wv = fx.load(types::F32, wp, 0, true);
                                    vec![fx.mul_add(x, wv, c[0]), c[1]]
                                }
                            }
                        })
                    });
                    let v = match how {
                        Combine::Pool(PoolKind::Max) => r[0],
                        Combine::Pool(PoolKind::Avg {
                            count_include_pad: true,
                        }) => {
                            let d = fx.fconst(W::S1, (kh * kw).max(1) as f32);
                            fx.b.ins().fdiv(r[0], d)
                        }
                        Combine::Pool(PoolKind::Avg {
                            count_include_pad: false,
                        }) => {
                            let one = fx.fconst(W::S1, 1.0);
                            let d = fx.max(W::S1, r[1], one);
                            fx.b.ins().fdiv(r[0], d)
                        }
                        Combine::Depthwise { act, .. } => {
                            let v = fx.b.ins().fadd(r[0], bias.unwrap());
                            activate(fx, W::S1, act, v)
                        }
                    };
                    let o = fx.b.ins().imul_imm_s(oy, ow);
                    let o = fx.b.ins().iadd(o, ox);
                    let p = fx.addp_scaled(out, o, 4);
                    fx.store(v, p, 0);
                    vec![]
                });
                vec![]
            });
            vec![]
        });
        vec![]
    });
}
