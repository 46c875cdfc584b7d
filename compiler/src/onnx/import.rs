//! `ModelProto` → [`Graph`]: opsets resolved per op, attributes checked and typed,
//! constants gathered, symbolic input dims resolved. All unsupported ops are collected
//! and reported together.

use std::collections::{BTreeMap, HashMap, HashSet};

use onnx_protobuf::{ModelProto, NodeProto, ValueInfoProto};

use super::attrs::Attrs;
use super::tensor::{self, DataDir};
use crate::ir::{AutoPad, Binary, DType, Graph, Op, Tensor, Unary, ValueId, WindowAttrs};
use crate::{Error, UnsupportedOp};

/// What the caller knows that the model does not say.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Concrete shapes for inputs with symbolic or unknown dims, by input name.
    pub input_shapes: BTreeMap<String, Vec<usize>>,
}

/// A graph input's declared type, symbolic dims kept by name.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(usize),
    /// A `dim_param`, or `?` for a dim with neither value nor name.
    Symbolic(String),
}

/// The declared dtype and dims of a `ValueInfoProto`.
pub fn declared_type(vi: &ValueInfoProto) -> Result<(DType, Vec<Dim>), Error> {
    if !vi.type_.has_tensor_type() {
        return Err(Error::Model(format!(
            "value '{}' is not a tensor (sequences, maps and optionals are not supported)",
            vi.name
        )));
    }
    let tt = vi.type_.tensor_type();
    let dtype = DType::from_onnx(tt.elem_type).ok_or_else(|| {
        Error::Model(format!(
            "value '{}' has unknown element type {}",
            vi.name, tt.elem_type
        ))
    })?;
    let dims = tt
        .shape
        .dim
        .iter()
        .map(|d| {
            use onnx_protobuf::tensor_shape_proto::dimension::Value;
            match &d.value {
                Some(Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                Some(Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                _ => Dim::Symbolic("?".into()),
            }
        })
        .collect();
    Ok((dtype, dims))
}

/// The opset version in force for `domain` (`""` and `"ai.onnx"` are the same domain).
pub fn opset_of(model: &ModelProto, domain: &str) -> Option<i64> {
    let norm = |d: &str| if d == "ai.onnx" { "" } else { d }.to_string();
    model
        .opset_import
        .iter()
        .find(|o| norm(&o.domain) == norm(domain))
        .map(|o| o.version)
}

/// The ONNX ops the importer translates (default domain), for `inspect` and errors.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Div",
    "Dropout",
    "Exp",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Reciprocal",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Sqrt",
    "Sub",
    "Tanh",
    "Transpose",
];

/// A node translated to edgecc ops: usually one, sometimes a short chain (variadic Max)
/// or none (Constant, which becomes a value).
enum Lowered {
    Op(Op, Vec<String>),
    Const(Tensor),
    Alias(String),
    /// Transpose without `perm`: reverse the dims, whose number is known only once the
    /// input's value exists.
    TransposeReversed(String),
}

/// Imports a decoded model.
pub fn import(model: &ModelProto, dir: DataDir<'_>, opts: &ImportOptions) -> Result<Graph, Error> {
    let Some(g) = model.graph.as_ref() else {
        return Err(Error::Model("the file has no graph".into()));
    };
    let opset = opset_of(model, "").ok_or_else(|| {
        Error::Model("the model imports no version of the default ONNX opset".into())
    })?;
    let mut graph = Graph::new(if g.name.is_empty() {
        "model".to_string()
    } else {
        g.name.clone()
    });
    let mut scope: HashMap<String, ValueId> = HashMap::new();

    for t in &g.initializer {
        let tensor = tensor::decode(t, dir)?;
        let id = graph.add_const(t.name.clone(), tensor);
        scope.insert(t.name.clone(), id);
    }
    if !g.sparse_initializer.is_empty() {
        return Err(Error::Model("sparse initializers are not supported".into()));
    }

    // Graph inputs (skipping those that only declare an initializer, as IR < 4 models do).
    let mut unresolved = Vec::new();
    for vi in &g.input {
        if scope.contains_key(&vi.name) {
            continue;
        }
        let (dtype, dims) = declared_type(vi)?;
        let shape = match opts.input_shapes.get(&vi.name) {
            Some(given) => {
                let fits = given.len() == dims.len()
                    && given.iter().zip(&dims).all(|(g, d)| match d {
                        Dim::Fixed(f) => f == g,
                        Dim::Symbolic(_) => true,
                    });
                if !fits {
                    return Err(Error::Input(format!(
                        "--input-shape {}: {:?} does not fit the declared shape {}",
                        vi.name,
                        given,
                        dims_text(&dims)
                    )));
                }
                given.clone()
            }
            None => {
                let mut shape = Vec::new();
                for d in &dims {
                    match d {
                        Dim::Fixed(f) => shape.push(*f),
                        Dim::Symbolic(s) => {
                            unresolved.push((vi.name.clone(), s.clone()));
                            shape.push(0);
                        }
                    }
                }
                shape
            }
        };
        let id = graph.add_input(vi.name.clone(), dtype, shape);
        graph.inputs.push(id);
        scope.insert(vi.name.clone(), id);
    }
    for name in opts.input_shapes.keys() {
        if !g.input.iter().any(|vi| &vi.name == name) {
            return Err(Error::Input(format!(
                "--input-shape names '{name}', which is not an input of the model"
            )));
        }
    }
    if !unresolved.is_empty() {
        return Err(Error::UnresolvedDims(unresolved));
    }

    // First translate every node, collecting all unsupported ones; only then build.
    let order = topo_sort(&g.node, &scope)?;
    let mut unsupported = Vec::new();
    let mut translated = Vec::with_capacity(order.len());
    let mut constants: HashMap<String, Tensor> = HashMap::new();
    for (i, &ni) in order.iter().enumerate() {
        let node = &g.node[ni];
        let name = if node.name.is_empty() {
            format!("{}_{i}", node.op_type)
        } else {
            node.name.clone()
        };
        let konst = |n: &str| -> Option<Tensor> {
            if let Some(t) = constants.get(n) {
                return Some(t.clone());
            }
            scope.get(n).and_then(|&v| graph.konst(v).cloned())
        };
        match translate(node, opset, &konst) {
            Ok(l) => {
                if let Lowered::Const(t) = &l
                    && let Some(o) = node.output.first()
                {
                    constants.insert(o.clone(), t.clone());
                }
                translated.push((name, ni, l));
            }
            Err(reason) => unsupported.push(UnsupportedOp {
                node: name,
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                opset: opset_of(model, &node.domain).unwrap_or(0),
                reason,
            }),
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::Unsupported(unsupported));
    }

    for (name, ni, l) in translated {
        let node = &g.node[ni];
        match l {
            Lowered::Const(t) => {
                let out = node.output.first().cloned().unwrap_or_default();
                let id = graph.add_const(out.clone(), t);
                scope.insert(out, id);
            }
            Lowered::Alias(input) => {
                let v = lookup(&scope, &input, &name)?;
                if let Some(out) = node.output.first() {
                    scope.insert(out.clone(), v);
                }
            }
            Lowered::TransposeReversed(input) => {
                let v = lookup(&scope, &input, &name)?;
                let perm = (0..graph.value(v).shape.len()).rev().collect();
                let (_, outs) = graph.add_node(name.clone(), Op::Transpose { perm }, vec![v])?;
                if let Some(out_name) = node.output.first() {
                    graph.value_mut(outs[0]).name = out_name.clone();
                    scope.insert(out_name.clone(), outs[0]);
                }
            }
            Lowered::Op(op, inputs) => {
                let ins = inputs
                    .iter()
                    .map(|i| lookup(&scope, i, &name))
                    .collect::<Result<Vec<_>, _>>()?;
                let (_, outs) = graph.add_node(name.clone(), op, ins)?;
                for (k, &o) in outs.iter().enumerate() {
                    let Some(out_name) = node.output.get(k).filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    graph.value_mut(o).name = out_name.clone();
                    scope.insert(out_name.clone(), o);
                }
            }
        }
    }
    for vi in &g.output {
        let v = lookup(&scope, &vi.name, "graph output")?;
        graph.outputs.push(v);
    }
    if graph.outputs.is_empty() {
        return Err(Error::Model("the graph has no outputs".into()));
    }
    Ok(graph)
}

fn dims_text(dims: &[Dim]) -> String {
    let d: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(f) => f.to_string(),
            Dim::Symbolic(s) => s.clone(),
        })
        .collect();
    format!("[{}]", d.join(","))
}

fn lookup(scope: &HashMap<String, ValueId>, name: &str, user: &str) -> Result<ValueId, Error> {
    scope
        .get(name)
        .copied()
        .ok_or_else(|| Error::Model(format!("'{user}' reads '{name}', which nothing defines")))
}

/// Orders nodes so each comes after the producers of its inputs (ONNX requires this, not
/// every exporter obeys). Stable: already-sorted models keep their order.
fn topo_sort(nodes: &[NodeProto], scope: &HashMap<String, ValueId>) -> Result<Vec<usize>, Error> {
    let mut defined: HashSet<&str> = scope.keys().map(|s| s.as_str()).collect();
    defined.insert("");
    let mut done = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    loop {
        let before = order.len();
        for (i, n) in nodes.iter().enumerate() {
            if !done[i] && n.input.iter().all(|x| defined.contains(x.as_str())) {
                done[i] = true;
                order.push(i);
                for o in &n.output {
                    defined.insert(o);
                }
            }
        }
        if order.len() == nodes.len() {
            return Ok(order);
        }
        if order.len() == before {
            let stuck = nodes
                .iter()
                .enumerate()
                .find(|(i, _)| !done[*i])
                .map(|(_, n)| n)
                .expect("some node is not done");
            let missing: Vec<&str> = stuck
                .input
                .iter()
                .filter(|x| !defined.contains(x.as_str()))
                .map(|s| s.as_str())
                .collect();
            return Err(Error::Model(format!(
                "node '{}' ({}) reads {:?}, which nothing defines (or the graph has a cycle)",
                stuck.name, stuck.op_type, missing
            )));
        }
    }
}

/// Input names with trailing empty (omitted optional) inputs dropped.
fn inputs(node: &NodeProto) -> Vec<String> {
    let mut v = node.input.clone();
    while v.last().is_some_and(|s| s.is_empty()) {
        v.pop();
    }
    v
}

fn window(
    a: &Attrs<'_>,
    kernel: Vec<usize>,
    opset: i64,
    dilations_since: i64,
) -> Result<WindowAttrs, String> {
    let r = kernel.len();
    let strides = a.usizes("strides")?.unwrap_or_else(|| vec![1; r]);
    let dilations = if opset >= dilations_since {
        a.usizes("dilations")?.unwrap_or_else(|| vec![1; r])
    } else {
        vec![1; r]
    };
    let pads = a.usizes("pads")?.unwrap_or_else(|| vec![0; 2 * r]);
    let auto_pad = match a.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") | Some("") => AutoPad::NotSet,
        Some("SAME_UPPER") => AutoPad::SameUpper,
        Some("SAME_LOWER") => AutoPad::SameLower,
        Some("VALID") => AutoPad::Valid,
        Some(other) => return Err(format!("auto_pad '{other}' is not an ONNX value")),
    };
    if strides.len() != r || dilations.len() != r || pads.len() != 2 * r {
        return Err(format!(
            "strides/dilations/pads lengths do not match a {r}-D kernel"
        ));
    }
    if !(1..=2).contains(&r) {
        return Err(format!("{r}-D windows are not supported (1-D and 2-D are)"));
    }
    let ceil_mode = a.int("ceil_mode")?.unwrap_or(0) != 0;
    Ok(WindowAttrs {
        kernel,
        strides,
        dilations,
        pads,
        auto_pad,
        ceil_mode,
    })
}

/// Translates one node. `Err(Some(reason))` or `Err(None)` (simply unknown) marks it
/// unsupported.
fn translate(
    node: &NodeProto,
    opset: i64,
    konst: &dyn Fn(&str) -> Option<Tensor>,
) -> Result<Lowered, Option<String>> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(None);
    }
    let a = Attrs::new(node);
    let ins = inputs(node);
    let some = |s: String| Some(s);
    let need_outputs = |n: usize| -> Result<(), Option<String>> {
        if node.output.iter().skip(n).any(|o| !o.is_empty()) {
            return Err(some(format!("only the first {n} output(s) are supported")));
        }
        Ok(())
    };
    let legacy_broadcast = || -> Result<(), Option<String>> {
        if opset < 7 && a.int("broadcast").map_err(some)?.unwrap_or(0) != 0 {
            return Err(some("legacy (opset < 7) broadcast attribute".into()));
        }
        Ok(())
    };
    let op = match node.op_type.as_str() {
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Neg" | "Abs" | "Sqrt" | "Reciprocal" => {
            Op::Unary(match node.op_type.as_str() {
                "Relu" => Unary::Relu,
                "Sigmoid" => Unary::Sigmoid,
                "Tanh" => Unary::Tanh,
                "Exp" => Unary::Exp,
                "Neg" => Unary::Neg,
                "Abs" => Unary::Abs,
                "Sqrt" => Unary::Sqrt,
                _ => Unary::Reciprocal,
            })
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            legacy_broadcast()?;
            Op::Binary(match node.op_type.as_str() {
                "Add" => Binary::Add,
                "Sub" => Binary::Sub,
                "Mul" => Binary::Mul,
                _ => Binary::Div,
            })
        }
        "Max" | "Min" => {
            if ins.len() != 2 {
                return Err(some(format!("{} inputs (2 are supported)", ins.len())));
            }
            Op::Binary(if node.op_type == "Max" {
                Binary::Max
            } else {
                Binary::Min
            })
        }
        "Clip" => {
            let (min, max) = if opset < 11 {
                (
                    a.float("min").map_err(some)?.unwrap_or(f32::NEG_INFINITY),
                    a.float("max").map_err(some)?.unwrap_or(f32::INFINITY),
                )
            } else {
                let bound = |i: usize, default: f32| -> Result<f32, Option<String>> {
                    match ins.get(i).filter(|s| !s.is_empty()) {
                        None => Ok(default),
                        Some(n) => konst(n)
                            .and_then(|t| t.as_f32().filter(|v| v.len() == 1).map(|v| v[0]))
                            .ok_or_else(|| {
                                some(format!("bound '{n}' is not a constant f32 scalar"))
                            }),
                    }
                };
                (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
            };
            return Ok(Lowered::Op(
                Op::Clip { min, max },
                ins[..1.min(ins.len())].to_vec(),
            ));
        }
        "MatMul" => Op::MatMul,
        "Gemm" => {
            legacy_broadcast()?;
            Op::Gemm {
                alpha: a.float("alpha").map_err(some)?.unwrap_or(1.0),
                beta: a.float("beta").map_err(some)?.unwrap_or(1.0),
                trans_a: a.int("transA").map_err(some)?.unwrap_or(0) != 0,
                trans_b: a.int("transB").map_err(some)?.unwrap_or(0) != 0,
            }
        }
        "Conv" => {
            let kernel = match a.usizes("kernel_shape").map_err(some)? {
                Some(k) => k,
                None => {
                    // Optional: the weight's spatial dims, when the weight is a constant.
                    let w = ins.get(1).and_then(|n| konst(n)).ok_or_else(|| {
                        some("kernel_shape missing and the weight is not a constant".into())
                    })?;
                    w.shape.get(2..).unwrap_or(&[]).to_vec()
                }
            };
            let group = a.int("group").map_err(some)?.unwrap_or(1);
            if group < 1 {
                return Err(some(format!("group {group}")));
            }
            Op::Conv {
                window: window(&a, kernel, opset, 1).map_err(some)?,
                group: group as usize,
            }
        }
        "MaxPool" | "AveragePool" => {
            let kernel = a
                .usizes("kernel_shape")
                .map_err(some)?
                .ok_or_else(|| some("kernel_shape is required".into()))?;
            if node.op_type == "MaxPool" {
                need_outputs(1)?;
                if a.int("storage_order").map_err(some)?.unwrap_or(0) != 0 {
                    return Err(some("storage_order=1".into()));
                }
                Op::MaxPool {
                    window: window(&a, kernel, opset, 10).map_err(some)?,
                }
            } else {
                Op::AveragePool {
                    window: window(&a, kernel, opset, 19).map_err(some)?,
                    count_include_pad: a.int("count_include_pad").map_err(some)?.unwrap_or(0) != 0,
                }
            }
        }
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "BatchNormalization" => {
            need_outputs(1)?;
            if a.int("training_mode").map_err(some)?.unwrap_or(0) != 0 {
                return Err(some("training_mode=1".into()));
            }
            if opset < 9 && a.int("spatial").map_err(some)?.unwrap_or(1) == 0 {
                return Err(some("spatial=0".into()));
            }
            Op::BatchNorm {
                epsilon: a.float("epsilon").map_err(some)?.unwrap_or(1e-5),
            }
        }
        "Flatten" => Op::Flatten {
            axis: a.int("axis").map_err(some)?.unwrap_or(1),
        },
        "Reshape" => {
            let allowzero = a.int("allowzero").map_err(some)?.unwrap_or(0) != 0;
            let shape = if opset < 5 {
                a.ints("shape")
                    .map_err(some)?
                    .ok_or_else(|| some("no shape".into()))?
            } else {
                let n = ins.get(1).ok_or_else(|| some("no shape input".into()))?;
                konst(n)
                    .and_then(|t| t.to_i64s())
                    .ok_or_else(|| some(format!("shape input '{n}' is not a constant")))?
            };
            return Ok(Lowered::Op(
                Op::Reshape { shape, allowzero },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "Transpose" => match a.usizes("perm").map_err(some)? {
            Some(perm) => Op::Transpose { perm },
            None => {
                return Ok(Lowered::TransposeReversed(
                    ins.first().cloned().unwrap_or_default(),
                ));
            }
        },
        "Concat" => Op::Concat {
            axis: a
                .int("axis")
                .map_err(some)?
                .ok_or_else(|| some("axis is required".into()))?,
        },
        "Softmax" => Op::Softmax {
            axis: a
                .int("axis")
                .map_err(some)?
                .unwrap_or(if opset < 13 { 1 } else { -1 }),
            coerce_2d: opset < 13,
        },
        "Identity" => return Ok(Lowered::Alias(ins.first().cloned().unwrap_or_default())),
        "Dropout" => {
            need_outputs(1)?;
            return Ok(Lowered::Alias(ins.first().cloned().unwrap_or_default()));
        }
        "Constant" => return constant(node, &a).map(Lowered::Const).map_err(some),
        _ => return Err(None),
    };
    Ok(Lowered::Op(op, ins))
}

fn constant(node: &NodeProto, a: &Attrs<'_>) -> Result<Tensor, String> {
    if let Some(t) = a.get("value") {
        return tensor::decode(&t.t, DataDir { base: None }).map_err(|e| e.to_string());
    }
    if let Some(f) = a.float("value_float")? {
        return Ok(Tensor::f32(vec![], vec![f]));
    }
    if let Some(v) = a.floats("value_floats")? {
        return Ok(Tensor::f32(vec![v.len()], v));
    }
    if let Some(i) = a.int("value_int")? {
        return Ok(Tensor::i64(vec![], vec![i]));
    }
    if let Some(v) = a.ints("value_ints")? {
        return Ok(Tensor::i64(vec![v.len()], v));
    }
    Err(format!(
        "Constant '{}' has no supported value attribute (sparse and string forms are not supported)",
        node.name
    ))
}
