//! Graph-to-graph rewrites, one pass per file, run by a small pass manager.
//!
//! A pass must not change what the interpreter computes (within float tolerance); the
//! verifier runs after each pass in debug builds and tests, and each pass returns a
//! one-line summary of what it changed for the compile report.

mod dead_channels;
mod dead_code;
mod dead_heads;
mod fold_constants;
mod pattern;

use crate::Error;
use crate::ir::{Graph, print, verify};

pub use dead_channels::DeadChannels;
pub use dead_code::DeadCode;
pub use dead_heads::DeadHeads;
pub use fold_constants::FoldConstants;

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

    /// The default float pipeline. Order: fold-constants, dead-heads, dead-channels,
    /// fold-constants, fold-batchnorm, fuse-layernorm, fuse-gelu, fold-transposes,
    /// fuse-epilogue, fuse-softmax, dead-code. The structured-pruning passes run on the
    /// exporter's own layout (before fusions rename it) once constants are folded, so they
    /// see weights as constants; the second fold-constants folds what they leave constant
    /// (a bias added to a fully pruned block).
    pub fn default_pipeline() -> Self {
        PassManager::new(vec![
            Box::new(FoldConstants),
            Box::new(DeadHeads),
            Box::new(DeadChannels),
            Box::new(FoldConstants),
            Box::new(DeadCode),
        ])
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    pub fn run(&self, g: &mut Graph) -> Result<Vec<PassRecord>, Error> {
        let mut out = Vec::new();
        for p in &self.passes {
            let summary = p.run(g)?;
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
