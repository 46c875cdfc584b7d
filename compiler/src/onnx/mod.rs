//! The ONNX front end: decoding, tensor data, import into the graph IR.
//!
//! Decoding uses `onnx-protobuf` (messages generated with the `protobuf` crate); see
//! docs/architecture.md for why that and not prost.

mod attrs;
mod functions;
mod import;
mod qoperator;
pub mod tensor;
mod wire;

use std::path::Path;

use onnx_protobuf::{Message, ModelProto};

pub use import::{Dim, ImportOptions, SUPPORTED_OPS, declared_type, opset_of};
pub use qoperator::QOPERATOR_OPS;
pub use tensor::DataDir;

use crate::Error;
use crate::ir::Graph;

/// Refuse model files above this size before reading them: protobuf caps a message at
/// 2 GiB, and an edge model is far smaller.
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Decodes protobuf bytes. Truncated or corrupt input is an error; no length prefix in the
/// file makes the decoder reserve memory past the file's size (see `wire.rs`).
pub fn decode(bytes: &[u8]) -> Result<ModelProto, Error> {
    wire::check(bytes).map_err(Error::Decode)?;
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    if model.graph.is_none() {
        return Err(Error::Model("the file has no graph".into()));
    }
    Ok(model)
}

/// Reads and decodes a model file.
pub fn read(path: &Path) -> Result<ModelProto, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_MODEL_BYTES {
        return Err(Error::Decode(format!(
            "{} is {} bytes, more than protobuf's 2 GiB limit",
            path.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes)
}

/// Reads a model file and imports it; external data is resolved inside its folder.
pub fn load(path: &Path, opts: &ImportOptions) -> Result<(ModelProto, Graph), Error> {
    let model = read(path)?;
    let base = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let graph = import::import(&model, DataDir { base }, opts)?;
    Ok((model, graph))
}

/// Imports an already decoded model.
pub fn import(model: &ModelProto, dir: DataDir<'_>, opts: &ImportOptions) -> Result<Graph, Error> {
    import::import(model, dir, opts)
}
