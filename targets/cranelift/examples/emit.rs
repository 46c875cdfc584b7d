//! Prints the Cranelift IR and machine code of a small GEMM + conv program for a target:
//! `cargo run -p edgecc-cranelift --example emit -- aarch64-neon`.

use edgecc_program::{Activation, Buffer, Const, ConstId, DType, IoTensor, Kernel, Program, View};

fn main() {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "aarch64-neon".into());
    let (m, n, k) = (16u32, 24u32, 32u32);
    let p = Program {
        name: "demo".into(),
        inputs: vec![IoTensor {
            name: "a".into(),
            dtype: DType::F32,
            shape: vec![m as u64, k as u64],
        }],
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
            data: vec![0; (k * n * 4) as usize],
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
                buf: Buffer::Const(ConstId(0)),
                offset: 0,
                strides: vec![0, n as i64, 1],
            },
            alpha: 1.0,
            bias: None,
            act: Activation::Relu,
            c: View {
                buf: Buffer::Output(0),
                offset: 0,
                strides: vec![0, n as i64, 1],
            },
        }],
    };
    let t: edgecc_cranelift::Target = target.parse().expect("target");
    println!("{}", edgecc_cranelift::emit_clif(&p, &t).expect("emit"));
}
