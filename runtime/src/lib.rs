//! The edgecc runtime: the ABI every edgecc artifact exports, and a checked call into it.
//!
//! `#![no_std]` and no `alloc`: firmware links this crate (or only the generated C header)
//! next to the object file and provides the arena itself, so memory is fixed at build
//! time. Every artifact exports two symbols, prefixed with the model name given at
//! compile time (`--name`, default `model`):
//!
//! - `<name>_model`: a [`ModelDesc`], the self-description checked before every call;
//! - `<name>_run(inputs, outputs, arena) -> i32`: the entry point ([`RunFn`]).
//!
//! [`Model::run`] checks the ABI version, the arena's size and alignment, and each
//! tensor's byte size against the descriptor before calling in, so calling with the wrong
//! interface is an error value instead of undefined behaviour. The `std` feature adds
//! [`dylib::Library`], which loads a compiled `.so`.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod dylib;

use core::ffi::{CStr, c_char};

/// Bumped whenever [`ModelDesc`] or [`TensorDesc`] change layout or meaning.
pub const ABI_VERSION: u32 = 1;

/// First word of every descriptor: `"EDGC"` little-endian. Catches a symbol that is not a
/// descriptor at all (wrong name, stripped object) before anything else is read.
pub const ABI_MAGIC: u32 = u32::from_le_bytes(*b"EDGC");

/// The largest rank a descriptor records.
pub const MAX_RANK: usize = 8;

/// Element types, numbered as ONNX's `TensorProto.DataType`.
pub mod dtype {
    pub const F32: u32 = 1;
    pub const U8: u32 = 2;
    pub const I8: u32 = 3;
    pub const I32: u32 = 6;
    pub const I64: u32 = 7;
    pub const BOOL: u32 = 9;
}

/// The artifact's entry point: `inputs` and `outputs` point to arrays of `num_inputs` and
/// `num_outputs` buffer pointers in descriptor order; `arena` to `arena_size` bytes aligned
/// to `arena_align`. Returns 0. Buffers need no alignment beyond their element type's.
pub type RunFn =
    unsafe extern "C" fn(inputs: *const *const u8, outputs: *const *mut u8, arena: *mut u8) -> i32;

/// One input or output, as the artifact describes it. Layout is fixed for 64-bit targets:
/// 8-byte pointers, no padding (88 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct TensorDesc {
    /// NUL-terminated ONNX value name.
    pub name: *const c_char,
    /// One of [`dtype`].
    pub dtype: u32,
    pub rank: u32,
    /// Bytes the caller's buffer must hold exactly.
    pub byte_size: u64,
    /// The first `rank` entries are the shape.
    pub shape: [u64; MAX_RANK],
}

/// The artifact's self-description. Layout is fixed for 64-bit targets (64 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct ModelDesc {
    /// [`ABI_MAGIC`].
    pub magic: u32,
    /// [`ABI_VERSION`] of the compiler that produced the artifact.
    pub abi_version: u32,
    /// NUL-terminated model name (the symbol prefix).
    pub name: *const c_char,
    pub arena_size: u64,
    pub arena_align: u64,
    pub num_inputs: u32,
    pub num_outputs: u32,
    pub inputs: *const TensorDesc,
    pub outputs: *const TensorDesc,
    pub run: RunFn,
}

// The code generator writes these structures as raw bytes; keep it honest.
const _: () = assert!(core::mem::size_of::<TensorDesc>() == 88);
const _: () = assert!(core::mem::size_of::<ModelDesc>() == 64);

/// Why a call was refused. Nothing was run when one of these is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The descriptor's magic word is wrong: not an edgecc descriptor.
    BadMagic {
        found: u32,
    },
    /// The artifact was built for another ABI version.
    AbiMismatch {
        expected: u32,
        found: u32,
    },
    ArenaTooSmall {
        needed: u64,
        given: u64,
    },
    ArenaMisaligned {
        align: u64,
        address: usize,
    },
    WrongInputCount {
        expected: u32,
        given: usize,
    },
    WrongOutputCount {
        expected: u32,
        given: usize,
    },
    /// Input `index` has the wrong byte size for its descriptor.
    InputSize {
        index: usize,
        expected: u64,
        given: usize,
    },
    OutputSize {
        index: usize,
        expected: u64,
        given: usize,
    },
    /// Input `index` is not aligned to its element size.
    InputMisaligned {
        index: usize,
    },
    OutputMisaligned {
        index: usize,
    },
    /// The model has more inputs or outputs than [`Model::run`] can pass ([`MAX_IO`]);
    /// use [`Model::run_with`] and pointer arrays of your own.
    TooManyTensors {
        count: u32,
    },
    /// The model returned a non-zero status.
    Failed {
        status: i32,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::BadMagic { found } => {
                write!(f, "not an edgecc model descriptor (magic {found:#010x})")
            }
            Error::AbiMismatch { expected, found } => write!(
                f,
                "artifact has ABI version {found}, this runtime speaks version {expected}"
            ),
            Error::ArenaTooSmall { needed, given } => {
                write!(
                    f,
                    "arena too small: model needs {needed} bytes, got {given}"
                )
            }
            Error::ArenaMisaligned { align, address } => {
                write!(f, "arena at {address:#x} is not aligned to {align} bytes")
            }
            Error::WrongInputCount { expected, given } => {
                write!(f, "model takes {expected} inputs, got {given}")
            }
            Error::WrongOutputCount { expected, given } => {
                write!(f, "model has {expected} outputs, got {given} buffers")
            }
            Error::InputSize {
                index,
                expected,
                given,
            } => write!(
                f,
                "input {index}: model expects {expected} bytes, got {given}"
            ),
            Error::OutputSize {
                index,
                expected,
                given,
            } => write!(
                f,
                "output {index}: model writes {expected} bytes, buffer has {given}"
            ),
            Error::InputMisaligned { index } => {
                write!(f, "input {index} is not aligned to its element size")
            }
            Error::OutputMisaligned { index } => {
                write!(f, "output {index} is not aligned to its element size")
            }
            Error::TooManyTensors { count } => write!(
                f,
                "model has {count} inputs or outputs; Model::run passes at most {MAX_IO}"
            ),
            Error::Failed { status: 1 } => {
                write!(
                    f,
                    "model returned status 1: an index (e.g. a token id) was out of range"
                )
            }
            Error::Failed { status } => write!(f, "model returned status {status}"),
        }
    }
}

impl TensorDesc {
    /// The name, if it is valid UTF-8.
    ///
    /// # Safety
    /// `self.name` must point to a NUL-terminated string, as in a descriptor an edgecc
    /// artifact exports.
    pub unsafe fn name(&self) -> &str {
        // SAFETY: the caller upholds that `name` is a NUL-terminated string.
        unsafe { CStr::from_ptr(self.name) }.to_str().unwrap_or("?")
    }

    /// The shape as a slice of `rank` dimensions.
    pub fn shape(&self) -> &[u64] {
        &self.shape[..(self.rank as usize).min(MAX_RANK)]
    }

    /// Size of one element in bytes (1 for unknown dtypes, which only affects alignment
    /// checks).
    pub fn element_size(&self) -> usize {
        match self.dtype {
            dtype::F32 | dtype::I32 => 4,
            dtype::I64 => 8,
            _ => 1,
        }
    }
}

/// A checked handle on an artifact's descriptor.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    desc: &'a ModelDesc,
}

impl<'a> Model<'a> {
    /// Checks the magic word and ABI version. This is the only place a descriptor is
    /// trusted; everything after relies on it being an edgecc descriptor.
    pub fn new(desc: &'a ModelDesc) -> Result<Self, Error> {
        if desc.magic != ABI_MAGIC {
            return Err(Error::BadMagic { found: desc.magic });
        }
        if desc.abi_version != ABI_VERSION {
            return Err(Error::AbiMismatch {
                expected: ABI_VERSION,
                found: desc.abi_version,
            });
        }
        Ok(Model { desc })
    }

    pub fn desc(&self) -> &'a ModelDesc {
        self.desc
    }

    /// The model's name.
    pub fn name(&self) -> &'a str {
        // SAFETY: `new` checked this is an edgecc descriptor, whose name is a C string.
        unsafe { CStr::from_ptr(self.desc.name) }
            .to_str()
            .unwrap_or("?")
    }

    pub fn arena_size(&self) -> u64 {
        self.desc.arena_size
    }

    pub fn arena_align(&self) -> u64 {
        self.desc.arena_align
    }

    pub fn inputs(&self) -> &'a [TensorDesc] {
        // SAFETY: an edgecc descriptor points to `num_inputs` tensor descriptors.
        unsafe { core::slice::from_raw_parts(self.desc.inputs, self.desc.num_inputs as usize) }
    }

    pub fn outputs(&self) -> &'a [TensorDesc] {
        // SAFETY: as for `inputs`.
        unsafe { core::slice::from_raw_parts(self.desc.outputs, self.desc.num_outputs as usize) }
    }

    /// Runs one inference after checking every buffer against the descriptor. Pointer
    /// arrays are built on the stack, so models with more than [`MAX_IO`] inputs or
    /// outputs are refused; [`Model::run_with`] takes arrays from the caller instead.
    pub fn run(
        &self,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        arena: &mut [u8],
    ) -> Result<(), Error> {
        let d = self.desc;
        let most = d.num_inputs.max(d.num_outputs);
        if most as usize > MAX_IO {
            return Err(Error::TooManyTensors { count: most });
        }
        let mut in_ptrs = [core::ptr::null::<u8>(); MAX_IO];
        let mut out_ptrs = [core::ptr::null_mut::<u8>(); MAX_IO];
        self.run_with(inputs, outputs, arena, &mut in_ptrs, &mut out_ptrs)
    }

    /// [`Model::run`] with the pointer arrays the entry point takes supplied by the caller
    /// (at least as long as the input and output counts), for models with many tensors.
    pub fn run_with(
        &self,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        arena: &mut [u8],
        in_ptrs: &mut [*const u8],
        out_ptrs: &mut [*mut u8],
    ) -> Result<(), Error> {
        let d = self.desc;
        if inputs.len() != d.num_inputs as usize {
            return Err(Error::WrongInputCount {
                expected: d.num_inputs,
                given: inputs.len(),
            });
        }
        if outputs.len() != d.num_outputs as usize {
            return Err(Error::WrongOutputCount {
                expected: d.num_outputs,
                given: outputs.len(),
            });
        }
        if in_ptrs.len() < inputs.len() || out_ptrs.len() < outputs.len() {
            return Err(Error::TooManyTensors {
                count: d.num_inputs.max(d.num_outputs),
            });
        }
        if (arena.len() as u64) < d.arena_size {
            return Err(Error::ArenaTooSmall {
                needed: d.arena_size,
                given: arena.len() as u64,
            });
        }
        let address = arena.as_ptr() as usize;
        if d.arena_align > 1 && !address.is_multiple_of(d.arena_align as usize) {
            return Err(Error::ArenaMisaligned {
                align: d.arena_align,
                address,
            });
        }
        for (index, (buf, td)) in inputs.iter().zip(self.inputs()).enumerate() {
            if buf.len() as u64 != td.byte_size {
                return Err(Error::InputSize {
                    index,
                    expected: td.byte_size,
                    given: buf.len(),
                });
            }
            if !buf.is_empty() && !(buf.as_ptr() as usize).is_multiple_of(td.element_size()) {
                return Err(Error::InputMisaligned { index });
            }
            in_ptrs[index] = buf.as_ptr();
        }
        for (index, (buf, td)) in outputs.iter_mut().zip(self.outputs()).enumerate() {
            if buf.len() as u64 != td.byte_size {
                return Err(Error::OutputSize {
                    index,
                    expected: td.byte_size,
                    given: buf.len(),
                });
            }
            if !buf.is_empty() && !(buf.as_ptr() as usize).is_multiple_of(td.element_size()) {
                return Err(Error::OutputMisaligned { index });
            }
            out_ptrs[index] = buf.as_mut_ptr();
        }
        // SAFETY: every buffer was checked against the descriptor the artifact exports, and
        // the artifact reads and writes only within those sizes and the arena.
        let status = unsafe { (d.run)(in_ptrs.as_ptr(), out_ptrs.as_ptr(), arena.as_mut_ptr()) };
        if status != 0 {
            return Err(Error::Failed { status });
        }
        Ok(())
    }
}

/// The most inputs or outputs [`Model::run`] passes (its pointer arrays live on the stack).
pub const MAX_IO: usize = 64;

/// The generic C test harness (`runtime/c/edgecc_harness.c`): links against any
/// artifact, chosen with `-DEDGECC_MODEL=<name>_model`, and runs one inference on raw
/// files: `harness in0.bin ... -- out0.bin ...`. `edgecc run` uses it for cross targets.
pub const HARNESS_C: &str = include_str!("../c/edgecc_harness.c");
