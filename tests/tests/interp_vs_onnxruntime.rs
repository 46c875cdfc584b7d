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
/// quantization step, which can carry on to the outputs: they agree to a few steps of the last
/// DequantizeLinear's scale, not to f32 rounding (measured: 1 step on logits, 2 on probs).
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
        // The scale of the DequantizeLinear that writes this output.
        let out = graph.outputs[i];
        let step = graph
            .topo_order()
            .into_iter()
            .map(|n| graph.node(n))
            .find(|n| n.outputs.contains(&out))
            .filter(|n| matches!(n.op, edgecc::ir::Op::DequantizeLinear { .. }))
            .and_then(|n| graph.konst(n.inputs[1]))
            .and_then(|t| t.as_f32().map(|s| s[0]))
            .expect("each output is written by a DequantizeLinear with a constant scale");
        let (g, e) = (g.as_f32().unwrap(), e.as_f32().unwrap());
        let abs = g
            .iter()
            .zip(e)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let steps = abs / step;
        let rel = common::max_rel_err(g, e);
        eprintln!("cnn_qdq output {i}: max diff {steps:.3} steps of {step:e}, max rel err {rel:e}");
        assert!(
            steps <= 3.01,
            "cnn_qdq output {i}: {steps} quantization steps apart"
        );
    }
}
