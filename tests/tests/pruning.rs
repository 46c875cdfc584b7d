//! Structured pruning (the dead-heads and dead-channels passes) on real exports: a BERT
//! with zeroed heads and FFN channels (scripts/make_pruned_encoder.py) compiles to the same
//! shapes as the network with them physically removed, and still computes what the
//! unpruned graph computes; models without dead structure lose nothing.

mod common;

use std::collections::BTreeMap;

use edgecc::ir::Graph;
use edgecc::onnx::ImportOptions;
use edgecc::passes::{PassManager, PassRecord};

fn load(name: &str) -> Graph {
    let dir = common::example(name);
    edgecc::onnx::load(&dir.join("model.onnx"), &ImportOptions::default())
        .unwrap()
        .1
}

fn optimize(g: &mut Graph) -> Vec<PassRecord> {
    PassManager::default_pipeline().run(g).unwrap()
}

/// The pipeline without the fusion passes: the pruned shapes as the exporter's own ops
/// show them (fusion renames Softmax and folds the FFN activation into the GEMM).
fn prune_only(g: &mut Graph) -> Vec<PassRecord> {
    let fusion: Vec<String> = edgecc::passes::FUSION_PASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    PassManager::default_pipeline_without(&fusion)
        .unwrap()
        .run(g)
        .unwrap()
}

fn summary<'a>(records: &'a [PassRecord], pass: &str) -> &'a str {
    &records.iter().find(|r| r.name == pass).unwrap().summary
}

/// Runs the optimized graph on the x86_64 JIT.
fn jit(g: &Graph, inputs: &[edgecc::ir::Tensor]) -> Vec<Vec<f32>> {
    let lowered = edgecc::lower::lower(g, "model").unwrap();
    let bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.to_le_bytes().unwrap()).collect();
    edgecc::run_target::run_jit(&lowered.program, &bytes)
        .unwrap()
        .iter()
        .map(|b| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect()
}

/// What the passes must do to one pruned example.
struct Case {
    model: &'static str,
    /// The start of the dead-heads summary, and what it says for each of the two layers.
    heads: &'static str,
    per_layer: &'static str,
    channels: &'static str,
    /// Heads left per layer, the FFN activation op and the FFN width left.
    heads_left: usize,
    activation: &'static str,
    width_left: usize,
}

const CASES: [Case; 4] = [
    Case {
        model: "encoder_pruned",
        heads: "removed 4 of 12 heads: ",
        per_layer: " 2/6",
        channels: "removed 256 of 768 channels: ",
        heads_left: 4,
        activation: "Erf",
        width_left: 256,
    },
    Case {
        model: "encoder_pruned_dynamo",
        heads: "removed 4 of 12 heads: ",
        per_layer: " 2/6",
        channels: "removed 256 of 768 channels: ",
        heads_left: 4,
        activation: "Erf",
        width_left: 256,
    },
    // torch.nn.TransformerEncoder: one fused Q/K/V projection split by Gather.
    Case {
        model: "encoder_fusedqkv",
        heads: "removed 4 of 12 heads: ",
        per_layer: " 2/6",
        channels: "removed 128 of 384 channels: ",
        heads_left: 4,
        activation: "Relu",
        width_left: 128,
    },
    // GPT-2: fused c_attn Gemm split by Split, a one-input Concat, the MLP between
    // reshapes, gelu_new (Tanh).
    Case {
        model: "gpt2_pruned",
        heads: "removed 2 of 8 heads: ",
        per_layer: " 1/4",
        channels: "removed 70 of 512 channels: ",
        heads_left: 3,
        activation: "Tanh",
        width_left: 0,
    },
];

/// Both attention softmaxes have `c.heads_left` heads, and both FFN activations
/// `c.width_left` channels (when given; GPT-2's layers keep different widths).
fn assert_reduced(g: &Graph, c: &Case, seq: usize) {
    let (mut softmaxes, mut activations) = (0, 0);
    for n in g.topo_order() {
        let node = g.node(n);
        let s = &g.value(node.outputs[0]).shape;
        if node.op.name() == "Softmax" {
            assert_eq!(s, &[1, c.heads_left, seq, seq], "{}", node.name);
            softmaxes += 1;
        } else if node.op.name() == c.activation && s.len() == 3 {
            if c.width_left > 0 {
                assert_eq!(s.last(), Some(&c.width_left), "{}", node.name);
            }
            activations += 1;
        }
    }
    assert_eq!((softmaxes, activations), (2, 2));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn pruned_models_compile_to_fewer_heads_and_the_same_outputs() {
    for c in &CASES {
        let name = c.model;
        let dir = common::example(name);
        let mut g = load(name);
        let inputs = common::npys(&dir, "input");
        let onnxruntime = common::npys(&dir, "output");
        let unpruned = edgecc::interp::run(&g, &inputs).unwrap();
        let mut pruned = g.clone();
        let records = prune_only(&mut pruned);
        let heads = summary(&records, "dead-heads");
        let channels = summary(&records, "dead-channels");
        assert!(heads.starts_with(c.heads), "{name}: {heads}");
        assert_eq!(heads.matches(c.per_layer).count(), 2, "{name}: {heads}");
        assert!(channels.starts_with(c.channels), "{name}: {channels}");
        assert_reduced(&pruned, c, 32);
        // The whole pipeline (pruning, then fusion) is what gets compiled.
        let records = optimize(&mut g);
        assert_eq!(summary(&records, "dead-heads"), heads);
        let optimized = edgecc::interp::run(&g, &inputs).unwrap();
        let compiled = jit(&g, &inputs);
        for k in 0..unpruned.len() {
            let want = unpruned[k].as_f32().unwrap();
            let e_interp = common::max_rel_err(optimized[k].as_f32().unwrap(), want);
            let e_jit = common::max_rel_err(&compiled[k], want);
            let e_ort = common::max_rel_err(&compiled[k], onnxruntime[k].as_f32().unwrap());
            eprintln!(
                "{name} output {k}: optimized interp {e_interp:.1e}, jit {e_jit:.1e}, \
                 jit vs onnxruntime {e_ort:.1e}"
            );
            assert!(e_interp <= 1e-5, "{name} output {k}: {e_interp:e}");
            assert!(e_jit <= 1e-5, "{name} output {k}: {e_jit:e}");
            assert!(e_ort <= 1e-5, "{name} output {k}: {e_ort:e}");
        }
    }
}

/// Node name -> (op, output shapes), and the multiset of constant shapes.
type Shapes = (BTreeMap<String, String>, Vec<Vec<usize>>);

fn shapes(g: &Graph) -> Shapes {
    let mut nodes = BTreeMap::new();
    let mut consts = Vec::new();
    for n in g.topo_order() {
        let node = g.node(n);
        let outs: Vec<_> = node.outputs.iter().map(|&o| &g.value(o).shape).collect();
        nodes.insert(node.name.clone(), format!("{} {outs:?}", node.op));
        for &i in &node.inputs {
            if g.konst(i).is_some() {
                consts.push(g.value(i).shape.clone());
            }
        }
    }
    consts.sort();
    (nodes, consts)
}

#[test]
fn pruned_encoder_has_the_headless_encoders_shapes() {
    let mut pruned = load("encoder_pruned");
    let mut headless = load("encoder_headless");
    optimize(&mut pruned);
    let records = optimize(&mut headless);
    assert!(summary(&records, "dead-heads").starts_with("removed 0 of 8 heads"));
    let (p, h) = (shapes(&pruned), shapes(&headless));
    assert_eq!(p.0.len(), h.0.len());
    for (name, op) in &h.0 {
        assert_eq!(p.0.get(name), Some(op), "node {name}");
    }
    assert_eq!(p.1, h.1, "constant shapes");
}

#[test]
fn unpruned_models_lose_no_head_or_channel() {
    for (name, heads) in [
        ("bert_torchscript", 8),
        ("bert_opset13", 8),
        ("bert_dynamo", 8),
        ("distilbert", 8),
        ("roberta", 8),
        ("encoder", 8),
    ] {
        let mut g = load(name);
        let before = g.node_count();
        let records = optimize(&mut g);
        let h = summary(&records, "dead-heads");
        let c = summary(&records, "dead-channels");
        assert!(
            h.starts_with(&format!("removed 0 of {heads} heads")),
            "{name}: {h}"
        );
        assert!(!h.contains("not matched"), "{name}: {h}");
        assert!(
            c.starts_with("removed 0 of ") && !c.starts_with("removed 0 of 0 "),
            "{name}: {c}"
        );
        assert!(g.node_count() <= before);
    }
}

/// Structured pruning through quantization: examples/models/encoder pruned
/// (scripts/make_quantized.py's `prune_encoder`) and quantized by onnxruntime, statically
/// (QDQ, per-channel int8 weights) and dynamically. The passes find the zeroed heads and
/// channels through fold-requant's integer GEMMs, lookup tables and (dynamic)
/// quantizations, keep the head whose removal would change a DynamicQuantizeLinear's
/// range, and the compiled result is bit for bit the one without them, and within the
/// int8 tolerance of onnxruntime's.
#[cfg(target_arch = "x86_64")]
#[test]
fn pruned_quantized_encoders_lose_their_dead_heads_and_channels_exactly() {
    let cases = [
        (
            "encoder_pruned_qdq",
            "removed 3 of 8 heads: layer0 2/4, layer1 1/4",
        ),
        (
            "encoder_pruned_dynamic",
            "removed 2 of 8 heads: layer0 2/4, layer1 0/4 (kept heads 3: \
             DynamicQuantizeLinear layer1/ctx_r_QuantizeLinear ranges over their non-zero \
             values)",
        ),
    ];
    let channels = "removed 32 of 128 channels: layer0/ffn 16/64, layer1/ffn 16/64";
    for (name, heads) in cases {
        let dir = common::example(name);
        let inputs = common::npys(&dir, "input");
        let onnxruntime = common::npys(&dir, "output");
        let mut pruned = load(name);
        let mut unpruned = pruned.clone();
        let records = optimize(&mut pruned);
        assert_eq!(summary(&records, "dead-heads"), heads, "{name}");
        assert_eq!(summary(&records, "dead-channels"), channels, "{name}");
        let off = ["dead-heads".to_string(), "dead-channels".to_string()];
        let records = PassManager::default_pipeline_without(&off)
            .unwrap()
            .run(&mut unpruned)
            .unwrap();
        assert!(records.iter().all(|r| !off.iter().any(|o| o == r.name)));
        let (a, b) = (
            edgecc::interp::run(&pruned, &inputs).unwrap(),
            edgecc::interp::run(&unpruned, &inputs).unwrap(),
        );
        assert_eq!(
            a, b,
            "{name}: the interpreter's outputs with and without pruning"
        );
        let (a, b) = (jit(&pruned, &inputs), jit(&unpruned, &inputs));
        assert_eq!(
            a, b,
            "{name}: the compiled outputs with and without pruning"
        );
        for (k, got) in a.iter().enumerate() {
            let err = common::max_rel_err(got, onnxruntime[k].as_f32().unwrap());
            eprintln!("{name} output {k}: jit vs onnxruntime {err:.1e}");
            assert!(err <= 0.02, "{name} output {k}: {err:e}");
        }
    }
}
