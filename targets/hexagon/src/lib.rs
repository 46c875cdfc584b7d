//! The Hexagon target of edgecc: one portable C file from a lowered [`Program`].
//!
//! The C is freestanding: no libc, no libm and no run-time integer division (Hexagon has
//! no compiler-rt on the machines we test with), so every loop bound and index multiplier
//! is a compile-time literal. The entry point has the signature of the Cranelift
//! target's, so the same `model.h` works:
//! `int32_t <name>_run(const void *const *inputs, void *const *outputs, void *arena)`.
//!
//! With [`Hvx::B128`] the int8 kernels use HVX intrinsics (`hvx`); everything else, and
//! the whole program with [`Hvx::Off`], is plain C (`scalar`, which dispatches the float
//! kernels to `gemm`, `conv`, `rows` and `elementwise`; transcendentals are the
//! polynomials of `math`, no libm). Every kernel of the program contract is covered;
//! integer kernels match [`edgecc_program::exec`] bit for bit, float ones within the
//! tolerances `tests/float.rs` and `tests/math.rs` state. The object clang makes of the C
//! has no undefined symbol. What the contract does not allow (or a malformed kernel) is
//! refused with one [`Error`] listing every such kernel.

mod c;
mod conv;
mod elementwise;
mod gemm;
mod hvx;
mod math;
mod prelude;
mod qbinary;
mod rows;
mod scalar;

use std::fmt::{self, Write};

use edgecc_program::Program;

use crate::prelude::PRELUDE;

/// Whether the emitted C uses the HVX vector unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Hvx {
    /// Plain C only: cores without HVX (e.g. the audio DSP) or a reference build.
    Off,
    /// 128-byte HVX (`-mhvx -mhvx-length=128b`), the only length v68 and later have.
    #[default]
    B128,
}

/// How to emit the C.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options {
    pub hvx: Hvx,
}

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
pub fn emit_c(p: &Program, opts: &Options) -> Result<String, Error> {
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
        .filter_map(|(i, k)| {
            scalar::unsupported(k).map(|why| format!("kernel {i} ({}): {why}", k.name()))
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(Error(format!(
            "not supported by the hexagon target: {}",
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
    // Helpers of one kernel kind only in the files that have it.
    let qbinary = p
        .kernels
        .iter()
        .any(|k| matches!(k, edgecc_program::Kernel::QBinary { .. }));
    if qbinary {
        s.push_str(qbinary::PRELUDE);
    }
    if opts.hvx == Hvx::B128 {
        s.push_str(&hvx::prelude());
        if qbinary {
            s.push_str(qbinary::HVX_PRELUDE);
        }
    }
    let mut kernels = String::new();
    // Kernels stay functions of their own (`noinline`): clang would inline each (called
    // once) into `<name>_run`, and its Hexagon back end (software pipelining above all)
    // takes several times longer on one function of a whole transformer.
    for (i, k) in p.kernels.iter().enumerate() {
        let _ = writeln!(
            kernels,
            "\nstatic __attribute__((noinline)) int32_t k{i}_{}(const void *const *inputs, void *const *outputs, uint8_t *arena) {{\n    (void)inputs; (void)outputs; (void)arena;",
            k.name()
        );
        if opts.hvx == Hvx::Off || !hvx::kernel(&mut kernels, k, p)? {
            scalar::kernel(&mut kernels, k)?;
        }
        kernels.push_str("    return 0;\n}\n");
    }
    // The float helpers (exp, log, sqrt, ...) only when some kernel calls one.
    if math::used(&kernels) {
        s.push_str(&math::helpers());
    }
    // Only the constants some kernel reads as they are: the HVX kernels embed their own
    // repacked copies, and an unused `static const` would be a warning. Every read goes
    // through `c::ptr`, which spells constant `i` as `((T *)c<i>)`.
    for (i, c) in p.consts.iter().enumerate() {
        if !kernels.contains(&format!(" *)c{i})")) {
            continue;
        }
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
    s.push_str(&kernels);
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

/// Emits `<name>_model`, the descriptor `model.h` declares (the runtime's ABI version and magic),
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
        "const edgecc_model_desc {name}_model = {{\n    {:#x}u, {}u, {}, {}u, {}u, {}u, {}u, {}, {}, {name}_run\n}};",
        edgecc_runtime::ABI_MAGIC,
        edgecc_runtime::ABI_VERSION,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c::float_lit;
    use edgecc_program::{DType, IoTensor};

    fn emit_c_plain(p: &Program) -> Result<String, Error> {
        emit_c(p, &Options { hvx: Hvx::Off })
    }

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
        let c = emit_c_plain(&program(vec![2, 3])).unwrap();
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
        let e = emit_c_plain(&program(vec![1; 9])).unwrap_err();
        assert!(e.0.contains("rank 9"), "{e}");
        let e = emit_c_plain(&program(vec![1 << 31])).unwrap_err();
        assert!(e.0.contains("2 GiB"), "{e}");
        let mut p = program(vec![1]);
        p.name = "9x".into();
        assert!(emit_c_plain(&p).unwrap_err().0.contains("C identifier"));
    }
}
