//! Scalar executor of a lowered [`Program`]: the oracle the code generators are tested
//! against.
//!
//! Every kernel is implemented the most direct way its doc comment in the crate root
//! reads, one element at a time, with `f32` arithmetic in the documented order (sums run
//! over ascending indices) and transcendentals from `std` (`erf` and `log` from the
//! `libm` crate, so the oracle is the same on every host). Nothing here is fast; it is
//! meant to be obviously right. Every buffer access is bounds-checked and reported as an
//! [`ExecError`], so a malformed program is an error value, never a panic.
//!
//! Choices the contract leaves open, fixed here so that targets can match them:
//! - `Relu` is `max(x, 0)` with NaN giving 0; binary `Max`/`Min` use `f32::max`/`min`.
//! - Max pooling over a window with no in-bounds element gives `-inf`; average pooling
//!   that counts no element (padding only, `count_include_pad = false`) gives 0.
//! - Elementwise kernels move 4-byte elements: `[Input(0)]` copies any 4-byte dtype bit
//!   for bit.

use crate::{
    Activation, BinaryOp, Buffer, CmpOp, Const, DType, ExprNode, IntOp, Kernel, LogicOp, PoolKind,
    Program, QuantOut, ReduceOp, UnaryOp, View, ZeroPoint,
};

/// Why a program could not be executed.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecError {
    WrongInputCount {
        expected: usize,
        given: usize,
    },
    WrongOutputCount {
        expected: usize,
        given: usize,
    },
    /// Input or output `index` has the wrong byte size.
    IoSize {
        output: bool,
        index: usize,
        expected: u64,
        given: usize,
    },
    ArenaTooSmall {
        needed: u64,
        given: usize,
    },
    /// Kernel `kernel` touched an element outside of `buf` (or a negative index).
    OutOfRange {
        kernel: usize,
        buf: Buffer,
        byte_offset: i128,
        bytes: u64,
    },
    /// A buffer index (input, output or constant) that does not exist.
    NoSuchBuffer {
        kernel: usize,
        buf: Buffer,
    },
    /// A [`Kernel::Gather`] index outside `[-axis_len, axis_len)`: `indices[position]`
    /// is `index`. The generated code returns [`crate::STATUS_INDEX_OUT_OF_RANGE`].
    IndexOutOfRange {
        kernel: usize,
        position: u64,
        index: i64,
        axis_len: u64,
    },
    /// A kernel that is malformed in a way bounds checks cannot express (an expression
    /// node that refers forward, a view with the wrong number of strides, ...).
    Malformed {
        kernel: usize,
        reason: String,
    },
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::WrongInputCount { expected, given } => {
                write!(f, "program takes {expected} inputs, got {given}")
            }
            ExecError::WrongOutputCount { expected, given } => {
                write!(f, "program has {expected} outputs, got {given}")
            }
            ExecError::IoSize {
                output,
                index,
                expected,
                given,
            } => write!(
                f,
                "{} {index}: expected {expected} bytes, got {given}",
                if *output { "output" } else { "input" }
            ),
            ExecError::ArenaTooSmall { needed, given } => {
                write!(f, "arena too small: need {needed} bytes, got {given}")
            }
            ExecError::OutOfRange {
                kernel,
                buf,
                byte_offset,
                bytes,
            } => write!(
                f,
                "kernel {kernel}: access of {bytes} bytes at byte {byte_offset} is outside {buf:?}"
            ),
            ExecError::NoSuchBuffer { kernel, buf } => {
                write!(f, "kernel {kernel}: no such buffer {buf:?}")
            }
            ExecError::IndexOutOfRange {
                kernel,
                position,
                index,
                axis_len,
            } => write!(
                f,
                "kernel {kernel}: index {index} at position {position} is outside [-{axis_len}, {axis_len})"
            ),
            ExecError::Malformed { kernel, reason } => write!(f, "kernel {kernel}: {reason}"),
        }
    }
}

impl std::error::Error for ExecError {}

/// Runs `p` on `inputs`, writing `outputs` and using `arena` as scratch memory.
///
/// Buffers are checked against the program's I/O sizes and arena size first; the arena
/// needs no particular alignment here (it is only accessed bytewise).
pub fn run(
    p: &Program,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    arena: &mut [u8],
) -> Result<(), ExecError> {
    if inputs.len() != p.inputs.len() {
        return Err(ExecError::WrongInputCount {
            expected: p.inputs.len(),
            given: inputs.len(),
        });
    }
    if outputs.len() != p.outputs.len() {
        return Err(ExecError::WrongOutputCount {
            expected: p.outputs.len(),
            given: outputs.len(),
        });
    }
    for (index, (buf, t)) in inputs.iter().zip(&p.inputs).enumerate() {
        if buf.len() as u64 != t.byte_size() {
            return Err(ExecError::IoSize {
                output: false,
                index,
                expected: t.byte_size(),
                given: buf.len(),
            });
        }
    }
    for (index, (buf, t)) in outputs.iter().zip(&p.outputs).enumerate() {
        if buf.len() as u64 != t.byte_size() {
            return Err(ExecError::IoSize {
                output: true,
                index,
                expected: t.byte_size(),
                given: buf.len(),
            });
        }
    }
    if (arena.len() as u64) < p.arena_size {
        return Err(ExecError::ArenaTooSmall {
            needed: p.arena_size,
            given: arena.len(),
        });
    }
    let mut mem = Mem {
        inputs,
        outputs,
        arena,
        consts: &p.consts,
        kernel: 0,
    };
    for (i, k) in p.kernels.iter().enumerate() {
        mem.kernel = i;
        run_kernel(&mut mem, k)?;
    }
    Ok(())
}

/// All buffers of one run, with checked element access.
struct Mem<'a, 'b, 'c> {
    inputs: &'a [&'b [u8]],
    outputs: &'a mut [&'c mut [u8]],
    arena: &'a mut [u8],
    consts: &'a [Const],
    /// The kernel being run, for error messages.
    kernel: usize,
}

impl Mem<'_, '_, '_> {
    /// The bytes of `buf` and the byte offset views of it start from.
    fn bytes(&self, buf: Buffer) -> Result<(&[u8], u64), ExecError> {
        let no = || ExecError::NoSuchBuffer {
            kernel: self.kernel,
            buf,
        };
        Ok(match buf {
            Buffer::Arena { offset } => (&*self.arena, offset),
            Buffer::Input(i) => (*self.inputs.get(i as usize).ok_or_else(no)?, 0),
            Buffer::Output(i) => (*self.outputs.get(i as usize).ok_or_else(no)?, 0),
            Buffer::Const(c) => (&self.consts.get(c.0 as usize).ok_or_else(no)?.data[..], 0),
        })
    }

    fn bytes_mut(&mut self, buf: Buffer) -> Result<(&mut [u8], u64), ExecError> {
        let kernel = self.kernel;
        let no = || ExecError::NoSuchBuffer { kernel, buf };
        Ok(match buf {
            Buffer::Arena { offset } => (&mut *self.arena, offset),
            Buffer::Output(i) => (&mut **self.outputs.get_mut(i as usize).ok_or_else(no)?, 0),
            Buffer::Input(_) | Buffer::Const(_) => {
                return Err(ExecError::Malformed {
                    kernel,
                    reason: format!("writes to read-only buffer {buf:?}"),
                });
            }
        })
    }

    fn range(
        &self,
        buf: Buffer,
        base: u64,
        elem: i128,
        size: u64,
        len: usize,
    ) -> Result<usize, ExecError> {
        let at = base as i128 + elem * size as i128;
        if at < 0 || at + size as i128 > len as i128 {
            return Err(ExecError::OutOfRange {
                kernel: self.kernel,
                buf,
                byte_offset: at,
                bytes: size,
            });
        }
        Ok(at as usize)
    }

    /// The f32 at element index `elem` of `buf` (after its base offset).
    fn ld(&self, buf: Buffer, elem: i128) -> Result<f32, ExecError> {
        let (b, base) = self.bytes(buf)?;
        let at = self.range(buf, base, elem, 4, b.len())?;
        Ok(f32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
    }

    fn st(&mut self, buf: Buffer, elem: i128, v: f32) -> Result<(), ExecError> {
        let kernel = self.kernel;
        let (b, base) = self.bytes_mut(buf)?;
        let len = b.len();
        let at = base as i128 + elem * 4;
        if at < 0 || at + 4 > len as i128 {
            return Err(ExecError::OutOfRange {
                kernel,
                buf,
                byte_offset: at,
                bytes: 4,
            });
        }
        let at = at as usize;
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    /// The `size` bytes of element `elem` of `buf` (after its base offset).
    fn ld_bytes(&self, buf: Buffer, elem: i128, size: u64) -> Result<&[u8], ExecError> {
        let (b, base) = self.bytes(buf)?;
        let at = self.range(buf, base, elem, size, b.len())?;
        Ok(&b[at..at + size as usize])
    }

    fn st_bytes(&mut self, buf: Buffer, elem: i128, v: &[u8]) -> Result<(), ExecError> {
        let kernel = self.kernel;
        let size = v.len() as u64;
        let (b, base) = self.bytes_mut(buf)?;
        let at = base as i128 + elem * size as i128;
        if at < 0 || at + size as i128 > b.len() as i128 {
            return Err(ExecError::OutOfRange {
                kernel,
                buf,
                byte_offset: at,
                bytes: size,
            });
        }
        b[at as usize..at as usize + v.len()].copy_from_slice(v);
        Ok(())
    }

    /// Element `elem` of `buf` read as an integer of `dtype`.
    fn ld_int(&self, buf: Buffer, elem: i128, dtype: DType) -> Result<i64, ExecError> {
        Ok(int_of(
            dtype,
            self.ld_bytes(buf, elem, dtype.size() as u64)?,
        ))
    }

    fn zero_point(&self, z: ZeroPoint, dtype: DType) -> Result<i64, ExecError> {
        match z {
            ZeroPoint::Const(v) => Ok(v as i64),
            ZeroPoint::Runtime(buf) => self.ld_int(buf, 0, dtype),
        }
    }

    /// Stores an int32 accumulator as `out` defines, for output channel `c`.
    fn st_quant(
        &mut self,
        buf: Buffer,
        elem: i128,
        out: &QuantOut,
        acc: i32,
        c: usize,
    ) -> Result<(), ExecError> {
        match out {
            QuantOut::I32 => self.st_bytes(buf, elem, &acc.to_le_bytes()),
            QuantOut::Requant(r) => {
                if !(r.multiplier.len() == 1 || c < r.multiplier.len())
                    || !(1..=62).contains(&r.shift)
                {
                    return Err(self.malformed("requantization parameters do not fit the kernel"));
                }
                self.st_bytes(buf, elem, &[r.apply(acc, c) as u8])
            }
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> ExecError {
        ExecError::Malformed {
            kernel: self.kernel,
            reason: reason.into(),
        }
    }
}

/// Converts one little-endian element of `from` (`src`, `from.size()` bytes) into `to`
/// (`dst`, `to.size()` bytes) with the semantics of [`Kernel::Convert`].
pub fn convert_element(from: DType, to: DType, src: &[u8], dst: &mut [u8]) {
    enum V {
        F(f32),
        I(i64),
    }
    if from == to && from != DType::Bool {
        dst.copy_from_slice(src);
        return;
    }
    let v = match from {
        DType::F32 => V::F(f32::from_le_bytes(src[..4].try_into().unwrap())),
        DType::I32 => V::I(i32::from_le_bytes(src[..4].try_into().unwrap()) as i64),
        DType::I64 => V::I(i64::from_le_bytes(src[..8].try_into().unwrap())),
        DType::U8 => V::I(src[0] as i64),
        DType::I8 => V::I(src[0] as i8 as i64),
        DType::Bool => V::I((src[0] != 0) as i64),
    };
    match (to, v) {
        (DType::F32, V::F(x)) => dst.copy_from_slice(&x.to_le_bytes()),
        (DType::F32, V::I(i)) => dst.copy_from_slice(&(i as f32).to_le_bytes()),
        (DType::I32, V::F(x)) => dst.copy_from_slice(&(x as i32).to_le_bytes()),
        (DType::I32, V::I(i)) => dst.copy_from_slice(&(i as i32).to_le_bytes()),
        (DType::I64, V::F(x)) => dst.copy_from_slice(&(x as i64).to_le_bytes()),
        (DType::I64, V::I(i)) => dst.copy_from_slice(&i.to_le_bytes()),
        (DType::U8, V::F(x)) => dst[0] = x as u8,
        (DType::U8, V::I(i)) => dst[0] = i as u8,
        (DType::I8, V::F(x)) => dst[0] = x as i8 as u8,
        (DType::I8, V::I(i)) => dst[0] = i as i8 as u8,
        (DType::Bool, V::F(x)) => dst[0] = (x != 0.0) as u8,
        (DType::Bool, V::I(i)) => dst[0] = (i != 0) as u8,
    }
}

/// `a op b` on two little-endian elements of `dtype` with the semantics of
/// [`Kernel::Compare`].
pub fn compare_elements(op: CmpOp, dtype: DType, a: &[u8], b: &[u8]) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match dtype {
        DType::F32 => {
            let x = f32::from_le_bytes(a[..4].try_into().unwrap());
            let y = f32::from_le_bytes(b[..4].try_into().unwrap());
            x.partial_cmp(&y)
        }
        DType::I32 => {
            let x = i32::from_le_bytes(a[..4].try_into().unwrap());
            Some(x.cmp(&i32::from_le_bytes(b[..4].try_into().unwrap())))
        }
        DType::I64 => {
            let x = i64::from_le_bytes(a[..8].try_into().unwrap());
            Some(x.cmp(&i64::from_le_bytes(b[..8].try_into().unwrap())))
        }
        DType::U8 => Some(a[0].cmp(&b[0])),
        DType::I8 => Some((a[0] as i8).cmp(&(b[0] as i8))),
        DType::Bool => Some((a[0] != 0).cmp(&(b[0] != 0))),
    };
    match (op, ord) {
        (_, None) => false,
        (CmpOp::Equal, Some(o)) => o == Ordering::Equal,
        (CmpOp::Less, Some(o)) => o == Ordering::Less,
        (CmpOp::LessOrEqual, Some(o)) => o != Ordering::Greater,
        (CmpOp::Greater, Some(o)) => o == Ordering::Greater,
        (CmpOp::GreaterOrEqual, Some(o)) => o != Ordering::Less,
    }
}

/// `a op b` on bool bytes with the semantics of [`Kernel::Logic`] (`b` is ignored for
/// `Not`).
pub fn logic_bytes(op: LogicOp, a: u8, b: u8) -> bool {
    let (p, q) = (a != 0, b != 0);
    match op {
        LogicOp::And => p && q,
        LogicOp::Or => p || q,
        LogicOp::Xor => p != q,
        LogicOp::Not => !p,
    }
}

/// `a op b` (`op a` for one-operand ops) on two's complement integers with the wrapping
/// semantics of [`IntOp`]; `I32` results are the low 32 bits of the `i64` result.
pub fn int_op(op: IntOp, a: i64, b: i64) -> i64 {
    match op {
        IntOp::Add => a.wrapping_add(b),
        IntOp::Sub => a.wrapping_sub(b),
        IntOp::Mul => a.wrapping_mul(b),
        IntOp::Max => a.max(b),
        IntOp::Min => a.min(b),
        IntOp::Neg => a.wrapping_neg(),
        IntOp::Abs => a.wrapping_abs(),
    }
}

/// A little-endian signed integer of 1, 4 or 8 bytes.
fn int_from(bytes: &[u8]) -> i64 {
    if bytes.len() == 1 {
        bytes[0] as i8 as i64
    } else if bytes.len() == 4 {
        i32::from_le_bytes(bytes.try_into().unwrap()) as i64
    } else {
        i64::from_le_bytes(bytes[..8].try_into().unwrap())
    }
}

/// `v` as `size` (4 or 8) little-endian bytes, keeping the low bits.
fn int_to(v: i64, size: u64) -> Vec<u8> {
    if size == 4 {
        (v as i32).to_le_bytes().to_vec()
    } else {
        v.to_le_bytes().to_vec()
    }
}

/// The integer value of one element of an integer `dtype` (`U8` unsigned).
fn int_of(dtype: DType, bytes: &[u8]) -> i64 {
    match dtype {
        DType::U8 | DType::Bool => bytes[0] as i64,
        DType::I8 => bytes[0] as i8 as i64,
        _ => int_from(bytes),
    }
}

/// Element index of multi-index `idx` in `v`.
fn at(v: &View, idx: &[u64]) -> i128 {
    v.offset as i128
        + idx
            .iter()
            .zip(&v.strides)
            .map(|(&i, &s)| i as i128 * s as i128)
            .sum::<i128>()
}

/// Applies a fused activation exactly as [`Activation`] documents.
pub fn activate(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Clip { lo, hi } => clip(x, lo, hi),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Gelu { tanh: false } => {
            0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
        }
        Activation::Gelu { tanh: true } => {
            let c = (2.0f64 / std::f64::consts::PI).sqrt() as f32;
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::HardSwish => x * clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0),
    }
}

fn clip(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_nan() { x } else { x.max(lo).min(hi) }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Evaluates one elementwise expression on the input values `ins`.
pub fn eval_expr(expr: &[ExprNode], ins: &[f32]) -> Option<f32> {
    let mut vals: Vec<f32> = Vec::with_capacity(expr.len());
    for node in expr {
        let get = |i: u32| vals.get(i as usize).copied();
        let v = match *node {
            ExprNode::Input(i) => *ins.get(i as usize)?,
            ExprNode::Const(c) => c,
            ExprNode::Unary(op, a) => {
                let a = get(a)?;
                match op {
                    UnaryOp::Neg => -a,
                    UnaryOp::Abs => a.abs(),
                    UnaryOp::Relu => a.max(0.0),
                    UnaryOp::Exp => a.exp(),
                    UnaryOp::Tanh => a.tanh(),
                    UnaryOp::Sigmoid => sigmoid(a),
                    UnaryOp::Sqrt => a.sqrt(),
                    UnaryOp::Reciprocal => 1.0 / a,
                    UnaryOp::Erf => libm::erff(a),
                    UnaryOp::Log => libm::logf(a),
                    UnaryOp::Round => a.round_ties_even(),
                }
            }
            ExprNode::Binary(op, a, b) => {
                let (a, b) = (get(a)?, get(b)?);
                match op {
                    BinaryOp::Add => a + b,
                    BinaryOp::Sub => a - b,
                    BinaryOp::Mul => a * b,
                    BinaryOp::Div => a / b,
                    BinaryOp::Max => a.max(b),
                    BinaryOp::Min => a.min(b),
                    BinaryOp::Pow => a.powf(b),
                }
            }
            ExprNode::Clip { x, lo, hi } => clip(get(x)?, lo, hi),
        };
        vals.push(v);
    }
    vals.last().copied()
}

/// Calls `f` with every multi-index of `shape` in row-major order.
fn for_each_index(
    shape: &[u64],
    mut f: impl FnMut(&[u64]) -> Result<(), ExecError>,
) -> Result<(), ExecError> {
    if shape.contains(&0) {
        return Ok(());
    }
    let mut idx = vec![0u64; shape.len()];
    loop {
        f(&idx)?;
        let mut d = shape.len();
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

fn check_rank(mem: &Mem, v: &View, rank: usize, what: &str) -> Result<(), ExecError> {
    if v.strides.len() != rank {
        return Err(mem.malformed(format!(
            "{what} view has {} strides, expected {rank}",
            v.strides.len()
        )));
    }
    Ok(())
}

fn run_kernel(mem: &mut Mem, k: &Kernel) -> Result<(), ExecError> {
    match k {
        Kernel::Gemm {
            batch,
            m,
            n,
            k,
            a,
            b,
            alpha,
            bias,
            residual,
            act,
            c,
        } => {
            check_rank(mem, a, 3, "a")?;
            check_rank(mem, b, 3, "b")?;
            check_rank(mem, c, 3, "c")?;
            if let Some(bias) = bias {
                check_rank(mem, bias, 3, "bias")?;
            }
            if let Some(r) = residual {
                check_rank(mem, r, 3, "residual")?;
            }
            for bi in 0..*batch as u64 {
                for i in 0..*m as u64 {
                    for j in 0..*n as u64 {
                        let mut acc = 0.0f32;
                        for kk in 0..*k as u64 {
                            acc += mem.ld(a.buf, at(a, &[bi, i, kk]))?
                                * mem.ld(b.buf, at(b, &[bi, kk, j]))?;
                        }
                        let mut v = alpha * acc;
                        if let Some(bias) = bias {
                            v += mem.ld(bias.buf, at(bias, &[bi, i, j]))?;
                        }
                        if let Some(r) = residual {
                            v += mem.ld(r.buf, at(r, &[bi, i, j]))?;
                        }
                        mem.st(c.buf, at(c, &[bi, i, j]), activate(*act, v))?;
                    }
                }
            }
        }
        Kernel::Conv {
            c_in,
            c_out,
            groups,
            spatial: s,
            window: w,
            input,
            weight,
            bias,
            residual,
            act,
            output,
            ..
        } => {
            let g = *groups;
            if g == 0 || c_in % g != 0 || c_out % g != 0 {
                return Err(mem.malformed("groups must divide c_in and c_out"));
            }
            let (cpg, opg) = ((c_in / g) as i128, (c_out / g) as i128);
            let (kh, kw) = (w.kh as i128, w.kw as i128);
            let (ih, iw, oh, ow) = (
                s.in_h as i128,
                s.in_w as i128,
                s.out_h as i128,
                s.out_w as i128,
            );
            for n in 0..s.n as i128 {
                for co in 0..*c_out as i128 {
                    let grp = co / opg;
                    let bv = match bias {
                        Some(bc) => mem.ld(Buffer::Const(*bc), co)?,
                        None => 0.0,
                    };
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = 0.0f32;
                            for ci in 0..cpg {
                                let cin = grp * cpg + ci;
                                for ky in 0..kh {
                                    let iy = oy * w.stride_h as i128 - w.pad_top as i128
                                        + ky * w.dilation_h as i128;
                                    if iy < 0 || iy >= ih {
                                        continue;
                                    }
                                    for kx in 0..kw {
                                        let ix = ox * w.stride_w as i128 - w.pad_left as i128
                                            + kx * w.dilation_w as i128;
                                        if ix < 0 || ix >= iw {
                                            continue;
                                        }
                                        let x = mem.ld(
                                            *input,
                                            ((n * *c_in as i128 + cin) * ih + iy) * iw + ix,
                                        )?;
                                        let wv = mem.ld(
                                            Buffer::Const(*weight),
                                            ((co * cpg + ci) * kh + ky) * kw + kx,
                                        )?;
                                        acc += x * wv;
                                    }
                                }
                            }
                            let o = ((n * *c_out as i128 + co) * oh + oy) * ow + ox;
                            let mut v = acc + bv;
                            if let Some(r) = residual {
                                v += mem.ld(*r, o)?;
                            }
                            mem.st(*output, o, activate(*act, v))?;
                        }
                    }
                }
            }
        }
        Kernel::QGemm {
            m,
            n,
            k,
            a,
            a_dtype,
            a_zero,
            b,
            bias,
            out,
            c,
        } => {
            check_rank(mem, a, 2, "a")?;
            check_rank(mem, c, 2, "c")?;
            let za = mem.zero_point(*a_zero, *a_dtype)?;
            for i in 0..*m as u64 {
                for j in 0..*n as u64 {
                    let mut acc: i32 = match bias {
                        Some(bc) => mem.ld_int(Buffer::Const(*bc), j as i128, DType::I32)? as i32,
                        None => 0,
                    };
                    for kk in 0..*k as u64 {
                        let x = mem.ld_int(a.buf, at(a, &[i, kk]), *a_dtype)? - za;
                        let w =
                            mem.ld_int(Buffer::Const(*b), (kk * *n as u64 + j) as i128, DType::I8)?;
                        acc = acc.wrapping_add((x * w) as i32);
                    }
                    mem.st_quant(c.buf, at(c, &[i, j]), out, acc, j as usize)?;
                }
            }
        }
        Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial: s,
            window: w,
            input,
            in_dtype,
            in_zero,
            weight,
            bias,
            out,
            output,
            ..
        } => {
            let g = *groups;
            if g == 0 || c_in % g != 0 || c_out % g != 0 {
                return Err(mem.malformed("groups must divide c_in and c_out"));
            }
            let zx = mem.zero_point(*in_zero, *in_dtype)?;
            let (cpg, opg) = ((c_in / g) as i128, (c_out / g) as i128);
            let (kh, kw) = (w.kh as i128, w.kw as i128);
            let (ih, iw, oh, ow) = (
                s.in_h as i128,
                s.in_w as i128,
                s.out_h as i128,
                s.out_w as i128,
            );
            for n in 0..s.n as i128 {
                for co in 0..*c_out as i128 {
                    let grp = co / opg;
                    let bv = match bias {
                        Some(bc) => mem.ld_int(Buffer::Const(*bc), co, DType::I32)? as i32,
                        None => 0,
                    };
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = bv;
                            for ci in 0..cpg {
                                let cin = grp * cpg + ci;
                                for ky in 0..kh {
                                    let iy = oy * w.stride_h as i128 - w.pad_top as i128
                                        + ky * w.dilation_h as i128;
                                    if iy < 0 || iy >= ih {
                                        continue;
                                    }
                                    for kx in 0..kw {
                                        let ix = ox * w.stride_w as i128 - w.pad_left as i128
                                            + kx * w.dilation_w as i128;
                                        if ix < 0 || ix >= iw {
                                            continue;
                                        }
                                        let x = mem.ld_int(
                                            *input,
                                            ((n * *c_in as i128 + cin) * ih + iy) * iw + ix,
                                            *in_dtype,
                                        )? - zx;
                                        let wv = mem.ld_int(
                                            Buffer::Const(*weight),
                                            ((co * cpg + ci) * kh + ky) * kw + kx,
                                            DType::I8,
                                        )?;
                                        acc = acc.wrapping_add((x * wv) as i32);
                                    }
                                }
                            }
                            let o = ((n * *c_out as i128 + co) * oh + oy) * ow + ox;
                            mem.st_quant(*output, o, out, acc, co as usize)?;
                        }
                    }
                }
            }
        }
        Kernel::Pool {
            kind,
            dtype,
            channels,
            spatial: s,
            window: w,
            input,
            output,
        } => {
            let (ih, iw, oh, ow) = (
                s.in_h as i128,
                s.in_w as i128,
                s.out_h as i128,
                s.out_w as i128,
            );
            if *dtype != DType::F32 {
                let min = match dtype {
                    DType::U8 => 0,
                    DType::I8 => -128,
                    _ => return Err(mem.malformed("pooling over an unsupported dtype")),
                };
                if *kind != PoolKind::Max {
                    return Err(mem.malformed("integer pooling is Max only"));
                }
                for c in 0..*channels as i128 {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut max = min;
                            for ky in 0..w.kh as i128 {
                                let iy = oy * w.stride_h as i128 - w.pad_top as i128
                                    + ky * w.dilation_h as i128;
                                for kx in 0..w.kw as i128 {
                                    let ix = ox * w.stride_w as i128 - w.pad_left as i128
                                        + kx * w.dilation_w as i128;
                                    if iy < 0 || iy >= ih || ix < 0 || ix >= iw {
                                        continue;
                                    }
                                    max = max.max(mem.ld_int(
                                        *input,
                                        (c * ih + iy) * iw + ix,
                                        *dtype,
                                    )?);
                                }
                            }
                            mem.st_bytes(*output, (c * oh + oy) * ow + ox, &[max as u8])?;
                        }
                    }
                }
                return Ok(());
            }
            for c in 0..*channels as i128 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut max = f32::NEG_INFINITY;
                        let mut sum = 0.0f32;
                        let mut count = 0u32;
                        for ky in 0..w.kh as i128 {
                            let iy = oy * w.stride_h as i128 - w.pad_top as i128
                                + ky * w.dilation_h as i128;
                            for kx in 0..w.kw as i128 {
                                let ix = ox * w.stride_w as i128 - w.pad_left as i128
                                    + kx * w.dilation_w as i128;
                                if iy < 0 || iy >= ih || ix < 0 || ix >= iw {
                                    continue;
                                }
                                let x = mem.ld(*input, (c * ih + iy) * iw + ix)?;
                                max = max.max(x);
                                sum += x;
                                count += 1;
                            }
                        }
                        let v = match kind {
                            PoolKind::Max => max,
                            PoolKind::Avg {
                                count_include_pad: true,
                            } => sum / (w.kh * w.kw).max(1) as f32,
                            PoolKind::Avg {
                                count_include_pad: false,
                            } => sum / count.max(1) as f32,
                        };
                        mem.st(*output, (c * oh + oy) * ow + ox, v)?;
                    }
                }
            }
        }
        Kernel::Elementwise {
            shape,
            inputs,
            expr,
            output,
        } => {
            for (i, v) in inputs.iter().enumerate() {
                check_rank(mem, v, shape.len(), &format!("input {i}"))?;
            }
            check_rank(mem, output, shape.len(), "output")?;
            if expr.is_empty() {
                return Err(mem.malformed("empty expression"));
            }
            // Evaluate everything before storing anything, so that in-place kernels read
            // their inputs unmodified whatever the iteration order.
            let mut results = Vec::new();
            let mut ins = vec![0.0f32; inputs.len()];
            for_each_index(shape, |idx| {
                for (slot, v) in ins.iter_mut().zip(inputs) {
                    *slot = mem.ld(v.buf, at(v, idx))?;
                }
                let r =
                    eval_expr(expr, &ins).ok_or_else(|| mem.malformed("bad expression operand"))?;
                results.push((at(output, idx), r));
                Ok(())
            })?;
            for (o, r) in results {
                mem.st(output.buf, o, r)?;
            }
        }
        Kernel::Softmax {
            outer,
            len,
            inner,
            input,
            output,
            scale,
            mask,
        } => {
            let (len, inner) = (*len as i128, *inner as i128);
            for o in 0..*outer as i128 {
                // The mask's element offset of row `o`, column `i`, position `l`.
                let mask_at = |l: i128, i: i128| -> Option<i128> {
                    let m = mask.as_ref()?;
                    let mut rest = o;
                    let mut off = m.view.offset as i128;
                    let k = m.outer.len();
                    for d in (0..k).rev() {
                        let n = m.outer[d] as i128;
                        off += (rest % n) * m.view.strides[d] as i128;
                        rest /= n;
                    }
                    Some(off + l * m.view.strides[k] as i128 + i * m.view.strides[k + 1] as i128)
                };
                for i in 0..inner {
                    let idx = |l: i128| (o * len + l) * inner + i;
                    let mut t = Vec::with_capacity(len as usize);
                    for l in 0..len {
                        let mut v = mem.ld(*input, idx(l))?;
                        if *scale != 1.0 {
                            v *= *scale;
                        }
                        if let (Some(m), Some(at)) = (mask, mask_at(l, i)) {
                            v += mem.ld(m.view.buf, at)?;
                        }
                        t.push(v);
                    }
                    let m = t.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let mut e = Vec::with_capacity(len as usize);
                    let mut sum = 0.0f32;
                    for v in t {
                        let v = (v - m).exp();
                        sum += v;
                        e.push(v);
                    }
                    for (l, v) in e.into_iter().enumerate() {
                        mem.st(*output, idx(l as i128), v / sum)?;
                    }
                }
            }
        }
        Kernel::Reduce {
            op,
            outer,
            len,
            inner,
            input,
            output,
        } => {
            let (len, inner) = (*len as i128, *inner as i128);
            for o in 0..*outer as i128 {
                for i in 0..inner {
                    let mut acc = match op {
                        ReduceOp::Sum | ReduceOp::Mean => 0.0,
                        ReduceOp::Max => f32::NEG_INFINITY,
                        ReduceOp::Min => f32::INFINITY,
                        ReduceOp::Prod => 1.0,
                    };
                    for l in 0..len {
                        let x = mem.ld(*input, (o * len + l) * inner + i)?;
                        acc = match op {
                            ReduceOp::Sum | ReduceOp::Mean => acc + x,
                            // NaN propagates (`f32::max`/`min` would drop it).
                            _ if acc.is_nan() || x.is_nan() => f32::NAN,
                            ReduceOp::Max => acc.max(x),
                            ReduceOp::Min => acc.min(x),
                            ReduceOp::Prod => acc * x,
                        };
                    }
                    if *op == ReduceOp::Mean {
                        acc /= len as f32;
                    }
                    mem.st(*output, o * inner + i, acc)?;
                }
            }
        }
        Kernel::LayerNorm {
            outer,
            len,
            epsilon,
            input,
            scale,
            bias,
            output,
            mean,
            inv_std,
        } => {
            for (v, what) in [(scale, "scale"), (bias, "bias")] {
                if let Some(v) = v {
                    check_rank(mem, v, 1, what)?;
                }
            }
            let len = *len as i128;
            for o in 0..*outer as i128 {
                let row = (0..len)
                    .map(|l| mem.ld(*input, o * len + l))
                    .collect::<Result<Vec<f32>, _>>()?;
                let m = row.iter().sum::<f32>() / len as f32;
                let var = row.iter().map(|&x| (x - m) * (x - m)).sum::<f32>() / len as f32;
                let inv = 1.0 / (var + *epsilon).sqrt();
                for (l, &x) in row.iter().enumerate() {
                    let idx = [l as u64];
                    let mut y = (x - m) * inv;
                    if let Some(s) = scale {
                        y *= mem.ld(s.buf, at(s, &idx))?;
                    }
                    if let Some(b) = bias {
                        y += mem.ld(b.buf, at(b, &idx))?;
                    }
                    mem.st(*output, o * len + l as i128, y)?;
                }
                if let Some(mb) = mean {
                    mem.st(*mb, o, m)?;
                }
                if let Some(ib) = inv_std {
                    mem.st(*ib, o, inv)?;
                }
            }
        }
        Kernel::Copy { bytes, src, dst } => {
            let (s, sbase) = mem.bytes(*src)?;
            let sat = mem.range(*src, sbase, 0, *bytes, s.len())?;
            let data = s[sat..sat + *bytes as usize].to_vec();
            let kernel = mem.kernel;
            let (d, dbase) = mem.bytes_mut(*dst)?;
            let end = dbase as u128 + *bytes as u128;
            if end > d.len() as u128 {
                return Err(ExecError::OutOfRange {
                    kernel,
                    buf: *dst,
                    byte_offset: dbase as i128,
                    bytes: *bytes,
                });
            }
            d[dbase as usize..end as usize].copy_from_slice(&data);
        }
        Kernel::Gather {
            outer,
            axis_len,
            inner,
            count,
            elem_bytes,
            data,
            indices,
            index_bytes,
            output,
            elementwise,
        } => {
            if !matches!(index_bytes, 1 | 4 | 8) {
                return Err(mem.malformed(format!("index_bytes {index_bytes} is not 1, 4 or 8")));
            }
            let ib = *index_bytes as u64;
            // Every index, checked before anything is written.
            let n_idx = if *elementwise {
                outer * count * inner
            } else {
                *count
            };
            let mut idx = Vec::with_capacity(n_idx as usize);
            for i in 0..n_idx {
                let (b, base) = mem.bytes(*indices)?;
                let at = mem.range(*indices, base, i as i128, ib, b.len())?;
                let v = int_from(&b[at..at + ib as usize]);
                let a = *axis_len as i128;
                let adj = if v < 0 { v as i128 + a } else { v as i128 };
                if adj < 0 || adj >= a {
                    return Err(ExecError::IndexOutOfRange {
                        kernel: mem.kernel,
                        position: i,
                        index: v,
                        axis_len: *axis_len,
                    });
                }
                idx.push(adj as u64);
            }
            if *elementwise {
                let eb = *elem_bytes as u64;
                for (p, &j) in idx.iter().enumerate() {
                    let p = p as u64;
                    let (o, k) = (p / (count * inner), p % inner);
                    let src = ((o * axis_len + j) * inner + k) * eb;
                    let (s, sbase) = mem.bytes(*data)?;
                    let sat = mem.range(*data, sbase, src as i128, 1, s.len())?;
                    mem.range(*data, sbase, (src + eb) as i128 - 1, 1, s.len())?;
                    let bytes = s[sat..sat + eb as usize].to_vec();
                    let kernel = mem.kernel;
                    let (d, dbase) = mem.bytes_mut(*output)?;
                    let at = dbase as i128 + (p * eb) as i128;
                    if at < 0 || at + eb as i128 > d.len() as i128 {
                        return Err(ExecError::OutOfRange {
                            kernel,
                            buf: *output,
                            byte_offset: at,
                            bytes: eb,
                        });
                    }
                    d[at as usize..at as usize + eb as usize].copy_from_slice(&bytes);
                }
                return Ok(());
            }
            let row = *inner * *elem_bytes as u64;
            if row == 0 {
                return Ok(());
            }
            for o in 0..*outer {
                for (i, &j) in idx.iter().enumerate() {
                    let (s, sbase) = mem.bytes(*data)?;
                    let src_row = (o as i128 * *axis_len as i128 + j as i128) * row as i128;
                    let sat = mem.range(*data, sbase, src_row, 1, s.len())?;
                    mem.range(*data, sbase, src_row + row as i128 - 1, 1, s.len())?;
                    let bytes = s[sat..sat + row as usize].to_vec();
                    let dst_row = (o as i128 * *count as i128 + i as i128) * row as i128;
                    let kernel = mem.kernel;
                    let (d, dbase) = mem.bytes_mut(*output)?;
                    let at = dbase as i128 + dst_row;
                    if at < 0 || at + row as i128 > d.len() as i128 {
                        return Err(ExecError::OutOfRange {
                            kernel,
                            buf: *output,
                            byte_offset: at,
                            bytes: row,
                        });
                    }
                    d[at as usize..at as usize + row as usize].copy_from_slice(&bytes);
                }
            }
        }
        Kernel::Compare {
            shape,
            op,
            dtype,
            a,
            b,
            output,
        } => {
            check_rank(mem, a, shape.len(), "a")?;
            check_rank(mem, b, shape.len(), "b")?;
            check_rank(mem, output, shape.len(), "output")?;
            let size = dtype.size() as u64;
            let mut results = Vec::new();
            for_each_index(shape, |idx| {
                let x = mem.ld_bytes(a.buf, at(a, idx), size)?;
                let y = mem.ld_bytes(b.buf, at(b, idx), size)?;
                results.push((at(output, idx), compare_elements(*op, *dtype, x, y)));
                Ok(())
            })?;
            for (o, r) in results {
                mem.st_bytes(output.buf, o, &[r as u8])?;
            }
        }
        Kernel::Logic {
            shape,
            op,
            a,
            b,
            output,
        } => {
            check_rank(mem, a, shape.len(), "a")?;
            check_rank(mem, output, shape.len(), "output")?;
            match (op, b) {
                (LogicOp::Not, None) => {}
                (LogicOp::Not, Some(_)) => return Err(mem.malformed("Not with a second operand")),
                (_, None) => return Err(mem.malformed(format!("{op:?} without a second operand"))),
                (_, Some(b)) => check_rank(mem, b, shape.len(), "b")?,
            }
            let mut results = Vec::new();
            for_each_index(shape, |idx| {
                let x = mem.ld_bytes(a.buf, at(a, idx), 1)?[0];
                let y = match b {
                    Some(b) => mem.ld_bytes(b.buf, at(b, idx), 1)?[0],
                    None => 0,
                };
                results.push((at(output, idx), logic_bytes(*op, x, y)));
                Ok(())
            })?;
            for (o, r) in results {
                mem.st_bytes(output.buf, o, &[r as u8])?;
            }
        }
        Kernel::Select {
            shape,
            elem_bytes,
            cond,
            a,
            b,
            output,
        } => {
            if !matches!(elem_bytes, 1 | 4 | 8) {
                return Err(mem.malformed(format!("elem_bytes {elem_bytes} is not 1, 4 or 8")));
            }
            for (v, what) in [(cond, "cond"), (a, "a"), (b, "b"), (output, "output")] {
                check_rank(mem, v, shape.len(), what)?;
            }
            let size = *elem_bytes as u64;
            let mut results = Vec::new();
            for_each_index(shape, |idx| {
                let c = mem.ld_bytes(cond.buf, at(cond, idx), 1)?[0] != 0;
                // Both operands are read, so an out-of-range view is an error whatever
                // the condition.
                let x = mem.ld_bytes(a.buf, at(a, idx), size)?;
                let y = mem.ld_bytes(b.buf, at(b, idx), size)?;
                results.push((at(output, idx), if c { x.to_vec() } else { y.to_vec() }));
                Ok(())
            })?;
            for (o, r) in results {
                mem.st_bytes(output.buf, o, &r)?;
            }
        }
        Kernel::QBinary {
            shape,
            a,
            a_dtype,
            b,
            b_dtype,
            q,
            output,
        } => {
            q.check(*a_dtype, *b_dtype)
                .map_err(|e| mem.malformed(format!("quantized binary: {e}")))?;
            check_rank(mem, a, shape.len(), "a")?;
            check_rank(mem, b, shape.len(), "b")?;
            check_rank(mem, output, shape.len(), "output")?;
            let mut results = Vec::new();
            for_each_index(shape, |idx| {
                let x = mem.ld_int(a.buf, at(a, idx), *a_dtype)? as i32;
                let y = mem.ld_int(b.buf, at(b, idx), *b_dtype)? as i32;
                results.push((at(output, idx), q.apply(x, y) as u8));
                Ok(())
            })?;
            for (o, r) in results {
                mem.st_bytes(output.buf, o, &[r])?;
            }
        }
        Kernel::IntElementwise {
            shape,
            dtype,
            op,
            a,
            b,
            output,
        } => {
            if !matches!(dtype, DType::I32 | DType::I64) {
                return Err(mem.malformed(format!("int elementwise of {}", dtype.name())));
            }
            check_rank(mem, a, shape.len(), "a")?;
            check_rank(mem, output, shape.len(), "output")?;
            match (op.is_binary(), b) {
                (true, Some(b)) => check_rank(mem, b, shape.len(), "b")?,
                (false, None) => {}
                _ => return Err(mem.malformed(format!("{op:?} with the wrong operand count"))),
            }
            let size = dtype.size() as u64;
            let mut results = Vec::new();
            for_each_index(shape, |idx| {
                let x = int_from(mem.ld_bytes(a.buf, at(a, idx), size)?);
                let y = match b {
                    Some(b) => int_from(mem.ld_bytes(b.buf, at(b, idx), size)?),
                    None => 0,
                };
                results.push((at(output, idx), int_op(*op, x, y)));
                Ok(())
            })?;
            for (o, r) in results {
                mem.st_bytes(output.buf, o, &int_to(r, size))?;
            }
        }
        Kernel::CumSum {
            outer,
            len,
            inner,
            dtype,
            exclusive,
            reverse,
            input,
            output,
        } => {
            let size = dtype.size() as u64;
            let (len, inner) = (*len as i128, *inner as i128);
            for o in 0..*outer as i128 {
                for i in 0..inner {
                    let (mut fs, mut is) = (0f32, 0i64);
                    for step in 0..len {
                        let k = if *reverse { len - 1 - step } else { step };
                        let e = (o * len + k) * inner + i;
                        let x = mem.ld_bytes(*input, e, size)?;
                        let r = match dtype {
                            DType::F32 => {
                                let next = fs + f32::from_le_bytes(x.try_into().unwrap());
                                let r = if *exclusive { fs } else { next };
                                fs = next;
                                r.to_le_bytes().to_vec()
                            }
                            DType::I32 | DType::I64 => {
                                let next = is.wrapping_add(int_from(x));
                                let r = if *exclusive { is } else { next };
                                is = next;
                                int_to(r, size)
                            }
                            other => {
                                return Err(mem.malformed(format!("cumsum of {}", other.name())));
                            }
                        };
                        mem.st_bytes(*output, e, &r)?;
                    }
                }
            }
        }
        Kernel::Convert {
            count,
            from,
            to,
            input,
            output,
        } => {
            let (fs, ts) = (from.size() as u64, to.size() as u64);
            let big = || mem.malformed("convert sizes overflow");
            let ib = count.checked_mul(fs).ok_or_else(big)?;
            let ob = count.checked_mul(ts).ok_or_else(big)?;
            let (s, sbase) = mem.bytes(*input)?;
            let sat = mem.range(*input, sbase, 0, ib, s.len())?;
            let mut out = vec![0u8; ob as usize];
            for (src, dst) in s[sat..sat + ib as usize]
                .chunks_exact(fs as usize)
                .zip(out.chunks_exact_mut(ts as usize))
            {
                convert_element(*from, *to, src, dst);
            }
            let kernel = mem.kernel;
            let (d, dbase) = mem.bytes_mut(*output)?;
            let end = dbase as u128 + ob as u128;
            if end > d.len() as u128 {
                return Err(ExecError::OutOfRange {
                    kernel,
                    buf: *output,
                    byte_offset: dbase as i128,
                    bytes: ob,
                });
            }
            d[dbase as usize..end as usize].copy_from_slice(&out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConstId, IoTensor, Requant, Spatial, Window};

    fn f32s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    fn io(name: &str, shape: &[u64]) -> IoTensor {
        IoTensor {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
        }
    }
    fn prog(
        inputs: Vec<IoTensor>,
        outputs: Vec<IoTensor>,
        consts: Vec<Const>,
        kernels: Vec<Kernel>,
    ) -> Program {
        Program {
            name: "t".into(),
            inputs,
            outputs,
            arena_size: 256,
            arena_align: 64,
            consts,
            kernels,
        }
    }
    fn view(buf: Buffer, offset: u64, strides: &[i64]) -> View {
        View {
            buf,
            offset,
            strides: strides.to_vec(),
        }
    }
    fn run1(p: &Program, ins: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ExecError> {
        let ins: Vec<Vec<u8>> = ins.iter().map(|v| bytes(v)).collect();
        let in_refs: Vec<&[u8]> = ins.iter().map(|v| &v[..]).collect();
        let mut outs: Vec<Vec<u8>> = p
            .outputs
            .iter()
            .map(|t| vec![0u8; t.byte_size() as usize])
            .collect();
        let mut out_refs: Vec<&mut [u8]> = outs.iter_mut().map(|v| &mut v[..]).collect();
        let mut arena = vec![0u8; p.arena_size as usize];
        run(p, &in_refs, &mut out_refs, &mut arena)?;
        Ok(outs.iter().map(|o| f32s(o)).collect())
    }

    #[test]
    fn gemm_transposed_b_with_bias_and_relu() {
        // A 2x3, B given as B^T (2x3 row-major, so strides [.., 1, 3]), bias per column.
        let p = prog(
            vec![io("a", &[2, 3]), io("bt", &[2, 3])],
            vec![io("c", &[2, 2])],
            vec![Const {
                name: "bias".into(),
                dtype: DType::F32,
                shape: vec![2],
                data: bytes(&[1.0, -100.0]),
            }],
            vec![Kernel::Gemm {
                batch: 1,
                m: 2,
                n: 2,
                k: 3,
                a: view(Buffer::Input(0), 0, &[0, 3, 1]),
                b: view(Buffer::Input(1), 0, &[0, 1, 3]),
                alpha: 2.0,
                bias: Some(view(Buffer::Const(ConstId(0)), 0, &[0, 0, 1])),
                residual: None,
                act: Activation::Relu,
                c: view(Buffer::Output(0), 0, &[0, 2, 1]),
            }],
        );
        let out = run1(
            &p,
            &[vec![1., 2., 3., 4., 5., 6.], vec![1., 0., 1., 0., 1., 0.]],
        )
        .unwrap();
        // A·B = [[4, 2], [10, 5]]; ×2 + bias = [[9, -96], [21, -90]]; relu.
        assert_eq!(out[0], vec![9.0, 0.0, 21.0, 0.0]);
    }

    #[test]
    fn gemm_residual_broadcast_per_row_then_hardswish() {
        // A·B with B = I: the product is A; + residual per row [10, -10]; hardswish.
        let p = prog(
            vec![io("a", &[2, 2]), io("b", &[2, 2]), io("r", &[2])],
            vec![io("c", &[2, 2])],
            vec![],
            vec![Kernel::Gemm {
                batch: 1,
                m: 2,
                n: 2,
                k: 2,
                a: view(Buffer::Input(0), 0, &[0, 2, 1]),
                b: view(Buffer::Input(1), 0, &[0, 2, 1]),
                alpha: 1.0,
                bias: None,
                residual: Some(view(Buffer::Input(2), 0, &[0, 1, 0])),
                act: Activation::HardSwish,
                c: view(Buffer::Output(0), 0, &[0, 2, 1]),
            }],
        );
        let out = run1(
            &p,
            &[
                vec![1., -2., -7., 8.5],
                vec![1., 0., 0., 1.],
                vec![-1., 10.],
            ],
        )
        .unwrap();
        // A + r = [[0, -3], [3, 18.5]]; hardswish: x·clip(x/6 + 1/2, 0, 1).
        assert_eq!(out[0], vec![0.0, 0.0, 3.0, 18.5]);
    }

    #[test]
    fn gelu_activations_match_their_formulas() {
        assert_eq!(activate(Activation::Gelu { tanh: false }, 0.0), 0.0);
        let e = activate(Activation::Gelu { tanh: false }, 1.0);
        assert!((e - 0.841_344_7).abs() < 1e-6, "{e}");
        let t = activate(Activation::Gelu { tanh: true }, 1.0);
        assert!((t - 0.841_191_9).abs() < 1e-6, "{t}");
        assert!(activate(Activation::HardSwish, f32::NAN).is_nan());
    }

    #[test]
    fn requantization_rounds_half_up_and_clamps() {
        let r = Requant {
            dtype: DType::U8,
            multiplier: vec![1 << 30, 3 << 29],
            shift: 31,
            zero_point: 10,
            lo: 10,
            hi: 255,
        };
        // ·0.5: 5 → 2.5 → 3, -5 → -2.5 → -2; then +10 and the clamp at 10 (a folded Relu).
        assert_eq!(r.apply(5, 0), 13);
        assert_eq!(r.apply(-5, 0), 10);
        assert_eq!(r.apply(1000, 0), 255);
        // ·0.75 on channel 1: 7 → 5.25 → 5.
        assert_eq!(r.apply(7, 1), 15);
    }

    #[test]
    fn qbinary_rounds_half_up_and_clamps() {
        use crate::{QBinary, QBinaryOp};
        let add = QBinary {
            op: QBinaryOp::Add {
                ma: 1 << 27,
                mb: 3 << 26,
            },
            a_zero: 128,
            b_zero: -3,
            shift: 28,
            dtype: DType::U8,
            zero_point: 100,
            lo: 100,
            hi: 255,
        };
        // 0.5·(a − 128) + 0.75·(b + 3) + 100: 0.5·3 + 0.75·(−1) = 0.75 → 1;
        // 0.5·1 + 0 = 0.5 → 1 (ties up); −0.5 → 0; below 0 clamps at the Relu's 100.
        assert_eq!(add.apply(131, -4), 101);
        assert_eq!(add.apply(129, -3), 101);
        assert_eq!(add.apply(127, -3), 100);
        assert_eq!(add.apply(0, -128), 100);
        assert_eq!(add.apply(255, 127), 255);
        // The extreme Mul product: 255 · 255 · (2^30 − 1) needs 46 bits.
        let mul = QBinary {
            op: QBinaryOp::Mul { m: (1 << 30) - 1 },
            a_zero: 0,
            b_zero: -128,
            shift: 46,
            dtype: DType::I8,
            zero_point: -1,
            lo: -128,
            hi: 127,
        };
        let acc = 255i64 * 255 * ((1 << 30) - 1);
        assert_eq!(mul.apply(255, 127) as i64, ((acc + (1 << 45)) >> 46) - 1);
        assert_eq!(add.check(DType::U8, DType::I8), Ok(()));
        for bad in [
            QBinary {
                shift: 15,
                ..add.clone()
            },
            QBinary {
                shift: 47,
                ..add.clone()
            },
            QBinary {
                op: QBinaryOp::Mul { m: 1 << 30 },
                ..add.clone()
            },
        ] {
            assert!(bad.check(DType::U8, DType::I8).is_err(), "{bad:?}");
        }

        // Through the executor: b broadcast along the rows (a per-column bias), i8 output.
        let q = QBinary {
            dtype: DType::I8,
            lo: -128,
            hi: 127,
            zero_point: 0,
            ..add.clone()
        };
        let a: Vec<u8> = vec![128, 130, 140, 0, 255, 129];
        let b: Vec<u8> = vec![0xfd, 1];
        let mut p = Program {
            name: "q".into(),
            inputs: vec![
                IoTensor {
                    name: "a".into(),
                    dtype: DType::U8,
                    shape: vec![3, 2],
                },
                IoTensor {
                    name: "b".into(),
                    dtype: DType::I8,
                    shape: vec![2],
                },
            ],
            outputs: vec![IoTensor {
                name: "y".into(),
                dtype: DType::I8,
                shape: vec![3, 2],
            }],
            arena_size: 0,
            arena_align: 64,
            consts: vec![],
            kernels: vec![Kernel::QBinary {
                shape: vec![3, 2],
                a: view(Buffer::Input(0), 0, &[2, 1]),
                a_dtype: DType::U8,
                b: view(Buffer::Input(1), 0, &[0, 1]),
                b_dtype: DType::I8,
                q: q.clone(),
                output: view(Buffer::Output(0), 0, &[2, 1]),
            }],
        };
        let mut out = vec![0u8; 6];
        run(&p, &[&a, &b], &mut [&mut out], &mut []).unwrap();
        let want: Vec<u8> = (0..6)
            .map(|i| q.apply(a[i] as i32, b[i % 2] as i8 as i32) as u8)
            .collect();
        assert_eq!(out, want);
        assert_eq!(out[..2], [0, 4]);
        // A zero point outside its operand's range is malformed, not silently wrapped.
        let Kernel::QBinary { q, .. } = &mut p.kernels[0] else {
            unreachable!()
        };
        q.b_zero = 200;
        let e = run(&p, &[&a, &b], &mut [&mut out], &mut []).unwrap_err();
        assert!(matches!(e, ExecError::Malformed { .. }), "{e:?}");
    }

    /// The 32-bit computation the contract documents (high and low halves of the
    /// multipliers, `H' = H + (L >> 15)`, the rounding shift of `H'`) equals `apply` on
    /// every pair of operand bytes, for random and extreme parameters, with no
    /// intermediate overflowing i32 (checked arithmetic).
    #[test]
    fn qbinary_split_32_bit_form_equals_the_definition() {
        use crate::{QBinary, QBinaryOp};
        fn split(q: &QBinary, a: i32, b: i32) -> i32 {
            let (x, y) = (a - q.a_zero, b - q.b_zero);
            let parts = |m: i32| (m >> 15, m & 0x7fff);
            let (h, l) = match q.op {
                QBinaryOp::Add { ma, mb } => {
                    let ((ah, al), (bh, bl)) = (parts(ma), parts(mb));
                    (
                        (x * ah).checked_add(y * bh).unwrap(),
                        (x * al).checked_add(y * bl).unwrap(),
                    )
                }
                QBinaryOp::Mul { m } => {
                    let (mh, ml) = parts(m);
                    let p = x * y;
                    (p.checked_mul(mh).unwrap(), p.checked_mul(ml).unwrap())
                }
            };
            let h = h.checked_add(l >> 15).unwrap();
            let t = h >> (q.shift - 16);
            let r = (t >> 1) + (t & 1) + q.zero_point;
            r.clamp(q.lo, q.hi)
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |lo: i64, hi: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            lo + (seed % (hi - lo + 1) as u64) as i64
        };
        let (mlo, mhi) = (-(1i64 << 30), (1i64 << 30) - 1);
        for case in 0..40 {
            let (da, db, dy) = [
                (DType::U8, DType::U8, DType::U8),
                (DType::I8, DType::I8, DType::I8),
                (DType::U8, DType::I8, DType::I8),
                (DType::I8, DType::U8, DType::U8),
            ][case % 4];
            let zero = |d: DType, v: i64| match d {
                DType::U8 => v.rem_euclid(256) as i32,
                _ => (v.rem_euclid(256) - 128) as i32,
            };
            let m = |next: &mut dyn FnMut(i64, i64) -> i64| match case % 5 {
                0 => mlo as i32,
                1 => mhi as i32,
                _ => next(mlo, mhi) as i32,
            };
            let op = if case % 3 == 0 {
                QBinaryOp::Mul { m: m(&mut next) }
            } else {
                QBinaryOp::Add {
                    ma: m(&mut next),
                    mb: next(mlo, mhi) as i32,
                }
            };
            let q = QBinary {
                op,
                a_zero: zero(da, if case % 7 == 0 { 0 } else { next(0, 255) }),
                b_zero: zero(db, if case % 7 == 1 { 255 } else { next(0, 255) }),
                shift: [16, 46, 30][case % 3].max(next(16, 46) as u32 * (case as u32 % 2)),
                dtype: dy,
                zero_point: zero(dy, next(0, 255)),
                lo: if dy == DType::U8 { 0 } else { -128 },
                hi: if dy == DType::U8 { 255 } else { 127 },
            };
            q.check(da, db).unwrap();
            let val = |d: DType, v: i32| if d == DType::U8 { v } else { v - 128 };
            for a in 0..256 {
                for b in 0..256 {
                    let (a, b) = (val(da, a), val(db, b));
                    assert_eq!(split(&q, a, b), q.apply(a, b), "{q:?} a={a} b={b}");
                }
            }
        }
    }

    #[test]
    fn qgemm_folds_the_zero_point_and_bias_then_requantizes() {
        // a: u8 [2,3] with zero point 100; b: i8 [3,2]; bias [1, -1]; out = acc / 4 + 128.
        let a: Vec<u8> = vec![100, 101, 102, 110, 90, 100];
        let b: Vec<i8> = vec![1, -1, 2, 3, -128, 127];
        let consts = vec![
            Const {
                name: "b".into(),
                dtype: DType::I8,
                shape: vec![3, 2],
                data: b.iter().map(|&x| x as u8).collect(),
            },
            Const {
                name: "bias".into(),
                dtype: DType::I32,
                shape: vec![2],
                data: [1i32, -1].iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
        ];
        let io = |name: &str, dtype| IoTensor {
            name: name.into(),
            dtype,
            shape: vec![2, 2],
        };
        let mut p = Program {
            name: "q".into(),
            inputs: vec![IoTensor {
                shape: vec![2, 3],
                ..io("a", DType::U8)
            }],
            outputs: vec![io("c", DType::U8)],
            arena_size: 0,
            arena_align: 64,
            consts,
            kernels: vec![Kernel::QGemm {
                m: 2,
                n: 2,
                k: 3,
                a: view(Buffer::Input(0), 0, &[3, 1]),
                a_dtype: DType::U8,
                a_zero: ZeroPoint::Const(100),
                b: ConstId(0),
                bias: Some(ConstId(1)),
                out: QuantOut::Requant(Requant {
                    dtype: DType::U8,
                    multiplier: vec![1 << 29],
                    shift: 31,
                    zero_point: 128,
                    lo: 0,
                    hi: 255,
                }),
                c: view(Buffer::Output(0), 0, &[2, 1]),
            }],
        };
        // Row 0: x − 100 = [0, 1, 2] → acc = [1 + 0 + 2 − 256, −1 + 0 + 3 + 254] = [−253, 256].
        // Row 1: [10, −10, 0] → acc = [1 + 10 − 20, −1 − 10 − 30] = [−9, −41].
        let want_acc = [-253i32, 256, -9, -41];
        let mut out = vec![0u8; 4];
        run(&p, &[&a], &mut [&mut out], &mut []).unwrap();
        let want: Vec<u8> = want_acc
            .iter()
            .map(|&acc| (128 + ((acc as i64 * (1 << 29) + (1 << 30)) >> 31)) as u8)
            .collect();
        assert_eq!(out, want);
        // The raw accumulators.
        let Kernel::QGemm { out: o, .. } = &mut p.kernels[0] else {
            unreachable!()
        };
        *o = QuantOut::I32;
        p.outputs[0].dtype = DType::I32;
        let mut out = vec![0u8; 16];
        run(&p, &[&a], &mut [&mut out], &mut []).unwrap();
        let got: Vec<i32> = out
            .chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, want_acc);
    }

    #[test]
    fn conv_with_padding_matches_hand_computation() {
        let w = Window {
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
        };
        let s = Spatial {
            n: 1,
            in_h: 2,
            in_w: 2,
            out_h: 2,
            out_w: 2,
        };
        let p = prog(
            vec![io("x", &[1, 1, 2, 2])],
            vec![io("y", &[1, 1, 2, 2])],
            vec![Const {
                name: "w".into(),
                dtype: DType::F32,
                shape: vec![1, 1, 3, 3],
                data: bytes(&[1.0; 9]),
            }],
            vec![Kernel::Conv {
                c_in: 1,
                c_out: 1,
                groups: 1,
                spatial: s,
                window: w,
                input: Buffer::Input(0),
                weight: ConstId(0),
                bias: None,
                residual: None,
                act: Activation::None,
                output: Buffer::Output(0),
                scratch: None,
            }],
        );
        let out = run1(&p, &[vec![1., 2., 3., 4.]]).unwrap();
        assert_eq!(out[0], vec![10.0; 4]);
    }

    #[test]
    fn pool_avg_both_counting_modes() {
        let w = Window {
            kh: 2,
            kw: 2,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 0,
            pad_right: 0,
        };
        let s = Spatial {
            n: 1,
            in_h: 1,
            in_w: 1,
            out_h: 1,
            out_w: 1,
        };
        let mk = |count_include_pad| {
            prog(
                vec![io("x", &[1, 1, 1, 1])],
                vec![io("y", &[1, 1, 1, 1])],
                vec![],
                vec![Kernel::Pool {
                    dtype: DType::F32,
                    kind: PoolKind::Avg { count_include_pad },
                    channels: 1,
                    spatial: s,
                    window: w,
                    input: Buffer::Input(0),
                    output: Buffer::Output(0),
                }],
            )
        };
        assert_eq!(run1(&mk(true), &[vec![8.0]]).unwrap()[0], vec![2.0]);
        assert_eq!(run1(&mk(false), &[vec![8.0]]).unwrap()[0], vec![8.0]);
    }

    #[test]
    fn elementwise_broadcast_softmax_reduce_copy_through_arena() {
        let p = prog(
            vec![io("x", &[2, 3]), io("b", &[3])],
            vec![io("s", &[2, 3]), io("r", &[2]), io("c", &[2, 3])],
            vec![],
            vec![
                Kernel::Elementwise {
                    shape: vec![2, 3],
                    inputs: vec![
                        view(Buffer::Input(0), 0, &[3, 1]),
                        view(Buffer::Input(1), 0, &[0, 1]),
                    ],
                    expr: vec![
                        ExprNode::Input(0),
                        ExprNode::Input(1),
                        ExprNode::Binary(BinaryOp::Add, 0, 1),
                    ],
                    output: view(Buffer::Arena { offset: 64 }, 0, &[3, 1]),
                },
                Kernel::Softmax {
                    outer: 2,
                    len: 3,
                    inner: 1,
                    input: Buffer::Arena { offset: 64 },
                    output: Buffer::Output(0),
                    scale: 1.0,
                    mask: None,
                },
                Kernel::Reduce {
                    op: ReduceOp::Max,
                    outer: 2,
                    len: 3,
                    inner: 1,
                    input: Buffer::Arena { offset: 64 },
                    output: Buffer::Output(1),
                },
                Kernel::Copy {
                    bytes: 24,
                    src: Buffer::Arena { offset: 64 },
                    dst: Buffer::Output(2),
                },
            ],
        );
        let out = run1(&p, &[vec![0., 1., 2., 3., 4., 5.], vec![10., 20., 30.]]).unwrap();
        assert_eq!(out[2], vec![10., 21., 32., 13., 24., 35.]);
        assert_eq!(out[1], vec![32., 35.]);
        let e: Vec<f32> = [10f32, 21., 32.].iter().map(|x| (x - 32.).exp()).collect();
        let s: f32 = e.iter().sum();
        assert!((out[0][2] - e[2] / s).abs() < 1e-7);
    }

    /// Layer norm by hand: rows [1, 2, 3, 4] (mean 2.5, variance 1.25) and [2, 2, 2, 2]
    /// (variance 0, so `1/sqrt(eps)`), a per-element scale and one broadcast bias value,
    /// in place in the arena.
    #[test]
    fn layer_norm_by_hand() {
        let arena = Buffer::Arena { offset: 0 };
        let p = prog(
            vec![io("x", &[8]), io("b", &[1])],
            vec![io("y", &[8]), io("mean", &[2]), io("inv", &[2])],
            vec![Const {
                name: "scale".into(),
                dtype: DType::F32,
                shape: vec![4],
                data: bytes(&[1.0, 2.0, 1.0, 0.5]),
            }],
            vec![
                Kernel::Copy {
                    bytes: 32,
                    src: Buffer::Input(0),
                    dst: arena,
                },
                Kernel::LayerNorm {
                    outer: 2,
                    len: 4,
                    epsilon: 0.25,
                    input: arena,
                    scale: Some(view(Buffer::Const(ConstId(0)), 0, &[1])),
                    bias: Some(view(Buffer::Input(1), 0, &[0])),
                    output: arena,
                    mean: Some(Buffer::Output(1)),
                    inv_std: Some(Buffer::Output(2)),
                },
                Kernel::Copy {
                    bytes: 32,
                    src: arena,
                    dst: Buffer::Output(0),
                },
            ],
        );
        let x = vec![1., 2., 3., 4., 2., 2., 2., 2.];
        let out = run1(&p, &[x, vec![10.0]]).unwrap();
        // inv = 1/sqrt(1.25 + 0.25); y = (x − 2.5)·inv·scale + 10.
        let inv = 1.0 / 1.5f32.sqrt();
        let want: Vec<f32> = [(-1.5, 1.0), (-0.5, 2.0), (0.5, 1.0), (1.5, 0.5)]
            .iter()
            .map(|&(d, s): &(f32, f32)| d * inv * s + 10.0)
            .chain([10.0; 4])
            .collect();
        assert_eq!(out[0], want);
        assert_eq!(out[1], vec![2.5, 2.0]);
        assert_eq!(out[2], vec![inv, 2.0]);
    }

    #[test]
    fn out_of_range_view_is_an_error() {
        let p = prog(
            vec![io("x", &[4])],
            vec![io("y", &[4])],
            vec![],
            vec![Kernel::Elementwise {
                shape: vec![4],
                inputs: vec![view(Buffer::Input(0), 1, &[1])],
                expr: vec![ExprNode::Input(0)],
                output: view(Buffer::Output(0), 0, &[1]),
            }],
        );
        assert!(matches!(
            run1(&p, &[vec![0.0; 4]]),
            Err(ExecError::OutOfRange { kernel: 0, .. })
        ));
        let mut bad = p.clone();
        bad.kernels[0] = Kernel::Copy {
            bytes: 4,
            src: Buffer::Input(3),
            dst: Buffer::Output(0),
        };
        assert!(matches!(
            run1(&bad, &[vec![0.0; 4]]),
            Err(ExecError::NoSuchBuffer { .. })
        ));
        assert!(matches!(
            run1(&p, &[]),
            Err(ExecError::WrongInputCount { .. })
        ));
    }
}
