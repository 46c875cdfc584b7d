//! `edgecc-runtime`'s checked call with a descriptor and caller buffers chosen by the
//! fuzzer: counts, names, dtypes, ranks, shapes, byte sizes, arena size and alignment, the
//! buffers' lengths and alignments, `run` and `run_with` (pointer arrays of any length).
//! A dummy entry point checks what it was given and touches every byte the descriptor
//! promises it (AddressSanitizer sees any byte outside a buffer), and an independent
//! statement of the checks says whether the call must be refused. Anything unsound, or a
//! refusal that disagrees with that statement, is a finding.
#![no_main]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::ffi::CString;

use edgecc_runtime::{
    ABI_MAGIC, ABI_VERSION, Error, MAX_IO, MAX_RANK, Model, ModelDesc, TensorDesc,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// What the entry point may touch, and what it returns.
struct Expect {
    inputs: Vec<(u64, usize)>,
    outputs: Vec<(u64, usize)>,
    arena_size: u64,
    arena_align: u64,
    status: i32,
    called: bool,
}

thread_local! {
    static EXPECT: RefCell<Option<Expect>> = const { RefCell::new(None) };
}

/// The artifact's entry point: reads every input byte, writes every output byte and the
/// arena, as compiled code may.
unsafe extern "C" fn entry(
    inputs: *const *const u8,
    outputs: *const *mut u8,
    arena: *mut u8,
) -> i32 {
    EXPECT.with(|e| {
        let mut e = e.borrow_mut();
        let e = e.as_mut().expect("an expectation");
        assert!(!e.called, "called twice");
        e.called = true;
        for (i, &(size, elem)) in e.inputs.iter().enumerate() {
            // SAFETY: `inputs` has one pointer per input (what is being checked).
            let p = unsafe { *inputs.add(i) };
            if size > 0 {
                assert!(!p.is_null(), "input {i} is null");
                assert!((p as usize).is_multiple_of(elem), "input {i} misaligned");
                // SAFETY: the runtime promised `size` readable bytes.
                let s = unsafe { std::slice::from_raw_parts(p, size as usize) };
                std::hint::black_box(s.iter().fold(0u8, |a, &b| a ^ b));
            }
        }
        for (i, &(size, elem)) in e.outputs.iter().enumerate() {
            // SAFETY: as for the inputs.
            let p = unsafe { *outputs.add(i) };
            if size > 0 {
                assert!(!p.is_null(), "output {i} is null");
                assert!((p as usize).is_multiple_of(elem), "output {i} misaligned");
                // SAFETY: the runtime promised `size` writable bytes.
                unsafe { std::ptr::write_bytes(p, 0xAB, size as usize) };
            }
        }
        if e.arena_size > 0 {
            assert!(!arena.is_null(), "arena is null");
            if e.arena_align > 1 {
                assert!(
                    (arena as usize).is_multiple_of(e.arena_align as usize),
                    "arena misaligned"
                );
            }
            // SAFETY: the runtime promised `arena_size` writable bytes.
            unsafe { std::ptr::write_bytes(arena, 0xCD, e.arena_size as usize) };
        }
        e.status
    })
}

/// A heap buffer of exactly `len` bytes starting `offset` bytes past a 64-byte boundary,
/// so AddressSanitizer reports any access past its end.
struct Buf {
    ptr: *mut u8,
    layout: Layout,
    offset: usize,
    len: usize,
}

impl Buf {
    fn new(len: usize, offset: usize) -> Buf {
        let layout = Layout::from_size_align(offset + len + usize::from(offset + len == 0), 64)
            .expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Buf {
            ptr,
            layout,
            offset,
            len,
        }
    }

    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: `offset + len` bytes were allocated.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(self.offset), self.len) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

const DTYPES: [u32; 8] = [1, 2, 3, 6, 7, 9, 0, 11];

fn tensor_desc(u: &mut Unstructured, names: &mut Vec<CString>) -> Result<TensorDesc> {
    let name = CString::new(u.arbitrary::<String>()?.replace('\0', "")).expect("no NUL");
    let p = name.as_ptr();
    names.push(name);
    let dtype = if u.ratio(7, 8)? {
        *u.choose(&DTYPES)?
    } else {
        u.arbitrary()?
    };
    let rank = if u.ratio(7, 8)? {
        u.int_in_range(0..=MAX_RANK as u32)?
    } else {
        u.arbitrary()?
    };
    let mut shape = [0u64; MAX_RANK];
    for d in &mut shape {
        *d = if u.ratio(3, 4)? {
            u.int_in_range(0..=8)?
        } else {
            u.arbitrary()?
        };
    }
    let byte_size = if u.ratio(7, 8)? {
        u.int_in_range(0..=256)?
    } else {
        u.arbitrary()?
    };
    Ok(TensorDesc {
        name: p,
        dtype,
        rank,
        byte_size,
        shape,
    })
}

/// A caller's buffer for `td`: usually the right size, sometimes not; sometimes misaligned.
fn buffer(u: &mut Unstructured, td: Option<&TensorDesc>) -> Result<Buf> {
    let want = td.map_or(0, |t| t.byte_size.min(4096) as usize);
    let len = if u.ratio(7, 8)? {
        want
    } else {
        u.int_in_range(0..=want + 16)?
    };
    let offset = if u.ratio(7, 8)? {
        0
    } else {
        u.int_in_range(0..=7)?
    };
    Ok(Buf::new(len, offset))
}

fn one(u: &mut Unstructured) -> Result<()> {
    let mut names = Vec::new();
    let model_name = CString::new(u.arbitrary::<String>()?.replace('\0', "")).expect("no NUL");
    let n_in = u.int_in_range(0..=MAX_IO as u32 + 6)?;
    let n_out = u.int_in_range(0..=MAX_IO as u32 + 6)?;
    let mut ins = Vec::new();
    for _ in 0..n_in {
        ins.push(tensor_desc(u, &mut names)?);
    }
    let mut outs = Vec::new();
    for _ in 0..n_out {
        outs.push(tensor_desc(u, &mut names)?);
    }
    let desc = ModelDesc {
        magic: if u.ratio(15, 16)? {
            ABI_MAGIC
        } else {
            u.arbitrary()?
        },
        abi_version: if u.ratio(15, 16)? {
            ABI_VERSION
        } else {
            u.arbitrary()?
        },
        name: model_name.as_ptr(),
        arena_size: if u.ratio(7, 8)? {
            u.int_in_range(0..=1024)?
        } else {
            u.arbitrary()?
        },
        arena_align: if u.ratio(3, 4)? {
            1u64 << u.int_in_range(0..=8)?
        } else {
            u.arbitrary()?
        },
        num_inputs: n_in,
        num_outputs: n_out,
        inputs: ins.as_ptr(),
        outputs: outs.as_ptr(),
        run: entry,
    };
    let model = match Model::new(&desc) {
        Ok(m) => m,
        Err(e) => {
            assert!(
                desc.magic != ABI_MAGIC || desc.abi_version != ABI_VERSION,
                "{e}"
            );
            let _ = e.to_string();
            return Ok(());
        }
    };
    assert!(desc.magic == ABI_MAGIC && desc.abi_version == ABI_VERSION);
    // The accessors.
    let _ = model.name();
    assert_eq!(model.inputs().len(), n_in as usize);
    assert_eq!(model.outputs().len(), n_out as usize);
    for td in model.inputs().iter().chain(model.outputs()) {
        assert!(td.shape().len() <= MAX_RANK);
        assert!(matches!(td.element_size(), 1 | 4 | 8));
        // SAFETY: every name is a C string.
        let _ = unsafe { td.name() };
    }

    // The caller's side: buffer counts usually right.
    let give_in = if u.ratio(15, 16)? {
        n_in as usize
    } else {
        u.int_in_range(0..=n_in as usize + 2)?
    };
    let give_out = if u.ratio(15, 16)? {
        n_out as usize
    } else {
        u.int_in_range(0..=n_out as usize + 2)?
    };
    let mut in_bufs = Vec::new();
    for i in 0..give_in {
        in_bufs.push(buffer(u, ins.get(i))?);
    }
    let mut out_bufs = Vec::new();
    for i in 0..give_out {
        out_bufs.push(buffer(u, outs.get(i))?);
    }
    let arena_want = desc.arena_size.min(1 << 16) as usize;
    let arena_len = if u.ratio(7, 8)? {
        arena_want
    } else {
        u.int_in_range(0..=arena_want + 64)?
    };
    let arena_off = if u.ratio(7, 8)? {
        0
    } else {
        u.int_in_range(0..=63)?
    };
    let mut arena = Buf::new(arena_len, arena_off);
    let status = if u.ratio(7, 8)? { 0 } else { u.arbitrary()? };
    let use_run_with = u.arbitrary::<bool>()?;
    let in_ptr_len = if u.ratio(7, 8)? {
        give_in
    } else {
        u.int_in_range(0..=give_in + 2)?
    };
    let out_ptr_len = if u.ratio(7, 8)? {
        give_out
    } else {
        u.int_in_range(0..=give_out + 2)?
    };

    let in_slices: Vec<&[u8]> = in_bufs.iter_mut().map(|b| &*b.slice()).collect();
    let mut out_slices: Vec<&mut [u8]> = out_bufs.iter_mut().map(|b| b.slice()).collect();
    let arena_slice = arena.slice();

    // The checks, stated independently: what must be refused, in the runtime's order.
    let aligned = |s: &[u8], td: &TensorDesc| {
        s.is_empty() || (s.as_ptr() as usize).is_multiple_of(td.element_size())
    };
    let ok = (use_run_with || (n_in.max(n_out) as usize) <= MAX_IO)
        && give_in == n_in as usize
        && give_out == n_out as usize
        && (!use_run_with || (in_ptr_len >= give_in && out_ptr_len >= give_out))
        && arena_slice.len() as u64 >= desc.arena_size
        // A model without an arena never touches it, so its alignment does not matter.
        && (desc.arena_size == 0
            || desc.arena_align <= 1
            || (arena_slice.as_ptr() as usize).is_multiple_of(desc.arena_align as usize))
        && in_slices
            .iter()
            .zip(&ins)
            .all(|(s, td)| s.len() as u64 == td.byte_size && aligned(s, td))
        && out_slices
            .iter()
            .zip(&outs)
            .all(|(s, td)| s.len() as u64 == td.byte_size && aligned(s, td));

    EXPECT.with(|e| {
        *e.borrow_mut() = Some(Expect {
            inputs: ins
                .iter()
                .map(|t| (t.byte_size, t.element_size()))
                .collect(),
            outputs: outs
                .iter()
                .map(|t| (t.byte_size, t.element_size()))
                .collect(),
            arena_size: desc.arena_size,
            arena_align: desc.arena_align,
            status,
            called: false,
        })
    });
    let result = if use_run_with {
        let mut in_ptrs = vec![std::ptr::null::<u8>(); in_ptr_len];
        let mut out_ptrs = vec![std::ptr::null_mut::<u8>(); out_ptr_len];
        model.run_with(
            &in_slices,
            &mut out_slices,
            arena_slice,
            &mut in_ptrs,
            &mut out_ptrs,
        )
    } else {
        model.run(&in_slices, &mut out_slices, arena_slice)
    };
    let called = EXPECT.with(|e| e.borrow_mut().take().expect("expectation").called);
    match result {
        Ok(()) => assert!(called && status == 0 && ok),
        Err(Error::Failed { status: s }) => assert!(called && s == status && s != 0 && ok),
        Err(e) => {
            assert!(!called, "refused ({e}) after calling the model");
            assert!(!ok, "refused a valid call: {e}");
            let _ = e.to_string();
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = one(&mut Unstructured::new(data));
});
