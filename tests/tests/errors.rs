//! Bad input gets a clear error, never a panic: corrupt files, unsupported ops (all listed
//! with node names), external data leaving the model's folder, unresolved symbolic dims,
//! shapes that do not fit.

mod common;

use edgecc::Error;
use edgecc::onnx::ImportOptions;

fn load(rel: &str) -> Result<edgecc::ir::Graph, Error> {
    edgecc::onnx::load(&common::root().join(rel), &ImportOptions::default()).map(|(_, g)| g)
}

#[test]
fn corrupt_files_are_decode_errors() {
    for f in [
        "tests/data/corrupt_truncated.onnx",
        "tests/data/corrupt_garbage.onnx",
    ] {
        match load(f) {
            Err(Error::Decode(_)) => {}
            other => panic!("{f}: expected a decode error, got {other:?}"),
        }
    }
    match load("tests/data/empty.onnx") {
        Err(Error::Model(m)) => assert!(m.contains("no graph"), "{m}"),
        other => panic!("empty.onnx: {other:?}"),
    }
}

#[test]
fn every_prefix_of_a_model_is_an_error_or_a_model_never_a_panic() {
    let bytes = std::fs::read(common::example("cnn").join("model.onnx")).unwrap();
    for cut in (0..bytes.len()).step_by(97) {
        if let Ok(m) = edgecc::onnx::decode(&bytes[..cut]) {
            let _ = edgecc::onnx::import(
                &m,
                edgecc::onnx::DataDir { base: None },
                &ImportOptions::default(),
            );
        }
    }
}

#[test]
fn unsupported_ops_are_listed_together_with_node_names() {
    let err = load("tests/data/unsupported_ops.onnx").unwrap_err();
    let Error::Unsupported(ops) = &err else {
        panic!("{err:?}")
    };
    let names: Vec<&str> = ops.iter().map(|o| o.node.as_str()).collect();
    assert_eq!(names, ["weird_topk", "my_lstm", "det0"], "{err}");
    let text = err.to_string();
    for want in [
        "weird_topk",
        "TopK",
        "my_lstm",
        "LSTM",
        "det0",
        "Det",
        "opset 17",
    ] {
        assert!(text.contains(want), "{want} missing from: {text}");
    }
}

#[test]
fn external_data_inside_the_folder_loads() {
    let dir = common::root().join("tests/data/external_data");
    let g = load("tests/data/external_data/model.onnx").unwrap();
    let out = edgecc::interp::run(&g, &common::npys(&dir, "input")).unwrap();
    let want = common::npys(&dir, "output");
    assert!(common::max_rel_err(out[0].as_f32().unwrap(), want[0].as_f32().unwrap()) < 1e-6);
}

#[test]
fn external_data_outside_the_folder_is_refused() {
    for f in [
        "tests/data/external_escape/model.onnx",
        "tests/data/external_abs/model.onnx",
    ] {
        match load(f) {
            Err(Error::ExternalData { reason, .. }) => {
                assert!(reason.contains("leaves the model's folder"), "{reason}")
            }
            other => panic!("{f}: {other:?}"),
        }
    }
}

#[test]
fn symbolic_dims_must_be_resolved() {
    let path = common::example("symbolic").join("model.onnx");
    let err = edgecc::onnx::load(&path, &ImportOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::UnresolvedDims(_)), "{text}");
    assert!(
        text.contains("x[batch]") && text.contains("--input-shape"),
        "{text}"
    );
    // A shape that contradicts a fixed dim is refused too.
    let opts = ImportOptions {
        input_shapes: [("x".to_string(), vec![3, 17])].into_iter().collect(),
        ..Default::default()
    };
    let err = edgecc::onnx::load(&path, &opts).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

/// Byte-level mutations of valid models (a cheap, deterministic stand-in for the fuzzing
/// of the hardening issue): each is rejected with an error or compiles; none panics. The
/// real PyTorch exports bring the transformer paths (masks, GatherND, IsNaN, the shape
/// arithmetic) under mutation too.
#[test]
fn mutated_models_never_panic() {
    for (model, cases) in [("mlp", 3000), ("bert_dynamo", 500), ("distilbert", 500)] {
        mutate(model, cases);
    }
}

fn mutate(model: &str, cases: usize) {
    let bytes = std::fs::read(common::example(model).join("model.onnx")).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Mutate only the first 2 KiB (graph structure, names, attributes, dims), where a
    // change alters meaning rather than weight values.
    let span = bytes.len().min(2048);
    for _ in 0..cases {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % span;
            b[at] = match next() % 3 {
                0 => b[at] ^ (1 << (next() % 8)),
                1 => next() as u8,
                _ => b[at].wrapping_add(1),
            };
        }
        let Ok(m) = edgecc::onnx::decode(&b) else {
            continue;
        };
        let Ok(mut g) = edgecc::onnx::import(
            &m,
            edgecc::onnx::DataDir { base: None },
            &ImportOptions::default(),
        ) else {
            continue;
        };
        if edgecc::passes::PassManager::default_pipeline()
            .run(&mut g)
            .is_ok()
        {
            let _ = edgecc::lower::lower(&g, "m");
        }
    }
}

/// A relative external-data path that is a symlink out of the model's folder is refused
/// too (the check is on the resolved path, not the spelling).
#[test]
fn external_data_symlink_out_of_the_folder_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.bin");
    std::fs::write(&secret, [0u8; 48]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::root().join("tests/data/external_data/model.onnx"),
        dir.path().join("model.onnx"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, dir.path().join("weights.bin")).unwrap();
    match edgecc::onnx::load(&dir.path().join("model.onnx"), &ImportOptions::default()) {
        Err(Error::ExternalData { reason, .. }) => {
            assert!(reason.contains("outside the model's folder"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// Integer products the targets cannot run (weights computed at run time: no packed int8
/// kernel takes them) are refused by the lowering, every such node at once, each with the
/// reason; quantized models with constant weights compile (tests/tests/quantized.rs).
#[test]
fn integer_products_with_runtime_weights_are_refused_listing_the_nodes() {
    let src = "graph g {
  input x: u8[2,4]
  input w: i8[4,3]
  input xi: u8[1,2,4,4]
  input wi: i8[3,2,1,1]
  m: i32[2,3] = MatMulInteger(x, w)  # attn/mmi
  c: i32[1,3,4,4] = ConvInteger{kernel=[1,1] strides=[1,1] dilations=[1,1] pads=[0,0,0,0] group=1}(xi, wi)  # conv/ci
  output m, c
}";
    let mut g = edgecc::ir::parse::parse(src).unwrap();
    edgecc::passes::PassManager::default_pipeline()
        .run(&mut g)
        .unwrap();
    let err = match edgecc::lower::lower(&g, "model") {
        Err(e) => e,
        Ok(_) => panic!("integer products with run-time weights lowered"),
    };
    let Error::Unsupported(ops) = &err else {
        panic!("{err:?}")
    };
    let text = err.to_string();
    assert_eq!(ops.len(), 2, "{text}");
    for want in [
        "attn/mmi",
        "conv/ci",
        "MatMulInteger",
        "ConvInteger",
        "not a constant int8",
    ] {
        assert!(text.contains(want), "{want} missing from: {text}");
    }
}

/// A QOperator model with a contrib op the importer has no expansion for, and one whose
/// inputs do not fit its schema: both listed at once, each with its node name, op type,
/// domain and (for the malformed one) the reason; the ops that expand are not listed.
#[test]
fn unsupported_qoperator_ops_name_node_and_domain() {
    use onnx_protobuf::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto,
        ValueInfoProto, tensor_shape_proto, type_proto,
    };
    let value = |name: &str, shape: &[i64]| {
        let mut tt = type_proto::Tensor::new();
        tt.elem_type = 1;
        let mut sh = onnx_protobuf::TensorShapeProto::new();
        for &d in shape {
            let mut dim = tensor_shape_proto::Dimension::new();
            dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(d));
            sh.dim.push(dim);
        }
        tt.shape = Some(sh).into();
        let mut tp = TypeProto::new();
        tp.value = Some(type_proto::Value::TensorType(tt));
        let mut vi = ValueInfoProto::new();
        vi.name = name.into();
        vi.type_ = Some(tp).into();
        vi
    };
    let node = |name: &str, op: &str, domain: &str, ins: &[&str], out: &str| {
        let mut n = NodeProto::new();
        n.name = name.into();
        n.op_type = op.into();
        n.domain = domain.into();
        n.input = ins.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.into()];
        n
    };
    let init = |name: &str, code: i32, raw: Vec<u8>| {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.data_type = code;
        t.raw_data = raw;
        t
    };
    let ms = "com.microsoft";
    let mut g = GraphProto::new();
    g.node = vec![
        node("quant", "QuantizeLinear", "", &["x", "s", "z"], "xq"),
        node(
            "add",
            "QLinearAdd",
            ms,
            &["xq", "s", "z", "xq", "s", "z", "s", "z"],
            "aq",
        ),
        node(
            "reduce",
            "QLinearReduceMean",
            ms,
            &["aq", "s", "z", "s", "z"],
            "rq",
        ),
        node("concat", "QLinearConcat", ms, &["s", "z", "xq", "s"], "cq"),
        node("dq", "DequantizeLinear", "", &["aq", "s", "z"], "y"),
    ];
    g.initializer = vec![
        init("s", 1, 0.5f32.to_le_bytes().to_vec()),
        init("z", 2, vec![128]),
    ];
    g.input = vec![value("x", &[1, 4])];
    g.output = vec![value("y", &[1, 4]), value("rq", &[1]), value("cq", &[1])];
    let mut m = ModelProto::new();
    m.ir_version = 8;
    for (domain, version) in [("", 17), (ms, 1)] {
        let mut os = OperatorSetIdProto::new();
        os.domain = domain.into();
        os.version = version;
        m.opset_import.push(os);
    }
    m.graph = Some(g).into();
    let err = edgecc::onnx::import(
        &m,
        edgecc::onnx::DataDir { base: None },
        &ImportOptions::default(),
    )
    .unwrap_err();
    let Error::Unsupported(ops) = &err else {
        panic!("{err:?}")
    };
    let found: Vec<(&str, &str, &str)> = ops
        .iter()
        .map(|o| (o.node.as_str(), o.op_type.as_str(), o.domain.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("reduce", "QLinearReduceMean", ms),
            ("concat", "QLinearConcat", ms)
        ],
        "{err}"
    );
    let text = err.to_string();
    for want in [
        "com.microsoft",
        "opset 1",
        "(X, X_scale, X_zero_point) triples",
    ] {
        assert!(text.contains(want), "{want} missing from: {text}");
    }
}
