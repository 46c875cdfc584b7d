//! Kernels over the rows of a dense `[outer, len, inner]` tensor: softmax, layer
//! normalization, reductions and running sums. With `inner == 1` a row is contiguous;
//! otherwise the inner index runs innermost (contiguous) wherever the kernel allows.

use std::fmt::Write;

use edgecc_program::{Buffer, DType, ReduceOp, SoftmaxMask, View};

use crate::Error;
use crate::c::*;

/// `softmax(scale · x + mask)` along `len`, three passes per row through the output: the
/// scaled, masked scores and their maximum (NaN ignored, as `f32::max`), then `e^(t −
/// max)` and their sum, then the products with `1 / sum` (within an ulp of the
/// executor's quotients). The input is read only in the first pass, before the output
/// element at the same place is written, so the output may be the input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn softmax(
    s: &mut String,
    outer: u64,
    len: u64,
    inner: u64,
    input: Buffer,
    output: Buffer,
    scale: f32,
    mask: Option<&SoftmaxMask>,
) -> Result<(), Error> {
    if outer == 0 || len == 0 || inner == 0 {
        return Ok(());
    }
    // The outer loops: one per mask dim (flattened row-major into `o`), repeated when the
    // mask dims cover only the last part of `outer` (as the executor's `%` does).
    let dims: Vec<u64> = mask.map(|m| m.outer.clone()).unwrap_or_default();
    let prod: u64 = dims.iter().product();
    if let Some(m) = mask
        && (m.view.strides.len() != dims.len() + 2 || prod == 0 || !outer.is_multiple_of(prod))
    {
        return Err(Error(
            "malformed program: softmax mask dims do not fit the rows".into(),
        ));
    }
    let mut ind = String::from("    ");
    let _ = writeln!(
        s,
        "{ind}for (ix_t oh = 0; oh < {}; oh++) {{",
        outer / prod.max(1)
    );
    let mut o = String::from("oh");
    for (d, n) in dims.iter().enumerate() {
        ind.push_str("    ");
        let _ = writeln!(s, "{ind}for (ix_t q{d} = 0; q{d} < {n}; q{d}++) {{");
        o = format!("({o}) * {n} + q{d}");
    }
    ind.push_str("    ");
    let _ = writeln!(s, "{ind}const ix_t o = {o};");
    if let Some(m) = mask {
        let mut mo = m.view.offset.to_string();
        for (d, st) in m.view.strides[..dims.len()].iter().enumerate() {
            if *st != 0 {
                let _ = write!(mo, " + q{d} * {st}");
            }
        }
        let _ = writeln!(s, "{ind}const ix_t mo = {mo};");
    }
    let _ = writeln!(s, "{ind}for (ix_t i = 0; i < {inner}; i++) {{");
    let i2 = format!("{ind}    ");
    let _ = writeln!(
        s,
        "{i2}const f32a *x = {} + o * {} + i;\n{i2}f32a *y = {} + o * {} + i;\n{i2}float mx = ec_float(0xff800000u);",
        ptr(input, "f32a"),
        len * inner,
        ptr(output, "f32a"),
        len * inner
    );
    let _ = writeln!(s, "{i2}for (ix_t l = 0; l < {len}; l++) {{");
    let _ = writeln!(s, "{i2}    float v = x[l * {inner}];");
    if scale != 1.0 {
        let _ = writeln!(s, "{i2}    v = v * {};", float_lit(scale));
    }
    if let Some(m) = mask {
        let k = dims.len();
        let (sl, si) = (m.view.strides[k], m.view.strides[k + 1]);
        let _ = writeln!(
            s,
            "{i2}    v = v + {}[mo + l * {sl} + i * {si}];",
            ptr(m.view.buf, "f32a")
        );
    }
    let _ = writeln!(
        s,
        "{i2}    y[l * {inner}] = v;\n{i2}    mx = ec_max(mx, v);\n{i2}}}\n{i2}float sum = 0.0f;\n{i2}for (ix_t l = 0; l < {len}; l++) {{\n{i2}    const float d = y[l * {inner}] - mx;\n{i2}    const float e = ec_exp(d);\n{i2}    y[l * {inner}] = e;\n{i2}    sum += e;\n{i2}}}\n{i2}const float inv = 1.0f / sum;\n{i2}for (ix_t l = 0; l < {len}; l++) y[l * {inner}] = y[l * {inner}] * inv;"
    );
    let _ = writeln!(s, "{ind}}}");
    for d in (0..dims.len() + 1).rev() {
        let _ = writeln!(s, "{}}}", "    ".repeat(d + 1));
    }
    Ok(())
}

/// `acc{0..4} = op(acc, x[...])` over `len` elements of stride 1 at `x`, four partial
/// accumulators (reassociation the contract allows), then combined into `name`.
fn partial_fold(
    s: &mut String,
    ind: &str,
    name: &str,
    len: u64,
    init: &str,
    op: &dyn Fn(&str, &str) -> String,
    term: &dyn Fn(&str) -> String,
) {
    let full = len - len % 4;
    let _ = writeln!(
        s,
        "{ind}float {name}0 = {init}, {name}1 = {init}, {name}2 = {init}, {name}3 = {init};"
    );
    if full > 0 {
        let _ = writeln!(s, "{ind}for (ix_t l = 0; l < {full}; l += 4) {{");
        for q in 0..4 {
            let _ = writeln!(
                s,
                "{ind}    {name}{q} = {};",
                op(&format!("{name}{q}"), &term(&format!("l + {q}")))
            );
        }
        let _ = writeln!(s, "{ind}}}");
    }
    for (q, l) in (full..len).enumerate() {
        let _ = writeln!(
            s,
            "{ind}{name}{q} = {};",
            op(&format!("{name}{q}"), &term(&l.to_string()))
        );
    }
    let _ = writeln!(
        s,
        "{ind}float {name} = {};",
        op(
            &op(&format!("{name}0"), &format!("{name}1")),
            &op(&format!("{name}2"), &format!("{name}3"))
        )
    );
}

/// Layer normalization, row by row: the sum and the sum of squared deviations in four
/// partial sums each, `inv = 1 / sqrt(var + ε)` (correctly rounded square root), then
/// `(x − mean) · inv · scale + bias` rounded step by step. In place is fine: each element
/// is read before the output element at its place is written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm(
    s: &mut String,
    outer: u64,
    len: u64,
    epsilon: f32,
    input: Buffer,
    scale: Option<&View>,
    bias: Option<&View>,
    output: Buffer,
    mean: Option<Buffer>,
    inv_std: Option<Buffer>,
) -> Result<(), Error> {
    for (v, what) in [(scale, "scale"), (bias, "bias")] {
        if let Some(v) = v {
            check_rank(v, 1, what)?;
        }
    }
    let n = float_lit(len as f32);
    let _ = writeln!(
        s,
        "    for (ix_t o = 0; o < {outer}; o++) {{\n        const f32a *x = {} + o * {len};\n        f32a *y = {} + o * {len};",
        ptr(input, "f32a"),
        ptr(output, "f32a")
    );
    let add = |a: &str, b: &str| format!("{a} + {b}");
    partial_fold(s, "        ", "sum", len, "0.0f", &add, &|l| {
        format!("x[{l}]")
    });
    let _ = writeln!(s, "        const float mean = sum / {n};");
    partial_fold(s, "        ", "sq", len, "0.0f", &add, &|l| {
        format!("(x[{l}] - mean) * (x[{l}] - mean)")
    });
    let _ = writeln!(
        s,
        "        const float var = sq / {n};\n        const float inv = 1.0f / ec_sqrt(var + {});",
        float_lit(epsilon)
    );
    let _ = writeln!(
        s,
        "        for (ix_t l = 0; l < {len}; l++) {{\n            const float d = x[l] - mean;\n            float v = d * inv;"
    );
    if let Some(sc) = scale {
        let _ = writeln!(
            s,
            "            v = v * {}[{} + l * {}];",
            ptr(sc.buf, "f32a"),
            sc.offset,
            sc.strides[0]
        );
    }
    if let Some(b) = bias {
        let _ = writeln!(
            s,
            "            v = v + {}[{} + l * {}];",
            ptr(b.buf, "f32a"),
            b.offset,
            b.strides[0]
        );
    }
    s.push_str("            y[l] = v;\n        }\n");
    if let Some(m) = mean {
        let _ = writeln!(s, "        {}[o] = mean;", ptr(m, "f32a"));
    }
    if let Some(m) = inv_std {
        let _ = writeln!(s, "        {}[o] = inv;", ptr(m, "f32a"));
    }
    s.push_str("    }\n");
    Ok(())
}

/// A reduction along `len`: contiguous rows in four partial accumulators; with `inner >
/// 1` the output row accumulates while the inner index runs innermost. Max and Min
/// propagate NaN (`ec_nmax`, `ec_nmin`); `len == 0` gives the neutral element (Mean: 0/0).
#[allow(clippy::too_many_arguments)]
pub(crate) fn reduce(
    s: &mut String,
    op: ReduceOp,
    outer: u64,
    len: u64,
    inner: u64,
    input: Buffer,
    output: Buffer,
) -> Result<(), Error> {
    let init = match op {
        ReduceOp::Sum | ReduceOp::Mean => "0.0f",
        ReduceOp::Max => "ec_float(0xff800000u)",
        ReduceOp::Min => "ec_float(0x7f800000u)",
        ReduceOp::Prod => "1.0f",
    };
    let f = move |a: &str, b: &str| match op {
        ReduceOp::Sum | ReduceOp::Mean => format!("{a} + {b}"),
        ReduceOp::Prod => format!("{a} * {b}"),
        ReduceOp::Max => format!("ec_nmax({a}, {b})"),
        ReduceOp::Min => format!("ec_nmin({a}, {b})"),
    };
    let (x, y) = (ptr(input, "f32a"), ptr(output, "f32a"));
    let mean = if op == ReduceOp::Mean {
        format!(" / {}", float_lit(len as f32))
    } else {
        String::new()
    };
    if inner == 1 {
        let _ = writeln!(
            s,
            "    for (ix_t o = 0; o < {outer}; o++) {{\n        const f32a *x = {x} + o * {len};"
        );
        if len == 0 {
            s.push_str("        (void)x;\n");
        }
        partial_fold(s, "        ", "acc", len, init, &f, &|l| format!("x[{l}]"));
        let _ = writeln!(s, "        {y}[o] = acc{mean};\n    }}");
    } else {
        let _ = writeln!(
            s,
            "    for (ix_t o = 0; o < {outer}; o++) {{\n        const f32a *x = {x} + o * {};\n        f32a *y = {y} + o * {inner};\n        for (ix_t i = 0; i < {inner}; i++) y[i] = {init};\n        for (ix_t l = 0; l < {len}; l++)\n            for (ix_t i = 0; i < {inner}; i++) y[i] = {};",
            len * inner,
            f("y[i]", &format!("x[l * {inner} + i]"))
        );
        if !mean.is_empty() {
            let _ = writeln!(
                s,
                "        for (ix_t i = 0; i < {inner}; i++) y[i] = y[i]{mean};"
            );
        }
        s.push_str("    }\n");
    }
    Ok(())
}

/// Running sums along `len` in exactly the executor's order (one f32 addition per step,
/// no reassociation; integers wrap through the unsigned type), the inner index innermost.
/// Each step reads the previous output row: `inclusive: y[k] = y[k−1] + x[k]`,
/// `exclusive: y[k] = y[k−1] + x[k−1]` (steps counted in scan order).
#[allow(clippy::too_many_arguments)]
pub(crate) fn cumsum(
    s: &mut String,
    outer: u64,
    len: u64,
    inner: u64,
    dtype: DType,
    exclusive: bool,
    reverse: bool,
    input: Buffer,
    output: Buffer,
) -> Result<(), Error> {
    let (t, add): (&str, fn(&str, &str) -> String) = match dtype {
        DType::F32 => ("f32a", |a, b| format!("{a} + {b}")),
        DType::I32 => ("i32a", |a, b| {
            format!("(int32_t)((uint32_t){a} + (uint32_t){b})")
        }),
        DType::I64 => ("i64a", |a, b| {
            format!("(int64_t)((uint64_t){a} + (uint64_t){b})")
        }),
        _ => {
            return Err(Error(format!(
                "malformed program: cumsum of {}",
                dtype.name()
            )));
        }
    };
    if len == 0 || inner == 0 {
        return Ok(());
    }
    let zero = if dtype == DType::F32 { "0.0f" } else { "0" };
    // Scan step `st` visits row `k`; the previous step visited `kp`.
    let (k0, k, kp) = if reverse {
        (
            format!("{}", len - 1),
            format!("({} - st)", len - 1),
            format!("({} - st)", len),
        )
    } else {
        ("0".to_string(), "st".to_string(), "(st - 1)".to_string())
    };
    let first = if exclusive {
        zero.to_string()
    } else {
        add(zero, &format!("x[{k0} * {inner} + i]"))
    };
    let xk = if exclusive { &kp } else { &k };
    let _ = writeln!(
        s,
        "    for (ix_t o = 0; o < {outer}; o++) {{\n        const {t} *x = {} + o * {};\n        {t} *y = {} + o * {};\n        for (ix_t i = 0; i < {inner}; i++) y[{k0} * {inner} + i] = {first};\n        for (ix_t st = 1; st < {len}; st++)\n            for (ix_t i = 0; i < {inner}; i++)\n                y[{k} * {inner} + i] = {};\n    }}",
        ptr(input, t),
        len * inner,
        ptr(output, t),
        len * inner,
        add(
            &format!("y[{kp} * {inner} + i]"),
            &format!("x[{xk} * {inner} + i]")
        )
    );
    Ok(())
}
