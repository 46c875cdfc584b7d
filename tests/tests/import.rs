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

// ---------------------------------------------------------------------------------------
// Quantized ops: the integer ops and the QOperator expansion (onnx/qoperator.rs).

/// An initializer of ONNX dtype `code` (2 u8, 3 i8, 6 i32, 1 f32) from its little-endian
/// bytes; `dims` empty for a scalar.
fn init_raw(name: &str, code: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = code;
    t.dims = dims.to_vec();
    t.raw_data = raw;
    t
}

fn init_u8(name: &str, dims: &[i64], v: &[u8]) -> TensorProto {
    init_raw(name, 2, dims, v.to_vec())
}

fn init_i8(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
    init_raw(name, 3, dims, v.iter().map(|&x| x as u8).collect())
}

fn init_i32(name: &str, dims: &[i64], v: &[i32]) -> TensorProto {
    init_raw(
        name,
        6,
        dims,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn init_scalar(name: &str, v: f32) -> TensorProto {
    init_raw(name, 1, &[], v.to_le_bytes().to_vec())
}

fn ms(mut n: NodeProto) -> NodeProto {
    n.domain = "com.microsoft".into();
    n
}

fn op_names(g: &edgecc::ir::Graph) -> Vec<(String, String)> {
    g.topo_order()
        .into_iter()
        .map(|n| (g.node(n).name.clone(), g.node(n).op.name().to_string()))
        .collect()
}

/// QLinearConv with per-channel weights and an int32 bias becomes DequantizeLinear of x,
/// of the i8 weight (kept a constant + DequantizeLinear, not folded to f32) and of the
/// bias (at `x_scale · w_scale`, a Mul folded at import), Conv, QuantizeLinear; the
/// numbers are the definition's, worked by hand here.
#[test]
fn qlinearconv_expands_to_dequantize_conv_quantize() {
    let m = model(
        13,
        vec![
            node("QuantizeLinear", &["x", "xs", "xz"], &["xq"], vec![]),
            node(
                "QLinearConv",
                &["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                &["yq"],
                vec![ints("kernel_shape", &[2, 2]), ints("pads", &[0, 0, 1, 1])],
            ),
            node("DequantizeLinear", &["yq", "ys", "yz"], &["y"], vec![]),
        ],
        vec![
            init_scalar("xs", 0.5),
            init_u8("xz", &[], &[128]),
            // Two output channels: [[1, 2], [3, 4]] at scale 0.25, [[-1, 0], [0, 1]] at 0.5.
            init_i8("w", &[2, 1, 2, 2], &[1, 2, 3, 4, -1, 0, 0, 1]),
            init_raw(
                "ws",
                1,
                &[2],
                [0.25f32, 0.5]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            init_i8("wz", &[2], &[0, 0]),
            init_scalar("ys", 0.5),
            init_u8("yz", &[], &[100]),
            // Biases 8 · 0.5 · 0.25 = 1 and -4 · 0.5 · 0.5 = -1.
            init_i32("b", &[2], &[8, -4]),
        ],
        value("x", &[1, 1, 2, 2]),
        &["y"],
    );
    let g = import(&m).unwrap();
    let names = op_names(&g);
    for want in [
        ("QLinearConv_yq/dequantize_x", "DequantizeLinear"),
        ("QLinearConv_yq/dequantize_w", "DequantizeLinear"),
        ("QLinearConv_yq/dequantize_bias", "DequantizeLinear"),
        ("QLinearConv_yq/conv", "Conv"),
        ("QLinearConv_yq/quantize", "QuantizeLinear"),
    ] {
        assert!(
            names.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {names:?}"
        );
    }
    // The weight reaches the passes as i8, the bias scale as a folded constant.
    let dq_w = g
        .topo_order()
        .into_iter()
        .find(|&n| g.node(n).name == "QLinearConv_yq/dequantize_w")
        .unwrap();
    let w = g.konst(g.node(dq_w).inputs[0]).expect("constant weight");
    assert_eq!(w.dtype, edgecc::ir::DType::I8);
    assert!(!names.iter().any(|(_, op)| op == "Mul"), "{names:?}");
    // x = [[1, 2], [3, 4]] (exact at scale 0.5), padded right and below with 0.
    let x = Tensor::f32(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let y = run(&m, x).remove(0);
    assert_eq!(y.shape, [1, 2, 2, 2]);
    // Channel 0: 0.25·[1 2; 3 4] over the window + 1; channel 1: 0.5·(x[i+1][j+1] - x[i][j]) - 1,
    // each rounded to the output's 0.5 step (ties to even).
    let c0 = [
        0.25 * (1.0 + 4.0 + 9.0 + 16.0) + 1.0,
        0.25 * (2.0 + 3.0 * 4.0) + 1.0,
        0.25 * (3.0 + 2.0 * 4.0) + 1.0,
        0.25 * 4.0 + 1.0,
    ];
    let c1 = [
        0.5 * (4.0 - 1.0) - 1.0,
        -0.5 * 2.0 - 1.0,
        -0.5 * 3.0 - 1.0,
        -0.5 * 4.0 - 1.0,
    ];
    let want: Vec<f32> = c0
        .iter()
        .chain(&c1)
        .map(|v: &f32| (v / 0.5).round_ties_even() * 0.5)
        .collect();
    assert_eq!(y.as_f32().unwrap(), want);
}

/// QLinearGlobalAveragePool with `channels_last` pools an NHWC input over H and W, as
/// the NCHW form does on the transposed input.
#[test]
fn qlinear_global_average_pool_channels_last() {
    let pool = |channels_last: i64, shape: &[i64]| {
        model(
            13,
            vec![
                node("QuantizeLinear", &["x", "s", "z"], &["xq"], vec![]),
                ms(node(
                    "QLinearGlobalAveragePool",
                    &["xq", "s", "z", "s", "z"],
                    &["yq"],
                    vec![int("channels_last", channels_last)],
                )),
                node("DequantizeLinear", &["yq", "s", "z"], &["y"], vec![]),
            ],
            vec![init_scalar("s", 0.25), init_u8("z", &[], &[128])],
            value("x", shape),
            &["y"],
        )
    };
    // NHWC [1, 2, 2, 3]: channel c holds c, c + 1, c + 2, c + 3 (means c + 1.5).
    let nhwc: Vec<f32> = (0..12).map(|i| (i % 3 + i / 3) as f32).collect();
    let y = run(
        &pool(1, &[1, 2, 2, 3]),
        Tensor::f32(vec![1, 2, 2, 3], nhwc.clone()),
    )
    .remove(0);
    assert_eq!(y.shape, [1, 1, 1, 3]);
    assert_eq!(y.as_f32().unwrap(), [1.5, 2.5, 3.5]);
    let nchw: Vec<f32> = (0..12).map(|i| nhwc[(i % 4) * 3 + i / 4]).collect();
    let y = run(&pool(0, &[1, 3, 2, 2]), Tensor::f32(vec![1, 3, 2, 2], nchw)).remove(0);
    assert_eq!(y.shape, [1, 3, 1, 1]);
    assert_eq!(y.as_f32().unwrap(), [1.5, 2.5, 3.5]);
}

/// The element-wise and shape-keeping contrib ops against their formulas: QLinearAdd,
/// QLinearMul, QLinearLeakyRelu, QLinearSigmoid, QLinearConcat, and QLinearSoftmax whose
/// `opset` attribute (12: flatten at axis) differs from the model's (17).
#[test]
fn qoperator_contrib_ops_follow_their_definitions() {
    let q = |x: &str, y: &str| node("QuantizeLinear", &[x, "s", "z"], &[y], vec![]);
    let dq = |x: &str, y: &str| node("DequantizeLinear", &[x, "s", "z"], &[y], vec![]);
    let m = model(
        17,
        vec![
            q("x", "xq"),
            ms(node(
                "QLinearAdd",
                &["xq", "s", "z", "xq", "s", "z", "s", "z"],
                &["aq"],
                vec![],
            )),
            ms(node(
                "QLinearMul",
                &["xq", "s", "z", "xq", "s", "z", "s", "z"],
                &["mq"],
                vec![],
            )),
            ms(node(
                "QLinearLeakyRelu",
                &["xq", "s", "z", "s", "z"],
                &["lq"],
                vec![float("alpha", 0.5)],
            )),
            ms(node(
                "QLinearSigmoid",
                &["xq", "s", "z", "t", "zt"],
                &["sq"],
                vec![],
            )),
            ms(node(
                "QLinearConcat",
                &["s", "z", "xq", "s", "z", "aq", "s", "z"],
                &["cq"],
                vec![int("axis", 0)],
            )),
            ms(node(
                "QLinearSoftmax",
                &["xq", "s", "z", "t", "zt"],
                &["fq"],
                vec![int("axis", 1), int("opset", 12)],
            )),
            dq("aq", "a"),
            dq("mq", "mul"),
            dq("lq", "l"),
            node("DequantizeLinear", &["sq", "t", "zt"], &["sig"], vec![]),
            dq("cq", "c"),
            node("DequantizeLinear", &["fq", "t", "zt"], &["f"], vec![]),
        ],
        vec![
            init_scalar("s", 0.5),
            init_u8("z", &[], &[128]),
            init_scalar("t", 1.0 / 256.0),
            init_u8("zt", &[], &[0]),
        ],
        value("x", &[2, 1, 2]),
        &["a", "mul", "l", "sig", "c", "f"],
    );
    let xs = [-2.0f32, -0.5, 1.0, 3.0];
    let out = run(&m, Tensor::f32(vec![2, 1, 2], xs.to_vec()));
    let f = |i: usize| out[i].as_f32().unwrap().to_vec();
    let step = |v: f32, s: f32, z: f32| ((v / s).round_ties_even() + z).clamp(0.0, 255.0);
    let requant = |v: f32| (step(v, 0.5, 128.0) - 128.0) * 0.5;
    let prob = |v: f32| step(v, 1.0 / 256.0, 0.0) / 256.0;
    assert_eq!(f(0), xs.map(|v| requant(v + v)));
    assert_eq!(f(1), xs.map(|v| requant(v * v)));
    assert_eq!(f(2), xs.map(|v| requant(if v < 0.0 { 0.5 * v } else { v })));
    assert_eq!(f(3), xs.map(|v| prob(1.0 / (1.0 + (-v).exp()))));
    assert_eq!(out[4].shape, [4, 1, 2]);
    assert_eq!(&f(4)[..4], xs);
    // Opset-12 softmax at axis 1 of [2, 1, 2]: over each batch's 2 values (flattened
    // [2, 2]); opset 13's axis 1 would be over a single value (all 1).
    let soft = |a: f32, b: f32| {
        let (ea, eb) = (a.exp(), b.exp());
        [prob(ea / (ea + eb)), prob(eb / (ea + eb))]
    };
    let want: Vec<f32> = [soft(xs[0], xs[1]), soft(xs[2], xs[3])].concat();
    assert_eq!(f(5), want);
}

/// QGemm without `y_scale` writes the float product: `alpha · A'·B' + C` with the int32 C
/// at scale `alpha · a_scale · b_scale`.
#[test]
fn qgemm_without_output_scale_is_float() {
    let m = model(
        13,
        vec![
            node("QuantizeLinear", &["x", "xs", "xz"], &["xq"], vec![]),
            ms(node(
                "QGemm",
                &["xq", "xs", "xz", "w", "ws", "wz", "c"],
                &["y"],
                vec![int("transB", 1), float("alpha", 2.0)],
            )),
        ],
        vec![
            init_scalar("xs", 1.0),
            init_u8("xz", &[], &[10]),
            init_i8("w", &[2, 3], &[1, 0, -1, 2, 2, 2]),
            init_raw(
                "ws",
                1,
                &[2],
                [1.0f32, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            init_i8("wz", &[2], &[0, 0]),
            init_i32("c", &[2], &[3, -4]),
        ],
        value("x", &[1, 3]),
        &["y"],
    );
    let y = run(&m, Tensor::f32(vec![1, 3], vec![1.0, 2.0, 3.0])).remove(0);
    // Row 0 of B' = [1, 0, -1]·1: -2; row 1 = [2, 2, 2]·0.5: 6. C = [3·1, -4·0.5].
    assert_eq!(
        y.as_f32().unwrap(),
        [2.0 * -2.0 + 2.0 * 3.0, 2.0 * 6.0 + 2.0 * -2.0]
    );
}

/// MatMulInteger with an absent A zero point before a present per-column B zero point:
/// the importer supplies the 0.
#[test]
fn matmul_integer_with_a_skipped_zero_point() {
    let mut x = value("a", &[2, 2]);
    x.type_.as_mut().unwrap().mut_tensor_type().elem_type = 2;
    let m = model(
        13,
        vec![node("MatMulInteger", &["a", "b", "", "bz"], &["y"], vec![])],
        vec![
            init_i8("b", &[2, 2], &[1, 2, 3, 4]),
            init_i8("bz", &[2], &[1, -1]),
        ],
        x,
        &["y"],
    );
    let a = Tensor {
        dtype: edgecc::ir::DType::U8,
        shape: vec![2, 2],
        data: edgecc::ir::Data::U8(vec![1, 2, 250, 0]),
    };
    let y = run(&m, a).remove(0);
    // B - bz = [[0, 3], [2, 5]].
    assert_eq!(y.dtype, edgecc::ir::DType::I32);
    assert_eq!(y.to_i64s().unwrap(), [4, 13, 0, 750]);
}

/// QLinearAdd (a constant u8 bias vector broadcast along the rows) and QLinearMul of two
/// computed values, imported and folded: one QAdd and one QMul on the bytes, named after
/// the expansion's arithmetic nodes, within one output step of the expanded graph.
#[test]
fn qlinear_add_and_mul_fold_to_integer_add_and_mul() {
    let m = model(
        17,
        vec![
            node("QuantizeLinear", &["x", "s1", "z1"], &["aq"], vec![]),
            node("QuantizeLinear", &["x", "s2", "z2"], &["bq"], vec![]),
            ms(node(
                "QLinearAdd",
                &["aq", "s1", "z1", "bias", "sb", "zb", "s3", "z3"],
                &["cq"],
                vec![],
            )),
            ms(node(
                "QLinearMul",
                &["cq", "s3", "z3", "bq", "s2", "z2", "s4", "z4"],
                &["mq"],
                vec![],
            )),
            node("DequantizeLinear", &["mq", "s4", "z4"], &["y"], vec![]),
        ],
        vec![
            init_scalar("s1", 0.01),
            init_u8("z1", &[], &[128]),
            init_scalar("s2", 0.02),
            init_u8("z2", &[], &[100]),
            init_u8("bias", &[4], &[0, 50, 128, 255]),
            init_scalar("sb", 0.005),
            init_u8("zb", &[], &[128]),
            init_scalar("s3", 0.015),
            init_u8("z3", &[], &[120]),
            init_scalar("s4", 0.004),
            init_u8("z4", &[], &[60]),
        ],
        value("x", &[3, 4]),
        &["y"],
    );
    let g = import(&m).unwrap();
    let mut folded = g.clone();
    edgecc::passes::by_name("fold-requant")
        .unwrap()
        .run(&mut folded)
        .unwrap();
    let names = op_names(&folded);
    for want in [("QLinearAdd_cq/add", "QAdd"), ("QLinearMul_mq/mul", "QMul")] {
        assert!(
            names.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {names:?}"
        );
    }
    // The bias stays a u8 constant read by the QAdd.
    let add = folded
        .topo_order()
        .into_iter()
        .find(|&n| folded.node(n).name == "QLinearAdd_cq/add")
        .unwrap();
    let bias = folded
        .konst(folded.node(add).inputs[1])
        .expect("constant bias");
    assert_eq!(
        (bias.dtype, bias.shape.clone()),
        (edgecc::ir::DType::U8, vec![4])
    );
    // Every x in [-1, 1) on a grid: the folded graph within one step (0.004) of the
    // expanded one, and not identical by accident of a trivial input.
    let x = Tensor::f32(
        vec![3, 4],
        (0..12).map(|i| -0.97 + i as f32 * 0.17).collect(),
    );
    let want = edgecc::interp::run(&g, std::slice::from_ref(&x))
        .unwrap()
        .remove(0);
    let got = edgecc::interp::run(&folded, &[x]).unwrap().remove(0);
    let (w, o) = (want.as_f32().unwrap(), got.as_f32().unwrap());
    assert!(w.iter().any(|&v| v != w[0]), "{w:?}");
    for (a, b) in w.iter().zip(o) {
        assert!((a - b).abs() <= 0.004 * 1.001, "{w:?} vs {o:?}");
    }
}
