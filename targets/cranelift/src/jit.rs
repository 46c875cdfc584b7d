//! In-process compilation for the host through `cranelift-jit`.

use std::ffi::CString;

use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::default_libcall_names;
use edgecc_program::Program;
use edgecc_runtime::{ABI_MAGIC, ABI_VERSION, ModelDesc, RunFn, TensorDesc};

use crate::codegen::{self, Listing};
use crate::descriptor::{c_name, tensor_fields};
use crate::{Error, Target};

/// A program compiled into this process's memory, with a descriptor in Rust memory
/// pointing at it, so `edgecc_runtime::Model::new(jit.desc())?.run(..)` works as for a
/// loaded `.so`.
pub struct JitModel {
    module: Option<JITModule>,
    desc: Box<ModelDesc>,
    // Referenced by raw pointers from `desc`; kept alive and never moved (heap storage).
    _names: Vec<CString>,
    _inputs: Vec<TensorDesc>,
    _outputs: Vec<TensorDesc>,
    text_bytes: u64,
    kernels: Vec<JitKernel>,
}

/// One kernel's function inside a [`JitModel`], for profiling: `run` calls these in
/// order, and timing each call on its own shows where an inference spends its time.
pub struct JitKernel {
    code: *const u8,
    fallible: bool,
}

/// A kernel function that returns a status (gather's index check).
type FallibleFn = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8) -> i32;
/// A kernel function that cannot fail.
type PlainFn = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8);

impl JitKernel {
    /// Runs this kernel alone; returns its status (0 unless it can fail).
    ///
    /// # Safety
    /// The pointers must be what the model's `run` would get: the input and output
    /// pointer arrays and the arena, with sizes and alignment as the descriptor states
    /// (e.g. as `edgecc_runtime::Model::run_with` checked and filled them in), and every
    /// kernel before this one must have run since the inputs were written.
    pub unsafe fn call(&self, ins: *const *const u8, outs: *const *mut u8, arena: *mut u8) -> i32 {
        // SAFETY: `code` is a finalized function of the owning module with exactly this
        // signature (codegen declares kernels with `io_params` and an i32 return when
        // `fallible`); the caller vouches for the arguments.
        unsafe {
            if self.fallible {
                std::mem::transmute::<*const u8, FallibleFn>(self.code)(ins, outs, arena)
            } else {
                std::mem::transmute::<*const u8, PlainFn>(self.code)(ins, outs, arena);
                0
            }
        }
    }
}

impl JitModel {
    /// The descriptor, valid as long as `self`.
    pub fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    /// The kernel functions, in program order (one per `Program::kernels` entry).
    pub fn kernels(&self) -> &[JitKernel] {
        &self.kernels
    }

    /// Bytes of machine code generated.
    pub fn text_bytes(&self) -> u64 {
        self.text_bytes
    }
}

impl Drop for JitModel {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the only pointers into the module's memory are in `desc`, which is
            // dropped with `self` and was only lent out for `self`'s lifetime.
            unsafe { m.free_memory() };
        }
    }
}

/// Compiles `program` for the host CPU (every feature it has, non-PIC as the JIT needs).
pub fn compile_jit(program: &Program) -> Result<JitModel, Error> {
    let isa = Target::host()?.isa(false)?;
    let mut m = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let built = codegen::build(&mut m, program, Listing::None)?;
    m.finalize_definitions()?;
    let code = m.get_finalized_function(built.run);
    // SAFETY: `run` was declared with the RunFn signature (three pointers -> i32) and the
    // host's default calling convention, which is `extern "C"`.
    let run: RunFn = unsafe { std::mem::transmute::<*const u8, RunFn>(code) };
    let kernels = built
        .kernels
        .iter()
        .map(|&(id, fallible)| JitKernel {
            code: m.get_finalized_function(id),
            fallible,
        })
        .collect();

    let mut names = Vec::new();
    let cstr = |s: &str| -> Result<CString, Error> {
        let mut v = c_name(s)?;
        v.pop();
        CString::new(v).map_err(|e| Error::Unsupported(e.to_string()))
    };
    let model_name = cstr(&program.name)?;
    let mut table = |ts: &[edgecc_program::IoTensor]| -> Result<Vec<TensorDesc>, Error> {
        ts.iter()
            .map(|t| {
                let (dtype, rank, byte_size, shape) = tensor_fields(t)?;
                let n = cstr(&t.name)?;
                let name = n.as_ptr();
                names.push(n);
                Ok(TensorDesc {
                    name,
                    dtype,
                    rank,
                    byte_size,
                    shape,
                })
            })
            .collect()
    };
    let inputs = table(&program.inputs)?;
    let outputs = table(&program.outputs)?;
    let desc = Box::new(ModelDesc {
        magic: ABI_MAGIC,
        abi_version: ABI_VERSION,
        name: model_name.as_ptr(),
        arena_size: program.arena_size,
        arena_align: program.arena_align,
        num_inputs: inputs.len() as u32,
        num_outputs: outputs.len() as u32,
        inputs: inputs.as_ptr(),
        outputs: outputs.as_ptr(),
        run,
    });
    names.push(model_name);
    Ok(JitModel {
        module: Some(m),
        desc,
        _names: names,
        _inputs: inputs,
        _outputs: outputs,
        text_bytes: built.text_bytes,
        kernels,
    })
}
