//! Graph-to-graph rewrites, one pass per file, run by a small pass manager.
//!
//! A pass must not change what the interpreter computes (within float tolerance); the
//! verifier runs after each pass in debug builds and tests, and each pass returns a
//! one-line summary of what it changed for the compile report.
//!
//! # The default pipeline
//!
//! [`PIPELINE`] is the one place a pass is registered; its order is fixed:
//!
//! 1. `fold-constants`: evaluate nodes whose inputs are all constants (except
//!    DequantizeLinear: quantized weights stay 8-bit);
//! 2. `fold-requant`: quantized float islands become integer kernels, before pruning and
//!    fusion could reshape the patterns it matches;
//! 3. `dead-heads`, 4. `dead-channels`: remove attention heads and FFN channels that
//!    structured pruning zeroed;
//! 5. `fold-constants` again, over what pruning left constant;
//! 6. `fold-batchnorm`, 7. `fuse-layernorm`, 8. `fuse-gelu`, 9. `fold-transposes`,
//!    10. `fuse-epilogue`, 11. `fuse-softmax`: the fusion passes ([`FUSION_PASSES`]), which
//!    turn exporter patterns into single ops;
//! 12. `dead-code`: drop what the rewrites left unused.
//!
//! Pruning runs before fusion because it matches the exporters' unfused patterns; the
//! second `fold-constants` folds what pruning leaves constant. A pass may appear more
//! than once; `--disable-pass NAME` disables all of its runs, and [`by_name`] finds any
//! registered pass (the filetests run passes one by one through it).

mod dead_channels;
mod dead_code;
mod dead_heads;
mod fold_batchnorm;
mod fold_constants;
mod fold_requant;
mod fold_transposes;
mod fuse_epilogue;
mod fuse_gelu;
mod fuse_layernorm;
mod fuse_softmax;
mod pattern;
mod pruning;
#[cfg(test)]
mod testing;

use crate::Error;
use crate::ir::{Graph, print, verify};

pub use dead_channels::DeadChannels;
pub use dead_code::DeadCode;
pub use dead_heads::DeadHeads;
pub use fold_batchnorm::FoldBatchNorm;
pub use fold_constants::{FoldConstants, keeps_quantized};
pub use fold_requant::{FloatIsland, FoldRequant, float_islands};
pub use fold_transposes::FoldTransposes;
pub use fuse_epilogue::FuseEpilogue;
pub use fuse_gelu::FuseGelu;
pub use fuse_layernorm::FuseLayerNorm;
pub use fuse_softmax::FuseSoftmax;

/// Builds a pass; one entry per run in the default pipeline.
type MakePass = fn() -> Box<dyn Pass>;

/// The default pipeline, in order (see the module doc). Registering a pass is adding it
/// here at its place.
pub const PIPELINE: &[MakePass] = &[
    || Box::new(FoldConstants),
    || Box::new(FoldRequant),
    || Box::new(DeadHeads),
    || Box::new(DeadChannels),
    || Box::new(FoldConstants),
    || Box::new(FoldBatchNorm),
    || Box::new(FuseLayerNorm),
    || Box::new(FuseGelu),
    || Box::new(FoldTransposes),
    || Box::new(FuseEpilogue),
    || Box::new(FuseSoftmax),
    || Box::new(DeadCode),
];

/// The passes that fuse ops; `edgecc compile` reports the kernel count without them.
/// Names not in [`PIPELINE`] are skipped.
pub const FUSION_PASSES: &[&str] = &[
    "fold-batchnorm",
    "fuse-layernorm",
    "fuse-gelu",
    "fold-transposes",
    "fuse-epilogue",
    "fuse-softmax",
];

/// The distinct pass names of the default pipeline, in pipeline order.
pub fn names() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for make in PIPELINE {
        let n = make().name();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// The registered pass called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Pass>> {
    PIPELINE
        .iter()
        .map(|make| make())
        .find(|p| p.name() == name)
}

/// Checks user-given pass names (`--disable-pass`, `--print-after`; `extra` lists other
/// accepted words such as `all`): an unknown name is an error listing the valid ones.
pub fn check_names(names: &[String], flag: &str, extra: &[&str]) -> Result<(), Error> {
    let valid = self::names();
    for n in names {
        if !valid.contains(&n.as_str()) && !extra.contains(&n.as_str()) {
            let mut all: Vec<&str> = valid.clone();
            all.extend_from_slice(extra);
            return Err(Error::Input(format!(
                "{flag} {n}: no such pass; valid passes: {}",
                all.join(", ")
            )));
        }
    }
    Ok(())
}

/// A graph rewrite.
pub trait Pass {
    /// The name used by `--print-after` and the report.
    fn name(&self) -> &'static str;
    /// Rewrites the graph; returns a short summary of what changed ("folded 3 nodes").
    fn run(&self, g: &mut Graph) -> Result<String, Error>;
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassRecord {
    pub name: &'static str,
    pub summary: String,
}

/// Runs passes in order, verifying in between.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    /// Verify after every pass (always on in debug builds).
    pub verify: bool,
    /// Print the graph after passes with these names (`all` for every pass) to stderr.
    pub print_after: Vec<String>,
}

impl PassManager {
    pub fn new(passes: Vec<Box<dyn Pass>>) -> Self {
        PassManager {
            passes,
            verify: cfg!(debug_assertions),
            print_after: Vec::new(),
        }
    }

    /// The default float pipeline ([`PIPELINE`]).
    pub fn default_pipeline() -> Self {
        PassManager::new(PIPELINE.iter().map(|make| make()).collect())
    }

    /// The default pipeline without every run of the passes named in `disabled`, which
    /// must all be registered pass names.
    pub fn default_pipeline_without(disabled: &[String]) -> Result<Self, Error> {
        check_names(disabled, "--disable-pass", &[])?;
        Ok(PassManager::new(
            PIPELINE
                .iter()
                .map(|make| make())
                .filter(|p| !disabled.iter().any(|d| d == p.name()))
                .collect(),
        ))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    pub fn run(&self, g: &mut Graph) -> Result<Vec<PassRecord>, Error> {
        self.run_observed(g, |_, _| {})
    }

    /// [`PassManager::run`], showing the graph to `observe` after each pass (by name):
    /// for reports that need an intermediate graph, e.g. what `fold-requant` left in float
    /// before later fusions rename it.
    pub fn run_observed(
        &self,
        g: &mut Graph,
        mut observe: impl FnMut(&'static str, &Graph),
    ) -> Result<Vec<PassRecord>, Error> {
        let mut out = Vec::new();
        for p in &self.passes {
            let summary = p.run(g)?;
            observe(p.name(), g);
            if self.verify {
                verify::verify(g)
                    .map_err(|e| Error::Internal(format!("after pass {}: {e}", p.name())))?;
            }
            if self.print_after.iter().any(|n| n == p.name() || n == "all") {
                eprintln!("; after {}\n{}", p.name(), print::print(g));
            }
            out.push(PassRecord {
                name: p.name(),
                summary,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_found_by_their_pipeline_names() {
        let names = names();
        assert!(names.contains(&"fold-constants") && names.contains(&"dead-code"));
        for n in &names {
            assert_eq!(by_name(n).map(|p| p.name()), Some(*n));
        }
        assert!(by_name("no-such-pass").is_none());
        // Every pipeline entry is found by its name, and names are unique per pass.
        assert_eq!(
            PassManager::default_pipeline().names().len(),
            PIPELINE.len()
        );
    }

    #[test]
    fn disabling_a_pass_removes_every_run_of_it() {
        let pm = PassManager::default_pipeline_without(&["fold-constants".into()]).unwrap();
        assert!(!pm.names().contains(&"fold-constants"));
        assert_eq!(
            pm.names().len(),
            PIPELINE
                .iter()
                .filter(|m| m().name() != "fold-constants")
                .count()
        );
        let e = PassManager::default_pipeline_without(&["fuse-frob".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--disable-pass fuse-frob: no such pass; valid passes: "),
            "{e}"
        );
        assert!(e.contains("dead-code"), "{e}");
        assert!(check_names(&["all".into()], "--print-after", &["all"]).is_ok());
    }
}
