//! Plain, portable C for every kernel: the whole program without HVX, and the fallback
//! for what the HVX kernels do not cover.

use std::fmt::Write;

use edgecc_program::{
    Buffer, DType, ExprNode, Kernel, PoolKind, QuantOut, Spatial, UnaryOp, Window,
};

use crate::Error;
use crate::c::*;

/// Why `k` cannot be emitted yet, or `None` when it can.
pub(crate) fn unsupported(k: &Kernel) -> Option<String> {
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
            None
        }
        Kernel::Pool { kind, dtype, .. } => match (kind, dtype) {
            (PoolKind::Max, DType::U8 | DType::I8) => None,
            (_, DType::F32) => None,
            _ => Some(format!("{kind:?} pooling of {}", dtype.name())),
        },
        // Every pair: int64 <-> f32 are single instructions (convert_d2sf, convert_sf2d).
        Kernel::Convert { .. } => None,
        Kernel::Elementwise { expr, .. } => {
            let bad: Vec<String> = expr
                .iter()
                .filter_map(|e| match e {
                    ExprNode::Unary(op, _)
                        if !matches!(
                            op,
                            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Round
                        ) =>
                    {
                        Some(format!("{op:?}"))
                    }
                    ExprNode::Binary(edgecc_program::BinaryOp::Pow, _, _) => Some("Pow".into()),
                    _ => None,
                })
                .collect();
            (!bad.is_empty()).then(|| format!("unary/binary ops {}", bad.join(", ")))
        }
        Kernel::QBinary { .. } => crate::qbinary::unsupported(k),
        Kernel::Copy { .. } => None,
        Kernel::Gather { index_bytes, .. } => {
            (!matches!(index_bytes, 1 | 4 | 8)).then(|| format!("{index_bytes}-byte indices"))
        }
        Kernel::Select { elem_bytes, .. } => {
            (!matches!(elem_bytes, 1 | 4 | 8)).then(|| format!("{elem_bytes}-byte elements"))
        }
        _ => Some("kernel".into()),
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
        Kernel::Elementwise {
            shape,
            inputs,
            expr,
            output,
        } => {
            for (i, v) in inputs.iter().enumerate() {
                check_rank(v, shape.len(), &format!("input {i}"))?;
            }
            check_rank(output, shape.len(), "output")?;
            let (ind, depth) = open_loops(s, shape);
            for (j, e) in expr.iter().enumerate() {
                let get = |x: u32| -> Result<String, Error> {
                    if (x as usize) < j {
                        Ok(format!("v{x}"))
                    } else {
                        Err(Error(
                            "malformed program: expression operand out of order".into(),
                        ))
                    }
                };
                let rhs = match *e {
                    ExprNode::Input(i) => {
                        let v = inputs.get(i as usize).ok_or_else(|| {
                            Error("malformed program: expression input out of range".into())
                        })?;
                        format!("{}[{}]", ptr(v.buf, "f32a"), at(v))
                    }
                    ExprNode::Const(c) => float_lit(c),
                    ExprNode::Unary(op, x) => {
                        let x = get(x)?;
                        match op {
                            UnaryOp::Neg => format!("-{x}"),
                            UnaryOp::Abs => format!("ec_abs({x})"),
                            UnaryOp::Relu => format!("ec_relu({x})"),
                            UnaryOp::Round => format!("ec_round({x})"),
                            _ => return Err(Error(format!("unary {op:?} not supported"))),
                        }
                    }
                    ExprNode::Binary(op, a, b) => {
                        let (a, b) = (get(a)?, get(b)?);
                        use edgecc_program::BinaryOp as B;
                        match op {
                            B::Add => format!("{a} + {b}"),
                            B::Sub => format!("{a} - {b}"),
                            B::Mul => format!("{a} * {b}"),
                            B::Div => format!("{a} / {b}"),
                            B::Max => format!("ec_max({a}, {b})"),
                            B::Min => format!("ec_min({a}, {b})"),
                            B::Pow => return Err(Error("binary Pow not supported".into())),
                        }
                    }
                    ExprNode::Clip { x, lo, hi } => {
                        format!("ec_clip({}, {}, {})", get(x)?, float_lit(lo), float_lit(hi))
                    }
                };
                let _ = writeln!(s, "{ind}const float v{j} = {rhs};");
            }
            if expr.is_empty() {
                return Err(Error("malformed program: empty expression".into()));
            }
            let _ = writeln!(
                s,
                "{ind}{}[{}] = v{};",
                ptr(output.buf, "f32a"),
                at(output),
                expr.len() - 1
            );
            close_loops(s, depth);
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
        Kernel::Select {
            shape,
            elem_bytes,
            cond,
            a,
            b,
            output,
        } => {
            for (v, what) in [(cond, "cond"), (a, "a"), (b, "b"), (output, "output")] {
                check_rank(v, shape.len(), what)?;
            }
            let t = match elem_bytes {
                1 => "u8a",
                4 => "i32a",
                _ => "i64a",
            };
            let (ind, depth) = open_loops(s, shape);
            let _ = writeln!(
                s,
                "{ind}{}[{}] = {}[{}] ? {}[{}] : {}[{}];",
                ptr(output.buf, t),
                at(output),
                ptr(cond.buf, "u8a"),
                at(cond),
                ptr(a.buf, t),
                at(a),
                ptr(b.buf, t),
                at(b)
            );
            close_loops(s, depth);
        }
        other => {
            return Err(Error(format!(
                "{} not supported by the hexagon target yet",
                other.name()
            )));
        }
    }
    Ok(())
}
