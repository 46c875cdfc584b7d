//! Reading and writing tensors: `.npy` (via `npyz`) and ONNX `TensorProto` `.pb` files,
//! the format of the ONNX test data.

use std::path::Path;

use npyz::WriterBuilder;
use onnx_protobuf::{Message, TensorProto};

use crate::Error;
use crate::ir::{DType, Data, Tensor};
use crate::onnx::{DataDir, tensor};

/// Reads a tensor from `.npy` or `.pb` (chosen by extension; anything else is tried as npy).
pub fn read_tensor(path: &Path) -> Result<Tensor, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let format = if path.extension().is_some_and(|e| e == "pb") {
        TensorFormat::Pb
    } else {
        TensorFormat::Npy
    };
    decode_tensor(&bytes, format).map_err(|e| match e {
        Error::Input(m) => Error::Input(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// The file formats [`decode_tensor`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorFormat {
    /// NumPy's `.npy`.
    Npy,
    /// A serialized ONNX `TensorProto` (the ONNX test-data `.pb` files); external data is
    /// refused, since the bytes have no folder.
    Pb,
}

/// Decodes a tensor file's bytes. Sizes in a header are checked against the data before
/// anything is allocated for them.
pub fn decode_tensor(bytes: &[u8], format: TensorFormat) -> Result<Tensor, Error> {
    match format {
        TensorFormat::Pb => {
            let t = TensorProto::parse_from_bytes(bytes)
                .map_err(|e| Error::Input(format!("not a TensorProto: {e}")))?;
            tensor::decode(&t, DataDir { base: None })
        }
        TensorFormat::Npy => read_npy(bytes).map_err(Error::Input),
    }
}

fn read_npy(bytes: &[u8]) -> Result<Tensor, String> {
    let npy = npyz::NpyFile::new(bytes).map_err(|e| format!("not a .npy file: {e}"))?;
    if npy.order() != npyz::Order::C {
        return Err(
            "Fortran-order arrays are not supported; save with np.ascontiguousarray".into(),
        );
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        _ => return Err("structured arrays are not supported".into()),
    };
    let e = |e: std::io::Error| e.to_string();
    let (dtype, data) = match descr.trim_start_matches(['<', '|', '=']) {
        "f4" => (DType::F32, Data::F32(npy.into_vec().map_err(e)?)),
        "f8" => (DType::F64, Data::F64(npy.into_vec().map_err(e)?)),
        "i8" => (DType::I64, Data::I64(npy.into_vec().map_err(e)?)),
        "i4" => (DType::I32, Data::I32(npy.into_vec().map_err(e)?)),
        "i1" => (DType::I8, Data::I8(npy.into_vec().map_err(e)?)),
        "u1" => (DType::U8, Data::U8(npy.into_vec().map_err(e)?)),
        "b1" => (DType::Bool, Data::Bool(npy.into_vec().map_err(e)?)),
        other => {
            return Err(format!(
                "dtype '{other}' is not supported (f4, f8, i8, i4, i1, u1, b1 are)"
            ));
        }
    };
    if data.len() != shape.iter().product::<usize>() {
        return Err("data length does not match shape".into());
    }
    Ok(Tensor { dtype, shape, data })
}

/// Writes a tensor as `.npy`.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), Error> {
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let io = |e: std::io::Error| Error::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    macro_rules! put {
        ($v:expr) => {{
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut w)
                .begin_nd()
                .map_err(io)?;
            writer.extend($v.iter().copied()).map_err(io)?;
            writer.finish().map_err(io)?;
        }};
    }
    match &t.data {
        Data::F32(v) => put!(v),
        Data::F64(v) => put!(v),
        Data::I64(v) => put!(v),
        Data::I32(v) => put!(v),
        Data::I8(v) => put!(v),
        Data::U8(v) => put!(v),
        Data::Bool(v) => put!(v),
        _ => {
            return Err(Error::Input(format!(
                "cannot write {} tensors as .npy",
                t.dtype
            )));
        }
    }
    Ok(())
}
