//! The compiler's error type. Every failure a user can cause is a variant with enough
//! context to fix the input; nothing in the library panics on bad input.

use std::fmt;
use std::path::PathBuf;

/// An op the importer cannot translate, with where it appears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedOp {
    pub node: String,
    pub op_type: String,
    pub domain: String,
    /// The opset the model imports for the op's domain; 0 when the lowering refused it.
    pub opset: i64,
    /// Why, when it is not simply an unknown op (an attribute value, a dynamic input...).
    pub reason: Option<String>,
}

#[derive(Debug)]
pub enum Error {
    /// The bytes are not a valid ONNX protobuf.
    Decode(String),
    /// The model is well-formed protobuf but not a valid ONNX model (missing graph,
    /// dangling value names, bad initializer sizes...).
    Model(String),
    /// Every unsupported op in the model, reported at once.
    Unsupported(Vec<UnsupportedOp>),
    /// A node's inputs do not fit its op.
    Shape {
        node: String,
        op: String,
        msg: String,
    },
    /// Graph inputs with symbolic dimensions that `--input-shape` did not resolve.
    UnresolvedDims(Vec<(String, String)>),
    /// An external-data reference that is refused or unreadable.
    ExternalData {
        tensor: String,
        location: String,
        reason: String,
    },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A problem with the user's run-time inputs (`edgecc run`).
    Input(String),
    /// The target could not produce or run an artifact.
    Target(String),
    /// A bug in edgecc: a pass broke an invariant.
    Internal(String),
    /// Text IR that does not parse (see [`crate::ir::parse`]); `line` counts from 1.
    Parse { line: usize, msg: String },
    /// `--require-int8`: the quantized model still computes these nodes in float.
    NotInt8(Vec<crate::passes::FloatIsland>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Decode(m) => write!(f, "not a valid ONNX file: {m}"),
            Error::Model(m) => write!(f, "invalid model: {m}"),
            Error::NotInt8(islands) => {
                write!(
                    f,
                    "--require-int8: {} node(s) of the quantized model run in float:",
                    islands.len()
                )?;
                for i in islands {
                    write!(f, "\n  node '{}' ({}): {}", i.node, i.op, i.reason)?;
                }
                Ok(())
            }
            Error::Unsupported(ops) => {
                writeln!(f, "{} unsupported op(s):", ops.len())?;
                for op in ops {
                    let domain = if op.domain.is_empty() {
                        "ai.onnx"
                    } else {
                        &op.domain
                    };
                    write!(f, "  node '{}': {}", op.node, op.op_type)?;
                    // Ops refused after import (by the lowering) carry no opset.
                    if op.opset > 0 {
                        write!(f, " ({domain}, opset {})", op.opset)?;
                    }
                    if let Some(r) = &op.reason {
                        write!(f, ": {r}")?;
                    }
                    writeln!(f)?;
                }
                Ok(())
            }
            Error::Shape { node, op, msg } => write!(f, "node '{node}' ({op}): {msg}"),
            Error::UnresolvedDims(dims) => {
                write!(f, "unresolved symbolic dimensions:")?;
                for (input, dim) in dims {
                    write!(f, " {input}[{dim}]")?;
                }
                write!(
                    f,
                    "; give them with --input-shape NAME=D0xD1x... (e.g. --input-shape {}=1x...)",
                    dims.first().map(|d| d.0.as_str()).unwrap_or("x")
                )
            }
            Error::ExternalData {
                tensor,
                location,
                reason,
            } => write!(f, "external data of '{tensor}' at '{location}': {reason}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Input(m) => write!(f, "{m}"),
            Error::Target(m) => write!(f, "{m}"),
            Error::Internal(m) => write!(f, "internal error (please report): {m}"),
            Error::Parse { line, msg } => write!(f, "line {line}: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
