//! Integer NCHW convolution (`Kernel::QConv`), lowered two ways:
//! - depthwise (`groups == c_in == c_out`): [`super::qdepthwise`] over a padded copy of
//!   each plane, or the direct kernel of [`super::qwindow`];
//! - everything else: a GEMM per image and group whose vector lanes are 4 consecutive
//!   output pixels, so the NCHW output is stored 4 pixels at a time. Its A is
//!   `[ci·kh·kw][pixel]` bytes: a pointwise convolution's (1×1, unit stride, no padding)
//!   input itself, read in place; otherwise, per block of [`Kernel::conv_block_rows`]
//!   output rows (the rule the scratch is sized by), a byte im2col into the `scratch`,
//!   the f32 im2col's layout, whose padding taps hold the zero point's byte so they
//!   contribute `(zero − zero)·w = 0`.
//!
//! Per group of 4 K rows, the 8 pixels of a tile are loaded (one 8-byte load per K row)
//! and transposed into per-pixel words by two rounds of `zip` (`punpckl` on x86_64),
//! flipped for u8 as in [`super::qgemm`]; when several channel blocks read a pixel block
//! its words are transposed once into a stack area ([`pack_words`]). The weights are
//! packed compactly, each channel's 4 K bytes of a group once (1 byte per weight, so an
//! int8 model's artifact stays about 4× smaller than the f32 one), and broadcast to the 4
//! lanes when read: one 16-byte load per 4 channels and a `dup v.4s, v.s[l]` per channel
//! (x86_64: one `pmovsxbw` per 2 channels and a `pshufd` per K pair). Then one `sdot` (or
//! the widening tree, or two `pmaddwd`) adds 4 pixels × 4 K products for one channel: an
//! 8-pixel × 12-channel tile with `sdot` is 24 accumulators, 3 weight loads, 12 lane
//! broadcasts and 2 word loads per K group. (A `splat` of an i32 load would be `ld1r`,
//! but `ld1r` takes no offset, so each would need its own address `add`; Cranelift has
//! no by-element `sdot`.) The broadcasts cost 4.4 % more guest instructions than weights
//! stored replicated 4× (3×3 32→32 on 32×32, Cortex-A76: 1.758 M against 1.685 M with
//! `sdot`, 4.90 M against 4.80 M without; `cargo test -p edgecc-cranelift --test
//! qkernels -- --ignored --nocapture`) for a quarter of the constant data.
//! Requantization per channel with [`qgemm::requant`].
//!
//! The im2col copies, for each `(ci, ky, kx)` row of the window and output row, the
//! columns whose tap is inside the input (a compile-time range) 16 bytes at a time at
//! unit stride; only the padding columns around it are filled separately.

use cranelift_codegen::ir::{
    InstBuilder, StackSlotData, StackSlotKind, Value, condcodes::IntCC, types,
};
use edgecc_program::{Buffer, ConstId, DType, Kernel, QuantOut, Spatial, Window, ZeroPoint};

use crate::error::{Error, unsupported};
use crate::fx::Fx;
use crate::kernels::qgemm::{self, QTile, RowOp, shuffle};
use crate::kernels::{qdepthwise, qwindow};

/// The operands of a `Kernel::QConv`.
pub(crate) struct QConv<'a> {
    pub c_in: u32,
    pub c_out: u32,
    pub groups: u32,
    pub s: Spatial,
    pub w: Window,
    pub input: Buffer,
    pub in_dtype: DType,
    pub in_zero: ZeroPoint,
    pub weight: ConstId,
    pub bias: Option<ConstId>,
    pub out: &'a QuantOut,
    pub output: Buffer,
    pub scratch: Option<Buffer>,
}

impl QConv<'_> {
    pub fn is_depthwise(&self) -> bool {
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
    /// K of the GEMM: `c_in/groups · kh · kw`.
    pub fn k(&self) -> u64 {
        (self.c_in / self.groups) as u64 * self.w.kh as u64 * self.w.kw as u64
    }

    /// Checks the geometry and the constants (sizes, dtypes' ranges).
    pub fn check(&self, consts: &[edgecc_program::Const]) -> Result<(), Error> {
        super::conv::check_geometry("qconv", self.c_in, self.c_out, self.groups, &self.w)?;
        qgemm::const_bytes(
            consts,
            self.weight,
            self.c_out as u64 * self.k(),
            "qconv weight",
        )?;
        if let Some(b) = self.bias {
            qgemm::const_bytes(consts, b, self.c_out as u64 * 4, "qconv bias")?;
        }
        qgemm::check_out(self.out, self.c_out as u64)?;
        if !self.is_depthwise() && !self.is_pointwise() && self.scratch.is_none() {
            return Err(unsupported("qconv needs a scratch buffer for im2col"));
        }
        Ok(())
    }
}

/// The packed weights and tables of every group (data slots 0 and 1); for a depthwise
/// convolution, which reads the OIHW weights and the bias directly, only a table of the
/// requantization multipliers (slot 1).
pub(crate) fn prepare(
    consts: &[edgecc_program::Const],
    t: QTile,
    cv: &QConv,
) -> Result<[Vec<u8>; 2], Error> {
    cv.check(consts)?;
    if cv.is_depthwise() {
        let splats = if qdepthwise::handles(cv) {
            qdepthwise::pack_weights(
                &consts[cv.weight.0 as usize].data,
                cv.c_out as u64,
                (cv.w.kh as u64, cv.w.kw as u64),
                qdepthwise::Form::of(cv, t),
            )
        } else {
            Vec::new()
        };
        return Ok([
            splats,
            qwindow::multipliers(cv.out, cv.c_out as u64, t.pairs),
        ]);
    }
    let pt = PTile::of(t);
    let (opg, k) = ((cv.c_out / cv.groups) as u64, cv.k());
    let w = &consts[cv.weight.0 as usize].data;
    let bias = cv.bias.map(|b| &consts[b.0 as usize].data);
    let (mut pb, mut tab) = (Vec::new(), Vec::new());
    for g in 0..cv.groups as u64 {
        // W[kk, col] = w[g·opg + col][kk] (OIHW: K contiguous per output channel).
        let get = |kk: u64, col: u64| w[((g * opg + col) * k + kk) as usize] as i8;
        pack_weights(pt, k, opg, get, &mut pb);
        qgemm::tables(
            tables_of(pt, opg, cv),
            k,
            opg,
            get,
            |col| bias.map_or(0, |b| qgemm::i32_at(b, g * opg + col)),
            qgemm::const_offset(cv.in_dtype, cv.in_zero),
            cv.out,
            g * opg,
            &mut tab,
        );
    }
    pb.resize(pb.len() + PACKED_SLACK, 0);
    Ok([pb, tab])
}

/// The layout of one group's per-channel tables.
fn tables_of(pt: PTile, opg: u64, cv: &QConv) -> qgemm::Tables {
    let runtime = matches!(cv.in_zero, ZeroPoint::Runtime(_));
    qgemm::Tables::new(pt.padded(opg), runtime, cv.out, pt.pairs)
}

/// Tile of the convolution GEMM: `pg` groups of 4 pixels (the lanes) × `nc` output
/// channels, one accumulator per group and channel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PTile {
    pg: u64,
    nc: u64,
    pairs: bool,
}

impl PTile {
    pub fn of(t: QTile) -> PTile {
        if t.pairs {
            // 8 accumulators + 2 × 2 pixel pairs + 2 weight pairs of 16 xmm.
            PTile {
                pg: 2,
                nc: 4,
                pairs: true,
            }
        } else if t.sdot {
            // 24 accumulators + 2 pixel vectors + weights, one `sdot` each.
            PTile {
                pg: 2,
                nc: 12,
                pairs: false,
            }
        } else {
            // The tree's temporaries leave room for 12 accumulators.
            PTile {
                pg: 2,
                nc: 6,
                pairs: false,
            }
        }
    }
    fn padded(self, n: u64) -> u64 {
        n.div_ceil(self.nc) * self.nc
    }
}

/// Packs `W[k, col]` (`k × n`) as `[channel block][k group][channel][4 bytes]`, each
/// channel's 4 K bytes once (zero padded in K; the last block only as wide as the
/// channels left): exactly the weights' bytes plus K padding. The kernel broadcasts a channel's word to the lanes when
/// it reads it ([`channel_ops`]).
fn pack_weights(pt: PTile, k: u64, n: u64, get: impl Fn(u64, u64) -> i8, out: &mut Vec<u8>) {
    let at = |kk: u64, col: u64| -> u8 {
        if kk < k && col < n {
            get(kk, col) as u8
        } else {
            0
        }
    };
    for cb in 0..n.div_ceil(pt.nc) {
        // The last block holds only the channels that exist.
        let width = pt.nc.min(n - cb * pt.nc);
        for kg in 0..k.div_ceil(4) {
            for c in 0..width {
                for u in 0..4 {
                    out.push(at(4 * kg + u, cb * pt.nc + c));
                }
            }
        }
    }
}

/// Bytes after all groups' packed weights, so that [`channel_ops`]' 16-byte reads of a
/// block whose channel count is not a multiple of 4 stay inside the data.
const PACKED_SLACK: usize = 16;

/// The weight operands of channels `0..nc` of one K group packed at `bp`: per 4 channels
/// one 16-byte load, each channel's word broadcast by lane (`dup v.4s, v.s[l]`); with
/// `pairs` (x86_64) per 2 channels one sign-extending 8-byte load (`pmovsxbw`) and each
/// channel's two K pairs broadcast (`pshufd`).
fn channel_ops(fx: &mut Fx, pairs: bool, bp: Value, nc: u64) -> Vec<RowOp> {
    let mut ops = Vec::with_capacity(nc as usize);
    if pairs {
        for q in 0..nc.div_ceil(2) {
            let v = fx.sload8x8(bp, 8 * q as i64, true);
            let v = fx.bitcast(types::I8X16, v);
            for l in 0..(nc - 2 * q).min(2) as u8 {
                let [p01, p23] = [2 * l, 2 * l + 1].map(|lane| {
                    let p = qgemm::splat_lane32(fx, v, lane);
                    fx.bitcast(types::I16X8, p)
                });
                ops.push(RowOp::Pairs(p01, p23));
            }
        }
    } else {
        for q in 0..nc.div_ceil(4) {
            let v = fx.load(types::I8X16, bp, 16 * q as i64, true);
            for l in 0..(nc - 4 * q).min(4) as u8 {
                ops.push(RowOp::Dot(qgemm::splat_lane32(fx, v, l)));
            }
        }
    }
    ops
}

pub(crate) fn emit(
    fx: &mut Fx,
    t: QTile,
    cv: &QConv,
    packed: [Option<usize>; 2],
) -> Result<(), Error> {
    if cv.is_depthwise() {
        let [Some(wtab), Some(mults)] = packed else {
            return Err(Error::Codegen("qconv tables missing".into()));
        };
        if qdepthwise::handles(cv) {
            return qdepthwise::emit(fx, cv, wtab, mults, qdepthwise::Form::of(cv, t));
        }
        return qwindow::emit_depthwise(fx, cv, mults);
    }
    let [Some(pb), Some(pt)] = packed else {
        return Err(Error::Codegen("qconv weights were not packed".into()));
    };
    let s = &cv.s;
    let esize = cv.out.dtype().size() as i64;
    let input = fx.buf(cv.input);
    let output = fx.buf(cv.output);
    let wts = fx.data_addr(pb);
    let tabs = fx.data_addr(pt);
    let (offset, zbyte) = match cv.in_zero {
        ZeroPoint::Runtime(buf) => {
            let p = fx.buf(buf);
            let z = fx.load(types::I8, p, 0, true);
            (Some(qgemm::runtime_offset(fx, cv.in_dtype, buf)), z)
        }
        ZeroPoint::Const(z) => (None, fx.b.ins().iconst(types::I8, (z as u8) as i64)),
    };
    let (cpg, opg) = ((cv.c_in / cv.groups) as i64, (cv.c_out / cv.groups) as u64);
    let k = cv.k();
    let n_out = s.out_h as u64 * s.out_w as u64;
    let in_plane = s.in_h as i64 * s.in_w as i64;
    let pt = PTile::of(t);
    let b_group = (opg * k.div_ceil(4) * 4) as i64;
    let t_group = tables_of(pt, opg, cv).bytes() as i64;
    let pointwise = cv.is_pointwise();
    // Pixel blocks: whole output rows im2col-ed into the scratch; a pointwise
    // convolution's input already is its `[ci][pixel]` A, one block of all pixels.
    let (block, rows, panel) = if pointwise {
        (n_out.max(1), 0, None)
    } else {
        let sc = cv
            .scratch
            .ok_or_else(|| unsupported("qconv needs a scratch buffer"))?;
        let rows = Kernel::conv_block_rows(cv.c_in, cv.groups, s, &cv.w) as u64;
        (rows * s.out_w as u64, rows, Some(fx.buf(sc)))
    };
    let zvec = fx.b.ins().splat(types::I8X16, zbyte);
    let (full, tail) = (n_out / block, n_out % block);
    let groups = cv.groups as u64;
    fx.for_n(s.n as u64, &[], |fx, ni, _| {
        fx.for_n(groups, &[], |fx, g, _| {
            let ch = fx.b.ins().imul_imm_s(ni, cv.c_in as i64);
            let gc = fx.b.ins().imul_imm_s(g, cpg);
            let ch = fx.b.ins().iadd(ch, gc);
            let in_g = fx.addp_scaled(input, ch, in_plane);
            let oc = fx.b.ins().imul_imm_s(ni, cv.c_out as i64);
            let go = fx.b.ins().imul_imm_s(g, opg as i64);
            let oc = fx.b.ins().iadd(oc, go);
            let out_g = fx.addp_scaled(output, oc, n_out as i64 * esize);
            let b = fx.addp_scaled(wts, g, b_group);
            let tab = fx.addp_scaled(tabs, g, t_group);
            for (count, np, is_tail) in [(full, block, false), (u64::from(tail > 0), tail, true)] {
                fx.for_n(count, &[], |fx, blk, _| {
                    let p0 = if is_tail {
                        fx.iconst((full * block) as i64)
                    } else {
                        fx.b.ins().imul_imm_s(blk, block as i64)
                    };
                    let (a, ks, readonly) = match panel {
                        None => (fx.addp_scaled(in_g, p0, 1), in_plane, true),
                        Some(sc) => {
                            let oy0 = if is_tail {
                                fx.iconst((full * rows) as i64)
                            } else {
                                fx.b.ins().imul_imm_s(blk, rows as i64)
                            };
                            let rows = np / s.out_w as u64;
                            im2col(fx, cv, in_g, sc, oy0, rows, (zbyte, zvec));
                            (sc, np as i64, false)
                        }
                    };
                    let c = fx.addp_scaled(out_g, p0, esize);
                    pixel_gemm(
                        fx,
                        pt,
                        &PixelGemm {
                            m: np,
                            n: opg,
                            k,
                            a,
                            ks,
                            a_readonly: readonly,
                            flip: cv.in_dtype == DType::U8,
                            b,
                            tab,
                            offset,
                            c,
                            c_cs: n_out as i64 * esize,
                            out: cv.out,
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

/// Copies `n` bytes read `ss` apart at `from` to consecutive bytes at `to`: 16 at a time
/// (vector loads) at unit stride, then 8, 4 and single bytes; one by one otherwise.
pub(crate) fn copy_row(fx: &mut Fx, from: Value, ss: i64, to: Value, n: u64) {
    if ss != 1 {
        let out = fx.for_n(n / 4, &[from, to], |fx, _, c| {
            for u in 0..4 {
                let v = fx.load8(false, c[0], u * ss, false);
                fx.store8(v, c[1], u);
            }
            vec![fx.addp(c[0], 4 * ss), fx.addp(c[1], 4)]
        });
        for u in 0..(n % 4) as i64 {
            let v = fx.load8(false, out[0], u * ss, false);
            fx.store8(v, out[1], u);
        }
        return;
    }
    let out = fx.for_n(n / 16, &[from, to], |fx, _, c| {
        let v = fx.load(types::I8X16, c[0], 0, false);
        fx.store(v, c[1], 0);
        vec![fx.addp(c[0], 16), fx.addp(c[1], 16)]
    });
    let mut at = 0i64;
    for (ty, size) in [(types::I64, 8), (types::I32, 4), (types::I8, 1)] {
        while (n % 16) as i64 - at >= size {
            let v = fx.load(ty, out[0], at, false);
            fx.store(v, out[1], at);
            at += size;
        }
    }
}

/// Stores the zero point's byte (`z`: scalar, vector) to `to[0..n]`.
pub(crate) fn fill_row(fx: &mut Fx, (z, zv): (Value, Value), to: Value, n: u64) {
    let out = fx.for_n_unrolled(n / 16, 2, &[to], |fx, _, c| {
        fx.store(zv, c[0], 0);
        vec![fx.addp(c[0], 16)]
    });
    for u in 0..(n % 16) as i64 {
        fx.store(z, out[0], u);
    }
}

/// The im2col of output rows `oy0 .. oy0 + rows` of one image and group:
/// `dst[(ci·kh + ky)·kw + kx][(oy − oy0)·ow + ox]` is the input tap, or the zero point's
/// byte in the padding.
///
/// `kx` is unrolled, so the columns whose tap is inside the row are a compile-time range:
/// that part is copied (16 bytes at a time at unit stride) when the input row exists and
/// filled otherwise; only the padding columns around it are stored separately.
fn im2col(
    fx: &mut Fx,
    cv: &QConv,
    src: Value,
    dst: Value,
    oy0: Value,
    rows: u64,
    z: (Value, Value),
) {
    let (s, w) = (&cv.s, &cv.w);
    let (ih, iw, ow) = (s.in_h as i64, s.in_w as i64, s.out_w as u64);
    let cpg = (cv.c_in / cv.groups) as u64;
    let (kh, kw) = (w.kh as u64, w.kw as u64);
    let n_blk = (rows * ow) as i64;
    let iy0 = fx.b.ins().imul_imm_s(oy0, w.stride_h as i64);
    let sw = w.stride_w as i64;
    fx.for_n(cpg, &[], |fx, ci, _| {
        let plane = fx.addp_scaled(src, ci, ih * iw);
        fx.for_n(kh, &[], |fx, ky, _| {
            let r0 = fx.b.ins().imul_imm_s(ci, (kh * kw) as i64);
            let ry = fx.b.ins().imul_imm_s(ky, kw as i64);
            let r0 = fx.b.ins().iadd(r0, ry);
            let row0 = fx.addp_scaled(dst, r0, n_blk);
            let dy = fx.b.ins().imul_imm_s(ky, w.dilation_h as i64);
            let dy = fx.b.ins().iadd_imm_s(dy, -(w.pad_top as i64));
            let dy = fx.b.ins().iadd(dy, iy0);
            for kx in 0..kw {
                let row = fx.addp(row0, kx as i64 * n_blk);
                let dx = kx as i64 * w.dilation_w as i64 - w.pad_left as i64;
                // Columns ox with 0 <= ox·sw + dx < iw, a compile-time range.
                let lo = ((-dx).max(0) as u64).div_ceil(sw as u64).min(ow);
                let hi = ((iw - dx).max(0) as u64).div_ceil(sw as u64).clamp(lo, ow);
                fx.for_n(rows, &[], |fx, oy, _| {
                    let iy = fx.b.ins().imul_imm_s(oy, w.stride_h as i64);
                    let iy = fx.b.ins().iadd(iy, dy);
                    let vy = fx.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, ih);
                    let in_row = fx.b.ins().imul_imm_s(iy, iw);
                    let out_row = fx.addp_scaled(row, oy, ow as i64);
                    fill_row(fx, z, out_row, lo);
                    let after = fx.addp(out_row, hi as i64);
                    fill_row(fx, z, after, ow - hi);
                    let to = fx.addp(out_row, lo as i64);
                    fx.if_else(
                        vy,
                        |fx| {
                            let from = fx.addp_scaled(plane, in_row, 1);
                            let from = fx.addp(from, lo as i64 * sw + dx);
                            copy_row(fx, from, sw, to, hi - lo);
                        },
                        |fx| fill_row(fx, z, to, hi - lo),
                    );
                    vec![]
                });
            }
            vec![]
        });
        vec![]
    });
}

/// One image and group of a convolution as a GEMM with pixels as lanes: `m` pixels,
/// `n` output channels, `A[k][pixel]` at `a + k·ks + pixel`, C at `c + pixel·esize +
/// channel·c_cs`.
struct PixelGemm<'a> {
    m: u64,
    n: u64,
    k: u64,
    a: Value,
    ks: i64,
    a_readonly: bool,
    flip: bool,
    b: Value,
    tab: Value,
    offset: Option<Value>,
    c: Value,
    c_cs: i64,
    out: &'a QuantOut,
}

fn pixel_gemm(fx: &mut Fx, pt: PTile, g: &PixelGemm) {
    let px = 4 * pt.pg;
    let esize = g.out.dtype().size() as i64;
    let (full, tail) = (g.m / px, g.m % px);
    let (nb, rem) = (g.n / pt.nc, g.n % pt.nc);
    let blk = (g.k.div_ceil(4) * pt.nc * 4) as i64;
    let k4 = g.k.div_ceil(4);
    // With several channel blocks, each pixel block's words are transposed and flipped
    // once into a stack area that every block then reads with one load per vector.
    let packed_bytes = k4 * pt.pg * 16;
    let pack = nb + u64::from(rem > 0) > 1 && packed_bytes <= PACKED_A_MAX;
    let slot = pack.then(|| {
        let slot = fx.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            packed_bytes as u32,
            4,
        ));
        fx.b.ins().stack_addr(crate::fx::PTR, slot, 0)
    });
    for (count, pixels, is_tail) in [(full, px, false), (u64::from(tail > 0), tail, true)] {
        fx.for_n(count, &[], |fx, i, _| {
            let p0 = if is_tail {
                fx.iconst((full * px) as i64)
            } else {
                fx.b.ins().imul_imm_s(i, px as i64)
            };
            let a = fx.addp_scaled(g.a, p0, 1);
            let c = fx.addp_scaled(g.c, p0, esize);
            let src = match slot {
                Some(dst) => {
                    pack_words(fx, g, a, pixels, dst);
                    ASrc::Packed(dst)
                }
                None => ASrc::Rows(a),
            };
            fx.for_n(nb, &[], |fx, j, _| {
                let b = fx.addp_scaled(g.b, j, blk);
                let tab = fx.addp_scaled(g.tab, j, pt.nc as i64 * 4);
                let c = fx.addp_scaled(c, j, pt.nc as i64 * g.c_cs);
                pixel_micro(fx, pt, g, pixels, pt.nc, src, b, tab, c);
                vec![]
            });
            if rem > 0 {
                let b = fx.addp(g.b, nb as i64 * blk);
                let tab = fx.addp(g.tab, (nb * pt.nc * 4) as i64);
                let c = fx.addp(c, (nb * pt.nc) as i64 * g.c_cs);
                pixel_micro(fx, pt, g, pixels, rem, src, b, tab, c);
            }
            vec![]
        });
    }
}

/// Largest stack area for a pixel block's packed words, in bytes.
const PACKED_A_MAX: u64 = 64 * 1024;

/// Where a microkernel reads its pixels' words.
#[derive(Clone, Copy)]
enum ASrc {
    /// `A[k][pixel]` at `p + k·ks + pixel`: load the 4 K rows and transpose per group.
    Rows(Value),
    /// Transposed and flipped by [`pack_words`]: `ceil(pixels/4)` vectors per group.
    Packed(Value),
}

/// The 4 K rows of one group at `ap` (rows past `valid` are zero), as words of `pixels`
/// pixels, flipped.
fn group_words(fx: &mut Fx, g: &PixelGemm, ap: Value, pixels: u64, valid: u64) -> Vec<Value> {
    let zero = fx.vconst_bytes(types::I8X16, vec![0; 16]);
    let k_rows: [Value; 4] = std::array::from_fn(|u| {
        if (u as u64) < valid {
            load_bytes(fx, ap, u as i64 * g.ks, pixels, g.a_readonly)
        } else {
            zero
        }
    });
    transpose_words(fx, k_rows, pixels)
        .into_iter()
        .map(|w| qgemm::flip_vec(fx, g.flip, w))
        .collect()
}

/// Writes every group's words of the pixel block at `a` to `dst` (see [`ASrc::Packed`]).
fn pack_words(fx: &mut Fx, g: &PixelGemm, a: Value, pixels: u64, dst: Value) {
    let step = 16 * pixels.div_ceil(4) as i64;
    let out = fx.for_n(g.k / 4, &[a, dst], |fx, _, c| {
        for (q, w) in group_words(fx, g, c[0], pixels, 4).into_iter().enumerate() {
            fx.store(w, c[1], 16 * q as i64);
        }
        vec![fx.addp(c[0], 4 * g.ks), fx.addp(c[1], step)]
    });
    if !g.k.is_multiple_of(4) {
        for (q, w) in group_words(fx, g, out[0], pixels, g.k % 4)
            .into_iter()
            .enumerate()
        {
            fx.store(w, out[1], 16 * q as i64);
        }
    }
}

/// The pixel operand of the dot products from a vector of 4 pixels' words: the words
/// themselves, or (`pairs`) their K pairs as `i16x8` (`[p0: k0 k1, p1: k0 k1, ...]` and
/// the same for `k2 k3`).
fn pixel_op(fx: &mut Fx, pairs: bool, w: Value) -> RowOp {
    if !pairs {
        return RowOp::Dot(w);
    }
    let lo = fx.b.ins().swiden_low(w);
    let hi = fx.b.ins().swiden_high(w);
    let (lo, hi) = (fx.bitcast(types::I8X16, lo), fx.bitcast(types::I8X16, hi));
    const EVEN: [u8; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
    const ODD: [u8; 16] = [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31];
    let [p01, p23] = [EVEN, ODD].map(|m| {
        let p = qgemm::shuffle(fx, lo, hi, m);
        fx.bitcast(types::I16X8, p)
    });
    RowOp::Pairs(p01, p23)
}

/// `pixels` (at most `4·pg`) pixels × `nc` channels at `c`.
#[allow(clippy::too_many_arguments)]
fn pixel_micro(
    fx: &mut Fx,
    pt: PTile,
    g: &PixelGemm,
    pixels: u64,
    nc: u64,
    src: ASrc,
    b: Value,
    tab: Value,
    c: Value,
) {
    let pg = pixels.div_ceil(4);
    let (a, a_step) = match src {
        ASrc::Rows(a) => (a, 4 * g.ks),
        ASrc::Packed(p) => (p, 16 * pg as i64),
    };
    let lay = qgemm::Tables::new(pt.padded(g.n), g.offset.is_some(), g.out, pt.pairs);
    let starts: Vec<Value> = (0..nc as i64)
        .map(|col| {
            let b0 = fx.load(types::I32, tab, 4 * col, true);
            let s = match g.offset {
                None => b0,
                Some(off) => {
                    let cs = fx.load(types::I32, tab, lay.colsum_off() + 4 * col, true);
                    let p = fx.b.ins().imul(off, cs);
                    fx.b.ins().iadd(b0, p)
                }
            };
            fx.b.ins().splat(types::I32X4, s)
        })
        .collect();
    // Accumulators channel-major: `acc[col·pg + q]`.
    let nacc = (nc * pg) as usize;
    let mut carried: Vec<Value> = (0..nacc).map(|i| starts[i / pg as usize]).collect();
    carried.extend([a, b]);
    // A block's K groups are `nc` channels of 4 bytes (the last block is narrower).
    let kstep = (nc * 4) as i64;
    let group = |fx: &mut Fx, ap: Value, bp: Value, valid: u64, acc: &mut [Value]| {
        let words: Vec<Value> = match src {
            ASrc::Rows(_) => group_words(fx, g, ap, pixels, valid),
            ASrc::Packed(_) => (0..pg as i64)
                .map(|q| fx.load(types::I8X16, ap, 16 * q, false))
                .collect(),
        };
        let ops: Vec<RowOp> = words
            .into_iter()
            .map(|w| pixel_op(fx, pt.pairs, w))
            .collect();
        for (col, wv) in channel_ops(fx, pt.pairs, bp, nc).into_iter().enumerate() {
            for (q, op) in ops.iter().enumerate() {
                let x = &mut acc[col * pg as usize + q];
                *x = match (*op, wv) {
                    (RowOp::Dot(p), RowOp::Dot(w)) => qgemm::dot_tree(fx, p, w, *x),
                    (RowOp::Pairs(p0, p1), RowOp::Pairs(w0, w1)) => {
                        let d0 = qgemm::pmaddwd(fx, p0, w0);
                        let d1 = qgemm::pmaddwd(fx, p1, w1);
                        let s = fx.b.ins().iadd(*x, d0);
                        fx.b.ins().iadd(s, d1)
                    }
                    _ => unreachable!("mixed operand kinds"),
                };
            }
        }
    };
    let out = fx.repeat_n(g.k / 4, &carried, |fx, cv| {
        let (ap, bp) = (cv[nacc], cv[nacc + 1]);
        let mut acc = cv[..nacc].to_vec();
        group(fx, ap, bp, 4, &mut acc);
        acc.push(fx.addp(ap, a_step));
        acc.push(fx.addp(bp, kstep));
        acc
    });
    let mut acc = out[..nacc].to_vec();
    if !g.k.is_multiple_of(4) {
        group(fx, out[nacc], out[nacc + 1], g.k % 4, &mut acc);
    }
    let esize = g.out.dtype().size() as i64;
    for col in 0..nc as usize {
        // The channel's multiplier in every lane, from a vector load and a lane splat
        // (see `qgemm::requant`).
        let m = match g.out {
            QuantOut::Requant(rq) => Some(qgemm::mult_at(
                fx,
                rq,
                tab,
                lay.mult_off() + 4 * col as i64,
                lay.region(),
                true,
            )),
            QuantOut::I32 => None,
        };
        for q in 0..pg {
            let x = acc[col * pg as usize + q as usize];
            let lanes = (pixels - 4 * q).min(4);
            let off = 4 * q as i64 * esize + col as i64 * g.c_cs;
            match g.out {
                QuantOut::I32 => qgemm::store_lanes(fx, x, DType::I32, c, off, esize, lanes),
                QuantOut::Requant(rq) => {
                    let y = qgemm::requant(fx, rq, x, m.expect("multipliers of a requant"));
                    qgemm::store_lanes(fx, y, rq.dtype, c, off, esize, lanes);
                }
            }
        }
    }
}

/// Bytes `p[0..n]` in the low lanes of an `i8x16` (the others zero or unspecified),
/// never reading past `p + n`.
fn load_bytes(fx: &mut Fx, p: Value, off: i64, n: u64, readonly: bool) -> Value {
    match n {
        8 => {
            let x = fx.load(types::I64, p, off, readonly);
            let v = fx.b.ins().scalar_to_vector(types::I64X2, x);
            fx.bitcast(types::I8X16, v)
        }
        4 => {
            let x = fx.load(types::I32, p, off, readonly);
            let v = fx.b.ins().scalar_to_vector(types::I32X4, x);
            fx.bitcast(types::I8X16, v)
        }
        _ => {
            let mut v = fx.vconst_bytes(types::I8X16, vec![0; 16]);
            for l in 0..n as u8 {
                let x = fx.load(types::I8, p, off + l as i64, readonly);
                v = fx.b.ins().insertlane(v, x, l);
            }
            v
        }
    }
}

/// The words of `rows` pixels for one K group from the 4 K rows `k_rows` (bytes of
/// consecutive pixels): vector `q` holds pixels `4q .. 4q+4`, one word each.
fn transpose_words(fx: &mut Fx, k_rows: [Value; 4], rows: u64) -> Vec<Value> {
    const ZIP1_8: [u8; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    const ZIP1_16: [u8; 16] = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
    const ZIP2_16: [u8; 16] = [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31];
    let z01 = shuffle(fx, k_rows[0], k_rows[1], ZIP1_8);
    let z23 = shuffle(fx, k_rows[2], k_rows[3], ZIP1_8);
    let mut out = vec![shuffle(fx, z01, z23, ZIP1_16)];
    if rows > 4 {
        out.push(shuffle(fx, z01, z23, ZIP2_16));
    }
    out
}
