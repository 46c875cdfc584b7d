//! ELF relocatable objects through `cranelift-object`.

use cranelift_module::default_libcall_names;
use cranelift_object::{ObjectBuilder, ObjectModule};
use edgecc_program::Program;

use crate::codegen::{self, Listing};
use crate::{Error, Target, descriptor};

/// Options for [`compile_object`].
#[derive(Clone, Debug)]
pub struct ObjectOptions {
    /// Position-independent code. Required for shared objects: non-PIC x64 code linked
    /// into a `.so` by GNU ld silently reads PLT stubs as data. Off only for static
    /// firmware images.
    pub pic: bool,
    /// One section per function and data object, so `--gc-sections` can drop unused ones.
    pub function_sections: bool,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        ObjectOptions {
            pic: true,
            function_sections: true,
        }
    }
}

/// A compiled relocatable object and how big its parts are.
#[derive(Clone, Debug)]
pub struct CompiledObject {
    /// The ELF object file.
    pub bytes: Vec<u8>,
    /// Bytes of machine code (all functions).
    pub text_bytes: u64,
    /// Bytes of constant data: weights, as packed for the kernels, with padding.
    pub const_bytes: u64,
}

/// Compiles `program` to an ELF relocatable object for `target` exporting
/// `<name>_run` and `<name>_model`. Deterministic: the same program and target give the
/// same bytes.
pub fn compile_object(
    program: &Program,
    target: &Target,
    opts: &ObjectOptions,
) -> Result<CompiledObject, Error> {
    let isa = target.isa(opts.pic)?;
    let mut ob = ObjectBuilder::new(
        isa,
        program.name.as_bytes().to_vec(),
        default_libcall_names(),
    )?;
    ob.per_function_section(opts.function_sections);
    ob.per_data_object_section(opts.function_sections);
    let mut m = ObjectModule::new(ob);
    let built = codegen::build(&mut m, program, Listing::None)?;
    descriptor::define(&mut m, program, built.run)?;
    let bytes = m
        .finish()
        .emit()
        .map_err(|e| Error::Codegen(format!("object emission: {e}")))?;
    Ok(CompiledObject {
        bytes,
        text_bytes: built.text_bytes,
        const_bytes: built.const_bytes,
    })
}

/// Cranelift IR and final machine code (register-allocated VCode) of every function
/// `program` compiles to on `target`, for `edgecc compile --emit asm`.
pub fn emit_clif(program: &Program, target: &Target) -> Result<String, Error> {
    let isa = target.isa(true)?;
    let ob = ObjectBuilder::new(
        isa,
        program.name.as_bytes().to_vec(),
        default_libcall_names(),
    )?;
    let mut m = ObjectModule::new(ob);
    let built = codegen::build(&mut m, program, Listing::ClifAndAsm)?;
    Ok(format!(
        ";; {} for {target}: {} bytes of code, {} bytes of constants\n{}",
        program.name, built.text_bytes, built.const_bytes, built.listing
    ))
}
