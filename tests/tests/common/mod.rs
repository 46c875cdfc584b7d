//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edgecc::ir::Tensor;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn example(name: &str) -> PathBuf {
    root().join("examples/models").join(name)
}

/// Reference inputs of an example folder, in order.
pub fn npys(dir: &Path, prefix: &str) -> Vec<Tensor> {
    let mut out = Vec::new();
    for i in 0.. {
        let p = dir.join(format!("{prefix}_{i}.npy"));
        if !p.exists() {
            break;
        }
        out.push(edgecc::io::read_tensor(&p).unwrap());
    }
    out
}

/// Largest |a-b| divided by the largest |b| (the output's scale), as the issue bounds it.
pub fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b
        .iter()
        .fold(0f64, |m, &x| m.max(x.abs() as f64))
        .max(1e-30);
    a.iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
        / scale
}

/// Runs `program` on the executor with tensors as raw bytes.
pub fn exec(program: &edgecc_program::Program, inputs: &[edgecc::ir::Tensor]) -> Vec<Vec<f32>> {
    let in_bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.to_le_bytes().unwrap()).collect();
    let in_refs: Vec<&[u8]> = in_bytes.iter().map(|b| b.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = program
        .outputs
        .iter()
        .map(|o| vec![0u8; o.byte_size() as usize])
        .collect();
    let mut out_refs: Vec<&mut [u8]> = outs.iter_mut().map(|b| b.as_mut_slice()).collect();
    let mut arena = vec![0u8; program.arena_size as usize];
    edgecc_program::exec::run(program, &in_refs, &mut out_refs, &mut arena).unwrap();
    outs.iter()
        .map(|b| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect()
}
