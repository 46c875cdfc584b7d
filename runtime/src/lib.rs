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

#[cfg(any(test, feature = "std"))]
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

/// The status codes of the C ABI (`model.h`'s `EDGECC_OK` and `EDGECC_ERR_*`), which
/// [`Error::code`] returns: 0 is success, a negative code a refused call (nothing ran), a
/// positive one the model's own status (1: an index, e.g. a token id, was out of range).
pub mod status {
    pub const OK: i32 = 0;
    /// Not an edgecc descriptor (magic word), or one of another ABI version.
    pub const ERR_ABI: i32 = -1;
    /// The arena is smaller than the model's.
    pub const ERR_ARENA_SIZE: i32 = -2;
    /// The arena is not aligned to the model's arena alignment.
    pub const ERR_ARENA_ALIGN: i32 = -3;
    /// The number of inputs or outputs differs from the model's.
    pub const ERR_IO_COUNT: i32 = -4;
    /// A NULL pointer (C only: Rust slices cannot be null).
    pub const ERR_NULL: i32 = -5;
    /// An input's byte size differs from the model's.
    pub const ERR_INPUT_SIZE: i32 = -6;
    /// An output buffer's byte size differs from the model's.
    pub const ERR_OUTPUT_SIZE: i32 = -7;
    /// An input or output buffer is not aligned to its element size.
    pub const ERR_IO_ALIGN: i32 = -8;
    /// [`crate::Model::run`]'s pointer arrays are too short for the model (Rust only).
    pub const ERR_TOO_MANY_IO: i32 = -9;
    /// The model's own status for an index out of range.
    pub const INDEX_OUT_OF_RANGE: i32 = 1;
}

/// Why a call was refused. Nothing was run when one of these is returned, except
/// [`Error::Failed`], the model's own non-zero status. [`Error::code`] maps each to the C
/// ABI's `EDGECC_ERR_*` code.
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

impl Error {
    /// The C ABI's status code for this error ([`status`]; the same as `model.h`'s
    /// `EDGECC_ERR_*`, or the model's own status for [`Error::Failed`]).
    pub const fn code(&self) -> i32 {
        match *self {
            Error::BadMagic { .. } | Error::AbiMismatch { .. } => status::ERR_ABI,
            Error::ArenaTooSmall { .. } => status::ERR_ARENA_SIZE,
            Error::ArenaMisaligned { .. } => status::ERR_ARENA_ALIGN,
            Error::WrongInputCount { .. } | Error::WrongOutputCount { .. } => status::ERR_IO_COUNT,
            Error::InputSize { .. } => status::ERR_INPUT_SIZE,
            Error::OutputSize { .. } => status::ERR_OUTPUT_SIZE,
            Error::InputMisaligned { .. } | Error::OutputMisaligned { .. } => status::ERR_IO_ALIGN,
            Error::TooManyTensors { .. } => status::ERR_TOO_MANY_IO,
            Error::Failed { status } => status,
        }
    }
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
        // As in C: the arena's alignment matters only when the model uses one, and a
        // zero-sized buffer's address is never read.
        let address = arena.as_ptr() as usize;
        if d.arena_size > 0 && d.arena_align > 1 && !address.is_multiple_of(d.arena_align as usize)
        {
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

#[cfg(test)]
mod tests {
    //! Every refusal of [`Model::run`] on a descriptor built here, whose entry point counts
    //! its calls: each refusal has its C code and runs nothing.

    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::vec;
    use std::vec::Vec;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Copies input 0 (2 floats) to output 0 and writes input 1 (an i64) into the arena.
    unsafe extern "C" fn run(
        inputs: *const *const u8,
        outputs: *const *mut u8,
        arena: *mut u8,
    ) -> i32 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `Model::run` checked every buffer against `DESC`.
        unsafe {
            core::ptr::copy_nonoverlapping(*inputs, *outputs, 8);
            core::ptr::copy_nonoverlapping(*inputs.add(1), arena, 8);
        }
        0
    }

    unsafe extern "C" fn fails(_: *const *const u8, _: *const *mut u8, _: *mut u8) -> i32 {
        status::INDEX_OUT_OF_RANGE
    }

    const fn tensor(name: &'static core::ffi::CStr, dtype: u32, n: u64, bytes: u64) -> TensorDesc {
        TensorDesc {
            name: name.as_ptr(),
            dtype,
            rank: 1,
            byte_size: bytes,
            shape: [n, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    struct Tensors([TensorDesc; 2]);
    // SAFETY: the names are static C strings, never written.
    unsafe impl Sync for Tensors {}

    static INPUTS: Tensors = Tensors([
        tensor(c"x", dtype::F32, 2, 8),
        tensor(c"ids", dtype::I64, 1, 8),
    ]);
    static OUTPUTS: Tensors = Tensors([tensor(c"y", dtype::F32, 2, 8), tensor(c"-", 0, 0, 0)]);

    fn desc(magic: u32, version: u32, entry: RunFn) -> ModelDesc {
        ModelDesc {
            magic,
            abi_version: version,
            name: c"fake".as_ptr(),
            arena_size: 16,
            arena_align: 64,
            num_inputs: 2,
            num_outputs: 1,
            inputs: INPUTS.0.as_ptr(),
            outputs: OUTPUTS.0.as_ptr(),
            run: entry,
        }
    }

    /// 64-byte-aligned storage, with room to offset into.
    #[repr(C, align(64))]
    struct Aligned([u8; 256]);

    #[test]
    fn every_refusal_has_its_code_and_runs_nothing() {
        let good = desc(ABI_MAGIC, ABI_VERSION, run);
        assert_eq!(
            Model::new(&desc(0x1234_5678, ABI_VERSION, run)).err(),
            Some(Error::BadMagic { found: 0x1234_5678 })
        );
        let other = Model::new(&desc(ABI_MAGIC, ABI_VERSION + 1, run))
            .err()
            .unwrap();
        assert_eq!(
            other,
            Error::AbiMismatch {
                expected: ABI_VERSION,
                found: ABI_VERSION + 1
            }
        );
        assert_eq!(other.code(), status::ERR_ABI);
        let m = Model::new(&good).unwrap();
        assert_eq!(m.name(), "fake");

        let mut store = Aligned([0; 256]);
        let b = &mut store.0;
        // Split one aligned block into the buffers, so offsets decide the alignment.
        let (x, rest) = b.split_at_mut(64);
        let (ids, rest) = rest.split_at_mut(64);
        let (y, arena) = rest.split_at_mut(64);
        x[..8].copy_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
        ids[..8].copy_from_slice(&7i64.to_le_bytes());
        let calls = CALLS.load(Ordering::SeqCst);
        let cases: Vec<(Error, Result<(), Error>)> = {
            let (x, ids) = (&x[..], &ids[..]);
            let mut out = vec![];
            out.push((
                Error::WrongInputCount {
                    expected: 2,
                    given: 1,
                },
                m.run(&[&x[..8]], &mut [&mut y[..8]], &mut arena[..16]),
            ));
            out.push((
                Error::WrongOutputCount {
                    expected: 1,
                    given: 0,
                },
                m.run(&[&x[..8], &ids[..8]], &mut [], &mut arena[..16]),
            ));
            out.push((
                Error::ArenaTooSmall {
                    needed: 16,
                    given: 15,
                },
                m.run(&[&x[..8], &ids[..8]], &mut [&mut y[..8]], &mut arena[..15]),
            ));
            let misaligned = arena[1..17].as_ptr() as usize;
            out.push((
                Error::ArenaMisaligned {
                    align: 64,
                    address: misaligned,
                },
                m.run(&[&x[..8], &ids[..8]], &mut [&mut y[..8]], &mut arena[1..17]),
            ));
            out.push((
                Error::InputSize {
                    index: 0,
                    expected: 8,
                    given: 4,
                },
                m.run(&[&x[..4], &ids[..8]], &mut [&mut y[..8]], &mut arena[..16]),
            ));
            out.push((
                Error::InputSize {
                    index: 1,
                    expected: 8,
                    given: 9,
                },
                m.run(&[&x[..8], &ids[..9]], &mut [&mut y[..8]], &mut arena[..16]),
            ));
            out.push((
                Error::InputMisaligned { index: 1 },
                m.run(
                    &[&x[..8], &ids[4..12]],
                    &mut [&mut y[..8]],
                    &mut arena[..16],
                ),
            ));
            out.push((
                Error::InputMisaligned { index: 0 },
                m.run(
                    &[&x[2..10], &ids[..8]],
                    &mut [&mut y[..8]],
                    &mut arena[..16],
                ),
            ));
            out.push((
                Error::OutputSize {
                    index: 0,
                    expected: 8,
                    given: 7,
                },
                m.run(&[&x[..8], &ids[..8]], &mut [&mut y[..7]], &mut arena[..16]),
            ));
            out.push((
                Error::OutputMisaligned { index: 0 },
                m.run(&[&x[..8], &ids[..8]], &mut [&mut y[1..9]], &mut arena[..16]),
            ));
            out
        };
        for (want, got) in &cases {
            assert_eq!(got.as_ref().err(), Some(want));
        }
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            calls,
            "a refused call ran the model"
        );
        let codes: Vec<i32> = cases.iter().map(|(e, _)| e.code()).collect();
        assert_eq!(
            codes,
            [
                status::ERR_IO_COUNT,
                status::ERR_IO_COUNT,
                status::ERR_ARENA_SIZE,
                status::ERR_ARENA_ALIGN,
                status::ERR_INPUT_SIZE,
                status::ERR_INPUT_SIZE,
                status::ERR_IO_ALIGN,
                status::ERR_IO_ALIGN,
                status::ERR_OUTPUT_SIZE,
                status::ERR_IO_ALIGN,
            ]
        );
        // The stack arrays of `run` are MAX_IO long; `run_with` takes the caller's.
        let mut few_in = [core::ptr::null::<u8>(); 1];
        let mut few_out = [core::ptr::null_mut::<u8>(); 1];
        let e = m
            .run_with(
                &[&x[..8], &ids[..8]],
                &mut [&mut y[..8]],
                &mut arena[..16],
                &mut few_in,
                &mut few_out,
            )
            .unwrap_err();
        assert_eq!(e, Error::TooManyTensors { count: 2 });
        assert_eq!(e.code(), status::ERR_TOO_MANY_IO);
        assert_eq!(CALLS.load(Ordering::SeqCst), calls);

        // A correct call runs, once; a larger arena is fine.
        m.run(&[&x[..8], &ids[..8]], &mut [&mut y[..8]], &mut arena[..64])
            .unwrap();
        assert_eq!(CALLS.load(Ordering::SeqCst), calls + 1);
        assert_eq!(&y[..8], &x[..8]);
        assert_eq!(&arena[..8], &7i64.to_le_bytes());

        // The model's own status comes back as `Failed`, its code the status.
        let failing = desc(ABI_MAGIC, ABI_VERSION, fails);
        let e = Model::new(&failing)
            .unwrap()
            .run(&[&x[..8], &ids[..8]], &mut [&mut y[..8]], &mut arena[..16])
            .unwrap_err();
        assert_eq!(e, Error::Failed { status: 1 });
        assert_eq!(e.code(), status::INDEX_OUT_OF_RANGE);
        assert!(std::format!("{e}").contains("out of range"));
    }

    /// Fuzz finding (`fuzz/regressions/runtime/no_arena_odd_alignment`): a model without an
    /// arena runs with any arena slice, whatever alignment its descriptor names, as the C
    /// check does (the entry point never touches it). The fuzz target's own statement of the
    /// checks had required the alignment.
    #[test]
    fn a_model_without_an_arena_ignores_the_arena_alignment() {
        unsafe extern "C" fn copy(
            inputs: *const *const u8,
            outputs: *const *mut u8,
            _: *mut u8,
        ) -> i32 {
            // SAFETY: `Model::run` checked both buffers against the descriptor.
            unsafe { core::ptr::copy_nonoverlapping(*inputs, *outputs, 8) };
            0
        }
        let d = ModelDesc {
            arena_size: 0,
            arena_align: 9_764_863,
            num_inputs: 1,
            ..desc(ABI_MAGIC, ABI_VERSION, copy)
        };
        let m = Model::new(&d).unwrap();
        let mut store = Aligned([0; 256]);
        let (x, rest) = store.0.split_at_mut(64);
        let (y, arena) = rest.split_at_mut(64);
        x[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        m.run(&[&x[..8]], &mut [&mut y[..8]], &mut arena[1..1])
            .unwrap();
        assert_eq!(&y[..8], &x[..8]);
    }
}
