//! Cranelift code generator for edgecc lowered programs (x86_64 and aarch64/NEON).
//!
//! The whole public surface:
//! - [`Target`]: what to generate code for (`"x86_64"`, `"aarch64-neon"`, a triple, or
//!   [`Target::host`]), with ISA flags set explicitly;
//! - [`compile_object`]: an ELF relocatable object exporting `<name>_run` and
//!   `<name>_model`, plus its code and constant sizes;
//! - [`link_shared`]: that object as a `.so`, via the system linker;
//! - [`compile_jit`]: the program in this process, with a [`JitModel::desc`] usable with
//!   `edgecc_runtime::Model`;
//! - [`emit_clif`]: Cranelift IR and machine code listing of every function.
//!
//! Generated code calls nothing: no libm (exp/tanh/sigmoid are inline polynomials, see
//! `math.rs`), no `memcpy`. Library functions return [`Error`]s and never panic; Cranelift
//! itself runs under `catch_unwind`.

mod check;
mod codegen;
mod descriptor;
mod error;
mod fx;
mod jit;
mod kernels;
mod link;
mod math;
mod object;
mod target;

pub use error::Error;
pub use jit::{JitKernel, JitModel, compile_jit};
pub use link::link_shared;
pub use object::{CompiledObject, ObjectOptions, compile_object, emit_clif};
pub use target::{Arch, Target};
