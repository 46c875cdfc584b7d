//! Integer kernels: wrapping two's complement arithmetic on i32/i64 views
//! ([`Kernel::IntElementwise`]) and running sums ([`Kernel::CumSum`], for f32 too), with
//! the semantics of `edgecc_program::exec`.
//!
//! Both run over index and position tensors (a sequence of token ids, a mask), so they
//! are scalar loop nests. Integer elementwise kernels simplify their dimensions as the
//! mask kernels do (size-1 dimensions dropped, contiguous pairs merged) and carry one
//! pointer per view; the body is the loads, one Cranelift integer instruction (`iadd`,
//! `isub`, `imul`, `smax`, `smin`, `ineg`, `iabs`, all of which wrap and none of which
//! trap) and the store. A CumSum keeps its running sum in a loop-carried register and
//! visits each scan in order, so f32 sums are the sequential additions the contract
//! prescribes, bit for bit.
//!
//! [`Kernel::IntElementwise`]: edgecc_program::Kernel::IntElementwise
//! [`Kernel::CumSum`]: edgecc_program::Kernel::CumSum

use cranelift_codegen::ir::{InstBuilder, types};
use edgecc_program::{Buffer, DType, IntOp, View};

use super::mask::{bases, byte_stride, int_type, nest, readonly, simplify};
use crate::error::{Error, unsupported};
use crate::fx::{Fx, W};

/// `Kernel::IntElementwise`.
pub(crate) fn emit_int_elementwise(
    fx: &mut Fx,
    shape: &[u64],
    dtype: DType,
    op: IntOp,
    a: &View,
    b: Option<&View>,
    output: &View,
) -> Result<(), Error> {
    if !matches!(dtype, DType::I32 | DType::I64) {
        return Err(unsupported(format!(
            "int elementwise of {} (i32 and i64 are)",
            dtype.name()
        )));
    }
    if op.is_binary() != b.is_some() {
        return Err(unsupported(format!(
            "int elementwise {op:?} with the wrong operand count"
        )));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let size = dtype.size() as u64;
    let t = int_type(size);
    let mut views = vec![(a, size)];
    views.extend(b.map(|b| (b, size)));
    views.push((output, size));
    let n_in = views.len() - 1;
    let dims = simplify(shape, &views)?;
    let ptrs = bases(fx, &views)?;
    let ro: Vec<bool> = views[..n_in]
        .iter()
        .map(|(v, _)| readonly(v.buf, output.buf))
        .collect();
    nest(fx, &dims, &ptrs, &mut |fx, p| {
        let x = fx.load(t, p[0], 0, ro[0]);
        let y = (n_in == 2).then(|| fx.load(t, p[1], 0, ro[1]));
        let ins = fx.b.ins();
        let r = match (op, y) {
            (IntOp::Add, Some(y)) => ins.iadd(x, y),
            (IntOp::Sub, Some(y)) => ins.isub(x, y),
            (IntOp::Mul, Some(y)) => ins.imul(x, y),
            (IntOp::Max, Some(y)) => ins.smax(x, y),
            (IntOp::Min, Some(y)) => ins.smin(x, y),
            (IntOp::Abs, _) => ins.iabs(x),
            // Neg (operand counts were checked above).
            _ => ins.ineg(x),
        };
        fx.store(r, p[n_in], 0);
    })
}

/// The geometry and flags of a `Kernel::CumSum`.
pub(crate) struct CumSum {
    pub outer: u64,
    pub len: u64,
    pub inner: u64,
    pub dtype: DType,
    pub exclusive: bool,
    pub reverse: bool,
}

/// `Kernel::CumSum`: for each `(o, i)`, one scan along `len` with the running sum carried
/// in a register; the loops are `o`, then `i`, then the scan.
pub(crate) fn emit_cumsum(
    fx: &mut Fx,
    c: &CumSum,
    input: Buffer,
    output: Buffer,
) -> Result<(), Error> {
    let ty = match c.dtype {
        DType::F32 => types::F32,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        other => {
            return Err(unsupported(format!(
                "cumsum of {} (f32, i32 and i64 are)",
                other.name()
            )));
        }
    };
    if c.outer == 0 || c.len == 0 || c.inner == 0 {
        return Ok(());
    }
    let size = c.dtype.size() as u64;
    let big = || unsupported("cumsum sizes overflow");
    let row = c
        .inner
        .checked_mul(c.len)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(big)?;
    let row = byte_stride(row, size)?;
    let step = byte_stride(c.inner as i64, size)?;
    // The first element of a scan and the step to the next, in bytes.
    let (start, step) = if c.reverse {
        (step * (c.len as i64 - 1), -step)
    } else {
        (0, step)
    };
    let ro = readonly(input, output);
    let ptrs = [fx.buf(input), fx.buf(output)];
    fx.for_n(c.outer, &ptrs, |fx, _, p| {
        fx.for_n(c.inner, p, |fx, _, q| {
            let zero = if c.dtype == DType::F32 {
                fx.fconst(W::S1, 0.0)
            } else {
                fx.b.ins().iconst(ty, 0)
            };
            let first = [fx.addp(q[0], start), fx.addp(q[1], start), zero];
            fx.for_n(c.len, &first, |fx, _, r| {
                let x = fx.load(ty, r[0], 0, ro);
                let next = if c.dtype == DType::F32 {
                    fx.b.ins().fadd(r[2], x)
                } else {
                    fx.b.ins().iadd(r[2], x)
                };
                fx.store(if c.exclusive { r[2] } else { next }, r[1], 0);
                vec![fx.addp(r[0], step), fx.addp(r[1], step), next]
            });
            vec![fx.addp(q[0], size as i64), fx.addp(q[1], size as i64)]
        });
        vec![fx.addp(p[0], row), fx.addp(p[1], row)]
    });
    Ok(())
}
