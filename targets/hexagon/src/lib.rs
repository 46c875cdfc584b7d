//! The Hexagon target of edgecc: one portable C file from a lowered [`Program`].
//!
//! This first slice emits plain scalar C (no HVX yet) for the int8 CNN path, the
//! foundation the HVX kernels will plug into. The C is freestanding: no libc, no libm and
//! no run-time integer division (Hexagon has no compiler-rt on the machines we test
//! with), so every loop bound and index multiplier is a compile-time literal. The entry
//! point has the signature of the Cranelift target's, so the same `model.h` works:
//! `int32_t <name>_run(const void *const *inputs, void *const *outputs, void *arena)`.
//!
//! Integer kernels match [`edgecc_program::exec`] bit for bit. Kernels and ops this slice
//! does not cover are refused with one [`Error`] listing all of them.

use std::fmt::{self, Write};

use edgecc_program::{
    Buffer, DType, ExprNode, Kernel, PoolKind, Program, QuantOut, Requant, Spatial, UnaryOp, View,
    Window, ZeroPoint,
};

/// Why a program cannot be emitted as Hexagon C.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Writes the C file for `p`.
pub fn emit_c(p: &Program) -> Result<String, Error> {
    if !p
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || p.name.is_empty()
        || p.name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(Error(format!(
            "model name `{}` is not a C identifier",
            p.name
        )));
    }
    let unsupported: Vec<String> = p
        .kernels
        .iter()
        .enumerate()
        .filter_map(|(i, k)| unsupported(k).map(|why| format!("kernel {i} ({}): {why}", k.name())))
        .collect();
    if !unsupported.is_empty() {
        return Err(Error(format!(
            "not supported by the hexagon target yet: {}",
            unsupported.join("; ")
        )));
    }
    let sizes = p.inputs.iter().chain(&p.outputs).map(|t| t.byte_size());
    let sizes = sizes.chain(p.consts.iter().map(|c| c.data.len() as u64));
    if p.arena_size >= 1 << 31 || sizes.into_iter().any(|b| b >= 1 << 31) {
        return Err(Error(
            "a buffer of 2 GiB or more does not fit the hexagon target's 32-bit indices".into(),
        ));
    }
    let mut s = String::new();
    s.push_str(PRELUDE);
    for (i, c) in p.consts.iter().enumerate() {
        let _ = write!(
            s,
            "/* {} */\nstatic const uint8_t c{i}[{}] __attribute__((aligned(128))) = {{",
            c.name.replace("*/", "* /"),
            c.data.len().max(1)
        );
        for (j, b) in c.data.iter().enumerate() {
            if j % 24 == 0 {
                s.push_str("\n   ");
            }
            let _ = write!(s, " {b},");
        }
        if c.data.is_empty() {
            s.push_str(" 0");
        }
        s.push_str("\n};\n");
    }
    for (i, k) in p.kernels.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nstatic int32_t k{i}_{}(const void *const *inputs, void *const *outputs, uint8_t *arena) {{\n    (void)inputs; (void)outputs; (void)arena;",
            k.name()
        );
        kernel(&mut s, k)?;
        s.push_str("    return 0;\n}\n");
    }
    let _ = writeln!(
        s,
        "\nint32_t {}_run(const void *const *inputs, void *const *outputs, void *arena) {{\n    uint8_t *a = (uint8_t *)arena;\n    int32_t st;\n    (void)a; (void)st;",
        p.name
    );
    for (i, k) in p.kernels.iter().enumerate() {
        let _ = writeln!(
            s,
            "    if ((st = k{i}_{}(inputs, outputs, a)) != 0) return st;",
            k.name()
        );
    }
    s.push_str("    return 0;\n}\n");
    descriptor(&mut s, p)?;
    Ok(s)
}

/// The types of the artifact ABI (`model.h`'s `edgecc_tensor_desc`, `edgecc_model_desc`),
/// declared here too so the C file stands alone; same members, so the same layout.
const ABI_TYPES: &str = r#"
#ifndef EDGECC_ABI_H
typedef struct edgecc_tensor_desc {
    const char *name;
    uint32_t dtype;
    uint32_t rank;
    uint64_t byte_size;
    uint64_t shape[8];
} edgecc_tensor_desc;

typedef struct edgecc_model_desc {
    uint32_t magic;
    uint32_t abi_version;
    const char *name;
    uint64_t arena_size;
    uint64_t arena_align;
    uint32_t num_inputs;
    uint32_t num_outputs;
    const edgecc_tensor_desc *inputs;
    const edgecc_tensor_desc *outputs;
    int32_t (*run)(const void *const *inputs, void *const *outputs, void *arena);
} edgecc_model_desc;
#endif
"#;

/// Emits `<name>_model`, the descriptor `model.h` declares (ABI version 1, magic "EDGC"),
/// so code using the header links against this file as against the Cranelift object.
fn descriptor(s: &mut String, p: &Program) -> Result<(), Error> {
    s.push_str(ABI_TYPES);
    let name = &p.name;
    for (kind, ts) in [("inputs", &p.inputs), ("outputs", &p.outputs)] {
        if ts.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "static const edgecc_tensor_desc {name}_{kind}[{}] = {{",
            ts.len()
        );
        for t in ts {
            if t.shape.len() > 8 {
                return Err(Error(format!(
                    "tensor `{}` has rank {}, the artifact ABI allows at most 8",
                    t.name,
                    t.shape.len()
                )));
            }
            let mut shape: Vec<String> = t.shape.iter().map(|d| format!("{d}u")).collect();
            shape.resize(8, "0u".into());
            let _ = writeln!(
                s,
                "    {{ {}, {}u, {}u, {}u, {{ {} }} }},",
                c_string(&t.name),
                t.dtype as u32,
                t.shape.len(),
                t.byte_size(),
                shape.join(", ")
            );
        }
        s.push_str("};\n");
    }
    let list = |kind: &str, n: usize| {
        if n == 0 {
            "0".to_string()
        } else {
            format!("{name}_{kind}")
        }
    };
    let _ = writeln!(
        s,
        "const edgecc_model_desc {name}_model = {{\n    0x43474445u, 1u, {}, {}u, {}u, {}u, {}u, {}, {}, {name}_run\n}};",
        c_string(name),
        p.arena_size,
        p.arena_align,
        p.inputs.len(),
        p.outputs.len(),
        list("inputs", p.inputs.len()),
        list("outputs", p.outputs.len()),
    );
    Ok(())
}

/// `text` as a C string literal: printable ASCII verbatim, everything else in octal.
fn c_string(text: &str) -> String {
    let mut s = String::from("\"");
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && b != b'?' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\{b:03o}");
        }
    }
    s.push('"');
    s
}

/// Helpers every file starts with. Pointer types are `may_alias` because the arena holds
/// tensors of different types over time; the float helpers avoid libm.
const PRELUDE: &str = r#"/* Generated by edgecc (hexagon target, portable C). Do not edit. */
#include <stdint.h>

/* Helpers only some kernels use. */
#define EC_FN static inline __attribute__((unused))

typedef float f32a __attribute__((may_alias));
typedef int32_t i32a __attribute__((may_alias));
typedef int64_t i64a __attribute__((may_alias));
/* Loop indices: Hexagon addresses are 32 bits, and emit_c refuses buffers of 2 GiB or more. */
typedef int32_t ix_t;
typedef uint8_t u8a;
typedef int8_t i8a;

EC_FN uint32_t ec_bits(float x) { union { float f; uint32_t u; } v; v.f = x; return v.u; }
EC_FN float ec_float(uint32_t u) { union { float f; uint32_t u; } v; v.u = u; return v.f; }
EC_FN float ec_abs(float x) { return ec_float(ec_bits(x) & 0x7fffffffu); }
/* Ties to even without libm: adding and subtracting 2^23 rounds in the default mode;
   |x| >= 2^23 (and inf, NaN) are already integers; the sign is restored so -0.3 -> -0. */
EC_FN float ec_round(float x) {
    float a = ec_abs(x);
    if (!(a < 8388608.0f)) return x;
    volatile float t = a + 8388608.0f;
    float r = t - 8388608.0f;
    return ec_float(ec_bits(r) | (ec_bits(x) & 0x80000000u));
}
EC_FN float ec_max(float a, float b) { return a != a ? b : (b != b ? a : (a > b ? a : b)); }
EC_FN float ec_min(float a, float b) { return a != a ? b : (b != b ? a : (a < b ? a : b)); }
EC_FN float ec_relu(float a) { return a > 0.0f ? a : 0.0f; }
EC_FN float ec_clip(float x, float lo, float hi) { return x != x ? x : ec_min(ec_max(x, lo), hi); }
EC_FN uint8_t ec_f2u8(float x) { return x != x ? 0 : x <= 0.0f ? 0 : x >= 255.0f ? 255 : (uint8_t)x; }
EC_FN int8_t ec_f2i8(float x) { return x != x ? 0 : x <= -128.0f ? -128 : x >= 127.0f ? 127 : (int8_t)x; }
EC_FN int32_t ec_f2i32(float x) {
    return x != x ? 0 : x <= -2147483648.0f ? INT32_MIN : x >= 2147483648.0f ? INT32_MAX : (int32_t)x;
}
EC_FN int64_t ec_f2i64(float x) {
    return x != x ? 0 : x <= -9223372036854775808.0f ? INT64_MIN : x >= 9223372036854775808.0f ? INT64_MAX : (int64_t)x;
}
EC_FN int32_t ec_wadd(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
EC_FN int32_t ec_requant(int32_t acc, int32_t m, int shift, int32_t zp, int32_t lo, int32_t hi) {
    int64_t r = ((int64_t)acc * (int64_t)m + ((int64_t)1 << (shift - 1))) >> shift;
    r += zp;
    return r < lo ? lo : r > hi ? hi : (int32_t)r;
}
"#;

/// Why `k` cannot be emitted yet, or `None` when it can.
fn unsupported(k: &Kernel) -> Option<String> {
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

/// The C type (a `may_alias` typedef) of one element of `d`.
fn ctype(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32a",
        DType::U8 | DType::Bool => "u8a",
        DType::I8 => "i8a",
        DType::I32 => "i32a",
        DType::I64 => "i64a",
    }
}

/// A C expression pointing at the start of `b`, typed `T *`.
fn ptr(b: Buffer, t: &str) -> String {
    match b {
        Buffer::Arena { offset } => format!("(({t} *)(arena + {offset}))"),
        Buffer::Input(i) => format!("(({t} *)inputs[{i}])"),
        Buffer::Output(i) => format!("(({t} *)outputs[{i}])"),
        Buffer::Const(c) => format!("(({t} *)c{})", c.0),
    }
}

/// The element offset of `v` at loop indices `i0, i1, ..` (one per stride).
fn at(v: &View) -> String {
    let mut s = format!("{}", v.offset);
    for (d, st) in v.strides.iter().enumerate() {
        if *st != 0 {
            let _ = write!(s, " + i{d} * {st}");
        }
    }
    s
}

fn check_rank(v: &View, rank: usize, what: &str) -> Result<(), Error> {
    if v.strides.len() == rank {
        Ok(())
    } else {
        Err(Error(format!(
            "malformed program: view `{what}` has {} strides, expected {rank}",
            v.strides.len()
        )))
    }
}

/// Opens one loop per dimension of `shape` (`i0`, `i1`, ..) and returns the indentation
/// and the number of braces to close.
fn open_loops(s: &mut String, shape: &[u64]) -> (String, usize) {
    let mut ind = String::from("    ");
    for (d, n) in shape.iter().enumerate() {
        let _ = writeln!(s, "{ind}for (ix_t i{d} = 0; i{d} < {n}; i{d}++) {{");
        ind.push_str("    ");
    }
    (ind, shape.len())
}

fn close_loops(s: &mut String, n: usize) {
    for d in (0..n).rev() {
        let _ = writeln!(s, "{}}}", "    ".repeat(d + 1));
    }
}

/// Emits the zero point as a local `zp` of the operand dtype's value.
fn zero_point(s: &mut String, z: ZeroPoint, d: DType) {
    match z {
        ZeroPoint::Const(v) => {
            let _ = writeln!(s, "    const int32_t zp = {v};");
        }
        ZeroPoint::Runtime(b) => {
            let _ = writeln!(
                s,
                "    const int32_t zp = (int32_t){}[0];",
                ptr(b, ctype(d))
            );
        }
    }
}

/// Emits the multiplier table of `r` (or nothing for one multiplier).
fn requant_table(s: &mut String, r: &Requant, channels: u32) -> Result<(), Error> {
    if r.multiplier.len() != 1 {
        if r.multiplier.len() < channels as usize {
            return Err(Error(
                "malformed program: fewer multipliers than channels".into(),
            ));
        }
        let _ = write!(
            s,
            "    static const int32_t mult[{}] = {{",
            r.multiplier.len()
        );
        for m in &r.multiplier {
            let _ = write!(s, " {m},");
        }
        s.push_str(" };\n");
    }
    Ok(())
}

/// The C statement storing accumulator `acc` for channel expression `ch` at `dst[idx]`.
fn store_quant(out: &QuantOut, dst: &str, idx: &str, ch: &str) -> String {
    match out {
        QuantOut::I32 => format!("{dst}[{idx}] = acc;"),
        QuantOut::Requant(r) => {
            let m = if r.multiplier.len() == 1 {
                r.multiplier[0].to_string()
            } else {
                format!("mult[{ch}]")
            };
            format!(
                "{dst}[{idx}] = ({})ec_requant(acc, {m}, {}, {}, {}, {});",
                ctype(r.dtype),
                r.shift,
                r.zero_point,
                r.lo,
                r.hi
            )
        }
    }
}

fn kernel(s: &mut String, k: &Kernel) -> Result<(), Error> {
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

/// An exact C float literal for `x` (bit pattern for non-finite values).
fn float_lit(x: f32) -> String {
    if x.is_finite() {
        format!("{x:?}f")
    } else {
        format!("ec_float(0x{:08x}u)", x.to_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgecc_program::IoTensor;

    fn program(shape: Vec<u64>) -> Program {
        Program {
            name: "t".into(),
            inputs: vec![],
            outputs: vec![IoTensor {
                name: "y\"\\?é".into(),
                dtype: DType::U8,
                shape,
            }],
            arena_size: 0,
            arena_align: 64,
            consts: vec![],
            kernels: vec![],
        }
    }

    #[test]
    fn c_strings_escape_quotes_backslashes_trigraphs_and_non_ascii() {
        assert_eq!(c_string("a\"b\\c?é"), "\"a\\042b\\134c\\077\\303\\251\"");
    }

    #[test]
    fn float_literals_are_exact() {
        assert_eq!(float_lit(0.1), "0.1f");
        assert_eq!(float_lit(-3.0), "-3.0f");
        assert_eq!(float_lit(f32::NEG_INFINITY), "ec_float(0xff800000u)");
        let nan = float_lit(f32::from_bits(0x7fc0_0001));
        assert_eq!(nan, "ec_float(0x7fc00001u)");
    }

    #[test]
    fn descriptor_names_are_escaped_and_shapes_padded() {
        let c = emit_c(&program(vec![2, 3])).unwrap();
        assert!(
            c.contains(
                "{ \"y\\042\\134\\077\\303\\251\", 2u, 2u, 6u, { 2u, 3u, 0u, 0u, 0u, 0u, 0u, 0u } }"
            ),
            "{c}"
        );
        assert!(c.contains("const edgecc_model_desc t_model"), "{c}");
    }

    #[test]
    fn refuses_rank_over_8_huge_buffers_and_bad_names() {
        let e = emit_c(&program(vec![1; 9])).unwrap_err();
        assert!(e.0.contains("rank 9"), "{e}");
        let e = emit_c(&program(vec![1 << 31])).unwrap_err();
        assert!(e.0.contains("2 GiB"), "{e}");
        let mut p = program(vec![1]);
        p.name = "9x".into();
        assert!(emit_c(&p).unwrap_err().0.contains("C identifier"));
    }
}
