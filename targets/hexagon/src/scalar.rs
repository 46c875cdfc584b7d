//! Plain, portable C for every kernel: the whole program without HVX, and the fallback
//! for what the HVX kernels do not cover. The integer kernels, pooling, conversions and
//! data movement are here; the float GEMM, convolution, row kernels and strided
//! elementwise kernels have their own modules (`gemm`, `conv`, `rows`, `elementwise`),
//! which this one dispatches to.

use std::fmt::Write;

use edgecc_program::{
    Buffer, DType, ExprNode, Kernel, LogicOp, PoolKind, QuantOut, Spatial, View, Window,
};

use crate::Error;
use crate::c::*;
use crate::conv::Conv;
use crate::gemm::Gemm;
use crate::{elementwise, rows};

/// Why `k` cannot be emitted, or `None` when it can: a dtype, element size or operand
/// count the program contract does not allow, or a malformed kernel (a view with the
/// wrong number of strides, groups that do not divide the channels, an expression that
/// refers forward). Every kernel kind of the contract is otherwise covered.
pub(crate) fn unsupported(k: &Kernel) -> Option<String> {
    let rank = |views: &[(Option<&View>, &str)], r: usize| -> Option<String> {
        views.iter().find_map(|(v, what)| {
            v.filter(|v| v.strides.len() != r).map(|v| {
                format!(
                    "malformed view `{what}`: {} strides, expected {r}",
                    v.strides.len()
                )
            })
        })
    };
    let groups = |c_in: u32, c_out: u32, g: u32| {
        (g == 0 || !c_in.is_multiple_of(g) || !c_out.is_multiple_of(g))
            .then(|| format!("{g} groups do not divide {c_in} input and {c_out} output channels"))
    };
    match k {
        Kernel::QGemm { a_dtype, out, .. }
        | Kernel::QConv {
            in_dtype: a_dtype,
            out,
            ..
        } => {
            if !matches!(a_dtype, DType::U8 | DType::I8) {
                return Some(format!("input dtype {}", a_dtype.name()));
            }
            if let QuantOut::Requant(r) = out
                && (!(1..=62).contains(&r.shift) || !matches!(r.dtype, DType::U8 | DType::I8))
            {
                return Some("malformed requantization".into());
            }
            if let Kernel::QGemm { a, c, .. } = k {
                return rank(&[(Some(a), "a"), (Some(c), "c")], 2);
            }
            if let Kernel::QConv {
                c_in,
                c_out,
                groups: g,
                ..
            } = k
            {
                return groups(*c_in, *c_out, *g);
            }
            None
        }
        Kernel::Gemm {
            a,
            b,
            bias,
            residual,
            c,
            ..
        } => rank(
            &[
                (Some(a), "a"),
                (Some(b), "b"),
                (Some(c), "c"),
                (bias.as_ref(), "bias"),
                (residual.as_ref(), "residual"),
            ],
            3,
        ),
        Kernel::Conv {
            c_in,
            c_out,
            groups: g,
            ..
        } => groups(*c_in, *c_out, *g),
        Kernel::Pool { kind, dtype, .. } => match (kind, dtype) {
            (PoolKind::Max, DType::U8 | DType::I8) => None,
            (_, DType::F32) => None,
            _ => Some(format!("{kind:?} pooling of {}", dtype.name())),
        },
        // Every pair: int64 <-> f32 are single instructions (convert_d2sf, convert_sf2d).
        Kernel::Convert { .. } | Kernel::Copy { .. } | Kernel::Reduce { .. } => None,
        Kernel::Elementwise {
            shape,
            inputs,
            expr,
            output,
        } => {
            let views: Vec<(Option<&View>, &str)> = inputs
                .iter()
                .map(|v| (Some(v), "input"))
                .chain([(Some(output), "output")])
                .collect();
            if let Some(why) = rank(&views, shape.len()) {
                return Some(why);
            }
            if expr.is_empty() {
                return Some("empty expression".into());
            }
            expr.iter().enumerate().find_map(|(j, e)| {
                let back = |x: &u32| (*x as usize) < j;
                let fine = match e {
                    ExprNode::Input(i) => (*i as usize) < inputs.len(),
                    ExprNode::Const(_) => true,
                    ExprNode::Unary(_, x) | ExprNode::Clip { x, .. } => back(x),
                    ExprNode::Binary(_, a, b) => back(a) && back(b),
                };
                (!fine)
                    .then(|| format!("expression node {j} ({e:?}) refers forward or to no input"))
            })
        }
        Kernel::Softmax { outer, mask, .. } => mask.as_ref().and_then(|m| {
            let prod: u64 = m.outer.iter().product();
            if m.view.strides.len() != m.outer.len() + 2 {
                Some(format!(
                    "malformed mask view: {} strides for {} outer dims",
                    m.view.strides.len(),
                    m.outer.len()
                ))
            } else if *outer != 0 && (prod == 0 || !outer.is_multiple_of(prod)) {
                Some(format!(
                    "mask outer dims {:?} do not divide {outer} rows",
                    m.outer
                ))
            } else {
                None
            }
        }),
        Kernel::LayerNorm { scale, bias, .. } => {
            rank(&[(scale.as_ref(), "scale"), (bias.as_ref(), "bias")], 1)
        }
        Kernel::QBinary { .. } => crate::qbinary::unsupported(k),
        Kernel::Gather { index_bytes, .. } => {
            (!matches!(index_bytes, 1 | 4 | 8)).then(|| format!("{index_bytes}-byte indices"))
        }
        Kernel::Compare {
            shape,
            a,
            b,
            output,
            ..
        } => rank(
            &[(Some(a), "a"), (Some(b), "b"), (Some(output), "output")],
            shape.len(),
        ),
        Kernel::Logic {
            shape,
            op,
            a,
            b,
            output,
        } => {
            if (*op == LogicOp::Not) != b.is_none() {
                return Some(format!("{op:?} with the wrong number of operands"));
            }
            rank(
                &[(Some(a), "a"), (b.as_ref(), "b"), (Some(output), "output")],
                shape.len(),
            )
        }
        Kernel::Select {
            shape,
            elem_bytes,
            cond,
            a,
            b,
            output,
        } => {
            if elementwise::select_type(*elem_bytes).is_none() {
                return Some(format!("{elem_bytes}-byte elements"));
            }
            rank(
                &[
                    (Some(cond), "cond"),
                    (Some(a), "a"),
                    (Some(b), "b"),
                    (Some(output), "output"),
                ],
                shape.len(),
            )
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
                return Some(format!("integer arithmetic on {}", dtype.name()));
            }
            if op.is_binary() != b.is_some() {
                return Some(format!("{op:?} with the wrong number of operands"));
            }
            rank(
                &[(Some(a), "a"), (b.as_ref(), "b"), (Some(output), "output")],
                shape.len(),
            )
        }
        Kernel::CumSum { dtype, .. } => (!matches!(dtype, DType::F32 | DType::I32 | DType::I64))
            .then(|| format!("running sums of {}", dtype.name())),
    }
}

pub(crate) fn kernel(s: &mut String, k: &Kernel) -> Result<(), Error> {
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
        } => {
            check_rank(a, 2, "a")?;
            check_rank(c, 2, "c")?;
            zero_point(s, *a_zero, *a_dtype);
            if let QuantOut::Requant(r) = out {
                requant_table(s, r, *n)?;
            }
            let pa = ptr(a.buf, ctype(*a_dtype));
            let pb = ptr(Buffer::Const(*b), "i8a");
            let pc = ptr(c.buf, ctype(out.dtype()));
            let init = match bias {
                Some(bc) => format!("{}[j]", ptr(Buffer::Const(*bc), "i32a")),
                None => "0".into(),
            };
            let (a0, a1) = (a.strides[0], a.strides[1]);
            let (c0, c1) = (c.strides[0], c.strides[1]);
            let _ = writeln!(
                s,
                "    for (ix_t i = 0; i < {m}; i++) {{\n        for (ix_t j = 0; j < {n}; j++) {{\n            int32_t acc = {init};\n            for (ix_t kk = 0; kk < {k}; kk++) {{\n                int32_t x = (int32_t){pa}[{} + i * {a0} + kk * {a1}] - zp;\n                acc = ec_wadd(acc, x * (int32_t){pb}[kk * {n} + j]);\n            }}\n            {}\n        }}\n    }}",
                a.offset,
                store_quant(
                    out,
                    &pc,
                    &format!("{} + i * {c0} + j * {c1}", c.offset),
                    "j"
                )
            );
        }
        Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial: sp,
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
                return Err(Error(
                    "malformed program: groups must divide c_in and c_out".into(),
                ));
            }
            zero_point(s, *in_zero, *in_dtype);
            if let QuantOut::Requant(r) = out {
                requant_table(s, r, *c_out)?;
            }
            let (cpg, opg) = (c_in / g, c_out / g);
            let Spatial {
                n,
                in_h,
                in_w,
                out_h,
                out_w,
            } = *sp;
            let Window {
                kh,
                kw,
                stride_h,
                stride_w,
                dilation_h,
                dilation_w,
                pad_top,
                pad_left,
                ..
            } = *w;
            let px = ptr(*input, ctype(*in_dtype));
            let pw = ptr(Buffer::Const(*weight), "i8a");
            let po = ptr(*output, ctype(out.dtype()));
            let init = match bias {
                Some(bc) => format!("{}[co]", ptr(Buffer::Const(*bc), "i32a")),
                None => "0".into(),
            };
            // The group of `co` is found by looping over groups, not by dividing.
            let _ = writeln!(
                s,
                "    for (ix_t nn = 0; nn < {n}; nn++)\n    for (ix_t gr = 0; gr < {g}; gr++)\n    for (ix_t cg = 0; cg < {opg}; cg++) {{\n        const ix_t co = gr * {opg} + cg;\n        for (ix_t oy = 0; oy < {out_h}; oy++)\n        for (ix_t ox = 0; ox < {out_w}; ox++) {{\n            int32_t acc = {init};\n            for (ix_t ci = 0; ci < {cpg}; ci++) {{\n                const ix_t cin = gr * {cpg} + ci;\n                for (ix_t ky = 0; ky < {kh}; ky++) {{\n                    const ix_t iy = oy * {stride_h} - {pad_top} + ky * {dilation_h};\n                    if (iy < 0 || iy >= {in_h}) continue;\n                    for (ix_t kx = 0; kx < {kw}; kx++) {{\n                        const ix_t ix = ox * {stride_w} - {pad_left} + kx * {dilation_w};\n                        if (ix < 0 || ix >= {in_w}) continue;\n                        int32_t x = (int32_t){px}[((nn * {c_in} + cin) * {in_h} + iy) * {in_w} + ix] - zp;\n                        int32_t wv = (int32_t){pw}[((co * {cpg} + ci) * {kh} + ky) * {kw} + kx];\n                        acc = ec_wadd(acc, x * wv);\n                    }}\n                }}\n            }}\n            {}\n        }}\n    }}",
                store_quant(
                    out,
                    &po,
                    &format!("((nn * {c_out} + co) * {out_h} + oy) * {out_w} + ox"),
                    "co"
                )
            );
        }
        Kernel::Pool {
            kind,
            dtype: DType::F32,
            channels,
            spatial: sp,
            window: w,
            input,
            output,
        } => {
            let Spatial {
                in_h,
                in_w,
                out_h,
                out_w,
                ..
            } = *sp;
            // The executor's order: max ignores NaN like Rust's `f32::max`, the sum runs
            // over taps row by row, and the divisor is at least 1.
            let result = match kind {
                PoolKind::Max => "mx".to_string(),
                PoolKind::Avg {
                    count_include_pad: true,
                } => format!("sum / {}", float_lit((w.kh * w.kw).max(1) as f32)),
                PoolKind::Avg {
                    count_include_pad: false,
                } => "sum / (float)(cnt > 0 ? cnt : 1)".into(),
            };
            let _ = writeln!(
                s,
                "    for (ix_t c = 0; c < {channels}; c++)\n    for (ix_t oy = 0; oy < {out_h}; oy++)\n    for (ix_t ox = 0; ox < {out_w}; ox++) {{\n        float mx = ec_float(0xff800000u), sum = 0.0f;\n        int32_t cnt = 0;\n        for (ix_t ky = 0; ky < {}; ky++) {{\n            const ix_t iy = oy * {} - {} + ky * {};\n            for (ix_t kx = 0; kx < {}; kx++) {{\n                const ix_t ix = ox * {} - {} + kx * {};\n                if (iy < 0 || iy >= {in_h} || ix < 0 || ix >= {in_w}) continue;\n                const float v = {}[(c * {in_h} + iy) * {in_w} + ix];\n                mx = ec_max(mx, v);\n                sum += v;\n                cnt++;\n            }}\n        }}\n        (void)mx; (void)sum; (void)cnt;\n        {}[(c * {out_h} + oy) * {out_w} + ox] = {result};\n    }}",
                w.kh,
                w.stride_h,
                w.pad_top,
                w.dilation_h,
                w.kw,
                w.stride_w,
                w.pad_left,
                w.dilation_w,
                ptr(*input, "f32a"),
                ptr(*output, "f32a"),
            );
        }
        Kernel::Pool {
            dtype,
            channels,
            spatial: sp,
            window: w,
            input,
            output,
            ..
        } => {
            let t = ctype(*dtype);
            let min = if *dtype == DType::U8 { 0 } else { -128 };
            let Spatial {
                in_h,
                in_w,
                out_h,
                out_w,
                ..
            } = *sp;
            let _ = writeln!(
                s,
                "    for (ix_t c = 0; c < {channels}; c++)\n    for (ix_t oy = 0; oy < {out_h}; oy++)\n    for (ix_t ox = 0; ox < {out_w}; ox++) {{\n        int32_t mx = {min};\n        for (ix_t ky = 0; ky < {}; ky++) {{\n            const ix_t iy = oy * {} - {} + ky * {};\n            if (iy < 0 || iy >= {in_h}) continue;\n            for (ix_t kx = 0; kx < {}; kx++) {{\n                const ix_t ix = ox * {} - {} + kx * {};\n                if (ix < 0 || ix >= {in_w}) continue;\n                int32_t v = (int32_t){}[(c * {in_h} + iy) * {in_w} + ix];\n                if (v > mx) mx = v;\n            }}\n        }}\n        {}[(c * {out_h} + oy) * {out_w} + ox] = ({t})mx;\n    }}",
                w.kh,
                w.stride_h,
                w.pad_top,
                w.dilation_h,
                w.kw,
                w.stride_w,
                w.pad_left,
                w.dilation_w,
                ptr(*input, t),
                ptr(*output, t),
            );
        }
        Kernel::Convert {
            count,
            from,
            to,
            input,
            output,
        } => {
            if from == to && *from != DType::Bool {
                let bytes = count * from.size() as u64;
                let _ = writeln!(
                    s,
                    "    for (ix_t i = 0; i < {bytes}; i++) {}[i] = {}[i];",
                    ptr(*output, "u8a"),
                    ptr(*input, "u8a")
                );
                return Ok(());
            }
            let src = format!("{}[i]", ptr(*input, ctype(*from)));
            let v = if *from == DType::Bool {
                format!("({src} != 0)")
            } else {
                src
            };
            let conv = match (*from, *to) {
                (_, DType::Bool) => format!("({v} != 0)"),
                (DType::F32, DType::U8) => format!("ec_f2u8({v})"),
                (DType::F32, DType::I8) => format!("ec_f2i8({v})"),
                (DType::F32, DType::I32) => format!("ec_f2i32({v})"),
                (DType::F32, DType::I64) => format!("ec_f2i64({v})"),
                (_, DType::F32) => format!("(float){v}"),
                (_, t) => format!("({}){v}", ctype(t)),
            };
            let _ = writeln!(
                s,
                "    for (ix_t i = 0; i < {count}; i++) {}[i] = ({}){conv};",
                ptr(*output, ctype(*to)),
                ctype(*to)
            );
        }
        Kernel::QBinary { .. } => crate::qbinary::emit_c(s, k)?,
        Kernel::Copy { bytes, src, dst } => {
            let _ = writeln!(
                s,
                "    for (ix_t i = 0; i < {bytes}; i++) {}[i] = {}[i];",
                ptr(*dst, "u8a"),
                ptr(*src, "u8a")
            );
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
            let it = match index_bytes {
                1 => "i8a",
                4 => "i32a",
                _ => "i64a",
            };
            let pi = ptr(*indices, it);
            let n_idx = if *elementwise {
                outer * count * inner
            } else {
                *count
            };
            let _ = writeln!(
                s,
                "    for (ix_t i = 0; i < {n_idx}; i++) {{\n        int64_t x = (int64_t){pi}[i];\n        if (x < -{axis_len} || x >= {axis_len}) return 1;\n    }}"
            );
            let idx = if *elementwise {
                format!("{pi}[(o * {count} + i) * {inner} + k]")
            } else {
                format!("{pi}[i]")
            };
            let _ = writeln!(
                s,
                "    for (ix_t o = 0; o < {outer}; o++)\n    for (ix_t i = 0; i < {count}; i++)\n    for (ix_t k = 0; k < {inner}; k++) {{\n        int64_t x = (int64_t){idx};\n        if (x < 0) x += {axis_len};\n        const ix_t src = ((o * {axis_len} + x) * {inner} + k) * {elem_bytes};\n        const ix_t dst = ((o * {count} + i) * {inner} + k) * {elem_bytes};\n        for (ix_t b = 0; b < {elem_bytes}; b++) {}[dst + b] = {}[src + b];\n    }}",
                ptr(*output, "u8a"),
                ptr(*data, "u8a")
            );
        }
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
        } => Gemm {
            batch: *batch,
            m: *m,
            n: *n,
            k: *k,
            a,
            b,
            alpha: *alpha,
            bias: bias.as_ref(),
            residual: residual.as_ref(),
            act: *act,
            c,
        }
        .emit(s)?,
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
            scratch: _,
        } => Conv {
            c_in: *c_in,
            c_out: *c_out,
            groups: *groups,
            sp: *spatial,
            w: *window,
            input: *input,
            weight: *weight,
            bias: *bias,
            residual: *residual,
            act: *act,
            output: *output,
        }
        .emit(s)?,
        Kernel::Elementwise {
            shape,
            inputs,
            expr,
            output,
        } => elementwise::elementwise(s, shape, inputs, expr, output)?,
        Kernel::Compare {
            shape,
            op,
            dtype,
            a,
            b,
            output,
        } => elementwise::compare(s, shape, *op, *dtype, a, b, output)?,
        Kernel::Logic {
            shape,
            op,
            a,
            b,
            output,
        } => elementwise::logic(s, shape, *op, a, b.as_ref(), output)?,
        Kernel::Select {
            shape,
            elem_bytes,
            cond,
            a,
            b,
            output,
        } => elementwise::select(s, shape, *elem_bytes, [cond, a, b, output])?,
        Kernel::IntElementwise {
            shape,
            dtype,
            op,
            a,
            b,
            output,
        } => elementwise::int_elementwise(s, shape, *dtype, *op, a, b.as_ref(), output)?,
        Kernel::Softmax {
            outer,
            len,
            inner,
            input,
            output,
            scale,
            mask,
        } => rows::softmax(
            s,
            *outer,
            *len,
            *inner,
            *input,
            *output,
            *scale,
            mask.as_ref(),
        )?,
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
        } => rows::layer_norm(
            s,
            *outer,
            *len,
            *epsilon,
            *input,
            scale.as_ref(),
            bias.as_ref(),
            *output,
            *mean,
            *inv_std,
        )?,
        Kernel::Reduce {
            op,
            outer,
            len,
            inner,
            input,
            output,
        } => rows::reduce(s, *op, *outer, *len, *inner, *input, *output)?,
        Kernel::CumSum {
            outer,
            len,
            inner,
            dtype,
            exclusive,
            reverse,
            input,
            output,
        } => rows::cumsum(
            s, *outer, *len, *inner, *dtype, *exclusive, *reverse, *input, *output,
        )?,
    }
    Ok(())
}
