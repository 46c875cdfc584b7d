//! The `<name>_model` descriptor ([`edgecc_runtime::ModelDesc`]) and its tensor tables, as
//! bytes plus relocations for an object file.
//!
//! Layouts (64-bit targets, little-endian) are those `runtime/src/lib.rs` asserts:
//! `TensorDesc` is 88 bytes (`name` ptr @0, `dtype` u32 @8, `rank` u32 @12,
//! `byte_size` u64 @16, `shape` [u64; 8] @24); `ModelDesc` is 64 bytes (`magic` @0,
//! `abi_version` @4, `name` @8, `arena_size` @16, `arena_align` @24, `num_inputs` @32,
//! `num_outputs` @36, `inputs` @40, `outputs` @48, `run` @56).

use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use edgecc_program::{IoTensor, Program};
use edgecc_runtime::{ABI_MAGIC, ABI_VERSION, MAX_RANK};

use crate::error::{Error, unsupported};

pub(crate) const TENSOR_DESC_SIZE: usize = 88;
pub(crate) const MODEL_DESC_SIZE: usize = 64;

/// The fixed fields of a tensor descriptor: `(dtype, rank, byte_size, shape)`.
pub(crate) fn tensor_fields(t: &IoTensor) -> Result<(u32, u32, u64, [u64; MAX_RANK]), Error> {
    if t.shape.len() > MAX_RANK {
        return Err(unsupported(format!(
            "tensor `{}` has rank {} > {MAX_RANK}",
            t.name,
            t.shape.len()
        )));
    }
    let mut shape = [0u64; MAX_RANK];
    shape[..t.shape.len()].copy_from_slice(&t.shape);
    Ok((t.dtype as u32, t.shape.len() as u32, t.byte_size(), shape))
}

/// A NUL-terminated copy of a name, refusing interior NULs.
pub(crate) fn c_name(s: &str) -> Result<Vec<u8>, Error> {
    if s.contains('\0') {
        return Err(unsupported(format!("name {s:?} contains a NUL byte")));
    }
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    Ok(v)
}

/// Defines `<name>_model` (exported) and its local string and tensor tables in `m`.
pub(crate) fn define<M: Module>(m: &mut M, p: &Program, run: FuncId) -> Result<DataId, Error> {
    let name = &p.name;
    // One string table: model name, then input names, then output names.
    let mut strtab = c_name(name)?;
    let mut offsets = Vec::new();
    for t in p.inputs.iter().chain(&p.outputs) {
        offsets.push(strtab.len() as i64);
        strtab.extend(c_name(&t.name)?);
    }
    let str_id = m.declare_data(&format!("{name}_strtab"), Linkage::Local, false, false)?;
    let mut d = DataDescription::new();
    d.define(strtab.into_boxed_slice());
    m.define_data(str_id, &d)?;

    let mut table =
        |suffix: &str, ts: &[IoTensor], offs: &[i64]| -> Result<Option<DataId>, Error> {
            if ts.is_empty() {
                return Ok(None);
            }
            let mut bytes = vec![0u8; ts.len() * TENSOR_DESC_SIZE];
            let id = m.declare_data(&format!("{name}_{suffix}"), Linkage::Local, false, false)?;
            let mut d = DataDescription::new();
            let gv = m.declare_data_in_data(str_id, &mut d);
            for (i, (t, &off)) in ts.iter().zip(offs).enumerate() {
                let (dtype, rank, size, shape) = tensor_fields(t)?;
                let b = &mut bytes[i * TENSOR_DESC_SIZE..(i + 1) * TENSOR_DESC_SIZE];
                b[8..12].copy_from_slice(&dtype.to_le_bytes());
                b[12..16].copy_from_slice(&rank.to_le_bytes());
                b[16..24].copy_from_slice(&size.to_le_bytes());
                for (j, s) in shape.iter().enumerate() {
                    b[24 + 8 * j..32 + 8 * j].copy_from_slice(&s.to_le_bytes());
                }
                d.write_data_addr((i * TENSOR_DESC_SIZE) as u32, gv, off);
            }
            d.define(bytes.into_boxed_slice());
            d.set_align(8);
            m.define_data(id, &d)?;
            Ok(Some(id))
        };
    let n_in = p.inputs.len();
    let ins = table("inputs", &p.inputs, &offsets[..n_in])?;
    let outs = table("outputs", &p.outputs, &offsets[n_in..])?;

    let mut b = vec![0u8; MODEL_DESC_SIZE];
    b[0..4].copy_from_slice(&ABI_MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&ABI_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&p.arena_size.to_le_bytes());
    b[24..32].copy_from_slice(&p.arena_align.to_le_bytes());
    b[32..36].copy_from_slice(&(p.inputs.len() as u32).to_le_bytes());
    b[36..40].copy_from_slice(&(p.outputs.len() as u32).to_le_bytes());
    let id = m.declare_data(&format!("{name}_model"), Linkage::Export, false, false)?;
    let mut d = DataDescription::new();
    let gv = m.declare_data_in_data(str_id, &mut d);
    d.write_data_addr(8, gv, 0);
    for (off, table) in [(40u32, ins), (48, outs)] {
        if let Some(t) = table {
            let gv = m.declare_data_in_data(t, &mut d);
            d.write_data_addr(off, gv, 0);
        }
    }
    let f = m.declare_func_in_data(run, &mut d);
    d.write_function_addr(56, f);
    d.define(b.into_boxed_slice());
    d.set_align(8);
    m.define_data(id, &d)?;
    Ok(id)
}
