//! Hostile and broken models: each gets a specific error (asserted by its text), never a
//! panic, and memory in proportion to the file's real size, whatever its headers claim.
//! Memory is measured: this test binary's allocator counts the bytes each thread has live
//! and their peak ([`peak_during`]).
//!
//! What a merely odd but valid model does is decided here too: nodes listed out of order
//! are sorted; a dangling output that two nodes both name is ignored; zero-sized inputs
//! compile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use edgecc::Error;
use edgecc::onnx::{DataDir, ImportOptions};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataLocation, tensor_shape_proto, type_proto,
};

// ---------------------------------------------------------------------------------------
// Counting allocator: live and peak bytes per thread.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: forwards to the system allocator; the counters are plain thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            count(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            count(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        count(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            count(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `f`'s result and the most bytes this thread had allocated at once while it ran, above
/// what was live before.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(|p| p.get()) - base;
    (r, peak.max(0) as usize)
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// Building models.

fn value_of(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = elem;
    let mut sh = onnx_protobuf::TensorShapeProto::new();
    for &d in dims {
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

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    value_of(name, 1, dims)
}

/// An output whose type the importer infers.
fn out(name: &str) -> ValueInfoProto {
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi
}

/// A node without a name (errors then name it by position and op).
fn node(op: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.input = ins.iter().map(|s| s.to_string()).collect();
    n.output = outs.iter().map(|s| s.to_string()).collect();
    n
}

fn with(mut n: NodeProto, attrs: Vec<AttributeProto>) -> NodeProto {
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

fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::TENSOR.into();
    a.t = Some(t).into();
    a
}

fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::GRAPH.into();
    a.g = Some(g).into();
    a
}

fn raw(name: &str, data_type: i32, dims: &[i64], bytes: Vec<u8>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = data_type;
    t.dims = dims.to_vec();
    t.raw_data = bytes;
    t
}

fn i64s(name: &str, v: &[i64]) -> TensorProto {
    raw(
        name,
        7,
        &[v.len() as i64],
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn i64_scalar(name: &str, v: i64) -> TensorProto {
    raw(name, 7, &[], v.to_le_bytes().to_vec())
}

fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    let mut os = OperatorSetIdProto::new();
    os.domain = domain.into();
    os.version = version;
    os
}

fn graph(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> GraphProto {
    let mut g = GraphProto::new();
    g.name = "hostile".into();
    g.node = nodes;
    g.initializer = inits;
    g.input = inputs;
    g.output = outputs.iter().map(|o| out(o)).collect();
    g
}

fn model_with(g: GraphProto, opsets: Vec<OperatorSetIdProto>) -> ModelProto {
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import = opsets;
    m.graph = Some(g).into();
    m
}

/// An opset-17 model.
fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> ModelProto {
    model_with(graph(nodes, inits, inputs, outputs), vec![opset("", 17)])
}

fn import(m: &ModelProto) -> Result<edgecc::ir::Graph, Error> {
    edgecc::onnx::import(m, DataDir { base: None }, &ImportOptions::default())
}

/// The model's import error as text, which must contain every `want`; and the peak bytes
/// the import allocated.
fn refused(m: &ModelProto, want: &[&str]) -> (Error, usize) {
    let (r, peak) = peak_during(|| import(m));
    let err = match r {
        Err(e) => e,
        Ok(_) => panic!("imported, expected an error containing {want:?}"),
    };
    let text = err.to_string();
    for w in want {
        assert!(text.contains(w), "'{w}' missing from: {text}");
    }
    (err, peak)
}

/// Decodes `bytes` (the file's own size is what memory is measured against) and imports.
fn refused_bytes(bytes: &[u8], want: &[&str]) -> (String, usize) {
    let (r, peak) = peak_during(|| edgecc::onnx::decode(bytes).and_then(|m| import(&m)));
    let text = match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("imported, expected an error containing {want:?}"),
    };
    for w in want {
        assert!(text.contains(w), "'{w}' missing from: {text}");
    }
    (text, peak)
}

// ---------------------------------------------------------------------------------------
// Sizes: declared shapes and data that lie.

/// A 100-byte model declaring a 2^40-element f32 initializer (4 TiB) with 8 bytes of data.
#[test]
fn initializer_of_2_to_the_40_elements_is_refused_without_allocating() {
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![raw("w", 1, &[1 << 40], vec![0; 8])],
        vec![value("x", &[2])],
        &["y"],
    );
    let bytes = m.write_to_bytes().unwrap();
    assert!(bytes.len() < 128, "{}", bytes.len());
    let (_, peak) = refused_bytes(
        &bytes,
        &["initializer 'w'", "dims [1099511627776] are too large"],
    );
    assert!(peak < 16 * KIB, "peak {peak} bytes");
}

#[test]
fn initializer_dims_whose_product_overflows_are_refused() {
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![raw("w", 1, &[1 << 31, 1 << 31, 1 << 31], vec![0; 8])],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(
        &m,
        &["dims [2147483648, 2147483648, 2147483648] are too large"],
    );
}

#[test]
fn initializer_with_a_negative_dim_is_refused() {
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![raw("w", 1, &[-2], vec![0; 8])],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(&m, &["initializer 'w': negative dimension -2"]);
}

#[test]
fn raw_data_whose_length_disagrees_with_shape_and_dtype_is_refused() {
    for (dims, dtype, len, want) in [
        (vec![2], 1, 7, "raw_data has 7 bytes, dims need 8"),
        (vec![2], 1, 9, "raw_data has 9 bytes, dims need 8"),
        (vec![3], 7, 16, "raw_data has 16 bytes, dims need 24"),
        // int4: two per byte, so 3 elements need 2 bytes.
        (vec![3], 22, 1, "raw_data has 1 bytes, dims need 2"),
        (vec![], 1, 8, "raw_data has 8 bytes, dims need 4"),
    ] {
        let m = model(
            vec![node("Identity", &["w"], &["y"])],
            vec![raw("w", dtype, &dims, vec![0; len])],
            vec![],
            &["y"],
        );
        refused(&m, &["initializer 'w'", want]);
    }
    // 1 GiB claimed, 8 bytes given: refused by comparing lengths, nothing allocated.
    let m = model(
        vec![node("Identity", &["w"], &["y"])],
        vec![raw("w", 1, &[1 << 28], vec![0; 8])],
        vec![],
        &["y"],
    );
    let (_, peak) = refused(&m, &["raw_data has 8 bytes, dims need 1073741824"]);
    assert!(peak < 16 * KIB, "peak {peak} bytes");
}

#[test]
fn typed_data_whose_count_disagrees_with_the_shape_is_refused() {
    let mut w = TensorProto::new();
    w.name = "w".into();
    w.data_type = 1;
    w.dims = vec![2];
    w.float_data = vec![1.0, 2.0, 3.0];
    let mut big = TensorProto::new();
    big.name = "b".into();
    big.data_type = 7;
    big.dims = vec![1 << 28];
    big.int64_data = vec![1];
    for (t, want) in [
        (w, "typed data has 3 entries, dims need 2 elements"),
        (
            big,
            "typed data has 1 entries, dims need 268435456 elements",
        ),
    ] {
        let name = t.name.clone();
        let m = model(
            vec![node("Identity", &[&name], &["y"])],
            vec![t],
            vec![],
            &["y"],
        );
        let (_, peak) = refused(&m, &[want]);
        assert!(peak < 16 * KIB, "peak {peak} bytes");
    }
}

// Hand-written protobuf: fields whose length prefix claims more than the file holds.

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: tag, length, bytes.
fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    varint(((number as u64) << 3) | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A length-delimited field that claims `claimed` bytes and holds `bytes`.
fn lying_field(number: u32, claimed: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    varint(((number as u64) << 3) | 2, &mut out);
    varint(claimed, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// ModelProto { ir_version 8, opset_import { version 17 }, graph { initializer { name
/// "w", data_type 1, dims [2^29], <last> } } }, `last` being the initializer's final field,
/// whose length prefix claims `missing` bytes more than the file holds. The enclosing
/// lengths count those bytes too, as in a file cut short, so the decoder reaches `last`.
fn model_bytes_ending_in_initializer(last: &[u8], missing: u64) -> Vec<u8> {
    let mut tensor = vec![0x08]; // dims, varint
    varint(1 << 29, &mut tensor);
    tensor.extend([0x10, 0x01]); // data_type = FLOAT
    tensor.extend(field(8, b"w"));
    tensor.extend_from_slice(last);
    let graph = lying_field(5, tensor.len() as u64 + missing, &tensor);
    let mut m = vec![0x08, 0x08];
    m.extend(field(8, &[0x10, 17]));
    m.extend(lying_field(7, graph.len() as u64 + missing, &graph));
    m
}

/// Initializers larger than the file: a raw_data, a packed float_data, packed dims and a
/// name each claim up to 2 GiB in a file of under 100 bytes. The decoder reads what is
/// there and fails; it never sizes a buffer from the claim.
#[test]
fn length_prefixes_past_the_end_of_the_file_are_decode_errors_without_allocating() {
    for (what, number, claimed, payload) in [
        ("raw_data", 9, (1u64 << 31) - 1, &[0u8; 16][..]),
        ("float_data", 4, 1 << 30, &[0; 16]),
        ("dims", 1, 1 << 30, &[1; 16]),
        ("name", 8, (1 << 31) - 1, b"abc"),
        ("int64_data", 7, 1 << 30, &[1; 16]),
    ] {
        let last = lying_field(number, claimed, payload);
        // As a cut file has it (the enclosing lengths count the missing bytes, the first
        // to reach past the end is the graph's), and with truthful enclosing lengths (the
        // field itself reaches past its initializer).
        for (missing, at) in [
            (claimed - payload.len() as u64, "field 7 at offset 12"),
            (0, &format!("field {number} at offset")),
        ] {
            let bytes = model_bytes_ending_in_initializer(&last, missing);
            assert!(bytes.len() < 100, "{what}: {} bytes", bytes.len());
            let (text, peak) = refused_bytes(&bytes, &["not a valid ONNX file"]);
            assert!(
                text.contains("truncated: ") && text.contains(at) && text.contains("remain"),
                "{what}: {text}"
            );
            assert!(peak < 64 * KIB, "{what}: peak {peak} bytes");
        }
    }
}

/// Graph inputs declared with sizes no buffer can have.
#[test]
fn graph_input_shapes_that_overflow_or_exceed_4_gib_are_refused() {
    for (dims, want) in [
        (
            vec![1 << 40, 1 << 40],
            "input 'x': f32[1099511627776, 1099511627776] is more than 2^64 bytes",
        ),
        (
            vec![1 << 20, 1 << 20, 1 << 10],
            "input 'x': f32[1048576, 1048576, 1024] would take 4503599627370496 bytes, more than the 4 GiB",
        ),
    ] {
        let m = model(
            vec![node("Relu", &["x"], &["y"])],
            vec![],
            vec![value("x", &dims)],
            &["y"],
        );
        let (_, peak) = refused(&m, &[want]);
        assert!(peak < 16 * KIB, "peak {peak} bytes");
    }
    // Given on the command line instead: the same check.
    let m = model(
        vec![node("Relu", &["x"], &["y"])],
        vec![],
        vec![value("x", &[-1, -1])],
        &["y"],
    );
    let opts = ImportOptions {
        input_shapes: [("x".to_string(), vec![1 << 30, 1 << 30])]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let err = edgecc::onnx::import(&m, DataDir { base: None }, &opts).unwrap_err();
    assert!(
        err.to_string().contains(
            "input 'x': f32[1073741824, 1073741824] would take 4611686018427387904 bytes"
        ),
        "{err}"
    );
}

/// A negative dim in a graph input is no size: unresolved, and named by its value.
#[test]
fn graph_input_with_a_negative_dim_is_unresolved_and_named() {
    let m = model(
        vec![node("Relu", &["x"], &["y"])],
        vec![],
        vec![value("x", &[-3, 4])],
        &["y"],
    );
    let (err, _) = refused(&m, &["x[-3]", "--input-shape"]);
    assert!(matches!(err, Error::UnresolvedDims(_)), "{err}");
    // Given a size, it imports.
    let opts = ImportOptions {
        input_shapes: [("x".to_string(), vec![2, 4])].into_iter().collect(),
        ..Default::default()
    };
    edgecc::onnx::import(&m, DataDir { base: None }, &opts).unwrap();
}

/// Zero-sized tensors are valid ONNX: a [0, 3] input compiles (to empty buffers).
#[test]
fn zero_sized_input_compiles() {
    let m = model(
        vec![node("Relu", &["x"], &["y"])],
        vec![],
        vec![value("x", &[0, 3])],
        &["y"],
    );
    let mut g = import(&m).unwrap();
    edgecc::passes::PassManager::default_pipeline()
        .run(&mut g)
        .unwrap();
    let p = edgecc::lower::lower(&g, "m").unwrap();
    assert_eq!(p.program.outputs[0].shape, [0, 3]);
    assert_eq!(p.program.outputs[0].byte_size(), 0);
}

/// Zero where a size must be positive: window kernels, strides and dilations, and a
/// window over an empty spatial dim.
#[test]
fn zero_kernels_strides_dilations_and_empty_windows_are_refused() {
    let w = raw("w", 1, &[1, 1, 1, 1], 1f32.to_le_bytes().to_vec());
    let conv = |attrs: Vec<AttributeProto>, dims: &[i64]| {
        model(
            vec![with(node("Conv", &["x", "w"], &["y"]), attrs)],
            vec![w.clone()],
            vec![value("x", dims)],
            &["y"],
        )
    };
    let pool = |attrs: Vec<AttributeProto>| {
        model(
            vec![with(node("MaxPool", &["x"], &["y"]), attrs)],
            vec![],
            vec![value("x", &[1, 1, 4, 4])],
            &["y"],
        )
    };
    let positive = "kernel, strides and dilations must be positive";
    for (m, want) in [
        (
            conv(vec![ints("strides", &[0, 1])], &[1, 1, 4, 4]),
            positive,
        ),
        (
            conv(vec![ints("dilations", &[1, 0])], &[1, 1, 4, 4]),
            positive,
        ),
        (pool(vec![ints("kernel_shape", &[0, 2])]), positive),
        (
            pool(vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[0, 0]),
            ]),
            positive,
        ),
        (
            conv(vec![], &[1, 1, 0, 4]),
            "spatial dim 0 of the input is 0",
        ),
        (
            conv(
                vec![
                    {
                        let mut a = AttributeProto::new();
                        a.name = "auto_pad".into();
                        a.type_ = AttributeType::STRING.into();
                        a.s = b"SAME_UPPER".to_vec();
                        a
                    },
                    ints("strides", &[2, 2]),
                ],
                &[1, 1, 4, 0],
            ),
            "spatial dim 1 of the input is 0",
        ),
        (
            conv(
                vec![ints("pads", &[0, i64::MAX, 0, i64::MAX])],
                &[1, 1, 4, 4],
            ),
            "overflow in spatial dim 1",
        ),
    ] {
        refused(&m, &[want]);
    }
}

/// ConstantOfShape, Expand, Tile and Pad whose outputs a few constants make huge: refused
/// as any node output past 4 GiB is, with nothing allocated; a ConstantOfShape too large
/// to fold (but legal) becomes a broadcast of its value instead of a constant.
#[test]
fn ops_whose_constant_inputs_declare_huge_outputs_are_refused_without_allocating() {
    let cos = |shape: &[i64]| {
        model(
            vec![
                node("ConstantOfShape", &["s"], &["c"]),
                node("Add", &["x", "c"], &["y"]),
            ],
            vec![i64s("s", shape)],
            vec![value("x", &[1])],
            &["y"],
        )
    };
    let on = |op: &str, k: TensorProto, x: &[i64]| {
        let name = k.name.clone();
        model(
            vec![node(op, &["x", &name], &["y"])],
            vec![k],
            vec![value("x", x)],
            &["y"],
        )
    };
    let one = |op: &str, k: TensorProto| on(op, k, &[2]);
    for (m, want) in [
        (
            cos(&[1 << 40]),
            "f32[1099511627776] would take 4398046511104 bytes, more than the 4 GiB",
        ),
        (
            cos(&[1 << 31, 1 << 31, 1 << 31]),
            "shape [2147483648, 2147483648, 2147483648] has more than 2^40 elements",
        ),
        (cos(&[4, -1]), "shape [4, -1] has a negative dimension"),
        (
            one("Expand", i64s("s", &[1 << 30, 2])),
            "node 'Expand_0' (Expand): output 0: f32[1073741824, 2] would take",
        ),
        (
            one("Tile", i64s("r", &[1 << 30])),
            "node 'Tile_0' (Tile): output 0: f32[2147483648] would take",
        ),
        (
            on("Tile", i64s("r", &[i64::MAX]), &[3]),
            "repeats [9223372036854775807] of [3] overflow",
        ),
        (
            one("Tile", i64s("r", &[i64::MAX])),
            "shape [18446744073709551614] has more than 2^40 elements",
        ),
        (
            one("Pad", i64s("p", &[0, 1 << 30])),
            "node 'Pad_0' (Pad): output 0: f32[1073741826] would take",
        ),
        (
            one("Pad", i64s("p", &[0, i64::MAX])),
            "pads [0, 9223372036854775807] overflow dim 0",
        ),
    ] {
        let (_, peak) = refused(&m, &[want]);
        assert!(peak < 64 * KIB, "{want}: peak {peak} bytes");
    }
    // An empty value for ConstantOfShape.
    let empty = model(
        vec![with(
            node("ConstantOfShape", &["s"], &["y"]),
            vec![tensor_attr("value", raw("v", 1, &[0], vec![]))],
        )],
        vec![i64s("s", &[3])],
        vec![],
        &["y"],
    );
    refused(&empty, &["value has 0 elements, not 1"]);
    // 32 MiB of zeros: legal, kept a broadcast of one value (no 32 MiB constant).
    let (g, peak) = peak_during(|| import(&cos(&[8 << 20])).unwrap());
    assert!(peak < MIB, "peak {peak} bytes");
    let ops: Vec<&str> = g.node_indices().map(|n| g.node(n).op.name()).collect();
    assert!(ops.contains(&"Expand"), "{ops:?}");
}

/// Range is evaluated at import: bounded like a folded constant, and its int64 values
/// counted and computed exactly, without overflow.
#[test]
fn range_is_bounded_and_overflow_checked() {
    let range = |start: i64, limit: i64, delta: i64| {
        model(
            vec![node("Range", &["a", "b", "c"], &["y"])],
            vec![
                i64_scalar("a", start),
                i64_scalar("b", limit),
                i64_scalar("c", delta),
            ],
            vec![],
            &["y"],
        )
    };
    let (_, peak) = refused(
        &range(0, 1 << 27, 1),
        &[
            "node 'Range_0': Range",
            "134217728 elements, more than the 2097152 edgecc evaluates at compile time",
        ],
    );
    assert!(peak < 64 * KIB, "peak {peak} bytes");
    // Counted exactly: in f64 the start and the limit are the same number.
    let g = import(&range(i64::MAX - 1000, i64::MAX, 1)).unwrap();
    let y = g.konst(g.outputs[0]).unwrap().to_i64s().unwrap();
    assert_eq!((y.len(), y[999]), (1000, i64::MAX - 1));
    let g = import(&range(5, -5, -3)).unwrap();
    let y = g.konst(g.outputs[0]).unwrap().to_i64s().unwrap();
    assert_eq!(y, [5, 2, -1, -4]);
    let g = import(&range(i64::MIN, i64::MAX, 3 << 61)).unwrap();
    let y = g.konst(g.outputs[0]).unwrap().to_i64s().unwrap();
    assert_eq!(y, [i64::MIN, -(1 << 61), 1 << 62]);
    refused(&range(0, 10, 0), &["delta is 0"]);
    let g = import(&range(i64::MIN, i64::MAX, 1 << 62)).unwrap();
    let y = g.konst(g.outputs[0]).unwrap();
    assert_eq!(
        y.to_i64s().unwrap(),
        [i64::MIN, i64::MIN + (1 << 62), 0, 1 << 62]
    );
}

/// A hundred nodes each broadcasting one number to 16 MiB (a 5 KB file): evaluating them
/// all at compile time took 8 GB and three minutes. Folding has a budget (16 MiB plus four
/// times the model's initializers); past it the nodes stay nodes and run at run time, or,
/// for Range, which has no kernel, are refused.
#[test]
fn folding_many_large_constants_stays_within_a_budget() {
    let n = 100;
    let mut nodes = vec![];
    let mut prev = "x".to_string();
    for i in 0..n {
        let (e, a) = (format!("e{i}"), format!("a{i}"));
        let op = if i % 2 == 0 {
            node("Expand", &["one", "s"], &[&e])
        } else {
            with(
                node("ConstantOfShape", &["s"], &[&e]),
                vec![tensor_attr(
                    "value",
                    raw("v", 1, &[1], 1f32.to_le_bytes().to_vec()),
                )],
            )
        };
        nodes.push(op);
        nodes.push(node("Add", &[&prev, &e], &[&a]));
        prev = a;
    }
    let m = model(
        nodes,
        vec![
            i64s("s", &[4 << 20]),
            raw("one", 1, &[1], 1f32.to_le_bytes().to_vec()),
        ],
        vec![value("x", &[1])],
        &[&prev],
    );
    assert!(m.write_to_bytes().unwrap().len() < 8 * KIB);
    let (g, peak) = peak_during(|| {
        let mut g = import(&m).unwrap();
        edgecc::passes::PassManager::default_pipeline()
            .run(&mut g)
            .unwrap();
        g
    });
    assert!(peak < 96 * MIB, "peak {peak} bytes");
    let live: usize = g
        .values()
        .filter_map(|(_, v)| v.konst.as_ref().map(|t| t.len() * 4))
        .sum();
    assert!(live <= 17 * MIB, "{live} bytes of constants");
    let kept = g
        .node_indices()
        .filter(|&i| g.node(i).op.name() == "Expand")
        .count();
    assert!(kept >= n - 2, "{kept} broadcasts left as nodes");

    let ranges: Vec<NodeProto> = (0..n)
        .map(|i| node("Range", &["zero", "big", "step"], &[&format!("r{i}")]))
        .collect();
    let outputs: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let outputs: Vec<&str> = outputs.iter().map(|s| s.as_str()).collect();
    let m = model(
        ranges,
        vec![
            i64_scalar("zero", 0),
            i64_scalar("big", 1 << 21),
            i64_scalar("step", 1),
        ],
        vec![],
        &outputs,
    );
    let (err, peak) = refused(
        &m,
        &[
            "node 'Range_1': Range (ai.onnx, opset 17): 16777216 bytes, past what edgecc \
             evaluates at compile time for this model",
        ],
    );
    let Error::Unsupported(ops) = err else {
        unreachable!()
    };
    assert_eq!(ops.len(), n - 1);
    assert!(peak < 64 * MIB, "peak {peak} bytes");
}

// ---------------------------------------------------------------------------------------
// Graph structure.

#[test]
fn cycles_are_named() {
    let two = model(
        vec![
            node("Relu", &["b"], &["a"]),
            node("Relu", &["a"], &["b"]),
            node("Add", &["x", "a"], &["y"]),
        ],
        vec![],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(
        &two,
        &["the graph has a cycle: node #0 (Relu) reads 'b', node #1 (Relu) reads 'a'"],
    );
    let self_loop = model(
        vec![node("Add", &["x", "a"], &["a"])],
        vec![],
        vec![value("x", &[2])],
        &["a"],
    );
    refused(
        &self_loop,
        &["the graph has a cycle: node #0 (Add) reads 'a'"],
    );
    // A chain leading into a cycle: the cycle is what is named.
    let mut n = node("Relu", &["c"], &["d"]);
    n.name = "named".into();
    let lead_in = model(
        vec![
            node("Relu", &["d"], &["y"]),
            n,
            node("Relu", &["e"], &["c"]),
            node("Relu", &["d"], &["e"]),
        ],
        vec![],
        vec![],
        &["y"],
    );
    refused(
        &lead_in,
        &[
            "the graph has a cycle: node 'named' (Relu) reads 'c', node #2 (Relu) reads 'e', \
             node #3 (Relu) reads 'd'",
        ],
    );
    // A cycle and a value nothing defines: the undefined value is the first problem.
    let both = model(
        vec![
            node("Relu", &["b"], &["a"]),
            node("Relu", &["a"], &["b"]),
            node("Add", &["a", "nope"], &["y"]),
        ],
        vec![],
        vec![],
        &["y"],
    );
    refused(
        &both,
        &["node #2 (Add) reads 'nope', which nothing defines"],
    );
}

#[test]
fn missing_inputs_and_outputs_are_named() {
    let m = model(
        vec![node("Add", &["x", "nope"], &["y"])],
        vec![],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(&m, &["node #0 (Add) reads 'nope', which nothing defines"]);
    let m = model(
        vec![node("Relu", &["x"], &["y"])],
        vec![],
        vec![value("x", &[2])],
        &["z"],
    );
    refused(
        &m,
        &["graph output 'z' is not an input, initializer or node output"],
    );
    // A required input left empty.
    let m = model(
        vec![node("Add", &["x", ""], &["y"])],
        vec![],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(&m, &["node 'Add_0' (Add): expects 2 inputs, got 1"]);
}

/// Values used before they are produced (nodes out of order): ONNX requires topological
/// order, exporters do not always obey, so edgecc sorts them. A long chain listed
/// backwards imports in O(n log n).
#[test]
fn nodes_out_of_order_are_sorted_quickly() {
    let n = 20_000;
    let mut nodes: Vec<NodeProto> = (0..n)
        .map(|i| {
            let input = if i == 0 {
                "x".to_string()
            } else {
                format!("v{i}")
            };
            let output = if i + 1 == n {
                "y".to_string()
            } else {
                format!("v{}", i + 1)
            };
            node("Neg", &[&input], &[&output])
        })
        .collect();
    nodes.reverse();
    let m = model(nodes, vec![], vec![value("x", &[2])], &["y"]);
    let t = std::time::Instant::now();
    let g = import(&m).unwrap();
    let took = t.elapsed();
    assert_eq!(g.node_count(), n);
    assert!(took.as_secs() < 20, "{took:?}");
    let x = edgecc::ir::Tensor::f32(vec![2], vec![1.0, -2.0]);
    let y = edgecc::interp::run(&g, &[x]).unwrap();
    assert_eq!(y[0].as_f32().unwrap(), [1.0, -2.0]);
}

/// Names assigned more than once. Read anywhere (by a node or as a graph output), the
/// value is ambiguous and refused; a dangling output two nodes both name, which nothing
/// reads, is accepted and ignored.
#[test]
fn values_defined_twice_are_refused_when_read_and_ignored_when_dangling() {
    let twice_read = model(
        vec![
            node("Relu", &["x"], &["t"]),
            node("Sigmoid", &["x"], &["t"]),
            node("Neg", &["t"], &["y"]),
        ],
        vec![],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(
        &twice_read,
        &[
            "'t' is defined 2 times (node #0 (Relu), node #1 (Sigmoid)) and node #2 (Neg) reads \
             it; an ONNX value is assigned once",
        ],
    );
    let twice_output = model(
        vec![
            node("Relu", &["x"], &["y"]),
            node("Sigmoid", &["x"], &["y"]),
        ],
        vec![],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(
        &twice_output,
        &[
            "'y' is defined 2 times (node #0 (Relu), node #1 (Sigmoid)) and the graph's outputs reads it",
        ],
    );
    let shadows_input = model(
        vec![node("Relu", &["x"], &["x"]), node("Neg", &["x"], &["y"])],
        vec![],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(
        &shadows_input,
        &["'x' is defined 2 times (a graph input, node #0 (Relu))"],
    );
    let two_initializers = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![
            raw("w", 1, &[], 1f32.to_le_bytes().to_vec()),
            raw("w", 1, &[], 2f32.to_le_bytes().to_vec()),
        ],
        vec![value("x", &[2])],
        &["y"],
    );
    refused(
        &two_initializers,
        &["'w' is defined 2 times (an initializer, an initializer)"],
    );
    let input_twice = model(
        vec![node("Relu", &["x"], &["y"])],
        vec![],
        vec![value("x", &[2]), value("x", &[3])],
        &["y"],
    );
    refused(
        &input_twice,
        &["'x' is defined 2 times (a graph input, a graph input)"],
    );
    // IR < 4: an initializer also listed as an input is one value.
    let ir3 = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![raw("w", 1, &[], 1f32.to_le_bytes().to_vec())],
        vec![value("x", &[2]), value("w", &[])],
        &["y"],
    );
    import(&ir3).unwrap();

    // Dangling and named twice: accepted, the results unaffected.
    let dangling = model(
        vec![
            node("Relu", &["x"], &["y"]),
            node("Sigmoid", &["x"], &["d"]),
            node("Tanh", &["x"], &["d"]),
        ],
        vec![],
        vec![value("x", &[2])],
        &["y"],
    );
    let g = import(&dangling).unwrap();
    let x = edgecc::ir::Tensor::f32(vec![2], vec![-1.0, 2.0]);
    let y = edgecc::interp::run(&g, &[x]).unwrap();
    assert_eq!(y[0].as_f32().unwrap(), [0.0, 2.0]);
}

#[test]
fn opset_imports_missing_from_the_future_or_doubled_are_refused() {
    let relu = |opsets: Vec<OperatorSetIdProto>| {
        model_with(
            graph(
                vec![node("Relu", &["x"], &["y"])],
                vec![],
                vec![value("x", &[2])],
                &["y"],
            ),
            opsets,
        )
    };
    refused(
        &relu(vec![]),
        &["the model imports no version of the default ONNX opset"],
    );
    refused(
        &relu(vec![opset("com.microsoft", 1)]),
        &["the model imports no version of the default ONNX opset"],
    );
    for v in [29, 99, 0, -5] {
        refused(
            &relu(vec![opset("", v)]),
            &[
                &format!("the model imports opset {v} of the default ONNX domain"),
                "edgecc knows opsets 1 to 28",
            ],
        );
    }
    refused(
        &relu(vec![opset("", 13), opset("ai.onnx", 17)]),
        &["imports the default ONNX opset more than once, as versions [13, 17]"],
    );
    // The newest known opset and the same version twice are fine.
    import(&relu(vec![opset("", 28)])).unwrap();
    import(&relu(vec![opset("", 17), opset("ai.onnx", 17)])).unwrap();
}

#[test]
fn ops_of_unknown_domains_are_listed_with_the_domain() {
    let mut frob = node("Frob", &["x"], &["y"]);
    frob.domain = "com.example".into();
    let imported = model_with(
        graph(vec![frob.clone()], vec![], vec![value("x", &[2])], &["y"]),
        vec![opset("", 17), opset("com.example", 3)],
    );
    let (err, _) = refused(&imported, &["node 'Frob_0': Frob (com.example, opset 3)"]);
    assert!(matches!(err, Error::Unsupported(_)));
    let not_imported = model_with(
        graph(vec![frob], vec![], vec![value("x", &[2])], &["y"]),
        vec![opset("", 17)],
    );
    refused(
        &not_imported,
        &["node 'Frob_0': Frob: domain 'com.example' is not among the model's opset imports"],
    );
}

/// A graph attribute nested in a graph attribute, ..., `depth` times, in an If.
fn nested_if(depth: usize) -> ModelProto {
    let mut inner = graph(
        vec![node("Identity", &["x"], &["r"])],
        vec![],
        vec![],
        &["r"],
    );
    for _ in 0..depth {
        let n = with(
            node("If", &["c"], &["r"]),
            vec![graph_attr("then_branch", inner)],
        );
        inner = graph(vec![n], vec![], vec![], &["r"]);
    }
    let mut top = inner.node[0].clone();
    top.output = vec!["y".into()];
    model(
        vec![top],
        vec![raw("c", 9, &[], vec![1])],
        vec![value("x", &[2])],
        &["y"],
    )
}

/// Subgraphs (If, Loop, Scan bodies) are not compiled: a nested If is one unsupported
/// node, named. Nesting past the protobuf decoder's recursion limit (100 messages) is a
/// decode error, however deep the file goes: 5,000 levels use neither the stack nor
/// memory beyond the file's size.
#[test]
fn nested_subgraphs_are_unsupported_and_deep_nesting_is_a_decode_error() {
    let m = nested_if(20);
    let bytes = m.write_to_bytes().unwrap();
    let m = edgecc::onnx::decode(&bytes).unwrap();
    let (err, _) = refused(
        &m,
        &["1 unsupported op(s)", "node 'If_0': If (ai.onnx, opset 17)"],
    );
    assert!(matches!(err, Error::Unsupported(_)));

    // NodeProto { attribute { g { node { attribute { g { ... } } } } } }, written inside
    // out: too deep for any encoder that recurses, so by hand.
    let depth = 5_000;
    let mut node_bytes = field(4, b"Identity");
    for _ in 0..depth {
        let g = field(1, &node_bytes); // GraphProto.node
        let mut a = field(1, b"then_branch"); // AttributeProto.name
        a.extend([0xA0, 0x01, 0x05]); // type = GRAPH (field 20)
        a.extend(field(6, &g)); // AttributeProto.g
        node_bytes = field(4, b"If");
        node_bytes.extend(field(5, &a)); // NodeProto.attribute
    }
    let mut g = field(1, &node_bytes);
    g.extend(field(2, b"deep"));
    let mut file = vec![0x08, 0x08];
    file.extend(field(8, &[0x10, 17]));
    file.extend(field(7, &g));
    let (text, peak) = std::thread::scope(|s| {
        // A small stack: the decoder must not recurse with the nesting.
        std::thread::Builder::new()
            .stack_size(MIB)
            .spawn_scoped(s, || refused_bytes(&file, &["not a valid ONNX file"]))
            .unwrap()
            .join()
            .unwrap()
    });
    assert!(text.contains("recursion"), "{text}");
    assert!(
        peak < file.len() + 64 * KIB,
        "peak {peak} bytes, file {}",
        file.len()
    );
}

/// Local functions: recursion is refused by depth, and calls that multiply (each function
/// calling the next twice, 30 deep: 2^30 nodes from two kilobytes) by a node budget in
/// proportion to the file, before memory grows past it.
#[test]
fn functions_that_recurse_or_multiply_are_refused() {
    use onnx_protobuf::FunctionProto;
    let function = |name: &str, body: Vec<NodeProto>| {
        let mut f = FunctionProto::new();
        f.name = name.into();
        f.domain = "local".into();
        f.input = vec!["a".into()];
        f.output = vec!["b".into()];
        f.node = body;
        f.opset_import = vec![opset("", 17)];
        f
    };
    let call = |f: &str, i: &str, o: &str| {
        let mut n = node(f, &[i], &[o]);
        n.domain = "local".into();
        n
    };
    let with_functions = |fs: Vec<FunctionProto>| {
        let mut m = model_with(
            graph(
                vec![call("F0", "x", "y")],
                vec![],
                vec![value("x", &[2])],
                &["y"],
            ),
            vec![opset("", 17), opset("local", 1)],
        );
        m.functions = fs;
        m
    };
    let recursive = with_functions(vec![function("F0", vec![call("F0", "a", "b")])]);
    refused(
        &recursive,
        &["function 'F0' nests more than 32 calls deep (recursive?)"],
    );
    let doubling: Vec<FunctionProto> = (0..30)
        .map(|i| {
            let next = format!("F{}", i + 1);
            let body = if i < 29 {
                vec![call(&next, "a", "t"), call(&next, "t", "b")]
            } else {
                vec![node("Relu", &["a"], &["b"])]
            };
            function(&format!("F{i}"), body)
        })
        .collect();
    let m = with_functions(doubling);
    let size = m.write_to_bytes().unwrap().len();
    assert!(size < 4 * KIB, "{size}");
    let t = std::time::Instant::now();
    let (_, peak) = refused(
        &m,
        &["inlining the model's local functions makes more than 66496 nodes"],
    );
    assert!(peak < 128 * MIB, "peak {peak} bytes");
    assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------
// External data.

/// A model with one external f32 [4, 3] initializer `w` at `location` (with `extra` keys),
/// written into `dir`; returns its path.
fn external_model(
    dir: &Path,
    location: &str,
    extra: &[(&str, &str)],
    dims: &[i64],
) -> std::path::PathBuf {
    let mut w = TensorProto::new();
    w.name = "w".into();
    w.data_type = 1;
    w.dims = dims.to_vec();
    w.data_location = DataLocation::EXTERNAL.into();
    let kv = |k: &str, v: &str| {
        let mut e = StringStringEntryProto::new();
        e.key = k.into();
        e.value = v.into();
        e
    };
    if !location.is_empty() {
        w.external_data.push(kv("location", location));
    }
    for (k, v) in extra {
        w.external_data.push(kv(k, v));
    }
    let m = model(
        vec![node("MatMul", &["x", "w"], &["y"])],
        vec![w],
        vec![value("x", &[1, 4])],
        &["y"],
    );
    let path = dir.join("model.onnx");
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    path
}

fn load(path: &Path) -> Result<edgecc::ir::Graph, Error> {
    edgecc::onnx::load(path, &ImportOptions::default()).map(|(_, g)| g)
}

/// The external-data refusal of the model at `path`: its reason, which must contain
/// `want`, and the import's peak memory.
fn external_refused(path: &Path, want: &str) -> usize {
    let (r, peak) = peak_during(|| load(path));
    match r {
        Err(Error::ExternalData { tensor, reason, .. }) => {
            assert_eq!(tensor, "w");
            assert!(reason.contains(want), "'{want}' missing from: {reason}");
        }
        other => panic!("expected an external-data error with '{want}', got {other:?}"),
    }
    peak
}

#[test]
fn external_data_reads_only_regular_files_inside_the_models_folder() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.bin"), [7u8; 48]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("weights.bin"), [0u8; 48]).unwrap();
    // Works as written.
    let path = external_model(d, "weights.bin", &[], &[4, 3]);
    load(&path).unwrap();
    let path = external_model(
        d,
        "./weights.bin",
        &[("offset", "0"), ("length", "48")],
        &[4, 3],
    );
    load(&path).unwrap();

    let secret = outside.path().join("secret.bin");
    let leave = "path leaves the model's folder";
    for (location, want) in [
        ("../secret.bin", leave),
        ("sub/../../secret.bin", leave),
        (secret.to_str().unwrap(), leave),
        ("/etc/passwd", leave),
        (
            "linked_dir/secret.bin",
            "path resolves outside the model's folder",
        ),
        ("link.bin", "path resolves outside the model's folder"),
        ("missing.bin", "cannot open: No such file"),
        ("", "external data without a location"),
        ("sub", "not a regular file"),
        (".", "not a regular file"),
        ("fifo", "not a regular file"),
    ] {
        if location.is_empty() {
            let path = external_model(d, "", &[], &[4, 3]);
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            continue;
        }
        let _ = std::fs::create_dir(d.join("sub"));
        let _ = std::os::unix::fs::symlink(outside.path(), d.join("linked_dir"));
        let _ = std::os::unix::fs::symlink(&secret, d.join("link.bin"));
        if !d.join("fifo").exists() {
            let made = std::process::Command::new("mkfifo")
                .arg(d.join("fifo"))
                .status()
                .unwrap();
            assert!(made.success());
        }
        let path = external_model(d, location, &[], &[4, 3]);
        external_refused(&path, want);
    }
    // Decoded from bytes, there is no folder to read from.
    let bytes = std::fs::read(external_model(d, "weights.bin", &[], &[4, 3])).unwrap();
    let m = edgecc::onnx::decode(&bytes).unwrap();
    let err = import(&m).unwrap_err().to_string();
    assert!(
        err.contains("the model was not loaded from a file"),
        "{err}"
    );
}

#[test]
fn external_data_offsets_and_lengths_past_the_file_are_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("weights.bin"), [0u8; 48]).unwrap();
    for (extra, dims, want) in [
        (
            vec![("offset", "8")],
            vec![4, 3],
            "bytes 8..56 are past the end of the file (48 bytes)",
        ),
        (
            vec![("offset", "4096"), ("length", "48")],
            vec![4, 3],
            "bytes 4096..4144 are past the end of the file",
        ),
        (
            vec![("offset", "18446744073709551615"), ("length", "48")],
            vec![4, 3],
            "past the end of the file",
        ),
        (
            vec![("length", "4")],
            vec![4, 3],
            "length 4 does not match dims (48 bytes)",
        ),
        (vec![("offset", "-1")], vec![4, 3], "bad external offset"),
        (vec![("length", "lots")], vec![4, 3], "bad external length"),
        // 4 GiB claimed from a 48-byte file: compared with its size, not read.
        (
            vec![],
            vec![1 << 30],
            "bytes 0..4294967296 are past the end of the file (48 bytes)",
        ),
    ] {
        let path = external_model(d, "weights.bin", &extra, &dims);
        let (r, peak) = peak_during(|| load(&path));
        let text = r.map(|_| ()).unwrap_err().to_string();
        assert!(text.contains(want), "'{want}' missing from: {text}");
        assert!(peak < 64 * KIB, "{want}: peak {peak} bytes");
    }
}

// ---------------------------------------------------------------------------------------
// Truncation.

/// Every prefix of a small model, cut at every byte: a decode error, another specific
/// error, or (cut at a field boundary) a smaller model that imports. Never a panic, and
/// each model that imports also runs the passes and lowering.
#[test]
fn every_truncation_of_a_small_model_is_an_error_or_a_model() {
    for (example, shapes) in [("conv1d", vec![]), ("symbolic", vec![2, 16])] {
        let bytes = std::fs::read(common::example(example).join("model.onnx")).unwrap();
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        let mut panics = vec![];
        for cut in 0..=bytes.len() {
            let prefix = &bytes[..cut];
            let outcome = std::panic::catch_unwind(|| {
                let m = match edgecc::onnx::decode(prefix) {
                    Ok(m) => m,
                    Err(Error::Decode(text)) => {
                        assert!(!text.is_empty());
                        return "decode error";
                    }
                    Err(Error::Model(text)) => {
                        assert_eq!(text, "the file has no graph");
                        return "no graph";
                    }
                    Err(e) => panic!("unexpected error kind: {e:?}"),
                };
                let opts = ImportOptions {
                    input_shapes: [("x".to_string(), shapes.clone())]
                        .into_iter()
                        .filter(|(_, s)| !s.is_empty())
                        .collect(),
                    ..Default::default()
                };
                match edgecc::onnx::import(&m, DataDir { base: None }, &opts) {
                    Ok(mut g) => {
                        if edgecc::passes::PassManager::default_pipeline()
                            .run(&mut g)
                            .is_ok()
                        {
                            let _ = edgecc::lower::lower(&g, "m");
                        }
                        "imports"
                    }
                    Err(e) => {
                        assert!(!e.to_string().is_empty());
                        match e {
                            Error::Model(_) => "model error",
                            Error::Input(_) => "input error",
                            Error::Unsupported(_) => "unsupported",
                            Error::Shape { .. } => "shape error",
                            Error::UnresolvedDims(_) => "unresolved dims",
                            other => panic!("unexpected error kind: {other:?}"),
                        }
                    }
                }
            });
            match outcome {
                Ok(kind) => *kinds.entry(kind).or_default() += 1,
                Err(_) => panics.push(cut),
            }
        }
        assert!(panics.is_empty(), "{example}: panics at cuts {panics:?}");
        assert_eq!(kinds.values().sum::<usize>(), bytes.len() + 1);
        // The whole file imports (the one "imports"): nothing was cut.
        assert_eq!(kinds.get("imports"), Some(&1), "{example}: {kinds:?}");
        // The file's tail is its graph: most cuts land inside a field.
        assert!(
            kinds["decode error"] > bytes.len() / 2,
            "{example}: {kinds:?}"
        );
        eprintln!("{example} ({} bytes): {kinds:?}", bytes.len());
    }
}
