//! NCHW convolution, lowered three ways:
//! - depthwise (`groups == c_in == c_out`): the direct window kernel ([`super::window`]),
//!   then, with a residual, one sweep adding it and applying the activation;
//! - pointwise with unit stride and no padding: GEMM straight on the input, which already
//!   is the `c_in/groups × (h·w)` B matrix of each image and group;
//! - everything else: for each image, group and block of output rows
//!   ([`Kernel::conv_block_rows`]), im2col of that block into the scratch area, then GEMM
//!   into the block's columns of the output.
//!
//! In the GEMM forms the weights are the constant A operand (`M = c_out/groups`,
//! `K = c_in/groups·kh·kw`), packed at compile time, and B is the `K × (rows·out_w)`
//! im2col block (or the input itself), so the GEMM writes NCHW output directly through a C
//! view with row stride `out_h·out_w`; bias (per output row), residual (a view with the
//! C view's layout) and activation are its epilogue. Blocking bounds the scratch to `K × block columns` (about 32 KiB) instead of
//! the whole `K × out_h·out_w` matrix, and keeps the B operand cache-resident while all
//! row blocks of the weights sweep it.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use edgecc_program::{Activation, Buffer, Const, ConstId, Kernel, Spatial, Window};

use crate::error::{Error, unsupported};
use crate::fx::{Fx, W};
use crate::kernels::activate;
use crate::kernels::gemm::{self, Gemm2d, Mat, Tile};
use crate::kernels::window::{self, Combine};

/// The operands of a `Kernel::Conv`.
pub(crate) struct Conv {
    pub c_in: u32,
    pub c_out: u32,
    pub groups: u32,
    pub s: Spatial,
    pub w: Window,
    pub input: Buffer,
    pub weight: ConstId,
    pub bias: Option<ConstId>,
    /// Dense, the output's shape: added after the bias, before the activation.
    pub residual: Option<Buffer>,
    pub act: Activation,
    pub output: Buffer,
    pub scratch: Option<Buffer>,
}

impl Conv {
    fn is_depthwise(&self) -> bool {
        self.groups == self.c_in && self.groups == self.c_out
    }
    fn is_pointwise(&self) -> bool {
        let w = &self.w;
        w.kh == 1
            && w.kw == 1
            && w.stride_h == 1
            && w.stride_w == 1
            && w.pad_top == 0
            && w.pad_left == 0
            && w.pad_bottom == 0
            && w.pad_right == 0
            && self.s.in_h == self.s.out_h
            && self.s.in_w == self.s.out_w
    }
    fn k(&self) -> u64 {
        (self.c_in / self.groups) as u64 * self.w.kh as u64 * self.w.kw as u64
    }

    /// Checks shapes against the constants; a malformed program is an error here rather
    /// than an out-of-bounds read in generated code.
    pub fn check(&self, consts: &[Const]) -> Result<(), Error> {
        check_geometry("conv", self.c_in, self.c_out, self.groups, &self.w)?;
        let need = self.c_out as u64 * self.k() * 4;
        let wc = consts
            .get(self.weight.0 as usize)
            .ok_or_else(|| unsupported("conv weight constant missing"))?;
        if (wc.data.len() as u64) < need {
            return Err(unsupported(format!(
                "conv weight `{}` has {} bytes, needs {need}",
                wc.name,
                wc.data.len()
            )));
        }
        if let Some(b) = self.bias {
            let bc = consts
                .get(b.0 as usize)
                .ok_or_else(|| unsupported("conv bias constant missing"))?;
            if (bc.data.len() as u64) < self.c_out as u64 * 4 {
                return Err(unsupported(format!("conv bias `{}` is too small", bc.name)));
            }
        }
        if !self.is_depthwise() && !self.is_pointwise() && self.scratch.is_none() {
            return Err(unsupported("conv needs a scratch buffer for im2col"));
        }
        Ok(())
    }
}

/// The packed weights (GEMM A operand, one `[block][k][mr]` copy per group), or `None`
/// for depthwise convolutions, which read the OIHW weights directly.
pub(crate) fn prepare(consts: &[Const], t: Tile, cv: &Conv) -> Result<Option<Vec<f32>>, Error> {
    cv.check(consts)?;
    if cv.is_depthwise() {
        return Ok(None);
    }
    let wc = &consts[cv.weight.0 as usize];
    let (m, k) = ((cv.c_out / cv.groups) as u64, cv.k());
    let mut out = Vec::new();
    for g in 0..cv.groups as u64 {
        gemm::pack_a(wc, (g * m * k) as i128, k as i64, 1, m, k, t.mr, &mut out)?;
    }
    Ok(Some(out))
}

pub(crate) fn emit(fx: &mut Fx, t: Tile, cv: &Conv, packed: Option<usize>) -> Result<(), Error> {
    let s = &cv.s;
    let input = fx.buf(cv.input);
    let output = fx.buf(cv.output);
    let residual = cv.residual.map(|r| fx.buf(r));
    let bias = cv.bias.map(|b| fx.buf(Buffer::Const(b)));
    if cv.is_depthwise() {
        let weights = fx.buf(Buffer::Const(cv.weight));
        // The window kernel has no residual operand: with one, it writes the biased sum
        // and a second sweep adds the residual and applies the activation.
        let act = if residual.is_some() {
            Activation::None
        } else {
            cv.act
        };
        let how = Combine::Depthwise { weights, bias, act };
        window::emit(fx, how, s.n as u64, cv.c_in as u64, s, &cv.w, input, output);
        if let Some(r) = residual {
            let len = s.n as u64 * cv.c_out as u64 * s.out_h as u64 * s.out_w as u64;
            add_residual(fx, output, r, len, cv.act);
        }
        return Ok(());
    }
    let packed = packed.ok_or_else(|| Error::Codegen("conv weights were not packed".into()))?;
    let wts = fx.data_addr(packed);
    let (cpg, opg) = ((cv.c_in / cv.groups) as i64, (cv.c_out / cv.groups) as u64);
    let (k, n_out) = (cv.k(), s.out_h as u64 * s.out_w as u64);
    let ow = s.out_w as u64;
    let in_plane = s.in_h as i64 * s.in_w as i64 * 4;
    let a_group = (opg.div_ceil(t.mr) * t.mr * k * 4) as i64;
    let pointwise = cv.is_pointwise();
    let scratch = match cv.scratch {
        Some(b) if !pointwise => Some(fx.buf(b)),
        _ => None,
    };
    // Output rows per im2col block (the contract sizes the scratch from the same rule);
    // pointwise convolutions read the input directly, as one block of all rows.
    let rows = if scratch.is_some() {
        Kernel::conv_block_rows(cv.c_in, cv.groups, s, &cv.w) as u64
    } else {
        s.out_h as u64
    };
    let (full, tail) = (s.out_h as u64 / rows, s.out_h as u64 % rows);
    let groups = cv.groups as u64;
    fx.for_n(s.n as u64, &[], |fx, ni, _| {
        fx.for_n(groups, &[], |fx, g, _| {
            // First input channel of this image and group: n·c_in + g·cpg.
            let ch = fx.b.ins().imul_imm_s(ni, cv.c_in as i64);
            let gc = fx.b.ins().imul_imm_s(g, cpg);
            let ch = fx.b.ins().iadd(ch, gc);
            let in_g = fx.addp_scaled(input, ch, in_plane);
            let a = Mat {
                base: fx.addp_scaled(wts, g, a_group),
                rs: 4,
                cs: t.mr as i64 * 4,
                block: (k * t.mr * 4) as i64,
                readonly: true,
            };
            let oc = fx.b.ins().imul_imm_s(ni, cv.c_out as i64);
            let go = fx.b.ins().imul_imm_s(g, opg as i64);
            let oc = fx.b.ins().iadd(oc, go);
            let out_g = fx.addp_scaled(output, oc, n_out as i64 * 4);
            // The residual has the output's layout: the same offsets from its own base.
            let res_g = residual.map(|r| fx.addp_scaled(r, oc, n_out as i64 * 4));
            let bias = bias.map(|bp| Mat {
                base: fx.addp_scaled(bp, g, opg as i64 * 4),
                rs: 4,
                cs: 0,
                block: 0,
                readonly: true,
            });
            let token = fx.b.ins().iadd(ni, g);
            // Full blocks of `rows` output rows in a loop, then the remaining rows.
            for (count, r, is_tail) in [(full, rows, false), (u64::from(tail > 0), tail, true)] {
                fx.for_n(count, &[], |fx, blk, _| {
                    let oy0 = if is_tail {
                        fx.iconst((full * rows) as i64)
                    } else {
                        fx.b.ins().imul_imm_s(blk, rows as i64)
                    };
                    let n_blk = r * ow;
                    let b = match scratch {
                        None => Mat {
                            base: in_g,
                            rs: in_plane,
                            cs: 4,
                            block: t.nr() as i64 * 4,
                            readonly: true,
                        },
                        Some(sc) => {
                            im2col(fx, cv, in_g, sc, oy0, r);
                            // The GEMM reads the block with pure loads (`readonly +
                            // can_move`, which the microkernel needs to be fast); their
                            // address must then depend on this iteration, or Cranelift
                            // could hoist a load of a loop-invariant address above the
                            // im2col stores. `token >> 63` is 0 but opaque to the e-graph.
                            let tok = fx.b.ins().iadd(token, blk);
                            let zero = fx.b.ins().ushr_imm_u(tok, 63);
                            Mat {
                                base: fx.b.ins().iadd(sc, zero),
                                rs: n_blk as i64 * 4,
                                cs: 4,
                                block: t.nr() as i64 * 4,
                                readonly: true,
                            }
                        }
                    };
                    let c = Mat {
                        base: fx.addp_scaled(out_g, oy0, ow as i64 * 4),
                        rs: n_out as i64 * 4,
                        cs: 4,
                        block: 0,
                        readonly: false,
                    };
                    let residual = res_g.map(|rg| Mat {
                        base: fx.addp_scaled(rg, oy0, ow as i64 * 4),
                        rs: n_out as i64 * 4,
                        cs: 4,
                        block: 0,
                        readonly: true,
                    });
                    gemm::emit_2d(
                        fx,
                        t,
                        &Gemm2d {
                            m: opg,
                            n: n_blk,
                            k,
                            a,
                            b,
                            c,
                            bias,
                            residual,
                            alpha: 1.0,
                            act: cv.act,
                            unroll: t.unroll,
                        },
                    );
                    vec![]
                });
            }
            vec![]
        });
        vec![]
    });
    Ok(())
}

/// Writes the im2col matrix of output rows `oy0 .. oy0 + rows` of one image and group
/// to `dst`: `(cpg·kh·kw) × (rows·out_w)`, dense; row `(ci, ky, kx)`, column
/// `(oy - oy0, ox)` holds the input tap or 0 in the padding.
///
/// `kx` is unrolled, so the columns whose tap is inside the row are a compile-time range:
/// that part is copied four columns at a time (an f32x4 load for unit horizontal stride,
/// four lane loads for other strides) when the input row exists, zeros otherwise, and
/// only the padding columns around it are stored one by one.
fn im2col(fx: &mut Fx, cv: &Conv, src: Value, dst: Value, oy0: Value, rows: u64) {
    let (s, w) = (&cv.s, &cv.w);
    let (ih, iw, ow) = (s.in_h as i64, s.in_w as i64, s.out_w as u64);
    let cpg = (cv.c_in / cv.groups) as u64;
    let (kh, kw) = (w.kh as u64, w.kw as u64);
    let n_blk = (rows * ow) as i64;
    let iy0 = fx.b.ins().imul_imm_s(oy0, w.stride_h as i64);
    fx.for_n(cpg, &[], |fx, ci, _| {
        let plane = fx.addp_scaled(src, ci, ih * iw * 4);
        fx.for_n(kh, &[], |fx, ky, _| {
            let r0 = fx.b.ins().imul_imm_s(ci, (kh * kw) as i64);
            let ry = fx.b.ins().imul_imm_s(ky, kw as i64);
            let r0 = fx.b.ins().iadd(r0, ry);
            let row0 = fx.addp_scaled(dst, r0, n_blk * 4);
            let dy = fx.b.ins().imul_imm_s(ky, w.dilation_h as i64);
            let dy = fx.b.ins().iadd_imm_s(dy, -(w.pad_top as i64));
            let dy = fx.b.ins().iadd(dy, iy0);
            for kx in 0..kw {
                let row = fx.addp(row0, kx as i64 * n_blk * 4);
                let dx = kx as i64 * w.dilation_w as i64 - w.pad_left as i64;
                fx.for_n(rows, &[], |fx, oy, _| {
                    let iy = fx.b.ins().imul_imm_s(oy, w.stride_h as i64);
                    let iy = fx.b.ins().iadd(iy, dy);
                    let vy = fx.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, ih);
                    let in_row = fx.b.ins().imul_imm_s(iy, iw);
                    let out_row = fx.addp_scaled(row, oy, ow as i64 * 4);
                    // Columns ox with 0 <= ox·sw + dx < iw, a compile-time range.
                    let sw = w.stride_w as i64;
                    let lo = ((-dx).max(0) as u64).div_ceil(sw as u64).min(ow);
                    let hi = ((iw - dx).max(0) as u64).div_ceil(sw as u64).clamp(lo, ow);
                    zeros(fx, out_row, 0, lo);
                    zeros(fx, out_row, hi, ow);
                    fx.if_else(
                        vy,
                        |fx| {
                            let from = fx.addp_scaled(plane, in_row, 4);
                            let from = fx.addp(from, (lo as i64 * sw + dx) * 4);
                            let to = fx.addp(out_row, lo as i64 * 4);
                            copy_f32(fx, from, to, hi - lo, sw);
                        },
                        |fx| zeros(fx, out_row, lo, hi),
                    );
                    vec![]
                });
            }
            vec![]
        });
        vec![]
    });
}

/// `out[i] = act(out[i] + res[i])` for the `len` f32 elements, four at a time, then one
/// by one: the sum rounds as the unfused Add did, the activation is the kernel's.
fn add_residual(fx: &mut Fx, out: Value, res: Value, len: u64, act: Activation) {
    fx.for_n(len / 4, &[], |fx, i, _| {
        let o = fx.addp_scaled(out, i, 16);
        let r = fx.addp_scaled(res, i, 16);
        let x = fx.load_w(W::V4, o, 0, 4, false);
        let y = fx.load_w(W::V4, r, 0, 4, true);
        let v = fx.b.ins().fadd(x, y);
        let v = activate(fx, W::V4, act, v);
        fx.store(v, o, 0);
        vec![]
    });
    for t in len / 4 * 4..len {
        let x = fx.load(types::F32, out, t as i64 * 4, false);
        let y = fx.load(types::F32, res, t as i64 * 4, true);
        let v = fx.b.ins().fadd(x, y);
        let v = activate(fx, W::S1, act, v);
        fx.store(v, out, t as i64 * 4);
    }
}

/// Stores zeros to f32 elements `lo..hi` of `row`.
fn zeros(fx: &mut Fx, row: Value, lo: u64, hi: u64) {
    let n = hi.saturating_sub(lo);
    let base = fx.addp(row, lo as i64 * 4);
    let zv = fx.fconst(W::V4, 0.0);
    fx.for_n_unrolled(n / 4, 2, &[], |fx, i, _| {
        let p = fx.addp_scaled(base, i, 16);
        fx.store(zv, p, 0);
        vec![]
    });
    let z = fx.fconst(W::S1, 0.0);
    for t in n / 4 * 4..n {
        fx.store(z, base, t as i64 * 4);
    }
}

/// Copies `n` f32 read `stride` elements apart at `from` to consecutive elements at `to`,
/// four at a time (a vector load for stride 1, four lane loads otherwise), then one by one.
fn copy_f32(fx: &mut Fx, from: Value, to: Value, n: u64, stride: i64) {
    fx.for_n(n / 4, &[], |fx, i, _| {
        let s = fx.addp_scaled(from, i, 16 * stride);
        let d = fx.addp_scaled(to, i, 16);
        let v = fx.load_w(W::V4, s, 0, 4 * stride, false);
        fx.store(v, d, 0);
        vec![]
    });
    for t in n / 4 * 4..n {
        let v = fx.load(types::F32, from, t as i64 * 4 * stride, false);
        fx.store(v, to, t as i64 * 4);
    }
}

/// The geometry every convolution kernel (f32 and integer) relies on: groups dividing the
/// channels, non-zero window sizes, strides and dilations. `what` names the kernel.
pub(crate) fn check_geometry(
    what: &str,
    c_in: u32,
    c_out: u32,
    groups: u32,
    w: &Window,
) -> Result<(), Error> {
    if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
        return Err(unsupported(format!(
            "{what} groups must divide c_in and c_out"
        )));
    }
    let sizes = [
        w.kh,
        w.kw,
        w.stride_h,
        w.stride_w,
        w.dilation_h,
        w.dilation_w,
    ];
    if sizes.contains(&0) {
        return Err(unsupported(format!(
            "{what} window sizes, strides and dilations must be non-zero"
        )));
    }
    Ok(())
}
