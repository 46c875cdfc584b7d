//! Requantization folding: the float islands a quantized model is written as
//! (DequantizeLinear → float op → QuantizeLinear, what onnxruntime's quantizer emits in the
//! QDQ format, and what the importer expands the QOperator format into) become integer
//! kernels, so a quantized model runs as integer code instead of dequantizing everything.
//!
//! Rules, applied in topological order until nothing changes:
//!
//! - **Integer GEMM/conv.** `Q(act(op(DQ(x), DQ(w), bias)))` with `op` a Conv, MatMul or
//!   Gemm, `w` a constant with zero point(s) such that `w − zw` fits i8, `act` an optional
//!   Relu or Clip, per-tensor scales on `x` and the result, per-tensor or per-output-channel
//!   ones on `w`, becomes one [`Op::QConv`] / [`Op::QGemm`]:
//!   `acc = Σ (x − zx)(w − zw) + bias_q` in int32 with `bias_q = round(bias / (sx·sw[c]))`,
//!   then `y = clamp(zy + acc·M[c] / 2^shift)` where `M[c] / 2^shift ≈ sx·sw[c]/sy` (31 bits
//!   of precision for the largest channel) and the clamp is the quantized Relu/Clip
//!   (`Q` is monotone, so `Q(clip(v)) = clamp(Q(v), Q(min), Q(max))` exactly).
//! - **Channelwise ops as depthwise integer convolutions.** BatchNormalization (1×1,
//!   weight ±127, `|a[c]|/127` in the multiplier), GlobalAveragePool and unpadded
//!   AveragePool (weights 1, the division in the multiplier) between DQ and Q.
//! - **Elementwise float functions as lookup tables.** `Q(f(x))` where every value on the
//!   way is a function of one byte tensor `x`, element by element (Tanh, Sigmoid,
//!   HardSwish, a scalar Mul, GELU written out with each step quantized, earlier tables,
//!   and `Q(DQ(x))` with other parameters, i.e. a requantization) is a 256-entry table the
//!   interpreter computes at compile time (so it is exact) and a Gather on the 8-bit values.
//! - **Integer Add and Mul.** `Q(act(Add(DQ(a), DQ(b))))` and `Q(act(Mul(DQ(a), DQ(b))))`
//!   (the residual Add of a quantized CNN or encoder, onnxruntime's separately quantized
//!   bias Add, QLinearAdd / QLinearMul) with constant per-tensor scales and zero points on
//!   both DQs and the Q, u8 or i8 each, ONNX broadcasting, either operand possibly a
//!   constant (a quantized bias vector stays 8-bit), become one [`Op::QBinary`]:
//!   `acc = (a − za)·ma + (b − zb)·mb` with `ma/2^s ≈ sa/sy`, `mb/2^s ≈ sb/sy`, or
//!   `acc = (a − za)·(b − zb)·m` with `m/2^s ≈ sa·sb/sy` (computed in f64), then
//!   `y = clamp(zy + round(acc / 2^s))` with the activation as the clamp as above. The
//!   multipliers carry 30 bits: `s` is the largest shift in `16..=46` that keeps every
//!   multiplier in `[−2^30, 2^30)` (the range whose high halves `m >> 15` are i16, so
//!   targets compute `acc` exactly with 16×16-bit multiplies and 32-bit sums, see
//!   `edgecc_program::QBinary`); a ratio of 2^14 or more does not fit at shift 16 and
//!   stays in float.
//! - **Dynamic quantization.** MatMulInteger / ConvInteger with constant weights (zero
//!   points folded into i8) become QGemm / QConv with int32 output; DynamicQuantizeLinear
//!   and the Cast/Mul scale chain after them stay as they are (lowered as float kernels).
//! - **Exact ops move past the dequantization.** `op(DQ(q))` = `DQ(op(q))` for MaxPool
//!   (a positive scale keeps the order), Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
//!   Identity and Gather (a quantized embedding table stays 8-bit) with per-tensor
//!   parameters, and `Concat(DQ(a), DQ(b), ..)` with equal ones: the op then runs on the
//!   8-bit values, with no float round trip.
//! - **`Q(DQ(q))` with the same parameters is `q`**: the quantize-dequantize pairs around
//!   every moved op collapse.
//!
//! At a QuantizeLinear the rules are tried in that order of precedence: the GEMM/conv rule
//! (which also takes a float bias Add after a product), the collapse of a pair, the lookup
//! table (an Add or Mul whose operands come from the same bytes, or one operand a
//! dequantized one-element constant, is a function of one byte: exact as a table), then
//! the integer Add/Mul.
//! - **Quantized weights that feed float work** are dequantized here, at compile time.
//!
//! The folded graph computes within one quantization step of the unfolded one: the
//! differences are the rounding of the bias to the accumulator's unit (half a unit of
//! `sx·sw`, far below `sy`) and of the multiplier, and ties (the multiplier rounds half
//! up, QuantizeLinear half to even). Whenever the exact value `v` (in output steps) and
//! the folded one `v + e` are within `|e| < 1` of each other, their two roundings are at
//! most one step apart, whatever the tie rules; so it is enough that the fixed-point
//! factors move the value by less than a step (the f32 rounding of the unfolded graph is
//! about 2^-22 of the terms):
//!
//! - GEMM and convolution multipliers have 31 bits: `e` is about 2^-31 of the
//!   accumulator's value in steps.
//! - A Mul's multiplier has at least 29 bits (`|m| ≥ 2^29` unless the shift stops at 46):
//!   `e ≤ |v|·2^-29`, far under a step for any output in range (`|v| ≤ 511` between the
//!   zero point and the clamp), and an output past the range by more than half a step
//!   stays past it; with shift 46, `|e| ≤ 255²·2^-47`.
//! - An Add rounds two multipliers at one shift: `e = (a − za)·(ma/2^s − ra) + (b −
//!   zb)·(mb/2^s − rb)`, where the terms need not be of the output's size (they can
//!   cancel), so the bound is over the operands: `|e| ≤ Σ max|x − z|·|m/2^s − r|`. The
//!   rule computes that bound from the actual multipliers and zero points and folds only
//!   when it is at most half a step. Each multiplier's error is at most `2^-(s+1)` with
//!   `s ≥ 16`, so the bound is at most `2·255·2^-17 < 0.004` step for every ratio that
//!   fits: the check never refuses a fitting Add, it only states the argument.
//!
//! Why 30 bits and not 15 (which 16×16-bit products would take directly): a residual Add
//! whose exact sum lies within `|v|·2^-15` of a rounding step (36.5003 steps, say) rounds
//! the other way with 15-bit multipliers. That is still within one step, but a float
//! LayerNorm after the Add divides by the row's deviation and can make that step two:
//! `encoder_qdq` moved by two steps on 6 % of its outputs. With 30 bits such near-ties
//! need `|v|·2^-30`, below the f32 rounding of the unfolded graph itself.
//!
//! What stays in float is listed by [`float_islands`].

use super::Pass;
use super::pattern::{producer, replace_value, single_use};
use crate::Error;
use crate::interp;
use crate::ir::{
    Binary, DType, Data, Graph, NodeIndex, Op, QBinaryAttrs, QBinaryOp, Requant, Tensor, Unary,
    ValueId, WindowAttrs,
};

pub struct FoldRequant;

impl Pass for FoldRequant {
    fn name(&self) -> &'static str {
        "fold-requant"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let mut counts = Counts::default();
        loop {
            let before = counts.total();
            for n in g.topo_order() {
                if g.try_node(n).is_none() {
                    continue;
                }
                match &g.node(n).op {
                    Op::QuantizeLinear { .. } => {
                        if let Ok(m) = match_integer(g, n) {
                            rewrite_integer(g, m)?;
                            counts.integer += 1;
                        } else if collapse_pair(g, n) {
                            counts.pairs += 1;
                        } else if lookup_table(g, n)? {
                            counts.tables += 1;
                        } else if let Ok(m) = match_qbinary(g, n) {
                            rewrite_qbinary(g, m)?;
                            counts.binary += 1;
                        }
                    }
                    Op::MatMulInteger | Op::ConvInteger { .. } => {
                        counts.integer += usize::from(integer_product(g, n)?)
                    }
                    Op::Concat { .. } => counts.moved += usize::from(concat_past(g, n)?),
                    op if moves_past(op) => counts.moved += usize::from(move_past(g, n)?),
                    _ => {}
                }
            }
            if counts.total() == before {
                break;
            }
        }
        counts.weights = dequantize_constants(g)?;
        Ok(format!(
            "{} integer kernels, {} integer Add/Mul, {} lookup tables, {} ops moved onto \
             8-bit values, {} quantize/dequantize pairs removed, {} weights dequantized for \
             float ops",
            counts.integer,
            counts.binary,
            counts.tables,
            counts.moved,
            counts.pairs,
            counts.weights
        ))
    }
}

#[derive(Default)]
struct Counts {
    integer: usize,
    binary: usize,
    tables: usize,
    moved: usize,
    pairs: usize,
    weights: usize,
}

impl Counts {
    fn total(&self) -> usize {
        self.integer + self.binary + self.tables + self.moved + self.pairs
    }
}

/// Constant quantization parameters of a QuantizeLinear or DequantizeLinear node.
#[derive(Clone, Debug, PartialEq)]
struct Params {
    scale: Vec<f32>,
    zero: Vec<i64>,
    /// The quantized dtype (the zero point's, u8 when absent).
    dtype: DType,
    axis: i64,
}

impl Params {
    fn per_tensor(&self) -> bool {
        self.scale.len() == 1
    }
}

/// The parameters of Q/DQ node `n` when they are constants.
fn params(g: &Graph, n: NodeIndex) -> Option<Params> {
    let node = g.node(n);
    let axis = match node.op {
        Op::QuantizeLinear { axis, .. } | Op::DequantizeLinear { axis } => axis,
        _ => return None,
    };
    let scale = g.konst(node.inputs[1])?.as_f32()?.to_vec();
    let (zero, dtype) = match node.inputs.get(2) {
        Some(&z) => {
            let t = g.konst(z)?;
            (t.to_i64s()?, t.dtype)
        }
        None => (
            vec![0; scale.len()],
            match node.op {
                Op::QuantizeLinear { to, .. } => to,
                _ => g.value(node.inputs[0]).dtype,
            },
        ),
    };
    Some(Params {
        scale,
        zero,
        dtype,
        axis,
    })
}

/// The DequantizeLinear producing `v`, if any.
fn dequantized(g: &Graph, v: ValueId) -> Option<NodeIndex> {
    producer(g, v)
        .filter(|(_, node)| matches!(node.op, Op::DequantizeLinear { .. }))
        .map(|(n, _)| n)
}

/// A float Conv/MatMul/Gemm island that becomes one integer kernel.
struct Integer {
    /// The QuantizeLinear ending the island; its result is replaced.
    q: NodeIndex,
    op: NodeIndex,
    kind: Kind,
    /// The 8-bit input, its zero point (a value: constant or computed) and scale.
    x: ValueId,
    x_zero: Option<ValueId>,
    sx: f32,
    /// Weights minus their zero points, in the kernel's layout (OIHW, or `[K, N]`).
    w: Tensor,
    /// The weight scale of each output channel.
    sw: Vec<f32>,
    /// The float bias per output channel, as the unfolded graph adds it.
    bias: Option<Vec<f32>>,
    /// Extra factor on the product (Gemm's alpha).
    alpha: f32,
    out: Params,
    lo: i32,
    hi: i32,
}

enum Kind {
    Conv { window: WindowAttrs, group: usize },
    Gemm,
}

fn range(d: DType) -> (i32, i32) {
    if d == DType::I8 {
        (-128, 127)
    } else {
        (0, 255)
    }
}

/// `round_half_even(v / scale) + zero`, as QuantizeLinear computes it, unclamped.
fn quantize_value(v: f32, scale: f32, zero: i64) -> f64 {
    (v / scale).round_ties_even() as f64 + zero as f64
}

/// What QuantizeLinear `q` (per-tensor parameters `out`) quantizes, seen through one Relu
/// or Clip: the value before the activation and the clamp `[lo, hi]` that replaces it
/// (`Q` is monotone, so `Q(clip(v, a, b)) = clamp(Q(v), Q(a), Q(b))` exactly), or the
/// value `q` reads and its dtype's full range when there is no activation.
fn through_activation(
    g: &Graph,
    q: NodeIndex,
    out: &Params,
) -> Result<(ValueId, i32, i32), String> {
    let (full_lo, full_hi) = range(out.dtype);
    let v = g.node(q).inputs[0];
    let (_, node) = producer(g, v).ok_or("the quantized value is not computed")?;
    // An activation the clamp can take.
    let (min, max) = match &node.op {
        Op::Unary(Unary::Relu) => (0.0, f32::INFINITY),
        Op::Clip { min, max } => (*min, *max),
        _ => return Ok((v, full_lo, full_hi)),
    };
    if !single_use(g, v) {
        return Err("the activation's input has other readers".into());
    }
    let (s, z) = (out.scale[0], out.zero[0]);
    let lo = quantize_value(min, s, z).clamp(full_lo as f64, full_hi as f64) as i32;
    let hi = quantize_value(max, s, z).clamp(full_lo as f64, full_hi as f64) as i32;
    if min.is_nan() || max.is_nan() || min > max || lo > hi {
        return Err("the clip range is empty".into());
    }
    let v = node.inputs[0];
    producer(g, v).ok_or("the activation's input is not computed")?;
    Ok((v, lo, hi))
}

/// Matches an integer island ending at QuantizeLinear `q`; the error says why not, for
/// the float report. A match is always rewritten: its multipliers and bias fit.
fn match_integer(g: &Graph, q: NodeIndex) -> Result<Integer, String> {
    let m = match_island(g, q)?;
    fixed_point(&m)?;
    Ok(m)
}

/// The requantization of a matched island: multipliers, their shift and the bias in
/// units of `alpha·sx·sw[c]`; the error says why there is none.
fn fixed_point(m: &Integer) -> Result<(Vec<i32>, u32, Vec<i32>), String> {
    let real: Vec<f64> =
        m.sw.iter()
            .map(|&sw| m.alpha as f64 * m.sx as f64 * sw as f64 / m.out.scale[0] as f64)
            .collect();
    let (mult, shift) = multipliers(&real).ok_or_else(|| {
        format!(
            "the rescale factors alpha·sx·sw/sy are not all positive and finite (sx {}, sw {:?}, \
             sy {}, alpha {})",
            m.sx,
            &m.sw[..m.sw.len().min(8)],
            m.out.scale[0],
            m.alpha
        )
    })?;
    let mut bias = vec![0i32; m.sw.len()];
    if let Some(b) = &m.bias {
        for (c, (&bv, &sw)) in b.iter().zip(&m.sw).enumerate() {
            let q = (bv as f64 / (m.alpha as f64 * m.sx as f64 * sw as f64)).round_ties_even();
            if q.is_nan() || q.abs() >= i32::MAX as f64 {
                return Err(format!(
                    "bias {bv} of channel {c} does not fit int32 in units of alpha·sx·sw"
                ));
            }
            bias[c] = q as i32;
        }
    }
    Ok((mult, shift, bias))
}

fn match_island(g: &Graph, q: NodeIndex) -> Result<Integer, String> {
    let out = params(g, q).ok_or("the output scale or zero point is not a constant")?;
    if !out.per_tensor() {
        return Err("the output is quantized per channel".into());
    }
    let (mut v, lo, hi) = through_activation(g, q, &out)?;
    let (mut n, mut node) = producer(g, v).ok_or("the quantized value is not computed")?;
    // A bias added after the product (a Linear exported as MatMul + Add).
    let mut added_bias = None;
    if matches!(node.op, Op::Binary(crate::ir::Binary::Add)) {
        if !single_use(g, v) {
            return Err("the bias Add's result has other readers".into());
        }
        let [a, b] = node.inputs[..] else {
            return Err("a malformed Add".into());
        };
        let (prod, bias) = match (constant_f32(g, a), constant_f32(g, b)) {
            (None, Some(bv)) => (a, bv),
            (Some(av), None) => (b, av),
            _ => return Err("an Add of two computed values has no integer kernel".into()),
        };
        // One value per output column: `[N]`, `[1, .., 1, N]`, or one value.
        let shape = &g.value(if prod == a { b } else { a }).shape;
        let per_column = shape.iter().rev().skip(1).all(|&d| d == 1);
        if !per_column {
            return Err("the added bias is not one value per output channel".into());
        }
        added_bias = Some((bias, shape.last().copied().unwrap_or(1)));
        v = prod;
        (n, node) = producer(g, v).ok_or("the bias Add's input is not computed")?;
    }
    if !single_use(g, v) {
        return Err(format!("the result of '{}' has other readers", node.name));
    }
    if matches!(
        node.op,
        Op::BatchNorm { .. } | Op::GlobalAveragePool | Op::AveragePool { .. }
    ) {
        if added_bias.is_some() {
            return Err("a bias added after a channelwise op".into());
        }
        return match_channelwise(g, q, n, out, lo, hi);
    }
    let (kind, alpha, trans_b) = match &node.op {
        Op::Conv { window, group } => (
            Kind::Conv {
                window: window.clone(),
                group: *group,
            },
            1.0,
            false,
        ),
        Op::MatMul => (Kind::Gemm, 1.0, false),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            if *trans_a {
                return Err("Gemm with a transposed A".into());
            }
            if *beta != 1.0 && node.inputs.len() > 2 {
                return Err("Gemm with beta != 1".into());
            }
            (Kind::Gemm, *alpha, *trans_b)
        }
        other => return Err(format!("{} has no integer kernel", other.name())),
    };
    let (x, x_zero, sx) = dequantized_input(g, node.inputs[0])?;
    // The weights: constant, their zero point folded into i8.
    let dqw = dequantized(g, node.inputs[1]).ok_or("the weights are not quantized")?;
    let wq = g
        .konst(g.node(dqw).inputs[0])
        .ok_or("the quantized weights are not a constant")?;
    let wp = params(g, dqw).ok_or("the weight scale or zero point is not a constant")?;
    let wshape = wq.shape.clone();
    let wv = wq.to_i64s().ok_or("the weights are not integers")?;
    let (channels, ch_axis) = match kind {
        Kind::Conv { .. } => (wshape[0], 0),
        Kind::Gemm if wshape.len() != 2 => return Err("the weights are not 2-D".into()),
        Kind::Gemm if trans_b => (wshape[0], 0),
        Kind::Gemm => (wshape[1], 1),
    };
    let per_channel = !wp.per_tensor();
    if per_channel && crate::ir::infer::norm_axis(wp.axis, wshape.len()).ok() != Some(ch_axis) {
        return Err(
            "the weights are quantized along an axis other than the output channels".into(),
        );
    }
    let inner: usize = wshape[ch_axis + 1..].iter().product();
    let mut w = Vec::with_capacity(wv.len());
    for (i, &q) in wv.iter().enumerate() {
        let c = if per_channel {
            (i / inner) % channels
        } else {
            0
        };
        let d = q - wp.zero[c];
        if !(-128..=127).contains(&d) {
            return Err("the weights minus their zero point do not fit int8".into());
        }
        w.push(d as i8);
    }
    let w = if matches!(kind, Kind::Gemm) && trans_b {
        // `[N, K]` → `[K, N]`.
        let (nn, k) = (wshape[0], wshape[1]);
        let t: Vec<i8> = (0..k * nn).map(|i| w[(i % nn) * k + i / nn]).collect();
        Tensor {
            dtype: DType::I8,
            shape: vec![k, nn],
            data: Data::I8(t),
        }
    } else {
        Tensor {
            dtype: DType::I8,
            shape: wshape.clone(),
            data: Data::I8(w),
        }
    };
    let sw = if per_channel {
        wp.scale.clone()
    } else {
        vec![wp.scale[0]; channels]
    };
    // The bias: a float constant or a dequantized constant, one per output channel.
    let mut bias = match node.inputs.get(2) {
        None => None,
        Some(&b) => Some(constant_f32(g, b).ok_or("the bias is not a constant")?),
    };
    if let Some((extra, len)) = added_bias {
        // One value per output channel along the last axis (or one for all).
        if !matches!(kind, Kind::Gemm) || !(len == channels || len == 1) {
            return Err("the added bias is not one value per output channel".into());
        }
        let extra: Vec<f32> = (0..channels).map(|c| extra[c % extra.len()]).collect();
        bias = Some(match bias {
            // Both are added in f32, in this order, as the unfolded graph does.
            Some(b) => b.iter().zip(&extra).map(|(x, y)| x + y).collect(),
            None => extra,
        });
    }
    if let Some(b) = &bias
        && b.len() != channels
    {
        return Err("the bias is not one value per output channel".into());
    }
    Ok(Integer {
        q,
        op: n,
        kind,
        x,
        x_zero,
        sx,
        w,
        sw,
        bias,
        alpha,
        out,
        lo,
        hi,
    })
}

/// The 8-bit value behind a per-tensor DequantizeLinear producing `v`: the value, its zero
/// point (absent: 0) and its scale.
fn dequantized_input(g: &Graph, v: ValueId) -> Result<(ValueId, Option<ValueId>, f32), String> {
    let dqx = dequantized(g, v).ok_or("its input is not dequantized")?;
    let xp = params(g, dqx).ok_or("the input scale or zero point is not a constant")?;
    if !xp.per_tensor() {
        return Err("the input is quantized per channel".into());
    }
    let x = g.node(dqx).inputs[0];
    if !matches!(g.value(x).dtype, DType::U8 | DType::I8) {
        return Err(format!("the input is {}", g.value(x).dtype));
    }
    Ok((x, g.node(dqx).inputs.get(2).copied(), xp.scale[0]))
}

/// Per-channel work as a depthwise integer convolution: BatchNormalization
/// (`a[c]·x + b[c]`) is a 1×1 one with weight ±127 per channel (the multiplier carries
/// `|a[c]|/127`, the bias `b[c]`), GlobalAveragePool one whose window is the whole plane
/// with weights 1 and multiplier `1/(H·W)`, an AveragePool without padding the same
/// over its window.
fn match_channelwise(
    g: &Graph,
    q: NodeIndex,
    n: NodeIndex,
    out: Params,
    lo: i32,
    hi: i32,
) -> Result<Integer, String> {
    let node = g.node(n);
    let (x, x_zero, sx) = dequantized_input(g, node.inputs[0])?;
    let shape = g.value(x).shape.clone();
    if shape.len() < 3 {
        return Err("the input is not N×C×spatial".into());
    }
    let c = shape[1];
    let spatial = &shape[2..];
    let rank = spatial.len();
    let window = |kernel: Vec<usize>, strides: Vec<usize>| WindowAttrs {
        kernel,
        strides,
        dilations: vec![1; rank],
        pads: vec![0; 2 * rank],
        auto_pad: crate::ir::AutoPad::NotSet,
        ceil_mode: false,
    };
    let (kernel_shape, strides, taps, sw, bias, wv): (Vec<usize>, _, usize, Vec<f32>, _, Vec<i8>) =
        match &node.op {
            Op::BatchNorm { epsilon } => {
                let p: Vec<Vec<f32>> = node.inputs[1..5]
                    .iter()
                    .map(|&v| constant_f32(g, v))
                    .collect::<Option<_>>()
                    .ok_or("the BatchNormalization parameters are not constants")?;
                // As the interpreter: s = scale / sqrt(var + eps), y = (x − mean)·s + B.
                let (mut sw, mut bias, mut wv) = (Vec::new(), Vec::new(), Vec::new());
                if p.iter().any(|v| v.len() != c) {
                    return Err("the BatchNormalization parameters are not per channel".into());
                }
                for (((&k, &b), &m), &var) in p[0].iter().zip(&p[1]).zip(&p[2]).zip(&p[3]) {
                    let a = k as f64 / (var as f64 + *epsilon as f64).sqrt();
                    if a == 0.0 || !a.is_finite() {
                        return Err("a channel of the BatchNormalization has scale 0".into());
                    }
                    sw.push((a.abs() / 127.0) as f32);
                    bias.push((b as f64 - m as f64 * a) as f32);
                    wv.push(if a > 0.0 { 127 } else { -127 });
                }
                (vec![1; rank], vec![1; rank], 1, sw, Some(bias), wv)
            }
            Op::GlobalAveragePool => {
                let taps: usize = spatial.iter().product();
                (spatial.to_vec(), vec![1; rank], taps, vec![], None, vec![])
            }
            Op::AveragePool { window: w, .. } => {
                let padded = w.pads.iter().any(|&p| p != 0)
                    || !matches!(
                        w.auto_pad,
                        crate::ir::AutoPad::NotSet | crate::ir::AutoPad::Valid
                    )
                    || w.ceil_mode
                    || w.dilations.iter().any(|&d| d != 1);
                if padded {
                    return Err(
                        "an AveragePool with padding divides by a count that varies at the \
                         borders (no integer kernel)"
                            .into(),
                    );
                }
                let taps: usize = w.kernel.iter().product();
                (
                    w.kernel.clone(),
                    w.strides.clone(),
                    taps,
                    vec![],
                    None,
                    vec![],
                )
            }
            _ => return Err(format!("{} has no integer kernel", node.op.name())),
        };
    let (sw, wv) = if sw.is_empty() {
        // Averages: weight 1 on every tap, the division in the multiplier.
        (vec![1.0 / taps as f32; c], vec![1i8; c * taps])
    } else {
        (sw, wv)
    };
    let mut wshape = vec![c, 1];
    wshape.extend(&kernel_shape);
    Ok(Integer {
        q,
        op: n,
        kind: Kind::Conv {
            window: window(kernel_shape, strides),
            group: c,
        },
        x,
        x_zero,
        sx,
        w: Tensor {
            dtype: DType::I8,
            shape: wshape,
            data: Data::I8(wv),
        },
        sw,
        bias,
        alpha: 1.0,
        out,
        lo,
        hi,
    })
}

/// The f32 values of a constant, or of a DequantizeLinear of constants (evaluated as the
/// interpreter would).
fn constant_f32(g: &Graph, v: ValueId) -> Option<Vec<f32>> {
    if let Some(t) = g.konst(v) {
        return t.as_f32().map(<[f32]>::to_vec);
    }
    let dq = dequantized(g, v)?;
    let node = g.node(dq);
    let args: Vec<&Tensor> = node
        .inputs
        .iter()
        .map(|&i| g.konst(i))
        .collect::<Option<_>>()?;
    let t = interp::eval(&node.op, &args).ok()?;
    t.first()?.as_f32().map(<[f32]>::to_vec)
}

/// Fixed-point multipliers for the real factors `real` (all positive) with one shift:
/// the largest shift at which every multiplier fits in 31 bits.
pub fn multipliers(real: &[f64]) -> Option<(Vec<i32>, u32)> {
    let max = real.iter().copied().fold(0.0f64, f64::max);
    if max <= 0.0 || !max.is_finite() || real.iter().any(|&r| r.is_nan() || r < 0.0) {
        return None;
    }
    let fits = |s: u32| (max * 2f64.powi(s as i32)).round() <= i32::MAX as f64;
    let shift = (1..=62).rev().find(|&s| fits(s))?;
    let scale = 2f64.powi(shift as i32);
    Some((
        real.iter().map(|&r| (r * scale).round() as i32).collect(),
        shift,
    ))
}

fn rewrite_integer(g: &mut Graph, m: Integer) -> Result<(), Error> {
    let op_name = g.node(m.op).name.clone();
    // `match_integer` checked that these exist.
    let (mult, shift, bias) =
        fixed_point(&m).map_err(|e| Error::Internal(format!("{op_name}: {e}")))?;
    let x_dtype = g.value(m.x).dtype;
    let x_zero = match m.x_zero {
        Some(z) => z,
        None => g.add_const(
            format!("{op_name}.x_zero"),
            match x_dtype {
                DType::I8 => Tensor {
                    dtype: DType::I8,
                    shape: vec![],
                    data: Data::I8(vec![0]),
                },
                _ => Tensor {
                    dtype: DType::U8,
                    shape: vec![],
                    data: Data::U8(vec![0]),
                },
            },
        ),
    };
    let w = g.add_const(format!("{op_name}.weight_q"), m.w);
    let b = g.add_const(format!("{op_name}.bias_q"), i32_tensor(bias));
    let mc = g.add_const(
        format!("{op_name}.multiplier"),
        i32_tensor(if mult.iter().all(|&x| x == mult[0]) {
            vec![mult[0]]
        } else {
            mult
        }),
    );
    let requant = Some(Requant {
        to: m.out.dtype,
        shift,
        zero_point: m.out.zero[0] as i32,
        lo: m.lo,
        hi: m.hi,
    });
    let op = match m.kind {
        Kind::Conv { window, group } => Op::QConv {
            window,
            group,
            requant,
        },
        Kind::Gemm => Op::QGemm { requant },
    };
    let (_, outs) = g.add_node(op_name, op, vec![m.x, x_zero, w, b, mc])?;
    let old = g.node(m.q).outputs[0];
    replace_value(g, old, outs[0]);
    remove_dead(g, m.q);
    Ok(())
}

fn i32_tensor(v: Vec<i32>) -> Tensor {
    Tensor {
        dtype: DType::I32,
        shape: vec![v.len()],
        data: Data::I32(v),
    }
}

/// An Add or Mul island that becomes one [`Op::QBinary`].
struct QBin {
    /// The QuantizeLinear ending the island; its result is replaced.
    q: NodeIndex,
    /// The Add or Mul.
    op: NodeIndex,
    a: ValueId,
    b: ValueId,
    attrs: QBinaryAttrs,
}

/// The 8-bit value behind a per-tensor DequantizeLinear with constant parameters producing
/// `v`: the value, its scale and its zero point.
fn dequantized_operand(g: &Graph, v: ValueId) -> Result<(ValueId, f64, i32), String> {
    let dq = dequantized(g, v).ok_or("an operand is not dequantized")?;
    let p = params(g, dq).ok_or("an operand's scale or zero point is computed at run time")?;
    if !p.per_tensor() {
        return Err("an operand is quantized per channel".into());
    }
    let x = g.node(dq).inputs[0];
    let dtype = g.value(x).dtype;
    if !matches!(dtype, DType::U8 | DType::I8) {
        return Err(format!("an operand is dequantized from {dtype}"));
    }
    let scale = p.scale[0] as f64;
    if !(scale > 0.0 && scale.is_finite()) {
        return Err("an operand's scale is not a positive number".into());
    }
    Ok((x, scale, p.zero[0] as i32))
}

/// [`QBinary`] multipliers for the factors `real` with one shift: the largest shift in
/// `16..=46` at which every `round(r · 2^shift)` lies in `[−2^30, 2^30)`, so the largest
/// carries 30 bits; `None` when even shift 16 is too much (a factor of 2^14 or more).
///
/// [`QBinary`]: edgecc_program::QBinary
pub fn multipliers_30(real: &[f64]) -> Option<(Vec<i32>, u32)> {
    use edgecc_program::QBinary;
    if real.iter().any(|r| !r.is_finite()) {
        return None;
    }
    let range = QBinary::MULTIPLIERS;
    let fits = |s: u32| {
        real.iter().all(|&r| {
            let m = (r * 2f64.powi(s as i32)).round();
            m >= range.start as f64 && m < range.end as f64
        })
    };
    let shift = QBinary::SHIFTS.rev().find(|&s| fits(s))?;
    let scale = 2f64.powi(shift as i32);
    Some((
        real.iter().map(|&r| (r * scale).round() as i32).collect(),
        shift,
    ))
}

/// The largest `|x − zero|` for an 8-bit `x` of `dtype`.
fn span(dtype: DType, zero: i32) -> f64 {
    let (lo, hi) = range(dtype);
    (zero - lo).max(hi - zero) as f64
}

/// Matches `Q(act(Add(DQ(a), DQ(b))))` or `Q(act(Mul(DQ(a), DQ(b))))` with constant
/// per-tensor parameters on both DQs and the Q; the error says why not, for the float
/// report.
fn match_qbinary(g: &Graph, q: NodeIndex) -> Result<QBin, String> {
    let out = params(g, q).ok_or("the output scale or zero point is not a constant")?;
    if !out.per_tensor() {
        return Err("the output is quantized per channel".into());
    }
    let sy = out.scale[0] as f64;
    if !(sy > 0.0 && sy.is_finite()) {
        return Err("the output scale is not a positive number".into());
    }
    let (v, lo, hi) = through_activation(g, q, &out)?;
    let (n, node) = producer(g, v).ok_or("the quantized value is not computed")?;
    let add = match node.op {
        Op::Binary(Binary::Add) => true,
        Op::Binary(Binary::Mul) => false,
        ref other => return Err(format!("{} is not an Add or Mul", other.name())),
    };
    if !single_use(g, v) {
        return Err(format!("the result of '{}' has other readers", node.name));
    }
    let [ia, ib] = node.inputs[..] else {
        return Err(format!("a malformed {}", node.op.name()));
    };
    let (a, sa, za) = dequantized_operand(g, ia)?;
    let (b, sb, zb) = dequantized_operand(g, ib)?;
    let (da, db) = (g.value(a).dtype, g.value(b).dtype);
    let to = g.value(g.node(q).outputs[0]).dtype;
    let zy = out.zero[0] as i32;
    let (op, shift) = if add {
        let (ra, rb) = (sa / sy, sb / sy);
        let Some((m, shift)) = multipliers_30(&[ra, rb]) else {
            return Err(format!(
                "the Add's scale ratio {:.0} is 2^14 or more: its multiplier does not fit",
                ra.max(rb)
            ));
        };
        // How far the multipliers' rounding can move the sum, in output steps.
        let unit = 2f64.powi(shift as i32);
        let err = span(da, za) * (m[0] as f64 / unit - ra).abs()
            + span(db, zb) * (m[1] as f64 / unit - rb).abs();
        if err > 0.5 {
            return Err(format!(
                "the Add's scale ratio {:.0} leaves its multipliers {err:.2} steps off \
                 (more than half a step)",
                ra.max(rb)
            ));
        }
        (QBinaryOp::Add { ma: m[0], mb: m[1] }, shift)
    } else {
        // No precision check: a Mul is always within one step (the module doc).
        let r = sa * sb / sy;
        let Some((m, shift)) = multipliers_30(&[r]) else {
            return Err(format!(
                "the Mul's scale ratio {r:.0} is 2^14 or more: its multiplier does not fit"
            ));
        };
        (QBinaryOp::Mul { m: m[0] }, shift)
    };
    Ok(QBin {
        q,
        op: n,
        a,
        b,
        attrs: QBinaryAttrs {
            op,
            a_zero: za,
            b_zero: zb,
            shift,
            to,
            zero_point: zy,
            lo,
            hi,
        },
    })
}

fn rewrite_qbinary(g: &mut Graph, m: QBin) -> Result<(), Error> {
    let name = g.node(m.op).name.clone();
    let (_, outs) = g.add_node(name, Op::QBinary(m.attrs), vec![m.a, m.b])?;
    let old = g.node(m.q).outputs[0];
    replace_value(g, old, outs[0]);
    remove_dead(g, m.q);
    Ok(())
}

/// MatMulInteger / ConvInteger (dynamic quantization) with constant weights whose zero
/// point folds into i8 → QGemm / QConv with int32 output (the scale chain after them
/// stays as it is).
fn integer_product(g: &mut Graph, n: NodeIndex) -> Result<bool, Error> {
    let node = g.node(n).clone();
    let Some(wq) = g.konst(node.inputs[1]) else {
        return Ok(false);
    };
    let conv = matches!(node.op, Op::ConvInteger { .. });
    let a_shape = &g.value(node.inputs[0]).shape;
    let (wshape, wv) = (wq.shape.clone(), wq.to_i64s().unwrap_or_default());
    if (!conv && (wshape.len() != 2 || a_shape.is_empty())) || wv.is_empty() {
        return Ok(false);
    }
    // Weight zero points: a scalar, or one per output channel (columns of B, rows of W).
    let zw: Vec<i64> = match node.inputs.get(3) {
        None => vec![0],
        Some(&z) => match g.konst(z).and_then(|t| t.to_i64s()) {
            Some(v) => v,
            None => return Ok(false),
        },
    };
    let channels = if conv { wshape[0] } else { wshape[1] };
    if !(zw.len() == 1 || zw.len() == channels) {
        return Ok(false);
    }
    let inner: usize = if conv {
        wshape[1..].iter().product()
    } else {
        1
    };
    let mut w = Vec::with_capacity(wv.len());
    for (i, &q) in wv.iter().enumerate() {
        let c = if conv { i / inner } else { i % channels };
        let d = q - zw[if zw.len() == 1 { 0 } else { c }];
        if !(-128..=127).contains(&d) {
            return Ok(false);
        }
        w.push(d as i8);
    }
    // The activation's zero point must be one value.
    let x_zero = match node.inputs.get(2) {
        Some(&z) if g.value(z).num_elements() == 1 => z,
        Some(_) => return Ok(false),
        None => {
            let t = match g.value(node.inputs[0]).dtype {
                DType::I8 => Tensor {
                    dtype: DType::I8,
                    shape: vec![],
                    data: Data::I8(vec![0]),
                },
                _ => Tensor {
                    dtype: DType::U8,
                    shape: vec![],
                    data: Data::U8(vec![0]),
                },
            };
            g.add_const(format!("{}.x_zero", node.name), t)
        }
    };
    // A zero point of shape [1] where QGemm/QConv take a scalar: same value.
    let wt = g.add_const(
        format!("{}.weight_q", node.name),
        Tensor {
            dtype: DType::I8,
            shape: wshape,
            data: Data::I8(w),
        },
    );
    let bias = g.add_const(
        format!("{}.bias_q", node.name),
        i32_tensor(vec![0; channels]),
    );
    let op = match &node.op {
        Op::ConvInteger { window, group } => Op::QConv {
            window: window.clone(),
            group: *group,
            requant: None,
        },
        _ => Op::QGemm { requant: None },
    };
    let Ok((_, outs)) = g.add_node(
        node.name.clone(),
        op,
        vec![node.inputs[0], x_zero, wt, bias],
    ) else {
        return Ok(false);
    };
    replace_value(g, node.outputs[0], outs[0]);
    remove_dead(g, n);
    Ok(true)
}

/// Removes `n` if none of its outputs is used, then its producers that became unused.
fn remove_dead(g: &mut Graph, n: NodeIndex) {
    let Some(node) = g.try_node(n) else { return };
    if node.outputs.iter().any(|&o| g.is_used(o)) {
        return;
    }
    let inputs = node.inputs.clone();
    g.remove_node(n);
    for i in inputs {
        if let Some(p) = g.value(i).producer {
            remove_dead(g, p);
        }
    }
}

/// `Q(DQ(q))` with identical parameters and dtype is `q`.
fn collapse_pair(g: &mut Graph, q: NodeIndex) -> bool {
    let Some(dq) = dequantized(g, g.node(q).inputs[0]) else {
        return false;
    };
    let (Some(qp), Some(dp)) = (params(g, q), params(g, dq)) else {
        return false;
    };
    let src = g.node(dq).inputs[0];
    let out = g.node(q).outputs[0];
    let same_axis = qp.per_tensor() || qp.axis == dp.axis;
    if qp.scale != dp.scale
        || qp.zero != dp.zero
        || qp.dtype != dp.dtype
        || g.value(src).dtype != qp.dtype
        || !same_axis
        // `src` takes `out`'s name, so it must be an intermediate of its own.
        || g.value(src).producer.is_none()
        || g.outputs.contains(&src)
    {
        return false;
    }
    replace_value(g, out, src);
    remove_dead(g, q);
    true
}

/// A 256-entry table read with 8-bit indices (what [`lookup_table`] makes).
fn table_lookup(g: &Graph, v: ValueId) -> Option<ValueId> {
    let (_, node) = producer(g, v)?;
    let table = g.konst(node.inputs.first().copied()?)?;
    (matches!(node.op, Op::Gather { axis: 0 })
        && table.shape == [256]
        && matches!(g.value(node.inputs[1]).dtype, DType::U8 | DType::I8))
    .then_some(node.inputs[1])
}

/// The byte tensor `v` is a function of, element by element, if it is one: `v` itself for
/// 8-bit data; through table lookups, per-tensor (de)quantization and elementwise ops
/// whose other operands are one-element constants; every input of a two-input op must
/// come from the same bytes. `region` collects the nodes on the way (in no order).
fn byte_source(g: &Graph, v: ValueId, region: &mut Vec<NodeIndex>) -> Option<ValueId> {
    let dtype = g.value(v).dtype;
    if matches!(dtype, DType::U8 | DType::I8) {
        // Further up through a table or a QuantizeLinear (elementwise too) when that
        // reaches bytes again; otherwise these bytes are the source.
        let (n, up) = match producer(g, v) {
            Some((n, node)) if table_lookup(g, v).is_some() => (n, node.inputs[1]),
            Some((n, node))
                if matches!(node.op, Op::QuantizeLinear { .. })
                    && params(g, n).is_some_and(|p| p.per_tensor()) =>
            {
                (n, node.inputs[0])
            }
            _ => return Some(v),
        };
        let mut further = region.clone();
        further.push(n);
        return match byte_source(g, up, &mut further) {
            Some(s) => {
                *region = further;
                Some(s)
            }
            None => Some(v),
        };
    }
    let (n, node) = producer(g, v)?;
    let shape = &g.value(v).shape;
    let elementwise = match &node.op {
        Op::DequantizeLinear { .. } => params(g, n).is_some_and(|p| p.per_tensor()),
        Op::Unary(_)
        | Op::Clip { .. }
        | Op::Gelu { .. }
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Binary(_) => true,
        _ => false,
    };
    if !elementwise || dtype != DType::F32 || node.outputs.len() != 1 {
        return None;
    }
    let mut source = None;
    for (k, &i) in node.inputs.iter().enumerate() {
        let is_param = matches!(node.op, Op::DequantizeLinear { .. }) && k > 0;
        if let Some(t) = g.konst(i) {
            if is_param || t.len() == 1 {
                continue;
            }
            return None;
        }
        // A dequantized one-element constant is a constant operand too: its
        // DequantizeLinear joins the region and is evaluated with the table.
        if let Some(dq) = dequantized(g, i)
            && g.value(i).num_elements() == 1
            && g.node(dq).inputs.iter().all(|&c| g.konst(c).is_some())
        {
            region.push(dq);
            continue;
        }
        if &g.value(i).shape != shape {
            return None;
        }
        let s = byte_source(g, i, region)?;
        if source.is_some_and(|x| x != s) {
            return None;
        }
        source = Some(s);
    }
    region.push(n);
    source
}

/// `Q(f(x))` where the float value is a function of one byte tensor `x` element by element
/// (a chain or small DAG of elementwise ops, per-tensor Q/DQ and earlier tables: Tanh,
/// Sigmoid, GELU written out as Div, Erf, Add, Mul with every step quantized, ...) is a
/// 256-entry table of `x`: computed now by the interpreter running the very nodes it
/// replaces on every byte value (so it is exact), and one Gather on the 8-bit values.
fn lookup_table(g: &mut Graph, q: NodeIndex) -> Result<bool, Error> {
    if !params(g, q).is_some_and(|p| p.per_tensor()) {
        return Ok(false);
    }
    let mut region = Vec::new();
    let v = g.node(q).inputs[0];
    let Some(src) = byte_source(g, v, &mut region) else {
        return Ok(false);
    };
    // Q(DQ(x)) with other parameters (a requantization) is a table too; with the same
    // ones `collapse_pair` has already removed it.
    if !matches!(g.value(src).dtype, DType::U8 | DType::I8) {
        return Ok(false);
    }
    // Every byte value, in byte order (an i8 byte b is the value b as i8).
    let bytes = match g.value(src).dtype {
        DType::U8 => Tensor {
            dtype: DType::U8,
            shape: vec![256],
            data: Data::U8((0..=255).collect()),
        },
        _ => Tensor {
            dtype: DType::I8,
            shape: vec![256],
            data: Data::I8((0..=255u8).map(|b| b as i8).collect()),
        },
    };
    let mut memo: std::collections::HashMap<ValueId, Tensor> = std::collections::HashMap::new();
    memo.insert(src, bytes);
    region.push(q);
    let order = g.topo_order();
    for n in order.into_iter().filter(|n| region.contains(n)) {
        let node = g.node(n);
        let args: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|i| memo.get(i).or_else(|| g.konst(*i)))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Internal(format!("tabulating '{}': an operand", node.name)))?;
        let out = interp::eval(&node.op, &args)
            .map_err(|e| Error::Internal(format!("tabulating '{}': {e}", node.name)))?
            .remove(0);
        memo.insert(node.outputs[0], out);
    }
    let out = g.node(q).outputs[0];
    let table = memo
        .remove(&out)
        .ok_or_else(|| Error::Internal("the table was not computed".into()))?;
    let name = g
        .value(v)
        .producer
        .map_or_else(|| g.node(q).name.clone(), |p| g.node(p).name.clone());
    let tc = g.add_const(format!("{name}.table"), table);
    let (_, outs) = g.add_node(name, Op::Gather { axis: 0 }, vec![tc, src])?;
    replace_value(g, out, outs[0]);
    remove_dead(g, q);
    Ok(true)
}

/// Ops that commute with a per-tensor dequantization and are exact on 8-bit values.
fn moves_past(op: &Op) -> bool {
    matches!(
        op,
        Op::MaxPool { .. }
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Transpose { .. }
            | Op::Identity
            | Op::Gather { .. }
    )
}

/// `op(DQ(q), consts..)` → `DQ(op(q, consts..))` for a per-tensor DQ.
fn move_past(g: &mut Graph, n: NodeIndex) -> Result<bool, Error> {
    let node = g.node(n).clone();
    let Some(dq) = dequantized(g, node.inputs[0]) else {
        return Ok(false);
    };
    let Some(p) = params(g, dq) else {
        return Ok(false);
    };
    // Other operands must be constants, except a Gather's indices (an embedding lookup of
    // a quantized table then reads bytes).
    let runtime_ok = matches!(node.op, Op::Gather { .. });
    if !p.per_tensor() || (!runtime_ok && node.inputs[1..].iter().any(|&i| g.konst(i).is_none())) {
        return Ok(false);
    }
    let dq_node = g.node(dq).clone();
    let mut ins = node.inputs.clone();
    ins[0] = dq_node.inputs[0];
    let Ok((_, moved)) = g.add_node(format!("{}.q", node.name), node.op.clone(), ins) else {
        return Ok(false);
    };
    g.value_mut(moved[0]).name = format!("{}.q", g.value(node.outputs[0]).name);
    let mut dq_ins = dq_node.inputs.clone();
    dq_ins[0] = moved[0];
    let (_, outs) = g.add_node(node.name.clone(), dq_node.op.clone(), dq_ins)?;
    replace_value(g, node.outputs[0], outs[0]);
    remove_dead(g, n);
    Ok(true)
}

/// `Concat(DQ(a), DQ(b), ..)` with identical per-tensor parameters → `DQ(Concat(a, b, ..))`.
fn concat_past(g: &mut Graph, n: NodeIndex) -> Result<bool, Error> {
    let node = g.node(n).clone();
    let mut first: Option<(Params, NodeIndex)> = None;
    let mut srcs = Vec::new();
    for &i in &node.inputs {
        let Some(dq) = dequantized(g, i) else {
            return Ok(false);
        };
        let Some(p) = params(g, dq) else {
            return Ok(false);
        };
        if !p.per_tensor() || first.as_ref().is_some_and(|(f, _)| *f != p) {
            return Ok(false);
        }
        srcs.push(g.node(dq).inputs[0]);
        first.get_or_insert((p, dq));
    }
    let Some((_, dq)) = first else {
        return Ok(false);
    };
    let Ok((_, cat)) = g.add_node(format!("{}.q", node.name), node.op.clone(), srcs) else {
        return Ok(false);
    };
    g.value_mut(cat[0]).name = format!("{}.q", g.value(node.outputs[0]).name);
    let mut dq_ins = g.node(dq).inputs.clone();
    dq_ins[0] = cat[0];
    let dq_op = g.node(dq).op.clone();
    let (_, outs) = g.add_node(node.name.clone(), dq_op, dq_ins)?;
    replace_value(g, node.outputs[0], outs[0]);
    remove_dead(g, n);
    Ok(true)
}

/// Evaluates every DequantizeLinear left with constant inputs (weights of float work).
fn dequantize_constants(g: &mut Graph) -> Result<usize, Error> {
    let mut count = 0;
    for n in g.topo_order() {
        let node = g.node(n).clone();
        if !matches!(node.op, Op::DequantizeLinear { .. }) {
            continue;
        }
        let Some(args) = node
            .inputs
            .iter()
            .map(|&i| g.konst(i))
            .collect::<Option<Vec<&Tensor>>>()
        else {
            continue;
        };
        let t = interp::eval(&node.op, &args)
            .map_err(|e| Error::Internal(format!("dequantizing '{}': {e}", node.name)))?
            .remove(0);
        let c = g.add_const(node.name.clone(), t);
        replace_value(g, node.outputs[0], c);
        remove_dead(g, n);
        count += 1;
    }
    Ok(count)
}

/// A node of a quantized model that still computes in float, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloatIsland {
    pub node: String,
    pub op: &'static str,
    pub reason: String,
}

/// Every float op that reads a dequantized value or whose result is quantized: the work
/// of a quantized model that runs in float, each with the reason it was not folded.
pub fn float_islands(g: &Graph) -> Vec<FloatIsland> {
    let mut out = Vec::new();
    for n in g.topo_order() {
        let node = g.node(n);
        let quant_op = matches!(
            node.op,
            Op::QuantizeLinear { .. }
                | Op::DequantizeLinear { .. }
                | Op::QGemm { .. }
                | Op::QConv { .. }
                | Op::QBinary(_)
        );
        if quant_op || node.op.is_view() {
            continue;
        }
        let reads_dq = node.inputs.iter().any(|&i| dequantized(g, i).is_some());
        let feeds_q = node.outputs.iter().any(|&o| {
            g.consumers(o)
                .iter()
                .any(|&c| matches!(g.node(c).op, Op::QuantizeLinear { .. }))
        });
        if !reads_dq && !feeds_q {
            continue;
        }
        let reason = match &node.op {
            Op::Conv { .. }
            | Op::MatMul
            | Op::Gemm { .. }
            | Op::BatchNorm { .. }
            | Op::GlobalAveragePool
            | Op::AveragePool { .. } => why_float(g, n),
            Op::Unary(Unary::Relu)
            | Op::Clip { .. }
            | Op::Binary(Binary::Add)
            | Op::Binary(Binary::Mul) => why_float(g, n),
            Op::Softmax { .. } | Op::LayerNorm { .. } | Op::Gelu { .. } => {
                "kept in float: edgecc has no integer form of it (float by design)".into()
            }
            op => format!("no integer kernel for {} in edgecc yet", op.name()),
        };
        out.push(FloatIsland {
            node: node.name.clone(),
            op: node.op.name(),
            reason,
        });
    }
    out
}

/// Why the integer rule did not take the island around float GEMM/conv/activation `n`.
fn why_float(g: &Graph, n: NodeIndex) -> String {
    let mut v = g.node(n).outputs[0];
    // Through one activation to the QuantizeLinear.
    for _ in 0..2 {
        let readers = g.consumers(v);
        if let Some(&q) = readers
            .iter()
            .find(|&&c| matches!(g.node(c).op, Op::QuantizeLinear { .. }))
        {
            return match (match_integer(g, q), match_qbinary(g, q)) {
                (Ok(_), _) | (_, Ok(_)) => "foldable, but fold-requant did not run".into(),
                // An Add or Mul that is not a product's bias is the integer Add/Mul's case.
                (Err(e), Err(b)) => {
                    if binary_island(g, q) {
                        b
                    } else {
                        e
                    }
                }
            };
        }
        match readers.as_slice() {
            [r] if matches!(g.node(*r).op, Op::Unary(Unary::Relu) | Op::Clip { .. }) => {
                v = g.node(*r).outputs[0];
            }
            _ => break,
        }
    }
    "its result is not quantized (no QuantizeLinear follows)".into()
}

/// Whether QuantizeLinear `q` quantizes (through a Relu or Clip) an Add or Mul that is not
/// a bias added to a Conv/MatMul/Gemm (the GEMM rule's case).
fn binary_island(g: &Graph, q: NodeIndex) -> bool {
    let mut v = g.node(q).inputs[0];
    for _ in 0..2 {
        let Some((_, node)) = producer(g, v) else {
            return false;
        };
        match node.op {
            Op::Unary(Unary::Relu) | Op::Clip { .. } => v = node.inputs[0],
            Op::Binary(Binary::Add | Binary::Mul) => {
                return !node.inputs.iter().any(|&i| {
                    producer(g, i).is_some_and(|(_, p)| {
                        matches!(p.op, Op::Conv { .. } | Op::MatMul | Op::Gemm { .. })
                    })
                });
            }
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::Pass;

    /// `Q(Add(DQ(a), DQ(b)))` with the given scales (sa, sb, sy), u8 zero points 128, the
    /// Add's float-island reason after the pass (`None` when it folded).
    fn add_reason(sa: f32, sb: f32, sy: f32, per_channel: bool) -> Option<String> {
        let (sa_ty, sa_v, za_ty, za_v) = if per_channel {
            ("f32[2]", format!("[{sa},{sa}]"), "u8[2]", "[128,128]")
        } else {
            ("f32[]", format!("[{sa}]"), "u8[]", "[128]")
        };
        let text = format!(
            "graph g {{
  input x: f32[3,2]
  input r: f32[3,2]
  const sa: {sa_ty} = {sa_v}
  const za: {za_ty} = {za_v}
  const sb: f32[] = [{sb}]
  const sy: f32[] = [{sy}]
  const z: u8[] = [128]
  xq: u8[3,2] = QuantizeLinear{{axis=1 to=u8}}(x, sa, za)  # x_q
  rq: u8[3,2] = QuantizeLinear{{axis=1 to=u8}}(r, sb, z)  # r_q
  xd: f32[3,2] = DequantizeLinear{{axis=1}}(xq, sa, za)  # x_dq
  rd: f32[3,2] = DequantizeLinear{{axis=1}}(rq, sb, z)  # r_dq
  s: f32[3,2] = Add(xd, rd)  # add
  y: u8[3,2] = QuantizeLinear{{axis=1 to=u8}}(s, sy, z)  # y_q
  output y
}}"
        );
        let mut g = crate::ir::parse::parse(&text).unwrap();
        FoldRequant.run(&mut g).unwrap();
        let islands = float_islands(&g);
        islands
            .iter()
            .find(|i| i.node == "add")
            .map(|i| i.reason.clone())
    }

    #[test]
    fn float_add_islands_say_why() {
        assert_eq!(add_reason(0.01, 0.02, 0.015, false), None);
        let r = add_reason(0.01, 0.02, 0.015, true).unwrap();
        assert!(r.contains("quantized per channel"), "{r}");
        // sa/sy = 2^14 + a bit: even shift 16 puts the multiplier past 2^30.
        let r = add_reason(1.0, 0.01, 1.0 / 16400.0, false).unwrap();
        assert!(r.contains("2^14 or more"), "{r}");
        // sa/sy ≈ 1000.3 fits at shift 20, with 30 bits: well within half a step.
        assert_eq!(add_reason(1.0003, 1.0, 0.001, false), None);
    }

    /// An Add of a float constant (not quantized) says so, not that a DequantizeLinear
    /// has no integer kernel.
    #[test]
    fn float_constant_add_says_its_operand_is_not_quantized() {
        let text = "graph g {
  input x: f32[3,4]
  const s: f32[] = [0.05]
  const z: u8[] = [128]
  const b: f32[4] = [0.1,0.2,0.3,0.4]
  xq: u8[3,4] = QuantizeLinear{axis=1 to=u8}(x, s, z)  # x_q
  xd: f32[3,4] = DequantizeLinear{axis=1}(xq, s, z)  # x_dq
  a: f32[3,4] = Add(xd, b)  # add
  y: u8[3,4] = QuantizeLinear{axis=1 to=u8}(a, s, z)  # y_q
  output y
}";
        let mut g = crate::ir::parse::parse(text).unwrap();
        FoldRequant.run(&mut g).unwrap();
        let islands = float_islands(&g);
        let add = islands.iter().find(|i| i.node == "add").unwrap();
        assert_eq!(add.reason, "an operand is not dequantized");
    }

    /// A weight scale < 0 has no fixed-point multiplier: the island is no match (with the
    /// reason), and the pass ends. It used to count the declined rewrite as a change and
    /// loop forever (found by fuzzing: fuzz/regressions/onnx_import/
    /// negative_weight_scale_requant_loop.onnx).
    #[test]
    fn an_island_without_multipliers_is_no_match_and_the_pass_ends() {
        let text = "graph g {
  input x: u8[1,4]
  const sx: f32[] = [0.02]
  const zx: u8[] = [128]
  const wq: i8[4,2] = [0,1,2,3,4,5,6,7]
  const sw: f32[2] = [0.01,-0.01]
  const zw: i8[2] = [0,0]
  const sy: f32[] = [0.05]
  const zy: u8[] = [128]
  xf: f32[1,4] = DequantizeLinear{axis=1}(x, sx, zx)  # dq_x
  w: f32[4,2] = DequantizeLinear{axis=1}(wq, sw, zw)  # dq_w
  yf: f32[1,2] = MatMul(xf, w)  # matmul
  y: u8[1,2] = QuantizeLinear{axis=1 to=u8}(yf, sy, zy)  # q_y
  output y
}";
        let mut g = crate::ir::parse::parse(text).unwrap();
        let q = g.node_indices().find(|&n| g.node(n).name == "q_y").unwrap();
        let why = match_integer(&g, q).err().unwrap();
        assert!(
            why.contains("the rescale factors alpha·sx·sw/sy are not all positive and finite"),
            "{why}"
        );
        let summary = FoldRequant.run(&mut g).unwrap();
        assert!(summary.starts_with("0 integer kernels"), "{summary}");
        assert!(g.node_indices().any(|n| g.node(n).op == Op::MatMul));
    }

    #[test]
    fn multipliers_take_30_bits_at_the_largest_shift() {
        assert_eq!(multipliers_30(&[1.0]), Some((vec![1 << 29], 29)));
        assert_eq!(
            multipliers_30(&[0.75, -0.5]),
            Some((vec![3 << 28, -(1 << 29)], 30))
        );
        // −1 reaches −2^30 at shift 30 (allowed), +1 only 2^30 − 2^29.
        assert_eq!(multipliers_30(&[-1.0]), Some((vec![-(1 << 30)], 30)));
        // A tiny ratio stops at shift 46.
        assert_eq!(multipliers_30(&[1e-20]), Some((vec![0], 46)));
        // 2^14 needs 2^30 at shift 16, one past the range; just below it fits.
        assert_eq!(multipliers_30(&[16384.0]), None);
        assert_eq!(
            multipliers_30(&[16383.99]),
            Some((vec![(16383.99f64 * 65536.0).round() as i32], 16))
        );
        assert_eq!(multipliers_30(&[f64::NAN]), None);
    }
}
