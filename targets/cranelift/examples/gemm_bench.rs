//! Quick throughput check of the generated GEMM on the host (JIT):
//! `cargo run -p edgecc-cranelift --example gemm_bench [m n k]`, then a 3×3 convolution
//! (64→64 channels, 56×56, pad 1) and a depthwise one.
//!
//! Without `m n k` it runs 256³ and the GEMM shapes of all-MiniLM-L6-v2 at sequence 128.
//! On x86_64 it first measures the host's 128-bit FMA peak (12 independent `vfmadd231ps
//! xmm` chains in inline assembly, so the figure does not depend on this example's build
//! profile) and reports each GEMM as a fraction of it: Cranelift emits 128-bit vectors only,
//! so that peak, not the AVX-512 one, is what the generated code can reach.
//!
//! The generated code is the same whatever profile this example is built with, so a
//! debug build measures it fine.

use std::time::Instant;

use edgecc_program::{
    Activation, Buffer, Const, ConstId, DType, IoTensor, Kernel, Program, Spatial, View, Window,
};

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let shapes = match args[..] {
        [m, n, k] => vec![(m, n, k)],
        // 256³, then MiniLM's projections (Q/K/V/out, FFN up, FFN down).
        _ => vec![
            (256, 256, 256),
            (128, 384, 384),
            (128, 1536, 384),
            (128, 384, 1536),
        ],
    };
    let peak = fma_peak_gflops();
    if let Some(p) = peak {
        println!("128-bit FMA peak of this core: {p:.1} GFLOP/s");
    }
    for (m, n, k) in shapes {
        gemm(m, n, k, peak);
    }
    conv(64, 1, 56, 1);
    conv(64, 64, 56, 1);
    conv(64, 1, 56, 2);
}

/// Floating-point operations per second of 128-bit FMAs on one core: 12 independent
/// chains (enough to cover FMA latency × ports on current x86 cores).
#[cfg(target_arch = "x86_64")]
fn fma_peak_gflops() -> Option<f64> {
    if !std::arch::is_x86_feature_detected!("fma") {
        return None;
    }
    let iters: u64 = 1_000_000;
    let mut best = f64::MAX;
    // Short rounds, best of many: the one statistic a busy machine cannot inflate.
    for _ in 0..200 {
        let t = Instant::now();
        // SAFETY: FMA is present (checked above); the loop touches only xmm0-xmm13 and
        // the counter, all declared as clobbered or operands.
        unsafe {
            std::arch::asm!(
                "vxorps xmm0, xmm0, xmm0",
                "vxorps xmm1, xmm1, xmm1",
                "vxorps xmm2, xmm2, xmm2",
                "vxorps xmm3, xmm3, xmm3",
                "vxorps xmm4, xmm4, xmm4",
                "vxorps xmm5, xmm5, xmm5",
                "vxorps xmm6, xmm6, xmm6",
                "vxorps xmm7, xmm7, xmm7",
                "vxorps xmm8, xmm8, xmm8",
                "vxorps xmm9, xmm9, xmm9",
                "vxorps xmm10, xmm10, xmm10",
                "vxorps xmm11, xmm11, xmm11",
                "vxorps xmm12, xmm12, xmm12",
                "vxorps xmm13, xmm13, xmm13",
                "2:",
                "vfmadd231ps xmm0, xmm12, xmm13",
                "vfmadd231ps xmm1, xmm12, xmm13",
                "vfmadd231ps xmm2, xmm12, xmm13",
                "vfmadd231ps xmm3, xmm12, xmm13",
                "vfmadd231ps xmm4, xmm12, xmm13",
                "vfmadd231ps xmm5, xmm12, xmm13",
                "vfmadd231ps xmm6, xmm12, xmm13",
                "vfmadd231ps xmm7, xmm12, xmm13",
                "vfmadd231ps xmm8, xmm12, xmm13",
                "vfmadd231ps xmm9, xmm12, xmm13",
                "vfmadd231ps xmm10, xmm12, xmm13",
                "vfmadd231ps xmm11, xmm12, xmm13",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                out("xmm12") _, out("xmm13") _,
                options(nostack, nomem),
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    // 12 FMAs of 4 lanes, 2 flops each, per iteration.
    Some(iters as f64 * 12.0 * 4.0 * 2.0 / best / 1e9)
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak_gflops() -> Option<f64> {
    None
}

fn gemm(m: u32, n: u32, k: u32, peak: Option<f64>) {
    for b_const in [true, false] {
        let b_buf = if b_const {
            Buffer::Const(ConstId(0))
        } else {
            Buffer::Input(1)
        };
        let mut inputs = vec![IoTensor {
            name: "a".into(),
            dtype: DType::F32,
            shape: vec![m as u64, k as u64],
        }];
        if !b_const {
            inputs.push(IoTensor {
                name: "b".into(),
                dtype: DType::F32,
                shape: vec![k as u64, n as u64],
            });
        }
        let bdata: Vec<u8> = (0..k * n)
            .flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes())
            .collect();
        let p = Program {
            name: "bench".into(),
            inputs,
            outputs: vec![IoTensor {
                name: "c".into(),
                dtype: DType::F32,
                shape: vec![m as u64, n as u64],
            }],
            arena_size: 0,
            arena_align: 64,
            consts: vec![Const {
                name: "b".into(),
                dtype: DType::F32,
                shape: vec![k as u64, n as u64],
                data: bdata.clone(),
            }],
            kernels: vec![Kernel::Gemm {
                batch: 1,
                m,
                n,
                k,
                a: View {
                    buf: Buffer::Input(0),
                    offset: 0,
                    strides: vec![0, k as i64, 1],
                },
                b: View {
                    buf: b_buf,
                    offset: 0,
                    strides: vec![0, n as i64, 1],
                },
                alpha: 1.0,
                bias: None,
                residual: None,
                act: Activation::None,
                c: View {
                    buf: Buffer::Output(0),
                    offset: 0,
                    strides: vec![0, n as i64, 1],
                },
            }],
        };
        if std::env::var_os("EMIT").is_some() {
            let t = edgecc_cranelift::Target::host().unwrap();
            println!("{}", edgecc_cranelift::emit_clif(&p, &t).unwrap());
        }
        let t0 = Instant::now();
        let jit = edgecc_cranelift::compile_jit(&p).expect("compile");
        let compile = t0.elapsed();
        let model = edgecc_runtime::Model::new(jit.desc()).unwrap();
        let a = vec![0u8; (m * k * 4) as usize];
        let ins: Vec<&[u8]> = if b_const { vec![&a] } else { vec![&a, &bdata] };
        let mut c = vec![0u8; (m * n * 4) as usize];
        let flops = 2.0 * m as f64 * n as f64 * k as f64;
        let reps = ((2e9 / flops) as usize).max(3);
        // Even an empty arena must be 64-byte aligned for the runtime's check.
        let mut arena = [0u8; 128];
        let off = arena.as_ptr().align_offset(64);
        // The fastest of many single runs: on a shared, loaded machine the minimum is the
        // one statistic other processes cannot inflate.
        let mut best = f64::MAX;
        for _ in 0..5 * reps {
            let t = Instant::now();
            model
                .run(&ins, &mut [&mut c], &mut arena[off..off])
                .unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gflops = flops / best / 1e9;
        println!(
            "gemm {m}x{n}x{k}, B {}: {gflops:.1} GFLOP/s{}, {} bytes of code, compiled in {:.1} ms",
            if b_const {
                "constant (packed)"
            } else {
                "input"
            },
            peak.map(|p| format!(" ({:.0} % of peak)", 100.0 * gflops / p))
                .unwrap_or_default(),
            jit.text_bytes(),
            compile.as_secs_f64() * 1e3
        );
    }
}

/// Times a convolution (im2col + GEMM, or the depthwise window kernel).
fn conv(c: u32, groups: u32, hw: u32, stride: u32) {
    let w = Window {
        kh: 3,
        kw: 3,
        stride_h: stride,
        stride_w: stride,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 1,
        pad_left: 1,
        pad_bottom: 1,
        pad_right: 1,
    };
    let ohw = (hw - 1) / stride + 1;
    let s = Spatial {
        n: 1,
        in_h: hw,
        in_w: hw,
        out_h: ohw,
        out_w: ohw,
    };
    let scratch = Kernel::conv_scratch_bytes(c, c, groups, &s, &w);
    let f32s = |n: u32| IoTensor {
        name: "x".into(),
        dtype: DType::F32,
        shape: vec![n as u64],
    };
    let wlen = c * c / groups * 9;
    let p = Program {
        name: "conv".into(),
        inputs: vec![f32s(c * hw * hw)],
        outputs: vec![f32s(c * ohw * ohw)],
        arena_size: scratch.div_ceil(64) * 64,
        arena_align: 64,
        consts: vec![Const {
            name: "w".into(),
            dtype: DType::F32,
            shape: vec![wlen as u64],
            data: vec![0; wlen as usize * 4],
        }],
        kernels: vec![Kernel::Conv {
            c_in: c,
            c_out: c,
            groups,
            spatial: s,
            window: w,
            input: Buffer::Input(0),
            weight: ConstId(0),
            bias: None,
            residual: None,
            act: Activation::Relu,
            output: Buffer::Output(0),
            scratch: (scratch > 0).then_some(Buffer::Arena { offset: 0 }),
        }],
    };
    let jit = edgecc_cranelift::compile_jit(&p).expect("compile");
    let model = edgecc_runtime::Model::new(jit.desc()).unwrap();
    let x = vec![0u8; (c * hw * hw * 4) as usize];
    let mut y = vec![0u8; (c * ohw * ohw * 4) as usize];
    let mut arena = vec![0u8; p.arena_size as usize + 64];
    let off = arena.as_ptr().align_offset(64);
    let flops = 2.0 * (c as f64 / groups as f64) * c as f64 * 9.0 * (ohw * ohw) as f64;
    let mut best = f64::MAX;
    for _ in 0..40 {
        let t = Instant::now();
        model
            .run(
                &[&x],
                &mut [&mut y],
                &mut arena[off..off + p.arena_size as usize],
            )
            .unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "conv 3x3 {c}->{c} groups {groups} {hw}x{hw} stride {stride}: {:.2} ms, {:.1} GFLOP/s",
        best * 1e3,
        flops / best / 1e9
    );
}
