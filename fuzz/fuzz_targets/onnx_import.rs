//! ONNX bytes through the front half of `edgecc compile`: decode, import (every op,
//! external data resolved inside a temporary folder or refused), shape inference, the
//! verifier after import and after every pass, the pass pipeline and lowering. Errors are
//! fine; a panic, an `Error::Internal` (an edgecc bug by definition), a hang or memory out
//! of proportion to the input is a finding.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use edgecc::Error;
use edgecc::onnx::{Dim, declared_type};
use edgecc::pipeline::{self, Options};
use libfuzzer_sys::fuzz_target;

/// A folder holding the model file and two small files external data may point into.
fn folder() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 37 % 251) as u8).collect();
        std::fs::write(dir.path().join("weights.bin"), &bytes).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/data"), &bytes[..64]).expect("write");
        dir
    })
    .path()
}

fn model_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| folder().join("model.onnx"))
}

fn internal(what: &str, e: &Error) {
    if let Error::Internal(m) = e {
        panic!("{what}: internal error: {m}");
    }
}

fuzz_target!(|data: &[u8]| {
    // What a user gives `--input-shape`: every symbolic dim set to 1.
    let Ok(model) = edgecc::onnx::decode(data) else {
        return;
    };
    let mut input_shapes = BTreeMap::new();
    if let Some(g) = model.graph.as_ref() {
        for vi in &g.input {
            if let Ok((_, dims)) = declared_type(vi)
                && dims.iter().any(|d| matches!(d, Dim::Symbolic(_)))
            {
                let shape = dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(f) => *f,
                        Dim::Symbolic(_) => 1,
                    })
                    .collect();
                input_shapes.insert(vi.name.clone(), shape);
            }
        }
    }
    let opts = Options {
        input_shapes,
        name: "model".into(),
        ..Options::default()
    };
    let path = model_path();
    std::fs::write(path, data).expect("write the model");
    match pipeline::compile(path, &opts) {
        Err(e) => internal("compile", &e),
        Ok(c) => {
            // The pipeline verifies after every pass (debug assertions are on); check the
            // imported graph and the final one too.
            if let Err(e) = edgecc::ir::verify::verify(&c.imported) {
                panic!("the imported graph does not verify: {e}");
            }
            if let Err(e) = edgecc::ir::verify::verify(&c.graph) {
                panic!("the optimized graph does not verify: {e}");
            }
        }
    }
});
