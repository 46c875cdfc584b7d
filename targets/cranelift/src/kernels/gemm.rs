//! GEMM: `C = act(alpha · A·B + bias + residual)` with a register-blocked microkernel.
//!
//! The microkernel keeps an `MR × NR` tile of C in registers (`NR = 4·NV` columns as
//! `NV` f32x4 vectors) and walks K: per step it loads `NV` vectors of a B row and the `MR`
//! values of an A column (each broadcast), and does `MR·NV` multiply-adds. Tiles: 4×8 on
//! x86_64 (16 xmm, and x64 FMA ties its destination to a multiplicand, so a bigger tile
//! spills — see the Cranelift notes, 49 GFLOP/s measured for 4×8) and 8×12 on aarch64
//! (32 vector registers, `fmla` accumulates in place: 24 accumulators + 3 B + 1 A).
//! The K loop is unrolled twice (on aarch64 only with packed A; see [`Tile::for_target`]).
//!
//! How A gets to the multiply-adds is chosen per target (see `micro`), from the listings:
//! - aarch64, packed A: per K step 2 `ldr q` of A + 3 `ldr q` of B + 24 by-element `fmla`
//!   (the A lanes are same-lane shuffles, which the backend turns into `fmla v.s[l]`);
//!   previously 8 `ldr s` of A. Unrolled twice: 48 `fmla` + 10 `ldr q` + 8 loop
//!   instructions per iteration, 1.375 instructions per `fmla` (1.79 before).
//! - aarch64, A read in place with K contiguous (activations times weights, the
//!   transformer projections): the 11×8 k-lanes tile ([`Tile::for_gemm`]), unrolled 4
//!   times; per iteration 11 `ldr q` of A (4 K values of a row each), 8 `ldr q` of B and
//!   88 by-element `fmla`, plus 5 loop instructions: 1.27 instructions per `fmla`, where
//!   the 8×12 tile with a scalar A load per row and step took 1.63 (128×384×384 with
//!   constant B: 8.48 M → 6.06 M guest instructions; onnxruntime 5.9–6.0 M).
//! - x86_64 with FMA: every multiply-add gets its own `vbroadcastss mem` of A. The FMA
//!   then overwrites a dead register instead of a copy of a live splat (x64 FMA ties its
//!   destination to a multiplicand), which removes the 8 `movdqa` per unrolled iteration,
//!   and the load-and-splat pair becomes one instruction. That needs the K loop tested
//!   at the top ([`Fx::for_n_top`]): in a rotated loop the last accumulators are used by
//!   both the back edge and the exit, and the lowering then refuses to fold any load
//!   they depend on. Per unrolled iteration (16 FMAs): 16 `vbroadcastss` + 4 `vmovups` +
//!   16 `vfmadd213ps` + 8 `movdqa` (accumulators rotate through registers on the back
//!   edge) + 7 loop instructions, 51 in all (56 before). Unrolling 4 times spills.
//!
//! Every operand is addressed as `base + row·rs + col·cs` (bytes), so transposed and
//! broadcast views are the same code; only the loads change: B with column stride 1 is
//! a vector load, stride 0 a splat, anything else four lane inserts.
//!
//! Constant operands are packed at compile time into the layout the microkernel walks
//! linearly: A as `[row block][k][MR]`, B as `[column block][k][NR]`, blocks zero-padded
//! to full size, one copy per batch unless the batch stride is 0. Packed and unpacked
//! operands differ only in `(rs, cs, block step)`.
//!
//! Tails are exact, chosen at compile time: rows `M mod MR` by one narrower microkernel,
//! columns by a microkernel with fewer vectors (`(N mod NR) / 4`) and then one with
//! scalar lanes (`N mod 4`). Nothing is read or written outside the views.
//!
//! The epilogue (alpha, bias, residual, activation) runs once per tile on the
//! accumulators, after the K loop: the fused skip connection and activation cost one
//! load and a few instructions per output vector instead of a pass over C each.

use cranelift_codegen::ir::{InstBuilder, Value};
use edgecc_program::{Activation, Buffer, Const, View};

use crate::error::{Error, unsupported};
use crate::fx::{Features, Fx, W, bytes_of};
use crate::kernels::activate;

/// Register tile: `mr` rows by `nv` f32x4 vectors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile {
    pub mr: u64,
    pub nv: u64,
    /// K steps per loop iteration.
    pub unroll: u64,
    /// Vectors per row of the small-M tile (see [`Tile::for_m`]).
    pub wide: u64,
    /// Whether A read in place along contiguous K takes the k-lanes tile (see
    /// [`Tile::for_gemm`]): aarch64, where `fmla` takes its multiplier by lane.
    pub k_lanes: bool,
}

impl Tile {
    pub fn for_target(feat: Features) -> Tile {
        // aarch64 unrolls twice only when A comes as f32x4 lanes (packed A, see `micro`):
        // the e-graph places each step's loads at their first use, so two steps keep
        // 24 accumulators + 6 B + 2 A vectors live, exactly the 32 registers, with no
        // spill in the loop (`--example emit`). With scalar A loads two steps spill two
        // accumulators per iteration, so those loops are not unrolled.
        if feat.aarch64 {
            Tile {
                mr: 8,
                nv: 3,
                unroll: 2,
                wide: 8,
                k_lanes: true,
            }
        } else {
            Tile {
                mr: 4,
                nv: 2,
                unroll: 2,
                wide: 4,
                k_lanes: false,
            }
        }
    }

    /// The tile for a GEMM with `m` rows. Up to [`SMALL_M`] rows (GEMV: batch-1 fully
    /// connected layers) take one row block of exactly `m` rows, wide along N (`wide`
    /// vectors for one row, 3/4 of that for two or three) and the K loop unrolled 4
    /// times: on aarch64 with A contiguous along K, each row's 4 values of an iteration
    /// are one f32x4 load used by lane in the by-element `fmla` (see `micro`), so per
    /// 4 columns and K step there is one `ldr q` of B and one `fmla`.
    pub fn for_m(self, m: u64) -> Tile {
        if m == 0 || m > SMALL_M {
            return self;
        }
        Tile {
            mr: m,
            nv: if m == 1 { self.wide } else { self.wide * 3 / 4 },
            unroll: 4,
            ..self
        }
    }

    /// The tile for a GEMM with `m` rows and A read through `a` (`a_const`: A is packed
    /// at compile time). On aarch64 an A that is read in place with K contiguous (the
    /// activations of every transformer projection) takes an 11×8 tile unrolled 4
    /// times: each iteration loads 4 K values of each of the 11 rows as one f32x4 and
    /// feeds the by-element `fmla` by lane (see `micro`), so per 4 K steps there are 11
    /// `ldr q` of A, 8 of B and 88 `fmla` (1.22 instructions per `fmla` before the loop's
    /// own), where the 8×12 tile needs a scalar load per row and K step and cannot be
    /// unrolled without spilling (1.6). The e-graph elaborates one accumulator chain at a
    /// time, so all 8 B vectors of an iteration stay live: 22 accumulators + 8 B + the
    /// current A is 31 registers; 12 rows spill (6.32 M guest instructions on
    /// 128×384×384 against 6.06 M for 11 rows, 6.12 M for 10 and 6.30 M for 8). The 8×12
    /// tile with its 2 + 3 vector loads per step stays for packed A.
    pub fn for_gemm(self, m: u64, a: &View, a_const: bool) -> Tile {
        let t = self.for_m(m);
        if self.k_lanes && m > SMALL_M && !a_const && a.strides.get(2) == Some(&1) {
            // Not unrolled 8 times: all 8 steps' B vectors (16) would be live with the
            // accumulators; that spills (7.18 M instead of 6.30 M with 8 rows).
            return Tile {
                mr: 11,
                nv: 2,
                unroll: 4,
                ..self
            };
        }
        t
    }
    pub fn nr(self) -> u64 {
        self.nv * 4
    }
}

/// GEMMs with at most this many rows use [`Tile::for_m`]'s wide small-M tile.
pub(crate) const SMALL_M: u64 = 3;

/// A matrix operand: element `(r, c)` at `base + r·rs + c·cs` bytes. `block` is the byte
/// step from one register block to the next along the blocked dimension (rows of A,
/// columns of B).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    pub base: Value,
    pub rs: i64,
    pub cs: i64,
    pub block: i64,
    /// Never written while the GEMM runs, so loads may be hoisted and reordered.
    pub readonly: bool,
}

/// One 2-D GEMM, `C[m×n] = act(alpha · A[m×k] · B[k×n] + bias + residual)`.
pub(crate) struct Gemm2d {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub a: Mat,
    pub b: Mat,
    pub c: Mat,
    pub bias: Option<Mat>,
    /// Added after the bias (a skip connection).
    pub residual: Option<Mat>,
    pub alpha: f32,
    pub act: Activation,
    /// K steps per loop iteration (from the [`Tile`]).
    pub unroll: u64,
}

/// Emits a 2-D GEMM with tile `t`.
pub(crate) fn emit_2d(fx: &mut Fx, t: Tile, g: &Gemm2d) {
    let nr = t.nr();
    let (mb, mt) = (g.m / t.mr, g.m % t.mr);
    let row_passes = [(mb, t.mr, false), (u64::from(mt > 0), mt, true)];
    for (count, mr, tail) in row_passes {
        fx.for_n(count, &[], |fx, i, _| {
            let r0 = if tail { fx.iconst(mb as i64) } else { i };
            let a = fx.addp_scaled(g.a.base, r0, g.a.block);
            let c_row = fx.addp_scaled(g.c.base, r0, t.mr as i64 * g.c.rs);
            let bias_row = g
                .bias
                .map(|bm| fx.addp_scaled(bm.base, r0, t.mr as i64 * bm.rs));
            let res_row = g
                .residual
                .map(|rm| fx.addp_scaled(rm.base, r0, t.mr as i64 * rm.rs));
            columns(fx, t, g, nr, mr, a, c_row, [bias_row, res_row]);
            vec![]
        });
    }
}

/// All column blocks of one row block.
#[allow(clippy::too_many_arguments)]
fn columns(
    fx: &mut Fx,
    t: Tile,
    g: &Gemm2d,
    nr: u64,
    mr: u64,
    a: Value,
    c_row: Value,
    extra_rows: [Option<Value>; 2],
) {
    let (nb, rem) = (g.n / nr, g.n % nr);
    let (tv, ts) = (rem / 4, rem % 4);
    // Column steps of the bias and residual views, beside their row pointers.
    let extra_cs = [g.bias.map(|m| m.cs), g.residual.map(|m| m.cs)];
    let at_col = |fx: &mut Fx, j: Option<Value>, col: i64| -> [Option<Value>; 2] {
        let mut out = [None, None];
        for (o, (p, cs)) in out.iter_mut().zip(extra_rows.iter().zip(extra_cs)) {
            if let (Some(p), Some(cs)) = (*p, cs) {
                *o = Some(match j {
                    Some(j) => fx.addp_scaled(p, j, nr as i64 * cs),
                    None => fx.addp(p, col * cs),
                });
            }
        }
        out
    };
    fx.for_n(nb, &[], |fx, j, _| {
        let b = fx.addp_scaled(g.b.base, j, g.b.block);
        let c = fx.addp_scaled(c_row, j, nr as i64 * g.c.cs);
        let extra = at_col(fx, Some(j), 0);
        micro(fx, g, mr, t.nv, W::V4, a, b, c, extra);
        vec![]
    });
    let col0 = (nb * nr) as i64;
    let b_tail = fx.addp(g.b.base, nb as i64 * g.b.block);
    if tv > 0 {
        let c = fx.addp(c_row, col0 * g.c.cs);
        let extra = at_col(fx, None, col0);
        micro(fx, g, mr, tv, W::V4, a, b_tail, c, extra);
    }
    if ts > 0 {
        let col = col0 + 4 * tv as i64;
        let b = fx.addp(b_tail, 4 * tv as i64 * g.b.cs);
        let c = fx.addp(c_row, col * g.c.cs);
        let extra = at_col(fx, None, col);
        micro(fx, g, mr, ts, W::S1, a, b, c, extra);
    }
}

/// The microkernel: an `mr × (nv·lanes)` tile of C at `c`, from A rows at `a` and B
/// columns at `b`; `extra` points at the tile's bias and residual.
#[allow(clippy::too_many_arguments)]
fn micro(
    fx: &mut Fx,
    g: &Gemm2d,
    mr: u64,
    nv: u64,
    w: W,
    a: Value,
    b: Value,
    c: Value,
    extra: [Option<Value>; 2],
) {
    let lanes = w.lanes() as i64;
    let zero = fx.fconst(w, 0.0);
    // Accumulators first, pointers last: Cranelift elaborates a loop's pure values in the
    // order of the back edge's arguments, and pointer increments elaborated before the
    // loads that still read the old pointers need a second register and two moves on
    // the back edge per iteration.
    let nacc = (mr * nv) as usize;
    let mut carried = vec![zero; nacc];
    carried.extend([a, b]);
    // How A reaches the multiply-adds (see the module doc):
    // - aarch64 with A rows contiguous (packed A) in whole groups of 4: f32x4 loads, each
    //   row's value used as a lane of the by-element `fmla` (a same-lane shuffle is
    //   matched to it), so one load serves 4 rows;
    // - x86_64 with FMA: one `splat(load)` per multiply-add, so each splat has a single
    //   use and folds into `vbroadcastss mem`; the FMA's destination is tied to that
    //   multiplicand, which is then dead, so no `movdqa` copy is needed. The loads of one
    //   row use different base values (`a + 64·v`, offset `-64·v`), else the e-graph would
    //   merge them into one splat with several uses again;
    // - otherwise one scalar load and splat per row.
    let a_lanes =
        fx.feat.aarch64 && w == W::V4 && g.a.rs == 4 && mr.is_multiple_of(4) && g.a.readonly;
    let a_per_use = !fx.feat.aarch64 && fx.feat.fma && w == W::V4 && g.a.readonly;
    // - aarch64 small-M and k-lanes tiles ([`Tile::for_gemm`]) with A contiguous along K:
    //   per 4 K steps of an unrolled iteration one f32x4 load of each row's 4 K values,
    //   K step `u` using lane `u mod 4` (by-element `fmla`).
    let a_klanes = fx.feat.aarch64
        && w == W::V4
        && !a_lanes
        && g.unroll.is_multiple_of(4)
        && g.a.cs == 4
        && g.a.readonly;
    let f32t = cranelift_codegen::ir::types::F32;
    let lane_of = |fx: &mut Fx, x: Value, l: u8| {
        let mask: Vec<u8> = (0..16).map(|i| l * 4 + i % 4).collect();
        let imm = fx.b.func.dfg.immediates.push(mask.into());
        let sh = fx.b.ins().shuffle(x, x, imm);
        fx.bitcast(cranelift_codegen::ir::types::F32X4, sh)
    };
    // One K step at `kk` steps past the carried pointers; `a_k`: the rows' A vectors of
    // this iteration (k-lanes mode), of which lane `kk` is used.
    let step = |fx: &mut Fx, ap: Value, bp: Value, kk: i64, acc: &mut [Value], a_k: &[Value]| {
        let bv: Vec<Value> = (0..nv as i64)
            .map(|v| {
                fx.load_w(
                    w,
                    bp,
                    kk * g.b.rs + v * lanes * g.b.cs,
                    g.b.cs,
                    g.b.readonly,
                )
            })
            .collect();
        let a_vecs: Vec<Value> = if a_lanes {
            (0..mr.div_ceil(4) as i64)
                .map(|q| {
                    let v = fx.load(
                        cranelift_codegen::ir::types::F32X4,
                        ap,
                        q * 16 + kk * g.a.cs,
                        true,
                    );
                    fx.bitcast(cranelift_codegen::ir::types::I8X16, v)
                })
                .collect()
        } else {
            Vec::new()
        };
        let a_bases: Vec<Value> = if a_per_use {
            (0..nv as i64).map(|v| fx.addp(ap, 64 * v)).collect()
        } else {
            Vec::new()
        };
        for r in 0..mr as i64 {
            let row = &mut acc[r as usize * nv as usize..(r as usize + 1) * nv as usize];
            let a_off = r * g.a.rs + kk * g.a.cs;
            if a_per_use {
                for (v, (a, &b)) in row.iter_mut().zip(&bv).enumerate() {
                    let s = fx.load(f32t, a_bases[v], a_off - 64 * v as i64, true);
                    let av = fx.splat(w, s);
                    *a = fx.mul_add(av, b, *a);
                }
                continue;
            }
            let av = if a_lanes {
                lane_of(fx, a_vecs[r as usize / 4], (r % 4) as u8)
            } else if !a_k.is_empty() {
                lane_of(fx, a_k[r as usize], (kk % 4) as u8)
            } else {
                let s = fx.load(f32t, ap, a_off, g.a.readonly);
                fx.splat(w, s)
            };
            for (a, &b) in row.iter_mut().zip(&bv) {
                *a = fx.mul_add(av, b, *a);
            }
        }
    };
    let unroll = if fx.feat.aarch64 && !a_lanes && !a_klanes && mr > SMALL_M {
        1
    } else {
        g.unroll
    };
    let iters = g.k / unroll;
    let body = |fx: &mut Fx, c: &[Value]| {
        let (ap, bp) = (c[nacc], c[nacc + 1]);
        let mut acc = c[..nacc].to_vec();
        let mut a_k: Vec<Value> = Vec::new();
        for u in 0..unroll as i64 {
            if a_klanes && u % 4 == 0 {
                // The next 4 K values of every row; the previous group is dead by now.
                a_k = (0..mr as i64)
                    .map(|r| {
                        let off = r * g.a.rs + u * g.a.cs;
                        let v = fx.load(cranelift_codegen::ir::types::F32X4, ap, off, true);
                        fx.bitcast(cranelift_codegen::ir::types::I8X16, v)
                    })
                    .collect();
            }
            step(fx, ap, bp, u, &mut acc, &a_k);
        }
        let mut next = acc;
        next.push(fx.addp(ap, unroll as i64 * g.a.cs));
        next.push(fx.addp(bp, unroll as i64 * g.b.rs));
        next
    };
    let out = if a_per_use {
        fx.for_n_top(iters, &carried, |fx, _, c| body(fx, c))
    } else {
        fx.repeat_n(iters, &carried, body)
    };
    let mut acc = out[..nacc].to_vec();
    for u in 0..(g.k % unroll) as i64 {
        step(fx, out[nacc], out[nacc + 1], u, &mut acc, &[]);
    }
    let alpha = (g.alpha != 1.0).then(|| fx.fconst(w, g.alpha));
    // Sigmoid, tanh and GELU are ~40 instructions each: apply them in a loop over the
    // tile's rows after storing, rather than inlined for every accumulator.
    let deferred = mr > 1
        && matches!(
            g.act,
            Activation::Sigmoid | Activation::Tanh | Activation::Gelu { .. }
        );
    for r in 0..mr as i64 {
        for v in 0..nv as i64 {
            let mut x = acc[(r * nv as i64 + v) as usize];
            if let Some(al) = alpha {
                x = fx.b.ins().fmul(x, al);
            }
            for (p, m) in extra.into_iter().zip([g.bias, g.residual]) {
                if let (Some(p), Some(m)) = (p, m) {
                    let e = fx.load_w(w, p, r * m.rs + v * lanes * m.cs, m.cs, m.readonly);
                    x = fx.b.ins().fadd(x, e);
                }
            }
            if !deferred {
                x = activate(fx, w, g.act, x);
            }
            fx.store_w(w, x, c, r * g.c.rs + v * lanes * g.c.cs, g.c.cs);
        }
    }
    if deferred {
        // One copy of the activation per vector of a row, run for each row of the tile
        // from the values just stored (cache-hot), instead of `mr·nv` inline copies.
        fx.for_n(mr, &[], |fx, r, _| {
            let row = fx.addp_scaled(c, r, g.c.rs);
            for v in 0..nv as i64 {
                let off = v * lanes * g.c.cs;
                let x = fx.load_w(w, row, off, g.c.cs, false);
                let y = activate(fx, w, g.act, x);
                fx.store_w(w, y, row, off, g.c.cs);
            }
            vec![]
        });
    }
}

/// Reads f32 element `idx` of a constant, or an error naming the kernel.
fn const_elem(c: &Const, idx: i128) -> Result<f32, Error> {
    let at = usize::try_from(idx)
        .ok()
        .filter(|&i| (i + 1) * 4 <= c.data.len());
    let at = at.ok_or_else(|| {
        unsupported(format!(
            "view reads element {idx} outside constant `{}`",
            c.name
        ))
    })?;
    Ok(f32::from_le_bytes(
        c.data[at * 4..at * 4 + 4].try_into().unwrap(),
    ))
}

/// Packs rows `0..m` × cols `0..k` of A (element `(i, kk)` at constant element
/// `off + i·rs + kk·cs`) as `[row block][k][mr]`, zero padded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_a(
    c: &Const,
    off: i128,
    rs: i64,
    cs: i64,
    m: u64,
    k: u64,
    mr: u64,
    out: &mut Vec<f32>,
) -> Result<(), Error> {
    let blocks = m.div_ceil(mr);
    for ib in 0..blocks {
        for kk in 0..k {
            for r in 0..mr {
                let i = ib * mr + r;
                out.push(if i < m {
                    const_elem(c, off + i as i128 * rs as i128 + kk as i128 * cs as i128)?
                } else {
                    0.0
                });
            }
        }
    }
    Ok(())
}

/// Packs B (element `(kk, j)` at `off + kk·rs + j·cs`) as `[column block][k][nr]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_b(
    c: &Const,
    off: i128,
    rs: i64,
    cs: i64,
    k: u64,
    n: u64,
    nr: u64,
    out: &mut Vec<f32>,
) -> Result<(), Error> {
    let blocks = n.div_ceil(nr);
    for jb in 0..blocks {
        for kk in 0..k {
            for l in 0..nr {
                let j = jb * nr + l;
                out.push(if j < n {
                    const_elem(c, off + kk as i128 * rs as i128 + j as i128 * cs as i128)?
                } else {
                    0.0
                });
            }
        }
    }
    Ok(())
}

/// The compile-time data a Gemm kernel wants: packed copies of its constant operands
/// (A first, then B), as f32 vectors. `None` for an operand that is not constant.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare(
    consts: &[Const],
    t: Tile,
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
    a: &View,
    b: &View,
) -> Result<[Option<Vec<f32>>; 2], Error> {
    let (m, n, k) = (m as u64, n as u64, k as u64);
    let t = t.for_gemm(m, a, matches!(a.buf, Buffer::Const(_)));
    let get = |v: &View| -> Result<Option<&Const>, Error> {
        match v.buf {
            Buffer::Const(id) => consts
                .get(id.0 as usize)
                .map(Some)
                .ok_or_else(|| unsupported(format!("no constant {}", id.0))),
            _ => Ok(None),
        }
    };
    let copies = |v: &View| if v.strides[0] == 0 { 1 } else { batch as u64 };
    let mut pa = None;
    if let Some(c) = get(a)? {
        let mut out = Vec::new();
        for bi in 0..copies(a) {
            let off = a.offset as i128 + bi as i128 * a.strides[0] as i128;
            pack_a(c, off, a.strides[1], a.strides[2], m, k, t.mr, &mut out)?;
        }
        pa = Some(out);
    }
    let mut pb = None;
    if let Some(c) = get(b)? {
        let mut out = Vec::new();
        for bi in 0..copies(b) {
            let off = b.offset as i128 + bi as i128 * b.strides[0] as i128;
            pack_b(c, off, b.strides[1], b.strides[2], k, n, t.nr(), &mut out)?;
        }
        pb = Some(out);
    }
    Ok([pa, pb])
}

/// Operands of a [`edgecc_program::Kernel::Gemm`] as seen by the emitter.
pub(crate) struct GemmKernel<'a> {
    pub batch: u32,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a: &'a View,
    pub b: &'a View,
    pub alpha: f32,
    pub bias: Option<&'a View>,
    pub residual: Option<&'a View>,
    pub act: Activation,
    pub c: &'a View,
    /// Data indices of the packed A and B (see [`prepare`]).
    pub packed: [Option<usize>; 2],
}

fn check_view(v: &View, what: &str) -> Result<(), Error> {
    if v.strides.len() != 3 {
        return Err(unsupported(format!(
            "gemm {what} view needs 3 strides, has {}",
            v.strides.len()
        )));
    }
    Ok(())
}

/// Emits a whole Gemm kernel: the batch loop around [`emit_2d`].
pub(crate) fn emit(fx: &mut Fx, t: Tile, g: &GemmKernel) -> Result<(), Error> {
    for (v, what) in [(g.a, "a"), (g.b, "b"), (g.c, "c")] {
        check_view(v, what)?;
    }
    if let Some(b) = g.bias {
        check_view(b, "bias")?;
    }
    if let Some(r) = g.residual {
        check_view(r, "residual")?;
    }
    let (m, n, k) = (g.m as u64, g.n as u64, g.k as u64);
    let t = t.for_gemm(m, g.a, g.packed[0].is_some());
    // A: packed `[block][k][mr]`, or the view itself.
    let (a0, a_bs, a) = match g.packed[0] {
        Some(d) => {
            let base = fx.data_addr(d);
            let size = (m.div_ceil(t.mr) * t.mr * k * 4) as i64;
            let bs = if g.a.strides[0] == 0 { 0 } else { size };
            (
                base,
                bs,
                (4, t.mr as i64 * 4, k as i64 * t.mr as i64 * 4, true),
            )
        }
        None => {
            let base = fx.buf(g.a.buf);
            let base = fx.addp(base, bytes_of(g.a.offset as i64)?);
            let rs = bytes_of(g.a.strides[1])?;
            (
                base,
                bytes_of(g.a.strides[0])?,
                (rs, bytes_of(g.a.strides[2])?, rs * t.mr as i64, true),
            )
        }
    };
    let (b0, b_bs, b) = match g.packed[1] {
        Some(d) => {
            let base = fx.data_addr(d);
            let size = (n.div_ceil(t.nr()) * t.nr() * k * 4) as i64;
            let bs = if g.b.strides[0] == 0 { 0 } else { size };
            (
                base,
                bs,
                (t.nr() as i64 * 4, 4, k as i64 * t.nr() as i64 * 4, true),
            )
        }
        None => {
            let base = fx.buf(g.b.buf);
            let base = fx.addp(base, bytes_of(g.b.offset as i64)?);
            let cs = bytes_of(g.b.strides[2])?;
            (
                base,
                bytes_of(g.b.strides[0])?,
                (bytes_of(g.b.strides[1])?, cs, cs * t.nr() as i64, true),
            )
        }
    };
    let c0 = fx.buf(g.c.buf);
    let c0 = fx.addp(c0, bytes_of(g.c.offset as i64)?);
    let mut extra0 = |v: Option<&View>| -> Result<_, Error> {
        Ok(match v {
            Some(v) => {
                let p = fx.buf(v.buf);
                Some((
                    fx.addp(p, bytes_of(v.offset as i64)?),
                    bytes_of(v.strides[0])?,
                    bytes_of(v.strides[1])?,
                    bytes_of(v.strides[2])?,
                ))
            }
            None => None,
        })
    };
    let bias0 = extra0(g.bias)?;
    let res0 = extra0(g.residual)?;
    let c_bs = bytes_of(g.c.strides[0])?;
    let (c_rs, c_cs) = (bytes_of(g.c.strides[1])?, bytes_of(g.c.strides[2])?);
    fx.for_n(g.batch as u64, &[], |fx, bi, _| {
        let mat = |fx: &mut Fx,
                   base: Value,
                   bs: i64,
                   (rs, cs, block, readonly): (i64, i64, i64, bool)| Mat {
            base: fx.addp_scaled(base, bi, bs),
            rs,
            cs,
            block,
            readonly,
        };
        let a = mat(fx, a0, a_bs, a);
        let b = mat(fx, b0, b_bs, b);
        let c = mat(fx, c0, c_bs, (c_rs, c_cs, 0, false));
        let bias = bias0.map(|(p, bs, rs, cs)| mat(fx, p, bs, (rs, cs, 0, true)));
        let residual = res0.map(|(p, bs, rs, cs)| mat(fx, p, bs, (rs, cs, 0, true)));
        emit_2d(
            fx,
            t,
            &Gemm2d {
                m,
                n,
                k,
                a,
                b,
                c,
                bias,
                residual,
                alpha: g.alpha,
                act: g.act,
                unroll: t.unroll,
            },
        );
        vec![]
    });
    Ok(())
}
