//! Shared test helpers: program builders, deterministic random data, running a program
//! through the scalar executor and through generated code, and float comparison.
#![allow(dead_code)]

use edgecc_program::{
    Activation, Buffer, Const, ConstId, DType, IoTensor, Kernel, PoolKind, Program, Spatial, View,
    Window, exec,
};

pub fn io(name: &str, shape: &[u64]) -> IoTensor {
    IoTensor {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
    }
}

pub fn view(buf: Buffer, offset: u64, strides: &[i64]) -> View {
    View {
        buf,
        offset,
        strides: strides.to_vec(),
    }
}

pub fn konst(name: &str, v: &[f32]) -> Const {
    Const {
        name: name.into(),
        dtype: DType::F32,
        shape: vec![v.len() as u64],
        data: bytes(v),
    }
}

pub fn cid(i: u32) -> Buffer {
    Buffer::Const(ConstId(i))
}

pub fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Deterministic values in [-1, 1) (a 64-bit LCG; no dependency, stable across runs).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn program(
    inputs: Vec<IoTensor>,
    outputs: Vec<IoTensor>,
    consts: Vec<Const>,
    arena_size: u64,
    kernels: Vec<Kernel>,
) -> Program {
    Program {
        name: "t".into(),
        inputs,
        outputs,
        arena_size,
        arena_align: 64,
        consts,
        kernels,
    }
}

/// Random inputs matching the program's input shapes.
pub fn inputs_for(p: &Program, seed: u64) -> Vec<Vec<f32>> {
    p.inputs
        .iter()
        .enumerate()
        .map(|(i, t)| rand_vec(t.num_elements() as usize, seed + i as u64 * 7919))
        .collect()
}

/// An arena of `size` bytes aligned to 64 (the over-allocated vector must stay alive).
pub fn aligned(size: usize) -> (Vec<u8>, usize) {
    let v = vec![0u8; size + 64];
    let off = (64 - (v.as_ptr() as usize % 64)) % 64;
    (v, off)
}

pub fn run_exec(p: &Program, ins: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let ins: Vec<Vec<u8>> = ins.iter().map(|v| bytes(v)).collect();
    let refs: Vec<&[u8]> = ins.iter().map(|v| &v[..]).collect();
    let mut outs: Vec<Vec<u8>> = p
        .outputs
        .iter()
        .map(|t| bytes(&vec![-777.0; t.byte_size() as usize / 4]))
        .collect();
    let mut orefs: Vec<&mut [u8]> = outs.iter_mut().map(|v| &mut v[..]).collect();
    let mut arena = vec![0u8; p.arena_size as usize];
    exec::run(p, &refs, &mut orefs, &mut arena).expect("exec::run");
    outs.iter().map(|o| floats(o)).collect()
}

/// Runs through a descriptor (JIT or loaded `.so`) with the runtime's checked call.
pub fn run_desc(desc: &edgecc_runtime::ModelDesc, p: &Program, ins: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let model = edgecc_runtime::Model::new(desc).expect("descriptor");
    let ins: Vec<Vec<u8>> = ins.iter().map(|v| bytes(v)).collect();
    let refs: Vec<&[u8]> = ins.iter().map(|v| &v[..]).collect();
    // Outputs pre-filled with a pattern, so unwritten elements show up.
    let mut outs: Vec<Vec<u8>> = p
        .outputs
        .iter()
        .map(|t| bytes(&vec![-777.0; t.byte_size() as usize / 4]))
        .collect();
    let mut orefs: Vec<&mut [u8]> = outs.iter_mut().map(|v| &mut v[..]).collect();
    let (mut arena, off) = aligned(p.arena_size as usize);
    model
        .run(
            &refs,
            &mut orefs,
            &mut arena[off..off + p.arena_size as usize],
        )
        .expect("run");
    outs.iter().map(|o| floats(o)).collect()
}

pub fn run_jit(p: &Program, ins: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let jit = edgecc_cranelift::compile_jit(p).expect("compile_jit");
    run_desc(jit.desc(), p, ins)
}

/// `|got - want| <= atol + rtol·|want|` element by element.
pub fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (o, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: output {o} length");
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            let ok = (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan()) || a == b;
            assert!(
                ok,
                "{what}: output {o}[{i}] = {a}, expected {b} (atol {atol}, rtol {rtol})"
            );
        }
    }
}

/// Compiles with the JIT and compares with the scalar executor.
pub fn check_jit(p: &Program, atol: f32, rtol: f32, what: &str) {
    let ins = inputs_for(p, 42);
    let want = run_exec(p, &ins);
    let got = run_jit(p, &ins);
    assert_close(&got, &want, atol, rtol, what);
}

/// A single Gemm program `C[b] = act(alpha·A·B + bias)` with A, B (and bias) as inputs
/// or constants.
#[allow(clippy::too_many_arguments)]
pub fn gemm_program(
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
    a_t: bool,
    b_t: bool,
    a_const: bool,
    b_const: bool,
    a_bcast: bool,
    bias: Option<&str>,
    act: Activation,
    alpha: f32,
) -> Program {
    let (bm, bn, bk) = (m as i64, n as i64, k as i64);
    let a_batches = if a_bcast { 1 } else { batch as u64 };
    let a_len = a_batches * (m * k) as u64;
    let b_len = batch as u64 * (k * n) as u64;
    let a_bs = if a_bcast { 0 } else { bm * bk };
    let a_str = if a_t { [a_bs, 1, bm] } else { [a_bs, bk, 1] };
    let b_str = if b_t {
        [bk * bn, 1, bk]
    } else {
        [bk * bn, bn, 1]
    };
    let mut inputs = Vec::new();
    let mut consts = Vec::new();
    let mut operand = |is_const: bool, name: &str, len: u64, seed: u64| -> Buffer {
        if is_const {
            consts.push(konst(name, &rand_vec(len as usize, seed)));
            cid(consts.len() as u32 - 1)
        } else {
            inputs.push(io(name, &[len]));
            Buffer::Input(inputs.len() as u32 - 1)
        }
    };
    let a = view(operand(a_const, "a", a_len, 1), 0, &a_str);
    let b = view(operand(b_const, "b", b_len, 2), 0, &b_str);
    let bias = bias.map(|form| {
        let (len, strides): (u64, [i64; 3]) = match form {
            "scalar" => (1, [0, 0, 0]),
            "row" => (n as u64, [0, 0, 1]),
            "col" => (m as u64, [0, 1, 0]),
            "full" => ((m * n) as u64, [0, bn, 1]),
            _ => (batch as u64 * (m * n) as u64, [bm * bn, bn, 1]),
        };
        consts.push(konst("bias", &rand_vec(len as usize, 3)));
        view(cid(consts.len() as u32 - 1), 0, &strides)
    });
    let c = view(Buffer::Output(0), 0, &[bm * bn, bn, 1]);
    program(
        inputs,
        vec![io("c", &[batch as u64, m as u64, n as u64])],
        consts,
        0,
        vec![Kernel::Gemm {
            batch,
            m,
            n,
            k,
            a,
            b,
            alpha,
            bias,
            residual: None,
            act,
            c,
        }],
    )
}

/// A small network touching every kernel kind, chained through the arena:
/// conv 3→8 (3×3, pad 1, relu, im2col) → depthwise 3×3 stride 2 (relu6) → max pool 2×2
/// → gemm 1×32·32×10 (constant B, bias) → elementwise tanh/exp → softmax; plus a mean
/// reduction, a transposed-input gemm and a copy as further outputs.
pub fn network() -> Program {
    use edgecc_program::{BinaryOp, ExprNode, PoolKind, ReduceOp, Spatial, UnaryOp, Window};
    let w3 = |s: u32| Window {
        kh: 3,
        kw: 3,
        stride_h: s,
        stride_w: s,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 1,
        pad_left: 1,
        pad_bottom: 1,
        pad_right: 1,
    };
    let arena = |offset: u64| Buffer::Arena { offset };
    let (s_off, a_off, b_off, c_off, d_off, e_off) = (0, 6912, 8960, 9472, 9600, 9664);
    let consts = vec![
        konst("conv_w", &rand_vec(8 * 3 * 9, 11)),
        konst("conv_b", &rand_vec(8, 12)),
        konst("dw_w", &rand_vec(8 * 9, 13)),
        konst("fc_w", &rand_vec(32 * 10, 14)),
        konst("fc_b", &rand_vec(10, 15)),
    ];
    let kernels = vec![
        Kernel::Conv {
            c_in: 3,
            c_out: 8,
            groups: 1,
            spatial: Spatial {
                n: 1,
                in_h: 8,
                in_w: 8,
                out_h: 8,
                out_w: 8,
            },
            window: w3(1),
            input: Buffer::Input(0),
            weight: ConstId(0),
            bias: Some(ConstId(1)),
            residual: None,
            act: Activation::Relu,
            output: arena(a_off),
            scratch: Some(arena(s_off)),
        },
        Kernel::Conv {
            c_in: 8,
            c_out: 8,
            groups: 8,
            spatial: Spatial {
                n: 1,
                in_h: 8,
                in_w: 8,
                out_h: 4,
                out_w: 4,
            },
            window: w3(2),
            input: arena(a_off),
            weight: ConstId(2),
            bias: None,
            residual: None,
            act: Activation::Clip { lo: 0.0, hi: 6.0 },
            output: arena(b_off),
            scratch: None,
        },
        Kernel::Pool {
            dtype: DType::F32,
            kind: PoolKind::Max,
            channels: 8,
            spatial: Spatial {
                n: 1,
                in_h: 4,
                in_w: 4,
                out_h: 2,
                out_w: 2,
            },
            window: Window {
                kh: 2,
                kw: 2,
                stride_h: 2,
                stride_w: 2,
                dilation_h: 1,
                dilation_w: 1,
                pad_top: 0,
                pad_left: 0,
                pad_bottom: 0,
                pad_right: 0,
            },
            input: arena(b_off),
            output: arena(c_off),
        },
        Kernel::Gemm {
            batch: 1,
            m: 1,
            n: 10,
            k: 32,
            a: view(arena(c_off), 0, &[0, 32, 1]),
            b: view(cid(3), 0, &[0, 10, 1]),
            alpha: 1.0,
            bias: Some(view(cid(4), 0, &[0, 0, 1])),
            residual: None,
            act: Activation::None,
            c: view(arena(d_off), 0, &[0, 10, 1]),
        },
        Kernel::Elementwise {
            shape: vec![10],
            inputs: vec![view(arena(d_off), 0, &[1])],
            expr: vec![
                ExprNode::Input(0),
                ExprNode::Unary(UnaryOp::Tanh, 0),
                ExprNode::Const(2.0),
                ExprNode::Binary(BinaryOp::Mul, 1, 2),
                ExprNode::Unary(UnaryOp::Neg, 0),
                ExprNode::Unary(UnaryOp::Exp, 4),
                ExprNode::Binary(BinaryOp::Add, 3, 5),
            ],
            output: view(arena(e_off), 0, &[1]),
        },
        Kernel::Softmax {
            outer: 1,
            len: 10,
            inner: 1,
            input: arena(e_off),
            output: Buffer::Output(0),
            scale: 1.0,
            mask: None,
        },
        Kernel::Reduce {
            op: ReduceOp::Mean,
            outer: 8,
            len: 16,
            inner: 1,
            input: arena(b_off),
            output: Buffer::Output(1),
        },
        Kernel::Copy {
            bytes: 40,
            src: arena(d_off),
            dst: Buffer::Output(2),
        },
        Kernel::Gemm {
            batch: 1,
            m: 5,
            n: 6,
            k: 7,
            a: view(Buffer::Input(1), 0, &[0, 1, 5]),
            b: view(Buffer::Input(2), 0, &[0, 6, 1]),
            alpha: 1.0,
            bias: None,
            residual: None,
            act: Activation::Sigmoid,
            c: view(Buffer::Output(3), 0, &[0, 6, 1]),
        },
    ];
    let mut p = program(
        vec![
            io("image", &[1, 3, 8, 8]),
            io("lhs_t", &[7, 5]),
            io("rhs", &[7, 6]),
        ],
        vec![
            io("probs", &[1, 10]),
            io("mean", &[8]),
            io("logits", &[10]),
            io("gemm_t", &[5, 6]),
        ],
        consts,
        9728,
        kernels,
    );
    p.name = "net".into();
    p
}

/// A fresh directory under the system temp dir for one test's files.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgecc-cranelift-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

pub fn win(k: u32, s: u32, d: u32, pad: u32) -> Window {
    Window {
        kh: k,
        kw: k,
        stride_h: s,
        stride_w: s,
        dilation_h: d,
        dilation_w: d,
        pad_top: pad,
        pad_left: pad,
        pad_bottom: pad,
        pad_right: pad,
    }
}

pub fn out_size(i: u32, k: u32, s: u32, d: u32, p: u32) -> u32 {
    (i + 2 * p - d * (k - 1) - 1) / s + 1
}

/// A single convolution with explicit output geometry (asymmetric pads allowed).
#[allow(clippy::too_many_arguments)]
pub fn conv_program_with(
    n: u32,
    c_in: u32,
    c_out: u32,
    groups: u32,
    s: Spatial,
    wn: Window,
    bias: bool,
    act: Activation,
) -> Program {
    let scratch = Kernel::conv_scratch_bytes(c_in, c_out, groups, &s, &wn);
    let wlen = (c_out * c_in / groups * wn.kh * wn.kw) as usize;
    let mut consts = vec![konst("w", &rand_vec(wlen, 5))];
    if bias {
        consts.push(konst("b", &rand_vec(c_out as usize, 6)));
    }
    program(
        vec![io(
            "x",
            &[n as u64, c_in as u64, s.in_h as u64, s.in_w as u64],
        )],
        vec![io(
            "y",
            &[n as u64, c_out as u64, s.out_h as u64, s.out_w as u64],
        )],
        consts,
        scratch.div_ceil(64) * 64,
        vec![Kernel::Conv {
            c_in,
            c_out,
            groups,
            spatial: s,
            window: wn,
            input: Buffer::Input(0),
            weight: ConstId(0),
            bias: bias.then_some(ConstId(1)),
            residual: None,
            act,
            output: Buffer::Output(0),
            scratch: (scratch > 0).then_some(Buffer::Arena { offset: 0 }),
        }],
    )
}

/// `p` (a single Conv kernel) with a skip connection: a second input of the output's
/// shape added before the activation.
pub fn with_residual(mut p: Program) -> Program {
    let shape = p.outputs[0].shape.clone();
    p.inputs.push(io("r", &shape));
    let r = Buffer::Input(p.inputs.len() as u32 - 1);
    match &mut p.kernels[0] {
        Kernel::Conv { residual, .. } => *residual = Some(r),
        k => panic!("with_residual: not a conv: {k:?}"),
    }
    p
}

#[allow(clippy::too_many_arguments)]
pub fn conv_program(
    n: u32,
    c_in: u32,
    c_out: u32,
    groups: u32,
    h: u32,
    w: u32,
    wn: Window,
    bias: bool,
    act: Activation,
) -> edgecc_program::Program {
    let oh = out_size(h, wn.kh, wn.stride_h, wn.dilation_h, wn.pad_top);
    let ow = out_size(w, wn.kw, wn.stride_w, wn.dilation_w, wn.pad_left);
    let s = Spatial {
        n,
        in_h: h,
        in_w: w,
        out_h: oh,
        out_w: ow,
    };
    let scratch = Kernel::conv_scratch_bytes(c_in, c_out, groups, &s, &wn);
    let wlen = (c_out * c_in / groups * wn.kh * wn.kw) as usize;
    let mut consts = vec![konst("w", &rand_vec(wlen, 5))];
    if bias {
        consts.push(konst("b", &rand_vec(c_out as usize, 6)));
    }
    program(
        vec![io("x", &[n as u64, c_in as u64, h as u64, w as u64])],
        vec![io("y", &[n as u64, c_out as u64, oh as u64, ow as u64])],
        consts,
        scratch.div_ceil(64) * 64,
        vec![Kernel::Conv {
            c_in,
            c_out,
            groups,
            spatial: s,
            window: wn,
            input: Buffer::Input(0),
            weight: edgecc_program::ConstId(0),
            bias: bias.then_some(edgecc_program::ConstId(1)),
            residual: None,
            act,
            output: Buffer::Output(0),
            scratch: (scratch > 0).then_some(Buffer::Arena { offset: 0 }),
        }],
    )
}

pub fn pool_program(kind: PoolKind, c: u32, h: u32, w: u32, wn: Window) -> edgecc_program::Program {
    let oh = out_size(h, wn.kh, wn.stride_h, wn.dilation_h, wn.pad_top);
    let ow = out_size(w, wn.kw, wn.stride_w, wn.dilation_w, wn.pad_left);
    let s = Spatial {
        n: 1,
        in_h: h,
        in_w: w,
        out_h: oh,
        out_w: ow,
    };
    program(
        vec![io("x", &[c as u64, h as u64, w as u64])],
        vec![io("y", &[c as u64, oh as u64, ow as u64])],
        vec![],
        0,
        vec![Kernel::Pool {
            dtype: DType::F32,
            kind,
            channels: c,
            spatial: s,
            window: wn,
            input: Buffer::Input(0),
            output: Buffer::Output(0),
        }],
    )
}
