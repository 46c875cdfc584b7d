//! The compile pipeline from a model file to a lowered program, shared by the CLI and
//! tests: read, import, run passes, lower. Targets take it from there.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Error;
use crate::artifact::manifest::sha256;
use crate::ir::{Graph, Tensor};
use crate::lower::{self, Lowered};
use crate::onnx::{self, DataDir, ImportOptions};
use crate::passes::{PassManager, PassRecord};

/// What the user chose.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// Inputs bound to values at compile time (see [`ImportOptions::frozen_inputs`]).
    pub frozen_inputs: BTreeMap<String, Tensor>,
    /// Symbol prefix; must be a C identifier.
    pub name: String,
    pub print_after: Vec<String>,
}

/// A model taken through the target-neutral half of the compiler.
pub struct Compiled {
    /// The graph as imported, before passes (the oracle's input).
    pub imported: Graph,
    /// The graph after passes.
    pub graph: Graph,
    pub passes: Vec<PassRecord>,
    pub lowered: Lowered,
    pub source_sha256: String,
    /// Time spent from reading the file to the lowered program.
    pub elapsed: Duration,
}

impl Options {
    /// What the importer takes of these options.
    pub fn import_options(&self) -> ImportOptions {
        ImportOptions {
            input_shapes: self.input_shapes.clone(),
            frozen_inputs: self.frozen_inputs.clone(),
        }
    }
}

/// Parses `name=2x3x4` (or `name=2,3,4`) for `--input-shape`.
pub fn parse_input_shape(s: &str) -> Result<(String, Vec<usize>), String> {
    let (name, dims) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("'{s}': expected NAME=D0xD1x..."))?;
    let dims = dims
        .split(['x', ','])
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}': '{d}' is not a dimension"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

/// Reads, imports, optimizes and lowers a model file.
pub fn compile(path: &Path, opts: &Options) -> Result<Compiled, Error> {
    let start = Instant::now();
    if !crate::artifact::is_c_ident(&opts.name) {
        return Err(Error::Input(format!(
            "--name '{}' is not a C identifier (letters, digits and _, not starting with a digit)",
            opts.name
        )));
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > onnx::MAX_MODEL_BYTES {
        return Err(Error::Decode(format!(
            "{} is larger than 2 GiB",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let model = onnx::decode(&bytes)?;
    let base = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let import_opts = opts.import_options();
    let imported = onnx::import(&model, DataDir { base }, &import_opts)?;
    let mut graph = imported.clone();
    let mut pm = PassManager::default_pipeline();
    pm.print_after = opts.print_after.clone();
    let passes = pm.run(&mut graph)?;
    let lowered = lower::lower(&graph, &opts.name)?;
    Ok(Compiled {
        imported,
        graph,
        passes,
        lowered,
        source_sha256: sha256(&bytes),
        elapsed: start.elapsed(),
    })
}
