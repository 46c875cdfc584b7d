//! `TensorProto` → [`Tensor`]: every ONNX dtype, from `raw_data`, the typed fields, or an
//! external file inside the model's folder.

use std::path::{Component, Path};

use onnx_protobuf::TensorProto;
use onnx_protobuf::tensor_proto::DataLocation;

use crate::Error;
use crate::ir::{DType, Data, Tensor};

/// Refuse tensors above this many bytes before allocating: a lying header must not make
/// edgecc allocate unbounded memory. 4 GiB is more than any edge model's weights.
pub const MAX_TENSOR_BYTES: u64 = 4 << 30;

/// Where external data may be read from.
#[derive(Clone, Copy, Debug)]
pub struct DataDir<'a> {
    /// The folder of the model file; external data must resolve inside it.
    pub base: Option<&'a Path>,
}

fn bad(t: &TensorProto, msg: impl Into<String>) -> Error {
    Error::Model(format!("initializer '{}': {}", t.name, msg.into()))
}

/// Decodes a tensor. Sizes are checked against the dims before any data is interpreted.
pub fn decode(t: &TensorProto, dir: DataDir<'_>) -> Result<Tensor, Error> {
    let dtype = DType::from_onnx(t.data_type)
        .ok_or_else(|| bad(t, format!("unknown data type {}", t.data_type)))?;
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut n: u64 = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(bad(t, format!("negative dimension {d}")));
        }
        n = n
            .checked_mul(d as u64)
            .filter(|&n| n.saturating_mul(dtype.bits().max(8) as u64) / 8 <= MAX_TENSOR_BYTES)
            .ok_or_else(|| bad(t, format!("dims {:?} are too large", t.dims)))?;
        shape.push(d as usize);
    }
    // Zero dims too: the others must keep to the graph's limit (`ir::checked_elements`).
    if crate::ir::checked_elements(&shape).is_none() {
        return Err(bad(t, format!("dims {:?} are too large", t.dims)));
    }
    let n = n as usize;
    let external;
    let raw: Option<&[u8]> = if t.data_location.enum_value() == Ok(DataLocation::EXTERNAL) {
        external = read_external(t, dtype, n, dir)?;
        Some(&external)
    } else if !t.raw_data.is_empty() || (n == 0 && dtype != DType::String) {
        Some(&t.raw_data)
    } else {
        None
    };
    let data = match raw {
        Some(bytes) => from_raw(t, dtype, n, bytes)?,
        None => from_typed(t, dtype, n)?,
    };
    Ok(Tensor { dtype, shape, data })
}

fn read_external(
    t: &TensorProto,
    dtype: DType,
    n: usize,
    dir: DataDir<'_>,
) -> Result<Vec<u8>, Error> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => {
                offset = kv
                    .value
                    .parse()
                    .map_err(|_| bad(t, "bad external offset"))?
            }
            "length" => {
                length = Some(
                    kv.value
                        .parse::<u64>()
                        .map_err(|_| bad(t, "bad external length"))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad(t, "external data without a location"))?;
    let err = |reason: &str| Error::ExternalData {
        tensor: t.name.clone(),
        location: location.clone(),
        reason: reason.into(),
    };
    let base = dir
        .base
        .ok_or_else(|| err("the model was not loaded from a file, so it has no folder"))?;
    // Only plain relative paths that stay inside the model's folder: no absolute paths, no
    // `..`, no drive prefixes; then the canonical path must still be under the folder, so a
    // symlink cannot lead out either.
    let rel = Path::new(&location);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(err(
            "path leaves the model's folder (only relative paths inside it are allowed)",
        ));
    }
    let base_canon = base.canonicalize().map_err(|e| err(&e.to_string()))?;
    let path = base_canon.join(rel);
    let canon = path
        .canonicalize()
        .map_err(|e| err(&format!("cannot open: {e}")))?;
    if !canon.starts_with(&base_canon) {
        return Err(err("path resolves outside the model's folder"));
    }
    let want = (n * dtype.bits()).div_ceil(8) as u64;
    let length = length.unwrap_or(want);
    if length != want {
        return Err(err(&format!(
            "length {length} does not match dims ({want} bytes)"
        )));
    }
    use std::io::{Read, Seek, SeekFrom};
    // Only a regular file: opening a FIFO would block, a device could be endless.
    let kind = canon
        .metadata()
        .map_err(|e| err(&format!("cannot open: {e}")))?;
    if !kind.is_file() {
        return Err(err("not a regular file"));
    }
    let mut f = std::fs::File::open(&canon).map_err(|e| err(&format!("cannot open: {e}")))?;
    let size = f.metadata().map_err(|e| err(&e.to_string()))?.len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(err(&format!(
            "bytes {offset}..{} are past the end of the file ({size} bytes)",
            offset.saturating_add(length)
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| err(&e.to_string()))?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf).map_err(|e| err(&e.to_string()))?;
    Ok(buf)
}

fn chunks<const W: usize>(b: &[u8]) -> impl Iterator<Item = [u8; W]> + '_ {
    b.chunks_exact(W)
        .map(|c| c.try_into().expect("exact chunk"))
}

/// Unpacks sub-byte codes: element `i` occupies bits `i*bits ..` of a little-endian,
/// LSB-first bit stream (ONNX's packing for 2-, 4- and 6-bit types).
fn unpack_bits(bytes: &[u8], bits: usize, n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let start = i * bits;
            let mut code = 0u16;
            for b in 0..bits {
                let bit = start + b;
                code |= (((bytes[bit / 8] >> (bit % 8)) & 1) as u16) << b;
            }
            code
        })
        .collect()
}

fn from_raw(t: &TensorProto, dtype: DType, n: usize, b: &[u8]) -> Result<Data, Error> {
    if dtype == DType::String {
        return Err(bad(t, "string tensors cannot use raw_data"));
    }
    let want = (n * dtype.bits()).div_ceil(8);
    if b.len() != want {
        return Err(bad(
            t,
            format!("raw_data has {} bytes, dims need {want}", b.len()),
        ));
    }
    Ok(match dtype {
        DType::F32 => Data::F32(chunks::<4>(b).map(f32::from_le_bytes).collect()),
        DType::F64 => Data::F64(chunks::<8>(b).map(f64::from_le_bytes).collect()),
        DType::I64 => Data::I64(chunks::<8>(b).map(i64::from_le_bytes).collect()),
        DType::I32 => Data::I32(chunks::<4>(b).map(i32::from_le_bytes).collect()),
        DType::I16 => Data::I16(chunks::<2>(b).map(i16::from_le_bytes).collect()),
        DType::I8 => Data::I8(b.iter().map(|&x| x as i8).collect()),
        DType::U64 => Data::U64(chunks::<8>(b).map(u64::from_le_bytes).collect()),
        DType::U32 => Data::U32(chunks::<4>(b).map(u32::from_le_bytes).collect()),
        DType::U16 => Data::U16(chunks::<2>(b).map(u16::from_le_bytes).collect()),
        DType::U8 => Data::U8(b.to_vec()),
        DType::Bool => Data::Bool(b.iter().map(|&x| x != 0).collect()),
        DType::Complex64 => Data::C64(
            chunks::<8>(b)
                .map(|c| {
                    [
                        f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                        f32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                    ]
                })
                .collect(),
        ),
        DType::Complex128 => Data::C128(
            chunks::<16>(b)
                .map(|c| {
                    [
                        f64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                        f64::from_le_bytes(c[8..].try_into().expect("8 bytes")),
                    ]
                })
                .collect(),
        ),
        DType::F16 | DType::BF16 => Data::Codes(chunks::<2>(b).map(u16::from_le_bytes).collect()),
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 => {
            Data::Codes(b.iter().map(|&x| x as u16).collect())
        }
        DType::U4
        | DType::I4
        | DType::F4E2M1
        | DType::U2
        | DType::I2
        | DType::F6E2M3
        | DType::F6E3M2 => Data::Codes(unpack_bits(b, dtype.bits(), n)),
        DType::String => unreachable!("handled above"),
    })
}

fn from_typed(t: &TensorProto, dtype: DType, n: usize) -> Result<Data, Error> {
    let count = |len: usize, per: usize| -> Result<(), Error> {
        if len * per != n && !(per > 1 && len == n.div_ceil(per)) {
            return Err(bad(
                t,
                format!("typed data has {len} entries, dims need {n} elements"),
            ));
        }
        Ok(())
    };
    let i32s = &t.int32_data;
    Ok(match dtype {
        DType::F32 => {
            count(t.float_data.len(), 1)?;
            Data::F32(t.float_data.clone())
        }
        DType::Complex64 => {
            count(t.float_data.len(), 1).or_else(|_| count(t.float_data.len() / 2, 1))?;
            if t.float_data.len() != 2 * n {
                return Err(bad(t, "complex64 needs two floats per element"));
            }
            Data::C64(t.float_data.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
        }
        DType::F64 => {
            count(t.double_data.len(), 1)?;
            Data::F64(t.double_data.clone())
        }
        DType::Complex128 => {
            if t.double_data.len() != 2 * n {
                return Err(bad(t, "complex128 needs two doubles per element"));
            }
            Data::C128(
                t.double_data
                    .chunks_exact(2)
                    .map(|c| [c[0], c[1]])
                    .collect(),
            )
        }
        DType::I64 => {
            count(t.int64_data.len(), 1)?;
            Data::I64(t.int64_data.clone())
        }
        DType::U64 => {
            count(t.uint64_data.len(), 1)?;
            Data::U64(t.uint64_data.clone())
        }
        DType::U32 => {
            count(t.uint64_data.len(), 1)?;
            Data::U32(t.uint64_data.iter().map(|&x| x as u32).collect())
        }
        DType::String => {
            count(t.string_data.len(), 1)?;
            Data::Str(t.string_data.clone())
        }
        DType::I32 => {
            count(i32s.len(), 1)?;
            Data::I32(i32s.clone())
        }
        DType::I16 => {
            count(i32s.len(), 1)?;
            Data::I16(i32s.iter().map(|&x| x as i16).collect())
        }
        DType::I8 => {
            count(i32s.len(), 1)?;
            Data::I8(i32s.iter().map(|&x| x as i8).collect())
        }
        DType::U16 => {
            count(i32s.len(), 1)?;
            Data::U16(i32s.iter().map(|&x| x as u16).collect())
        }
        DType::U8 => {
            count(i32s.len(), 1)?;
            Data::U8(i32s.iter().map(|&x| x as u8).collect())
        }
        DType::Bool => {
            count(i32s.len(), 1)?;
            Data::Bool(i32s.iter().map(|&x| x != 0).collect())
        }
        // One code per int32 entry: the 16-bit floats as their bit patterns, the 8- and
        // 6-bit floats as one byte each.
        DType::F16
        | DType::BF16
        | DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::F6E2M3
        | DType::F6E3M2 => {
            count(i32s.len(), 1)?;
            Data::Codes(i32s.iter().map(|&x| x as u16).collect())
        }
        // Packed like raw_data, one packed byte per int32 entry.
        DType::U4 | DType::I4 | DType::F4E2M1 | DType::U2 | DType::I2 => {
            let per = 8 / dtype.bits();
            if i32s.len() != n.div_ceil(per) {
                return Err(bad(
                    t,
                    format!(
                        "typed data has {} packed entries, dims need {}",
                        i32s.len(),
                        n.div_ceil(per)
                    ),
                ));
            }
            let bytes: Vec<u8> = i32s.iter().map(|&x| x as u8).collect();
            Data::Codes(unpack_bits(&bytes, dtype.bits(), n))
        }
    })
}
