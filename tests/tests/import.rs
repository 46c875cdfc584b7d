//! Importer behaviour on small models built in code: opset-dependent semantics, optional
//! inputs and attributes, node order, and what is refused.

use edgecc::Error;
use edgecc::ir::Tensor;
use edgecc::onnx::{DataDir, ImportOptions};
use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_shape_proto, type_proto,
};

fn value(name: &str, shape: &[i64]) -> ValueInfoProto {
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
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_{}", outs[0]);
    n.input = ins.iter().map(|s| s.to_string()).collect();
    n.output = outs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

fn int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn init_i64(name: &str, v: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 7;
    t.dims = vec![v.len() as i64];
    t.int64_data = v.to_vec();
    t
}

fn init_f32(name: &str, v: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 1;
    t.dims = vec![];
    t.raw_data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    if v.len() != 1 {
        t.dims = vec![v.len() as i64];
    }
    t
}

fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    input: ValueInfoProto,
    outputs: &[&str],
) -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "t".into();
    g.node = nodes;
    g.initializer = inits;
    g.input = vec![input];
    g.output = outputs.iter().map(|o| value(o, &[])).collect();
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut os = OperatorSetIdProto::new();
    os.version = opset;
    m.opset_import = vec![os];
    m.graph = Some(g).into();
    m
}

fn import(m: &ModelProto) -> Result<edgecc::ir::Graph, Error> {
    edgecc::onnx::import(m, DataDir { base: None }, &ImportOptions::default())
}

fn run(m: &ModelProto, x: Tensor) -> Vec<Tensor> {
    edgecc::interp::run(&import(m).unwrap(), &[x]).unwrap()
}

fn iota(shape: Vec<usize>) -> Tensor {
    let n = shape.iter().product();
    Tensor::f32(shape, (0..n).map(|i| i as f32 - 3.0).collect())
}

#[test]
fn transpose_without_perm_reverses_dims() {
    let m = model(
        13,
        vec![node("Transpose", &["x"], &["y"], vec![])],
        vec![],
        value("x", &[2, 3, 4]),
        &["y"],
    );
    let y = &run(&m, iota(vec![2, 3, 4]))[0];
    assert_eq!(y.shape, [4, 3, 2]);
    assert_eq!(y.as_f32().unwrap()[1], 12.0 - 3.0);
}

#[test]
fn clip_bounds_come_from_attributes_before_opset_11_and_inputs_after() {
    let old = model(
        6,
        vec![node(
            "Clip",
            &["x"],
            &["y"],
            vec![float("min", -1.0), float("max", 2.0)],
        )],
        vec![],
        value("x", &[8]),
        &["y"],
    );
    let new = model(
        13,
        vec![node("Clip", &["x", "lo", "hi"], &["y"], vec![])],
        vec![init_f32("lo", &[-1.0]), init_f32("hi", &[2.0])],
        value("x", &[8]),
        &["y"],
    );
    let no_max = model(
        13,
        vec![node("Clip", &["x", "lo"], &["y"], vec![])],
        vec![init_f32("lo", &[-1.0])],
        value("x", &[8]),
        &["y"],
    );
    let want = [-1.0, -1.0, -1.0, 0.0, 1.0, 2.0, 2.0, 2.0];
    assert_eq!(run(&old, iota(vec![8]))[0].as_f32().unwrap(), want);
    assert_eq!(run(&new, iota(vec![8]))[0].as_f32().unwrap(), want);
    assert_eq!(run(&no_max, iota(vec![8]))[0].as_f32().unwrap()[7], 4.0);
}

#[test]
fn softmax_before_opset_13_flattens_at_axis() {
    let m11 = model(
        11,
        vec![node("Softmax", &["x"], &["y"], vec![])],
        vec![],
        value("x", &[2, 2, 2]),
        &["y"],
    );
    let m13 = model(
        13,
        vec![node("Softmax", &["x"], &["y"], vec![int("axis", 1)])],
        vec![],
        value("x", &[2, 2, 2]),
        &["y"],
    );
    let y11 = run(&m11, iota(vec![2, 2, 2]))[0].as_f32().unwrap().to_vec();
    let y13 = run(&m13, iota(vec![2, 2, 2]))[0].as_f32().unwrap().to_vec();
    // Opset 11, axis 1: each batch's 4 values sum to 1; opset 13, axis 1: pairs do.
    assert!((y11[..4].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!((y13[0] + y13[2] - 1.0).abs() < 1e-6);
    assert!((y11[0] - y13[0]).abs() > 1e-3);
}

#[test]
fn reshape_copies_zero_dims_and_infers_minus_one() {
    let m = model(
        13,
        vec![node("Reshape", &["x", "s"], &["y"], vec![])],
        vec![init_i64("s", &[0, -1])],
        value("x", &[2, 3, 4]),
        &["y"],
    );
    assert_eq!(run(&m, iota(vec![2, 3, 4]))[0].shape, [2, 12]);
}

#[test]
fn nodes_out_of_order_are_sorted_and_constants_dropouts_identities_resolve() {
    let mut c = node("Constant", &[], &["k"], vec![]);
    let mut a = AttributeProto::new();
    a.name = "value".into();
    a.type_ = AttributeType::TENSOR.into();
    a.t = Some(init_f32("", &[2.0])).into();
    c.attribute = vec![a];
    let m = model(
        13,
        vec![
            node("Identity", &["d"], &["y"], vec![]),
            node("Dropout", &["m"], &["d"], vec![]),
            node("Mul", &["x", "k"], &["m"], vec![]),
            c,
        ],
        vec![],
        value("x", &[3]),
        &["y"],
    );
    assert_eq!(
        run(&m, iota(vec![3]))[0].as_f32().unwrap(),
        [-6.0, -4.0, -2.0]
    );
}

#[test]
fn refused_forms_name_the_reason() {
    let pool = model(
        13,
        vec![node(
            "MaxPool",
            &["x"],
            &["y", "idx"],
            vec![ints("kernel_shape", &[2, 2])],
        )],
        vec![],
        value("x", &[1, 1, 4, 4]),
        &["y", "idx"],
    );
    let dyn_shape = model(
        13,
        vec![node("Reshape", &["x", "x"], &["y"], vec![])],
        vec![],
        value("x", &[2]),
        &["y"],
    );
    let legacy = model(
        6,
        vec![node("Add", &["x", "x"], &["y"], vec![int("broadcast", 1)])],
        vec![],
        value("x", &[2]),
        &["y"],
    );
    for (m, want) in [
        (pool, "only the first 1 output"),
        (dyn_shape, "not a constant"),
        (legacy, "legacy"),
    ] {
        let err = import(&m).unwrap_err();
        assert!(
            matches!(err, Error::Unsupported(_)) && err.to_string().contains(want),
            "{err}"
        );
    }
    let bad = model(
        13,
        vec![node("Relu", &["nothing"], &["y"], vec![])],
        vec![],
        value("x", &[2]),
        &["y"],
    );
    assert!(
        import(&bad)
            .unwrap_err()
            .to_string()
            .contains("nothing defines")
    );
    let shapes = model(
        13,
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![init_f32("w", &[1.0, 2.0, 3.0])],
        value("x", &[2]),
        &["y"],
    );
    let err = import(&shapes).unwrap_err();
    assert!(
        matches!(err, Error::Shape { .. }) && err.to_string().contains("do not broadcast"),
        "{err}"
    );
}

fn function(
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: &[&str],
    nodes: Vec<NodeProto>,
) -> onnx_protobuf::FunctionProto {
    let mut f = onnx_protobuf::FunctionProto::new();
    f.name = name.into();
    f.domain = "local".into();
    f.input = inputs.iter().map(|s| s.to_string()).collect();
    f.output = outputs.iter().map(|s| s.to_string()).collect();
    f.attribute = attrs.iter().map(|s| s.to_string()).collect();
    f.node = nodes;
    f
}

/// Local functions (what the dynamo exporter writes) are inlined with their attributes
/// bound, nested calls included, internal names kept apart per call.
#[test]
fn local_functions_are_inlined_with_attributes_bound() {
    let mut scale_const = node("Constant", &[], &["k"], vec![]);
    let mut r = AttributeProto::new();
    r.name = "value_float".into();
    r.type_ = AttributeType::FLOAT.into();
    r.ref_attr_name = "alpha".into();
    scale_const.attribute = vec![r];
    let scale = function(
        "Scale",
        &["X"],
        &["Y"],
        &["alpha"],
        vec![scale_const, node("Mul", &["X", "k"], &["Y"], vec![])],
    );
    let call = |out: &str, input: &str, alpha: f32| {
        let mut n = node("Scale", &[input], &[out], vec![float("alpha", alpha)]);
        n.domain = "local".into();
        n
    };
    let outer = function(
        "Outer",
        &["A"],
        &["B"],
        &[],
        vec![
            call("t", "A", 2.0),
            call("u", "t", -3.0),
            node("Relu", &["u"], &["B"], vec![]),
        ],
    );
    let mut top = node("Outer", &["x"], &["y"], vec![]);
    top.domain = "local".into();
    let mut m = model(18, vec![top], vec![], value("x", &[4]), &["y"]);
    let mut os = OperatorSetIdProto::new();
    os.domain = "local".into();
    os.version = 1;
    m.opset_import.push(os);
    m.functions = vec![scale, outer];
    let y = run(&m, Tensor::f32(vec![4], vec![-1.0, 0.0, 0.5, 2.0]));
    assert_eq!(y[0].as_f32().unwrap(), [6.0, 0.0, 0.0, 0.0]);
    // A function that calls itself is refused, not expanded forever.
    let mut selfcall = node("Loop1", &["X"], &["Y"], vec![]);
    selfcall.domain = "local".into();
    let f = function("Loop1", &["X"], &["Y"], &[], vec![selfcall.clone()]);
    let mut m = model(
        18,
        vec![{
            let mut n = selfcall;
            n.input = vec!["x".into()];
            n.output = vec!["y".into()];
            n
        }],
        vec![],
        value("x", &[4]),
        &["y"],
    );
    m.functions = vec![f];
    assert!(
        import(&m)
            .unwrap_err()
            .to_string()
            .contains("nests more than")
    );
}

fn string(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec();
    a
}

/// Einsum: the implicit form gets numpy's output (`ij,jk` is `ij,jk->ik`); a malformed
/// equation or a missing one is an unsupported node with the reason, shapes that do not
/// fit the equation a shape error.
#[test]
fn einsum_equations() {
    let einsum = |eq: Option<&str>, w: Vec<f32>| {
        let attrs = eq.map(|e| vec![string("equation", e)]).unwrap_or_default();
        model(
            12,
            vec![node("Einsum", &["x", "w"], &["y"], attrs)],
            vec![init_f32("w", &w)],
            value("x", &[2, 3]),
            &["y"],
        )
    };
    let w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    // Implicit: every letter occurs once, so the output is `ijk`, the outer product.
    let y = &run(&einsum(Some("ij, k"), w.clone()), iota(vec![2, 3]))[0];
    assert_eq!(y.shape, [2, 3, 6]);
    assert_eq!(y.as_f32().unwrap()[..3], [-3.0, -6.0, -9.0]);
    // Explicit, summing k away: x times the sum of w (21); iota is x = [-3, ..., 2].
    let y = &run(&einsum(Some("ij,k->ij"), w), iota(vec![2, 3]))[0];
    assert_eq!(y.as_f32().unwrap(), [-63.0, -42.0, -21.0, 0.0, 21.0, 42.0]);
    for (eq, want) in [
        (Some("ij,k->ik,"), "more than one output term"),
        (Some("ij,k->q"), "'q' is in no input"),
        (Some("i.j,k"), "'...'"),
        (None, "'equation' is required"),
    ] {
        let err = import(&einsum(eq, vec![1.0])).unwrap_err();
        assert!(
            matches!(err, Error::Unsupported(_)) && err.to_string().contains(want),
            "{eq:?}: {err}"
        );
    }
    let err = import(&einsum(Some("ij,j->i"), vec![1.0, 2.0])).unwrap_err();
    assert!(
        matches!(err, Error::Shape { .. }) && err.to_string().contains("subscript 'j'"),
        "{err}"
    );
}

/// CumSum: the axis is a constant input, `exclusive` and `reverse` are attributes; an axis
/// computed at run time or a flag other than 0/1 is an unsupported node with the reason.
#[test]
fn cumsum_axis_input_and_flags() {
    let cumsum = |axis: &[i64], attrs: Vec<AttributeProto>| {
        model(
            14,
            vec![node("CumSum", &["x", "axis"], &["y"], attrs)],
            vec![init_i64("axis", axis)],
            value("x", &[2, 3]),
            &["y"],
        )
    };
    // iota is x = [[-3, -2, -1], [0, 1, 2]].
    let y = &run(&cumsum(&[1], vec![]), iota(vec![2, 3]))[0];
    assert_eq!(y.as_f32().unwrap(), [-3.0, -5.0, -6.0, 0.0, 1.0, 3.0]);
    let flags = vec![int("exclusive", 1), int("reverse", 1)];
    let y = &run(&cumsum(&[-2], flags), iota(vec![2, 3]))[0];
    assert_eq!(y.as_f32().unwrap(), [0.0, 1.0, 2.0, 0.0, 0.0, 0.0]);
    let err = import(&cumsum(&[1], vec![int("reverse", 2)])).unwrap_err();
    assert!(err.to_string().contains("reverse=2"), "{err}");
    let err = import(&cumsum(&[0, 1], vec![])).unwrap_err();
    assert!(err.to_string().contains("not one value"), "{err}");
    let dynamic = model(
        14,
        vec![node("CumSum", &["x", "axis"], &["y"], vec![])],
        vec![],
        value("x", &[2, 3]),
        &["y"],
    );
    assert!(import(&dynamic).is_err());
}
