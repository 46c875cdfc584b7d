//! The one error type of the backend.

use std::fmt;

/// Why a program could not be compiled, linked or loaded.
#[derive(Debug)]
pub enum Error {
    /// The target string names an architecture or feature this backend does not support.
    Target(String),
    /// The program uses something this backend cannot express (it is malformed, or a
    /// kernel shape overflows 32-bit offsets, ...).
    Unsupported(String),
    /// Cranelift rejected or failed on generated code (a backend bug).
    Codegen(String),
    /// The system linker is missing or failed.
    Link(String),
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Target(s) => write!(f, "unsupported target: {s}"),
            Error::Unsupported(s) => write!(f, "unsupported program: {s}"),
            Error::Codegen(s) => write!(f, "code generation failed: {s}"),
            Error::Link(s) => write!(f, "linking failed: {s}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<cranelift_module::ModuleError> for Error {
    fn from(e: cranelift_module::ModuleError) -> Self {
        Error::Codegen(format!("{e:?}"))
    }
}

pub(crate) fn unsupported(s: impl Into<String>) -> Error {
    Error::Unsupported(s.into())
}
