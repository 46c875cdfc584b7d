//! Graph-to-graph rewrites, one pass per file, run by a small pass manager.
//!
//! A pass must not change what the interpreter computes (within float tolerance); the
//! verifier runs after each pass in debug builds and tests, and each pass returns a
//! one-line summary of what it changed for the compile report.

mod dead_code;
mod fold_constants;
mod fuse_epilogue;

use crate::Error;
use crate::ir::{Graph, print, verify};

pub use dead_code::DeadCode;
pub use fold_constants::FoldConstants;
pub use fuse_epilogue::FuseEpilogue;

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

    /// The default float pipeline. The full order, each pass at its place:
    /// fold-constants, dead-heads, dead-channels, fold-constants, fold-batchnorm,
    /// fuse-layernorm, fuse-gelu, fold-transposes, fuse-epilogue, fuse-softmax, dead-code.
    /// fuse-epilogue comes after fuse-gelu, whose Gelu it takes as the activation, and
    /// after fold-transposes, which may leave a MatMul directly before its bias Add.
    pub fn default_pipeline() -> Self {
        PassManager::new(vec![
            Box::new(FoldConstants),
            Box::new(FuseEpilogue),
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
