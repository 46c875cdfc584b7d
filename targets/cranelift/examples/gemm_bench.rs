//! Quick throughput check of the generated GEMM on the host (JIT):
//! `cargo run -p edgecc-cranelift --example gemm_bench [m n k]`.
//!
//! The generated code is the same whatever profile this example is built with, so a
//! debug build measures it fine.

use std::time::Instant;

use edgecc_program::{Activation, Buffer, Const, ConstId, DType, IoTensor, Kernel, Program, View};

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (m, n, k) = match args[..] {
        [m, n, k] => (m, n, k),
        _ => (256, 256, 256),
    };
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
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                model
                    .run(&ins, &mut [&mut c], &mut arena[off..off])
                    .unwrap();
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!(
            "gemm {m}x{n}x{k}, B {}: {:.1} GFLOP/s, {} bytes of code, compiled in {:.1} ms",
            if b_const {
                "constant (packed)"
            } else {
                "input"
            },
            flops / best / 1e9,
            jit.text_bytes(),
            compile.as_secs_f64() * 1e3
        );
    }
}
