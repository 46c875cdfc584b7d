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
use crate::passes::{self, PassManager, PassRecord};

/// What the user chose.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// Inputs bound to values at compile time (see [`ImportOptions::frozen_inputs`]).
    pub frozen_inputs: BTreeMap<String, Tensor>,
    /// Symbol prefix; must be a C identifier.
    pub name: String,
    pub print_after: Vec<String>,
    /// Passes to leave out of the default pipeline (every run of each); registered names.
    pub disable_passes: Vec<String>,
    /// Fail when a quantized model still computes anything in float
    /// ([`Compiled::float_islands`] not empty).
    pub require_int8: bool,
}

/// A model taken through the target-neutral half of the compiler.
pub struct Compiled {
    /// The graph as imported, before passes (the oracle's input).
    pub imported: Graph,
    /// The graph after passes.
    pub graph: Graph,
    pub passes: Vec<PassRecord>,
    pub lowered: Lowered,
    /// Kernels of the program lowered without [`passes::FUSION_PASSES`] (and without the
    /// user's disabled passes): what fusion saves. `None` when that lowering fails; it is
    /// only a report.
    pub kernels_without_fusion: Option<usize>,
    /// The float work of a quantized model, each node with the reason it was not folded
    /// into an integer kernel (as `fold-requant` left the graph); empty for float models.
    pub float_islands: Vec<passes::FloatIsland>,
    pub source_sha256: String,
    /// Time spent from reading the file to the lowered program.
    pub elapsed: Duration,
}

impl Options {
    /// Refuses unknown names in `disable_passes` and `print_after` (which also takes
    /// `all`), listing the valid ones.
    pub fn check_pass_names(&self) -> Result<(), Error> {
        passes::check_names(&self.disable_passes, "--disable-pass", &[])?;
        passes::check_names(&self.print_after, "--print-after", &["all"])
    }

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
    opts.check_pass_names()?;
    let mut pm = PassManager::default_pipeline_without(&opts.disable_passes)?;
    pm.print_after = opts.print_after.clone();
    let import_opts = opts.import_options();
    let imported = onnx::import(&model, DataDir { base }, &import_opts)?;
    let mut graph = imported.clone();
    let mut islands = None;
    let passes = pm.run_observed(&mut graph, |pass, g| {
        if pass == "fold-requant" && islands.is_none() {
            islands = Some(passes::float_islands(g));
        }
    })?;
    let float_islands = islands.unwrap_or_else(|| passes::float_islands(&graph));
    if opts.require_int8 && !float_islands.is_empty() {
        return Err(Error::NotInt8(float_islands));
    }
    let lowered = lower::lower(&graph, &opts.name)?;
    let kernels_without_fusion = kernels_without_fusion(&imported, opts, &lowered);
    Ok(Compiled {
        imported,
        graph,
        passes,
        lowered,
        kernels_without_fusion,
        float_islands,
        source_sha256: sha256(&bytes),
        elapsed: start.elapsed(),
    })
}

/// The kernel count of `imported` lowered with the fusion passes also disabled; when none
/// of them is in the pipeline this is `lowered`'s own count (no second run).
fn kernels_without_fusion(imported: &Graph, opts: &Options, lowered: &Lowered) -> Option<usize> {
    let registered = passes::names();
    let mut disabled = opts.disable_passes.clone();
    let before = disabled.len();
    for &f in passes::FUSION_PASSES {
        if registered.contains(&f) && !disabled.iter().any(|d| d == f) {
            disabled.push(f.to_string());
        }
    }
    if disabled.len() == before {
        return Some(lowered.program.kernels.len());
    }
    let mut g = imported.clone();
    PassManager::default_pipeline_without(&disabled)
        .ok()?
        .run(&mut g)
        .ok()?;
    Some(lower::lower(&g, &opts.name).ok()?.program.kernels.len())
}
