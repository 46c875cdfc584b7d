//! The reference interpreter against onnxruntime's outputs, committed next to each
//! example model by scripts/make_models.py.

mod common;

use std::collections::BTreeMap;

use edgecc::onnx::ImportOptions;

fn check(name: &str, input_shapes: &[(&str, Vec<usize>)]) {
    let dir = common::example(name);
    let opts = ImportOptions {
        input_shapes: input_shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    let (_, graph) = edgecc::onnx::load(&dir.join("model.onnx"), &opts).unwrap();
    let inputs = common::npys(&dir, "input");
    let expected = common::npys(&dir, "output");
    let got = edgecc::interp::run(&graph, &inputs).unwrap();
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.shape, e.shape, "{name} output {i} shape");
        let err = common::max_rel_err(g.as_f32().unwrap(), e.as_f32().unwrap());
        // Float32 whole-model bound from the design brief; the interpreter accumulates in
        // f64, so it sits well inside it.
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

/// A BERT-style encoder written as PyTorch's exporter writes one (scripts/make_encoder.py).
#[test]
fn encoder() {
    check("encoder", &[]);
}

#[test]
fn conv1d() {
    check("conv1d", &[]);
}

/// Attention written with Einsum (projections, scores, context, output projection, a sum).
#[test]
fn einsum() {
    check("einsum", &[]);
}

#[test]
fn symbolic_batch_resolved_by_input_shape() {
    check("symbolic", &[("x", vec![3, 16])]);
}

/// The cnn example quantized by onnxruntime (QDQ, uint8 activations, per-channel int8
/// weights; scripts/make_quantized.py), against onnxruntime running the QDQ graph unoptimised.
/// A tie or a last-bit difference in one float op before a QuantizeLinear moves that value one
/// quantization step, so the outputs agree to a few steps, not to f32 rounding.
#[test]
fn cnn_qdq() {
    let dir = common::example("cnn_qdq");
    let (_, graph) =
        edgecc::onnx::load(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
    let inputs = common::npys(&dir, "input");
    let expected = common::npys(&dir, "output");
    let got = edgecc::interp::run(&graph, &inputs).unwrap();
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.shape, e.shape, "cnn_qdq output {i} shape");
        let (g, e) = (g.as_f32().unwrap(), e.as_f32().unwrap());
        let abs = g
            .iter()
            .zip(e)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let rel = common::max_rel_err(g, e);
        eprintln!("cnn_qdq output {i}: max abs diff {abs:e}, max rel err {rel:e}");
        assert!(rel <= 2e-2, "cnn_qdq output {i}: max relative error {rel:e}");
    }
}
