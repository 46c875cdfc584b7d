//! The integer kernels (`QGemm`, `QConv`, max pooling of u8/i8) against `exec::run`, bit
//! for bit: random shapes (odd m, n, k; k < 16; n = 1; groups, depthwise, strides,
//! dilations, padding), u8 and i8 activations, constant and runtime zero points,
//! per-tensor and per-channel requantization and raw i32 outputs. On x86_64 through the
//! JIT; on aarch64 under qemu, with and without `has_dotprod`, several cases per program
//! so that one link and one emulator run cover them all.
mod common;

use std::path::Path;
use std::process::Command;

use edgecc_cranelift::{ObjectOptions, Target, compile_object, emit_clif};
use edgecc_program::{
    Buffer, Const, ConstId, DType, IoTensor, Kernel, PoolKind, Program, QBinary, QBinaryOp,
    QuantOut, Requant, Spatial, View, Window, ZeroPoint, exec,
};
use proptest::prelude::*;

/// Deterministic bytes (a 64-bit LCG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn bytes(&mut self, n: u64) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// How a case's zero point and output are chosen.
#[derive(Clone, Copy, Debug)]
struct Quant {
    dtype: DType,
    runtime_zero: bool,
    /// `None`: raw i32 output; else the output dtype and whether multipliers are per
    /// channel.
    requant: Option<(DType, bool)>,
    /// Requantization shift; large ones keep values in range, small ones saturate.
    shift: u32,
}

fn quant() -> impl Strategy<Value = Quant> {
    (
        prop_oneof![Just(DType::U8), Just(DType::I8)],
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some((DType::U8, false))),
            Just(Some((DType::U8, true))),
            Just(Some((DType::I8, false))),
            Just(Some((DType::I8, true))),
        ],
        prop_oneof![3 => 24u32..40, 1 => 1u32..=62],
    )
        .prop_map(|(dtype, runtime_zero, requant, shift)| Quant {
            dtype,
            runtime_zero,
            requant,
            shift,
        })
}

/// A program assembled case by case.
struct Suite {
    p: Program,
    ins: Vec<Vec<u8>>,
    rng: Rng,
}

impl Suite {
    fn new(seed: u64) -> Suite {
        Suite {
            p: Program {
                name: "q".into(),
                inputs: vec![],
                outputs: vec![],
                arena_size: 0,
                arena_align: 64,
                consts: vec![],
                kernels: vec![],
            },
            ins: vec![],
            rng: Rng(seed),
        }
    }

    fn input(&mut self, dtype: DType, n: u64) -> Buffer {
        let name = format!("in{}", self.p.inputs.len());
        self.p.inputs.push(IoTensor {
            name,
            dtype,
            shape: vec![n],
        });
        let data = self.rng.bytes(n * dtype.size() as u64);
        self.ins.push(data);
        Buffer::Input(self.p.inputs.len() as u32 - 1)
    }

    fn output(&mut self, dtype: DType, n: u64) -> Buffer {
        let name = format!("out{}", self.p.outputs.len());
        self.p.outputs.push(IoTensor {
            name,
            dtype,
            shape: vec![n],
        });
        Buffer::Output(self.p.outputs.len() as u32 - 1)
    }

    fn konst(&mut self, dtype: DType, data: Vec<u8>) -> ConstId {
        let n = data.len() as u64 / dtype.size() as u64;
        self.p.consts.push(Const {
            name: format!("c{}", self.p.consts.len()),
            dtype,
            shape: vec![n],
            data,
        });
        ConstId(self.p.consts.len() as u32 - 1)
    }

    fn arena(&mut self, bytes: u64) -> Buffer {
        let offset = self.p.arena_size.next_multiple_of(64);
        self.p.arena_size = offset + bytes;
        Buffer::Arena { offset }
    }

    /// The zero point (constant or a one-element input) and the output kind.
    fn quant(&mut self, q: Quant, channels: u64) -> (ZeroPoint, QuantOut) {
        let (lo, hi) = if q.dtype == DType::U8 {
            (0, 255)
        } else {
            (-128, 127)
        };
        let z = if q.runtime_zero {
            let b = self.input(q.dtype, 1);
            ZeroPoint::Runtime(b)
        } else {
            ZeroPoint::Const(self.rng.range(lo, hi) as i32)
        };
        let out = match q.requant {
            None => QuantOut::I32,
            Some((dtype, per_channel)) => {
                let (dlo, dhi) = if dtype == DType::U8 {
                    (0, 255)
                } else {
                    (-128, 127)
                };
                let n = if per_channel { channels } else { 1 };
                // Powers of two make `acc·m / 2^shift` hit exact ties, which the
                // rounding (half up) must get right.
                let pow2 = self.rng.next().is_multiple_of(3);
                let multiplier = (0..n)
                    .map(|_| {
                        if pow2 {
                            // 2^(shift−1−j) with a small j: every 2^(j+1)-th
                            // accumulator is a tie.
                            let j = self.rng.range(0, 3);
                            1 << (q.shift as i64 - 1 - j).clamp(0, 30)
                        } else {
                            self.rng.range(0, (1 << 31) - 1) as i32
                        }
                    })
                    .collect();
                let a = self.rng.range(dlo, dhi) as i32;
                let b = self.rng.range(dlo, dhi) as i32;
                QuantOut::Requant(Requant {
                    dtype,
                    multiplier,
                    shift: q.shift,
                    zero_point: self.rng.range(-200, 300) as i32,
                    lo: a.min(b),
                    hi: a.max(b),
                })
            }
        };
        (z, out)
    }

    /// `C[m×n] = A[m×k] · B[k×n]`, A with `pad` extra bytes per row, C transposed when
    /// `c_t`.
    #[allow(clippy::too_many_arguments)]
    fn qgemm(&mut self, m: u32, n: u32, k: u32, pad: u32, c_t: bool, bias: bool, q: Quant) {
        let rs = (k + pad) as u64;
        let a = self.input(q.dtype, m as u64 * rs);
        let bw = self.rng.bytes(k as u64 * n as u64);
        let b = self.konst(DType::I8, bw);
        let bias = bias.then(|| {
            let v: Vec<u8> = (0..n)
                .flat_map(|_| (self.rng.range(-40000, 40000) as i32).to_le_bytes())
                .collect();
            self.konst(DType::I32, v)
        });
        let (a_zero, out) = self.quant(q, n as u64);
        let c = self.output(out.dtype(), m as u64 * n as u64);
        let strides = if c_t {
            vec![1, m as i64]
        } else {
            vec![n as i64, 1]
        };
        self.p.kernels.push(Kernel::QGemm {
            m,
            n,
            k,
            a: View {
                buf: a,
                offset: pad as u64 / 2,
                strides: vec![rs as i64, 1],
            },
            a_dtype: q.dtype,
            a_zero,
            b,
            bias,
            out,
            c: View {
                buf: c,
                offset: 0,
                strides,
            },
        });
    }

    /// A convolution with `c_in = cpg·groups`, `c_out = opg·groups`.
    #[allow(clippy::too_many_arguments)]
    fn qconv(
        &mut self,
        n: u32,
        cpg: u32,
        opg: u32,
        groups: u32,
        hw: (u32, u32),
        w: Window,
        q: Quant,
    ) {
        let (c_in, c_out) = (cpg * groups, opg * groups);
        let (in_h, in_w) = hw;
        let out_dim = |size: u32, k: u32, s: u32, d: u32, p0: u32, p1: u32| {
            ((size + p0 + p1) as i64 - ((k - 1) * d + 1) as i64) / s as i64 + 1
        };
        let oh = out_dim(
            in_h,
            w.kh,
            w.stride_h,
            w.dilation_h,
            w.pad_top,
            w.pad_bottom,
        );
        let ow = out_dim(
            in_w,
            w.kw,
            w.stride_w,
            w.dilation_w,
            w.pad_left,
            w.pad_right,
        );
        assert!(oh > 0 && ow > 0, "empty convolution output");
        let s = Spatial {
            n,
            in_h,
            in_w,
            out_h: oh as u32,
            out_w: ow as u32,
        };
        let input = self.input(q.dtype, (n * c_in * in_h * in_w) as u64);
        let wb = self.rng.bytes((c_out * cpg * w.kh * w.kw) as u64);
        let weight = self.konst(DType::I8, wb);
        let bv: Vec<u8> = (0..c_out)
            .flat_map(|_| (self.rng.range(-40000, 40000) as i32).to_le_bytes())
            .collect();
        let bias = Some(self.konst(DType::I32, bv));
        let (in_zero, out) = self.quant(q, c_out as u64);
        let output = self.output(out.dtype(), n as u64 * c_out as u64 * (oh * ow) as u64);
        let need = Kernel::qconv_scratch_bytes(c_in, c_out, groups, &s, &w);
        let scratch = (need > 0).then(|| self.arena(need));
        self.p.kernels.push(Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial: s,
            window: w,
            input,
            in_dtype: q.dtype,
            in_zero,
            weight,
            bias,
            out,
            output,
            scratch,
        });
    }

    fn max_pool(&mut self, dtype: DType, c: u32, hw: (u32, u32), w: Window) {
        let (in_h, in_w) = hw;
        let out_dim = |size: u32, k: u32, s: u32, d: u32, p0: u32, p1: u32| {
            ((size + p0 + p1) as i64 - ((k - 1) * d + 1) as i64) / s as i64 + 1
        };
        let oh = out_dim(
            in_h,
            w.kh,
            w.stride_h,
            w.dilation_h,
            w.pad_top,
            w.pad_bottom,
        );
        let ow = out_dim(
            in_w,
            w.kw,
            w.stride_w,
            w.dilation_w,
            w.pad_left,
            w.pad_right,
        );
        let s = Spatial {
            n: 1,
            in_h,
            in_w,
            out_h: oh as u32,
            out_w: ow as u32,
        };
        let input = self.input(dtype, (c * in_h * in_w) as u64);
        let output = self.output(dtype, c as u64 * (oh * ow) as u64);
        self.p.kernels.push(Kernel::Pool {
            kind: PoolKind::Max,
            dtype,
            channels: c,
            spatial: s,
            window: w,
            input,
            output,
        });
    }

    /// A `QBinary` over `shape`: `a` and `b` dense over the dims they are not broadcast
    /// along (`bcast_*` true: stride 0), `b` a constant when `b_const`; `a` read transposed
    /// (its last two dims swapped in memory, so no dim is contiguous) when `a_transposed`;
    /// `in_place` computes over a copy of `a` in the arena and copies the result out.
    #[allow(clippy::too_many_arguments)]
    fn qbinary(
        &mut self,
        shape: &[u64],
        (a_dtype, bcast_a, a_transposed): (DType, &[bool], bool),
        (b_dtype, bcast_b, b_const): (DType, &[bool], bool),
        q: QBinary,
        in_place: bool,
    ) {
        let n: u64 = shape.iter().product();
        // Strides of a dense array over the non-broadcast dims, 0 on the others.
        let strides = |bcast: &[bool]| -> (Vec<i64>, u64) {
            let mut st = vec![0i64; shape.len()];
            let mut run = 1u64;
            for d in (0..shape.len()).rev() {
                if !bcast[d] {
                    st[d] = run as i64;
                    run *= shape[d];
                }
            }
            (st, run)
        };
        let (mut sa, na) = strides(bcast_a);
        let r = shape.len();
        if a_transposed && r >= 2 && !bcast_a[r - 1] && !bcast_a[r - 2] {
            // Memory holds [.., d1, d0]: element (.., i, j) at (.., j, i).
            let d0 = shape[r - 2] as i64;
            sa[r - 2] = 1;
            sa[r - 1] = d0;
        }
        let (sb, nb) = strides(bcast_b);
        let a_in = self.input(a_dtype, na);
        let b_buf = if b_const {
            let data = self.rng.bytes(nb);
            Buffer::Const(self.konst(b_dtype, data))
        } else {
            self.input(b_dtype, nb)
        };
        let out = self.output(q.dtype, n);
        let dense = strides(&vec![false; shape.len()]).0;
        let view = |buf, strides: Vec<i64>| View {
            buf,
            offset: 0,
            strides,
        };
        let b = view(b_buf, sb);
        if in_place {
            // Only an `a` of the output's shape can be the output in place.
            let t = self.arena(n);
            self.p.kernels.push(Kernel::Copy {
                bytes: n,
                src: a_in,
                dst: t,
            });
            self.p.kernels.push(Kernel::QBinary {
                shape: shape.to_vec(),
                a: view(t, dense.clone()),
                a_dtype,
                b,
                b_dtype,
                q,
                output: view(t, dense),
            });
            self.p.kernels.push(Kernel::Copy {
                bytes: n,
                src: t,
                dst: out,
            });
        } else {
            self.p.kernels.push(Kernel::QBinary {
                shape: shape.to_vec(),
                a: view(a_in, sa),
                a_dtype,
                b,
                b_dtype,
                q,
                output: view(out, dense),
            });
        }
    }

    /// A random `QBinary` case: rank 1–4 shapes up to 40 wide in the last dim, random
    /// broadcasts, dtypes and parameters (see [`qbinary_params`]).
    fn random_qbinary(&mut self, r: &mut Rng) {
        let rank = r.range(1, 4) as usize;
        let mut shape: Vec<u64> = (0..rank).map(|_| r.range(1, 5) as u64).collect();
        shape[rank - 1] = r.range(1, 70) as u64;
        let dt = |r: &mut Rng| {
            if r.next().is_multiple_of(2) {
                DType::U8
            } else {
                DType::I8
            }
        };
        let (a_dtype, b_dtype, y_dtype) = (dt(r), dt(r), dt(r));
        let in_place = r.next().is_multiple_of(5);
        let bcast = |r: &mut Rng, never: bool| -> Vec<bool> {
            (0..rank)
                .map(|_| !never && r.next().is_multiple_of(3))
                .collect()
        };
        let ba = bcast(r, in_place);
        let bb = bcast(r, false);
        let a_transposed = !in_place && r.next().is_multiple_of(4);
        let b_const = r.next().is_multiple_of(3);
        let q = qbinary_params(r, a_dtype, b_dtype, y_dtype);
        self.qbinary(
            &shape,
            (a_dtype, &ba, a_transposed),
            (b_dtype, &bb, b_const),
            q,
            in_place,
        );
    }

    fn want(&self) -> Vec<Vec<u8>> {
        let refs: Vec<&[u8]> = self.ins.iter().map(|v| &v[..]).collect();
        let mut outs: Vec<Vec<u8>> = self
            .p
            .outputs
            .iter()
            .map(|t| vec![0xa5; t.byte_size() as usize])
            .collect();
        let mut orefs: Vec<&mut [u8]> = outs.iter_mut().map(|v| &mut v[..]).collect();
        let mut arena = vec![0u8; self.p.arena_size as usize];
        exec::run(&self.p, &refs, &mut orefs, &mut arena).expect("exec::run");
        outs
    }

    fn jit(&self) -> Vec<Vec<u8>> {
        let jit = edgecc_cranelift::compile_jit(&self.p).expect("compile_jit");
        let model = edgecc_runtime::Model::new(jit.desc()).expect("descriptor");
        let refs: Vec<&[u8]> = self.ins.iter().map(|v| &v[..]).collect();
        // Pre-filled with a pattern, so unwritten elements show up.
        let mut outs: Vec<Vec<u8>> = self
            .p
            .outputs
            .iter()
            .map(|t| vec![0x5a; t.byte_size() as usize])
            .collect();
        let mut orefs: Vec<&mut [u8]> = outs.iter_mut().map(|v| &mut v[..]).collect();
        let (mut arena, off) = common::aligned(self.p.arena_size as usize);
        model
            .run(
                &refs,
                &mut orefs,
                &mut arena[off..off + self.p.arena_size as usize],
            )
            .expect("run");
        outs
    }

    /// Compares `got` with exec's outputs bit for bit.
    fn compare(&self, got: &[Vec<u8>], what: &str) {
        let want = self.want();
        for (o, (g, w)) in got.iter().zip(&want).enumerate() {
            if g != w {
                let i = g.iter().zip(w).position(|(a, b)| a != b).unwrap();
                panic!(
                    "{what}: output {o} (kernel {:?}) differs first at byte {i}: got {}, want {}",
                    kernel_of(&self.p, o),
                    g[i],
                    w[i]
                );
            }
        }
    }
}

/// Random `QBinary` parameters for operands of `a` and `b` into `y`: multipliers often
/// at the ends of their range (−2^30, 2^30 − 1), 30-bit ones as the fold-requant rule makes
/// them, small ones, ones with few significant bits (ties) and ones with a full low half
/// (`m & 0x7fff = 0x7fff`); shifts 16 and
/// 46, 24..=31 (the aarch64 Add's high-half form) and ones where results land mostly
/// inside the 8-bit range; zero points and clamp bounds often at the ends of their ranges.
fn qbinary_params(r: &mut Rng, a: DType, b: DType, y: DType) -> QBinary {
    let bounds = |d: DType| {
        if d == DType::U8 {
            (0, 255)
        } else {
            (-128, 127)
        }
    };
    let pick = |r: &mut Rng, (lo, hi): (i64, i64)| -> i32 {
        match r.next() % 4 {
            0 => lo as i32,
            1 => hi as i32,
            _ => r.range(lo, hi) as i32,
        }
    };
    let (mlo, mhi) = (-(1i64 << 30), (1i64 << 30) - 1);
    let mult = |r: &mut Rng| -> i32 {
        let sign = if r.next().is_multiple_of(2) { 1 } else { -1 };
        match r.next() % 8 {
            0 => mlo as i32,
            1 => mhi as i32,
            2 => ((r.range(-(1 << 15), (1 << 15) - 1) << 15) | 0x7fff) as i32,
            3 => (r.range(0, 1 << 16) * sign) as i32,
            4 => r.range(mlo, mhi) as i32,
            // Few significant bits: exact ties (`acc` an odd multiple of 2^(shift−1)) are
            // common, so rounding half up is tested.
            5 => ((r.range(1, 7) << r.range(14, 27)) * sign) as i32,
            _ => (r.range(1 << 28, mhi) * sign) as i32,
        }
    };
    let op = if r.next().is_multiple_of(2) {
        QBinaryOp::Add {
            ma: mult(r),
            mb: mult(r),
        }
    } else {
        QBinaryOp::Mul { m: mult(r) }
    };
    let shift = match r.next() % 6 {
        0 => 16,
        1 => 46,
        2 => r.range(24, 31) as u32,
        // Where results land mostly inside the 8-bit range for 30-bit multipliers: an
        // Add's sum is up to 2^39, a Mul's product 2^46.
        3 | 4 => match op {
            QBinaryOp::Add { .. } => r.range(27, 33) as u32,
            QBinaryOp::Mul { .. } => r.range(35, 41) as u32,
        },
        _ => r.range(16, 46) as u32,
    };
    let yb = bounds(y);
    let (l, h) = (pick(r, yb), pick(r, yb));
    QBinary {
        op,
        a_zero: pick(r, bounds(a)),
        b_zero: pick(r, bounds(b)),
        shift,
        dtype: y,
        zero_point: pick(r, yb),
        lo: l.min(h),
        hi: l.max(h),
    }
}

/// The kernel writing output `o`, for failure messages.
fn kernel_of(p: &Program, o: usize) -> String {
    let k = p
        .kernels
        .iter()
        .find(|k| {
            let out = match k {
                Kernel::QGemm { c, .. } => c.buf,
                Kernel::QConv { output, .. } | Kernel::Pool { output, .. } => *output,
                Kernel::QBinary { output, .. } => output.buf,
                Kernel::Copy { dst, .. } => *dst,
                _ => return false,
            };
            out == Buffer::Output(o as u32)
        })
        .unwrap();
    format!("{k:?}")
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(600)
        .collect()
}

fn window(k: (u32, u32), s: (u32, u32), d: (u32, u32), pads: [u32; 4]) -> Window {
    Window {
        kh: k.0,
        kw: k.1,
        stride_h: s.0,
        stride_w: s.1,
        dilation_h: d.0,
        dilation_w: d.1,
        pad_top: pads[0],
        pad_left: pads[1],
        pad_bottom: pads[2],
        pad_right: pads[3],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn qgemm_matches_exec(
        m in 1u32..20, n in 1u32..30, k in prop_oneof![1u32..20, 20u32..70],
        pad in 0u32..3, c_t: bool, bias: bool, q in quant(), seed: u64,
    ) {
        let mut s = Suite::new(seed);
        s.qgemm(m, n, k, pad, c_t, bias, q);
        s.compare(&s.jit(), "qgemm");
    }

    #[test]
    fn qconv_matches_exec(
        n in 1u32..3, cpg in 1u32..6, opg in 1u32..10, groups in 1u32..3,
        h in 1u32..9, w in 1u32..11, kh in 1u32..4, kw in 1u32..4,
        sh in 1u32..3, sw in 1u32..3, dh in 1u32..3, dw in 1u32..3,
        pads in proptest::array::uniform4(0u32..3), q in quant(), seed: u64,
    ) {
        let win = window((kh, kw), (sh, sw), (dh, dw), pads);
        let span = |k: u32, d: u32| (k - 1) * d + 1;
        prop_assume!(h + pads[0] + pads[2] >= span(kh, dh) && w + pads[1] + pads[3] >= span(kw, dw));
        let mut s = Suite::new(seed);
        s.qconv(n, cpg, opg, groups, (h, w), win, q);
        s.compare(&s.jit(), "qconv");
    }

    #[test]
    fn depthwise_qconv_matches_exec(
        c in 1u32..6, h in 1u32..12, w in 1u32..20, kh in 1u32..4, kw in 1u32..4,
        sh in 1u32..3, sw in 1u32..3, dil in 1u32..3,
        pads in proptest::array::uniform4(0u32..3), q in quant(), seed: u64,
    ) {
        let win = window((kh, kw), (sh, sw), (dil, dil), pads);
        let span = |k: u32| (k - 1) * dil + 1;
        prop_assume!(h + pads[0] + pads[2] >= span(kh) && w + pads[1] + pads[3] >= span(kw));
        let mut s = Suite::new(seed);
        s.qconv(1, 1, 1, c, (h, w), win, q);
        s.compare(&s.jit(), "depthwise qconv");
    }

    #[test]
    fn pointwise_qconv_matches_exec(
        n in 1u32..3, c_in in 1u32..40, c_out in 1u32..20, h in 1u32..9, w in 1u32..9,
        q in quant(), seed: u64,
    ) {
        let mut s = Suite::new(seed);
        s.qconv(n, c_in, c_out, 1, (h, w), window((1, 1), (1, 1), (1, 1), [0; 4]), q);
        s.compare(&s.jit(), "pointwise qconv");
    }

    #[test]
    fn qbinary_matches_exec(seed: u64) {
        let mut s = Suite::new(seed);
        let mut r = Rng(seed ^ 0x5bd1_e995);
        for _ in 0..4 {
            s.random_qbinary(&mut r);
        }
        s.compare(&s.jit(), "qbinary");
    }

    #[test]
    fn int_max_pool_matches_exec(
        signed: bool, c in 1u32..4, h in 1u32..12, w in 1u32..40, kh in 1u32..4, kw in 1u32..4,
        sh in 1u32..3, sw in 1u32..4, dil in 1u32..3,
        pads in proptest::array::uniform4(0u32..3), seed: u64,
    ) {
        let win = window((kh, kw), (sh, sw), (dil, dil), pads);
        let span = |k: u32| (k - 1) * dil + 1;
        prop_assume!(h + pads[0] + pads[2] >= span(kh) && w + pads[1] + pads[3] >= span(kw));
        let dtype = if signed { DType::I8 } else { DType::U8 };
        let mut s = Suite::new(seed);
        s.max_pool(dtype, c, (h, w), win);
        s.compare(&s.jit(), "int max pool");
    }
}

/// Fixed cases for the edges the random ones reach rarely: bigger shapes with full
/// tiles, n = 1, k multiples of 4 and 16, zero points at the ends of their ranges.
fn fixed_suite(seed: u64) -> Suite {
    let mut s = Suite::new(seed);
    let q = |dtype, runtime_zero, requant, shift| Quant {
        dtype,
        runtime_zero,
        requant,
        shift,
    };
    s.qgemm(
        64,
        48,
        64,
        0,
        false,
        true,
        q(DType::U8, false, Some((DType::U8, true)), 33),
    );
    s.qgemm(
        17,
        1,
        5,
        1,
        false,
        true,
        q(DType::I8, true, Some((DType::I8, false)), 30),
    );
    s.qgemm(1, 37, 128, 0, true, false, q(DType::U8, true, None, 30));
    s.qgemm(
        9,
        13,
        3,
        2,
        false,
        true,
        q(DType::I8, false, Some((DType::U8, true)), 2),
    );
    let w3 = window((3, 3), (1, 1), (1, 1), [1, 1, 1, 1]);
    s.qconv(
        1,
        8,
        16,
        1,
        (12, 12),
        w3,
        q(DType::U8, false, Some((DType::U8, true)), 35),
    );
    s.qconv(
        2,
        3,
        5,
        2,
        (7, 9),
        window((3, 2), (2, 1), (1, 2), [2, 0, 1, 1]),
        q(DType::I8, true, Some((DType::I8, false)), 31),
    );
    s.qconv(
        1,
        19,
        7,
        1,
        (5, 6),
        window((1, 1), (1, 1), (1, 1), [0; 4]),
        q(DType::U8, true, None, 30),
    );
    s.qconv(
        1,
        1,
        1,
        6,
        (9, 21),
        w3,
        q(DType::U8, false, Some((DType::U8, true)), 28),
    );
    s.qconv(
        1,
        1,
        1,
        3,
        (8, 11),
        window((3, 3), (2, 2), (1, 1), [0, 1, 1, 0]),
        q(DType::I8, true, Some((DType::I8, true)), 27),
    );
    // Depthwise with horizontal strides the padded-plane kernel leaves to the direct one.
    let w6 = window((3, 2), (1, 6), (1, 1), [1, 1, 1, 1]);
    s.qconv(
        1,
        1,
        1,
        3,
        (7, 40),
        w6,
        q(DType::U8, true, Some((DType::U8, true)), 29),
    );
    let w6 = window((2, 3), (2, 6), (1, 2), [0, 2, 1, 0]);
    s.qconv(1, 1, 1, 2, (6, 33), w6, q(DType::I8, false, None, 29));
    // Depthwise windows whose compactly packed weights take several 16-byte loads per
    // channel: 5 `sdot` rows, 20 widened taps, 10 tap pairs; 49 taps, 25 pairs.
    s.qconv(
        1,
        1,
        1,
        3,
        (9, 12),
        window((5, 4), (1, 1), (1, 1), [2, 1, 2, 2]),
        q(DType::U8, false, Some((DType::U8, true)), 30),
    );
    s.qconv(
        1,
        1,
        1,
        2,
        (10, 11),
        window((7, 7), (1, 1), (1, 1), [3, 3, 3, 3]),
        q(DType::I8, true, Some((DType::I8, false)), 31),
    );
    s.max_pool(
        DType::U8,
        2,
        (9, 37),
        window((3, 3), (1, 1), (1, 1), [1, 1, 1, 1]),
    );
    s.max_pool(
        DType::I8,
        3,
        (8, 35),
        window((2, 2), (2, 2), (1, 1), [0; 4]),
    );
    // Quantized Add/Mul: the vector path with tails, broadcasts along rows and along the
    // contiguous dim, the extreme products, saturation both ways, in place, transposed.
    let qb = |op, a_zero, b_zero, shift, dtype, zero_point, lo, hi| QBinary {
        op,
        a_zero,
        b_zero,
        shift,
        dtype,
        zero_point,
        lo,
        hi,
    };
    let (u, i) = (DType::U8, DType::I8);
    let add = |ma, mb| QBinaryOp::Add { ma, mb };
    let mul = |m| QBinaryOp::Mul { m };
    let (mmin, mmax) = (-(1 << 30), (1 << 30) - 1);
    let (no2, no3) = ([false; 2], [false; 3]);
    // cnn_qdq's residual Add (shift 30: the aarch64 high-half form, zero point folded).
    s.qbinary(
        &[1, 8, 6, 6],
        (u, &[false; 4], false),
        (u, &[false; 4], false),
        qb(add(1010138490, 528231573), 0, 127, 30, u, 63, 0, 255),
        false,
    );
    // A bias vector along the rows (i8 constant, shift 29).
    s.qbinary(
        &[2, 5, 37],
        (u, &no3, false),
        (i, &[true, true, false], true),
        qb(add(1047535616, 52363264), 128, 0, 29, u, 126, 0, 255),
        false,
    );
    // A broadcast along the contiguous dim, i8 operands scaled by 2^7 (shift 24), lo > −128.
    s.qbinary(
        &[3, 40],
        (i, &no2, false),
        (u, &[false, true], false),
        qb(add(-690290688, 613613568), -5, 3, 24, i, -20, -20, 127),
        false,
    );
    // Near i16 before the zero point: the high-half form without it in the constant.
    s.qbinary(
        &[2, 35],
        (u, &no2, false),
        (u, &no2, false),
        qb(add(mmax, mmax), 0, 0, 24, u, 255, 0, 255),
        false,
    );
    // Full low halves at shift 24 (operands scaled by 2^7): `L` comes near 2^31 and leaves
    // no room for the constant's low part, so the high-half form keeps it in 32 bits.
    s.qbinary(
        &[2, 40],
        (u, &no2, false),
        (u, &no2, false),
        qb(add(14876671, 13926399), 249, 14, 24, u, 199, 0, 255),
        false,
    );
    // The extreme Mul products: 255 · 255 · (2^30 − 1) at shift 46 (the contract's split
    // rounding), and −2^30 at shift 16 (saturation both ways).
    s.qbinary(
        &[2, 35],
        (u, &no2, false),
        (i, &no2, false),
        qb(mul(mmax), 255, -128, 46, i, -1, -128, 127),
        false,
    );
    s.qbinary(
        &[2, 35],
        (u, &no2, false),
        (i, &no2, false),
        qb(mul(mmin), 0, 127, 16, u, 255, 0, 255),
        false,
    );
    // Shift 31 (high halves without scaling), mixed signedness (x86_64 interleaves words).
    s.qbinary(
        &[2, 33],
        (i, &no2, false),
        (u, &no2, false),
        qb(add(mmin, (1 << 30) - 0x8000), 127, 0, 31, u, 0, 0, 255),
        false,
    );
    // The extreme Add at shift 16 in place (sums of 2^39 saturate both ways), and at 46.
    s.qbinary(
        &[4, 33],
        (i, &no2, false),
        (i, &no2, true),
        qb(add(mmin, mmax), 127, -128, 16, i, 0, -128, 127),
        true,
    );
    s.qbinary(
        &[4, 33],
        (u, &no2, false),
        (i, &no2, false),
        qb(add(mmax, mmin), 255, -128, 46, i, 127, -128, 127),
        false,
    );
    // `a` read with a row pitch wider than its rows (a column slice of a wider tensor) and
    // `b` a bias along the rows: the rows run innermost with one pointer per view.
    let (a_in, b_in) = (s.input(i, 5 * 48), s.input(u, 37));
    let out = s.output(u, 5 * 37);
    let view = |buf, offset, strides: &[i64]| View {
        buf,
        offset,
        strides: strides.to_vec(),
    };
    s.p.kernels.push(Kernel::QBinary {
        shape: vec![5, 37],
        a: view(a_in, 3, &[48, 1]),
        a_dtype: i,
        b: view(b_in, 0, &[0, 1]),
        b_dtype: u,
        q: qb(add(1056895193, 121045652), 5, 66, 30, u, 132, 0, 255),
        output: view(out, 0, &[37, 1]),
    });
    // Multipliers with few significant bits: exact ties everywhere (rounding half up), in
    // the high-half form (shift 29), the shifted one (21) and a folded Mul.
    s.qbinary(
        &[2, 40],
        (u, &no2, false),
        (u, &no2, false),
        qb(add(3 << 27, -(1 << 28)), 100, 50, 29, u, 128, 0, 255),
        false,
    );
    s.qbinary(
        &[2, 40],
        (i, &no2, false),
        (i, &no2, false),
        qb(add(5 << 20, 3 << 21), 0, 0, 21, i, 0, -128, 127),
        false,
    );
    s.qbinary(
        &[2, 40],
        (u, &no2, false),
        (i, &no2, false),
        qb(mul(1 << 29), 128, 0, 38, u, 128, 0, 255),
        false,
    );
    // Sums just above a rounding boundary by less than 2^15 (in units of 2^-k), where the
    // carry of `L + Cl` decides the result: `(x + y + 1)·2^(s−1) + x + 3y` with low bits in
    // the zero points' terms; the high-half form (shift 24) and the shifted one (20).
    s.qbinary(
        &[2, 40],
        (u, &no2, false),
        (u, &no2, false),
        qb(add((1 << 23) + 1, (1 << 23) + 3), 5, 3, 24, u, 7, 0, 255),
        false,
    );
    s.qbinary(
        &[2, 40],
        (u, &no2, false),
        (u, &no2, false),
        qb(add((1 << 19) + 1, (1 << 19) + 3), 5, 3, 20, u, 7, 0, 255),
        false,
    );
    // The largest Mul product, 255² · (2^30 − 1), at shift 46: `V` would pass 2^31, so the
    // contract's split rounding.
    s.qbinary(
        &[2, 40],
        (u, &no2, false),
        (u, &no2, false),
        qb(mul(mmax), 0, 0, 46, u, 0, 0, 255),
        false,
    );
    // Ties on the scalar path (`a` transposed: no contiguous dim).
    s.qbinary(
        &[6, 7],
        (u, &no2, true),
        (i, &no2, false),
        qb(add(3 << 27, -(1 << 28)), 100, 0, 29, u, 128, 0, 255),
        false,
    );
    // A Mul with a full low half, transposed `a` (scalar path), narrow clamp.
    s.qbinary(
        &[5, 19],
        (u, &no2, true),
        (u, &no2, false),
        qb(mul((12345 << 15) | 0x7fff), 0, 255, 38, u, 0, 3, 250),
        false,
    );
    // A vector Mul with the zero point folded, i8 output narrower on both sides.
    s.qbinary(
        &[3, 48],
        (i, &no2, false),
        (u, &[true, false], false),
        qb(mul(777777777), -128, 255, 38, i, 5, -100, 100),
        false,
    );
    s
}

/// A program may state more output rows and columns than its window geometry gives
/// (their taps fall outside the input, the definition sums nothing); the kernels must
/// neither read out of bounds nor differ from exec there.
#[test]
fn outputs_beyond_the_geometry_match_exec() {
    let q = Quant {
        dtype: DType::U8,
        runtime_zero: false,
        requant: Some((DType::U8, false)),
        shift: 30,
    };
    let w3 = window((3, 3), (1, 2), (1, 1), [1, 1, 1, 1]);
    let mut s = Suite::new(9);
    s.qconv(1, 1, 1, 3, (6, 9), w3, q);
    s.qconv(1, 2, 3, 1, (6, 9), w3, q);
    s.max_pool(DType::I8, 2, (6, 9), w3);
    for i in 0..s.p.kernels.len() {
        let (Kernel::QConv { spatial, .. } | Kernel::Pool { spatial, .. }) = &mut s.p.kernels[i]
        else {
            unreachable!()
        };
        spatial.out_h += 2;
        spatial.out_w += 3;
        let per = (spatial.out_h * spatial.out_w) as u64;
        let t = &mut s.p.outputs[i];
        t.shape = vec![t.shape[0] / ((spatial.out_h - 2) * (spatial.out_w - 3)) as u64 * per];
        // A scratch sized for the new geometry.
        if let Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial,
            window,
            scratch: Some(_),
            ..
        } = s.p.kernels[i]
        {
            let need = Kernel::qconv_scratch_bytes(c_in, c_out, groups, &spatial, &window);
            let b = s.arena(need);
            if let Kernel::QConv { scratch, .. } = &mut s.p.kernels[i] {
                *scratch = Some(b);
            }
        }
    }
    s.compare(&s.jit(), "outputs beyond the geometry");
}

#[test]
fn fixed_cases_match_exec_on_the_jit() {
    let s = fixed_suite(7);
    s.compare(&s.jit(), "fixed cases (JIT)");
}

fn tool(name: &str) {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "`{name}` is required for the aarch64 test (apt install qemu-user gcc-aarch64-linux-gnu); it is missing"
    );
}

/// Compiles `s` for `target`, links it with the C harness and runs it under
/// `qemu-aarch64 -cpu <cpu>`; returns the outputs.
fn run_aarch64(s: &Suite, target: &str, cpu: &str, dir: &Path) -> Vec<Vec<u8>> {
    let target: Target = target.parse().unwrap();
    let obj = compile_object(&s.p, &target, &ObjectOptions::default()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let o = dir.join("q.o");
    std::fs::write(&o, &obj.bytes).unwrap();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/c/edgecc_harness.c");
    let exe = dir.join("harness");
    let out = Command::new("aarch64-linux-gnu-gcc")
        .args(["-static", "-O2", "-Wall", "-Werror"])
        .arg(format!("-DEDGECC_MODEL={}_model", s.p.name))
        .arg(&harness)
        .arg(&o)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "link failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new("qemu-aarch64");
    cmd.args(["-cpu", cpu]).arg(&exe);
    for (i, v) in s.ins.iter().enumerate() {
        let f = dir.join(format!("in{i}.bin"));
        std::fs::write(&f, v).unwrap();
        cmd.arg(f);
    }
    cmd.arg("--");
    let outs: Vec<_> = (0..s.p.outputs.len())
        .map(|i| dir.join(format!("out{i}.bin")))
        .collect();
    cmd.args(&outs);
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "harness failed ({}): {}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    outs.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Random cases in one program per seed, for aarch64.
fn random_suite(seed: u64) -> Suite {
    let mut s = Suite::new(seed);
    let mut r = Rng(seed ^ 0x9e37_79b9);
    for i in 0..16 {
        // Four quantized Add/Mul cases after the twelve GEMM, convolution and pool cases.
        if i >= 12 {
            s.random_qbinary(&mut r);
            continue;
        }
        let q = Quant {
            dtype: if r.next().is_multiple_of(2) {
                DType::U8
            } else {
                DType::I8
            },
            runtime_zero: r.next().is_multiple_of(2),
            requant: match r.next() % 5 {
                0 => None,
                1 => Some((DType::U8, false)),
                2 => Some((DType::U8, true)),
                3 => Some((DType::I8, false)),
                _ => Some((DType::I8, true)),
            },
            shift: if r.next().is_multiple_of(4) {
                r.range(1, 62) as u32
            } else {
                r.range(24, 40) as u32
            },
        };
        let d = |r: &mut Rng, lo: i64, hi: i64| r.range(lo, hi) as u32;
        match i % 4 {
            0 => {
                let (m, n, k) = (d(&mut r, 1, 30), d(&mut r, 1, 40), d(&mut r, 1, 80));
                s.qgemm(
                    m,
                    n,
                    k,
                    d(&mut r, 0, 2),
                    r.next().is_multiple_of(2),
                    r.next().is_multiple_of(2),
                    q,
                );
            }
            1 | 2 => {
                let (kh, kw) = (d(&mut r, 1, 3), d(&mut r, 1, 3));
                let groups = if i % 4 == 2 {
                    d(&mut r, 2, 5)
                } else {
                    d(&mut r, 1, 2)
                };
                let (cpg, opg) = if i % 4 == 2 {
                    (1, 1)
                } else {
                    (d(&mut r, 1, 9), d(&mut r, 1, 20))
                };
                let pads = [0; 4].map(|_| d(&mut r, 0, 1));
                let win = window(
                    (kh, kw),
                    (d(&mut r, 1, 2), d(&mut r, 1, 2)),
                    (1, d(&mut r, 1, 2)),
                    pads,
                );
                s.qconv(
                    1,
                    cpg,
                    opg,
                    groups,
                    (d(&mut r, 5, 11), d(&mut r, 6, 23)),
                    win,
                    q,
                );
            }
            _ => {
                let dtype = q.dtype;
                let win = window(
                    (3, 3),
                    (d(&mut r, 1, 2), d(&mut r, 1, 2)),
                    (1, 1),
                    [1, 1, 1, 1],
                );
                s.max_pool(
                    dtype,
                    d(&mut r, 1, 3),
                    (d(&mut r, 3, 9), d(&mut r, 3, 40)),
                    win,
                );
            }
        }
    }
    s
}

/// The integer kernels on aarch64 under qemu, bit for bit against exec: with the dot
/// product extension (`sdot`, run on a Cortex-A76, which has no i8mm, so a stray `usdot`
/// would fault) and without (the widening tree, run on a Cortex-A53, which has no dot
/// product).
#[test]
fn aarch64_integer_kernels_under_qemu() {
    tool("aarch64-linux-gnu-gcc");
    tool("qemu-aarch64");
    let dir = std::env::temp_dir().join(format!("edgecc-qkernels-{}", std::process::id()));
    let mut suites = vec![fixed_suite(11)];
    suites.extend((0..3).map(|i| random_suite(1000 + i)));
    for (i, s) in suites.iter().enumerate() {
        for (target, cpu) in [
            ("aarch64-neon+dotprod", "cortex-a76"),
            ("aarch64-neon", "cortex-a53"),
        ] {
            let got = run_aarch64(s, target, cpu, &dir.join(format!("{i}-{cpu}")));
            s.compare(&got, &format!("suite {i} on {target} ({cpu})"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dot product is one `sdot` with `+dotprod` and absent without; x86_64 uses `pmaddwd`.
#[test]
fn dot_products_compile_to_the_intended_instructions() {
    let mut s = Suite::new(3);
    let q = Quant {
        dtype: DType::U8,
        runtime_zero: false,
        requant: Some((DType::U8, true)),
        shift: 32,
    };
    s.qgemm(16, 24, 64, 0, false, true, q);
    let count = |listing: &str, insn: &str| {
        listing
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(insn))
            .count()
    };
    let dot = emit_clif(&s.p, &"aarch64-neon+dotprod".parse().unwrap()).unwrap();
    assert!(count(&dot, "sdot") >= 24, "no sdot with +dotprod:\n{dot}");
    let plain = emit_clif(&s.p, &"aarch64-neon".parse().unwrap()).unwrap();
    assert_eq!(count(&plain, "sdot"), 0);
    assert!(count(&plain, "smull") > 0 && count(&plain, "saddlp") > 0);
    let x64 = emit_clif(&s.p, &"x86_64".parse().unwrap()).unwrap();
    assert!(count(&x64, "pmaddwd") >= 16, "no pmaddwd on x86_64");
    assert_eq!(count(&x64, "pmaddubsw"), 0);
}

/// Fastest wall time of one run of `p` on the JIT (the machine is shared, so the minimum
/// over 31 batches of 10 runs is the least noisy), in microseconds.
fn time_jit(p: &Program, ins: &[Vec<u8>]) -> f64 {
    let jit = edgecc_cranelift::compile_jit(p).expect("compile_jit");
    let model = edgecc_runtime::Model::new(jit.desc()).expect("descriptor");
    let refs: Vec<&[u8]> = ins.iter().map(|v| &v[..]).collect();
    let mut outs: Vec<Vec<u8>> = p
        .outputs
        .iter()
        .map(|t| vec![0; t.byte_size() as usize])
        .collect();
    let (mut arena, off) = common::aligned(p.arena_size as usize);
    let mut times = Vec::new();
    for _ in 0..31 {
        let mut orefs: Vec<&mut [u8]> = outs.iter_mut().map(|v| &mut v[..]).collect();
        let t0 = std::time::Instant::now();
        for _ in 0..10 {
            model
                .run(
                    &refs,
                    &mut orefs,
                    &mut arena[off..off + p.arena_size as usize],
                )
                .expect("run");
        }
        times.push(t0.elapsed().as_secs_f64() * 1e5);
    }
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Guest instructions per run of `p` compiled for `target`, counted by the aarch64
/// instruction counter (`/work/shared/aarch64-insn/count.py`, or `$AARCH64_INSN_DIR`) on a
/// Cortex-A76; `None` when the counter is not installed.
fn a64_count(p: &Program, ins: &[Vec<u8>], target: &str, dir: &Path) -> Option<f64> {
    let tool = std::env::var_os("AARCH64_INSN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/aarch64-insn")
        });
    if !tool.join("count.py").exists() {
        return None;
    }
    let target: Target = target.parse().unwrap();
    let obj = compile_object(p, &target, &ObjectOptions::default()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("m.o"), &obj.bytes).unwrap();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/c/edgecc_harness.c");
    let exe = dir.join("harness");
    let st = Command::new("aarch64-linux-gnu-gcc")
        .args(["-static", "-O2"])
        .arg(format!("-DEDGECC_MODEL={}_model", p.name))
        .arg(&harness)
        .arg(dir.join("m.o"))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(st.success());
    let mut cmd = Command::new("python3");
    cmd.arg(tool.join("count.py"))
        .args(["--k", "3", "exe"])
        .arg(&exe);
    for (i, v) in ins.iter().enumerate() {
        let f = dir.join(format!("in{i}.bin"));
        std::fs::write(&f, v).unwrap();
        cmd.arg(f);
    }
    cmd.arg("--");
    for i in 0..p.outputs.len() {
        cmd.arg(dir.join(format!("out{i}.bin")));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .split(": ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(n)
}

/// Speed of the integer kernels against the f32 kernels of the same shape: a QGemm
/// 64×256×256 against a Gemm with constant B, a 3×3 QConv 32→32 on 32×32 (pad 1) and a
/// depthwise one on 32 channels against the f32 Conv, u8 max pooling against f32. JIT wall time on this machine and, when the counter is installed, aarch64
/// guest instructions on a Cortex-A76 with and without `+dotprod`. Not a CI test:
///
///     cargo test -p edgecc-cranelift --test qkernels -- --ignored --nocapture
#[test]
#[ignore]
fn integer_kernels_speed_against_f32() {
    use edgecc_program::Activation;
    let q = Quant {
        dtype: DType::U8,
        runtime_zero: false,
        requant: Some((DType::U8, true)),
        shift: 36,
    };
    let mut g = Suite::new(1);
    g.qgemm(64, 256, 256, 0, false, true, q);
    let fg = common::gemm_program(
        1,
        64,
        256,
        256,
        false,
        false,
        false,
        true,
        false,
        Some("row"),
        Activation::None,
        1.0,
    );
    let w3 = window((3, 3), (1, 1), (1, 1), [1, 1, 1, 1]);
    let mut c = Suite::new(2);
    c.qconv(1, 32, 32, 1, (32, 32), w3, q);
    let fc = common::conv_program(1, 32, 32, 1, 32, 32, w3, true, Activation::None);
    let mut d = Suite::new(3);
    d.qconv(1, 1, 1, 32, (32, 32), w3, q);
    let fd = common::conv_program(1, 32, 32, 32, 32, 32, w3, true, Activation::None);
    let pw = window((3, 3), (2, 2), (1, 1), [1, 1, 1, 1]);
    let mut mp = Suite::new(4);
    mp.max_pool(DType::U8, 32, (64, 64), pw);
    let fmp = common::pool_program(PoolKind::Max, 32, 64, 64, pw);
    let f32_ins = |p: &Program| -> Vec<Vec<u8>> {
        common::inputs_for(p, 1)
            .iter()
            .map(|v| common::bytes(v))
            .collect()
    };
    let dir = std::env::temp_dir().join(format!("edgecc-qbench-{}", std::process::id()));
    for (what, qp, qi, fp) in [
        ("gemm 64x256x256", &g.p, &g.ins, &fg),
        ("conv 3x3 32->32 32x32", &c.p, &c.ins, &fc),
        ("depthwise 3x3 32ch 32x32", &d.p, &d.ins, &fd),
        ("max pool 3x3/2 32ch 64x64", &mp.p, &mp.ins, &fmp),
    ] {
        let fi = f32_ins(fp);
        let (tq, tf) = (time_jit(qp, qi), time_jit(fp, &fi));
        println!(
            "{what}: x86_64 JIT int8 {tq:.1} us, f32 {tf:.1} us, f32/int8 {:.2}",
            tf / tq
        );
        for target in ["aarch64-neon+dotprod", "aarch64-neon"] {
            let d = dir.join(target);
            let (Some(nq), Some(nf)) = (
                a64_count(qp, qi, target, &d.join("q")),
                a64_count(fp, &fi, target, &d.join("f")),
            ) else {
                println!("  (aarch64 instruction counter not installed)");
                break;
            };
            println!(
                "  {target} on cortex-a76: int8 {nq:.0} instructions, f32 {nf:.0}, f32/int8 {:.2}",
                nf / nq
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `UnaryOp::Round` (QuantizeLinear's rounding) bit for bit against exec, on the JIT and
/// on aarch64 under qemu: ties to even at every magnitude, `±0`, `±inf`, NaN, values
/// past 2^23 (already integers); one instruction per vector (`roundps`, `frintn`), no
/// call.
#[test]
fn round_is_exact_and_one_instruction() {
    use edgecc_program::{ExprNode, UnaryOp};
    let mut v: Vec<f32> = vec![
        0.5,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.5,
        0.49999997,
        -0.49999997,
        8388607.5,
        -8388607.5,
        8388609.0,
        1e30,
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        -1e-40,
        254.5,
        255.5,
        -128.5,
    ];
    let mut r = Rng(5);
    while v.len() < 61 {
        v.push((r.range(-2000, 2000) as f32) / 4.0);
    }
    let n = v.len() as u64;
    let mut s = Suite::new(1);
    let x = s.input(DType::F32, n);
    s.ins[0] = common::bytes(&v);
    let y = s.output(DType::F32, n);
    s.p.kernels.push(Kernel::Elementwise {
        shape: vec![n],
        inputs: vec![View {
            buf: x,
            offset: 0,
            strides: vec![1],
        }],
        expr: vec![ExprNode::Input(0), ExprNode::Unary(UnaryOp::Round, 0)],
        output: View {
            buf: y,
            offset: 0,
            strides: vec![1],
        },
    });
    s.compare(&s.jit(), "round (JIT)");
    let dir = std::env::temp_dir().join(format!("edgecc-round-{}", std::process::id()));
    let got = run_aarch64(&s, "aarch64-neon", "cortex-a53", &dir);
    s.compare(&got, "round (aarch64)");
    let _ = std::fs::remove_dir_all(&dir);
    let count = |listing: &str, insn: &str| {
        listing
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(insn))
            .count()
    };
    let x64 = emit_clif(&s.p, &"x86_64".parse().unwrap()).unwrap();
    assert!(
        count(&x64, "roundps") >= 1 && count(&x64, "roundss") >= 1,
        "{x64}"
    );
    assert!(!x64.contains("nearbyint"), "a libcall for nearest");
    let a64 = emit_clif(&s.p, &"aarch64-neon".parse().unwrap()).unwrap();
    assert!(count(&a64, "frintn") >= 2, "{a64}");
}

/// The integer kernels call nothing (no libcall for a shuffle, a 64-bit shift or a stack
/// probe): the objects of the fixed cases have no undefined symbols on every target.
#[test]
fn integer_kernels_import_nothing() {
    let mut s = fixed_suite(5);
    // Stack areas near the 64 KiB limit (a padded plane, packed words).
    let q = Quant {
        dtype: DType::U8,
        runtime_zero: false,
        requant: Some((DType::U8, false)),
        shift: 30,
    };
    let w3 = window((3, 3), (1, 1), (1, 1), [1, 1, 1, 1]);
    s.qconv(1, 1, 1, 1, (240, 250), w3, q);
    s.qconv(
        1,
        1000,
        30,
        1,
        (4, 4),
        window((1, 1), (1, 1), (1, 1), [0; 4]),
        q,
    );
    let dir = std::env::temp_dir().join(format!("edgecc-qnm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for t in [
        "x86_64",
        "x86_64+avx+avx2+fma",
        "aarch64-neon",
        "aarch64-neon+dotprod",
        "aarch64-unknown-none+dotprod",
    ] {
        let obj = compile_object(&s.p, &t.parse().unwrap(), &ObjectOptions::default()).unwrap();
        let o = dir.join("q.o");
        std::fs::write(&o, &obj.bytes).unwrap();
        let out = Command::new("nm")
            .arg("-u")
            .arg(&o)
            .output()
            .expect("nm (binutils) is required");
        assert!(out.status.success());
        let undefined = String::from_utf8_lossy(&out.stdout);
        assert!(
            undefined.trim().is_empty(),
            "{t}: undefined symbols:\n{undefined}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Int8 weights stay about 1 byte each in the object (an int8 model is shipped to save
/// flash): per kernel, the object's constants (packed weights, per-channel tables, biases
/// read in place) stay within 1.3× the weights' bytes plus 32 bytes per output channel
/// on every target. A layout that replicates weights across the 4 lanes (4×) or splats
/// them to `i16` (16×) fails.
#[test]
fn packed_weights_take_about_one_byte_each() {
    let q = Quant {
        dtype: DType::U8,
        runtime_zero: false,
        requant: Some((DType::U8, true)),
        shift: 34,
    };
    let w3 = window((3, 3), (1, 1), (1, 1), [1, 1, 1, 1]);
    let w7 = window((7, 7), (1, 1), (1, 1), [3, 3, 3, 3]);
    // (what, program, weights, output channels)
    let mut cases: Vec<(&str, Suite, u64, u64)> = Vec::new();
    let mut s = Suite::new(1);
    s.qconv(1, 32, 32, 1, (8, 8), w3, q);
    cases.push(("conv 3x3 32->32", s, 32 * 32 * 9, 32));
    let mut s = Suite::new(2);
    s.qconv(
        1,
        8,
        12,
        2,
        (9, 9),
        window((5, 5), (1, 1), (1, 1), [2; 4]),
        q,
    );
    cases.push(("grouped conv 5x5 16->24", s, 24 * 8 * 25, 24));
    let mut s = Suite::new(3);
    s.qconv(1, 1, 1, 64, (10, 10), w3, q);
    s.qconv(1, 1, 1, 64, (10, 10), w7, q);
    cases.push(("depthwise 3x3 + 7x7 64ch", s, 64 * 9 + 64 * 49, 128));
    let mut s = Suite::new(4);
    s.qgemm(8, 128, 96, 0, false, true, q);
    cases.push(("gemm 96x128", s, 96 * 128, 128));
    for t in ["x86_64", "aarch64-neon", "aarch64-neon+dotprod"] {
        for (what, s, weights, channels) in &cases {
            let obj = compile_object(&s.p, &t.parse().unwrap(), &ObjectOptions::default()).unwrap();
            println!(
                "{t} {what}: {} bytes of constants for {weights} weights",
                obj.const_bytes
            );
            assert!(
                obj.const_bytes * 10 <= weights * 13 + 320 * channels,
                "{t} {what}: {} bytes of constants for {weights} int8 weights",
                obj.const_bytes
            );
        }
    }
}

/// Malformed QBinary kernels are refused by the checker (and by exec) instead of becoming
/// out-of-bounds code: views past a buffer's end or with the wrong rank, parameters
/// outside `QBinary::check`'s ranges, an output in an input.
#[test]
fn malformed_qbinary_kernels_are_refused() {
    let q = QBinary {
        op: QBinaryOp::Add {
            ma: 100 << 20,
            mb: 200 << 20,
        },
        a_zero: 128,
        b_zero: 0,
        shift: 30,
        dtype: DType::U8,
        zero_point: 3,
        lo: 0,
        hi: 255,
    };
    let v = |buf, offset, strides: &[i64]| View {
        buf,
        offset,
        strides: strides.to_vec(),
    };
    let k = |a: View, b: View, q: QBinary, output: View| Kernel::QBinary {
        shape: vec![2, 8],
        a,
        a_dtype: DType::U8,
        b,
        b_dtype: DType::I8,
        q,
        output,
    };
    let (a, b, y) = (Buffer::Input(0), Buffer::Input(1), Buffer::Output(0));
    let good = k(
        v(a, 0, &[8, 1]),
        v(b, 0, &[0, 1]),
        q.clone(),
        v(y, 0, &[8, 1]),
    );
    let with = |f: &dyn Fn(&mut QBinary)| {
        let mut q = q.clone();
        f(&mut q);
        k(v(a, 0, &[8, 1]), v(b, 0, &[0, 1]), q, v(y, 0, &[8, 1]))
    };
    let bad = [
        // a reads one element past its 16 bytes; b's broadcast row past its 8.
        k(
            v(a, 1, &[8, 1]),
            v(b, 0, &[0, 1]),
            q.clone(),
            v(y, 0, &[8, 1]),
        ),
        k(
            v(a, 0, &[8, 1]),
            v(b, 1, &[0, 1]),
            q.clone(),
            v(y, 0, &[8, 1]),
        ),
        // The output's last row past its end; a view of the wrong rank.
        k(
            v(a, 0, &[8, 1]),
            v(b, 0, &[0, 1]),
            q.clone(),
            v(y, 0, &[9, 1]),
        ),
        k(v(a, 0, &[1]), v(b, 0, &[0, 1]), q.clone(), v(y, 0, &[8, 1])),
        // An output in an input.
        k(
            v(a, 0, &[8, 1]),
            v(b, 0, &[0, 1]),
            q.clone(),
            v(a, 0, &[8, 1]),
        ),
        with(&|q| q.shift = 15),
        with(&|q| q.shift = 47),
        with(&|q| q.op = QBinaryOp::Add { ma: 1 << 30, mb: 1 }),
        with(&|q| q.op = QBinaryOp::Mul { m: -(1 << 30) - 1 }),
        with(&|q| q.a_zero = 256),
        with(&|q| q.b_zero = 128),
        with(&|q| q.zero_point = -1),
        with(&|q| (q.lo, q.hi) = (9, 8)),
        with(&|q| (q.dtype, q.hi) = (DType::I8, 200)),
        with(&|q| q.dtype = DType::I32),
    ];
    let program = |k: Kernel| Program {
        name: "q".into(),
        inputs: vec![
            IoTensor {
                name: "a".into(),
                dtype: DType::U8,
                shape: vec![2, 8],
            },
            IoTensor {
                name: "b".into(),
                dtype: DType::I8,
                shape: vec![8],
            },
        ],
        outputs: vec![IoTensor {
            name: "y".into(),
            dtype: DType::U8,
            shape: vec![2, 8],
        }],
        arena_size: 0,
        arena_align: 64,
        consts: vec![],
        kernels: vec![k],
    };
    let run_exec = |p: &Program| {
        let ins = [vec![7u8; 16], vec![9u8; 8]];
        let refs: Vec<&[u8]> = ins.iter().map(|b| &b[..]).collect();
        let mut out = [0u8; 16];
        exec::run(p, &refs, &mut [&mut out[..]], &mut [])
    };
    // The well-formed kernel compiles and runs, so the refusals below are about the flaw.
    let p = program(good);
    assert!(edgecc_cranelift::compile_jit(&p).is_ok());
    assert!(run_exec(&p).is_ok());
    for k in bad {
        let p = program(k.clone());
        assert!(edgecc_cranelift::compile_jit(&p).is_err(), "accepted {k:?}");
        assert!(run_exec(&p).is_err(), "exec accepted {k:?}");
    }
}
