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

/* Status codes. 0 is success. A checked call returns a negative EDGECC_ERR_* and then has
 * run nothing; a positive value is the model's own status (1: an index, e.g. a token id,
 * was out of range). edgecc_runtime::Error::code() returns the same numbers. */
#define EDGECC_OK 0
/* Not an edgecc descriptor (magic), or one of another ABI version than this header's. */
#define EDGECC_ERR_ABI (-1)
/* arena_size is smaller than the model's arena. */
#define EDGECC_ERR_ARENA_SIZE (-2)
/* The arena is not aligned to the model's arena alignment. */
#define EDGECC_ERR_ARENA_ALIGN (-3)
/* The number of inputs or outputs differs from the model's. */
#define EDGECC_ERR_IO_COUNT (-4)
/* A NULL descriptor, pointer array, sizes array, input or output buffer, or a NULL arena
 * for a model that needs one. */
#define EDGECC_ERR_NULL (-5)
/* An input's byte size differs from the model's (run_checked_io; edgecc-runtime). */
#define EDGECC_ERR_INPUT_SIZE (-6)
/* An output buffer's byte size differs from the model's (run_checked_io; edgecc-runtime). */
#define EDGECC_ERR_OUTPUT_SIZE (-7)
/* An input or output buffer is not aligned to its element size (4 for float and int32,
 * 8 for int64). */
#define EDGECC_ERR_IO_ALIGN (-8)
/* edgecc-runtime only: Model::run passes at most 64 inputs and outputs (use run_with). */
#define EDGECC_ERR_TOO_MANY_IO (-9)

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

/* Bytes of one element of an EDGECC_DTYPE_*, the alignment its buffers need. */
static inline uintptr_t edgecc_element_size(uint32_t dtype) {
    return dtype == EDGECC_DTYPE_I64 ? 8u
           : (dtype == EDGECC_DTYPE_F32 || dtype == EDGECC_DTYPE_I32) ? 4u
                                                                     : 1u;
}

/* One buffer against its descriptor; sizes are checked when `size` is not NULL. */
static inline int32_t edgecc_check_buffer_(const edgecc_tensor_desc *t, const void *p,
                                           const size_t *size, int32_t size_error) {
    if (p == NULL)
        return EDGECC_ERR_NULL;
    if (size != NULL && (uint64_t)*size != t->byte_size)
        return size_error;
    /* Masks, not a 64-bit modulo (freestanding targets such as Hexagon have no run-time
       routine for one); the alignments are powers of two. */
    if (t->byte_size > 0 && ((uintptr_t)p & (edgecc_element_size(t->dtype) - 1u)) != 0)
        return EDGECC_ERR_IO_ALIGN;
    return EDGECC_OK;
}

/* Every check of the checked calls, in the order edgecc-runtime's Model::run makes them:
 * descriptor, counts, arena size, arena, the arrays, then each input and each output
 * (pointer, byte size when `sized`, alignment). */
static inline int32_t edgecc_check_(const edgecc_model_desc *m, int sized,
                                    const void *const *inputs, const size_t *input_sizes,
                                    uint32_t num_inputs, void *const *outputs,
                                    const size_t *output_sizes, uint32_t num_outputs,
                                    void *arena, size_t arena_size) {
    uint32_t i;
    int32_t st;
    if (m == NULL)
        return EDGECC_ERR_NULL;
    if (m->magic != EDGECC_ABI_MAGIC || m->abi_version != EDGECC_ABI_VERSION)
        return EDGECC_ERR_ABI;
    if (num_inputs != m->num_inputs || num_outputs != m->num_outputs)
        return EDGECC_ERR_IO_COUNT;
    if ((uint64_t)arena_size < m->arena_size)
        return EDGECC_ERR_ARENA_SIZE;
    if (m->arena_size > 0) {
        if (arena == NULL)
            return EDGECC_ERR_NULL;
        if (((uintptr_t)arena & (uintptr_t)(m->arena_align - 1u)) != 0)
            return EDGECC_ERR_ARENA_ALIGN;
    }
    if ((num_inputs > 0 && (inputs == NULL || (sized && input_sizes == NULL)))
        || (num_outputs > 0 && (outputs == NULL || (sized && output_sizes == NULL))))
        return EDGECC_ERR_NULL;
    for (i = 0; i < num_inputs; i++)
        if ((st = edgecc_check_buffer_(&m->inputs[i], inputs[i],
                                       sized ? &input_sizes[i] : NULL,
                                       EDGECC_ERR_INPUT_SIZE)) != EDGECC_OK)
            return st;
    for (i = 0; i < num_outputs; i++)
        if ((st = edgecc_check_buffer_(&m->outputs[i], outputs[i],
                                       sized ? &output_sizes[i] : NULL,
                                       EDGECC_ERR_OUTPUT_SIZE)) != EDGECC_OK)
            return st;
    return EDGECC_OK;
}

/* Checks a descriptor and the caller's buffers, then runs the model. Returns EDGECC_OK, a
 * negative EDGECC_ERR_* code without running anything, or the model's positive status.
 * Buffer sizes are not known here: prefer edgecc_run_checked_io. */
static inline int32_t edgecc_run_checked(const edgecc_model_desc *m, const void *const *inputs,
                                         uint32_t num_inputs, void *const *outputs,
                                         uint32_t num_outputs, void *arena, size_t arena_size) {
    int32_t st = edgecc_check_(m, 0, inputs, NULL, num_inputs, outputs, NULL, num_outputs,
                               arena, arena_size);
    return st != EDGECC_OK ? st : m->run(inputs, outputs, arena);
}

/* edgecc_run_checked that also checks every buffer's byte size: input_sizes[i] and
 * output_sizes[i] must equal the model's (EDGECC_ERR_INPUT_SIZE, EDGECC_ERR_OUTPUT_SIZE),
 * so a short buffer is refused instead of read or written past its end. */
static inline int32_t edgecc_run_checked_io(const edgecc_model_desc *m,
                                            const void *const *inputs,
                                            const size_t *input_sizes, uint32_t num_inputs,
                                            void *const *outputs, const size_t *output_sizes,
                                            uint32_t num_outputs, void *arena,
                                            size_t arena_size) {
    int32_t st = edgecc_check_(m, 1, inputs, input_sizes, num_inputs, outputs, output_sizes,
                               num_outputs, arena, arena_size);
    return st != EDGECC_OK ? st : m->run(inputs, outputs, arena);
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
        " * {up}_ARENA_SIZE bytes aligned to {up}_ARENA_ALIGN. Returns 0. Prefer {name}_run_checked_io. */"
    );
    let _ = writeln!(
        s,
        "int32_t {name}_run(const void *const *inputs, void *const *outputs, void *arena);\n"
    );
    let _ = writeln!(
        s,
        "/* {name}_run after checking the descriptor's ABI version, the counts, the arena, and that\n * no pointer is NULL or misaligned; returns 0 or an EDGECC_ERR_* code. It cannot check the\n * buffers' sizes: {name}_run_checked_io does. */"
    );
    let _ = writeln!(
        s,
        "static inline int32_t {name}_run_checked(const void *const *inputs, void *const *outputs,\n        void *arena, size_t arena_size) {{\n    return edgecc_run_checked(&{name}_model, inputs, {up}_NUM_INPUTS, outputs, {up}_NUM_OUTPUTS, arena,\n                              arena_size);\n}}\n"
    );
    let _ = writeln!(
        s,
        "/* {name}_run_checked that also checks each buffer's byte size (input_sizes[i] must be\n * {up}_INPUT_<i>_BYTES, output_sizes[i] {up}_OUTPUT_<i>_BYTES): EDGECC_ERR_INPUT_SIZE or\n * EDGECC_ERR_OUTPUT_SIZE instead of a read or write past a short buffer. */"
    );
    let _ = writeln!(
        s,
        "static inline int32_t {name}_run_checked_io(const void *const *inputs, const size_t *input_sizes,\n        void *const *outputs, const size_t *output_sizes, void *arena, size_t arena_size) {{\n    return edgecc_run_checked_io(&{name}_model, inputs, input_sizes, {up}_NUM_INPUTS, outputs,\n                                 output_sizes, {up}_NUM_OUTPUTS, arena, arena_size);\n}}\n"
    );
    let _ = writeln!(
        s,
        "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* EDGECC_MODEL_{up}_H */"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::ABI_BLOCK;
    use edgecc_runtime::status;

    /// model.h's status codes are edgecc-runtime's, and its ABI version the runtime's.
    #[test]
    fn status_codes_and_version_match_the_runtime() {
        let codes = [
            ("EDGECC_OK", status::OK),
            ("EDGECC_ERR_ABI", status::ERR_ABI),
            ("EDGECC_ERR_ARENA_SIZE", status::ERR_ARENA_SIZE),
            ("EDGECC_ERR_ARENA_ALIGN", status::ERR_ARENA_ALIGN),
            ("EDGECC_ERR_IO_COUNT", status::ERR_IO_COUNT),
            ("EDGECC_ERR_NULL", status::ERR_NULL),
            ("EDGECC_ERR_INPUT_SIZE", status::ERR_INPUT_SIZE),
            ("EDGECC_ERR_OUTPUT_SIZE", status::ERR_OUTPUT_SIZE),
            ("EDGECC_ERR_IO_ALIGN", status::ERR_IO_ALIGN),
            ("EDGECC_ERR_TOO_MANY_IO", status::ERR_TOO_MANY_IO),
        ];
        let defined: Vec<(&str, i32)> = ABI_BLOCK
            .lines()
            .filter_map(|l| l.strip_prefix("#define EDGECC_"))
            .filter(|l| l.starts_with("OK") || l.starts_with("ERR_"))
            .map(|l| {
                let (name, value) = l.split_once(' ').unwrap();
                let value = value.trim().trim_start_matches('(').trim_end_matches(')');
                (name, value.parse().unwrap())
            })
            .collect();
        let want: Vec<(&str, i32)> = codes
            .iter()
            .map(|(n, c)| (n.trim_start_matches("EDGECC_"), *c))
            .collect();
        assert_eq!(defined, want);
        assert!(ABI_BLOCK.contains(&format!(
            "#define EDGECC_ABI_VERSION {}u",
            edgecc_runtime::ABI_VERSION
        )));
    }
}
