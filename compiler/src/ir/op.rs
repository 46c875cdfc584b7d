//! Operators with typed, validated attributes. The importer is the only place that sees
//! ONNX attribute maps; past it, an op is one of these variants.

use std::fmt;

use super::{DType, Equation};

/// Elementwise one-input float ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Erf,
    Log,
}

/// Elementwise two-input ops with multidirectional (numpy) broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

/// Comparisons, producing bool tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// Boolean connectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Logic {
    And,
    Or,
    Xor,
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

/// How Pad fills the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// How explicit padding is chosen for windowed ops (ONNX `auto_pad`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AutoPad {
    /// Use the `pads` attribute.
    NotSet,
    /// Output size is `ceil(in / stride)`, extra padding at the end.
    SameUpper,
    /// Output size is `ceil(in / stride)`, extra padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// Geometry of a sliding window over the spatial dims (1-D or 2-D). Vectors have one entry
/// per spatial dim; `pads` holds all begins then all ends, as in ONNX.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowAttrs {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

impl WindowAttrs {
    /// Explicit begin/end pads and output sizes for the given spatial input sizes.
    pub fn resolve(&self, input: &[usize]) -> Result<(Vec<usize>, Vec<usize>), String> {
        let r = input.len();
        if self.kernel.len() != r || self.strides.len() != r || self.dilations.len() != r {
            return Err(format!(
                "window rank {} does not match {r} spatial dims",
                self.kernel.len()
            ));
        }
        let mut pads = vec![0; 2 * r];
        let mut out = vec![0; r];
        for d in 0..r {
            let (k, s, dil) = (self.kernel[d], self.strides[d], self.dilations[d]);
            if k == 0 || s == 0 || dil == 0 {
                return Err("kernel, strides and dilations must be positive".into());
            }
            if input[d] == 0 {
                return Err(format!("spatial dim {d} of the input is 0"));
            }
            let too_big = || format!("window, pads or strides overflow in spatial dim {d}");
            let ek = (k - 1).checked_mul(dil).ok_or_else(too_big)? + 1;
            match self.auto_pad {
                AutoPad::NotSet | AutoPad::Valid => {
                    let (pb, pe) = if self.auto_pad == AutoPad::Valid {
                        (0, 0)
                    } else {
                        (self.pads[d], self.pads[d + r])
                    };
                    let span = input[d]
                        .checked_add(pb)
                        .and_then(|n| n.checked_add(pe))
                        .ok_or_else(too_big)?;
                    if span < ek {
                        return Err(format!(
                            "window {ek} is larger than padded input {span} in spatial dim {d}"
                        ));
                    }
                    let o = if self.ceil_mode {
                        let mut o = (span - ek).div_ceil(s) + 1;
                        // ONNX: the last window must start inside the input or left pad.
                        if (o - 1) * s >= input[d] + pb {
                            o -= 1;
                        }
                        o
                    } else {
                        (span - ek) / s + 1
                    };
                    pads[d] = pb;
                    pads[d + r] = pe;
                    out[d] = o;
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = input[d].div_ceil(s);
                    let total = (o - 1)
                        .checked_mul(s)
                        .and_then(|n| n.checked_add(ek))
                        .ok_or_else(too_big)?
                        .saturating_sub(input[d]);
                    let small = total / 2;
                    let big = total - small;
                    if self.auto_pad == AutoPad::SameUpper {
                        pads[d] = small;
                        pads[d + r] = big;
                    } else {
                        pads[d] = big;
                        pads[d + r] = small;
                    }
                    out[d] = o;
                }
            }
        }
        Ok((pads, out))
    }
}

/// How an integer GEMM or convolution ([`Op::QGemm`], [`Op::QConv`]) stores its int32
/// accumulators as 8-bit values: `clamp(zero_point + round(acc · multiplier[c] / 2^shift),
/// lo, hi)` with the rounding and exact 64-bit arithmetic of `edgecc_program::Requant`
/// (the multipliers, one per output channel or one, are the op's last input). `lo`/`hi`
/// are `to`'s range, narrowed where a Relu or Clip was folded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requant {
    pub to: DType,
    pub shift: u32,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl fmt::Display for Requant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "to={} shift={} zero_point={} lo={} hi={}",
            self.to, self.shift, self.zero_point, self.lo, self.hi
        )
    }
}

pub use edgecc_program::QBinaryOp;

/// The parameters of an integer Add or Mul of two 8-bit quantized tensors
/// ([`Op::QBinary`]): exactly those of `edgecc_program::QBinary`, whose `apply` defines the
/// arithmetic (the interpreter calls it), with the output dtype as an IR [`DType`].
/// `op` is `Add { ma, mb }`: `acc = (a − a_zero)·ma + (b − b_zero)·mb`, or `Mul { m }`:
/// `acc = (a − a_zero)·(b − b_zero)·m`; then `clamp(zero_point + round(acc / 2^shift),
/// lo, hi)`, rounding half up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QBinaryAttrs {
    pub op: QBinaryOp,
    pub a_zero: i32,
    pub b_zero: i32,
    pub shift: u32,
    pub to: DType,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl QBinaryAttrs {
    /// The same parameters as the program's `QBinary` (`None` when `to` has no program
    /// dtype).
    pub fn to_program(&self) -> Option<edgecc_program::QBinary> {
        Some(edgecc_program::QBinary {
            op: self.op,
            a_zero: self.a_zero,
            b_zero: self.b_zero,
            shift: self.shift,
            dtype: self.to.to_program()?,
            zero_point: self.zero_point,
            lo: self.lo,
            hi: self.hi,
        })
    }
}

impl fmt::Display for QBinaryAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            QBinaryOp::Add { ma, mb } => write!(f, "ma={ma} mb={mb}")?,
            QBinaryOp::Mul { m } => write!(f, "m={m}")?,
        }
        write!(
            f,
            " a_zero={} b_zero={} shift={} to={} zero_point={} lo={} hi={}",
            self.a_zero, self.b_zero, self.shift, self.to, self.zero_point, self.lo, self.hi
        )
    }
}

/// The activation that ends a fused matrix product ([`Op::FusedMatMul`]) or convolution
/// ([`Op::FusedConv`]). Each is the
/// single-input op [`Act::op`] names, computed exactly as that op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    None,
    Relu,
    Clip { min: f32, max: f32 },
    Sigmoid,
    Tanh,
    Gelu { tanh: bool },
    HardSwish,
}

impl Act {
    /// The activation a single-input op computes, if it is one [`Op::FusedMatMul`] can
    /// end with.
    pub fn of(op: &Op) -> Option<Act> {
        Some(match op {
            Op::Unary(Unary::Relu) => Act::Relu,
            Op::Unary(Unary::Sigmoid) => Act::Sigmoid,
            Op::Unary(Unary::Tanh) => Act::Tanh,
            Op::Clip { min, max } => Act::Clip {
                min: *min,
                max: *max,
            },
            Op::Gelu { tanh } => Act::Gelu { tanh: *tanh },
            Op::HardSwish => Act::HardSwish,
            _ => return None,
        })
    }

    /// The op that computes this activation on its own; `None` for [`Act::None`].
    pub fn op(self) -> Option<Op> {
        Some(match self {
            Act::None => return None,
            Act::Relu => Op::Unary(Unary::Relu),
            Act::Sigmoid => Op::Unary(Unary::Sigmoid),
            Act::Tanh => Op::Unary(Unary::Tanh),
            Act::Clip { min, max } => Op::Clip { min, max },
            Act::Gelu { tanh } => Op::Gelu { tanh },
            Act::HardSwish => Op::HardSwish,
        })
    }
}

impl fmt::Display for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Act::None => f.write_str("none"),
            Act::Relu => f.write_str("relu"),
            Act::Clip { min, max } => write!(f, "clip({min:?},{max:?})"),
            Act::Sigmoid => f.write_str("sigmoid"),
            Act::Tanh => f.write_str("tanh"),
            Act::Gelu { tanh: false } => f.write_str("gelu"),
            Act::Gelu { tanh: true } => f.write_str("gelu_tanh"),
            Act::HardSwish => f.write_str("hardswish"),
        }
    }
}

/// The inverse of `Display`, for the text IR's `act=` attribute.
impl std::str::FromStr for Act {
    type Err = String;

    fn from_str(s: &str) -> Result<Act, String> {
        Ok(match s {
            "none" => Act::None,
            "relu" => Act::Relu,
            "sigmoid" => Act::Sigmoid,
            "tanh" => Act::Tanh,
            "gelu" => Act::Gelu { tanh: false },
            "gelu_tanh" => Act::Gelu { tanh: true },
            "hardswish" => Act::HardSwish,
            _ => {
                let bounds = s
                    .strip_prefix("clip(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|r| r.split_once(','))
                    .and_then(|(lo, hi)| Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)));
                match bounds {
                    Some((min, max)) => Act::Clip { min, max },
                    None => return Err(format!("'{s}' is not an activation")),
                }
            }
        })
    }
}

/// An operator. Inputs and outputs are positional as in ONNX; optional inputs that were
/// constant at import (Clip's bounds, Reshape's shape) are folded into attributes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Unary(Unary),
    Binary(Binary),
    /// `min(max(x, min), max)`.
    Clip {
        min: f32,
        max: f32,
    },
    /// numpy-style matrix product with batch broadcasting.
    MatMul,
    /// `alpha · A' · B' + beta · C` with optional transposes; C (optional) broadcasts.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    /// A matrix product with its epilogue, `act(alpha · A' · B' + bias + residual)`, made
    /// by the `fuse-epilogue` pass from MatMul or Gemm and the Adds and activation after it.
    /// Inputs: A, B, then the bias if `bias`, then the residual if `residual`. A and B
    /// have rank >= 2 and batch like MatMul (numpy broadcasting of the leading dims); A'
    /// and B' swap the last two dims of A and B when `trans_a` / `trans_b`. The bias and
    /// residual broadcast to the output shape (and do not grow it). Rounding is that of
    /// the unfused ops: the product as MatMul, times alpha in f32, then each sum in f32,
    /// then the activation as its own op.
    FusedMatMul {
        alpha: f32,
        trans_a: bool,
        trans_b: bool,
        bias: bool,
        residual: bool,
        act: Act,
    },
    /// Inputs: X, W, optional B.
    Conv {
        window: WindowAttrs,
        group: usize,
    },
    /// A convolution with its epilogue, `act(Conv(X, W[, B]) + residual)`, made by the
    /// `fuse-epilogue` pass from a Conv and the Add of a skip connection (and activation)
    /// after it. Inputs: X, W, then B if `bias`, then the residual if `residual`, which
    /// has the convolution's output shape exactly. Rounding is that of the unfused ops:
    /// the convolution, then the sum in f32, then the activation as its own op.
    FusedConv {
        window: WindowAttrs,
        group: usize,
        bias: bool,
        residual: bool,
        act: Act,
    },
    MaxPool {
        window: WindowAttrs,
    },
    AveragePool {
        window: WindowAttrs,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    /// Inference-mode batch norm: inputs X, scale, B, mean, var.
    BatchNorm {
        epsilon: f32,
    },
    /// Collapses to 2-D at `axis` (negative counts from the end, as in ONNX).
    Flatten {
        axis: i64,
    },
    /// Target shape resolved at shape inference from the constant shape input; `shape` is
    /// the ONNX form (with 0 and -1), kept for the printer.
    Reshape {
        shape: Vec<i64>,
        allowzero: bool,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: i64,
    },
    /// Softmax along `axis`; opset < 13 semantics (`coerce_2d`) flatten at `axis` first.
    Softmax {
        axis: i64,
        coerce_2d: bool,
    },
    Identity,
    /// Softmax over the last axis of `scale·x + mask` (inputs x and an optional mask that
    /// broadcasts to x), each step rounded to f32 as the unfused Mul, Add and Softmax
    /// would: attention's scaled, masked scores. Made by the `fuse-softmax` pass.
    AttentionSoftmax {
        scale: f32,
    },
    /// `0.5·x·(1 + erf(x/√2))`, or the tanh approximation.
    Gelu {
        tanh: bool,
    },
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x · max(0, min(1, x/6 + 1/2))` (ONNX fixes alpha = 1/6, beta = 1/2).
    HardSwish,
    /// Normalizes over the dims from `axis` on; inputs X, scale, optional bias. With
    /// `stats` it has two more outputs, ONNX's Mean and InvStdDev `1/sqrt(var + epsilon)`
    /// (f32, X's shape with the dims from `axis` on set to 1).
    LayerNorm {
        axis: i64,
        epsilon: f32,
        stats: bool,
    },
    /// Reduction over `axes` (all dims when `None`).
    Reduce {
        kind: ReduceKind,
        axes: Option<Vec<i64>>,
        keepdims: bool,
    },
    Compare(Cmp),
    Logic(Logic),
    Not,
    /// `cond ? x : y` with broadcasting.
    Where,
    Cast {
        to: DType,
    },
    /// ONNX QuantizeLinear: `saturate(round_half_even(x / scale) + zero_point)` into `to`
    /// (u8 or i8). Inputs x (f32), scale and an optional zero point, each scalar (per
    /// tensor) or 1-D along `axis` (per channel). Float8/int4 and blocked forms are refused
    /// by the importer, so `saturate` (which only matters for float8) is not kept.
    QuantizeLinear {
        axis: i64,
        to: DType,
    },
    /// ONNX DequantizeLinear: `(x - zero_point) * scale` from u8/i8/i32 into f32, with the
    /// same scalar or per-`axis` parameters as QuantizeLinear.
    DequantizeLinear {
        axis: i64,
    },
    /// Integer matrix product with int32 accumulation, made by `fold-requant` from a
    /// float MatMul/Gemm between DequantizeLinear and QuantizeLinear:
    /// `acc[.., n] = Σ_k (a[.., k] − a_zero) · b[k, n] + bias[n]`, stored as int32 or
    /// requantized. Inputs: a (`[.., K]` u8/i8), a_zero (scalar of a's dtype, constant or
    /// computed), b (`[K, N]` i8 constant, zero point 0), bias (`[N]` i32), then the
    /// multipliers (`[1]` or `[N]` i32) when `requant` is set.
    QGemm {
        requant: Option<Requant>,
    },
    /// Integer convolution with Conv's geometry:
    /// `acc[n, co, ..] = bias[co] + Σ (x − x_zero) · w` with taps outside the input
    /// contributing 0, stored as int32 or requantized per output channel. Inputs: x
    /// (NCHW u8/i8), x_zero (scalar), w (i8 constant, OIHW, zero point 0), bias (`[C_out]`
    /// i32), then the multipliers (`[1]` or `[C_out]` i32) when `requant` is set.
    QConv {
        window: WindowAttrs,
        group: usize,
        requant: Option<Requant>,
    },
    /// Integer Add (`QAdd` in the text IR) or Mul (`QMul`) of two 8-bit quantized tensors
    /// with numpy broadcasting, made by `fold-requant` from `Q(act(Add|Mul(DQ(a), DQ(b))))`
    /// (onnxruntime's QLinearAdd/QLinearMul, a quantized residual or bias Add). Inputs: a
    /// and b (u8/i8 each); the result is `attrs.to`. Defined by
    /// `edgecc_program::QBinary::apply`, element by element.
    QBinary(QBinaryAttrs),
    /// ONNX DynamicQuantizeLinear: quantizes f32 `x` to u8 with a scale and zero point
    /// computed from `x` itself. Outputs y (u8, x's shape), y_scale (f32 scalar) and
    /// y_zero_point (u8 scalar): the range `[min(0, min x), max(0, max x)]` (adjusted to hold
    /// 0, so that 0 is exact) is spread over 0..=255, `scale = range / 255`, `zero_point =
    /// saturate(round_half_even(-min / scale))`, `y = saturate(round_half_even(x / scale) +
    /// zero_point)`. An all-zero `x` (range 0, which the spec leaves open) gets scale 1 as in
    /// onnxruntime.
    DynamicQuantizeLinear,
    /// ONNX MatMulInteger: `(A - a_zero_point) · (B - b_zero_point)` with numpy-matmul
    /// batching, exact in i32. A and B are u8 or i8 (independently); the optional zero points
    /// have their operand's dtype and are a scalar (per tensor), or per row of A (`[M]`, or
    /// `[.., M, 1]`) and per column of B (`[N]`, or `[.., 1, N]`). Absent zero points are 0.
    MatMulInteger,
    /// ONNX ConvInteger: Conv's window over u8/i8 `x` and `w` with the zero points
    /// subtracted first, summed exactly in i32; no bias. Inputs x, w, optional x_zero_point
    /// (scalar) and w_zero_point (scalar or one per output channel). Padding holds the zero
    /// point, so it adds 0 to the sum.
    ConvInteger {
        window: WindowAttrs,
        group: usize,
    },
    /// The input's shape (dims `start..end`), an i64 vector.
    Shape {
        start: i64,
        end: Option<i64>,
    },
    Gather {
        axis: i64,
    },
    /// `out[i] = data[i with its axis coordinate replaced by indices[i]]`; indices have
    /// data's rank.
    GatherElements {
        axis: i64,
    },
    /// Slices of data picked by index tuples (the last dim of indices), after
    /// `batch_dims` leading dims that data and indices share.
    GatherND {
        batch_dims: usize,
    },
    /// Inputs: data only; the bounds were constants.
    Slice {
        starts: Vec<i64>,
        ends: Vec<i64>,
        axes: Vec<i64>,
        steps: Vec<i64>,
    },
    Unsqueeze {
        axes: Vec<i64>,
    },
    /// `None` removes every dim of size 1.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    Expand {
        shape: Vec<i64>,
    },
    Split {
        axis: i64,
        sizes: Vec<usize>,
    },
    Tile {
        repeats: Vec<usize>,
    },
    /// `pads` holds all begins then all ends (negative crops); Constant mode fills `value`.
    Pad {
        pads: Vec<i64>,
        mode: PadMode,
        value: f64,
    },
    /// Einstein summation over any number of inputs (see [`super::einsum`]).
    Einsum(Equation),
    /// Running sums along `axis` (ONNX CumSum; the axis input was a constant):
    /// `out[.., k, ..] = sum of x[.., j, ..]` over `j <= k` (`j < k` when `exclusive`;
    /// `j >= k` / `j > k` when `reverse`). f32 sums accumulate sequentially in f32 from
    /// the start of the scan, integers wrap (two's complement), as numpy's cumsum.
    CumSum {
        axis: i64,
        exclusive: bool,
        reverse: bool,
    },
}

impl Op {
    /// The ONNX-like name used by the printer, reports and error messages.
    /// Whether the op only reinterprets its input's shape: the output has the input's
    /// elements in the same order, so it can share the input's storage.
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. }
                | Op::Flatten { .. }
                | Op::Identity
                | Op::Unsqueeze { .. }
                | Op::Squeeze { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => match u {
                Unary::Relu => "Relu",
                Unary::Sigmoid => "Sigmoid",
                Unary::Tanh => "Tanh",
                Unary::Exp => "Exp",
                Unary::Neg => "Neg",
                Unary::Abs => "Abs",
                Unary::Sqrt => "Sqrt",
                Unary::Reciprocal => "Reciprocal",
                Unary::Erf => "Erf",
                Unary::Log => "Log",
            },
            Op::Binary(b) => match b {
                Binary::Add => "Add",
                Binary::Sub => "Sub",
                Binary::Mul => "Mul",
                Binary::Div => "Div",
                Binary::Max => "Max",
                Binary::Min => "Min",
                Binary::Pow => "Pow",
            },
            Op::Clip { .. } => "Clip",
            Op::MatMul => "MatMul",
            Op::Gemm { .. } => "Gemm",
            Op::FusedMatMul { .. } => "FusedMatMul",
            Op::Conv { .. } => "Conv",
            Op::FusedConv { .. } => "FusedConv",
            Op::MaxPool { .. } => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Softmax { .. } => "Softmax",
            Op::AttentionSoftmax { .. } => "AttentionSoftmax",
            Op::Identity => "Identity",
            Op::Gelu { .. } => "Gelu",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::HardSwish => "HardSwish",
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::Reduce { kind, .. } => match kind {
                ReduceKind::Sum => "ReduceSum",
                ReduceKind::Mean => "ReduceMean",
                ReduceKind::Max => "ReduceMax",
                ReduceKind::Min => "ReduceMin",
                ReduceKind::Prod => "ReduceProd",
            },
            Op::Compare(c) => match c {
                Cmp::Equal => "Equal",
                Cmp::Less => "Less",
                Cmp::LessOrEqual => "LessOrEqual",
                Cmp::Greater => "Greater",
                Cmp::GreaterOrEqual => "GreaterOrEqual",
            },
            Op::Logic(l) => match l {
                Logic::And => "And",
                Logic::Or => "Or",
                Logic::Xor => "Xor",
            },
            Op::Not => "Not",
            Op::Where => "Where",
            Op::Cast { .. } => "Cast",
            Op::QuantizeLinear { .. } => "QuantizeLinear",
            Op::DequantizeLinear { .. } => "DequantizeLinear",
            Op::QGemm { .. } => "QGemm",
            Op::QConv { .. } => "QConv",
            Op::QBinary(q) => match q.op {
                QBinaryOp::Add { .. } => "QAdd",
                QBinaryOp::Mul { .. } => "QMul",
            },
            Op::DynamicQuantizeLinear => "DynamicQuantizeLinear",
            Op::MatMulInteger => "MatMulInteger",
            Op::ConvInteger { .. } => "ConvInteger",
            Op::Shape { .. } => "Shape",
            Op::Gather { .. } => "Gather",
            Op::GatherElements { .. } => "GatherElements",
            Op::GatherND { .. } => "GatherND",
            Op::Slice { .. } => "Slice",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Squeeze { .. } => "Squeeze",
            Op::Expand { .. } => "Expand",
            Op::Split { .. } => "Split",
            Op::Tile { .. } => "Tile",
            Op::Pad { .. } => "Pad",
            Op::Einsum(_) => "Einsum",
            Op::CumSum { .. } => "CumSum",
        }
    }
}

fn list<T: fmt::Display>(v: &[T]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

impl fmt::Display for WindowAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel={} strides={} dilations={} pads={}",
            list(&self.kernel),
            list(&self.strides),
            list(&self.dilations),
            list(&self.pads)
        )?;
        match self.auto_pad {
            AutoPad::NotSet => {}
            AutoPad::SameUpper => f.write_str(" auto_pad=same_upper")?,
            AutoPad::SameLower => f.write_str(" auto_pad=same_lower")?,
            AutoPad::Valid => f.write_str(" auto_pad=valid")?,
        }
        if self.ceil_mode {
            f.write_str(" ceil_mode")?;
        }
        Ok(())
    }
}

/// Attributes in the text format: `Gemm{alpha=1 beta=1 trans_b}`; empty for none.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Op::Clip { min, max } => write!(f, "{{min={min:?} max={max:?}}}"),
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                write!(f, "{{alpha={alpha:?} beta={beta:?}")?;
                if *trans_a {
                    f.write_str(" trans_a")?;
                }
                if *trans_b {
                    f.write_str(" trans_b")?;
                }
                f.write_str("}")
            }
            Op::FusedMatMul {
                alpha,
                trans_a,
                trans_b,
                bias,
                residual,
                act,
            } => {
                // `FusedMatMul{act=gelu bias residual}`: defaults (alpha 1, no transpose)
                // are left out.
                write!(f, "{{act={act}")?;
                if *alpha != 1.0 {
                    write!(f, " alpha={alpha:?}")?;
                }
                for (on, word) in [
                    (trans_a, "trans_a"),
                    (trans_b, "trans_b"),
                    (bias, "bias"),
                    (residual, "residual"),
                ] {
                    if *on {
                        write!(f, " {word}")?;
                    }
                }
                f.write_str("}")
            }
            Op::HardSigmoid { alpha, beta } => write!(f, "{{alpha={alpha:?} beta={beta:?}}}"),
            Op::Conv { window, group } | Op::ConvInteger { window, group } => {
                write!(f, "{{{window} group={group}}}")
            }
            Op::FusedConv {
                window,
                group,
                bias,
                residual,
                act,
            } => {
                // `FusedConv{<window> group=1 act=relu bias residual}`.
                write!(f, "{{{window} group={group} act={act}")?;
                for (on, word) in [(bias, "bias"), (residual, "residual")] {
                    if *on {
                        write!(f, " {word}")?;
                    }
                }
                f.write_str("}")
            }
            Op::MaxPool { window } => write!(f, "{{{window}}}"),
            Op::AveragePool {
                window,
                count_include_pad,
            } => write!(f, "{{{window} count_include_pad={count_include_pad}}}"),
            Op::BatchNorm { epsilon } => write!(f, "{{epsilon={epsilon:?}}}"),
            Op::Flatten { axis } => write!(f, "{{axis={axis}}}"),
            Op::Reshape { shape, allowzero } => {
                write!(f, "{{shape={}", list(shape))?;
                if *allowzero {
                    f.write_str(" allowzero")?;
                }
                f.write_str("}")
            }
            Op::Transpose { perm } => write!(f, "{{perm={}}}", list(perm)),
            Op::Concat { axis } => write!(f, "{{axis={axis}}}"),
            Op::Softmax { axis, coerce_2d } => {
                write!(f, "{{axis={axis}")?;
                if *coerce_2d {
                    f.write_str(" coerce_2d")?;
                }
                f.write_str("}")
            }
            Op::AttentionSoftmax { scale } => write!(f, "{{scale={scale:?}}}"),
            Op::Gelu { tanh: true } => f.write_str("{tanh}"),
            Op::LayerNorm {
                axis,
                epsilon,
                stats,
            } => {
                write!(f, "{{axis={axis} epsilon={epsilon:?}")?;
                if *stats {
                    write!(f, " stats")?;
                }
                write!(f, "}}")
            }
            Op::Reduce { axes, keepdims, .. } => {
                match axes {
                    Some(a) => write!(f, "{{axes={}", list(a))?,
                    None => f.write_str("{axes=all")?,
                }
                if *keepdims {
                    f.write_str(" keepdims")?;
                }
                f.write_str("}")
            }
            Op::Cast { to } => write!(f, "{{to={to}}}"),
            Op::QuantizeLinear { axis, to } => write!(f, "{{axis={axis} to={to}}}"),
            Op::DequantizeLinear { axis } => write!(f, "{{axis={axis}}}"),
            Op::QGemm { requant: None } => Ok(()),
            Op::QGemm { requant: Some(r) } => write!(f, "{{{r}}}"),
            Op::QConv {
                window,
                group,
                requant,
            } => {
                write!(f, "{{{window} group={group}")?;
                if let Some(r) = requant {
                    write!(f, " {r}")?;
                }
                f.write_str("}")
            }
            Op::QBinary(q) => write!(f, "{{{q}}}"),
            Op::Shape { start, end } => match end {
                Some(e) => write!(f, "{{start={start} end={e}}}"),
                None if *start != 0 => write!(f, "{{start={start}}}"),
                None => Ok(()),
            },
            Op::Gather { axis } | Op::GatherElements { axis } => write!(f, "{{axis={axis}}}"),
            Op::GatherND { batch_dims } => write!(f, "{{batch_dims={batch_dims}}}"),
            Op::Slice {
                starts,
                ends,
                axes,
                steps,
            } => write!(
                f,
                "{{starts={} ends={} axes={} steps={}}}",
                list(starts),
                list(ends),
                list(axes),
                list(steps)
            ),
            Op::Unsqueeze { axes } => write!(f, "{{axes={}}}", list(axes)),
            Op::Squeeze { axes: Some(a) } => write!(f, "{{axes={}}}", list(a)),
            Op::Expand { shape } => write!(f, "{{shape={}}}", list(shape)),
            Op::Split { axis, sizes } => write!(f, "{{axis={axis} sizes={}}}", list(sizes)),
            Op::Tile { repeats } => write!(f, "{{repeats={}}}", list(repeats)),
            Op::Pad { pads, mode, value } => {
                write!(f, "{{pads={} mode={mode:?} value={value:?}}}", list(pads))
            }
            Op::Einsum(eq) => write!(f, "{{equation={eq}}}"),
            Op::CumSum {
                axis,
                exclusive,
                reverse,
            } => {
                write!(f, "{{axis={axis}")?;
                if *exclusive {
                    f.write_str(" exclusive")?;
                }
                if *reverse {
                    f.write_str(" reverse")?;
                }
                f.write_str("}")
            }
            _ => Ok(()),
        }
    }
}
