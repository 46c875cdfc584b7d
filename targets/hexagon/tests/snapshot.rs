//! The emitted C of a tiny program, so codegen changes are reviewed (`INSTA_UPDATE=always`
//! then read the `.snap` diff).

use edgecc_program::{
    Buffer, Const, ConstId, DType, IoTensor, Kernel, Program, QuantOut, Requant, View, ZeroPoint,
};

#[test]
fn tiny_qgemm_c() {
    let p = Program {
        name: "tiny".into(),
        inputs: vec![IoTensor {
            name: "x".into(),
            dtype: DType::U8,
            shape: vec![2, 3],
        }],
        outputs: vec![IoTensor {
            name: "y".into(),
            dtype: DType::I8,
            shape: vec![2, 2],
        }],
        arena_size: 0,
        arena_align: 64,
        consts: vec![
            Const {
                name: "w".into(),
                dtype: DType::I8,
                shape: vec![3, 2],
                data: vec![1, 255, 2, 254, 3, 253],
            },
            Const {
                name: "b".into(),
                dtype: DType::I32,
                shape: vec![2],
                data: [7i32, -7].iter().flat_map(|v| v.to_le_bytes()).collect(),
            },
        ],
        kernels: vec![Kernel::QGemm {
            m: 2,
            n: 2,
            k: 3,
            a: View {
                buf: Buffer::Input(0),
                offset: 0,
                strides: vec![3, 1],
            },
            a_dtype: DType::U8,
            a_zero: ZeroPoint::Const(128),
            b: ConstId(0),
            bias: Some(ConstId(1)),
            out: QuantOut::Requant(Requant {
                dtype: DType::I8,
                multiplier: vec![1 << 30, 3 << 28],
                shift: 33,
                zero_point: -1,
                lo: -128,
                hi: 127,
            }),
            c: View {
                buf: Buffer::Output(0),
                offset: 0,
                strides: vec![2, 1],
            },
        }],
    };
    use edgecc_hexagon::{Hvx, Options, emit_c};
    insta::assert_snapshot!("hvx", emit_c(&p, &Options { hvx: Hvx::B128 }).unwrap());
    insta::assert_snapshot!("plain", emit_c(&p, &Options { hvx: Hvx::Off }).unwrap());
}
