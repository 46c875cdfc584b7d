//! Quantized example models through the whole target-neutral compiler: the folded graph
//! (integer kernels from `fold-requant`) against the unfolded one on the interpreter, the
//! lowered program (scalar executor) against the folded graph, and both against
//! onnxruntime's committed outputs. Agreement is counted in quantization steps of the
//! DequantizeLinear that writes each output, as the issue states its goal (≤ 1 step on
//! ≥ 99% of the elements).
mod common;

use edgecc::ir::{Graph, Op, Tensor};
use edgecc::pipeline::{self, Options};

/// The scale of the DequantizeLinear writing graph output `i`, if one writes it (a
/// dynamically quantized model ends in a float scale chain instead).
fn output_step(g: &Graph, i: usize) -> Option<f32> {
    let out = g.outputs[i];
    let node = g
        .value(out)
        .producer
        .map(|n| g.node(n))
        .filter(|n| matches!(n.op, Op::DequantizeLinear { .. }))?;
    g.konst(node.inputs[1])
        .and_then(|t| t.as_f32().map(|s| s[0]))
}

/// Largest difference in steps (of `step`, or relative to the output's largest magnitude
/// when it has no quantization step), and the share of elements that differ at all.
fn agreement(got: &[f32], want: &[f32], step: Option<f32>) -> (f32, f64) {
    let step_given = step.is_some();
    let step = step.unwrap_or_else(|| want.iter().fold(1e-30f32, |m, x| m.max(x.abs())));
    assert_eq!(got.len(), want.len());
    let mut max = 0f32;
    let mut differ = 0usize;
    for (a, b) in got.iter().zip(want) {
        let d = (a - b).abs() / step;
        max = max.max(d);
        // A step apart (or, relative, beyond float noise).
        if d > if step_given { 0.01 } else { 1e-6 } {
            differ += 1;
        }
    }
    (max, differ as f64 / got.len().max(1) as f64)
}

/// Checks one model; returns (max steps, share differing) against onnxruntime per output.
/// `bounds[i]` is how many steps output `i` may move between the unfolded graph, the
/// folded graph and the lowered program: 1 where an integer chain writes it, more after
/// float work that amplifies a step (a softmax over dequantized logits).
fn check(name: &str, min_integer_kernels: usize, bounds: &[f32]) -> Vec<(f32, f64)> {
    let dir = common::example(name);
    let opts = Options {
        name: "q".into(),
        ..Options::default()
    };
    let c = pipeline::compile(&dir.join("model.onnx"), &opts).unwrap();
    let integer = c
        .graph
        .topo_order()
        .into_iter()
        .filter(|&n| matches!(c.graph.node(n).op, Op::QGemm { .. } | Op::QConv { .. }))
        .count();
    assert!(
        integer >= min_integer_kernels,
        "{name}: {integer} integer kernels after the passes, expected at least {min_integer_kernels}"
    );
    let inputs = common::npys(&dir, "input");
    let ort = common::npys(&dir, "output");
    let unfolded = edgecc::interp::run(&c.imported, &inputs).unwrap();
    let folded = edgecc::interp::run(&c.graph, &inputs).unwrap();
    let compiled = common::exec(&c.lowered.program, &inputs);
    let mut out = Vec::new();
    for i in 0..ort.len() {
        let step = output_step(&c.imported, i);
        let unit = if step.is_some() { "steps" } else { "relative" };
        let (u, f, e) = (
            unfolded[i].as_f32().unwrap(),
            folded[i].as_f32().unwrap(),
            ort[i].as_f32().unwrap(),
        );
        // The folding rule's own bound: within one step of the unfolded graph.
        let (fold_steps, fold_share) = agreement(f, u, step);
        // The integer kernels are exact, but float islands (an f32 AveragePool sums in
        // f32 where the interpreter sums in f64) can flip a rounding at the next
        // QuantizeLinear.
        let (low_steps, low_share) = agreement(&compiled[i], f, step);
        assert!(
            low_steps <= bounds[i] + 0.01,
            "{name} output {i}: the lowered program is {low_steps} steps from the folded graph"
        );
        let (ort_steps, ort_share) = agreement(f, e, step);
        eprintln!(
            "{name} output {i}: folded vs unfolded {fold_steps:.3} {unit} ({:.2}% differ); \
             lowered vs folded {low_steps:.3} ({:.2}%); vs onnxruntime {ort_steps:.3} {unit} \
             ({:.2}% differ)",
            fold_share * 100.0,
            low_share * 100.0,
            ort_share * 100.0
        );
        assert!(
            fold_steps <= bounds[i] + 0.01,
            "{name} output {i}: folded graph {fold_steps} steps from the unfolded one"
        );
        out.push((ort_steps, ort_share));
    }
    out
}

#[test]
fn cnn_qdq_runs_integer_convolutions_within_a_step() {
    let r = check("cnn_qdq", 7, &[1.0, 3.0]);
    // logits (output 0) and probabilities (output 1, after a float softmax of
    // dequantized logits, so one logit step can move a probability by more).
    assert!(
        r[0].0 <= 1.01 && r[0].1 <= 0.2,
        "logits vs onnxruntime: {:?}",
        r[0]
    );
    assert!(r[1].0 <= 3.01, "probs vs onnxruntime: {:?}", r[1]);
}

#[test]
fn cnn_qoperator_expands_to_the_same_integer_kernels() {
    let r = check("cnn_qoperator", 6, &[1.0, 3.0]);
    assert!(r[0].0 <= 1.01, "logits vs onnxruntime: {:?}", r[0]);
}

#[test]
fn encoder_qdq_projections_are_integer() {
    // Every constant-weight projection (Q, K, V, output, FFN up and down, 2 layers), and
    // every bias and residual Add (QAdd). The QAdds' 30-bit multipliers round near-ties
    // (36.50029 steps and the like) as the float Add does; with 16-bit ones 3 of the 11776
    // results on this input rounded the other way, and the float LayerNorm after a
    // residual, which maps one step of its input to up to two of its output on a row with
    // a small deviation, moved the output by two steps on 5.66 % of its elements.
    let r = check("encoder_qdq", 12, &[1.0]);
    assert!(
        r[0].0 <= 1.01 && r[0].1 <= 0.01,
        "vs onnxruntime: {:?}",
        r[0]
    );
}

#[test]
fn encoder_qoperator_projections_are_integer() {
    let r = check("encoder_qoperator", 12, &[1e-2]);
    assert!(r[0].0 <= 1e-2, "vs onnxruntime: {:?}", r[0]);
}

#[test]
fn encoder_dynamic_runs_matmul_integer_as_qgemm() {
    // Output is float (the Cast/Mul scale chain), so the bounds are relative.
    let r = check("encoder_dynamic", 12, &[1e-2]);
    assert!(r[0].0 <= 1e-2, "vs onnxruntime: {:?}", r[0]);
}

#[test]
fn digits_cnn_int8_formats() {
    for name in ["digits_cnn_qdq", "digits_cnn_qoperator"] {
        let r = check(name, 4, &[1.0]);
        assert!(r[0].0 <= 1.01, "{name} vs onnxruntime: {:?}", r[0]);
    }
}

/// The trained digits CNN (scikit-learn's digits, 450 held-out images) compiled for this
/// machine (x86_64 JIT): the float model and its two int8 quantizations, run image by image
/// through the same artifacts a user ships. The int8 models must keep the float model's
/// accuracy within one percentage point, and their logits must stay within one step of
/// onnxruntime's int8 kernels' on every image.
#[test]
fn digits_accuracy_compiled() {
    let dir = common::example("digits_cnn");
    let images = edgecc::io::read_tensor(&dir.join("test_images.npy")).unwrap();
    let labels = edgecc::io::read_tensor(&dir.join("test_labels.npy"))
        .unwrap()
        .to_i64s()
        .unwrap();
    let pixels = images.as_f32().unwrap();
    let accuracy = |name: &str| -> (f64, f32) {
        let d = common::example(name);
        let opts = Options {
            name: "digits".into(),
            ..Options::default()
        };
        let c = pipeline::compile(&d.join("model.onnx"), &opts).unwrap();
        let jit = edgecc_cranelift::compile_jit(&c.lowered.program).unwrap();
        let model = edgecc_runtime::Model::new(jit.desc()).unwrap();
        let mut io = edgecc::run_target::HostIo::new(&c.lowered.program);
        let ort = edgecc::io::read_tensor(&d.join("test_logits.npy")).unwrap();
        let ort = ort.as_f32().unwrap();
        let step = output_step(&c.imported, 0);
        let (mut right, mut worst) = (0usize, 0f32);
        for (i, (img, &label)) in pixels.chunks(64).zip(&labels).enumerate() {
            let x: Vec<u8> = img.iter().flat_map(|v| v.to_le_bytes()).collect();
            io.run(&model, &[x]).unwrap();
            let l: Vec<f32> = io.outs[0]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let best = (0..l.len()).fold(0, |b, k| if l[k] > l[b] { k } else { b });
            right += usize::from(best as i64 == label);
            if let Some(s) = step {
                worst = worst.max(agreement(&l, &ort[i * 10..(i + 1) * 10], Some(s)).0);
            }
        }
        (100.0 * right as f64 / labels.len() as f64, worst)
    };
    let (float, _) = accuracy("digits_cnn");
    for name in ["digits_cnn_qdq", "digits_cnn_qoperator"] {
        let (int8, worst) = accuracy(name);
        eprintln!(
            "digits: float {float:.2}%, {name} {int8:.2}% compiled; logits at most {worst} steps \
             from onnxruntime's int8 kernels"
        );
        assert!(
            (float - int8).abs() <= 1.0,
            "{name}: {int8}% against the float model's {float}%"
        );
        assert!(worst <= 1.01, "{name}: {worst} steps from onnxruntime");
    }
}

/// DynamicQuantizeLinear lowered (two reductions, the scale and zero point, then
/// QuantizeLinear's expression) computes exactly what the interpreter does: the bytes, the
/// scale and the zero point, on random inputs, a one-signed input and an all-zero one (scale
/// 1, as onnxruntime).
#[test]
fn dynamic_quantize_linear_compiled_is_exact() {
    let src = "graph g {\n  input x: f32[3,7]\n  y: u8[3,7], s: f32[], z: u8[] = DynamicQuantizeLinear(x)  # dql\n  output y, s, z\n}";
    let g = edgecc::ir::parse::parse(src).unwrap();
    let program = edgecc::lower::lower(&g, "dql").unwrap().program;
    let mut inputs = vec![
        edgecc::ir::parse::random_tensor(edgecc::ir::DType::F32, vec![3, 7], 5).unwrap(),
        Tensor::f32(vec![3, 7], vec![0.0; 21]),
        Tensor::f32(
            vec![3, 7],
            (0..21).map(|i| 0.25 + i as f32 * 0.37).collect(),
        ),
    ];
    inputs.push(Tensor::f32(
        vec![3, 7],
        (0..21).map(|i| -3.0 - i as f32 * 1.5).collect(),
    ));
    for x in inputs {
        let want: Vec<Vec<u8>> = edgecc::interp::run(&g, std::slice::from_ref(&x))
            .unwrap()
            .iter()
            .map(|t| t.to_le_bytes().unwrap())
            .collect();
        let got = edgecc::run_target::run_jit(&program, &[x.to_le_bytes().unwrap()]).unwrap();
        assert_eq!(got, want, "input {:?}", x.as_f32().unwrap());
    }
}

/// A DequantizeLinear whose scale and zero point are computed at run time (the outputs of
/// a DynamicQuantizeLinear) compiles to the interpreter's numbers exactly.
#[test]
fn dequantize_with_run_time_parameters_is_exact() {
    let src = "graph g {\n  input x: f32[2,9]\n  y: u8[2,9], s: f32[], z: u8[] = DynamicQuantizeLinear(x)  # dql\n  d: f32[2,9] = DequantizeLinear{axis=1}(y, s, z)  # dq\n  output d\n}";
    let g = edgecc::ir::parse::parse(src).unwrap();
    let program = edgecc::lower::lower(&g, "dq").unwrap().program;
    for seed in 1..4 {
        let x = edgecc::ir::parse::random_tensor(edgecc::ir::DType::F32, vec![2, 9], seed).unwrap();
        let want = edgecc::interp::run(&g, std::slice::from_ref(&x)).unwrap()[0]
            .to_le_bytes()
            .unwrap();
        let got = edgecc::run_target::run_jit(&program, &[x.to_le_bytes().unwrap()]).unwrap();
        assert_eq!(got[0], want);
    }
}

/// Every quantized Add of the examples is an integer Add (the residuals, the encoders'
/// bias, embedding and mask Adds), and no Add or Mul is left among their float islands.
#[test]
fn quantized_adds_are_integer() {
    for (name, adds, islands) in [
        ("cnn_qdq", 1, 2),
        ("cnn_qoperator", 1, 4),
        ("encoder_qdq", 19, 12),
        ("encoder_qoperator", 19, 12),
    ] {
        let dir = common::example(name);
        let opts = Options {
            name: "q".into(),
            ..Options::default()
        };
        let c = pipeline::compile(&dir.join("model.onnx"), &opts).unwrap();
        let q = c
            .graph
            .topo_order()
            .into_iter()
            .filter(|&n| matches!(c.graph.node(n).op, Op::QBinary(_)))
            .count();
        assert_eq!(q, adds, "{name}: integer Add/Mul nodes");
        let left: Vec<_> = c
            .float_islands
            .iter()
            .map(|i| format!("{} ({})", i.node, i.op))
            .collect();
        assert!(
            !c.float_islands
                .iter()
                .any(|i| matches!(i.op, "Add" | "Mul")),
            "{name}: {left:?}"
        );
        assert_eq!(left.len(), islands, "{name}: {left:?}");
    }
}
