//! Prints the Cranelift IR and machine code of a small GEMM + conv program for a target:
//! `cargo run -p edgecc-cranelift --example emit -- aarch64-neon`.

use edgecc_program::{
    Activation, Buffer, Const, ConstId, DType, IoTensor, Kernel, Program, Spatial, View, Window,
};

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
            residual: None,
            act: Activation::Relu,
            c: View {
                buf: Buffer::Output(0),
                offset: 0,
                strides: vec![0, n as i64, 1],
            },
        }],
    };
    // A 3×3 convolution, 16 -> 16 channels on 8×8 with padding 1: im2col + GEMM with the
    // packed weights as A.
    let (w, s) = (
        Window {
            kh: 3,
            kw: 3,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 1,
            pad_right: 1,
        },
        Spatial {
            n: 1,
            in_h: 8,
            in_w: 8,
            out_h: 8,
            out_w: 8,
        },
    );
    let mut p = p;
    let scratch = Kernel::conv_scratch_bytes(16, 16, 1, &s, &w);
    p.arena_size = scratch.div_ceil(64) * 64;
    p.inputs.push(IoTensor {
        name: "x".into(),
        dtype: DType::F32,
        shape: vec![1, 16, 8, 8],
    });
    p.outputs.push(IoTensor {
        name: "y".into(),
        dtype: DType::F32,
        shape: vec![1, 16, 8, 8],
    });
    p.consts.push(Const {
        name: "w".into(),
        dtype: DType::F32,
        shape: vec![16, 16, 3, 3],
        data: vec![0; 16 * 16 * 9 * 4],
    });
    p.kernels.push(Kernel::Conv {
        c_in: 16,
        c_out: 16,
        groups: 1,
        spatial: s,
        window: w,
        input: Buffer::Input(1),
        weight: ConstId(1),
        bias: None,
        residual: None,
        act: Activation::None,
        output: Buffer::Output(1),
        scratch: Some(Buffer::Arena { offset: 0 }),
    });
    let t: edgecc_cranelift::Target = target.parse().expect("target");
    println!("{}", edgecc_cranelift::emit_clif(&p, &t).expect("emit"));
}
