//! Property tests: random shapes (odd sizes, vector tails, size-1 dimensions), every
//! broadcast form and transposed operands, JIT against `exec::run`.
//!
//! Case counts are small (each case compiles a module) so the suite stays fast in debug.
//! Tolerances are those of `kernels.rs`: GEMM/conv reassociate sums of K terms of
//! products of values in [-1, 1] (`atol ≈ K·eps` with margin); the exp-based functions
//! are within 2e-7 relative/absolute; max, data movement and single operations are exact.
mod common;

use common::*;
use edgecc_program::{
    Activation, BinaryOp, Buffer, ExprNode, Kernel, PoolKind, ReduceOp, Spatial, UnaryOp, Window,
};
use proptest::prelude::*;

fn act() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        Just(Activation::Clip { lo: -0.25, hi: 0.5 }),
        Just(Activation::Sigmoid),
        Just(Activation::Tanh),
        Just(Activation::Gelu { tanh: false }),
        Just(Activation::Gelu { tanh: true }),
        Just(Activation::HardSwish),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn gemm_matches_exec(
        batch in 1u32..4, m in 1u32..20, n in 1u32..28, k in 1u32..24,
        a_t: bool, b_t: bool, a_c: bool, b_c: bool, a_bcast: bool,
        bias in prop_oneof![Just(None), Just(Some("scalar")), Just(Some("row")), Just(Some("col")), Just(Some("full")), Just(Some("batch"))],
        act in act(), alpha in prop_oneof![Just(1.0f32), Just(-0.75f32)],
        b_bcast: bool, c_t: bool,
    ) {
        let mut p = gemm_program(batch, m, n, k, a_t, b_t, a_c, b_c, a_bcast, bias, act, alpha);
        if let Kernel::Gemm { b, c, .. } = &mut p.kernels[0] {
            if b_bcast {
                b.strides[0] = 0; // every batch multiplies by B[0]
            }
            if c_t {
                c.strides = vec![(m * n) as i64, 1, m as i64]; // C stored transposed: scatter stores
            }
        }
        check_jit(&p, 2e-6 * (k as f32 + 4.0), 1e-5, "gemm");
    }

    /// A residual view added after the bias, in every broadcast form: the full output,
    /// shared by the batches, one row, one column, one value; on the big and small-M
    /// tiles, with a stored-transposed C.
    #[test]
    fn gemm_residual_matches_exec(
        batch in 1u32..4, m in 1u32..20, n in 1u32..28, k in 1u32..24,
        a_c: bool, b_c: bool,
        bias in prop_oneof![Just(None), Just(Some("row")), Just(Some("full"))],
        form in 0usize..5, act in act(), c_t: bool,
    ) {
        let mut p = gemm_program(batch, m, n, k, false, false, a_c, b_c, false, bias, act, 1.0);
        let (bm, bn) = (m as i64, n as i64);
        let (len, strides): (u64, [i64; 3]) = match form {
            0 => (batch as u64 * (m * n) as u64, [bm * bn, bn, 1]),
            1 => ((m * n) as u64, [0, bn, 1]),
            2 => (n as u64, [0, 0, 1]),
            3 => (m as u64, [0, 1, 0]),
            _ => (1, [0, 0, 0]),
        };
        p.inputs.push(io("residual", &[len]));
        let r = view(Buffer::Input(p.inputs.len() as u32 - 1), 0, &strides);
        if let Kernel::Gemm { residual, c, .. } = &mut p.kernels[0] {
            *residual = Some(r);
            if c_t {
                c.strides = vec![(m * n) as i64, 1, m as i64];
            }
        }
        check_jit(&p, 2e-6 * (k as f32 + 4.0), 1e-5, "gemm residual");
    }

    /// The small-M (GEMV) tile: M = 1..3 with N tails of whole vectors and scalars around
    /// the wide blocks, K tails of the 4× unrolled loop, packed and unpacked operands.
    #[test]
    fn small_m_gemm_matches_exec(
        batch in 1u32..3, m in 1u32..4, n in 1u32..80, k in 1u32..40,
        a_t: bool, b_t: bool, a_c: bool, b_c: bool,
        bias in prop_oneof![Just(None), Just(Some("row")), Just(Some("col")), Just(Some("full"))],
        act in act(), alpha in prop_oneof![Just(1.0f32), Just(-0.75f32)],
    ) {
        let p = gemm_program(batch, m, n, k, a_t, b_t, a_c, b_c, false, bias, act, alpha);
        check_jit(&p, 2e-6 * (k as f32 + 4.0), 1e-5, "small-m gemm");
    }

    #[test]
    fn elementwise_matches_exec(
        shape in prop::collection::vec(1u64..7, 1..5),
        bcast in prop::collection::vec(any::<bool>(), 4),
        transpose: bool,
        op in 0usize..8,
    ) {
        let rank = shape.len();
        let dense = |shape: &[u64]| {
            let mut s = vec![0i64; shape.len()];
            let mut acc = 1i64;
            for d in (0..shape.len()).rev() { s[d] = acc; acc *= shape[d] as i64; }
            (s, acc as u64)
        };
        let (out_strides, total) = dense(&shape);
        // Input 0: dense, or transposed (reversed dimension order in memory).
        let (in0_strides, in0_len) = if transpose {
            let rev: Vec<u64> = shape.iter().rev().copied().collect();
            let (s, len) = dense(&rev);
            (s.into_iter().rev().collect::<Vec<_>>(), len)
        } else { (out_strides.clone(), total) };
        // Input 1: each dimension broadcast (size 1, stride 0) or not.
        let b_shape: Vec<u64> = shape.iter().enumerate().map(|(d, &n)| if bcast[d % 4] { 1 } else { n }).collect();
        let (bs, b_len) = dense(&b_shape);
        let b_strides: Vec<i64> = bs.iter().zip(&b_shape).map(|(&s, &n)| if n == 1 { 0 } else { s }).collect();
        let (x, y) = (0u32, 1u32);
        let expr = match op {
            0 => vec![ExprNode::Input(x), ExprNode::Input(y), ExprNode::Binary(BinaryOp::Add, 0, 1)],
            1 => vec![ExprNode::Input(x), ExprNode::Input(y), ExprNode::Binary(BinaryOp::Sub, 0, 1)],
            2 => vec![ExprNode::Input(x), ExprNode::Input(y), ExprNode::Binary(BinaryOp::Mul, 0, 1)],
            3 => vec![ExprNode::Input(x), ExprNode::Input(y), ExprNode::Binary(BinaryOp::Max, 0, 1), ExprNode::Unary(UnaryOp::Relu, 2)],
            4 => vec![ExprNode::Input(x), ExprNode::Input(y), ExprNode::Binary(BinaryOp::Min, 0, 1), ExprNode::Unary(UnaryOp::Exp, 2)],
            5 => vec![ExprNode::Input(x), ExprNode::Const(3.0), ExprNode::Binary(BinaryOp::Add, 0, 1), ExprNode::Input(y), ExprNode::Binary(BinaryOp::Div, 3, 2)],
            6 => vec![ExprNode::Input(x), ExprNode::Unary(UnaryOp::Tanh, 0), ExprNode::Input(y), ExprNode::Unary(UnaryOp::Sigmoid, 2), ExprNode::Binary(BinaryOp::Mul, 1, 3)],
            _ => vec![ExprNode::Input(y), ExprNode::Clip { x: 0, lo: -0.3, hi: 0.2 }, ExprNode::Input(x), ExprNode::Unary(UnaryOp::Abs, 2), ExprNode::Unary(UnaryOp::Sqrt, 3), ExprNode::Binary(BinaryOp::Sub, 1, 4)],
        };
        let p = program(
            vec![io("x", &[in0_len]), io("b", &[b_len])],
            vec![io("y", &shape)],
            vec![],
            0,
            vec![Kernel::Elementwise {
                shape: shape.clone(),
                inputs: vec![view(Buffer::Input(0), 0, &in0_strides), view(Buffer::Input(1), 0, &b_strides)],
                expr,
                output: view(Buffer::Output(0), 0, &out_strides),
            }],
        );
        prop_assert_eq!(rank, shape.len());
        check_jit(&p, 1e-6, 1e-6, "elementwise");
    }

    #[test]
    fn conv_matches_exec(
        n in 1u32..3, groups in 1u32..4, cpg in 1u32..4, opg in 1u32..5, depthwise: bool,
        h in 1u32..12, w in 1u32..24, kh in 1u32..4, kw in 1u32..4, sh in 1u32..3, sw in 1u32..3,
        dh in 1u32..3, dw in 1u32..3, pads in prop::collection::vec(0u32..3, 4),
        bias: bool, act in act(), residual: bool,
    ) {
        let (c_in, c_out) = if depthwise { (groups * 2, groups * 2) } else { (groups * cpg, groups * opg) };
        let groups = if depthwise { c_in } else { groups };
        let wn = Window { kh, kw, stride_h: sh, stride_w: sw, dilation_h: dh, dilation_w: dw, pad_top: pads[0], pad_left: pads[1], pad_bottom: pads[2], pad_right: pads[3] };
        let span_h = h + pads[0] + pads[2];
        let span_w = w + pads[1] + pads[3];
        prop_assume!(span_h > dh * (kh - 1) && span_w > dw * (kw - 1));
        let s = Spatial { n, in_h: h, in_w: w, out_h: (span_h - dh * (kh - 1) - 1) / sh + 1, out_w: (span_w - dw * (kw - 1) - 1) / sw + 1 };
        let mut p = conv_program_with(n, c_in, c_out, groups, s, wn, bias, act);
        if residual {
            p = with_residual(p);
        }
        check_jit(&p, 2e-6 * (c_in / groups * kh * kw + 4) as f32, 1e-5, "conv");
    }

    /// Convolutions big enough that the im2col runs in several blocks of output rows with
    /// a shorter last block, with several groups, strides and padding.
    #[test]
    fn conv_blocks_match_exec(
        groups in 1u32..4, cpg in 8u32..20, opg in 1u32..7,
        h in 6u32..30, w in 3u32..40, kh in 2u32..4, kw in 2u32..4, sh in 1u32..3, sw in 1u32..3,
        pads in prop::collection::vec(0u32..2, 4), bias: bool, act in act(), residual: bool,
    ) {
        let (c_in, c_out) = (groups * cpg, groups * opg);
        let wn = Window { kh, kw, stride_h: sh, stride_w: sw, dilation_h: 1, dilation_w: 1, pad_top: pads[0], pad_left: pads[1], pad_bottom: pads[2], pad_right: pads[3] };
        let (span_h, span_w) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
        prop_assume!(span_h >= kh && span_w >= kw);
        let s = Spatial { n: 1, in_h: h, in_w: w, out_h: (span_h - kh) / sh + 1, out_w: (span_w - kw) / sw + 1 };
        let rows = Kernel::conv_block_rows(c_in, groups, &s, &wn);
        prop_assume!(s.out_h / rows >= 2 && !s.out_h.is_multiple_of(rows));
        let k = (cpg * kh * kw) as u64;
        prop_assert_eq!(
            Kernel::conv_scratch_bytes(c_in, c_out, groups, &s, &wn),
            k * (rows * s.out_w) as u64 * 4
        );
        let mut p = conv_program_with(1, c_in, c_out, groups, s, wn, bias, act);
        if residual {
            p = with_residual(p);
        }
        check_jit(&p, 2e-6 * (k as f32 + 4.0), 1e-5, "conv blocks");
    }

    #[test]
    fn pool_matches_exec(
        c in 1u32..4, h in 1u32..12, w in 1u32..24, kh in 1u32..4, kw in 1u32..4, sh in 1u32..3, sw in 1u32..3,
        dh in 1u32..3, dw in 1u32..3, pads in prop::collection::vec(0u32..3, 4),
        kind in prop_oneof![Just(PoolKind::Max), Just(PoolKind::Avg { count_include_pad: true }), Just(PoolKind::Avg { count_include_pad: false })],
    ) {
        let wn = Window { kh, kw, stride_h: sh, stride_w: sw, dilation_h: dh, dilation_w: dw, pad_top: pads[0], pad_left: pads[1], pad_bottom: pads[2], pad_right: pads[3] };
        let (span_h, span_w) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
        prop_assume!(span_h > dh * (kh - 1) && span_w > dw * (kw - 1));
        let (oh, ow) = ((span_h - dh * (kh - 1) - 1) / sh + 1, (span_w - dw * (kw - 1) - 1) / sw + 1);
        let s = Spatial { n: 1, in_h: h, in_w: w, out_h: oh, out_w: ow };
        let p = program(
            vec![io("x", &[c as u64, h as u64, w as u64])],
            vec![io("y", &[c as u64, oh as u64, ow as u64])],
            vec![],
            0,
            vec![Kernel::Pool { kind, dtype: edgecc_program::DType::F32, channels: c, spatial: s, window: wn, input: Buffer::Input(0), output: Buffer::Output(0) }],
        );
        check_jit(&p, 1e-6, 1e-6, "pool");
    }

    /// Pools wide enough for vector interiors (stride 1 and 2 deinterleaved loads, stride 3
    /// lane loads, overlapping last vector) in interior and border rows (taps of the
    /// window rows outside the input skipped at compile time); max pooling exactly.
    #[test]
    fn wide_pool_matches_exec(
        c in 1u32..3, h in 1u32..10, w in 4u32..41, kh in 1u32..5, kw in 1u32..5, sh in 1u32..3, sw in 1u32..4,
        dh in 1u32..3, dw in 1u32..3, pads in prop::collection::vec(0u32..4, 4),
        kind in prop_oneof![Just(PoolKind::Max), Just(PoolKind::Avg { count_include_pad: true }), Just(PoolKind::Avg { count_include_pad: false })],
    ) {
        let pads: Vec<u32> = pads.iter().enumerate().map(|(i, &p)| p.min(if i % 2 == 0 { kh } else { kw } - 1)).collect();
        let wn = Window { kh, kw, stride_h: sh, stride_w: sw, dilation_h: dh, dilation_w: dw, pad_top: pads[0], pad_left: pads[1], pad_bottom: pads[2], pad_right: pads[3] };
        let (span_h, span_w) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
        prop_assume!(span_h > dh * (kh - 1) && span_w > dw * (kw - 1));
        let (oh, ow) = ((span_h - dh * (kh - 1) - 1) / sh + 1, (span_w - dw * (kw - 1) - 1) / sw + 1);
        let s = Spatial { n: 1, in_h: h, in_w: w, out_h: oh, out_w: ow };
        let p = program(
            vec![io("x", &[c as u64, h as u64, w as u64])],
            vec![io("y", &[c as u64, oh as u64, ow as u64])],
            vec![],
            0,
            vec![Kernel::Pool { kind, dtype: edgecc_program::DType::F32, channels: c, spatial: s, window: wn, input: Buffer::Input(0), output: Buffer::Output(0) }],
        );
        let tol = if kind == PoolKind::Max { 0.0 } else { 1e-6 };
        check_jit(&p, tol, tol, "wide pool");
    }

    #[test]
    fn softmax_reduce_match_exec(outer in 1u64..4, len in 1u64..40, inner in 1u64..11) {
        let total = outer * len * inner;
        let mut kernels = vec![Kernel::Softmax { outer, len, inner, input: Buffer::Input(0), output: Buffer::Output(0), scale: 1.0, mask: None }];
        for (i, op) in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod].into_iter().enumerate() {
            kernels.push(Kernel::Reduce { op, outer, len, inner, input: Buffer::Input(0), output: Buffer::Output(1 + i as u32) });
        }
        let p = program(
            vec![io("x", &[total])],
            vec![io("s", &[total]), io("sum", &[outer * inner]), io("mean", &[outer * inner]), io("max", &[outer * inner]), io("min", &[outer * inner]), io("prod", &[outer * inner])],
            vec![],
            0,
            kernels,
        );
        check_jit(&p, 1e-6 * (len + 1) as f32, 2e-6, "softmax/reduce");
    }
}

/// A byte buffer whose start is 8-aligned (the runtime checks element alignment).
fn aligned_bytes(b: &[u8]) -> Vec<u64> {
    let mut v = vec![0u64; b.len().div_ceil(8)];
    for (i, &x) in b.iter().enumerate() {
        v[i / 8] |= (x as u64) << (8 * (i % 8));
    }
    v
}

fn as_bytes(v: &[u64], len: usize) -> &[u8] {
    // SAFETY: u64 has no padding, and `len <= 8 * v.len()`.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, len) }
}

type Outs<E> = Result<Vec<Vec<u8>>, E>;

/// Runs `p` on byte inputs through the scalar executor and the JIT.
fn run_both_bytes(
    p: &edgecc_program::Program,
    ins: &[Vec<u8>],
) -> (
    Outs<edgecc_program::exec::ExecError>,
    Outs<edgecc_runtime::Error>,
) {
    let backing: Vec<Vec<u64>> = ins.iter().map(|b| aligned_bytes(b)).collect();
    let refs: Vec<&[u8]> = backing
        .iter()
        .zip(ins)
        .map(|(v, b)| as_bytes(v, b.len()))
        .collect();
    let fresh = || -> Vec<Vec<u8>> {
        p.outputs
            .iter()
            .map(|t| vec![0xA5u8; t.byte_size() as usize])
            .collect()
    };
    let mut e = fresh();
    let mut erefs: Vec<&mut [u8]> = e.iter_mut().map(|v| &mut v[..]).collect();
    let mut arena = vec![0u8; p.arena_size as usize];
    let er = edgecc_program::exec::run(p, &refs, &mut erefs, &mut arena).map(|_| e.clone());
    let jit = edgecc_cranelift::compile_jit(p).expect("compile_jit");
    let model = edgecc_runtime::Model::new(jit.desc()).expect("descriptor");
    let mut j = fresh();
    let mut jrefs: Vec<&mut [u8]> = j.iter_mut().map(|v| &mut v[..]).collect();
    let (mut ar, off) = aligned(p.arena_size as usize);
    let jr = model
        .run(&refs, &mut jrefs, &mut ar[off..off + p.arena_size as usize])
        .map(|_| j.clone());
    (er, jr)
}

#[allow(clippy::too_many_arguments)]
fn gather_program(
    outer: u64,
    axis_len: u64,
    inner: u64,
    elem_bytes: u32,
    idx: &[i64],
    index_bytes: u32,
    data_const: bool,
    data: &[u8],
    elementwise: bool,
) -> (edgecc_program::Program, Vec<Vec<u8>>) {
    use edgecc_program::{Const, DType, IoTensor};
    let t = |name: &str, dtype: DType, n: u64| IoTensor {
        name: name.into(),
        dtype,
        shape: vec![n],
    };
    // Elementwise: one index per output element, `outer · count · inner` of them.
    let count = if elementwise {
        idx.len() as u64 / (outer * inner)
    } else {
        idx.len() as u64
    };
    let idx_bytes: Vec<u8> = idx
        .iter()
        .flat_map(|&i| {
            if index_bytes == 1 {
                vec![i as u8]
            } else if index_bytes == 4 {
                (i as i32).to_le_bytes().to_vec()
            } else {
                i.to_le_bytes().to_vec()
            }
        })
        .collect();
    let idx_t = if index_bytes == 1 {
        DType::U8
    } else if index_bytes == 4 {
        DType::I32
    } else {
        DType::I64
    };
    let mut inputs = vec![t("indices", idx_t, idx.len() as u64)];
    let mut ins = vec![idx_bytes];
    let mut consts = vec![];
    let data_buf = if data_const {
        consts.push(Const {
            name: "table".into(),
            dtype: DType::U8,
            shape: vec![data.len() as u64],
            data: data.to_vec(),
        });
        cid(0)
    } else {
        inputs.push(t("data", DType::U8, data.len() as u64));
        ins.push(data.to_vec());
        Buffer::Input(1)
    };
    let p = program(
        inputs,
        vec![t("y", DType::U8, outer * count * inner * elem_bytes as u64)],
        consts,
        0,
        vec![Kernel::Gather {
            outer,
            axis_len,
            inner,
            count,
            elem_bytes,
            data: data_buf,
            indices: Buffer::Input(0),
            index_bytes,
            output: Buffer::Output(0),
            elementwise,
        }],
    );
    (p, ins)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn gather_matches_exec(
        outer in 1u64..4, axis_len in 1u64..10, inner in 1u64..20,
        elem_bytes in prop_oneof![Just(1u32), Just(2), Just(3), Just(4), Just(8)],
        raw in prop::collection::vec(any::<u32>(), 0..9),
        wide: bool, data_const: bool,
    ) {
        // Indices in [-axis_len, axis_len): negative ones count from the end.
        let idx: Vec<i64> = raw.iter().map(|&r| (r as u64 % (2 * axis_len)) as i64 - axis_len as i64).collect();
        let n = (outer * axis_len * inner * elem_bytes as u64) as usize;
        let data: Vec<u8> = rand_vec(n, axis_len * 31 + inner).iter().map(|x| x.to_bits() as u8 ^ (x.to_bits() >> 13) as u8).collect();
        let (p, ins) = gather_program(outer, axis_len, inner, elem_bytes, &idx, if wide { 8 } else { 4 }, data_const, &data, false);
        let (e, j) = run_both_bytes(&p, &ins);
        let e = e.expect("exec");
        let j = j.expect("jit");
        prop_assert_eq!(&e, &j);
        // And by hand, for the first output row of each index.
        let row = (inner * elem_bytes as u64) as usize;
        for (i, &ix) in idx.iter().enumerate() {
            let r = if ix < 0 { ix + axis_len as i64 } else { ix } as usize;
            prop_assert_eq!(&j[0][i * row..(i + 1) * row], &data[r * row..(r + 1) * row]);
        }
    }
}

/// A 256-entry lookup table indexed by bytes (how `fold-requant` runs Tanh on u8 or i8
/// values): every byte value, read as a signed index, lands on its own table entry.
#[test]
fn byte_indexed_table_lookup_matches_exec() {
    let idx: Vec<i64> = (0..=255i64).rev().chain([0, 127, 128, 255]).collect();
    let table: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
    for data_const in [true, false] {
        let (p, ins) = gather_program(1, 256, 1, 1, &idx, 1, data_const, &table, false);
        let (e, j) = run_both_bytes(&p, &ins);
        let (e, j) = (e.expect("exec"), j.expect("jit"));
        assert_eq!(e, j);
        let want: Vec<u8> = idx.iter().map(|&i| table[i as usize]).collect();
        assert_eq!(j[0], want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// GatherElements (an index per output element) against the executor and by hand.
    #[test]
    fn gather_elements_matches_exec(
        outer in 1u64..4, axis_len in 1u64..7, count in 0u64..6, inner in 1u64..6,
        elem_bytes in prop_oneof![Just(1u32), Just(2), Just(3), Just(4), Just(8)],
        seed: u64, wide: bool, data_const: bool,
    ) {
        let n_idx = outer * count * inner;
        let idx: Vec<i64> = (0..n_idx)
            .map(|i| ((seed ^ (i * 0x9E37_79B9)) % (2 * axis_len)) as i64 - axis_len as i64)
            .collect();
        let n = (outer * axis_len * inner * elem_bytes as u64) as usize;
        let data: Vec<u8> = (0..n).map(|i| (i as u64 * 131 + seed) as u8).collect();
        let (p, ins) = gather_program(outer, axis_len, inner, elem_bytes, &idx, if wide { 8 } else { 4 }, data_const, &data, true);
        let (e, j) = run_both_bytes(&p, &ins);
        let e = e.expect("exec");
        let j = j.expect("jit");
        prop_assert_eq!(&e, &j);
        let eb = elem_bytes as usize;
        for (at, &ix) in idx.iter().enumerate() {
            let at = at as u64;
            let (o, k) = (at / (count * inner), at % inner);
            let r = if ix < 0 { ix + axis_len as i64 } else { ix } as u64;
            let src = (((o * axis_len + r) * inner + k) as usize) * eb;
            prop_assert_eq!(&j[0][at as usize * eb..(at as usize + 1) * eb], &data[src..src + eb]);
        }
    }
}

#[test]
fn gather_out_of_range_index_fails() {
    let data: Vec<u8> = (0..5 * 8 * 4).map(|i| i as u8).collect();
    for (bad, wide) in [
        (5i64, true),
        (-6, true),
        (i64::MAX, true),
        (i64::MIN, true),
        (5, false),
        (-6, false),
        (i32::MIN as i64, false),
    ] {
        for data_const in [false, true] {
            let idx = [0, -1, bad, 4];
            let (p, ins) = gather_program(
                1,
                5,
                8,
                4,
                &idx,
                if wide { 8 } else { 4 },
                data_const,
                &data,
                false,
            );
            let (e, j) = run_both_bytes(&p, &ins);
            assert!(
                matches!(
                    e,
                    Err(edgecc_program::exec::ExecError::IndexOutOfRange { position: 2, .. })
                ),
                "exec with index {bad}: {e:?}"
            );
            assert!(
                matches!(
                    j,
                    Err(edgecc_runtime::Error::Failed {
                        status: edgecc_program::STATUS_INDEX_OUT_OF_RANGE
                    })
                ),
                "jit with index {bad}: {j:?}"
            );
        }
    }
    // In range, the same program runs and agrees with the executor.
    let (p, ins) = gather_program(1, 5, 8, 4, &[4, -5], 8, true, &data, false);
    let (e, j) = run_both_bytes(&p, &ins);
    assert_eq!(e.unwrap(), j.unwrap());
}

const DTYPES: [edgecc_program::DType; 6] = {
    use edgecc_program::DType::*;
    [F32, I32, I64, U8, I8, Bool]
};

/// Edge values of every dtype, as i64 bit patterns truncated to the element size.
fn convert_edges(d: edgecc_program::DType) -> Vec<Vec<u8>> {
    use edgecc_program::DType;
    let ints: [i64; 22] = [
        0,
        1,
        -1,
        2,
        127,
        128,
        -128,
        -129,
        255,
        256,
        i32::MAX as i64,
        i32::MIN as i64,
        1 << 31,
        -(1 << 31) - 1,
        u32::MAX as i64,
        (1 << 24) + 1,
        (1 << 53) + 1,
        i64::MAX,
        i64::MIN,
        i64::MAX - 511,
        -1234567,
        0x55,
    ];
    let floats: [f32; 30] = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fa0_0001),
        2147483648.0,
        -2147483648.0,
        2147483520.0,
        -2147483904.0,
        9.223372e18,
        -9.223372e18,
        1e30,
        -1e30,
        f32::MAX,
        f32::MIN_POSITIVE / 4.0,
        255.9,
        256.0,
        -0.99,
        0.5,
        -0.5,
        1.5,
        -128.9,
        -129.0,
        127.99,
        128.0,
        -1.0,
        1.0,
        16777217.0,
    ];
    match d {
        DType::F32 => floats.iter().map(|f| f.to_le_bytes().to_vec()).collect(),
        DType::Bool => [0u8, 1, 2, 0x80, 0xff].iter().map(|&b| vec![b]).collect(),
        _ => ints
            .iter()
            .map(|i| i.to_le_bytes()[..d.size()].to_vec())
            .collect(),
    }
}

fn convert_program(
    count: u64,
    from: edgecc_program::DType,
    to: edgecc_program::DType,
    input_const: Option<Vec<u8>>,
) -> edgecc_program::Program {
    use edgecc_program::{Const, IoTensor};
    let t = |name: &str, dtype, n: u64| IoTensor {
        name: name.into(),
        dtype,
        shape: vec![n],
    };
    let (inputs, consts, input) = match input_const {
        None => (vec![t("x", from, count)], vec![], Buffer::Input(0)),
        Some(data) => (
            vec![],
            vec![Const {
                name: "x".into(),
                dtype: from,
                shape: vec![count],
                data,
            }],
            cid(0),
        ),
    };
    program(
        inputs,
        vec![t("y", to, count)],
        consts,
        0,
        vec![Kernel::Convert {
            count,
            from,
            to,
            input,
            output: Buffer::Output(0),
        }],
    )
}

/// JIT and exec agree on `from -> to` of `data`, with the input a graph input or a constant.
fn convert_both(from: edgecc_program::DType, to: edgecc_program::DType, data: &[u8]) -> Vec<u8> {
    let count = (data.len() / from.size()) as u64;
    let mut res = None;
    for c in [false, true] {
        let p = convert_program(count, from, to, c.then(|| data.to_vec()));
        let ins = if c { vec![] } else { vec![data.to_vec()] };
        let (e, j) = run_both_bytes(&p, &ins);
        let (e, j) = (e.expect("exec"), j.expect("jit"));
        assert_eq!(
            e,
            j,
            "{} -> {} (const input {c}) of {data:?}",
            from.name(),
            to.name()
        );
        res = Some(e[0].clone());
    }
    res.unwrap()
}

#[test]
fn convert_every_pair_on_edge_values() {
    for from in DTYPES {
        let data: Vec<u8> = convert_edges(from).concat();
        for to in DTYPES {
            convert_both(from, to, &data);
        }
    }
}

/// The semantics by hand, independently of exec.
#[test]
fn convert_semantics_by_hand() {
    use edgecc_program::DType::*;
    let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let i32s = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    // The attention mask: i64 ids/flags to f32, rounding to nearest even.
    assert_eq!(
        convert_both(
            I64,
            F32,
            &i64s(&[0, 1, -1, (1 << 24) + 1, i64::MAX, i64::MIN])
        ),
        f(&[0.0, 1.0, -1.0, 16777216.0, 9.223372e18, -9.223372e18])
    );
    let fl = [
        -0.0,
        2.9,
        -2.9,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        2147483648.0,
        -300.0,
        300.0,
    ];
    assert_eq!(
        convert_both(F32, I32, &f(&fl)),
        i32s(&[0, 2, -2, 0, i32::MAX, i32::MIN, i32::MAX, -300, 300])
    );
    assert_eq!(
        convert_both(F32, I64, &f(&fl)),
        i64s(&[0, 2, -2, 0, i64::MAX, i64::MIN, 1 << 31, -300, 300])
    );
    assert_eq!(
        convert_both(F32, U8, &f(&fl)),
        [0, 2, 0, 0, 255, 0, 255, 0, 255]
    );
    assert_eq!(
        convert_both(F32, I8, &f(&fl)),
        [0, 2, 254, 0, 127, 128, 127, 128, 127]
    );
    assert_eq!(
        convert_both(F32, Bool, &f(&fl)),
        [0, 1, 1, 1, 1, 1, 1, 1, 1]
    );
    // Integers wrap.
    assert_eq!(
        convert_both(I64, I32, &i64s(&[1 << 32, (1 << 31) + 5, -1])),
        i32s(&[0, i32::MIN + 5, -1])
    );
    assert_eq!(convert_both(I64, U8, &i64s(&[256, -1, 300])), [0, 255, 44]);
    assert_eq!(convert_both(I8, I32, &[0xff, 0x80]), i32s(&[-1, -128]));
    assert_eq!(convert_both(U8, I32, &[0xff, 0x80]), i32s(&[255, 128]));
    assert_eq!(convert_both(U8, F32, &[0xff, 0x80]), f(&[255.0, 128.0]));
    // Bool: any non-zero byte is true, results are 0/1.
    assert_eq!(convert_both(Bool, Bool, &[0, 1, 2, 0xff]), [0, 1, 1, 1]);
    assert_eq!(convert_both(Bool, F32, &[0, 7]), f(&[0.0, 1.0]));
    assert_eq!(convert_both(Bool, I64, &[0, 7]), i64s(&[0, 1]));
    assert_eq!(convert_both(I64, Bool, &i64s(&[0, 1 << 40])), [0, 1]);
    // Same type copies bits, NaN payload included.
    let nan = f(&[f32::from_bits(0xffc0_1234)]);
    assert_eq!(convert_both(F32, F32, &nan), nan);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random counts (vector bodies and tails), edge values mixed with random bit patterns
    /// and in-range values, every pair of dtypes.
    #[test]
    fn convert_matches_exec(
        from in 0usize..6, to in 0usize..6,
        picks in prop::collection::vec((any::<u8>(), any::<u64>()), 0..23),
    ) {
        let (from, to) = (DTYPES[from], DTYPES[to]);
        let edges = convert_edges(from);
        let mut data = Vec::new();
        for &(k, r) in &picks {
            let e = match k % 3 {
                0 => edges[r as usize % edges.len()].clone(),
                1 => r.to_le_bytes()[..from.size()].to_vec(),
                // Small values: floats in [-300, 300), integers in [-300, 300).
                _ => if from == edgecc_program::DType::F32 {
                    ((r % 600_000) as f32 / 1000.0 - 300.0).to_le_bytes().to_vec()
                } else {
                    ((r % 600) as i64 - 300).to_le_bytes()[..from.size()].to_vec()
                },
            };
            data.extend(e);
        }
        convert_both(from, to, &data);
    }
}

/// Every pair compiles for both architectures (the JIT above only covers the host), calling
/// nothing: float/int conversions need no libcall on either.
#[test]
fn convert_compiles_for_every_target() {
    use edgecc_cranelift::{ObjectOptions, Target, compile_object};
    let dir = scratch_dir("convert-nm");
    for t in ["x86_64", "aarch64-neon"] {
        let target: Target = t.parse().unwrap();
        for from in DTYPES {
            for to in DTYPES {
                let p = convert_program(13, from, to, None);
                let o = compile_object(&p, &target, &ObjectOptions::default())
                    .unwrap_or_else(|e| panic!("{t}: {} -> {}: {e}", from.name(), to.name()));
                assert!(o.text_bytes > 0);
                let f = dir.join("convert.o");
                std::fs::write(&f, &o.bytes).unwrap();
                let nm = std::process::Command::new("nm")
                    .arg("-u")
                    .arg(&f)
                    .output()
                    .expect("nm (binutils) is required");
                let undefined = String::from_utf8_lossy(&nm.stdout);
                assert!(
                    nm.status.success() && undefined.trim().is_empty(),
                    "{t}: {} -> {} imports {undefined}",
                    from.name(),
                    to.name()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Mask kernels: Compare, Logic, Select

/// One of the three mask kernels with its dtype parameter.
#[derive(Clone, Copy, Debug)]
enum MaskKernel {
    Compare(edgecc_program::CmpOp, edgecc_program::DType),
    Logic(edgecc_program::LogicOp),
    /// Element bytes, and a constant condition byte broadcast over the whole kernel.
    Select(u32, Option<u8>),
}

fn mask_kernel() -> impl Strategy<Value = MaskKernel> {
    use edgecc_program::{CmpOp, DType, LogicOp};
    let cmp = prop_oneof![
        Just(CmpOp::Equal),
        Just(CmpOp::Less),
        Just(CmpOp::LessOrEqual),
        Just(CmpOp::Greater),
        Just(CmpOp::GreaterOrEqual),
    ];
    let dtype = prop_oneof![
        Just(DType::F32),
        Just(DType::I32),
        Just(DType::I64),
        Just(DType::U8),
        Just(DType::I8),
        Just(DType::Bool),
    ];
    let logic = prop_oneof![
        Just(LogicOp::And),
        Just(LogicOp::Or),
        Just(LogicOp::Xor),
        Just(LogicOp::Not),
    ];
    prop_oneof![
        (cmp, dtype).prop_map(|(c, d)| MaskKernel::Compare(c, d)),
        logic.prop_map(MaskKernel::Logic),
        (
            prop_oneof![Just(1u32), Just(4), Just(8)],
            prop_oneof![3 => Just(None), 1 => Just(Some(0u8)), 1 => Just(Some(7u8))],
        )
            .prop_map(|(e, c)| MaskKernel::Select(e, c)),
    ]
}

/// How a view walks a dimension: densely, broadcast (stride 0) or backwards.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Walk {
    Dense,
    Broadcast,
    Reverse,
}

fn walk() -> impl Strategy<Value = Walk> {
    prop_oneof![3 => Just(Walk::Dense), 1 => Just(Walk::Broadcast), 1 => Just(Walk::Reverse)]
}

/// A view of a dense buffer of `shape` walked per dimension as `walks` say.
fn walk_view(buf: Buffer, shape: &[u64], walks: &[Walk]) -> edgecc_program::View {
    let mut dense = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        dense[d] = dense[d + 1] * shape[d + 1] as i64;
    }
    let mut offset = 0i64;
    let strides = dense
        .iter()
        .zip(shape)
        .zip(walks)
        .map(|((&s, &n), w)| match w {
            Walk::Dense => s,
            Walk::Broadcast => 0,
            Walk::Reverse => {
                offset += (n as i64 - 1) * s;
                -s
            }
        })
        .collect();
    edgecc_program::View {
        buf,
        offset: offset as u64,
        strides,
    }
}

/// Bytes of `n` elements of `size` drawn from a few patterns per size, so that equal
/// elements are common (NaN, ±0, ±inf and i64 neighbours above 2^53 among them).
fn mask_bytes(n: usize, size: usize, seed: u64) -> Vec<u8> {
    let pool: Vec<Vec<u8>> = match size {
        1 => [0u8, 1, 2, 127, 128, 255]
            .iter()
            .map(|&b| vec![b])
            .collect(),
        4 => [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]
        .iter()
        .map(|f| f.to_le_bytes().to_vec())
        .chain(
            [i32::MIN, i32::MAX, 16_777_217]
                .iter()
                .map(|i| i.to_le_bytes().to_vec()),
        )
        .collect(),
        _ => [
            0i64,
            -1,
            1,
            (1 << 53) + 1,
            1 << 53,
            i64::MIN,
            i64::MAX,
            -(1 << 53) - 1,
        ]
        .iter()
        .map(|i| i.to_le_bytes().to_vec())
        .collect(),
    };
    let mut s = seed;
    (0..n)
        .flat_map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            pool[(s >> 33) as usize % pool.len()].clone()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Mask kernels over dense, broadcast and reversed views of every operand (f32 NaNs,
    /// i64 above 2^53, bool bytes 2 and 255), JIT against the executor, byte for byte.
    #[test]
    fn mask_kernels_match_exec(
        kernel in mask_kernel(),
        shape in prop::collection::vec(prop_oneof![Just(1u64), 1u64..6, 15u64..40], 0..4),
        walks in prop::collection::vec(prop::collection::vec(walk(), 4), 3),
        seed in any::<u64>(),
    ) {
        use edgecc_program::{Const, ConstId, DType, IoTensor, LogicOp};
        let n: u64 = shape.iter().product();
        let r = shape.len();
        let t = |name: &str, dtype: DType| IoTensor {
            name: name.into(),
            dtype,
            shape: shape.clone(),
        };
        let out = walk_view(Buffer::Output(0), &shape, &vec![Walk::Dense; r]);
        let v = |i: usize| walk_view(Buffer::Input(i as u32), &shape, &walks[i][..r]);
        let (kernel, in_types, out_type, consts) = match kernel {
            MaskKernel::Compare(op, dtype) => (
                Kernel::Compare { shape: shape.clone(), op, dtype, a: v(0), b: v(1), output: out },
                vec![dtype, dtype],
                DType::Bool,
                vec![],
            ),
            MaskKernel::Logic(op) => {
                let not = op == LogicOp::Not;
                (
                    Kernel::Logic {
                        shape: shape.clone(),
                        op,
                        a: v(0),
                        b: (!not).then(|| v(1)),
                        output: out,
                    },
                    if not { vec![DType::Bool] } else { vec![DType::Bool; 2] },
                    DType::Bool,
                    vec![],
                )
            }
            MaskKernel::Select(e, c) => {
                let dtype = match e {
                    1 => DType::U8,
                    4 => DType::F32,
                    _ => DType::I64,
                };
                let (cond, consts, mut types) = match c {
                    Some(byte) => (
                        edgecc_program::View {
                            buf: Buffer::Const(ConstId(0)),
                            offset: 0,
                            strides: vec![0; r],
                        },
                        vec![Const { name: "c".into(), dtype: DType::Bool, shape: vec![], data: vec![byte] }],
                        vec![],
                    ),
                    None => (v(2), vec![], vec![]),
                };
                types.extend([dtype, dtype]);
                if c.is_none() {
                    types.push(DType::Bool);
                }
                (
                    Kernel::Select { shape: shape.clone(), elem_bytes: e, cond, a: v(0), b: v(1), output: out },
                    types,
                    dtype,
                    consts,
                )
            }
        };
        let inputs: Vec<IoTensor> = in_types.iter().enumerate().map(|(i, &d)| t(&format!("x{i}"), d)).collect();
        let data: Vec<Vec<u8>> = in_types
            .iter()
            .enumerate()
            .map(|(i, d)| mask_bytes(n as usize, d.size(), seed ^ i as u64))
            .collect();
        let p = program(inputs, vec![t("y", out_type)], consts, 0, vec![kernel]);
        let (e, j) = run_both_bytes(&p, &data);
        let (e, j) = (e.expect("exec"), j.expect("jit"));
        prop_assert_eq!(e, j, "{:?}", p.kernels[0]);
    }
}

/// The checker refuses malformed mask kernels instead of emitting out-of-bounds code.
#[test]
fn malformed_mask_kernels_are_refused() {
    use edgecc_program::{CmpOp, DType, IoTensor, LogicOp, View};
    let t = |name: &str, dtype: DType, n: u64| IoTensor {
        name: name.into(),
        dtype,
        shape: vec![n],
    };
    let v = |buf: Buffer, offset: u64| View {
        buf,
        offset,
        strides: vec![1],
    };
    let bad = [
        // Reads past the end of an 8-element i64 input.
        Kernel::Compare {
            shape: vec![8],
            op: CmpOp::Equal,
            dtype: DType::I64,
            a: v(Buffer::Input(0), 1),
            b: v(Buffer::Input(0), 0),
            output: v(Buffer::Output(0), 0),
        },
        Kernel::Logic {
            shape: vec![8],
            op: LogicOp::And,
            a: v(Buffer::Input(1), 0),
            b: None,
            output: v(Buffer::Output(0), 0),
        },
        Kernel::Logic {
            shape: vec![8],
            op: LogicOp::Not,
            a: v(Buffer::Input(1), 0),
            b: Some(v(Buffer::Input(1), 0)),
            output: v(Buffer::Output(0), 0),
        },
        Kernel::Select {
            shape: vec![8],
            elem_bytes: 2,
            cond: v(Buffer::Input(1), 0),
            a: v(Buffer::Input(1), 0),
            b: v(Buffer::Input(1), 0),
            output: v(Buffer::Output(0), 0),
        },
        // Writes into an input.
        Kernel::Select {
            shape: vec![8],
            elem_bytes: 1,
            cond: v(Buffer::Input(1), 0),
            a: v(Buffer::Input(1), 0),
            b: v(Buffer::Input(1), 0),
            output: v(Buffer::Input(1), 0),
        },
    ];
    for k in bad {
        let p = program(
            vec![t("a", DType::I64, 8), t("m", DType::Bool, 8)],
            vec![t("y", DType::Bool, 8)],
            vec![],
            0,
            vec![k.clone()],
        );
        assert!(edgecc_cranelift::compile_jit(&p).is_err(), "accepted {k:?}");
        let mut out = [0u8; 8];
        let ins = [vec![0u8; 64], vec![0u8; 8]];
        let refs: Vec<&[u8]> = ins.iter().map(|b| &b[..]).collect();
        let r = edgecc_program::exec::run(&p, &refs, &mut [&mut out[..]], &mut []);
        assert!(r.is_err(), "exec accepted {k:?}");
    }
}

/// Where a layer norm's scale or bias comes from in [`layer_norm_matches_exec`]: 0 absent,
/// 1 a constant vector, 2 one constant value (stride 0), 3 an input vector, 4 one input
/// value.
fn ln_param(
    form: u8,
    len: u64,
    name: &str,
    seed: u64,
    consts: &mut Vec<edgecc_program::Const>,
    inputs: &mut Vec<edgecc_program::IoTensor>,
) -> Option<edgecc_program::View> {
    let n = if matches!(form, 2 | 4) { 1 } else { len };
    let stride = if n == 1 { 0 } else { 1 };
    match form {
        0 => None,
        1 | 2 => {
            consts.push(konst(name, &rand_vec(n as usize, seed)));
            Some(view(cid(consts.len() as u32 - 1), 0, &[stride]))
        }
        _ => {
            inputs.push(io(name, &[n]));
            Some(view(Buffer::Input(inputs.len() as u32 - 1), 0, &[stride]))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// The one-kernel layer norm against the scalar executor: row lengths around the
    /// vector width (tails of 0 to 3, length 1), scale and bias constant or runtime, full
    /// or one value, the optional statistics outputs, in place in the arena. The two
    /// differ only in the order of the row sums (lanes then tail against left to right),
    /// about `(len + 2)·2^-24` of the row's magnitude in the mean and the variance;
    /// centred values are divided by σ, so the bound grows with `inv = 1/σ`.
    #[test]
    fn layer_norm_matches_exec(
        outer in 1u64..5, len in 1u64..40, scale in 0u8..5, bias in 0u8..5,
        stats: bool, in_place: bool, eps_small: bool, seed in 0u64..1000,
    ) {
        let epsilon = if eps_small { 1e-5 } else { 1e-2 };
        let total = outer * len;
        let mut inputs = vec![io("x", &[total])];
        let mut consts = Vec::new();
        let scale = ln_param(scale, len, "scale", seed + 1, &mut consts, &mut inputs);
        let bias = ln_param(bias, len, "bias", seed + 2, &mut consts, &mut inputs);
        let mut outputs = vec![io("y", &[total])];
        let (mean, inv_std) = if stats {
            outputs.extend([io("mean", &[outer]), io("inv", &[outer])]);
            (Some(Buffer::Output(1)), Some(Buffer::Output(2)))
        } else {
            (None, None)
        };
        let bytes = total * 4;
        let arena = Buffer::Arena { offset: 0 };
        let (input, output) = if in_place { (arena, arena) } else { (Buffer::Input(0), Buffer::Output(0)) };
        let mut kernels = Vec::new();
        if in_place {
            kernels.push(Kernel::Copy { bytes, src: Buffer::Input(0), dst: arena });
        }
        kernels.push(Kernel::LayerNorm { outer, len, epsilon, input, scale, bias, output, mean, inv_std });
        if in_place {
            kernels.push(Kernel::Copy { bytes, src: arena, dst: Buffer::Output(0) });
        }
        let p = program(inputs, outputs, consts, if in_place { bytes.next_multiple_of(64) } else { 0 }, kernels);
        let ins = inputs_for(&p, seed);
        let want = run_exec(&p, &ins);
        let got = run_jit(&p, &ins);
        let u = (len + 2) as f32 * 2f32.powi(-24) * 4.0;
        for (o, row) in ins[0].chunks(len as usize).enumerate() {
            let m = row.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / len as f64;
            let inv = (1.0 / (var + epsilon as f64).sqrt()) as f32;
            let r = o * len as usize..(o + 1) * len as usize;
            // y: the mean's error times inv (and |scale|, |bias| ≤ 1), plus roundings.
            assert_close(&[got[0][r.clone()].to_vec()], &[want[0][r].to_vec()], u * (1.0 + 2.0 * inv), 4.0 * u, "layer norm y");
            if stats {
                assert_close(&[vec![got[1][o]]], &[vec![want[1][o]]], u, 0.0, "layer norm mean");
                assert_close(&[vec![got[2][o]]], &[vec![want[2][o]]], 0.0, 2.0 * u * (1.0 + inv * inv), "layer norm inv_std");
            }
        }
    }
}

/// The 8-lane paths of u8/i8 ↔ f32 (a quantized model's float edges): the edge values
/// repeated past several vector steps plus a tail, so every value lands in every lane.
#[test]
fn convert_bytes_and_floats_in_vectors() {
    use edgecc_program::DType;
    for (from, to) in [
        (DType::U8, DType::F32),
        (DType::I8, DType::F32),
        (DType::F32, DType::U8),
        (DType::F32, DType::I8),
    ] {
        let edges: Vec<u8> = convert_edges(from).concat();
        let size = from.size();
        let mut data = Vec::new();
        // 8·k + 3 elements for k ≥ 4, each edge value at several lane positions.
        while data.len() / size < 8 * 4 + 3 || (data.len() / size) % 8 != 3 {
            let n = (data.len() / size) % (edges.len() / size);
            data.extend_from_slice(&edges[n * size..(n + 1) * size]);
            if data.len() / size > 8 * 64 {
                break;
            }
        }
        convert_both(from, to, &data);
    }
}
