//! The lowered program: the contract between the edgecc compiler and its targets.
//!
//! A [`Program`] is an ordered list of [`Kernel`]s over flat buffers: the caller's
//! inputs and outputs, one arena for every intermediate, and constant blobs. It carries
//! no ONNX and no graph: a target needs nothing else to emit code, and a kernel's meaning
//! is fully defined by the doc comments here. The compiler's reference interpreter is the
//! oracle a target is tested against; [`exec`] is a second, scalar executor of the lowered
//! program itself, so that lowering and targets can be told apart when a test fails.
//!
//! Conventions shared by every kernel:
//! - All tensors are dense, little-endian, row-major unless strides say otherwise.
//! - Strides and offsets are in **elements**, not bytes, except [`Buffer::Arena`] offsets,
//!   which are in bytes (the memory planner works in bytes).
//! - Kernels run in order; a kernel may read a buffer an earlier kernel wrote. Two views a
//!   kernel reads and writes never overlap unless the doc says so (elementwise in place).

pub mod exec;
pub mod poly;

/// Element type of a tensor that crosses the artifact boundary or lives in the arena.
///
/// The numbering is ONNX's `TensorProto.DataType`, so descriptors and headers can use one
/// table everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum DType {
    F32 = 1,
    U8 = 2,
    I8 = 3,
    I32 = 6,
    I64 = 7,
    Bool = 9,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 | DType::Bool => 1,
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
        }
    }

    /// The lower-case name used in headers, manifests and reports (`f32`, `i64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }
}

/// A tensor the caller passes in or gets back.
#[derive(Clone, Debug, PartialEq)]
pub struct IoTensor {
    /// The ONNX value name, kept verbatim for descriptors and manifests.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl IoTensor {
    pub fn num_elements(&self) -> u64 {
        self.shape.iter().product()
    }
    pub fn byte_size(&self) -> u64 {
        self.num_elements() * self.dtype.size() as u64
    }
}

/// Index of a constant blob in [`Program::consts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstId(pub u32);

/// A constant tensor baked into the artifact (weights, biases, folded parameters).
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Where it came from, for symbol names and reports; not semantically meaningful.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Little-endian element data, `shape.product() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

impl Const {
    /// The data as f32 values; empty when the dtype is not `F32`.
    pub fn f32s(&self) -> Vec<f32> {
        if self.dtype != DType::F32 {
            return Vec::new();
        }
        self.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Where a kernel operand lives. The element offset within it is carried by [`View`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// The arena, at a byte offset that is a multiple of [`Program::arena_align`].
    Arena { offset: u64 },
    /// The i-th caller input.
    Input(u32),
    /// The i-th caller output.
    Output(u32),
    /// A constant blob.
    Const(ConstId),
}

/// A strided view of a buffer: element `idx` (a multi-index over the kernel's iteration
/// shape) is at `offset + sum(idx[d] * strides[d])`, in elements of the kernel's dtype.
/// A stride of 0 broadcasts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct View {
    pub buf: Buffer,
    pub offset: u64,
    pub strides: Vec<i64>,
}

/// The additive mask of a [`Kernel::Softmax`]: `view` reads it over
/// `[outer[0], .., outer[k-1], len, inner]`, broadcasting where a stride is 0. The outer
/// dims (product `outer`) are kept apart because a mask broadcast over some of them (one
/// mask for every head) has no single stride over the flattened outer axis. The stride
/// along `len` is 0 or 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SoftmaxMask {
    pub outer: Vec<u64>,
    pub view: View,
}

/// A fused activation applied to a kernel's result before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    /// `max(x, 0)`; NaN gives 0 (targets compare `x > 0`).
    Relu,
    /// `min(max(x, lo), hi)`; Relu6 is `Clip { lo: 0, hi: 6 }`.
    Clip {
        lo: f32,
        hi: f32,
    },
    Sigmoid,
    Tanh,
    /// `0.5·x·(1 + erf(x/√2))`, or with `tanh` the approximation
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (ONNX Gelu's two forms).
    Gelu {
        tanh: bool,
    },
    /// `x · min(max(x·(1/6) + 1/2, 0), 1)` (ONNX HardSwish); NaN gives NaN.
    HardSwish,
}

/// One-input float functions. Transcendentals are emitted inline (no libm) within the
/// tolerance the interpreter tests state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Relu,
    Exp,
    Tanh,
    Sigmoid,
    Sqrt,
    Reciprocal,
    /// The error function `erf(x) = 2/√π ∫₀ˣ e^{-t²} dt`: odd, in `[-1, 1]`, `±1` at
    /// `±inf`, NaN for NaN. Targets are within 3.5e-7 absolute of the exact value.
    Erf,
    /// The natural logarithm: `log(±0) = -inf`, `log(x < 0) = NaN` (including `-inf`),
    /// `log(+inf) = +inf`, NaN for NaN; subnormal inputs are exact inputs, not zero.
    /// Targets are within a few ulp (relative 3e-7) of the exact value.
    Log,
    /// Rounding to the nearest integer, ties to even (ONNX Round, and the rounding of
    /// QuantizeLinear): exact; `±0`, `±inf` and NaN map to themselves.
    Round,
}

/// Two-input float functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// `a^b` with C `powf`'s special values: `x^0 = 1` and `1^y = 1` for every `x`, `y`
    /// (NaN too), `(-1)^±inf = 1`; a negative base with a non-integer exponent is NaN,
    /// with an odd integer exponent negative; otherwise NaN in gives NaN out. Targets
    /// compute `exp(b · log|a|)`: relative error up to `|b · log|a|| · 2^-23` plus a few
    /// ulp, i.e. about 1e-5 near the ends of the f32 range.
    Pow,
}

/// A node of an elementwise expression; operands index earlier nodes of the same
/// expression, so the list is in SSA order and the last node is the result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExprNode {
    /// The value of the kernel's i-th input view at the current index.
    Input(u32),
    Const(f32),
    Unary(UnaryOp, u32),
    Binary(BinaryOp, u32, u32),
    /// `min(max(x, lo), hi)` with NaN passing through as ONNX Clip does.
    Clip {
        x: u32,
        lo: f32,
        hi: f32,
    },
}

/// Comparisons of [`Kernel::Compare`] (ONNX Equal, Less, LessOrEqual, Greater,
/// GreaterOrEqual).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// Connectives of [`Kernel::Logic`] (ONNX And, Or, Xor, Not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogicOp {
    And,
    Or,
    Xor,
    /// The only one-operand connective: `b` is absent.
    Not,
}

/// Integer operations of [`Kernel::IntElementwise`], all in two's complement with
/// wrapping on overflow (the low 32 or 64 bits of the exact result), never trapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntOp {
    /// `a + b`, wrapping.
    Add,
    /// `a - b`, wrapping.
    Sub,
    /// `a · b`, wrapping (the low bits of the full product).
    Mul,
    /// The larger of `a` and `b`, signed.
    Max,
    /// The smaller of `a` and `b`, signed.
    Min,
    /// `-a`, wrapping: the most negative value is its own negation. One operand.
    Neg,
    /// `|a|`, wrapping like `Neg`: the most negative value stays itself. One operand.
    Abs,
}

impl IntOp {
    /// Whether the op reads a second operand `b`.
    pub fn is_binary(self) -> bool {
        !matches!(self, IntOp::Neg | IntOp::Abs)
    }
}

/// Where the zero point of a quantized operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZeroPoint {
    /// Known at compile time (static quantization).
    Const(i32),
    /// One element of the operand's dtype read from a buffer when the kernel runs (the
    /// zero point `DynamicQuantizeLinear` computes).
    Runtime(Buffer),
}

/// Fixed-point requantization of an int32 accumulator into `dtype` (`U8` or `I8`): for
/// output channel `c`,
///
/// `out = clamp(zero_point + ((acc · multiplier[c] + 2^(shift−1)) >> shift), lo, hi)`
///
/// computed exactly in 64-bit integers (`acc` and `multiplier` sign-extended, `>>` an
/// arithmetic shift), i.e. `acc · multiplier[c] / 2^shift` rounded to nearest with ties
/// toward +∞. The real rescale `s_in · s_w[c] / s_out` is `multiplier[c] / 2^shift`;
/// one shift for every channel keeps the vector epilogue free of per-lane shifts.
/// `clamp` is where a folded Relu or Clip went. No float math.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requant {
    pub dtype: DType,
    /// One per output channel, or one for all; each in `0..2^31`.
    pub multiplier: Vec<i32>,
    /// In `1..=62`.
    pub shift: u32,
    pub zero_point: i32,
    /// `dtype`'s range or narrower; `lo <= hi`.
    pub lo: i32,
    pub hi: i32,
}

impl Requant {
    /// The requantized value of `acc` for channel `c` (the definition above; targets
    /// must match it bit for bit).
    pub fn apply(&self, acc: i32, c: usize) -> i32 {
        let m = if self.multiplier.len() == 1 {
            self.multiplier[0]
        } else {
            self.multiplier[c]
        };
        let r = (acc as i64 * m as i64 + (1i64 << (self.shift - 1))) >> self.shift;
        (r + self.zero_point as i64).clamp(self.lo as i64, self.hi as i64) as i32
    }
}

/// What an integer GEMM or convolution stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QuantOut {
    /// The int32 accumulators themselves (ONNX MatMulInteger, ConvInteger).
    I32,
    /// Requantized 8-bit values.
    Requant(Requant),
}

impl QuantOut {
    pub fn dtype(&self) -> DType {
        match self {
            QuantOut::I32 => DType::I32,
            QuantOut::Requant(r) => r.dtype,
        }
    }
}

/// How a [`Kernel::QBinary`] combines its operands, each with its zero point already
/// subtracted, into the integer it rounds. The multipliers carry 30 bits (`[−2^30, 2^30)`,
/// checked by [`QBinary::check`]) so that a sum on the edge of a rounding step rounds as
/// the float computation it replaces would: with 15 bits, one residual Add in four
/// thousand of a quantized encoder rounded the other way, and the float LayerNorm after
/// it turned that one step into two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QBinaryOp {
    /// `acc = (a − za)·ma + (b − zb)·mb`: `ma / 2^shift ≈ sa / sy` and `mb / 2^shift ≈
    /// sb / sy` (ONNX QLinearAdd, or Add between DequantizeLinear and QuantizeLinear).
    Add { ma: i32, mb: i32 },
    /// `acc = (a − za)·(b − zb)·m` with `m / 2^shift ≈ sa·sb / sy` (QLinearMul).
    Mul { m: i32 },
}

/// The arithmetic of a [`Kernel::QBinary`]: `acc` from [`QBinaryOp`], exact, then
///
/// `out = clamp(zero_point + ⌊(acc + 2^(shift−1)) / 2^shift⌋, lo, hi)`
///
/// i.e. `acc / 2^shift` rounded to nearest with ties toward +∞, as [`Requant`] rounds.
/// No float math.
///
/// `acc` needs up to 48 bits, but 32-bit lanes and 16×16-bit multiplies compute the
/// result exactly: split each multiplier `m = mh·2^15 + ml` (`mh = m >> 15` fits i16, `ml =
/// m & 0x7fff`), sum the products with the high halves into `H` and with the low halves
/// into `L` (for Mul, `P·mh` and `P·ml` with `P = (a − za)(b − zb)`), and take
/// `H' = H + (L >> 15)`; then `out = clamp(zero_point + ((t >> 1) + (t & 1)), lo, hi)` with
/// `t = H' >> (shift − 16)`. The low 15 bits of `L` cannot change the result because
/// `shift ≥ 16`: `⌊((H' + 2^(shift−16))·2^15 + low) / 2^shift⌋ = ⌊(H' + 2^(shift−16)) /
/// 2^(shift−15)⌋` for `0 ≤ low < 2^15`. Every intermediate fits int32: `|x − z| ≤ 255`, so
/// an Add's `H` and `L` stay below 2^24 and a Mul's below `255²·2^15 + 255² < 2^31`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QBinary {
    pub op: QBinaryOp,
    /// The zero point of `a`, in the range of its dtype.
    pub a_zero: i32,
    /// The zero point of `b`, in the range of its dtype.
    pub b_zero: i32,
    /// In `16..=46`.
    pub shift: u32,
    /// The output dtype, `U8` or `I8`.
    pub dtype: DType,
    /// In `dtype`'s range.
    pub zero_point: i32,
    /// `dtype`'s range or narrower (a folded Relu or Clip); `lo <= hi`.
    pub lo: i32,
    pub hi: i32,
}

impl QBinary {
    /// Multipliers lie in `[−2^30, 2^30)`, so that `mh = m >> 15` is an i16.
    pub const MULTIPLIERS: std::ops::Range<i32> = -(1 << 30)..(1 << 30);

    /// The shifts the split computation allows.
    pub const SHIFTS: std::ops::RangeInclusive<u32> = 16..=46;

    /// Whether the parameters are in the ranges the definition needs, for operands of
    /// `a_dtype` and `b_dtype`: every dtype `U8` or `I8`, each zero point (the output's
    /// too) in its operand's range, multipliers in `[−2^30, 2^30)`, `shift` in `16..=46`,
    /// `lo <= hi` both in the output's range.
    pub fn check(&self, a_dtype: DType, b_dtype: DType) -> Result<(), String> {
        let range = |d: DType| match d {
            DType::U8 => Ok(0..=255),
            DType::I8 => Ok(-128..=127),
            _ => Err(format!("{} is not an 8-bit quantized dtype", d.name())),
        };
        let (ra, rb, ry) = (range(a_dtype)?, range(b_dtype)?, range(self.dtype)?);
        if !ra.contains(&self.a_zero)
            || !rb.contains(&self.b_zero)
            || !ry.contains(&self.zero_point)
        {
            return Err("a zero point is outside its operand's range".into());
        }
        let ms: &[i32] = match &self.op {
            QBinaryOp::Add { ma, mb } => &[*ma, *mb],
            QBinaryOp::Mul { m } => &[*m],
        };
        if let Some(m) = ms.iter().find(|m| !Self::MULTIPLIERS.contains(*m)) {
            return Err(format!("multiplier {m} is not in [-2^30, 2^30)"));
        }
        if !Self::SHIFTS.contains(&self.shift) {
            return Err(format!("shift {} is not in 16..=46", self.shift));
        }
        if !(ry.contains(&self.lo) && ry.contains(&self.hi) && self.lo <= self.hi) {
            return Err(format!(
                "clamp [{}, {}] does not fit the output",
                self.lo, self.hi
            ));
        }
        Ok(())
    }

    /// The output for operands `a` and `b` (the definition above; targets must match it
    /// bit for bit). Computed in 128 bits, so it is defined for any parameters.
    pub fn apply(&self, a: i32, b: i32) -> i32 {
        let (x, y) = (
            a as i128 - self.a_zero as i128,
            b as i128 - self.b_zero as i128,
        );
        let acc = match self.op {
            QBinaryOp::Add { ma, mb } => x * ma as i128 + y * mb as i128,
            QBinaryOp::Mul { m } => x * y * m as i128,
        };
        let s = self.shift.clamp(1, 100);
        let r = (acc + (1i128 << (s - 1))) >> s;
        (r + self.zero_point as i128).clamp(self.lo as i128, self.hi as i128) as i32
    }
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average; with `count_include_pad` the divisor is the full window (`kh·kw`), else only
    /// the in-bounds elements. A window with no in-bounds element (possible only with
    /// padding at least a window wide) averages to 0, and its max is `-inf`.
    Avg {
        count_include_pad: bool,
    },
}

/// Reductions over one axis. A reduction over no element (`len == 0`) gives the neutral
/// element: 0 for `Sum`, `-inf` for `Max`, `+inf` for `Min`, 1 for `Prod` (`Mean` divides
/// that 0 by 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// `Sum / len`.
    Mean,
    /// The largest element; NaN if any element is NaN (as the reference interpreter).
    Max,
    /// The smallest element; NaN if any element is NaN. `-0` and `+0` compare equal, so
    /// either may be returned for a row holding both.
    Min,
    /// The product, in any association order (like `Sum`, rounding may differ from a
    /// left-to-right fold).
    Prod,
}

/// Geometry of a 2-D sliding window over NCHW data. 1-D ops use `h = kh = 1`,
/// `stride_h = dilation_h = 1`, `pad_top = pad_bottom = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kh: u32,
    pub kw: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub dilation_h: u32,
    pub dilation_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub pad_bottom: u32,
    pub pad_right: u32,
}

/// Input and output spatial sizes of a windowed kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spatial {
    pub n: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_h: u32,
    pub out_w: u32,
}

/// One step of the program. All float kernels are f32.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    /// `C[b] = act(alpha · A[b] · B[b] + bias + residual)` for `b in 0..batch`, with `A[b]`
    /// M×K, `B[b]` K×N, `C[b]` M×N. The views are indexed `[b, row, col]` (three strides
    /// each), so transposed operands and broadcast batches (stride 0) need no copy. `bias`
    /// and `residual` are indexed `[b, row, col]` too (any broadcast form); the sums are
    /// rounded to f32 in that order (product, `+ bias`, `+ residual`), as the unfused
    /// MatMul, Add, Add would. No view overlaps `c`. A target may repack a constant `a`
    /// or `b` at compile time into whatever layout it likes.
    Gemm {
        batch: u32,
        m: u32,
        n: u32,
        k: u32,
        a: View,
        b: View,
        /// Multiplies A·B before the bias is added (ONNX Gemm's alpha).
        alpha: f32,
        /// Added after scaling, already multiplied by Gemm's beta by the lowering.
        bias: Option<View>,
        /// Added after the bias (a skip connection), before the activation.
        residual: Option<View>,
        act: Activation,
        c: View,
    },
    /// NCHW convolution, `out[n, co, oy, ox] = act(bias[co] + sum over ci in co's group,
    /// ky, kx of in[n, ci, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw] * w[co, ci%cpg, ky, kx]
    /// plus residual[n, co, oy, ox])`, zero outside the input; the residual (a skip
    /// connection) is added to the f32 sum of bias and taps, before the activation.
    /// Input, weights (OIHW, `c_out × c_in/groups × kh × kw`) and output are dense. `scratch` is an arena area of at least
    /// [`Kernel::conv_scratch_bytes`] bytes the target may use (im2col), present when that
    /// is non-zero.
    Conv {
        c_in: u32,
        c_out: u32,
        groups: u32,
        spatial: Spatial,
        window: Window,
        input: Buffer,
        weight: ConstId,
        bias: Option<ConstId>,
        /// Dense, the output's shape; read-only here and overlapping neither the output
        /// nor the scratch.
        residual: Option<Buffer>,
        act: Activation,
        output: Buffer,
        scratch: Option<Buffer>,
    },
    /// Integer GEMM: for `row < m`, `col < n`,
    /// `acc = Σ_k (a[row, k] − a_zero) · b[k, col] + bias[col]` in int32 (wrapping; no
    /// model comes near), then `c[row, col] = out(acc)` with requantization channel `col`.
    /// `a` is `a_dtype` (`U8` or `I8`) indexed `[row, k]` with a stride of 1 along `k`;
    /// `b` is a constant `I8` `[k, n]` dense (zero point 0: symmetric weights), which the
    /// target repacks at compile time as it likes; `bias` an `I32` `[n]` constant; `c` is
    /// indexed `[row, col]` in elements of `out.dtype()`. No float math; `c` overlaps
    /// nothing.
    QGemm {
        m: u32,
        n: u32,
        k: u32,
        a: View,
        a_dtype: DType,
        a_zero: ZeroPoint,
        b: ConstId,
        bias: Option<ConstId>,
        out: QuantOut,
        c: View,
    },
    /// Integer NCHW convolution with [`Kernel::Conv`]'s geometry:
    /// `acc = bias[co] + Σ (in[n, ci, iy, ix] − in_zero) · w[co, ci%cpg, ky, kx]` in int32,
    /// where taps outside the input contribute 0 (the padding is the zero point, i.e. a
    /// real 0), then `output = out(acc)` with requantization channel `co`. Input is
    /// `in_dtype` (`U8` or `I8`), weights a constant `I8` OIHW (zero point 0), bias an
    /// `I32` `[c_out]` constant; input and output dense. `scratch`, when present, is
    /// [`Kernel::qconv_scratch_bytes`] bytes of arena for the target (im2col of bytes).
    QConv {
        c_in: u32,
        c_out: u32,
        groups: u32,
        spatial: Spatial,
        window: Window,
        input: Buffer,
        in_dtype: DType,
        in_zero: ZeroPoint,
        weight: ConstId,
        bias: Option<ConstId>,
        out: QuantOut,
        output: Buffer,
        scratch: Option<Buffer>,
    },
    /// Pooling over dense NCHW: `channels` is N·C, each plane pooled independently.
    /// `dtype` is `F32`, or `U8`/`I8` for [`PoolKind::Max`] (exact on quantized values:
    /// the max commutes with a positive-scale dequantization; a window with no in-bounds
    /// element gives the dtype's minimum).
    Pool {
        kind: PoolKind,
        dtype: DType,
        channels: u32,
        spatial: Spatial,
        window: Window,
        input: Buffer,
        output: Buffer,
    },
    /// `out[i] = expr(inputs[..][i])` for every multi-index `i` of `shape`. Views are
    /// indexed with `shape.len()` strides, in 4-byte elements: arithmetic is f32, and
    /// `expr = [Input(0)]` moves any 4-byte dtype bit for bit. The output may be one of the
    /// inputs with identical view (in place); otherwise it overlaps none. Covers arithmetic with broadcasting and pure
    /// data movement (transpose, concat slices, broadcast copies) as `expr = [Input(0)]`.
    Elementwise {
        shape: Vec<u64>,
        inputs: Vec<View>,
        expr: Vec<ExprNode>,
        output: View,
    },
    /// Softmax over the middle axis of a dense `[outer, len, inner]` tensor of
    /// `scale · input + mask`, each step rounded to f32 as the unfused ops would
    /// (attention's scaled, masked scores in one kernel). `scale == 1` and no mask is the
    /// plain softmax, and targets emit no multiply or add for it. A scale other than 1 or
    /// a mask requires `inner == 1` (softmax over the last axis).
    Softmax {
        outer: u64,
        len: u64,
        inner: u64,
        input: Buffer,
        output: Buffer,
        scale: f32,
        mask: Option<SoftmaxMask>,
    },
    /// Layer normalization of each row of a dense `[outer, len]` f32 tensor (ONNX
    /// LayerNormalization with everything from its axis on flattened into `len`), one pass
    /// for the statistics and one for the result instead of five kernels over memory.
    /// Row `o`, in f32:
    /// - `mean = Σ x / len`, `var = Σ (x − mean)² / len` (two passes over the row; the sums
    ///   may be reassociated like [`ReduceOp::Sum`]'s), `inv = 1 / sqrt(var + epsilon)`;
    /// - `y = (x − mean) · inv · scale + bias`, rounded in that order, with `scale` and
    ///   `bias` read as 1 and 0 when absent.
    ///
    /// `scale` and `bias` are views over `[len]` (one stride, 1 or 0: a full vector or one
    /// value), constants or runtime buffers. `mean` and `inv_std`, when present, receive
    /// `outer` values each (ONNX's optional Mean and InvStdDev outputs). The output may be
    /// the input (in place); no other buffers overlap.
    LayerNorm {
        outer: u64,
        len: u64,
        epsilon: f32,
        input: Buffer,
        scale: Option<View>,
        bias: Option<View>,
        output: Buffer,
        mean: Option<Buffer>,
        inv_std: Option<Buffer>,
    },
    /// Reduction over the middle axis of a dense `[outer, len, inner]` tensor into a
    /// dense `[outer, inner]` one.
    Reduce {
        op: ReduceOp,
        outer: u64,
        len: u64,
        inner: u64,
        input: Buffer,
        output: Buffer,
    },
    /// Raw copy of `bytes` bytes between non-overlapping buffers (any dtype).
    Copy {
        bytes: u64,
        src: Buffer,
        dst: Buffer,
    },
    /// Gather along the middle axis of a dense `[outer, axis_len, inner]` tensor of
    /// `elem_bytes`-byte elements (any dtype, copied bit for bit):
    /// `out[o, i, k] = data[o, idx[i] (+ axis_len if negative), k]` for `o < outer`,
    /// `i < count`, `k < inner`, into a dense `[outer, count, inner]` output. `indices`
    /// holds `count` little-endian signed integers of `index_bytes` bytes (1, 4 or 8; one
    /// byte is how 8-bit values index a 256-entry lookup table: a u8 byte read as signed
    /// wraps back to itself). This
    /// is ONNX Gather (the transformer embedding lookup: constant `data`, an i64 input
    /// as `indices`).
    ///
    /// With `elementwise`, every output element has its own index instead:
    /// `out[o, i, k] = data[o, idx[o, i, k] (+ axis_len if negative), k]`, `indices` dense
    /// `[outer, count, inner]` (`outer · count · inner` integers). This is ONNX
    /// GatherElements where data and indices differ only along the axis (PyTorch's
    /// `torch.gather` of an expanded buffer, as RoBERTa's token-type ids are exported).
    ///
    /// Every index is checked against `[-axis_len, axis_len)` before anything is written;
    /// if one is outside, the program stops there: generated `run` returns
    /// [`STATUS_INDEX_OUT_OF_RANGE`] (output and arena contents are then unspecified)
    /// and [`exec::run`] returns [`exec::ExecError::IndexOutOfRange`].
    Gather {
        outer: u64,
        axis_len: u64,
        inner: u64,
        count: u64,
        elem_bytes: u32,
        data: Buffer,
        indices: Buffer,
        index_bytes: u32,
        output: Buffer,
        /// One index per output element (GatherElements), not per output row.
        elementwise: bool,
    },
    /// Elementwise type conversion of `count` dense elements, `input` of dtype `from`
    /// into `output` of dtype `to` (ONNX Cast; the two buffers do not overlap):
    /// - float → integer (`I32`, `I64`, `U8`, `I8`) truncates toward zero and saturates
    ///   to the target's range on overflow (`±inf` included), NaN gives 0, exactly Rust's
    ///   `x as T` (ONNX leaves overflow undefined);
    /// - integer → `F32` rounds to nearest, ties to even (`x as f32`), `U8` is unsigned;
    /// - integer → integer wraps: sign- or zero-extends the source (`I8` signed, `U8`
    ///   unsigned) and keeps the low bits, two's complement (`x as T`);
    /// - anything → `Bool` is `x != 0` stored as byte 0 or 1 (`-0.0` gives 0, NaN gives 1);
    /// - `Bool` → anything reads a byte as true when it is non-zero and gives 1 or 0
    ///   (`1.0` / `0.0` for `F32`), so `Bool → Bool` normalises bytes to 0/1;
    /// - `F32 → F32` and other same-type conversions copy bits (NaN payloads kept).
    ///
    /// The transformer attention mask (an i64 graph input cast to f32) is `I64 → F32`.
    Convert {
        count: u64,
        from: DType,
        to: DType,
        input: Buffer,
        output: Buffer,
    },
    /// `out[i] = a[i] op b[i]` for every multi-index `i` of `shape`, stored as one bool
    /// byte, 1 when the comparison holds and 0 otherwise (ONNX Equal, Less, ...). `a` and
    /// `b` are strided views (`shape.len()` strides, in elements of `dtype`; 0 broadcasts)
    /// of the same `dtype`; `output` is a view in bytes. The output overlaps neither input.
    /// Per `dtype`:
    /// - `F32` compares as IEEE: any comparison with a NaN is false (`Equal(NaN, NaN)`
    ///   too), and `-0.0 == 0.0`;
    /// - `I32`, `I64`, `I8` compare as signed integers, `U8` as unsigned, exactly (an
    ///   `i64` is never rounded through a float);
    /// - `Bool` reads a byte as true when it is non-zero and compares `false < true`.
    Compare {
        shape: Vec<u64>,
        op: CmpOp,
        dtype: DType,
        a: View,
        b: View,
        output: View,
    },
    /// `out[i] = a[i] op b[i]` (`Not`: `out[i] = !a[i]`, with `b` absent) over bool bytes,
    /// for every multi-index `i` of `shape` (ONNX And, Or, Xor, Not). Every view is in
    /// bytes with `shape.len()` strides (0 broadcasts); an input byte is true when it is
    /// non-zero, and the output is normalised to 0 or 1. The output overlaps no input.
    Logic {
        shape: Vec<u64>,
        op: LogicOp,
        a: View,
        b: Option<View>,
        output: View,
    },
    /// `out[i] = cond[i] ? a[i] : b[i]` for every multi-index `i` of `shape` (ONNX
    /// Where): the chosen element of `elem_bytes` bytes (1, 4 or 8; any dtype) is copied
    /// bit for bit. `cond` is a view of bool bytes (non-zero is true), `a`, `b` and
    /// `output` are views in `elem_bytes`-byte elements, each with `shape.len()` strides
    /// (0 broadcasts). The output overlaps no input. With `cond` a constant the kernel is
    /// a strided copy, which is how the lowering moves byte-sized elements.
    Select {
        shape: Vec<u64>,
        elem_bytes: u32,
        cond: View,
        a: View,
        b: View,
        output: View,
    },
    /// `out[i] = a[i] op b[i]` (`Neg`, `Abs`: `out[i] = op a[i]`, with `b` absent) on
    /// signed integers of `dtype` (`I32` or `I64`) for every multi-index `i` of `shape`,
    /// with the wrapping semantics of [`IntOp`] (ONNX Add, Sub, Mul, Max, Min, Neg, Abs on
    /// int32/int64; the position ids of RoBERTa-style models). Views have `shape.len()`
    /// strides in elements of `dtype` (0 broadcasts). The output may be one of the inputs
    /// with an identical view (in place); otherwise it overlaps no input.
    IntElementwise {
        shape: Vec<u64>,
        dtype: DType,
        op: IntOp,
        a: View,
        b: Option<View>,
        output: View,
    },
    /// Elementwise Add or Mul of two 8-bit quantized tensors into an 8-bit one, in integers
    /// ([`QBinary`]): `out[i] = q.apply(a[i], b[i])` for every multi-index `i` of `shape`.
    /// `a` is `a_dtype`, `b` is `b_dtype` and `output` is `q.dtype` (each `U8` or `I8`),
    /// views with `shape.len()` strides in bytes (0 broadcasts: a bias vector, a scalar). This
    /// is the residual Add of a quantized network and QLinearAdd / QLinearMul, which would
    /// otherwise dequantize both operands, add in f32 and quantize again. The output may be
    /// one of the inputs with an identical view (in place); otherwise it overlaps no input.
    QBinary {
        shape: Vec<u64>,
        a: View,
        a_dtype: DType,
        b: View,
        b_dtype: DType,
        q: QBinary,
        output: View,
    },
    /// Running sums along the middle axis of a dense `[outer, len, inner]` tensor of
    /// `dtype` (`F32`, `I32` or `I64`) into a dense output of the same shape (ONNX
    /// CumSum). For each `(o, i)` the scan visits `k = 0, 1, .., len-1` (`len-1, .., 0`
    /// when `reverse`) and keeps one running sum `s`, starting at 0: at each step
    /// `s' = s + x[o, k, i]` and `out[o, k, i]` is `s'` (inclusive) or `s` (`exclusive`,
    /// so the first element of the scan is 0); then `s = s'`. f32 sums are exactly this
    /// sequential order of f32 additions (no reassociation: results are bit-identical to
    /// a left-to-right fold); integers wrap (two's complement). Input and output do not
    /// overlap.
    CumSum {
        outer: u64,
        len: u64,
        inner: u64,
        dtype: DType,
        exclusive: bool,
        reverse: bool,
        input: Buffer,
        output: Buffer,
    },
}

/// The status `<name>_run` returns when a [`Kernel::Gather`] index is out of range (0 is
/// success; no other status is defined).
pub const STATUS_INDEX_OUT_OF_RANGE: i32 = 1;

impl Kernel {
    /// The scratch a [`Kernel::Conv`] gets: the im2col matrix of one block of output rows
    /// of one group, `K × (rows · out_w)` floats with `K = c_in/groups · kh · kw` and
    /// `rows = `[`Kernel::conv_block_rows`], unless the convolution needs none (pointwise
    /// with unit stride and no padding, or depthwise).
    pub fn conv_scratch_bytes(c_in: u32, c_out: u32, groups: u32, s: &Spatial, w: &Window) -> u64 {
        let pointwise = w.kh == 1
            && w.kw == 1
            && w.stride_h == 1
            && w.stride_w == 1
            && w.pad_top == 0
            && w.pad_left == 0
            && w.pad_bottom == 0
            && w.pad_right == 0;
        let depthwise = groups == c_in && groups == c_out;
        if pointwise || depthwise || groups == 0 {
            return 0;
        }
        let k = (c_in / groups) as u64 * w.kh as u64 * w.kw as u64;
        let rows = Kernel::conv_block_rows(c_in, groups, s, w) as u64;
        k * rows * s.out_w as u64 * 4
    }

    /// The scratch a [`Kernel::QConv`] gets: the same blocks as [`Kernel::Conv`]'s im2col
    /// but one byte per element, `K × (rows · out_w)` bytes rounded up to a multiple of
    /// 16, unless the convolution needs none.
    pub fn qconv_scratch_bytes(c_in: u32, c_out: u32, groups: u32, s: &Spatial, w: &Window) -> u64 {
        Kernel::conv_scratch_bytes(c_in, c_out, groups, s, w)
            .div_ceil(4)
            .next_multiple_of(16)
    }

    /// How many output rows an im2col convolution processes per block; the target
    /// im2col-s one block (all of its `rows · out_w` output pixels) into the scratch and
    /// multiplies it by the weights before the next block.
    ///
    /// The block aims at [`CONV_BLOCK_BYTES`] of im2col data (`K · cols · 4` bytes), i.e.
    /// `cols = CONV_BLOCK_BYTES / (4K)` columns clamped to `64..=512`: an L1-sized B
    /// operand that every row block of the weights sweeps while it stays cached, and at
    /// least 64 columns so the microkernels (8 columns on x86_64, 12 on aarch64) run whole
    /// panels most of the time. Blocks are whole output rows (`rows = cols / out_w`, at
    /// least 1, at most `out_h`), so each block's im2col is plain row copies; when possible
    /// `rows · out_w` is rounded down to a multiple of 8 (else of 4) so that only the last
    /// block has a column tail narrower than a vector.
    pub fn conv_block_rows(c_in: u32, groups: u32, s: &Spatial, w: &Window) -> u32 {
        let k = ((c_in / groups.max(1)) as u64 * w.kh as u64 * w.kw as u64).max(1);
        let ow = (s.out_w as u64).max(1);
        let cols = (CONV_BLOCK_BYTES / (4 * k)).clamp(64, 512);
        let mut rows = (cols / ow).max(1);
        for lanes in [8u64, 4] {
            let q = lanes / gcd(ow, lanes);
            if rows >= q {
                rows -= rows % q;
                break;
            }
        }
        rows.min(s.out_h as u64).max(1) as u32
    }

    /// A short lower-case name for reports and symbol names.
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Gemm { .. } => "gemm",
            Kernel::Conv { .. } => "conv",
            Kernel::QGemm { .. } => "qgemm",
            Kernel::QConv { .. } => "qconv",
            Kernel::Pool { .. } => "pool",
            Kernel::Elementwise { .. } => "elementwise",
            Kernel::Softmax { .. } => "softmax",
            Kernel::Reduce { .. } => "reduce",
            Kernel::LayerNorm { .. } => "layer_norm",
            Kernel::Copy { .. } => "copy",
            Kernel::Gather { .. } => "gather",
            Kernel::Convert { .. } => "convert",
            Kernel::Compare { .. } => "compare",
            Kernel::Logic { .. } => "logic",
            Kernel::Select { .. } => "select",
            Kernel::IntElementwise { .. } => "int_elementwise",
            Kernel::QBinary { .. } => "qbinary",
            Kernel::CumSum { .. } => "cumsum",
        }
    }
}

/// Everything a target needs to emit an artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// C identifier prefix for every exported symbol (`<name>_run`, `<name>_model`).
    pub name: String,
    pub inputs: Vec<IoTensor>,
    pub outputs: Vec<IoTensor>,
    /// Bytes of scratch memory the caller provides; every `Buffer::Arena` lies within.
    pub arena_size: u64,
    /// Required alignment of the arena's base address, in bytes.
    pub arena_align: u64,
    pub consts: Vec<Const>,
    pub kernels: Vec<Kernel>,
}

/// Target size in bytes of one im2col block of a convolution (see
/// [`Kernel::conv_block_rows`]): the 32 KiB L1 data cache of the Cortex-A53/A55/A72 class
/// cores edge boards use (x86_64 cores have at least as much).
pub const CONV_BLOCK_BYTES: u64 = 32 * 1024;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The alignment every arena offset and the arena base honour: one cache line, so
/// 128-bit vector accesses never split lines at tensor starts.
pub const ARENA_ALIGN: u64 = 64;
