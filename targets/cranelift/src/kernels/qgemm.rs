//! Integer GEMM (`Kernel::QGemm`): int8 × int8 products accumulated in int32, then the
//! int32 accumulators stored as they are or requantized with the fixed-point
//! [`Requant`] in the epilogue. No float math. The pieces shared with the convolution
//! kernels (the dot-product tree, `pmaddwd`, the per-channel tables, requantization and
//! stores) live here too.
//!
//! Orientation: the rows of the problem are the activations (`A[row, k]`, K contiguous,
//! read in place) and the columns the constant weights (`B[k, col]`), packed at compile
//! time. The requantization channel is the column.
//!
//! The inner step works on groups of 4 K values. Each row contributes one 32-bit word (its
//! 4 bytes of the group) and the packed B holds, per group, vectors of 4 columns × 4 K
//! bytes. The product is written as the exact widening tree
//! `iadd(iadd_pairwise(iadd_pairwise(saddlp(smull lo)), ...), acc)` that Cranelift's
//! aarch64 backend turns into one `sdot` when `has_dotprod` is set (the word is splatted
//! to the 4 lanes), and into `smull`/`smull2`/`saddlp`/`addp`/`add` (6 instructions per
//! 16 products) without it. A row is read 16 bytes (4 groups) at a time, flipped once, and
//! its words splatted by lane (`dup v.4s, v.s[l]`). On x86_64 (SSE4.2, no VNNI) the tree
//! would be 18 instructions, so there each B vector is packed as two halves of 4 columns
//! × 2 K and loaded sign-extended to `i16x8` (`pmovsxbw`), the row's words are widened
//! and split into K pairs (`pshufd`), and each half is one `pmaddwd` plus a `paddd`.
//! Never `pmaddubsw` (it saturates).
//!
//! Activations: `U8` values are flipped to signed with `xor 0x80` (`x − 128`), so one
//! signed path serves both dtypes; the zero point and the flip fold into the
//! accumulator's start, `acc0[col] = bias[col] + (flip − a_zero) · Σ_k B[k, col]`,
//! computed at compile time for a constant zero point and once per column vector for a
//! runtime one. All of it is exact modulo 2^32, like the definition.
//!
//! Tiles are `mr` rows × `nv` vectors of 4 columns (8×2 with `sdot`, 4×4 for the aarch64
//! tree, 4×2 on x86_64); row tails take a narrower tile, the last column block computes
//! whole vectors from zero-padded weights and stores only its valid lanes, and a K that
//! is not a multiple of 4 ends with one step whose words are assembled from single bytes
//! (the padded weights are 0, so the filler bytes contribute nothing), so nothing is read
//! outside A.
//!
//! Requantization per output vector, exactly as [`Requant::apply`]: `i32 × i32 → i64`
//! widening multiplies (`smull`/`pmuldq`), `+ 2^(shift−1)`, arithmetic shift, clamp to
//! `[lo − zp, hi − zp]` (so the value fits 32 bits), `+ zp`, then saturating narrows to
//! bytes (exact: the value is in range) and one 32-bit store per 4 outputs when the
//! column stride is 1, lane stores otherwise.

use cranelift_codegen::ir::{InstBuilder, Value, types};
use edgecc_program::{DType, QuantOut, Requant};

use crate::error::{Error, unsupported};
use crate::fx::{Features, Fx};

/// Register tile: `mr` rows × `nv` vectors of 4 columns.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QTile {
    pub mr: u64,
    pub nv: u64,
    /// x86_64 `pmaddwd` layout (B halves of 4 columns × 2 K) instead of the dot tree.
    pub pairs: bool,
    /// The dot tree is one `sdot` (aarch64 with `has_dotprod`).
    pub sdot: bool,
}

impl QTile {
    pub fn for_target(feat: Features) -> QTile {
        if feat.aarch64 && feat.dotprod {
            // The e-graph elaborates each accumulator's chain through the 4 K groups of
            // an iteration depth-first, so all 4·nv B vectors of the iteration are live
            // with the accumulators, the row's 16 A bytes and its 4 lane splats: 16 + 8
            // + 5 + the flip mask fit 32 registers. Guest instructions for 64×256×256
            // (Cortex-A76): 8×2 606 k, 4×4 682 k, 8×3 702 k (spills), 12×2 720 k.
            QTile {
                mr: 8,
                nv: 2,
                pairs: false,
                sdot: true,
            }
        } else if feat.aarch64 {
            // The tree needs ~4 temporaries per product vector.
            QTile {
                mr: 4,
                nv: 4,
                pairs: false,
                sdot: false,
            }
        } else {
            // 8 accumulators + 4 B halves + 2 A pairs of 16 xmm.
            QTile {
                mr: 4,
                nv: 2,
                pairs: true,
                sdot: false,
            }
        }
    }
    pub fn nr(self) -> u64 {
        4 * self.nv
    }
}

/// Packs `B[k, col]` (`get(kk, col)`, `k × n`) for tile `t`:
/// `[column block][k group][vector][16 bytes]`, zero padded in K and columns; the last
/// block holds only the vectors its columns need (at most 3 padding columns).
pub(crate) fn pack_b(t: QTile, k: u64, n: u64, get: impl Fn(u64, u64) -> i8, out: &mut Vec<u8>) {
    let (nb, k4) = (n.div_ceil(t.nr()), k.div_ceil(4));
    let at = |kk: u64, col: u64| -> u8 {
        if kk < k && col < n {
            get(kk, col) as u8
        } else {
            0
        }
    };
    for jb in 0..nb {
        let nv = t.nv.min((n - jb * t.nr()).div_ceil(4));
        for kg in 0..k4 {
            for v in 0..nv {
                let col0 = jb * t.nr() + 4 * v;
                if t.pairs {
                    for h in 0..2 {
                        for c in 0..4 {
                            for u in 0..2 {
                                out.push(at(4 * kg + 2 * h + u, col0 + c));
                            }
                        }
                    }
                } else {
                    for c in 0..4 {
                        for u in 0..4 {
                            out.push(at(4 * kg + u, col0 + c));
                        }
                    }
                }
            }
        }
    }
}

/// Columns of the per-column tables of one problem (a whole number of column blocks).
pub(crate) fn padded_n(t: QTile, n: u64) -> u64 {
    n.div_ceil(t.nr()) * t.nr()
}

/// Which regions of `np` i32s (`np >= n`, the padded column count the kernel walks) the
/// per-column tables of one problem hold ([`tables`]), in this order: always the
/// accumulator start; the column sums of B only for a runtime zero point; the
/// requantization multipliers only for a requantized output; the low and high
/// accumulator clamps of [`acc_bounds`] only for x86_64's clamp-first epilogue. Regions
/// nobody reads are left out: with int8 weights of small K they would otherwise weigh
/// nearly as much as the weights.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tables {
    np: u64,
    colsum: bool,
    mult: bool,
    bounds: bool,
}

impl Tables {
    /// The layout for `np` padded columns, a runtime or constant zero point, output
    /// `out`, on x86_64 (`pairs` tiles) or aarch64.
    pub fn new(np: u64, runtime_zero: bool, out: &QuantOut, pairs: bool) -> Tables {
        let (mult, bounds) = match out {
            QuantOut::Requant(rq) => (true, pairs && clamp_first(rq)),
            QuantOut::I32 => (false, false),
        };
        Tables {
            np,
            colsum: runtime_zero,
            mult,
            bounds,
        }
    }
    /// Bytes of one region, the distance [`mult_at`] takes between multipliers and
    /// bounds.
    pub fn region(self) -> i64 {
        4 * self.np as i64
    }
    /// Offset of the column sums.
    pub fn colsum_off(self) -> i64 {
        self.region()
    }
    /// Offset of the multipliers.
    pub fn mult_off(self) -> i64 {
        self.region() * (1 + i64::from(self.colsum))
    }
    /// Bytes of the whole table, slack included.
    pub fn bytes(self) -> u64 {
        let regions =
            1 + u64::from(self.colsum) + u64::from(self.mult) + 2 * u64::from(self.bounds);
        4 * self.np * regions + 16
    }
}

/// The per-column tables of one problem in layout `lay` (see [`Tables`]): the
/// accumulator start (`bias + (flip − zero) · colsum` for a constant zero point, else the
/// bias), the column sums of B, the requantization multipliers, the low and high
/// accumulator clamps, then 4 zeros of slack.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tables(
    lay: Tables,
    k: u64,
    n: u64,
    get: impl Fn(u64, u64) -> i8,
    bias: impl Fn(u64) -> i32,
    start_offset: Option<i32>,
    out: &QuantOut,
    chan0: u64,
    dst: &mut Vec<u8>,
) {
    let colsum = |col: u64| -> i32 {
        if col >= n {
            return 0;
        }
        (0..k).map(|kk| get(kk, col) as i32).sum()
    };
    let np = lay.np;
    let start = dst.len();
    let mut push = |v: i32| dst.extend(v.to_le_bytes());
    for col in 0..np {
        let b = if col < n { bias(col) } else { 0 };
        push(match start_offset {
            Some(off) => b.wrapping_add(off.wrapping_mul(colsum(col))),
            None => b,
        });
    }
    if lay.colsum {
        for col in 0..np {
            push(colsum(col));
        }
    }
    let mult = |col: u64| match out {
        QuantOut::Requant(r) if col < n => {
            if r.multiplier.len() == 1 {
                r.multiplier[0]
            } else {
                r.multiplier[(chan0 + col) as usize]
            }
        }
        _ => 0,
    };
    if lay.mult {
        for col in 0..np {
            push(mult(col));
        }
    }
    // The accumulator clamp of the x86_64 requantization (see [`acc_bounds`]).
    for side in 0..2 * usize::from(lay.bounds) {
        for col in 0..np {
            push(match out {
                QuantOut::Requant(r) => {
                    let (lo, hi) = acc_bounds(r, mult(col)).0;
                    if side == 0 { lo } else { hi }
                }
                QuantOut::I32 => 0,
            });
        }
    }
    // Slack, so that a 16-byte load at any multiplier stays inside the table.
    for _ in 0..4 {
        push(0);
    }
    debug_assert_eq!((dst.len() - start) as u64, lay.bytes());
}

/// Accumulator bounds `[a_lo, a_hi]` that leave the requantized value unchanged
/// (`a_lo` the largest accumulator whose result clamps to `lo`, `a_hi` the smallest
/// that clamps to `hi`, or the i32 ends), and whether the unclamped `(acc·m +
/// 2^(s−1)) >> s` of every accumulator between them fits an i32. When it does, the
/// x86_64 epilogue clamps the accumulator first and then needs neither an i64
/// arithmetic shift nor an i64 clamp, both several instructions without AVX-512.
pub(crate) fn acc_bounds(rq: &Requant, m: i32) -> ((i32, i32), bool) {
    let r = |a: i64| (a * m as i64 + (1i64 << (rq.shift - 1))) >> rq.shift;
    let (lo, hi) = (
        rq.lo as i64 - rq.zero_point as i64,
        rq.hi as i64 - rq.zero_point as i64,
    );
    let (min, max) = (i32::MIN as i64, i32::MAX as i64);
    // r is non-decreasing (m >= 0): binary searches.
    let a_lo = if r(min) > lo {
        min
    } else {
        let (mut a, mut b) = (min, max);
        while a < b {
            let mid = a + (b - a + 1) / 2;
            if r(mid) <= lo { a = mid } else { b = mid - 1 }
        }
        a
    };
    let a_hi = if r(max) < hi {
        max
    } else {
        let (mut a, mut b) = (min, max);
        while a < b {
            let mid = a + (b - a) / 2;
            if r(mid) >= hi { b = mid } else { a = mid + 1 }
        }
        a
    };
    let fits = |v: i64| (min..=max).contains(&v);
    ((a_lo as i32, a_hi as i32), fits(r(a_lo)) && fits(r(a_hi)))
}

/// Whether every channel of `rq` takes the clamp-first epilogue (see [`acc_bounds`]).
pub(crate) fn clamp_first(rq: &Requant) -> bool {
    rq.multiplier.iter().all(|&m| acc_bounds(rq, m).1)
}

/// The lanes' requantization operands: multipliers and, for the clamp-first x86_64
/// epilogue, the accumulator bounds.
#[derive(Clone, Copy)]
pub(crate) struct Mult {
    pub m: Value,
    pub bounds: Option<(Value, Value)>,
}

/// Reads [`Mult`] from a table whose multiplier, low-bound and high-bound regions are
/// `region` bytes apart, at `p + off` (the multiplier): 4 lanes, or (`splat`) one
/// channel's values in every lane.
pub(crate) fn mult_at(
    fx: &mut Fx,
    rq: &Requant,
    p: Value,
    off: i64,
    region: i64,
    splat: bool,
) -> Mult {
    let read = |fx: &mut Fx, off: i64| {
        if splat {
            let v = fx.load(types::I8X16, p, off, true);
            let v = splat_lane32(fx, v, 0);
            fx.bitcast(types::I32X4, v)
        } else {
            fx.load(types::I32X4, p, off, true)
        }
    };
    let m = read(fx, off);
    let bounds = (!fx.feat.aarch64 && clamp_first(rq))
        .then(|| (read(fx, off + region), read(fx, off + 2 * region)));
    Mult { m, bounds }
}

/// `128` for `U8` activations (flipped to signed), `0` for `I8`.
pub(crate) fn flip_of(dtype: DType) -> i32 {
    if dtype == DType::U8 { 128 } else { 0 }
}

/// Checks requantization parameters against the contract.
pub(crate) fn check_out(out: &QuantOut, channels: u64) -> Result<(), Error> {
    let QuantOut::Requant(r) = out else {
        return Ok(());
    };
    let (min, max) = match r.dtype {
        DType::U8 => (0, 255),
        DType::I8 => (-128, 127),
        d => {
            return Err(unsupported(format!(
                "requantization to {} (U8 or I8 only)",
                d.name()
            )));
        }
    };
    if !(1..=62).contains(&r.shift) {
        return Err(unsupported(format!(
            "requantization shift {} is outside 1..=62",
            r.shift
        )));
    }
    if !(r.multiplier.len() == 1 || r.multiplier.len() as u64 == channels) {
        return Err(unsupported(format!(
            "{} requantization multipliers for {channels} channels",
            r.multiplier.len()
        )));
    }
    if r.multiplier.iter().any(|&m| m < 0) {
        return Err(unsupported("negative requantization multiplier"));
    }
    if !(min <= r.lo && r.lo <= r.hi && r.hi <= max) {
        return Err(unsupported(format!(
            "requantization clamp [{}, {}] is not within {}",
            r.lo,
            r.hi,
            r.dtype.name()
        )));
    }
    Ok(())
}

/// One 2-D problem as the emitter sees it (all strides in bytes).
pub(crate) struct QGemm2d<'a> {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    /// `A[row, k]` at `a + row·a_rs + k`: K contiguous. Each row is read 16 bytes (4
    /// K groups) at a time and its words taken by lane.
    pub a: Value,
    pub a_rs: i64,
    /// A is never written while the kernel runs (loads may move).
    pub a_readonly: bool,
    /// Flip A's bytes with `xor 0x80` (`U8` activations).
    pub flip: bool,
    /// Packed B ([`pack_b`]) and tables ([`tables`]) of this problem.
    pub b: Value,
    pub tab: Value,
    /// `flip − zero point` as an `i32`, when the zero point is only known at run time
    /// (the tables then hold the bias, not the accumulator start).
    pub offset: Option<Value>,
    /// `C[row, col]` at `c + row·c_rs + col·c_cs`.
    pub c: Value,
    pub c_rs: i64,
    pub c_cs: i64,
    pub out: &'a QuantOut,
}

/// Emits one problem with tile `t`.
pub(crate) fn emit_2d(fx: &mut Fx, t: QTile, g: &QGemm2d) {
    let mr = t.mr.min(g.m).max(1);
    let (mb, mt) = (g.m / mr, g.m % mr);
    let nr = t.nr();
    let (nb, rem) = (g.n / nr, g.n % nr);
    let blk = (g.k.div_ceil(4) * t.nv * 16) as i64;
    for (count, rows, tail) in [(mb, mr, false), (u64::from(mt > 0), mt, true)] {
        fx.for_n(count, &[], |fx, i, _| {
            let r0 = if tail {
                fx.iconst((mb * mr) as i64)
            } else {
                fx.b.ins().imul_imm_s(i, mr as i64)
            };
            let a = fx.addp_scaled(g.a, r0, g.a_rs);
            let c = fx.addp_scaled(g.c, r0, g.c_rs);
            fx.for_n(nb, &[], |fx, j, _| {
                let b = fx.addp_scaled(g.b, j, blk);
                let tab = fx.addp_scaled(g.tab, j, nr as i64 * 4);
                let c = fx.addp_scaled(c, j, nr as i64 * g.c_cs);
                micro(fx, t, g, rows, t.nv, 4, a, b, tab, c);
                vec![]
            });
            if rem > 0 {
                let nv = rem.div_ceil(4);
                let last = rem - 4 * (nv - 1);
                let b = fx.addp(g.b, nb as i64 * blk);
                let tab = fx.addp(g.tab, (nb * nr * 4) as i64);
                let c = fx.addp(c, (nb * nr) as i64 * g.c_cs);
                micro(fx, t, g, rows, nv, last, a, b, tab, c);
            }
            vec![]
        });
    }
}

/// The widening dot-product tree: lane `j` of the result is `c[j] + Σ_{u<4} a[4j+u] ·
/// b[4j+u]` (i8 × i8 in i32), in the exact shape the aarch64 backend matches to `sdot`.
pub(crate) fn dot_tree(fx: &mut Fx, a: Value, b: Value, c: Value) -> Value {
    let ins = &mut fx.b;
    let (al, bl) = (ins.ins().swiden_low(a), ins.ins().swiden_low(b));
    let lo = ins.ins().imul(al, bl);
    let (ah, bh) = (ins.ins().swiden_high(a), ins.ins().swiden_high(b));
    let hi = ins.ins().imul(ah, bh);
    let (l0, l1) = (ins.ins().swiden_low(lo), ins.ins().swiden_high(lo));
    let pl = ins.ins().iadd_pairwise(l0, l1);
    let (h0, h1) = (ins.ins().swiden_low(hi), ins.ins().swiden_high(hi));
    let ph = ins.ins().iadd_pairwise(h0, h1);
    let d = ins.ins().iadd_pairwise(pl, ph);
    ins.ins().iadd(d, c)
}

/// `pmaddwd`: `[x0·y0 + x1·y1, ...]` of two `i16x8` as `i32x4`.
pub(crate) fn pmaddwd(fx: &mut Fx, x: Value, y: Value) -> Value {
    let ins = &mut fx.b;
    let (xl, yl) = (ins.ins().swiden_low(x), ins.ins().swiden_low(y));
    let lo = ins.ins().imul(xl, yl);
    let (xh, yh) = (ins.ins().swiden_high(x), ins.ins().swiden_high(y));
    let hi = ins.ins().imul(xh, yh);
    ins.ins().iadd_pairwise(lo, hi)
}

/// Broadcasts 32-bit lane `l` of `v` (an `i8x16`) to all four lanes.
pub(crate) fn splat_lane32(fx: &mut Fx, v: Value, l: u8) -> Value {
    let mask: Vec<u8> = (0..16).map(|i| l * 4 + i % 4).collect();
    let imm = fx.b.func.dfg.immediates.push(mask.into());
    fx.b.ins().shuffle(v, v, imm)
}

/// What one row contributes to a K group's products.
#[derive(Clone, Copy)]
pub(crate) enum RowOp {
    /// The row's 4 bytes in every 32-bit lane (`i8x16`).
    Dot(Value),
    /// The row's K pairs `(k0, k1)` and `(k2, k3)`, each in every 32-bit lane (`i16x8`).
    Pairs(Value, Value),
}

/// The operand of the row whose word is 32-bit lane `lane` of `w` (an `i8x16`).
fn row_op(fx: &mut Fx, t: QTile, w: Value, lane: u8) -> RowOp {
    if !t.pairs {
        return RowOp::Dot(splat_lane32(fx, w, lane));
    }
    let wide = if lane < 2 {
        fx.b.ins().swiden_low(w)
    } else {
        fx.b.ins().swiden_high(w)
    };
    let wide = fx.bitcast(types::I8X16, wide);
    let [p01, p23] = [0u8, 1].map(|h| {
        let p = splat_lane32(fx, wide, 2 * (lane % 2) + h);
        fx.bitcast(types::I16X8, p)
    });
    RowOp::Pairs(p01, p23)
}

/// The operand of a row whose word is the scalar `w` (an `i32`).
fn word_op(fx: &mut Fx, t: QTile, w: Value) -> RowOp {
    if !t.pairs {
        let s = fx.b.ins().splat(types::I32X4, w);
        return RowOp::Dot(fx.bitcast(types::I8X16, s));
    }
    let v = fx.b.ins().scalar_to_vector(types::I32X4, w);
    let v = fx.bitcast(types::I8X16, v);
    row_op(fx, t, v, 0)
}

/// One K group: `ops[r]` is row `r`'s operand, `bp` the group's packed B.
fn step(fx: &mut Fx, t: QTile, nv: u64, ops: &[RowOp], bp: Value, acc: &mut [Value]) {
    let nvu = nv as usize;
    if t.pairs {
        let halves: Vec<[Value; 2]> = (0..nv as i64)
            .map(|v| {
                [
                    fx.sload8x8(bp, 16 * v, true),
                    fx.sload8x8(bp, 16 * v + 8, true),
                ]
            })
            .collect();
        for (r, op) in ops.iter().enumerate() {
            let RowOp::Pairs(p01, p23) = *op else {
                unreachable!("pairs tile with a dot operand")
            };
            for v in 0..nvu {
                let a = &mut acc[r * nvu + v];
                for (h, p) in [p01, p23].into_iter().enumerate() {
                    let d = pmaddwd(fx, halves[v][h], p);
                    *a = fx.b.ins().iadd(*a, d);
                }
            }
        }
    } else {
        let bv: Vec<Value> = (0..nv as i64)
            .map(|v| fx.load(types::I8X16, bp, 16 * v, true))
            .collect();
        for (r, op) in ops.iter().enumerate() {
            let RowOp::Dot(s) = *op else {
                unreachable!("dot tile with a pairs operand")
            };
            for (v, &b) in bv.iter().enumerate() {
                let a = &mut acc[r * nvu + v];
                *a = dot_tree(fx, s, b, *a);
            }
        }
    }
}

/// `xor 0x80` on every byte of `v` when `flip`.
pub(crate) fn flip_vec(fx: &mut Fx, flip: bool, v: Value) -> Value {
    if !flip {
        return v;
    }
    let m = fx.vconst_bytes(types::I8X16, vec![0x80; 16]);
    fx.b.ins().bxor(v, m)
}

/// Shuffles `a` and `b` (both `i8x16`) by `mask`.
pub(crate) fn shuffle(fx: &mut Fx, a: Value, b: Value, mask: [u8; 16]) -> Value {
    let imm = fx.b.func.dfg.immediates.push(mask.to_vec().into());
    fx.b.ins().shuffle(a, b, imm)
}

/// The microkernel: `rows × (4·nv)` outputs at `c` (of which the last vector stores
/// `last` lanes), from A rows at `a`, the column block's packed B at `b` and tables at
/// `tab`.
#[allow(clippy::too_many_arguments)]
fn micro(
    fx: &mut Fx,
    t: QTile,
    g: &QGemm2d,
    rows: u64,
    nv: u64,
    last: u64,
    a: Value,
    b: Value,
    tab: Value,
    c: Value,
) {
    let lay = Tables::new(padded_n(t, g.n), g.offset.is_some(), g.out, t.pairs);
    let starts: Vec<Value> = (0..nv as i64)
        .map(|v| {
            let b0 = fx.load(types::I32X4, tab, 16 * v, true);
            match g.offset {
                None => b0,
                Some(off) => {
                    let cs = fx.load(types::I32X4, tab, lay.colsum_off() + 16 * v, true);
                    let o = fx.b.ins().splat(types::I32X4, off);
                    let p = fx.b.ins().imul(o, cs);
                    fx.b.ins().iadd(b0, p)
                }
            }
        })
        .collect();
    let nacc = (rows * nv) as usize;
    let mut carried: Vec<Value> = (0..nacc).map(|i| starts[i % nv as usize]).collect();
    carried.extend([a, b]);
    // A block's K groups are `nv` vectors (the last block may be narrower).
    let kstep = (nv * 16) as i64;
    let ro = g.a_readonly;
    let flip_word = |fx: &mut Fx, w: Value| -> Value {
        if g.flip {
            let m = fx.b.ins().iconst(types::I32, 0x8080_8080);
            fx.b.ins().bxor(w, m)
        } else {
            w
        }
    };
    // The word of row `r` assembled from the `kt < 4` bytes at `p + off` (a K tail).
    let tail_word = |fx: &mut Fx, p: Value, off: i64, kt: u64| -> Value {
        let mut w = fx.load8(false, p, off, ro);
        for u in 1..kt as i64 {
            let x = fx.load8(false, p, off + u, ro);
            let x = fx.b.ins().ishl_imm_s(x, 8 * u);
            w = fx.b.ins().bor(w, x);
        }
        w
    };
    let (kg_full, kt) = (g.k / 4, g.k % 4);
    let rs = g.a_rs;
    // 16 bytes (4 groups) of every row per iteration.
    let out = fx.repeat_n(g.k / 16, &carried, |fx, cv| {
        let (ap, bp) = (cv[nacc], cv[nacc + 1]);
        let wv: Vec<Value> = (0..rows as i64)
            .map(|r| {
                let v = fx.load(types::I8X16, ap, r * rs, ro);
                flip_vec(fx, g.flip, v)
            })
            .collect();
        let mut acc = cv[..nacc].to_vec();
        for u in 0..4u8 {
            let ops: Vec<RowOp> = wv.iter().map(|&w| row_op(fx, t, w, u)).collect();
            let bu = fx.addp(bp, u as i64 * kstep);
            step(fx, t, nv, &ops, bu, &mut acc);
        }
        acc.push(fx.addp(ap, 16));
        acc.push(fx.addp(bp, 4 * kstep));
        acc
    });
    let mut acc = out[..nacc].to_vec();
    let (ap, bp) = (out[nacc], out[nacc + 1]);
    for gi in 0..(kg_full % 4) as i64 {
        let ops: Vec<RowOp> = (0..rows as i64)
            .map(|r| {
                let w = fx.load(types::I32, ap, r * rs + 4 * gi, ro);
                let w = flip_word(fx, w);
                word_op(fx, t, w)
            })
            .collect();
        let bu = fx.addp(bp, gi * kstep);
        step(fx, t, nv, &ops, bu, &mut acc);
    }
    if kt > 0 {
        let gi = (kg_full % 4) as i64;
        let ops: Vec<RowOp> = (0..rows as i64)
            .map(|r| {
                let w = tail_word(fx, ap, r * rs + 4 * gi, kt);
                let w = flip_word(fx, w);
                word_op(fx, t, w)
            })
            .collect();
        let bu = fx.addp(bp, gi * kstep);
        step(fx, t, nv, &ops, bu, &mut acc);
    }
    // Multipliers are loaded even when there is one: `swiden_low` of a constant or a
    // splat is folded into an `i64x2` constant, and the widening multiply then loses its
    // one-instruction form (`smull`, `pmuldq`).
    let mults: Vec<Mult> = match g.out {
        QuantOut::Requant(rq) => (0..nv as i64)
            .map(|v| mult_at(fx, rq, tab, lay.mult_off() + 16 * v, lay.region(), false))
            .collect(),
        QuantOut::I32 => Vec::new(),
    };
    for r in 0..rows as i64 {
        let row_off = r * g.c_rs;
        for v in 0..nv {
            let x = acc[r as usize * nv as usize + v as usize];
            let lanes = if v + 1 == nv { last } else { 4 };
            let off = row_off + 4 * v as i64 * g.c_cs;
            match g.out {
                QuantOut::I32 => store_lanes(fx, x, DType::I32, c, off, g.c_cs, lanes),
                QuantOut::Requant(rq) => {
                    let y = requant(fx, rq, x, mults[v as usize]);
                    store_lanes(fx, y, rq.dtype, c, off, g.c_cs, lanes);
                }
            }
        }
    }
}

/// `Requant::apply` on four lanes: `clamp(zp + ((x·m + 2^(s−1)) >> s), lo, hi)`, exact.
/// `m.m`: the lanes' multipliers (an `i32x4` that is not a constant or a splat: the
/// optimizer would fold the widening of one into an `i64x2` constant and the multiply
/// would lose its one-instruction form, `smull`/`pmuldq`).
pub(crate) fn requant(fx: &mut Fx, rq: &Requant, x: Value, m: Mult) -> Value {
    let sh = fx.b.ins().iconst(types::I32, rq.shift as i64);
    let (lo, hi) = (
        rq.lo as i64 - rq.zero_point as i64,
        rq.hi as i64 - rq.zero_point as i64,
    );
    let lo32 = fx.i32x4_const([lo as i32; 4]);
    let hi32 = fx.i32x4_const([hi as i32; 4]);
    let products = |fx: &mut Fx, x: Value| {
        [false, true].map(|high| {
            let ins = &mut fx.b;
            let (xw, mw) = if high {
                (ins.ins().swiden_high(x), ins.ins().swiden_high(m.m))
            } else {
                (ins.ins().swiden_low(x), ins.ins().swiden_low(m.m))
            };
            ins.ins().imul(xw, mw)
        })
    };
    const LOW_HALVES: [u8; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
    let y = if let Some((a_lo, a_hi)) = m.bounds {
        // x86_64, clamp first (see `acc_bounds`): the result fits 32 bits, so a logical
        // shift of the value biased by 2^63 and the low halves give it modulo 2^32:
        // `r = ((p + 2^63) >> s) − 2^(63−s)`.
        let x = fx.b.ins().smax(x, a_lo);
        let x = fx.b.ins().smin(x, a_hi);
        let bias = fx.i64x2_const((1i64 << (rq.shift - 1)).wrapping_add(i64::MIN));
        let [l, h] = products(fx, x).map(|p| {
            let p = fx.b.ins().iadd(p, bias);
            let p = fx.b.ins().ushr(p, sh);
            fx.bitcast(types::I8X16, p)
        });
        let y = shuffle(fx, l, h, LOW_HALVES);
        let y = fx.bitcast(types::I32X4, y);
        let c = ((1u64 << (63 - rq.shift)) as u32) as i32;
        let c = fx.i32x4_const([c; 4]);
        let y = fx.b.ins().isub(y, c);
        let y = fx.b.ins().smax(y, lo32);
        fx.b.ins().smin(y, hi32)
    } else {
        let rnd = fx.i64x2_const(1i64 << (rq.shift - 1));
        // aarch64 narrows the shifted i64 lanes with saturation (`sqxtn`), which
        // commutes with the clamp because `[lo − zp, hi − zp]` lies inside i32, and
        // clamps in i32. x86_64 without the clamp-first bounds clamps the i64 lanes and
        // picks their low halves.
        let narrow_first = fx.feat.aarch64;
        let (lo64, hi64) = (fx.i64x2_const(lo), fx.i64x2_const(hi));
        let [l, h] = products(fx, x).map(|p| {
            let p = fx.b.ins().iadd(p, rnd);
            let mut p = fx.b.ins().sshr(p, sh);
            if !narrow_first {
                p = fx.b.ins().smax(p, lo64);
                p = fx.b.ins().smin(p, hi64);
            }
            p
        });
        if narrow_first {
            let y = fx.b.ins().snarrow(l, h);
            let y = fx.b.ins().smax(y, lo32);
            fx.b.ins().smin(y, hi32)
        } else {
            let (l, h) = (fx.bitcast(types::I8X16, l), fx.bitcast(types::I8X16, h));
            let y = shuffle(fx, l, h, LOW_HALVES);
            fx.bitcast(types::I32X4, y)
        }
    };
    if rq.zero_point == 0 {
        return y;
    }
    let zp = fx.i32x4_const([rq.zero_point; 4]);
    fx.b.ins().iadd(y, zp)
}

/// Stores the first `lanes` lanes of the `i32x4` `x` (values already in `dtype`'s range)
/// as `dtype` elements at `c + off + l·cs` (bytes).
pub(crate) fn store_lanes(
    fx: &mut Fx,
    x: Value,
    dtype: DType,
    c: Value,
    off: i64,
    cs: i64,
    lanes: u64,
) {
    let size = dtype.size() as i64;
    if dtype == DType::I32 {
        if cs == 4 && lanes == 4 {
            fx.store(x, c, off);
            return;
        }
        for l in 0..lanes as u8 {
            let e = fx.b.ins().extractlane(x, l);
            fx.store(e, c, off + l as i64 * cs);
        }
        return;
    }
    debug_assert_eq!(size, 1);
    if cs == 1 && lanes == 4 {
        let h = fx.b.ins().snarrow(x, x);
        let bytes = if dtype == DType::U8 {
            fx.b.ins().unarrow(h, h)
        } else {
            fx.b.ins().snarrow(h, h)
        };
        let w = fx.bitcast(types::I32X4, bytes);
        let w = fx.b.ins().extractlane(w, 0);
        fx.store(w, c, off);
        return;
    }
    for l in 0..lanes as u8 {
        let e = fx.b.ins().extractlane(x, l);
        fx.store8(e, c, off + l as i64 * cs);
    }
}

/// A constant's bytes, or an error naming what is missing or too small.
pub(crate) fn const_bytes<'c>(
    consts: &'c [edgecc_program::Const],
    id: edgecc_program::ConstId,
    need: u64,
    what: &str,
) -> Result<&'c [u8], Error> {
    let c = consts
        .get(id.0 as usize)
        .ok_or_else(|| unsupported(format!("{what} constant {} is missing", id.0)))?;
    if (c.data.len() as u64) < need {
        return Err(unsupported(format!(
            "{what} `{}` has {} bytes, needs {need}",
            c.name,
            c.data.len()
        )));
    }
    Ok(&c.data)
}

/// Reads little-endian i32 `i` of `bytes`.
pub(crate) fn i32_at(bytes: &[u8], i: u64) -> i32 {
    let i = i as usize * 4;
    i32::from_le_bytes(bytes[i..i + 4].try_into().unwrap())
}

/// The accumulator-start offset `flip − zero` known at compile time, if it is.
pub(crate) fn const_offset(dtype: DType, z: edgecc_program::ZeroPoint) -> Option<i32> {
    match z {
        edgecc_program::ZeroPoint::Const(v) => Some(flip_of(dtype).wrapping_sub(v)),
        edgecc_program::ZeroPoint::Runtime(_) => None,
    }
}

/// Emits `flip − zero` for a runtime zero point (one byte of `dtype` in `buf`).
pub(crate) fn runtime_offset(fx: &mut Fx, dtype: DType, buf: edgecc_program::Buffer) -> Value {
    let p = fx.buf(buf);
    let z = fx.load8(dtype == DType::I8, p, 0, true);
    let f = fx.b.ins().iconst(types::I32, flip_of(dtype) as i64);
    fx.b.ins().isub(f, z)
}

/// The operands of a `Kernel::QGemm`.
pub(crate) struct QGemmKernel<'a> {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a: &'a edgecc_program::View,
    pub a_dtype: DType,
    pub a_zero: edgecc_program::ZeroPoint,
    pub b: edgecc_program::ConstId,
    pub bias: Option<edgecc_program::ConstId>,
    pub out: &'a QuantOut,
    pub c: &'a edgecc_program::View,
}

/// The packed weights and the tables of a `QGemm` (data slots 0 and 1).
pub(crate) fn prepare(
    consts: &[edgecc_program::Const],
    t: QTile,
    q: &QGemmKernel,
) -> Result<[Vec<u8>; 2], Error> {
    let (n, k) = (q.n as u64, q.k as u64);
    let w = const_bytes(consts, q.b, k * n, "qgemm weight")?;
    let bias = match q.bias {
        Some(b) => Some(const_bytes(consts, b, 4 * n, "qgemm bias")?),
        None => None,
    };
    let get = |kk: u64, col: u64| w[(kk * n + col) as usize] as i8;
    let mut pb = Vec::new();
    pack_b(t, k, n, get, &mut pb);
    let mut tab = Vec::new();
    tables(
        Tables::new(
            padded_n(t, n),
            matches!(q.a_zero, edgecc_program::ZeroPoint::Runtime(_)),
            q.out,
            t.pairs,
        ),
        k,
        n,
        get,
        |col| bias.map_or(0, |b| i32_at(b, col)),
        const_offset(q.a_dtype, q.a_zero),
        q.out,
        0,
        &mut tab,
    );
    Ok([pb, tab])
}

/// Emits a whole `QGemm`; `packed` are the data indices of [`prepare`]'s blobs.
pub(crate) fn emit(
    fx: &mut Fx,
    t: QTile,
    q: &QGemmKernel,
    packed: [Option<usize>; 2],
) -> Result<(), Error> {
    let [Some(pb), Some(pt)] = packed else {
        return Err(Error::Codegen("qgemm operands were not packed".into()));
    };
    let esize = q.out.dtype().size() as i64;
    let a = fx.buf(q.a.buf);
    let a = fx.addp(a, q.a.offset as i64);
    let c = fx.buf(q.c.buf);
    let c = fx.addp(c, q.c.offset as i64 * esize);
    let offset = match q.a_zero {
        edgecc_program::ZeroPoint::Runtime(buf) => Some(runtime_offset(fx, q.a_dtype, buf)),
        edgecc_program::ZeroPoint::Const(_) => None,
    };
    let b = fx.data_addr(pb);
    let tab = fx.data_addr(pt);
    emit_2d(
        fx,
        t,
        &QGemm2d {
            m: q.m as u64,
            n: q.n as u64,
            k: q.k as u64,
            a,
            a_rs: q.a.strides[0],
            a_readonly: true,
            flip: q.a_dtype == DType::U8,
            b,
            tab,
            offset,
            c,
            c_rs: q.c.strides[0] * esize,
            c_cs: q.c.strides[1] * esize,
            out: q.out,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The x86_64 clamp-first epilogue in scalar form: clamp the accumulator, `(p +
    /// 2^(s−1) + 2^63) >> s` as a logical shift, low 32 bits minus `2^(63−s)`, clamp,
    /// `+ zp` — against `Requant::apply` for accumulators around every bound and at the
    /// ends of i32, over shifts 1..=62 and multipliers from 0 to 2^31 − 1.
    #[test]
    fn clamp_first_requantization_is_exact() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut taken = 0;
        for case in 0..3000u64 {
            let shift = 1 + (case % 62) as u32;
            let m = match case % 4 {
                0 => (next() % (1 << 31)) as i32,
                1 => 1 << (next() % 31),
                2 => (next() % 1024) as i32,
                _ => i32::MAX - (next() % 8) as i32,
            };
            let (a, b) = ((next() % 256) as i32, (next() % 256) as i32);
            let rq = Requant {
                dtype: DType::U8,
                multiplier: vec![m],
                shift,
                zero_point: (next() % 500) as i32 - 200,
                lo: a.min(b),
                hi: a.max(b),
            };
            let ((a_lo, a_hi), fits) = acc_bounds(&rq, m);
            if !fits {
                continue;
            }
            taken += 1;
            let (lo, hi) = (rq.lo - rq.zero_point, rq.hi - rq.zero_point);
            let bias = (1i64 << (shift - 1)).wrapping_add(i64::MIN);
            let c = ((1u64 << (63 - shift)) as u32) as i32;
            let probe = [
                i32::MIN,
                i32::MIN + 1,
                -1,
                0,
                1,
                i32::MAX - 1,
                i32::MAX,
                a_lo.wrapping_sub(1),
                a_lo,
                a_lo.wrapping_add(1),
                a_hi.wrapping_sub(1),
                a_hi,
                a_hi.wrapping_add(1),
                next() as i32,
                (next() as i32) >> (next() % 31),
            ];
            for acc in probe {
                let x = acc.max(a_lo).min(a_hi);
                let p = (x as i64 * m as i64).wrapping_add(bias);
                let t = ((p as u64) >> shift) as u32 as i32;
                let y = t.wrapping_sub(c).max(lo).min(hi) + rq.zero_point;
                assert_eq!(
                    y,
                    rq.apply(acc, 0),
                    "acc {acc}, {rq:?}, bounds {a_lo}..{a_hi}"
                );
            }
        }
        // Nearly every requantization takes the clamp-first form.
        assert!(taken > 2900, "clamp-first applies to only {taken} of 3000");
    }
}
