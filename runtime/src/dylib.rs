//! Loading a compiled `.so` artifact (the `std` feature).

use std::path::Path;
use std::string::String;

use crate::{Error, Model, ModelDesc};

/// A loaded shared-object artifact. The library stays loaded as long as this value lives,
/// and every [`Model`] borrowed from it.
pub struct Library {
    lib: libloading::Library,
    desc: *const ModelDesc,
}

/// Why a `.so` could not be used.
#[derive(Debug)]
pub enum LoadError {
    Open(libloading::Error),
    /// The library has no `<name>_model` symbol.
    MissingSymbol {
        symbol: String,
    },
    Abi(Error),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Open(e) => write!(f, "cannot load artifact: {e}"),
            LoadError::MissingSymbol { symbol } => {
                write!(f, "artifact exports no `{symbol}` (wrong --name?)")
            }
            LoadError::Abi(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl Library {
    /// Loads `path` and checks the `<name>_model` descriptor it exports.
    ///
    /// # Safety
    /// Loading a shared object runs its initialisers; `path` must be an edgecc artifact
    /// (or at least a library whose initialisers are harmless).
    pub unsafe fn open(path: &Path, name: &str) -> Result<Library, LoadError> {
        // SAFETY: the caller vouches for the library's initialisers.
        let lib = unsafe { libloading::Library::new(path) }.map_err(LoadError::Open)?;
        let symbol = std::format!("{name}_model");
        // SAFETY: the symbol is data, read as a descriptor only after `Model::new` checks
        // its magic word and ABI version.
        let desc = unsafe {
            lib.get::<*const ModelDesc>(symbol.as_bytes())
                .map(|s| s.try_as_raw_ptr().unwrap_or(core::ptr::null_mut()) as *const ModelDesc)
        }
        .map_err(|_| LoadError::MissingSymbol {
            symbol: symbol.clone(),
        })?;
        if desc.is_null() {
            return Err(LoadError::MissingSymbol { symbol });
        }
        let out = Library { lib, desc };
        out.model().map_err(LoadError::Abi)?;
        Ok(out)
    }

    /// The checked model; borrows the library so it cannot be unloaded under it.
    pub fn model(&self) -> Result<Model<'_>, Error> {
        // SAFETY: `desc` is the address of the exported descriptor, valid while `lib` is
        // loaded; `Model::new` checks it before anything else is read.
        Model::new(unsafe { &*self.desc })
    }

    /// The underlying library, e.g. to look up further symbols.
    pub fn library(&self) -> &libloading::Library {
        &self.lib
    }
}
