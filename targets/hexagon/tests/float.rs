//! The float kernels (GEMM, convolution, softmax, layer norm, reductions, running sums)
//! emitted as plain C, under qemu-hexagon, against the scalar executor: random programs on
//! odd shapes (tails of every register tile, broadcasts, transposed views, 1-sized dims,
//! in place), every activation and reduction. Sums may be reassociated (and their
//! multiply-adds fused), so float results are compared within a tolerance stated per
//! kernel; integer results and everything the contract fixes bit for bit (running sums,
//! Max/Min reductions) are compared exactly. Each test prints the largest error it saw
//! (`-- --nocapture`).

mod common;

use common::*;

use edgecc_program::{
    Activation, Buffer, DType, Kernel, PoolKind, ReduceOp, SoftmaxMask, Spatial, View,
};

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `n` floats uniform in `[lo, hi)`.
pub fn uniform(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|_| lo + (hi - lo) * ((rng.next() >> 40) as f32 / (1u64 << 24) as f32))
        .collect()
}

pub fn view(buf: Buffer, offset: u64, strides: &[i64]) -> View {
    View {
        buf,
        offset,
        strides: strides.to_vec(),
    }
}

/// Checks `got` against `want`: NaN where the executor has NaN, the same infinity where it
/// has one, and `|got − want| ≤ tol(i)` elsewhere. Returns the largest `|got − want| /
/// scale(i)` (the measured error in the unit the tolerance is stated in).
pub fn check_close(
    what: &str,
    got: &[f32],
    want: &[f32],
    tol: impl Fn(usize) -> f64,
    scale: impl Fn(usize) -> f64,
) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || w.is_infinite() || g.is_nan() || g.is_infinite() {
            assert!(
                (w.is_nan() && g.is_nan()) || g == w,
                "{what}[{i}]: got {g:e}, executor {w:e}"
            );
            continue;
        }
        let e = (g as f64 - w as f64).abs();
        assert!(
            e <= tol(i),
            "{what}[{i}]: got {g:e}, executor {w:e} (|error| {e:e} > {:e})",
            tol(i)
        );
        let s = scale(i);
        if s > 0.0 {
            worst = worst.max(e / s);
        }
    }
    worst
}

/// The program with every f32 input and constant made non-negative, alpha |alpha| and no
/// activations: run by the executor, its GEMM, convolution and Sum outputs are `Σ |term|`
/// of each output, the scale a reassociated sum's rounding error is relative to.
fn abs_sums(b: &Builder) -> Vec<Vec<f32>> {
    let mut p = b.p.clone();
    for k in &mut p.kernels {
        match k {
            Kernel::Gemm { alpha, act, .. } => {
                *alpha = alpha.abs();
                *act = Activation::None;
            }
            Kernel::Conv { act, .. } => *act = Activation::None,
            _ => {}
        }
    }
    let abs = |d: &[u8]| f32_bytes(&f32s(d).iter().map(|x| x.abs()).collect::<Vec<_>>());
    for c in &mut p.consts {
        if c.dtype == DType::F32 {
            c.data = abs(&c.data);
        }
    }
    let ins: Vec<Vec<u8>> = b
        .inputs
        .iter()
        .zip(&p.inputs)
        .map(|(d, t)| {
            if t.dtype == DType::F32 {
                abs(d)
            } else {
                d.clone()
            }
        })
        .collect();
    let ins: Vec<&[u8]> = ins.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = p
        .outputs
        .iter()
        .map(|t| vec![0; t.byte_size() as usize])
        .collect();
    let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let mut arena = vec![0u8; p.arena_size as usize];
    edgecc_program::exec::run(&p, &ins, &mut refs, &mut arena).expect("exec of |terms|");
    outs.iter().map(|o| f32s(o)).collect()
}

/// Reassociated sums (and fused multiply-adds): within `REL_SUM` of `Σ |term|` per
/// output, plus `ABS_ACT` for the activations' own error (each is within 3.5e-7 of its
/// exact value, or relative 1.8e-7 of an output at most |x|).
const REL_SUM: f64 = 1e-5;
const ABS_ACT: f64 = 1e-6;

fn check_sums(b: &Builder, got: &[Vec<u8>], want: &[Vec<u8>], what: &str) -> f64 {
    let sums = abs_sums(b);
    let mut worst = 0.0f64;
    for (o, ((g, w), s)) in got.iter().zip(want).zip(&sums).enumerate() {
        let (g, w) = (f32s(g), f32s(w));
        let e = check_close(
            &format!("{what} output {o}"),
            &g,
            &w,
            |i| REL_SUM * s[i] as f64 * 1.5 + ABS_ACT,
            |i| s[i] as f64,
        );
        worst = worst.max(e);
    }
    worst
}

const ACTS: [Activation; 8] = [
    Activation::None,
    Activation::Relu,
    Activation::Clip { lo: -0.25, hi: 0.5 },
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Gelu { tanh: false },
    Activation::Gelu { tanh: true },
    Activation::HardSwish,
];

/// Which operands of a GEMM case are laid out how.
#[derive(Clone, Copy)]
struct GemmCase {
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
    /// A stored `[k, m]` (read transposed).
    a_t: bool,
    /// B stored `[n, k]` (ONNX Gemm transB).
    b_t: bool,
    /// A shared by every batch (stride 0).
    a_bcast: bool,
    /// C written transposed, `[n, m]` per batch.
    c_t: bool,
    alpha: f32,
    /// 0: none, 1: `[n]` broadcast over rows, 2: `[m]` broadcast over columns, 3: full.
    bias: u8,
    residual: bool,
    /// B a constant (weights) rather than an input.
    b_const: bool,
}

#[test]
fn gemm_programs_match_the_executor() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut b = Builder::new();
    let base = GemmCase {
        batch: 1,
        m: 1,
        n: 1,
        k: 1,
        a_t: false,
        b_t: false,
        a_bcast: false,
        c_t: false,
        alpha: 1.0,
        bias: 0,
        residual: false,
        b_const: true,
    };
    let cases = [
        base,
        // One row (an MLP layer), columns past one tile with a tail of 1, row bias.
        GemmCase {
            n: 37,
            k: 50,
            bias: 1,
            ..base
        },
        // Row and column tails (7 = 4 + 3, 9 = 2·4 + 1), transposed B, alpha, residual.
        GemmCase {
            m: 7,
            n: 9,
            k: 13,
            b_t: true,
            alpha: 0.5,
            residual: true,
            ..base
        },
        // Batches sharing A, per-row bias, B an input (attention's scores · V).
        GemmCase {
            batch: 3,
            m: 5,
            n: 6,
            k: 11,
            a_bcast: true,
            bias: 2,
            b_const: false,
            ..base
        },
        // Transposed A and C, full bias, exact tiles.
        GemmCase {
            batch: 2,
            m: 8,
            n: 8,
            k: 4,
            a_t: true,
            c_t: true,
            bias: 3,
            b_const: false,
            ..base
        },
        // k = 0: the bias alone.
        GemmCase {
            m: 3,
            n: 5,
            k: 0,
            bias: 1,
            residual: true,
            ..base
        },
        GemmCase {
            m: 2,
            n: 3,
            k: 64,
            alpha: -1.5,
            b_t: true,
            ..base
        },
        GemmCase {
            batch: 2,
            m: 6,
            n: 10,
            k: 9,
            a_t: true,
            b_t: true,
            bias: 1,
            residual: true,
            ..base
        },
    ];
    // One row, read and written through row strides of 0 (a view need not depend on the
    // row), batches sharing B.
    {
        let (bt, k, n) = (2u64, 5u64, 3u64);
        let a = b.input(
            DType::F32,
            f32_bytes(&uniform(&mut rng, (bt * k) as usize, -1.0, 1.0)),
        );
        let w = b.konst(
            DType::F32,
            f32_bytes(&uniform(&mut rng, (k * n) as usize, -1.0, 1.0)),
        );
        let c = b.output(DType::F32, bt * n);
        b.p.kernels.push(Kernel::Gemm {
            batch: bt as u32,
            m: 1,
            n: n as u32,
            k: k as u32,
            a: view(a, 0, &[k as i64, 0, 1]),
            b: view(Buffer::Const(w), 0, &[0, n as i64, 1]),
            alpha: 1.0,
            bias: None,
            residual: None,
            act: Activation::None,
            c: view(c, 0, &[n as i64, 0, 1]),
        });
    }
    for (ci, g) in cases.iter().enumerate() {
        let act = ACTS[ci % ACTS.len()];
        let (bt, m, n, k) = (g.batch as u64, g.m as u64, g.n as u64, g.k as u64);
        let a_batches = if g.a_bcast { 1 } else { bt };
        let a = b.input(
            DType::F32,
            f32_bytes(&uniform(&mut rng, (a_batches * m * k) as usize, -1.0, 1.0)),
        );
        let a_sb = if g.a_bcast { 0 } else { (m * k) as i64 };
        let a_v = if g.a_t {
            view(a, 0, &[a_sb, 1, m as i64])
        } else {
            view(a, 0, &[a_sb, k as i64, 1])
        };
        let bd = f32_bytes(&uniform(&mut rng, (bt * k * n) as usize, -1.0, 1.0));
        let bb = if g.b_const {
            Buffer::Const(b.konst(DType::F32, bd))
        } else {
            b.input(DType::F32, bd)
        };
        let b_v = if g.b_t {
            view(bb, 0, &[(k * n) as i64, 1, k as i64])
        } else {
            view(bb, 0, &[(k * n) as i64, n as i64, 1])
        };
        // Offsets other than 0 for the bias (a slice of a longer vector).
        let bias = match g.bias {
            0 => None,
            kind => {
                let (len, strides) = match kind {
                    1 => (n, vec![0, 0, 1]),
                    2 => (m, vec![0, 1, 0]),
                    _ => (bt * m * n, vec![(m * n) as i64, n as i64, 1]),
                };
                let data = uniform(&mut rng, len as usize + 3, -2.0, 2.0);
                let c = b.konst(DType::F32, f32_bytes(&data));
                Some(view(Buffer::Const(c), 3, &strides))
            }
        };
        let residual = g.residual.then(|| {
            let r = b.input(
                DType::F32,
                f32_bytes(&uniform(&mut rng, (bt * m * n) as usize, -1.0, 1.0)),
            );
            view(r, 0, &[(m * n) as i64, n as i64, 1])
        });
        let c = b.output(DType::F32, bt * m * n);
        let c_v = if g.c_t {
            view(c, 0, &[(m * n) as i64, 1, m as i64])
        } else {
            view(c, 0, &[(m * n) as i64, n as i64, 1])
        };
        b.p.kernels.push(Kernel::Gemm {
            batch: g.batch,
            m: g.m,
            n: g.n,
            k: g.k,
            a: a_v,
            b: b_v,
            alpha: g.alpha,
            bias,
            residual,
            act,
            c: c_v,
        });
    }
    let (got, want) = run_both(&b, "gemm");
    let worst = check_sums(&b, &got, &want, "gemm");
    println!("gemm: max |error| / Σ|term| = {worst:.2e}");
}

#[test]
fn conv_programs_match_the_executor() {
    let mut rng = Rng(0x0bad_c0de_1357_9bdf);
    let mut b = Builder::new();
    // (n, c_in, c_out, groups, kernel, stride, dilation, pads (t, l, b, r), input h×w,
    // bias, residual)
    type Case = (
        u32,
        u32,
        u32,
        u32,
        (u32, u32),
        (u32, u32),
        (u32, u32),
        (u32, u32, u32, u32),
        (u32, u32),
        bool,
        bool,
    );
    let cases: [Case; 9] = [
        // 3x3 same padding, 5 channels (a tile of 4 and a tail of 1), interior tiles of 4
        // pixels and a tail.
        (
            1,
            3,
            5,
            1,
            (3, 3),
            (1, 1),
            (1, 1),
            (1, 1, 1, 1),
            (7, 11),
            true,
            false,
        ),
        // Depthwise, stride 2, residual.
        (
            1,
            6,
            6,
            6,
            (3, 3),
            (2, 2),
            (1, 1),
            (1, 1, 1, 1),
            (9, 10),
            true,
            true,
        ),
        // Two groups, 2x3 kernel, dilation 2 along h, asymmetric padding, no bias.
        (
            2,
            4,
            6,
            2,
            (2, 3),
            (1, 1),
            (2, 1),
            (0, 2, 1, 0),
            (6, 7),
            false,
            false,
        ),
        // Pointwise over two images with a residual.
        (
            2,
            8,
            8,
            1,
            (1, 1),
            (1, 1),
            (1, 1),
            (0, 0, 0, 0),
            (3, 5),
            true,
            true,
        ),
        // 1-D: h = 1, kw 5, padding 2 each side, stride 1.
        (
            1,
            2,
            3,
            1,
            (1, 5),
            (1, 1),
            (1, 1),
            (0, 2, 0, 2),
            (1, 13),
            true,
            false,
        ),
        // Padding wider than the input row: no column is inside, every tap checked.
        (
            1,
            2,
            4,
            1,
            (3, 3),
            (1, 1),
            (1, 1),
            (2, 2, 2, 2),
            (2, 2),
            true,
            false,
        ),
        // Stride 3 with dilation 2 along w, 7 output channels.
        (
            1,
            3,
            7,
            1,
            (3, 3),
            (2, 3),
            (1, 2),
            (1, 1, 0, 2),
            (8, 17),
            false,
            true,
        ),
        // Channel multiplier 2 per group (depthwise ×2).
        (
            1,
            3,
            6,
            3,
            (3, 3),
            (1, 1),
            (1, 1),
            (1, 1, 1, 1),
            (5, 6),
            true,
            false,
        ),
        // A stem-like 5x5 stride 2 over 12 input channels.
        (
            1,
            12,
            4,
            1,
            (5, 5),
            (2, 2),
            (1, 1),
            (2, 2, 2, 2),
            (9, 9),
            true,
            false,
        ),
    ];
    for (ci, &(n, c_in, c_out, groups, k, st, d, pad, (ih, iw), bias, res)) in
        cases.iter().enumerate()
    {
        let act = ACTS[(ci + 1) % ACTS.len()];
        let w = window(k, st, d, pad);
        let (oh, ow) = (
            out_size(ih, k.0, st.0, d.0, pad.0, pad.2),
            out_size(iw, k.1, st.1, d.1, pad.1, pad.3),
        );
        let input = b.input(
            DType::F32,
            f32_bytes(&uniform(&mut rng, (n * c_in * ih * iw) as usize, -1.0, 1.0)),
        );
        let taps = (c_in / groups * k.0 * k.1) as usize;
        let weight = b.konst(
            DType::F32,
            f32_bytes(&uniform(&mut rng, c_out as usize * taps, -1.0, 1.0)),
        );
        let bias = bias.then(|| {
            b.konst(
                DType::F32,
                f32_bytes(&uniform(&mut rng, c_out as usize, -1.0, 1.0)),
            )
        });
        let size = (n * c_out * oh * ow) as usize;
        let residual =
            res.then(|| b.input(DType::F32, f32_bytes(&uniform(&mut rng, size, -1.0, 1.0))));
        let output = b.output(DType::F32, size as u64);
        b.p.kernels.push(Kernel::Conv {
            c_in,
            c_out,
            groups,
            spatial: Spatial {
                n,
                in_h: ih,
                in_w: iw,
                out_h: oh,
                out_w: ow,
            },
            window: w,
            input,
            weight,
            bias,
            residual,
            act,
            output,
            scratch: None,
        });
    }
    let (got, want) = run_both(&b, "conv");
    let worst = check_sums(&b, &got, &want, "conv");
    println!("conv: max |error| / Σ|term| = {worst:.2e}");
}

/// Softmax outputs: relative `SOFTMAX_REL` of each probability (exp's 1.2e-7 per term,
/// the sum's rounding, the product with 1/sum instead of the quotient).
const SOFTMAX_REL: f64 = 2e-6;

#[test]
fn softmax_programs_match_the_executor() {
    let mut rng = Rng(0x5eed_0f5a_f7ea_0001);
    let mut b = Builder::new();
    // Plain, over the last axis, rows of 1 and 10.
    for (outer, len) in [(3u64, 10u64), (4, 1), (1, 33)] {
        let x = b.input(
            DType::F32,
            f32_bytes(&uniform(&mut rng, (outer * len) as usize, -8.0, 8.0)),
        );
        let y = b.output(DType::F32, outer * len);
        b.p.kernels.push(Kernel::Softmax {
            outer,
            len,
            inner: 1,
            input: x,
            output: y,
            scale: 1.0,
            mask: None,
        });
    }
    // Over a middle axis (inner 3), and with a scale.
    for scale in [1.0f32, 0.3] {
        let (outer, len, inner) = (2u64, 5u64, 3u64);
        let x = b.input(
            DType::F32,
            f32_bytes(&uniform(
                &mut rng,
                (outer * len * inner) as usize,
                -5.0,
                5.0,
            )),
        );
        let y = b.output(DType::F32, outer * len * inner);
        b.p.kernels.push(Kernel::Softmax {
            outer,
            len,
            inner,
            input: x,
            output: y,
            scale,
            mask: None,
        });
    }
    // Attention: [batch 2, heads 3, queries 4] rows of 7 keys, scaled, one padding mask
    // row per batch broadcast over heads and queries (stride 0), -inf at masked keys and a
    // row where every key but one is masked; in place in the arena.
    let (bt, heads, q, len) = (2u64, 3u64, 4u64, 7u64);
    let outer = bt * heads * q;
    let mut mask = vec![0.0f32; (bt * len) as usize];
    mask[5] = f32::NEG_INFINITY;
    mask[6] = -10000.0;
    for m in &mut mask[len as usize + 1..] {
        *m = f32::NEG_INFINITY;
    }
    let mk = b.input(DType::F32, f32_bytes(&mask));
    let x = b.input(
        DType::F32,
        f32_bytes(&uniform(&mut rng, (outer * len) as usize, -6.0, 6.0)),
    );
    let bytes = outer * len * 4;
    let t = b.arena(bytes);
    let y = b.output(DType::F32, outer * len);
    b.p.kernels.push(Kernel::Copy {
        bytes,
        src: x,
        dst: t,
    });
    b.p.kernels.push(Kernel::Softmax {
        outer,
        len,
        inner: 1,
        input: t,
        output: t,
        scale: 0.125,
        mask: Some(SoftmaxMask {
            outer: vec![bt, heads * q],
            view: view(mk, 0, &[len as i64, 0, 1, 0]),
        }),
    });
    b.p.kernels.push(Kernel::Copy {
        bytes,
        src: t,
        dst: y,
    });
    // A mask over the last outer dim only (a [4, 7] causal-style mask repeated for every
    // head), with inner 1 and a mask stride along len of 1.
    let causal: Vec<f32> = (0..q * len)
        .map(|i| if i % len > i / len + 3 { -1e9 } else { 0.5 })
        .collect();
    let mk = b.konst(DType::F32, f32_bytes(&causal));
    let x = b.input(
        DType::F32,
        f32_bytes(&uniform(&mut rng, (outer * len) as usize, -3.0, 3.0)),
    );
    let y = b.output(DType::F32, outer * len);
    b.p.kernels.push(Kernel::Softmax {
        outer,
        len,
        inner: 1,
        input: x,
        output: y,
        scale: 1.0,
        mask: Some(SoftmaxMask {
            outer: vec![q],
            view: view(Buffer::Const(mk), 0, &[len as i64, 1, 0]),
        }),
    });
    // Every entry masked with -inf: 0/0, NaN like the executor; and a NaN score.
    let x = b.input(DType::F32, f32_bytes(&[1.0, 2.0, 3.0, f32::NAN, 0.0, 1.0]));
    let mk = b.input(
        DType::F32,
        f32_bytes(&[f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY]),
    );
    let y = b.output(DType::F32, 6);
    b.p.kernels.push(Kernel::Softmax {
        outer: 2,
        len: 3,
        inner: 1,
        input: x,
        output: y,
        scale: 1.0,
        mask: Some(SoftmaxMask {
            outer: vec![2],
            view: view(mk, 0, &[0, 1, 0]),
        }),
    });
    let (got, want) = run_both(&b, "softmax");
    let mut worst = 0.0f64;
    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
        let (g, w) = (f32s(g), f32s(w));
        let e = check_close(
            &format!("softmax output {o}"),
            &g,
            &w,
            |i| SOFTMAX_REL * w[i].abs() as f64 + 1e-37,
            |i| w[i].abs() as f64,
        );
        worst = worst.max(e);
    }
    let last = f32s(got.last().unwrap());
    assert!(last.iter().all(|x| x.is_nan()), "{last:?}");
    println!("softmax: max relative error {worst:.2e}");
}

/// Layer norm outputs: within this of `max(|y|, 1)`.
const LAYER_NORM_ABS: f64 = 4e-6;

#[test]
fn layer_norm_programs_match_the_executor() {
    let mut rng = Rng(0x1a7e_40e5_aa55_0001);
    let mut b = Builder::new();
    // (outer, len, scale: 0 none / 1 vector / 2 one value, bias likewise, statistics out,
    // in place)
    let cases = [
        (4u64, 37u64, 1u8, 1u8, true, false),
        (3, 1, 2, 0, true, false),
        (5, 64, 1, 2, false, true),
        (2, 7, 0, 0, true, true),
        (1, 130, 1, 1, false, false),
    ];
    for (ci, (outer, len, sc, bi, stats, in_place)) in cases.into_iter().enumerate() {
        // An offset mean, so the two-pass variance matters.
        let data: Vec<f32> = uniform(&mut rng, (outer * len) as usize, -2.0, 2.0)
            .iter()
            .map(|x| x + 3.0)
            .collect();
        let x = b.input(DType::F32, f32_bytes(&data));
        let vec_view = |b: &mut Builder, rng: &mut Rng, kind: u8, lo: f32, hi: f32| match kind {
            0 => None,
            1 => Some(view(
                Buffer::Const(b.konst(DType::F32, f32_bytes(&uniform(rng, len as usize, lo, hi)))),
                0,
                &[1],
            )),
            _ => Some(view(
                b.input(DType::F32, f32_bytes(&uniform(rng, 2, lo, hi))),
                1,
                &[0],
            )),
        };
        let scale = vec_view(&mut b, &mut rng, sc, 0.5, 1.5);
        let bias = vec_view(&mut b, &mut rng, bi, -1.0, 1.0);
        let y = b.output(DType::F32, outer * len);
        let (mean, inv_std) = if stats {
            (
                Some(b.output(DType::F32, outer)),
                Some(b.output(DType::F32, outer)),
            )
        } else {
            (None, None)
        };
        let bytes = outer * len * 4;
        let (src, dst) = if in_place {
            let t = b.arena(bytes);
            b.p.kernels.push(Kernel::Copy {
                bytes,
                src: x,
                dst: t,
            });
            (t, t)
        } else {
            (x, y)
        };
        b.p.kernels.push(Kernel::LayerNorm {
            outer,
            len,
            epsilon: if ci % 2 == 0 { 1e-5 } else { 0.05 },
            input: src,
            scale,
            bias,
            output: dst,
            mean,
            inv_std,
        });
        if in_place {
            b.p.kernels.push(Kernel::Copy {
                bytes,
                src: dst,
                dst: y,
            });
        }
    }
    // len 0: mean 0/0 and inv_std NaN, as the executor.
    let x = b.input(DType::F32, vec![]);
    let y = b.output(DType::F32, 0);
    let (mean, inv) = (b.output(DType::F32, 2), b.output(DType::F32, 2));
    b.p.kernels.push(Kernel::LayerNorm {
        outer: 2,
        len: 0,
        epsilon: 1e-5,
        input: x,
        scale: None,
        bias: None,
        output: y,
        mean: Some(mean),
        inv_std: Some(inv),
    });
    let (got, want) = run_both(&b, "layer_norm");
    // Outputs are O(1) (standardized, scaled by at most 1.5, plus a bias of at most 1):
    // an absolute bound covers the reassociated statistics of rows of mean 3 (measured
    // 8.9e-7).
    let mut worst = 0.0f64;
    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
        let (g, w) = (f32s(g), f32s(w));
        let e = check_close(
            &format!("layer_norm output {o}"),
            &g,
            &w,
            |i| LAYER_NORM_ABS * w[i].abs().max(1.0) as f64,
            |i| w[i].abs().max(1.0) as f64,
        );
        worst = worst.max(e);
    }
    assert!(f32s(&got[got.len() - 1]).iter().all(|x| x.is_nan()));
    assert!(f32s(&got[got.len() - 2]).iter().all(|x| x.is_nan()));
    println!("layer_norm: max |error| / max(|y|, 1) = {worst:.2e}");
}

#[test]
fn reduce_programs_match_the_executor() {
    let mut rng = Rng(0x0ed0_ce00_2468_ace0);
    let mut b = Builder::new();
    let ops = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Prod,
    ];
    let mut exact = vec![];
    for op in ops {
        for (outer, len, inner) in [
            (3u64, 7u64, 1u64),
            (2, 13, 3),
            (4, 0, 1),
            (2, 0, 5),
            (5, 1, 1),
            (1, 4, 2),
        ] {
            let mut data = uniform(&mut rng, (outer * len * inner) as usize, -2.0, 2.0);
            // NaN in one row of the first shape (Max and Min give NaN there; the sums too),
            // and a -0/+0 row for Min and Max.
            if len == 7 {
                data[9] = f32::NAN;
                data[14] = -0.0;
            }
            if op == ReduceOp::Prod {
                for x in &mut data {
                    *x = 0.75 + x.abs() * 0.25;
                }
            }
            let x = b.input(DType::F32, f32_bytes(&data));
            let y = b.output(DType::F32, outer * inner);
            exact.push(matches!(op, ReduceOp::Max | ReduceOp::Min));
            b.p.kernels.push(Kernel::Reduce {
                op,
                outer,
                len,
                inner,
                input: x,
                output: y,
            });
        }
    }
    let (got, want) = run_both(&b, "reduce");
    let sums = abs_sums(&b);
    let mut worst = 0.0f64;
    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
        let (gf, wf) = (f32s(g), f32s(w));
        if exact[o] {
            // Max, Min: the same element, NaN when one is (a -0/+0 tie may pick either).
            for (x, y) in gf.iter().zip(&wf) {
                assert!(
                    (x.is_nan() && y.is_nan()) || x == y,
                    "reduce output {o}: {gf:?} vs {wf:?}"
                );
            }
            continue;
        }
        // Sums and means: REL_SUM of Σ|x| (/ len); products of factors in [0.75, 1.25]:
        // relative len · 2^-23.
        let e = check_close(
            &format!("reduce output {o}"),
            &gf,
            &wf,
            |i| REL_SUM * sums[o][i] as f64 + 1e-6 * wf[i].abs() as f64,
            |i| sums[o][i] as f64,
        );
        worst = worst.max(e);
    }
    println!("reduce: max |error| / Σ|x| = {worst:.2e}");
}

#[test]
fn cumsum_programs_match_the_executor_bit_for_bit() {
    let mut rng = Rng(0xc0c0_5005_1111_2222);
    let mut b = Builder::new();
    for dtype in [DType::F32, DType::I32, DType::I64] {
        for exclusive in [false, true] {
            for reverse in [false, true] {
                for (outer, len, inner) in [(2u64, 9u64, 1u64), (3, 4, 3), (1, 1, 2)] {
                    let n = (outer * len * inner) as usize;
                    let data = match dtype {
                        DType::F32 => {
                            let mut v = uniform(&mut rng, n, -100.0, 100.0);
                            v[0] = -0.0;
                            f32_bytes(&v)
                        }
                        // Large values so the sums wrap.
                        DType::I32 => (0..n)
                            .flat_map(|_| (rng.next() as i32).to_le_bytes())
                            .collect(),
                        _ => (0..n)
                            .flat_map(|_| (rng.next() as i64).to_le_bytes())
                            .collect(),
                    };
                    let x = b.input(dtype, data);
                    let y = b.output(dtype, n as u64);
                    b.p.kernels.push(Kernel::CumSum {
                        outer,
                        len,
                        inner,
                        dtype,
                        exclusive,
                        reverse,
                        input: x,
                        output: y,
                    });
                }
            }
        }
    }
    let (got, want) = run_both(&b, "cumsum");
    assert_same(&b.p, &got, &want);
}

/// Float pooling, every kind, with NaN inputs and windows partly or wholly in the padding.
#[test]
fn float_pool_matches_the_executor_bit_for_bit() {
    let mut rng = Rng(0x9001_9001_9001_9001);
    let mut b = Builder::new();
    let kinds = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: true,
        },
        PoolKind::Avg {
            count_include_pad: false,
        },
    ];
    for kind in kinds {
        for (k, s, pad, (ih, iw)) in [
            ((3, 3), (2, 2), (1, 1, 1, 1), (7, 9)),
            ((2, 2), (1, 1), (2, 2, 2, 2), (3, 3)),
        ] {
            let w = window(k, s, (1, 1), pad);
            let (oh, ow) = (
                out_size(ih, k.0, s.0, 1, pad.0, pad.2),
                out_size(iw, k.1, s.1, 1, pad.1, pad.3),
            );
            let mut data = uniform(&mut rng, (2 * ih * iw) as usize, -4.0, 4.0);
            data[4] = f32::NAN;
            let x = b.input(DType::F32, f32_bytes(&data));
            let y = b.output(DType::F32, (2 * oh * ow) as u64);
            b.p.kernels.push(Kernel::Pool {
                kind,
                dtype: DType::F32,
                channels: 2,
                spatial: Spatial {
                    n: 1,
                    in_h: ih,
                    in_w: iw,
                    out_h: oh,
                    out_w: ow,
                },
                window: w,
                input: x,
                output: y,
            });
        }
    }
    let (got, want) = run_both(&b, "fpool");
    assert_same(&b.p, &got, &want);
}
