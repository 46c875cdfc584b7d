//! The JSON manifest written next to every artifact, for deployment pipelines and model
//! registries: what the artifact is, what it was built from, and what it needs.

use serde::Serialize;
use sha2::{Digest, Sha256};

use edgecc_program::{IoTensor, Program};

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Serialize)]
pub struct Manifest {
    pub edgecc_version: &'static str,
    pub abi_version: u32,
    pub model: ModelInfo,
    pub target: String,
    pub artifact: ArtifactInfo,
    pub arena: ArenaInfo,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub passes: Vec<PassInfo>,
}

#[derive(Serialize)]
pub struct ModelInfo {
    /// The symbol prefix (`--name`).
    pub name: String,
    pub source: String,
    pub sha256: String,
}

#[derive(Serialize)]
pub struct ArtifactInfo {
    pub file: String,
    /// `obj`, `so`, or `c` (hexagon targets).
    pub kind: String,
    pub sha256: String,
    /// Bytes of machine code, apart from weights; for a `c` artifact, bytes of C source
    /// (weights included), since no machine code exists before clang compiles it.
    pub code_bytes: u64,
    /// Bytes of constant data (weights).
    pub const_bytes: u64,
    pub header: Option<String>,
}

#[derive(Serialize)]
pub struct ArenaInfo {
    pub size: u64,
    pub align: u64,
    pub lower_bound: u64,
    pub heuristic: String,
}

#[derive(Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<u64>,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct PassInfo {
    pub name: String,
    pub summary: String,
}

impl TensorInfo {
    pub fn of(t: &IoTensor) -> Self {
        TensorInfo {
            name: t.name.clone(),
            dtype: t.dtype.name(),
            shape: t.shape.clone(),
            bytes: t.byte_size(),
        }
    }
}

impl Manifest {
    pub fn io(program: &Program) -> (Vec<TensorInfo>, Vec<TensorInfo>) {
        (
            program.inputs.iter().map(TensorInfo::of).collect(),
            program.outputs.iter().map(TensorInfo::of).collect(),
        )
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }
}
