//! Compile-time bounds checks: every view a kernel touches must lie inside its buffer.
//!
//! Generated code does no bounds checks, so a malformed program must be refused here
//! (as [`Error::Unsupported`]) instead of becoming an out-of-bounds access at run time.
//! A view's extent over an iteration shape is exact: the smallest and largest element
//! index are the sums of `stride · (size − 1)` over negative and positive strides.

use edgecc_program::{
    Buffer, DType, Kernel, LogicOp, PoolKind, Program, QuantOut, View, ZeroPoint,
};

use crate::error::{Error, unsupported};

/// Bytes available from the start of `buf` (after an arena offset).
fn capacity(p: &Program, buf: Buffer) -> Result<u64, Error> {
    let cap = match buf {
        Buffer::Arena { offset } => {
            if offset % p.arena_align.max(1) != 0 {
                return Err(unsupported(format!(
                    "arena offset {offset} is not {}-aligned",
                    p.arena_align
                )));
            }
            p.arena_size.checked_sub(offset)
        }
        Buffer::Input(i) => p.inputs.get(i as usize).map(|t| t.byte_size()),
        Buffer::Output(i) => p.outputs.get(i as usize).map(|t| t.byte_size()),
        Buffer::Const(c) => p.consts.get(c.0 as usize).map(|c| c.data.len() as u64),
    };
    cap.ok_or_else(|| unsupported(format!("buffer {buf:?} does not exist")))
}

/// Checks a dense range of `bytes` bytes at the start of `buf`.
fn dense(p: &Program, k: usize, buf: Buffer, bytes: u64) -> Result<(), Error> {
    let cap = capacity(p, buf)?;
    if bytes > cap {
        return Err(unsupported(format!(
            "kernel {k} accesses {bytes} bytes of {buf:?}, which has {cap}"
        )));
    }
    Ok(())
}

/// Checks a f32 view over `shape` (one stride per dimension).
fn view(p: &Program, k: usize, v: &View, shape: &[u64], what: &str) -> Result<(), Error> {
    sized_view(p, k, v, shape, 4, what)
}

/// Checks a view of `size`-byte elements over `shape` (one stride per dimension).
fn sized_view(
    p: &Program,
    k: usize,
    v: &View,
    shape: &[u64],
    size: u64,
    what: &str,
) -> Result<(), Error> {
    if v.strides.len() != shape.len() {
        return Err(unsupported(format!(
            "kernel {k}: {what} view has {} strides, expected {}",
            v.strides.len(),
            shape.len()
        )));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let (mut lo, mut hi) = (v.offset as i128, v.offset as i128);
    for (&s, &n) in v.strides.iter().zip(shape) {
        let span = s as i128 * (n as i128 - 1);
        if span < 0 { lo += span } else { hi += span }
    }
    let cap = capacity(p, v.buf)? as i128;
    let size = size as i128;
    if lo < 0 || (hi + 1) * size > cap {
        return Err(unsupported(format!(
            "kernel {k}: {what} view reaches elements {lo}..={hi} of {:?}, which holds {} \
             elements of {size} bytes",
            v.buf,
            cap / size
        )));
    }
    Ok(())
}

/// Checks every kernel of `p`.
pub(crate) fn program(p: &Program) -> Result<(), Error> {
    let ident = !p.name.is_empty()
        && p.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !p.name.starts_with(|c: char| c.is_ascii_digit());
    if !ident {
        return Err(unsupported(format!(
            "model name `{}` is not a C identifier",
            p.name
        )));
    }
    for (k, kernel) in p.kernels.iter().enumerate() {
        match kernel {
            Kernel::QGemm {
                m,
                n,
                k: kk,
                a,
                a_dtype,
                a_zero,
                out,
                c,
                ..
            } => {
                let (m, n, kk) = (*m as u64, *n as u64, *kk as u64);
                activation_dtype(k, *a_dtype, *a_zero)?;
                zero_point(p, k, *a_zero)?;
                sized_view(p, k, a, &[m, kk], 1, "a")?;
                if kk > 1 && a.strides[1] != 1 {
                    return Err(unsupported(format!(
                        "kernel {k}: qgemm a has stride {} along k, not 1",
                        a.strides[1]
                    )));
                }
                sized_view(p, k, c, &[m, n], out.dtype().size() as u64, "c")?;
                quant_out(k, out, n)?;
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
                out,
                output,
                scratch,
                ..
            } => {
                activation_dtype(k, *in_dtype, *in_zero)?;
                zero_point(p, k, *in_zero)?;
                quant_out(k, out, *c_out as u64)?;
                let n = s.n as u64;
                dense(
                    p,
                    k,
                    *input,
                    n * *c_in as u64 * s.in_h as u64 * s.in_w as u64,
                )?;
                let out_bytes =
                    n * *c_out as u64 * s.out_h as u64 * s.out_w as u64 * out.dtype().size() as u64;
                dense(p, k, *output, out_bytes)?;
                if *groups != 0 {
                    let need = Kernel::qconv_scratch_bytes(*c_in, *c_out, *groups, s, w);
                    if let Some(sc) = scratch {
                        dense(p, k, *sc, need)?;
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
            } if *dtype != DType::F32 => {
                if !matches!(dtype, DType::U8 | DType::I8) || *kind != PoolKind::Max {
                    return Err(unsupported(format!(
                        "kernel {k}: {kind:?} pooling over {} (only max pooling of u8/i8)",
                        dtype.name()
                    )));
                }
                if [
                    w.kh,
                    w.kw,
                    w.stride_h,
                    w.stride_w,
                    w.dilation_h,
                    w.dilation_w,
                ]
                .contains(&0)
                {
                    return Err(unsupported(format!(
                        "kernel {k}: pool window has a zero size, stride or dilation"
                    )));
                }
                let c = *channels as u64;
                dense(p, k, *input, c * s.in_h as u64 * s.in_w as u64)?;
                dense(p, k, *output, c * s.out_h as u64 * s.out_w as u64)?;
            }
            Kernel::Gemm {
                batch,
                m,
                n,
                k: kk,
                a,
                b,
                bias,
                residual,
                c,
                ..
            } => {
                let (bt, m, n, kk) = (*batch as u64, *m as u64, *n as u64, *kk as u64);
                view(p, k, a, &[bt, m, kk], "a")?;
                view(p, k, b, &[bt, kk, n], "b")?;
                view(p, k, c, &[bt, m, n], "c")?;
                if let Some(bias) = bias {
                    view(p, k, bias, &[bt, m, n], "bias")?;
                }
                if let Some(r) = residual {
                    view(p, k, r, &[bt, m, n], "residual")?;
                }
            }
            Kernel::Conv {
                c_in,
                c_out,
                groups,
                spatial: s,
                window: w,
                input,
                residual,
                output,
                scratch,
                ..
            } => {
                let n = s.n as u64;
                dense(
                    p,
                    k,
                    *input,
                    n * *c_in as u64 * s.in_h as u64 * s.in_w as u64 * 4,
                )?;
                let out_bytes = n * *c_out as u64 * s.out_h as u64 * s.out_w as u64 * 4;
                dense(p, k, *output, out_bytes)?;
                if let Some(r) = residual {
                    dense(p, k, *r, out_bytes)?;
                }
                if *groups != 0 {
                    let need = Kernel::conv_scratch_bytes(*c_in, *c_out, *groups, s, w);
                    if let Some(sc) = scratch {
                        dense(p, k, *sc, need)?;
                    }
                }
            }
            Kernel::Pool {
                channels,
                spatial: s,
                window: w,
                input,
                output,
                ..
            } => {
                if [
                    w.kh,
                    w.kw,
                    w.stride_h,
                    w.stride_w,
                    w.dilation_h,
                    w.dilation_w,
                ]
                .contains(&0)
                {
                    return Err(unsupported(format!(
                        "kernel {k}: pool window has a zero size, stride or dilation"
                    )));
                }
                let c = *channels as u64;
                dense(p, k, *input, c * s.in_h as u64 * s.in_w as u64 * 4)?;
                dense(p, k, *output, c * s.out_h as u64 * s.out_w as u64 * 4)?;
            }
            Kernel::Elementwise {
                shape,
                inputs,
                output,
                ..
            } => {
                for (i, v) in inputs.iter().enumerate() {
                    view(p, k, v, shape, &format!("input {i}"))?;
                }
                view(p, k, output, shape, "output")?;
            }
            Kernel::Softmax {
                outer,
                len,
                inner,
                scale,
                mask,
                ..
            } if *scale != 1.0 || mask.is_some() => {
                if *inner != 1 {
                    return Err(unsupported(format!(
                        "kernel {k}: a scaled or masked softmax must be over the last axis"
                    )));
                }
                if let Some(m) = mask {
                    if m.outer.iter().product::<u64>() != *outer {
                        return Err(unsupported(format!(
                            "kernel {k}: softmax mask dims {:?} do not multiply to {outer}",
                            m.outer
                        )));
                    }
                    let mut shape = m.outer.clone();
                    shape.extend([*len, *inner]);
                    view(p, k, &m.view, &shape, "mask")?;
                    let along = m.view.strides[m.outer.len()];
                    if *len > 1 && along != 0 && along != 1 {
                        return Err(unsupported(format!(
                            "kernel {k}: softmax mask stride {along} along the axis is not 0 or 1"
                        )));
                    }
                }
                let total = outer * len * 4;
                if let Kernel::Softmax { input, output, .. } = kernel {
                    dense(p, k, *input, total)?;
                    dense(p, k, *output, total)?;
                }
            }
            Kernel::Softmax {
                outer,
                len,
                inner,
                input,
                output,
                ..
            }
            | Kernel::Reduce {
                outer,
                len,
                inner,
                input,
                output,
                ..
            } => {
                let total = outer * len * inner * 4;
                dense(p, k, *input, total)?;
                let out = if matches!(kernel, Kernel::Softmax { .. }) {
                    total
                } else {
                    outer * inner * 4
                };
                dense(p, k, *output, out)?;
            }
            Kernel::LayerNorm {
                outer,
                len,
                input,
                scale,
                bias,
                output,
                mean,
                inv_std,
                ..
            } => {
                let big = || unsupported(format!("kernel {k}: layer norm sizes overflow"));
                let rows = outer
                    .checked_mul(4)
                    .filter(|&b| b < 1 << 48)
                    .ok_or_else(big)?;
                let bytes = rows
                    .checked_mul(*len)
                    .filter(|&b| b < 1 << 48)
                    .ok_or_else(big)?;
                dense(p, k, *input, bytes)?;
                dense(p, k, *output, bytes)?;
                for (v, what) in [(scale, "scale"), (bias, "bias")] {
                    let Some(v) = v else { continue };
                    view(p, k, v, &[*len], what)?;
                    if *len > 1 && !matches!(v.strides[0], 0 | 1) {
                        return Err(unsupported(format!(
                            "kernel {k}: layer norm {what} stride {} is not 0 or 1",
                            v.strides[0]
                        )));
                    }
                }
                for b in [mean, inv_std].into_iter().flatten() {
                    dense(p, k, *b, rows)?;
                }
            }
            Kernel::Copy { bytes, src, dst } => {
                dense(p, k, *src, *bytes)?;
                dense(p, k, *dst, *bytes)?;
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
                    return Err(unsupported(format!(
                        "kernel {k}: gather index_bytes {index_bytes} is not 1, 4 or 8"
                    )));
                }
                let big = || unsupported(format!("kernel {k}: gather sizes overflow"));
                let row = inner.checked_mul(*elem_bytes as u64).ok_or_else(big)?;
                let src = outer
                    .checked_mul(*axis_len)
                    .and_then(|n| n.checked_mul(row))
                    .filter(|&b| b < 1 << 48)
                    .ok_or_else(big)?;
                let dst = outer
                    .checked_mul(*count)
                    .and_then(|n| n.checked_mul(row))
                    .filter(|&b| b < 1 << 48)
                    .ok_or_else(big)?;
                dense(p, k, *data, src)?;
                dense(p, k, *output, dst)?;
                let n_idx = if *elementwise {
                    outer
                        .checked_mul(*count)
                        .and_then(|n| n.checked_mul(*inner))
                } else {
                    Some(*count)
                };
                let idx_bytes = n_idx
                    .and_then(|n| n.checked_mul(*index_bytes as u64))
                    .filter(|&b| b < 1 << 48)
                    .ok_or_else(big)?;
                dense(p, k, *indices, idx_bytes)?;
            }
            Kernel::Convert {
                count,
                from,
                to,
                input,
                output,
            } => {
                let big = || unsupported(format!("kernel {k}: convert sizes overflow"));
                let bytes = |d: &DType| {
                    count
                        .checked_mul(d.size() as u64)
                        .filter(|&b| b < 1 << 48)
                        .ok_or_else(big)
                };
                dense(p, k, *input, bytes(from)?)?;
                dense(p, k, *output, bytes(to)?)?;
            }
            Kernel::Compare {
                shape,
                dtype,
                a,
                b,
                output,
                ..
            } => {
                let size = dtype.size() as u64;
                sized_view(p, k, a, shape, size, "a")?;
                sized_view(p, k, b, shape, size, "b")?;
                sized_view(p, k, output, shape, 1, "output")?;
            }
            Kernel::Logic {
                shape,
                op,
                a,
                b,
                output,
            } => {
                match (op, b) {
                    (LogicOp::Not, None) => {}
                    (LogicOp::Not, Some(_)) => {
                        return Err(unsupported(format!(
                            "kernel {k}: logic Not has a second operand"
                        )));
                    }
                    (_, None) => {
                        return Err(unsupported(format!(
                            "kernel {k}: logic {op:?} has no second operand"
                        )));
                    }
                    (_, Some(b)) => sized_view(p, k, b, shape, 1, "b")?,
                }
                sized_view(p, k, a, shape, 1, "a")?;
                sized_view(p, k, output, shape, 1, "output")?;
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
                    return Err(unsupported(format!(
                        "kernel {k}: select elem_bytes {elem_bytes} is not 1, 4 or 8"
                    )));
                }
                let size = *elem_bytes as u64;
                sized_view(p, k, cond, shape, 1, "cond")?;
                sized_view(p, k, a, shape, size, "a")?;
                sized_view(p, k, b, shape, size, "b")?;
                sized_view(p, k, output, shape, size, "output")?;
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
                    .map_err(|e| unsupported(format!("kernel {k}: quantized Add/Mul: {e}")))?;
                sized_view(p, k, a, shape, 1, "a")?;
                sized_view(p, k, b, shape, 1, "b")?;
                sized_view(p, k, output, shape, 1, "output")?;
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
                    return Err(unsupported(format!(
                        "kernel {k}: int elementwise of {}",
                        dtype.name()
                    )));
                }
                match (op.is_binary(), b) {
                    (true, Some(b)) => sized_view(p, k, b, shape, dtype.size() as u64, "b")?,
                    (false, None) => {}
                    _ => {
                        return Err(unsupported(format!(
                            "kernel {k}: int {op:?} has the wrong operand count"
                        )));
                    }
                }
                let size = dtype.size() as u64;
                sized_view(p, k, a, shape, size, "a")?;
                sized_view(p, k, output, shape, size, "output")?;
            }
            Kernel::CumSum {
                outer,
                len,
                inner,
                dtype,
                input,
                output,
                ..
            } => {
                if !matches!(dtype, DType::F32 | DType::I32 | DType::I64) {
                    return Err(unsupported(format!(
                        "kernel {k}: cumsum of {}",
                        dtype.name()
                    )));
                }
                let bytes = outer
                    .checked_mul(*len)
                    .and_then(|n| n.checked_mul(*inner))
                    .and_then(|n| n.checked_mul(dtype.size() as u64))
                    .filter(|&b| b < 1 << 48)
                    .ok_or_else(|| unsupported(format!("kernel {k}: cumsum sizes overflow")))?;
                dense(p, k, *input, bytes)?;
                dense(p, k, *output, bytes)?;
            }
        }
        for b in written(kernel) {
            if matches!(b, Buffer::Input(_) | Buffer::Const(_)) {
                return Err(unsupported(format!("kernel {k} writes to read-only {b:?}")));
            }
        }
    }
    Ok(())
}

/// The activation dtype of an integer kernel: `U8` or `I8`, with a constant zero point
/// inside its range (the padding of a convolution stores it as a byte).
fn activation_dtype(k: usize, dtype: DType, z: ZeroPoint) -> Result<(), Error> {
    let range = match dtype {
        DType::U8 => 0..=255,
        DType::I8 => -128..=127,
        d => {
            return Err(unsupported(format!(
                "kernel {k}: integer activations of {} (u8 or i8 only)",
                d.name()
            )));
        }
    };
    if let ZeroPoint::Const(v) = z
        && !range.contains(&v)
    {
        return Err(unsupported(format!(
            "kernel {k}: zero point {v} is outside the {} range",
            dtype.name()
        )));
    }
    Ok(())
}

/// A runtime zero point is one readable byte.
fn zero_point(p: &Program, k: usize, z: ZeroPoint) -> Result<(), Error> {
    match z {
        ZeroPoint::Runtime(buf) => dense(p, k, buf, 1),
        ZeroPoint::Const(_) => Ok(()),
    }
}

/// The output of an integer kernel: `I32`, or a requantization the targets can apply.
fn quant_out(k: usize, out: &QuantOut, channels: u64) -> Result<(), Error> {
    crate::kernels::qgemm::check_out(out, channels)
        .map_err(|e| unsupported(format!("kernel {k}: {e}")))
}

fn written(k: &Kernel) -> Vec<Buffer> {
    match k {
        Kernel::Gemm { c, .. } => vec![c.buf],
        Kernel::QGemm { c, .. } => vec![c.buf],
        Kernel::QConv {
            output, scratch, ..
        } => std::iter::once(*output).chain(*scratch).collect(),
        Kernel::Conv {
            output, scratch, ..
        } => std::iter::once(*output).chain(*scratch).collect(),
        Kernel::Pool { output, .. }
        | Kernel::Softmax { output, .. }
        | Kernel::Reduce { output, .. } => vec![*output],
        Kernel::Elementwise { output, .. }
        | Kernel::Compare { output, .. }
        | Kernel::Logic { output, .. }
        | Kernel::Select { output, .. }
        | Kernel::IntElementwise { output, .. }
        | Kernel::QBinary { output, .. } => vec![output.buf],
        Kernel::CumSum { output, .. } => vec![*output],
        Kernel::LayerNorm {
            output,
            mean,
            inv_std,
            ..
        } => std::iter::once(*output)
            .chain(*mean)
            .chain(*inv_std)
            .collect(),
        Kernel::Copy { dst, .. } => vec![*dst],
        Kernel::Gather { output, .. } | Kernel::Convert { output, .. } => vec![*output],
    }
}
