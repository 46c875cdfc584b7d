//! Turns a [`Program`] into Cranelift functions and data objects inside any
//! [`Module`] (object file or JIT), in one deterministic order.
//!
//! Layout of a module for a program named `m`:
//! - `m_const<i>`: each program constant some kernel reads as is (local, read-only,
//!   64-byte aligned);
//! - `m_k<j>_pa`, `m_k<j>_pb`, `m_k<j>_pw`: compile-time packed GEMM operands and
//!   convolution weights of kernel `j` (local, read-only, 64-byte aligned);
//! - `m_k<j>_<kind>`: one local function per kernel, taking `(inputs, outputs, arena)`;
//!   kernels that can fail at run time (gather's index check) return an `i32` status;
//! - `m_run`: exported, calls the kernels in order and returns 0, or the first non-zero
//!   status a kernel returns (`edgecc_program::STATUS_INDEX_OUT_OF_RANGE`) without
//!   running the rest.
//!
//! Everything is iterated in program order (no hash maps), so the same program gives
//! the same module, byte for byte.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cranelift_codegen::Context;
use cranelift_codegen::ir::{AbiParam, InstBuilder, UserFuncName, types};
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use edgecc_program::{Buffer, Const, ConstId, Kernel, Program, View};

use crate::error::Error;
use crate::fx::{Features, Fx, bytes_of, io_params};
use crate::kernels::{
    conv, convert, copy, elementwise, gather, gemm, integer, mask, qbinary, qconv, qdepthwise,
    qgemm, qwindow, rows, window,
};

/// What to record of each function for `--emit asm`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    None,
    /// Cranelift IR as generated, and the final machine code (VCode with registers).
    ClifAndAsm,
}

pub(crate) struct Built {
    pub run: FuncId,
    /// Each kernel's function, in program order, and whether it returns a status.
    pub kernels: Vec<(FuncId, bool)>,
    /// Bytes of machine code over all functions.
    pub text_bytes: u64,
    /// Bytes of constant data (weights as emitted, packed or not).
    pub const_bytes: u64,
    pub listing: String,
}

pub(crate) fn features(isa: &dyn TargetIsa) -> Features {
    let aarch64 = matches!(
        isa.triple().architecture,
        target_lexicon::Architecture::Aarch64(_)
    );
    let dotprod = aarch64
        && isa
            .isa_flags()
            .iter()
            .any(|f| f.name == "has_dotprod" && f.as_bool() == Some(true));
    Features {
        fma: aarch64 || isa.has_native_fma(),
        aarch64,
        dotprod,
    }
}

/// The value of a [`Kernel::Select`] condition that is one constant byte for the whole
/// kernel (a constant view broadcast in every dimension of size > 1), if it is one.
fn const_cond(consts: &[Const], shape: &[u64], cond: &View) -> Option<bool> {
    let Buffer::Const(c) = cond.buf else {
        return None;
    };
    let broadcast = shape
        .iter()
        .zip(&cond.strides)
        .all(|(&n, &s)| n <= 1 || s == 0);
    if !broadcast || cond.strides.len() != shape.len() {
        return None;
    }
    let byte = consts.get(c.0 as usize)?.data.get(cond.offset as usize)?;
    Some(*byte != 0)
}

/// The constants a kernel reads directly (not through a packed copy).
fn raw_consts(consts: &[Const], k: &Kernel) -> Vec<ConstId> {
    let mut bufs: Vec<Buffer> = Vec::new();
    match k {
        Kernel::Gemm { bias, residual, .. } => {
            bufs.extend(bias.iter().chain(residual.iter()).map(|v| v.buf))
        }
        Kernel::Conv {
            c_in,
            c_out,
            groups,
            weight,
            bias,
            ..
        } => {
            if groups == c_in && groups == c_out {
                bufs.push(Buffer::Const(*weight));
            }
            bufs.extend(bias.map(Buffer::Const));
        }
        Kernel::Elementwise { inputs, .. } => bufs.extend(inputs.iter().map(|v| v.buf)),
        Kernel::Pool { input, .. } | Kernel::Reduce { input, .. } => bufs.push(*input),
        Kernel::LayerNorm {
            input, scale, bias, ..
        } => {
            bufs.push(*input);
            bufs.extend(scale.iter().chain(bias.iter()).map(|v| v.buf));
        }
        Kernel::Softmax { input, mask, .. } => {
            bufs.push(*input);
            bufs.extend(mask.iter().map(|m| m.view.buf));
        }
        Kernel::Copy { src, .. } => bufs.push(*src),
        Kernel::Gather { data, indices, .. } => bufs.extend([*data, *indices]),
        Kernel::Convert { input, .. } => bufs.push(*input),
        Kernel::Compare { a, b, .. } | Kernel::QBinary { a, b, .. } => bufs.extend([a.buf, b.buf]),
        Kernel::IntElementwise { a, b, .. } => {
            bufs.extend(std::iter::once(a.buf).chain(b.as_ref().map(|b| b.buf)))
        }
        Kernel::CumSum { input, .. } => bufs.push(*input),
        // The weights and biases are packed into per-kernel tables; a runtime zero point
        // is never a constant worth special-casing, but may be one.
        Kernel::QGemm { a, a_zero, .. } => {
            bufs.push(a.buf);
            if let edgecc_program::ZeroPoint::Runtime(z) = a_zero {
                bufs.push(*z);
            }
        }
        Kernel::QConv {
            c_in,
            c_out,
            groups,
            input,
            in_zero,
            weight,
            bias,
            ..
        } => {
            bufs.push(*input);
            if let edgecc_program::ZeroPoint::Runtime(z) = in_zero {
                bufs.push(*z);
            }
            if groups == c_in && groups == c_out {
                // The padded-plane kernel reads its own packed copy of the weights, the
                // direct one the OIHW weights in place; both read the bias in place.
                if !qdepthwise::handles(&qconv_of(k)) {
                    bufs.push(Buffer::Const(*weight));
                }
                bufs.extend(bias.map(Buffer::Const));
            }
        }
        Kernel::Logic { a, b, .. } => {
            bufs.extend(std::iter::once(a.buf).chain(b.as_ref().map(|b| b.buf)))
        }
        Kernel::Select {
            shape, cond, a, b, ..
        } => {
            // A constant broadcast condition is read at compile time and picks one side.
            match const_cond(consts, shape, cond) {
                Some(true) => bufs.push(a.buf),
                Some(false) => bufs.push(b.buf),
                None => bufs.extend([cond.buf, a.buf, b.buf]),
            }
        }
    }
    bufs.into_iter()
        .filter_map(|b| {
            if let Buffer::Const(c) = b {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn define_data<M: Module>(
    m: &mut M,
    name: &str,
    mut bytes: Vec<u8>,
    total: &mut u64,
) -> Result<DataId, Error> {
    // Never empty, and padded to whole vectors so no load can straddle the end.
    let padded = bytes.len().max(1).div_ceil(16) * 16;
    bytes.resize(padded, 0);
    *total += bytes.len() as u64;
    let id = m.declare_data(name, Linkage::Local, false, false)?;
    let mut d = DataDescription::new();
    d.define(bytes.into_boxed_slice());
    d.set_align(64);
    m.define_data(id, &d)?;
    Ok(id)
}

/// Declares and defines everything for `p` in `m`.
pub(crate) fn build<M: Module>(m: &mut M, p: &Program, listing: Listing) -> Result<Built, Error> {
    crate::check::program(p)?;
    let feat = features(m.isa());
    let cfg = m.target_config();
    let tile = gemm::Tile::for_target(feat);
    let qtile = qgemm::QTile::for_target(feat);
    let name = &p.name;
    let mut const_bytes = 0u64;

    // Data objects: raw constants in use, then packed operands per kernel.
    let mut used = vec![false; p.consts.len()];
    for k in &p.kernels {
        for c in raw_consts(&p.consts, k) {
            used[c.0 as usize] = true;
        }
    }
    let mut data: Vec<Option<DataId>> = Vec::with_capacity(p.consts.len());
    for (i, c) in p.consts.iter().enumerate() {
        data.push(if used[i] {
            Some(define_data(
                m,
                &format!("{name}_const{i}"),
                c.data.clone(),
                &mut const_bytes,
            )?)
        } else {
            None
        });
    }
    let mut packed: Vec<[Option<usize>; 2]> = Vec::with_capacity(p.kernels.len());
    for (j, k) in p.kernels.iter().enumerate() {
        let mut slots = [None, None];
        let blobs: Vec<(usize, &str, Vec<u8>)> = match k {
            Kernel::Gemm {
                batch,
                m: mm,
                n,
                k: kk,
                a,
                b,
                ..
            } => {
                let [pa, pb] = gemm::prepare(&p.consts, tile, *batch, *mm, *n, *kk, a, b)?;
                [(0, "pa", pa), (1, "pb", pb)]
                    .into_iter()
                    .filter_map(|(s, n, v)| v.map(|v| (s, n, to_bytes(&v))))
                    .collect()
            }
            Kernel::Conv { .. } => conv::prepare(&p.consts, tile, &conv_of(k))?
                .map(|v| vec![(0, "pw", to_bytes(&v))])
                .unwrap_or_default(),
            Kernel::QGemm { .. } => {
                let [pb, tab] = qgemm::prepare(&p.consts, qtile, &qgemm_of(k))?;
                vec![(0, "pb", pb), (1, "tab", tab)]
            }
            Kernel::QConv { .. } => {
                let [pw, tab] = qconv::prepare(&p.consts, qtile, &qconv_of(k))?;
                vec![(0, "pw", pw), (1, "tab", tab)]
            }
            _ => Vec::new(),
        };
        for (slot, suffix, v) in blobs {
            let id = define_data(m, &format!("{name}_k{j}_{suffix}"), v, &mut const_bytes)?;
            slots[slot] = Some(data.len());
            data.push(Some(id));
        }
        packed.push(slots);
    }

    let mut ctx = m.make_context();
    let mut fbc = FunctionBuilderContext::new();
    let mut text_bytes = 0u64;
    let mut out = String::new();
    let mut kernel_ids = Vec::with_capacity(p.kernels.len());
    for (j, k) in p.kernels.iter().enumerate() {
        let fname = format!("{name}_k{j}_{}", k.name());
        let mut sig = m.make_signature();
        io_params(&mut sig);
        if fallible(k) {
            sig.returns.push(AbiParam::new(types::I32));
        }
        let id = m.declare_function(&fname, Linkage::Local, &sig)?;
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let emitted = catch_unwind(AssertUnwindSafe(|| -> Result<(), Error> {
            let mut fx = Fx::new(
                FunctionBuilder::new(&mut ctx.func, &mut fbc),
                cfg,
                feat,
                &data,
            );
            emit_kernel(&mut fx, (tile, qtile), &p.consts, k, packed[j])?;
            if fallible(k) {
                let ok = fx.b.ins().iconst(types::I32, 0);
                fx.b.ins().return_(&[ok]);
            } else {
                fx.b.ins().return_(&[]);
            }
            fx.finish();
            Ok(())
        }));
        match emitted {
            Ok(r) => r.map_err(|e| match e {
                Error::Unsupported(s) => {
                    Error::Unsupported(format!("kernel {j} ({}): {s}", k.name()))
                }
                e => e,
            })?,
            Err(_) => {
                return Err(Error::Codegen(format!(
                    "kernel {j} ({}): emitter panicked",
                    k.name()
                )));
            }
        }
        text_bytes += define(m, &mut ctx, id, &fname, listing, &mut out)?;
        kernel_ids.push(id);
    }

    // The entry point.
    let mut sig = m.make_signature();
    io_params(&mut sig);
    sig.returns.push(AbiParam::new(types::I32));
    let run = m.declare_function(&format!("{name}_run"), Linkage::Export, &sig)?;
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, run.as_u32());
    {
        let refs: Vec<_> = kernel_ids
            .iter()
            .map(|&id| m.declare_func_in_func(id, &mut ctx.func))
            .collect();
        let mut fx = Fx::new(
            FunctionBuilder::new(&mut ctx.func, &mut fbc),
            cfg,
            feat,
            &data,
        );
        let args = [fx.ins, fx.outs, fx.arena];
        for (r, k) in refs.into_iter().zip(&p.kernels) {
            let call = fx.b.ins().call(r, &args);
            if fallible(k) {
                // A non-zero status stops the program and is returned as is.
                let status = fx.b.inst_results(call)[0];
                let fail = fx.b.create_block();
                let next = fx.b.create_block();
                fx.b.ins().brif(status, fail, &[], next, &[]);
                fx.b.switch_to_block(fail);
                fx.b.ins().return_(&[status]);
                fx.b.switch_to_block(next);
            }
        }
        let zero = fx.b.ins().iconst(types::I32, 0);
        fx.b.ins().return_(&[zero]);
        fx.finish();
    }
    text_bytes += define(m, &mut ctx, run, &format!("{name}_run"), listing, &mut out)?;
    Ok(Built {
        run,
        kernels: kernel_ids
            .iter()
            .zip(&p.kernels)
            .map(|(&id, k)| (id, fallible(k)))
            .collect(),
        text_bytes,
        const_bytes,
        listing: out,
    })
}

/// Compiles and defines one function; returns its code size.
fn define<M: Module>(
    m: &mut M,
    ctx: &mut Context,
    id: FuncId,
    fname: &str,
    listing: Listing,
    out: &mut String,
) -> Result<u64, Error> {
    if listing == Listing::ClifAndAsm {
        out.push_str(&format!(
            ";; ---- {fname}: Cranelift IR\n{}\n",
            ctx.func.display()
        ));
        ctx.set_disasm(true);
    }
    match catch_unwind(AssertUnwindSafe(|| {
        m.define_function(id, ctx).map_err(|e| format!("{e:?}"))
    })) {
        Ok(r) => r.map_err(|e| Error::Codegen(format!("{fname}: {e}")))?,
        Err(_) => {
            return Err(Error::Codegen(format!(
                "Cranelift panicked while compiling {fname}"
            )));
        }
    }
    let code = ctx
        .compiled_code()
        .ok_or_else(|| Error::Codegen(format!("{fname}: no code")))?;
    let size = code.code_info().total_size as u64;
    if let (Listing::ClifAndAsm, Some(v)) = (listing, &code.vcode) {
        {
            out.push_str(&format!(
                ";; ---- {fname}: machine code ({size} bytes)\n{v}\n"
            ));
        }
    }
    ctx.clear();
    Ok(size)
}

fn conv_of(k: &Kernel) -> conv::Conv {
    match *k {
        Kernel::Conv {
            c_in,
            c_out,
            groups,
            spatial,
            window,
            input,
            weight,
            bias,
            residual,
            act,
            output,
            scratch,
        } => conv::Conv {
            c_in,
            c_out,
            groups,
            s: spatial,
            w: window,
            input,
            weight,
            bias,
            residual,
            act,
            output,
            scratch,
        },
        _ => unreachable!("conv_of on a non-conv kernel"),
    }
}

fn qgemm_of(k: &Kernel) -> qgemm::QGemmKernel<'_> {
    match k {
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
        } => qgemm::QGemmKernel {
            m: *m,
            n: *n,
            k: *k,
            a,
            a_dtype: *a_dtype,
            a_zero: *a_zero,
            b: *b,
            bias: *bias,
            out,
            c,
        },
        _ => unreachable!("qgemm_of on a non-qgemm kernel"),
    }
}

fn qconv_of(k: &Kernel) -> qconv::QConv<'_> {
    match k {
        Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial,
            window,
            input,
            in_dtype,
            in_zero,
            weight,
            bias,
            out,
            output,
            scratch,
        } => qconv::QConv {
            c_in: *c_in,
            c_out: *c_out,
            groups: *groups,
            s: *spatial,
            w: *window,
            input: *input,
            in_dtype: *in_dtype,
            in_zero: *in_zero,
            weight: *weight,
            bias: *bias,
            out,
            output: *output,
            scratch: *scratch,
        },
        _ => unreachable!("qconv_of on a non-qconv kernel"),
    }
}

fn emit_kernel(
    fx: &mut Fx,
    (tile, qtile): (gemm::Tile, qgemm::QTile),
    consts: &[Const],
    k: &Kernel,
    packed: [Option<usize>; 2],
) -> Result<(), Error> {
    match k {
        Kernel::QGemm { .. } => qgemm::emit(fx, qtile, &qgemm_of(k), packed),
        Kernel::QConv { .. } => qconv::emit(fx, qtile, &qconv_of(k), packed),
        Kernel::Pool {
            kind: _,
            dtype: dtype @ (edgecc_program::DType::U8 | edgecc_program::DType::I8),
            channels,
            spatial,
            window: w,
            input,
            output,
        } => {
            let (i, o) = (fx.buf(*input), fx.buf(*output));
            qwindow::emit_max_pool(fx, *dtype, *channels as u64, spatial, w, i, o);
            Ok(())
        }
        Kernel::Gemm {
            batch,
            m,
            n,
            k: kk,
            a,
            b,
            alpha,
            bias,
            residual,
            act,
            c,
        } => gemm::emit(
            fx,
            tile,
            &gemm::GemmKernel {
                batch: *batch,
                m: *m,
                n: *n,
                k: *kk,
                a,
                b,
                alpha: *alpha,
                bias: bias.as_ref(),
                residual: residual.as_ref(),
                act: *act,
                c,
                packed,
            },
        ),
        Kernel::Conv { .. } => conv::emit(fx, tile, &conv_of(k), packed[0]),
        Kernel::Pool {
            kind,
            dtype: _,
            channels,
            spatial,
            window: w,
            input,
            output,
        } => {
            let (i, o) = (fx.buf(*input), fx.buf(*output));
            window::emit(
                fx,
                window::Combine::Pool(*kind),
                1,
                *channels as u64,
                spatial,
                w,
                i,
                o,
            );
            Ok(())
        }
        Kernel::Elementwise {
            shape,
            inputs,
            expr,
            output,
        } => elementwise::emit(fx, shape, inputs, expr, output),
        Kernel::Softmax {
            outer,
            len,
            inner,
            input,
            output,
            scale,
            mask,
        } => {
            let (i, o) = (fx.buf(*input), fx.buf(*output));
            let mask = match mask {
                Some(m) => {
                    let base = fx.buf(m.view.buf);
                    let base = fx.addp(base, bytes_of(m.view.offset as i64)?);
                    Some(rows::Mask {
                        base,
                        dims: &m.outer,
                        strides: &m.view.strides,
                    })
                }
                None => None,
            };
            rows::emit_softmax(fx, *outer, *len, *inner, i, o, *scale, mask);
            Ok(())
        }
        Kernel::Reduce {
            op,
            outer,
            len,
            inner,
            input,
            output,
        } => {
            let (i, o) = (fx.buf(*input), fx.buf(*output));
            rows::emit_reduce(fx, *op, *outer, *len, *inner, i, o);
            Ok(())
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
            let (i, o) = (fx.buf(*input), fx.buf(*output));
            let param = |fx: &mut Fx, v: &Option<View>| -> Result<_, Error> {
                let Some(v) = v else { return Ok(None) };
                let base = fx.buf(v.buf);
                let base = fx.addp(base, bytes_of(v.offset as i64)?);
                Ok(Some(rows::RowParam {
                    base,
                    broadcast: *len <= 1 || v.strides[0] == 0,
                }))
            };
            let (s, b) = (param(fx, scale)?, param(fx, bias)?);
            let m = mean.map(|m| fx.buf(m));
            let v = inv_std.map(|v| fx.buf(v));
            rows::emit_layer_norm(fx, *outer, *len, *epsilon, i, o, s, b, m, v);
            Ok(())
        }
        Kernel::Copy { bytes, src, dst } => {
            let (s, d) = (fx.buf(*src), fx.buf(*dst));
            copy::emit(fx, *bytes, s, d);
            Ok(())
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
            let (d, i, o) = (fx.buf(*data), fx.buf(*indices), fx.buf(*output));
            gather::emit(
                fx,
                &gather::Gather {
                    outer: *outer,
                    axis_len: *axis_len,
                    inner: *inner,
                    count: *count,
                    elem_bytes: *elem_bytes,
                    index_bytes: *index_bytes,
                    elementwise: *elementwise,
                },
                d,
                i,
                o,
            );
            Ok(())
        }
        Kernel::Convert {
            count,
            from,
            to,
            input,
            output,
        } => {
            let (s, d) = (fx.buf(*input), fx.buf(*output));
            convert::emit(fx, *count, *from, *to, s, d);
            Ok(())
        }
        Kernel::Compare {
            shape,
            op,
            dtype,
            a,
            b,
            output,
        } => mask::emit_compare(fx, shape, *op, *dtype, a, b, output),
        Kernel::Logic {
            shape,
            op,
            a,
            b,
            output,
        } => mask::emit_logic(fx, shape, *op, a, b.as_ref(), output),
        Kernel::Select {
            shape,
            elem_bytes,
            cond,
            a,
            b,
            output,
        } => mask::emit_select(
            fx,
            shape,
            *elem_bytes,
            cond,
            a,
            b,
            output,
            const_cond(consts, shape, cond),
        ),
        Kernel::IntElementwise {
            shape,
            dtype,
            op,
            a,
            b,
            output,
        } => integer::emit_int_elementwise(fx, shape, *dtype, *op, a, b.as_ref(), output),
        Kernel::QBinary {
            shape,
            a,
            a_dtype,
            b,
            b_dtype,
            q,
            output,
        } => qbinary::emit_qbinary(fx, shape, a, *a_dtype, b, *b_dtype, q, output),
        Kernel::CumSum {
            outer,
            len,
            inner,
            dtype,
            exclusive,
            reverse,
            input,
            output,
        } => integer::emit_cumsum(
            fx,
            &integer::CumSum {
                outer: *outer,
                len: *len,
                inner: *inner,
                dtype: *dtype,
                exclusive: *exclusive,
                reverse: *reverse,
            },
            *input,
            *output,
        ),
    }
}

/// Kernels whose function returns an `i32` status (non-zero: `run` stops and returns it).
fn fallible(k: &Kernel) -> bool {
    matches!(k, Kernel::Gather { .. })
}
