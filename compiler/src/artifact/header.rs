//! The generated C header: the ABI types, the model's two symbols, and every size
//! firmware needs at compile time as a macro.
//!
//! The struct layouts mirror `edgecc_runtime::{ModelDesc, TensorDesc}`. The header is
//! C99 and clean under `-Wall -Wextra -Werror`; several model headers can be included in
//! one translation unit (the shared ABI block is guarded, macros are per model).

use std::fmt::Write;

use edgecc_program::{DType, IoTensor, Program};

use super::c_ident;

fn dtype_macro(d: DType) -> &'static str {
    match d {
        DType::F32 => "EDGECC_DTYPE_F32",
        DType::U8 => "EDGECC_DTYPE_U8",
        DType::I8 => "EDGECC_DTYPE_I8",
        DType::I32 => "EDGECC_DTYPE_I32",
        DType::I64 => "EDGECC_DTYPE_I64",
        DType::Bool => "EDGECC_DTYPE_BOOL",
    }
}

fn c_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::U8 | DType::Bool => "uint8_t",
        DType::I8 => "int8_t",
        DType::I32 => "int32_t",
        DType::I64 => "int64_t",
    }
}

const ABI_BLOCK: &str = r#"#ifndef EDGECC_ABI_H
#define EDGECC_ABI_H
/* The edgecc artifact ABI, version 1; mirrors edgecc_runtime::{TensorDesc, ModelDesc}. */
#define EDGECC_ABI_VERSION 1u
#define EDGECC_ABI_MAGIC 0x43474445u /* "EDGC" little-endian */
#define EDGECC_MAX_RANK 8

#define EDGECC_DTYPE_F32 1u
#define EDGECC_DTYPE_U8 2u
#define EDGECC_DTYPE_I8 3u
#define EDGECC_DTYPE_I32 6u
#define EDGECC_DTYPE_I64 7u
#define EDGECC_DTYPE_BOOL 9u

/* Status codes of the checked call; the model itself returns 0. */
#define EDGECC_OK 0
#define EDGECC_ERR_ABI (-1)
#define EDGECC_ERR_ARENA_SIZE (-2)
#define EDGECC_ERR_ARENA_ALIGN (-3)
#define EDGECC_ERR_IO_COUNT (-4)
#define EDGECC_ERR_NULL (-5)

typedef struct edgecc_tensor_desc {
    const char *name;
    uint32_t dtype;
    uint32_t rank;
    uint64_t byte_size;
    uint64_t shape[EDGECC_MAX_RANK];
} edgecc_tensor_desc;

typedef int32_t (*edgecc_run_fn)(const void *const *inputs, void *const *outputs, void *arena);

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
    edgecc_run_fn run;
} edgecc_model_desc;

/* Checks a descriptor and the caller's buffers, then runs the model. Returns EDGECC_OK or
 * a negative EDGECC_ERR_* code without running anything. */
static inline int32_t edgecc_run_checked(const edgecc_model_desc *m, const void *const *inputs,
                                         uint32_t num_inputs, void *const *outputs,
                                         uint32_t num_outputs, void *arena, size_t arena_size) {
    uint32_t i;
    if (m == NULL || m->magic != EDGECC_ABI_MAGIC || m->abi_version != EDGECC_ABI_VERSION)
        return EDGECC_ERR_ABI;
    if (num_inputs != m->num_inputs || num_outputs != m->num_outputs)
        return EDGECC_ERR_IO_COUNT;
    if (arena_size < m->arena_size)
        return EDGECC_ERR_ARENA_SIZE;
    /* The alignment is a power of two; a mask, not a 64-bit modulo (freestanding targets
       such as Hexagon have no run-time routine for one). */
    if (m->arena_size > 0
        && (arena == NULL || ((uintptr_t)arena & (uintptr_t)(m->arena_align - 1u)) != 0))
        return EDGECC_ERR_ARENA_ALIGN;
    for (i = 0; i < num_inputs; i++)
        if (inputs[i] == NULL)
            return EDGECC_ERR_NULL;
    for (i = 0; i < num_outputs; i++)
        if (outputs[i] == NULL)
            return EDGECC_ERR_NULL;
    return m->run(inputs, outputs, arena);
}
#endif /* EDGECC_ABI_H */
"#;

fn tensor_macros(s: &mut String, prefix: &str, kind: &str, index: usize, t: &IoTensor) {
    let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    for key in [index.to_string(), c_ident(&t.name).to_uppercase()] {
        let m = format!("{prefix}_{kind}_{key}");
        let _ = writeln!(s, "#define {m}_INDEX {index}");
        let _ = writeln!(s, "#define {m}_NAME \"{}\"", t.name.escape_default());
        let _ = writeln!(s, "#define {m}_DTYPE {}", dtype_macro(t.dtype));
        let _ = writeln!(s, "#define {m}_RANK {}", t.shape.len());
        let _ = writeln!(s, "#define {m}_SHAPE {{{}}}", shape.join(", "));
        let _ = writeln!(s, "#define {m}_ELEMENTS {}u", t.num_elements());
        let _ = writeln!(s, "#define {m}_BYTES {}u", t.byte_size());
        let _ = writeln!(
            s,
            "typedef {} {}_{}_{}_t[{}];",
            c_type(t.dtype),
            prefix.to_lowercase(),
            kind.to_lowercase(),
            key.to_lowercase(),
            t.num_elements().max(1)
        );
    }
}

/// The header text for `program`. `source` and `target` go into the leading comment.
pub fn header(program: &Program, source: &str, target: &str) -> String {
    let name = &program.name;
    let up = name.to_uppercase();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "/* {name}.h: generated by edgecc {} from {source} for {target}. Do not edit. */",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        "#ifndef EDGECC_MODEL_{up}_H\n#define EDGECC_MODEL_{up}_H\n"
    );
    s.push_str("#include <stddef.h>\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    s.push_str(ABI_BLOCK);
    let _ = writeln!(
        s,
        "\n/* Model '{name}'. Size the arena and I/O buffers from these macros. */"
    );
    let _ = writeln!(s, "#define {up}_ARENA_SIZE {}u", program.arena_size);
    let _ = writeln!(s, "#define {up}_ARENA_ALIGN {}u", program.arena_align);
    let _ = writeln!(s, "#define {up}_NUM_INPUTS {}u", program.inputs.len());
    let _ = writeln!(s, "#define {up}_NUM_OUTPUTS {}u\n", program.outputs.len());
    for (i, t) in program.inputs.iter().enumerate() {
        tensor_macros(&mut s, &up, "INPUT", i, t);
    }
    for (i, t) in program.outputs.iter().enumerate() {
        tensor_macros(&mut s, &up, "OUTPUT", i, t);
    }
    let _ = writeln!(s, "\n/* The descriptor the artifact exports. */");
    let _ = writeln!(s, "extern const edgecc_model_desc {name}_model;\n");
    let _ = writeln!(
        s,
        "/* Runs one inference. Pointer arrays are in the order above; the arena holds"
    );
    let _ = writeln!(
        s,
        " * {up}_ARENA_SIZE bytes aligned to {up}_ARENA_ALIGN. Returns 0. Prefer {name}_run_checked. */"
    );
    let _ = writeln!(
        s,
        "int32_t {name}_run(const void *const *inputs, void *const *outputs, void *arena);\n"
    );
    let _ = writeln!(
        s,
        "/* {name}_run after checking the descriptor's ABI version and the caller's arena. */"
    );
    let _ = writeln!(
        s,
        "static inline int32_t {name}_run_checked(const void *const *inputs, void *const *outputs,\n        void *arena, size_t arena_size) {{\n    return edgecc_run_checked(&{name}_model, inputs, {up}_NUM_INPUTS, outputs, {up}_NUM_OUTPUTS, arena,\n                              arena_size);\n}}\n"
    );
    let _ = writeln!(
        s,
        "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* EDGECC_MODEL_{up}_H */"
    );
    s
}
