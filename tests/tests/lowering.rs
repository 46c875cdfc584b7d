//! Lowering and memory planning: the lowered program, run by the scalar program executor,
//! computes what the interpreter computes, on every example model.

mod common;

use std::collections::BTreeMap;

use edgecc::onnx::ImportOptions;
use edgecc::passes::PassManager;

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

fn check(name: &str, shapes: &[(&str, Vec<usize>)]) {
    let dir = common::example(name);
    let opts = ImportOptions {
        input_shapes: shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<BTreeMap<_, _>>(),
    };
    let (_, mut graph) = edgecc::onnx::load(&dir.join("model.onnx"), &opts).unwrap();
    let inputs = common::npys(&dir, "input");
    let want = edgecc::interp::run(&graph, &inputs).unwrap();
    PassManager::default_pipeline().run(&mut graph).unwrap();
    let lowered = edgecc::lower::lower(&graph, "model").unwrap();
    // The plan is valid (never below the peak of live bytes) and tight: the design's bar
    // is an arena within a few percent of its lower bound.
    let (size, bound) = (lowered.program.arena_size, lowered.arena_lower_bound);
    assert!(size >= bound);
    assert!(size as f64 <= bound as f64 * 1.05, "{name}: arena {size} vs lower bound {bound}");
    let got = exec(&lowered.program, &inputs);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = common::max_rel_err(g, w.as_f32().unwrap());
        // The executor accumulates in f32 where the interpreter uses f64.
        assert!(err <= 1e-5, "{name} output {i}: max relative error {err:e}");
    }
}

#[test]
fn mlp() {
    check("mlp", &[]);
}

#[test]
fn cnn() {
    check("cnn", &[]);
}

#[test]
fn conv1d() {
    check("conv1d", &[]);
}

#[test]
fn symbolic() {
    check("symbolic", &[("x", vec![3, 16])]);
}
