//! `ModelProto` → [`Graph`]: opsets resolved per op, attributes checked and typed,
//! constants gathered, symbolic input dims resolved. All unsupported ops are collected
//! and reported together.

use std::collections::{BTreeMap, HashMap, HashSet};

use onnx_protobuf::{ModelProto, NodeProto, ValueInfoProto};

use super::attrs::Attrs;
use super::tensor::{self, DataDir};
use crate::ir::{
    AutoPad, Binary, Cmp, DType, Equation, Graph, Logic, Op, PadMode, ReduceKind, Tensor, Unary,
    ValueId, WindowAttrs,
};
use crate::{Error, UnsupportedOp};

/// What the caller knows that the model does not say.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Concrete shapes for inputs with symbolic or unknown dims, by input name.
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// Graph inputs bound to a value at compile time (`--freeze`): each becomes a
    /// constant and is no longer an input of the compiled model. For inputs that decide
    /// shapes (`axes`, `shape`, `pads`, `repeats`...), which an ahead-of-time compiler
    /// must know, and for inputs a deployment fixes (a constant attention mask).
    pub frozen_inputs: BTreeMap<String, Tensor>,
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
                // A negative size is no size: unresolved, named by its value so the error
                // shows it (`x[-1]`); some exporters write -1 for "any".
                Some(Value::DimValue(v)) => Dim::Symbolic(v.to_string()),
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

/// The newest default-domain opset whose semantics the importer knows: onnx 1.23's, which
/// `tests/conformance` runs. A model importing a newer one (or a version below 1) is
/// refused: an op's meaning may have changed, and a compiler must not guess it.
pub const MAX_OPSET: i64 = 28;

/// ONNX values are assigned once. A name defined twice (by two nodes, by a node and a graph
/// input or initializer, or listed twice as an input or initializer) is refused when
/// anything reads it (a node or the graph's outputs), since which definition is meant is
/// unknowable. A duplicate nothing reads, such as a dangling extra output two nodes both
/// name, changes no result and is accepted (the importer never looks it up).
fn check_single_assignment(
    g: &onnx_protobuf::GraphProto,
    nodes: &[NodeProto],
) -> Result<(), Error> {
    let mut defs: HashMap<&str, Vec<String>> = HashMap::new();
    let initializers: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    for t in &g.initializer {
        defs.entry(&t.name)
            .or_default()
            .push("an initializer".into());
    }
    for vi in &g.input {
        // An input that names an initializer is how IR < 4 models declare it.
        if !initializers.contains(vi.name.as_str()) {
            defs.entry(&vi.name)
                .or_default()
                .push("a graph input".into());
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            defs.entry(o).or_default().push(node_label(nodes, i));
        }
    }
    let readers = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.input.iter().map(move |x| (x.as_str(), Some(i))))
        .chain(g.output.iter().map(|o| (o.name.as_str(), None)));
    for (name, reader) in readers {
        if let Some(d) = defs.get(name).filter(|d| d.len() > 1) {
            let reader = match reader {
                Some(i) => node_label(nodes, i),
                None => "the graph's outputs".into(),
            };
            return Err(Error::Model(format!(
                "'{name}' is defined {} times ({}) and {reader} reads it; an ONNX value is \
                 assigned once",
                d.len(),
                d.join(", ")
            )));
        }
    }
    Ok(())
}

/// The ONNX ops the importer translates (default domain), for `inspect` and errors.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvInteger",
    "CumSum",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Einsum",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "IsInf",
    "IsNaN",
    "LayerNormalization",
    "Less",
    "LessOrEqual",
    "Log",
    "MatMul",
    "MatMulInteger",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pad",
    "Pow",
    "QuantizeLinear",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Where",
    "Xor",
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
    /// A short sequence of ops standing for one node (variadic Sum/Max/Min/Mean, IsNaN,
    /// IsInf): each step reads the node's inputs, constants or earlier steps; the last
    /// step's result is the node's output.
    Seq(Vec<(Op, Vec<Arg>)>),
}

/// An operand of a [`Lowered::Seq`] step.
enum Arg {
    /// A value by name (one of the node's inputs).
    In(String),
    /// The result of an earlier step.
    Step(usize),
    Const(Tensor),
}

/// Imports a decoded model.
pub fn import(model: &ModelProto, dir: DataDir<'_>, opts: &ImportOptions) -> Result<Graph, Error> {
    let Some(g) = model.graph.as_ref() else {
        return Err(Error::Model("the file has no graph".into()));
    };
    // A model of other domains only (ai.onnx.ml, training) needs no default opset; its
    // nodes are then reported as unsupported.
    let nodes = super::functions::inline(model, &g.node)?;
    let default_domain = |d: &str| d.is_empty() || d == "ai.onnx";
    let opset = match opset_of(model, "") {
        Some(v) => v,
        None if nodes.iter().all(|n| !default_domain(&n.domain)) => 0,
        None => {
            return Err(Error::Model(
                "the model imports no version of the default ONNX opset".into(),
            ));
        }
    };
    let versions: Vec<i64> = model
        .opset_import
        .iter()
        .filter(|o| default_domain(&o.domain))
        .map(|o| o.version)
        .collect();
    if versions.iter().any(|&v| v != opset) {
        return Err(Error::Model(format!(
            "the model imports the default ONNX opset more than once, as versions {versions:?}"
        )));
    }
    if !versions.is_empty() && !(1..=MAX_OPSET).contains(&opset) {
        return Err(Error::Model(format!(
            "the model imports opset {opset} of the default ONNX domain; edgecc knows opsets \
             1 to {MAX_OPSET} (onnx 1.23). Convert it (onnx.version_converter) or export it \
             with an opset up to {MAX_OPSET}"
        )));
    }
    check_single_assignment(g, &nodes)?;
    let mut graph = Graph::new(if g.name.is_empty() {
        "model".to_string()
    } else {
        g.name.clone()
    });
    let mut scope: HashMap<String, ValueId> = HashMap::new();

    for t in &g.initializer {
        let tensor = tensor::decode(t, dir)?;
        // Folding may create constants in proportion to the model's own.
        let bytes = crate::ir::checked_bytes(tensor.dtype, &tensor.shape).unwrap_or(0);
        graph.allow_folding(bytes.saturating_mul(4));
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
        if let Some(t) = opts.frozen_inputs.get(&vi.name) {
            let fits = t.dtype == dtype
                && t.shape.len() == dims.len()
                && t.shape.iter().zip(&dims).all(|(g, d)| match d {
                    Dim::Fixed(f) => f == g,
                    Dim::Symbolic(_) => true,
                });
            if !fits {
                return Err(Error::Input(format!(
                    "--freeze {}: {}{:?} does not fit the declared {dtype}{}",
                    vi.name,
                    t.dtype,
                    t.shape,
                    dims_text(&dims)
                )));
            }
            let id = graph.add_const(vi.name.clone(), t.clone());
            scope.insert(vi.name.clone(), id);
            continue;
        }
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
        if let Some(msg) = crate::ir::value_size_error(dtype, &shape) {
            return Err(Error::Model(format!("input '{}': {msg}", vi.name)));
        }
        // A zero dim hides the others from the byte count.
        if crate::ir::checked_elements(&shape).is_none() {
            return Err(Error::Model(format!(
                "input '{}' is {dtype}{shape:?}: more than 2^{} elements",
                vi.name,
                crate::ir::MAX_ELEMENTS.trailing_zeros()
            )));
        }
        let id = graph.add_input(vi.name.clone(), dtype, shape);
        graph.inputs.push(id);
        scope.insert(vi.name.clone(), id);
    }
    for (flag, names) in [
        (
            "--input-shape",
            opts.input_shapes.keys().collect::<Vec<_>>(),
        ),
        ("--freeze", opts.frozen_inputs.keys().collect()),
    ] {
        for name in names {
            if !g.input.iter().any(|vi| &vi.name == name) {
                return Err(Error::Input(format!(
                    "{flag} names '{name}', which is not an input of the model"
                )));
            }
        }
    }
    if !unresolved.is_empty() {
        return Err(Error::UnresolvedDims(unresolved));
    }

    // One pass in topological order: translate, then build. A node whose inputs are all
    // constants (and every Shape, since shapes are static) is evaluated right away, so the
    // shape arithmetic exporters emit (Shape → Gather → Unsqueeze → Concat → Reshape) is
    // constant by the time the Reshape reads it. Unsupported nodes are collected, not
    // fatal, so they are all reported together; what depends only on them is skipped.
    let order = topo_sort(&nodes, &scope)?;
    let mut unsupported = Vec::new();
    let mut poisoned: HashSet<String> = HashSet::new();
    for (i, &ni) in order.iter().enumerate() {
        let original = &nodes[ni];
        let original_name = if original.name.is_empty() {
            format!("{}_{i}", original.op_type)
        } else {
            original.name.clone()
        };
        // QOperator ops become DequantizeLinear → float op → QuantizeLinear (qoperator.rs),
        // imported one by one below like any other node.
        let type_of = |n: &str| {
            scope
                .get(n)
                .map(|&v| (graph.value(v).dtype, graph.value(v).shape.len()))
        };
        let expanded = match super::qoperator::expand(original, &original_name, opset, &type_of) {
            None => None,
            Some(Ok(nodes)) => Some(nodes),
            Some(Err(reason)) => {
                if !original.input.iter().any(|x| poisoned.contains(x)) {
                    unsupported.push(UnsupportedOp {
                        node: original_name,
                        op_type: original.op_type.clone(),
                        domain: original.domain.clone(),
                        opset: opset_of(model, &original.domain).unwrap_or(0),
                        reason: Some(reason),
                    });
                }
                poisoned.extend(original.output.iter().cloned());
                continue;
            }
        };
        for node in expanded
            .as_deref()
            .unwrap_or(std::slice::from_ref(original))
        {
            let name = if node.name.is_empty() {
                original_name.clone()
            } else {
                node.name.clone()
            };
            let tainted = node.input.iter().any(|x| poisoned.contains(x));
            let konst =
                |n: &str| -> Option<Tensor> { scope.get(n).and_then(|&v| graph.konst(v).cloned()) };
            let shape = |n: &str| -> Option<Vec<usize>> {
                scope.get(n).map(|&v| graph.value(v).shape.clone())
            };
            let dtype = |n: &str| -> Option<DType> { scope.get(n).map(|&v| graph.value(v).dtype) };
            let room = graph.fold_room();
            let lowered = match translate(node, opset, &konst, &shape, &dtype, room) {
                Ok(l) if !tainted => l,
                result => {
                    // An op that failed only for want of a constant its unsupported producer
                    // would have made is a consequence, not a second problem.
                    if let Err(reason) = result
                        && (!tainted || reason.is_none())
                    {
                        let domain_opset = opset_of(model, &node.domain);
                        let reason = reason.or_else(|| {
                            domain_opset.is_none().then(|| {
                                format!(
                                    "domain '{}' is not among the model's opset imports",
                                    node.domain
                                )
                            })
                        });
                        unsupported.push(UnsupportedOp {
                            node: name,
                            op_type: node.op_type.clone(),
                            domain: node.domain.clone(),
                            opset: domain_opset.unwrap_or(0),
                            reason,
                        });
                    }
                    poisoned.extend(node.output.iter().cloned());
                    continue;
                }
            };
            match lowered {
                Lowered::Const(t) => {
                    // A Range is computed, not read from the file: it was sized within
                    // the folding budget (`fold_room`), which it now spends.
                    if node.op_type == "Range" {
                        let bytes = crate::ir::checked_bytes(t.dtype, &t.shape).unwrap_or(0);
                        graph.may_fold(bytes);
                    }
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
                Lowered::Seq(steps) => {
                    // Every step but the last is an intermediate of its own.
                    let n = steps.len();
                    let mut results: Vec<ValueId> = Vec::with_capacity(n);
                    for (k, (op, args)) in steps.into_iter().enumerate() {
                        let mut ins = Vec::with_capacity(args.len());
                        for (j, arg) in args.into_iter().enumerate() {
                            ins.push(match arg {
                                Arg::In(i) => lookup(&scope, &i, &name)?,
                                Arg::Step(s) => *results.get(s).ok_or_else(|| {
                                    Error::Internal(format!("{name}: step {k} reads step {s}"))
                                })?,
                                Arg::Const(t) => graph.add_const(format!("{name}/{k}.{j}"), t),
                            });
                        }
                        if k + 1 == n {
                            build(&mut graph, &mut scope, node, name.clone(), op, ins)?;
                        } else {
                            results.push(graph.add_node(format!("{name}/{k}"), op, ins)?.1[0]);
                        }
                    }
                }
                Lowered::TransposeReversed(input) => {
                    let v = lookup(&scope, &input, &name)?;
                    let perm = (0..graph.value(v).shape.len()).rev().collect();
                    build(
                        &mut graph,
                        &mut scope,
                        node,
                        name,
                        Op::Transpose { perm },
                        vec![v],
                    )?;
                }
                Lowered::Op(op, inputs) => {
                    let ins = inputs
                        .iter()
                        .map(|i| lookup(&scope, i, &name))
                        .collect::<Result<Vec<_>, _>>()?;
                    match build(&mut graph, &mut scope, node, name, op, ins) {
                        // A valid node with a dtype or variant edgecc lacks: one more entry in
                        // the list, not the end of the import.
                        Err(Error::Unsupported(ops)) => {
                            let opset = opset_of(model, &node.domain).unwrap_or(0);
                            unsupported.extend(ops.into_iter().map(|o| UnsupportedOp {
                                op_type: node.op_type.clone(),
                                domain: node.domain.clone(),
                                opset,
                                ..o
                            }));
                            poisoned.extend(node.output.iter().cloned());
                        }
                        other => other?,
                    }
                }
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::Unsupported(unsupported));
    }
    for vi in &g.output {
        let v = scope.get(&vi.name).copied().ok_or_else(|| {
            Error::Model(format!(
                "graph output '{}' is not an input, initializer or node output",
                vi.name
            ))
        })?;
        graph.outputs.push(v);
        graph.output_names.push(vi.name.clone());
    }
    if graph.outputs.is_empty() {
        return Err(Error::Model("the graph has no outputs".into()));
    }
    Ok(graph)
}

/// Results larger than this stay nodes rather than becoming constants at import: a
/// broadcast of a small constant into a huge one would bloat the artifact for no gain.
/// (Between 1 KiB and this, a graph-wide budget applies too: `Graph::may_fold`.)
const MAX_FOLDED_BYTES: usize = crate::ir::MAX_FOLDED_BYTES as usize;

/// Adds a node's op to the graph, or its value when it can be computed now, and names the
/// outputs as the model does.
fn build(
    graph: &mut Graph,
    scope: &mut HashMap<String, ValueId>,
    node: &NodeProto,
    name: String,
    op: Op,
    ins: Vec<ValueId>,
) -> Result<(), Error> {
    let fold = !ins.is_empty()
        && ins.iter().all(|&v| graph.konst(v).is_some())
        && !crate::passes::keeps_quantized(&op);
    let outs = if let Op::Shape { start, end } = op {
        let [x] = ins[..] else {
            return Err(Error::Model(format!(
                "node '{name}': Shape takes one input, not {}",
                ins.len()
            )));
        };
        let shape = &graph.value(x).shape;
        let t = crate::interp::tensor_ops::shape_of(shape, start, end);
        vec![graph.add_const(name.clone(), t)]
    } else if fold && {
        let types = ins
            .iter()
            .map(|&v| (graph.value(v).dtype, graph.value(v).shape.as_slice()));
        let types: Vec<_> = types.collect();
        let bytes = crate::ir::infer::infer(&op, &types).ok().and_then(|outs| {
            outs.iter()
                .map(|(d, s)| crate::ir::checked_bytes(*d, s))
                .try_fold(0u64, |a, b| a.checked_add(b?))
        });
        bytes.is_some_and(|b| graph.may_fold(b))
    } {
        // Check the types first so a bad node gets the same error either way.
        let (n, _) = graph.add_node(name.clone(), op.clone(), ins.clone())?;
        let args: Vec<&Tensor> = ins
            .iter()
            .map(|&v| graph.konst(v).expect("checked"))
            .collect();
        let values = crate::interp::eval(&op, &args).map_err(|msg| Error::Shape {
            node: name.clone(),
            op: op.name().into(),
            msg,
        })?;
        graph.remove_node(n);
        values
            .into_iter()
            .map(|t| graph.add_const(name.clone(), t))
            .collect()
    } else {
        graph.add_node(name, op, ins)?.1
    };
    for (k, &o) in outs.iter().enumerate() {
        let Some(out_name) = node.output.get(k).filter(|s| !s.is_empty()) else {
            continue;
        };
        graph.value_mut(o).name = out_name.clone();
        scope.insert(out_name.clone(), o);
    }
    Ok(())
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
/// every exporter obeys). Stable: already-sorted models keep their order. The order is
/// that of sweeping the list in index order again and again, taking every node whose
/// inputs are defined, but computed in O(n log n) with a count of missing inputs per node
/// (a model listed backwards must not take quadratic time).
fn topo_sort(nodes: &[NodeProto], scope: &HashMap<String, ValueId>) -> Result<Vec<usize>, Error> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut defined: HashSet<&str> = scope.keys().map(|s| s.as_str()).collect();
    defined.insert("");
    let mut waiting_on = vec![0usize; nodes.len()];
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for x in &n.input {
            if !defined.contains(x.as_str()) {
                waiting_on[i] += 1;
                readers.entry(x.as_str()).or_default().push(i);
            }
        }
    }
    // `this`: ready nodes the current sweep still reaches; `next`: ready ones it passed.
    let mut this: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| waiting_on[i] == 0)
        .map(Reverse)
        .collect();
    let mut next = BinaryHeap::new();
    let mut done = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    loop {
        while let Some(Reverse(i)) = this.pop() {
            done[i] = true;
            order.push(i);
            for o in &nodes[i].output {
                if !defined.insert(o.as_str()) {
                    continue;
                }
                for &r in readers
                    .get(o.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    waiting_on[r] -= 1;
                    if waiting_on[r] == 0 {
                        (if r > i { &mut this } else { &mut next }).push(Reverse(r));
                    }
                }
            }
        }
        if next.is_empty() {
            break;
        }
        this = std::mem::take(&mut next);
    }
    if order.len() == nodes.len() {
        Ok(order)
    } else {
        Err(stuck_error(nodes, &done, &defined))
    }
}

/// A node, as errors name it: its name, or its position and op when it has none.
fn node_label(nodes: &[NodeProto], i: usize) -> String {
    let n = &nodes[i];
    if n.name.is_empty() {
        format!("node #{i} ({})", n.op_type)
    } else {
        format!("node '{}' ({})", n.name, n.op_type)
    }
}

/// Why the nodes not `done` cannot be ordered: one reads a value nothing defines, or, when
/// every value they miss is some waiting node's output, they form a cycle, which is named.
fn stuck_error(nodes: &[NodeProto], done: &[bool], defined: &HashSet<&str>) -> Error {
    let missing = |i: usize| {
        nodes[i]
            .input
            .iter()
            .filter(|x| !defined.contains(x.as_str()))
            .map(|x| x.as_str())
            .collect::<Vec<&str>>()
    };
    let waiting: Vec<usize> = (0..nodes.len()).filter(|&i| !done[i]).collect();
    let producer: HashMap<&str, usize> = waiting
        .iter()
        .flat_map(|&i| nodes[i].output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    for &i in &waiting {
        if let Some(name) = missing(i).into_iter().find(|x| !producer.contains_key(x)) {
            return Error::Model(format!(
                "{} reads '{name}', which nothing defines",
                node_label(nodes, i)
            ));
        }
    }
    // Every missing value has a waiting producer: follow them until a node repeats.
    let mut path: Vec<(usize, &str)> = Vec::new();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut at = waiting[0];
    loop {
        if let Some(&k) = seen.get(&at) {
            let cycle: Vec<String> = path[k..]
                .iter()
                .map(|&(n, v)| format!("{} reads '{v}'", node_label(nodes, n)))
                .collect();
            return Error::Model(format!("the graph has a cycle: {}", cycle.join(", ")));
        }
        let v = missing(at)[0];
        seen.insert(at, path.len());
        path.push((at, v));
        at = producer[v];
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
    konst_shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    dtype_of: &dyn Fn(&str) -> Option<DType>,
    fold_room: u64,
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
        "Max" | "Min" | "Sum" | "Mean" => {
            let op = match node.op_type.as_str() {
                "Max" => Binary::Max,
                "Min" => Binary::Min,
                _ => Binary::Add,
            };
            match ins.len() {
                0 => return Err(some("no inputs".into())),
                1 => return Ok(Lowered::Alias(ins[0].clone())),
                2 if node.op_type != "Mean" => Op::Binary(op),
                n => {
                    // Folded left; Mean divides the sum by the count.
                    let mut steps = vec![(
                        Op::Binary(op),
                        vec![Arg::In(ins[0].clone()), Arg::In(ins[1].clone())],
                    )];
                    for i in &ins[2..] {
                        let prev = Arg::Step(steps.len() - 1);
                        steps.push((Op::Binary(op), vec![prev, Arg::In(i.clone())]));
                    }
                    if node.op_type == "Mean" {
                        let count = Arg::Const(Tensor::f32(vec![], vec![n as f32]));
                        let prev = Arg::Step(steps.len() - 1);
                        steps.push((Op::Binary(Binary::Div), vec![prev, count]));
                    }
                    return Ok(Lowered::Seq(steps));
                }
            }
        }
        // Float tests as comparisons the targets compile: NaN is the value not equal to
        // itself; ±inf compare equal to the infinities.
        "IsNaN" => {
            let x = ins
                .first()
                .ok_or_else(|| some("IsNaN needs an input".into()))?;
            return Ok(Lowered::Seq(vec![
                (
                    Op::Compare(Cmp::Equal),
                    vec![Arg::In(x.clone()), Arg::In(x.clone())],
                ),
                (Op::Not, vec![Arg::Step(0)]),
            ]));
        }
        "IsInf" => {
            let x = ins
                .first()
                .ok_or_else(|| some("IsInf needs an input".into()))?;
            let pos = a.int("detect_positive").map_err(some)?.unwrap_or(1) != 0;
            let neg = a.int("detect_negative").map_err(some)?.unwrap_or(1) != 0;
            let dtype = dtype_of(x).unwrap_or(DType::F32);
            let inf = |v: f64| -> Result<Arg, Option<String>> {
                crate::interp::tensor_ops::cast(&Tensor::f32(vec![], vec![v as f32]), dtype)
                    .map(|mut t| Arg::Const(t.remove(0)))
                    .map_err(|e| some(format!("IsInf of {dtype}: {e}")))
            };
            let is = |v: f64| -> Result<(Op, Vec<Arg>), Option<String>> {
                Ok((Op::Compare(Cmp::Equal), vec![Arg::In(x.clone()), inf(v)?]))
            };
            return Ok(Lowered::Seq(match (pos, neg) {
                (true, true) => vec![
                    is(f64::INFINITY)?,
                    is(f64::NEG_INFINITY)?,
                    (Op::Logic(Logic::Or), vec![Arg::Step(0), Arg::Step(1)]),
                ],
                (true, false) => vec![is(f64::INFINITY)?],
                (false, true) => vec![is(f64::NEG_INFINITY)?],
                // Nothing is detected: x < x is false for every x, NaN included.
                (false, false) => vec![(
                    Op::Compare(Cmp::Less),
                    vec![Arg::In(x.clone()), Arg::In(x.clone())],
                )],
            }));
        }
        "Size" => {
            let n: usize = ins
                .first()
                .and_then(|x| konst_shape(x))
                .ok_or_else(|| some("Size needs an input".into()))?
                .iter()
                .product();
            return Ok(Lowered::Const(Tensor::i64(vec![], vec![n as i64])));
        }
        "CastLike" => {
            let to = ins
                .get(1)
                .and_then(|n| dtype_of(n))
                .ok_or_else(|| some("CastLike needs two inputs".into()))?;
            if !crate::ir::infer::castable(to) {
                return Err(some(format!("Cast to {to}")));
            }
            return Ok(Lowered::Op(Op::Cast { to }, ins[..1].to_vec()));
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
                    // Optional: the weight's spatial dims (shapes are static, so known even
                    // when the weight is computed, e.g. by a DequantizeLinear).
                    let w = ins.get(1).and_then(|n| konst_shape(n)).ok_or_else(|| {
                        some("kernel_shape missing and the weight's shape unknown".into())
                    })?;
                    w.get(2..).unwrap_or(&[]).to_vec()
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
        "Einsum" => {
            let eq = a
                .string("equation")
                .map_err(some)?
                .ok_or_else(|| some("'equation' is required".into()))?;
            Op::Einsum(Equation::parse(&eq).map_err(some)?)
        }
        "Erf" => Op::Unary(Unary::Erf),
        "Log" => Op::Unary(Unary::Log),
        "Pow" => Op::Binary(Binary::Pow),
        "HardSigmoid" => Op::HardSigmoid {
            alpha: a.float("alpha").map_err(some)?.unwrap_or(0.2),
            beta: a.float("beta").map_err(some)?.unwrap_or(0.5),
        },
        "HardSwish" => Op::HardSwish,
        "Gelu" => Op::Gelu {
            tanh: match a.string("approximate").map_err(some)?.as_deref() {
                None | Some("none") => false,
                Some("tanh") => true,
                Some(other) => return Err(some(format!("approximate '{other}'"))),
            },
        },
        "LayerNormalization" => {
            need_outputs(3)?;
            // Mean and InvStdDev are computed and given in stash_type (1 = f32).
            let stash = a.int("stash_type").map_err(some)?.unwrap_or(1);
            if stash != 1 {
                return Err(some(format!(
                    "stash_type {stash} (only 1, f32, is supported)"
                )));
            }
            Op::LayerNorm {
                axis: a.int("axis").map_err(some)?.unwrap_or(-1),
                epsilon: a.float("epsilon").map_err(some)?.unwrap_or(1e-5),
                stats: node.output.iter().skip(1).any(|o| !o.is_empty()),
            }
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" => {
            let kind = match node.op_type.as_str() {
                "ReduceMean" => ReduceKind::Mean,
                "ReduceSum" => ReduceKind::Sum,
                "ReduceMax" => ReduceKind::Max,
                "ReduceMin" => ReduceKind::Min,
                _ => ReduceKind::Prod,
            };
            let axes_as_input = opset >= if kind == ReduceKind::Sum { 13 } else { 18 };
            let axes = if axes_as_input {
                match ins.get(1).filter(|s| !s.is_empty()) {
                    None => None,
                    Some(n) => Some(const_ints(konst, n)?),
                }
            } else {
                a.ints("axes").map_err(some)?
            };
            let keepdims = a.int("keepdims").map_err(some)?.unwrap_or(1) != 0;
            let noop = a.int("noop_with_empty_axes").map_err(some)?.unwrap_or(0) != 0;
            if noop && axes.as_ref().is_none_or(|v| v.is_empty()) {
                return Ok(Lowered::Alias(ins.first().cloned().unwrap_or_default()));
            }
            return Ok(Lowered::Op(
                Op::Reduce {
                    kind,
                    axes,
                    keepdims,
                },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => {
            Op::Compare(match node.op_type.as_str() {
                "Equal" => Cmp::Equal,
                "Less" => Cmp::Less,
                "LessOrEqual" => Cmp::LessOrEqual,
                "Greater" => Cmp::Greater,
                _ => Cmp::GreaterOrEqual,
            })
        }
        "And" | "Or" | "Xor" => Op::Logic(match node.op_type.as_str() {
            "And" => Logic::And,
            "Or" => Logic::Or,
            _ => Logic::Xor,
        }),
        "Not" => Op::Not,
        "Where" => Op::Where,
        "Cast" => {
            let to = a
                .int("to")
                .map_err(some)?
                .ok_or_else(|| some("'to' is required".into()))?;
            let to =
                DType::from_onnx(to as i32).ok_or_else(|| some(format!("unknown dtype {to}")))?;
            if !crate::ir::infer::castable(to) {
                return Err(some(format!("Cast to {to}")));
            }
            Op::Cast { to }
        }
        "QuantizeLinear" | "DequantizeLinear" => {
            if a.int("block_size").map_err(some)?.unwrap_or(0) != 0 {
                return Err(some("blocked quantization (block_size != 0)".into()));
            }
            let axis = a.int("axis").map_err(some)?.unwrap_or(1);
            if node.op_type == "DequantizeLinear" {
                Op::DequantizeLinear { axis }
            } else {
                // The zero point's dtype names the output; without one, opset 21's
                // `output_dtype`, else uint8 (the spec's default).
                let declared = match a.int("output_dtype").map_err(some)?.unwrap_or(0) {
                    0 => None,
                    t => Some(DType::from_onnx(t as i32).filter(|d| matches!(d, DType::U8 | DType::I8)).ok_or_else(|| {
                        some(format!(
                            "QuantizeLinear to ONNX dtype {t} (only uint8 and int8 are supported)"
                        ))
                    })?),
                };
                let to = match ins.get(2).and_then(|z| dtype_of(z)) {
                    Some(z) if declared.is_some_and(|d| d != z) => {
                        return Err(some(format!(
                            "output_dtype {} differs from the zero point's {z}",
                            declared.unwrap_or(z)
                        )));
                    }
                    Some(z) => z,
                    None => declared.unwrap_or(DType::U8),
                };
                if !matches!(to, DType::U8 | DType::I8) {
                    return Err(some(format!(
                        "QuantizeLinear to {to} (only uint8 and int8 are supported)"
                    )));
                }
                Op::QuantizeLinear { axis, to }
            }
        }
        "DynamicQuantizeLinear" => Op::DynamicQuantizeLinear,
        "MatMulInteger" => return integer_op(Op::MatMulInteger, node, dtype_of),
        "ConvInteger" => {
            let kernel = match a.usizes("kernel_shape").map_err(some)? {
                Some(k) => k,
                None => konst_shape(ins.get(1).map(String::as_str).unwrap_or_default())
                    .map(|s| s.get(2..).unwrap_or(&[]).to_vec())
                    .ok_or_else(|| some("kernel_shape missing and w's shape unknown".into()))?,
            };
            let group = a.int("group").map_err(some)?.unwrap_or(1);
            if group < 1 {
                return Err(some(format!("group {group}")));
            }
            let op = Op::ConvInteger {
                window: window(&a, kernel, opset, 1).map_err(some)?,
                group: group as usize,
            };
            return integer_op(op, node, dtype_of);
        }
        "Shape" => Op::Shape {
            start: a.int("start").map_err(some)?.unwrap_or(0),
            end: a.int("end").map_err(some)?,
        },
        "Gather" => Op::Gather {
            axis: a.int("axis").map_err(some)?.unwrap_or(0),
        },
        "GatherElements" => Op::GatherElements {
            axis: a.int("axis").map_err(some)?.unwrap_or(0),
        },
        "GatherND" => {
            let b = a.int("batch_dims").map_err(some)?.unwrap_or(0);
            Op::GatherND {
                batch_dims: usize::try_from(b)
                    .map_err(|_| some(format!("batch_dims {b} is negative")))?,
            }
        }
        "Slice" => {
            let (starts, ends, axes, steps) = if opset < 10 {
                let starts = a.ints("starts").map_err(some)?.unwrap_or_default();
                let ends = a.ints("ends").map_err(some)?.unwrap_or_default();
                let axes = a.ints("axes").map_err(some)?;
                (starts, ends, axes, None)
            } else {
                let get = |i: usize| -> Result<Option<Vec<i64>>, Option<String>> {
                    match ins.get(i).filter(|s| !s.is_empty()) {
                        None => Ok(None),
                        Some(n) => const_ints(konst, n).map(Some),
                    }
                };
                let starts = get(1)?.ok_or_else(|| some("starts are required".into()))?;
                let ends = get(2)?.ok_or_else(|| some("ends are required".into()))?;
                (starts, ends, get(3)?, get(4)?)
            };
            let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
            return Ok(Lowered::Op(
                Op::Slice {
                    starts,
                    ends,
                    axes,
                    steps,
                },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "Unsqueeze" | "Squeeze" => {
            let axes = if opset >= 13 {
                match ins.get(1).filter(|s| !s.is_empty()) {
                    None => None,
                    Some(n) => Some(const_ints(konst, n)?),
                }
            } else {
                a.ints("axes").map_err(some)?
            };
            let op = if node.op_type == "Unsqueeze" {
                Op::Unsqueeze {
                    axes: axes.ok_or_else(|| some("axes are required".into()))?,
                }
            } else {
                Op::Squeeze { axes }
            };
            return Ok(Lowered::Op(op, ins.iter().take(1).cloned().collect()));
        }
        "Expand" => {
            let n = ins.get(1).ok_or_else(|| some("no shape input".into()))?;
            let shape = const_ints(konst, n)?;
            return Ok(Lowered::Op(
                Op::Expand { shape },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "ConstantOfShape" => {
            let n = ins.first().ok_or_else(|| some("no shape input".into()))?;
            let shape = const_ints(konst, n)?;
            let value = match a.get("value") {
                Some(t) => {
                    tensor::decode(&t.t, DataDir { base: None }).map_err(|e| some(e.to_string()))?
                }
                None => Tensor::f32(vec![1], vec![0.0]),
            };
            if value.len() != 1 {
                return Err(some(format!("value has {} elements, not 1", value.len())));
            }
            let dims = shape
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<usize>, _>>()
                .map_err(|_| some(format!("shape {shape:?} has a negative dimension")))?;
            // Small results become constants here; a larger one is a broadcast of the value,
            // sized like any node's output (and refused past 4 GiB), which `build` folds
            // within the folding budget (`Graph::may_fold`) and otherwise keeps a node.
            let small = crate::ir::checked_bytes(value.dtype, &dims)
                .is_some_and(|b| b <= crate::ir::FOLD_ALWAYS_BYTES);
            if !small {
                let one = Tensor {
                    shape: vec![1; dims.len()],
                    ..value
                };
                return Ok(Lowered::Seq(vec![(
                    Op::Expand { shape },
                    vec![Arg::Const(one)],
                )]));
            }
            let src = vec![0usize; dims.iter().product()];
            let t = crate::interp::tensor_ops::take(&value, dims, &src, None).map_err(some)?;
            return Ok(Lowered::Const(t));
        }
        "Range" => {
            let scalar = |i: usize| -> Result<Tensor, Option<String>> {
                let n = ins
                    .get(i)
                    .ok_or_else(|| some("start, limit and delta are required".into()))?;
                konst(n)
                    .filter(|t| t.len() == 1)
                    .ok_or_else(|| some(format!("'{n}' is not a constant scalar")))
            };
            let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
            return range(&start, &limit, &delta, fold_room)
                .map(Lowered::Const)
                .map_err(some);
        }
        "Split" => {
            let axis = a.int("axis").map_err(some)?.unwrap_or(0);
            let given = if opset >= 13 {
                match ins.get(1).filter(|s| !s.is_empty()) {
                    None => None,
                    Some(n) => Some(const_ints(konst, n)?),
                }
            } else {
                a.ints("split").map_err(some)?
            };
            let outputs = a
                .int("num_outputs")
                .map_err(some)?
                .map(|n| n as usize)
                .unwrap_or(node.output.len());
            let sizes = match given {
                Some(v) => v.iter().map(|&x| x.max(0) as usize).collect(),
                // Equal parts, the last one smaller if it does not divide: resolved against
                // the input's dim when the node is built.
                None => {
                    let dim = ins
                        .first()
                        .and_then(|n| konst_shape(n))
                        .ok_or_else(|| some("cannot size the split".into()))?;
                    let ax = crate::ir::infer::dim_axis(axis, dim.len()).map_err(some)?;
                    let per = dim[ax].div_ceil(outputs.max(1));
                    (0..outputs)
                        .map(|i| per.min(dim[ax].saturating_sub(i * per)))
                        .collect()
                }
            };
            return Ok(Lowered::Op(
                Op::Split { axis, sizes },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "Tile" => {
            let n = ins.get(1).ok_or_else(|| some("no repeats input".into()))?;
            let repeats = const_ints(konst, n)?
                .iter()
                .map(|&r| r.max(0) as usize)
                .collect();
            return Ok(Lowered::Op(
                Op::Tile { repeats },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "Pad" => {
            let mode = match a.string("mode").map_err(some)?.as_deref() {
                None | Some("constant") => PadMode::Constant,
                Some("reflect") => PadMode::Reflect,
                Some("edge") => PadMode::Edge,
                Some("wrap") => PadMode::Wrap,
                Some(other) => return Err(some(format!("mode '{other}'"))),
            };
            let (pads, value, axes) = if opset < 11 {
                let pads = a
                    .ints("pads")
                    .map_err(some)?
                    .ok_or_else(|| some("pads are required".into()))?;
                (
                    pads,
                    a.float("value").map_err(some)?.unwrap_or(0.0) as f64,
                    None,
                )
            } else {
                let pads = const_ints(
                    konst,
                    ins.get(1).ok_or_else(|| some("no pads input".into()))?,
                )?;
                let value = match ins.get(2).filter(|s| !s.is_empty()) {
                    None => 0.0,
                    Some(n) => konst(n)
                        .and_then(|t| t.to_f64s())
                        .and_then(|v| v.first().copied())
                        .ok_or_else(|| some(format!("constant_value '{n}' is not a constant")))?,
                };
                let axes = match ins.get(3).filter(|s| !s.is_empty()) {
                    None => None,
                    Some(n) => Some(const_ints(konst, n)?),
                };
                (pads, value, axes)
            };
            let pads = match axes {
                None => pads,
                // Pads for a subset of axes: spread them over the full rank.
                Some(axes) => {
                    let rank = ins
                        .first()
                        .and_then(|n| konst_shape(n))
                        .map(|s| s.len())
                        .ok_or_else(|| some("cannot resolve axes".into()))?;
                    if pads.len() != 2 * axes.len() {
                        return Err(some(format!(
                            "{} pads for {} axes, not two per axis",
                            pads.len(),
                            axes.len()
                        )));
                    }
                    let mut full = vec![0i64; 2 * rank];
                    for (i, &ax) in axes.iter().enumerate() {
                        let d = crate::ir::infer::dim_axis(ax, rank).map_err(some)?;
                        full[d] = pads[i];
                        full[d + rank] = pads[i + axes.len()];
                    }
                    full
                }
            };
            return Ok(Lowered::Op(
                Op::Pad { pads, mode, value },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "CumSum" => {
            let n = ins.get(1).ok_or_else(|| some("no axis input".into()))?;
            let axis = match const_ints(konst, n)?.as_slice() {
                [a] => *a,
                other => return Err(some(format!("axis {other:?} is not one value"))),
            };
            let flag = |name: &str| -> Result<bool, Option<String>> {
                match a.int(name).map_err(some)?.unwrap_or(0) {
                    0 => Ok(false),
                    1 => Ok(true),
                    v => Err(some(format!("{name}={v} is not 0 or 1"))),
                }
            };
            return Ok(Lowered::Op(
                Op::CumSum {
                    axis,
                    exclusive: flag("exclusive")?,
                    reverse: flag("reverse")?,
                },
                ins.iter().take(1).cloned().collect(),
            ));
        }
        "Identity" => return Ok(Lowered::Alias(ins.first().cloned().unwrap_or_default())),
        "Dropout" => {
            need_outputs(1)?;
            // With ratio 0 nothing is dropped, in training mode or not.
            let zero_ratio = ins
                .get(1)
                .filter(|s| !s.is_empty())
                .and_then(|n| konst(n))
                .and_then(|t| t.to_f64s())
                .is_some_and(|v| v.first() == Some(&0.0));
            let training = !zero_ratio
                && match ins.get(2).filter(|s| !s.is_empty()) {
                    None => false,
                    Some(n) => konst(n)
                        .and_then(|t| t.to_f64s())
                        .map(|v| v.first().is_some_and(|&x| x != 0.0))
                        .ok_or_else(|| some(format!("training_mode '{n}' is not a constant")))?,
                };
            if training {
                return Err(some(
                    "training_mode=true (a random mask) is not supported".into(),
                ));
            }
            return Ok(Lowered::Alias(ins.first().cloned().unwrap_or_default()));
        }
        "Constant" => return constant(node, &a).map(Lowered::Const).map_err(some),
        _ => return Err(None),
    };
    Ok(Lowered::Op(op, ins))
}

/// MatMulInteger or ConvInteger with its optional zero points: an absent zero point
/// before a present one (`MatMulInteger(a, b, "", b_zp)`) becomes a constant 0 of its
/// operand's dtype, since IR inputs are positional.
fn integer_op(
    op: Op,
    node: &NodeProto,
    dtype_of: &dyn Fn(&str) -> Option<DType>,
) -> Result<Lowered, Option<String>> {
    let ins = inputs(node);
    if ins.len() < 2 || ins.len() > 4 || ins[..2].iter().any(String::is_empty) {
        return Err(Some(format!(
            "expects 2 to 4 inputs with the first two present, got {:?}",
            node.input
        )));
    }
    if ins.iter().all(|i| !i.is_empty()) {
        return Ok(Lowered::Op(op, ins));
    }
    let dtype = dtype_of(&ins[0]).ok_or_else(|| Some(format!("'{}' has no type", ins[0])))?;
    let zero = Tensor::from_le_bytes(dtype, vec![], &[0])
        .ok_or_else(|| Some(format!("zero point of type {dtype}")))?;
    let args = ins
        .into_iter()
        .map(|i| {
            if i.is_empty() {
                Arg::Const(zero.clone())
            } else {
                Arg::In(i)
            }
        })
        .collect();
    Ok(Lowered::Seq(vec![(op, args)]))
}

/// The integer values of a constant input, or why not.
fn const_ints(
    konst: &dyn Fn(&str) -> Option<Tensor>,
    name: &str,
) -> Result<Vec<i64>, Option<String>> {
    konst(name).and_then(|t| t.to_i64s()).ok_or_else(|| {
        Some(format!(
            "input '{name}' is not a constant (dynamic shapes are not supported)"
        ))
    })
}

/// ONNX Range on constant scalars.
fn range(start: &Tensor, limit: &Tensor, delta: &Tensor, room: u64) -> Result<Tensor, String> {
    let f = |t: &Tensor| {
        t.to_f64s()
            .and_then(|v| v.first().copied())
            .ok_or("not numeric")
    };
    let (s, l, d) = (f(start)?, f(limit)?, f(delta)?);
    if d == 0.0 {
        return Err("delta is 0".into());
    }
    let first = |t: &Tensor| t.to_i64s().and_then(|v| v.first().copied());
    let ints = match (first(start), first(limit), first(delta)) {
        (Some(s), Some(l), Some(d)) => Some((s as i128, l as i128, d as i128)),
        _ => None,
    };
    // Integer ranges count exactly (in f64, i64::MAX - 1000 and i64::MAX are one number).
    let n = match ints {
        Some((s, l, d)) => {
            let (span, step) = if d > 0 { (l - s, d) } else { (s - l, -d) };
            usize::try_from(((span + step - 1) / step).max(0)).unwrap_or(usize::MAX)
        }
        None => ((l - s) / d).ceil().max(0.0) as usize,
    };
    // Evaluated at import, so bounded like any folded constant: a few scalars in the file
    // must not make edgecc allocate gigabytes (`Graph::fold_room`).
    let most = MAX_FOLDED_BYTES / 8;
    if n > most {
        return Err(format!(
            "{n} elements, more than the {most} edgecc evaluates at compile time"
        ));
    }
    let bytes = (n * start.dtype.bits().max(8) / 8) as u64;
    if bytes > room {
        return Err(format!(
            "{bytes} bytes, past what edgecc evaluates at compile time for this model"
        ));
    }
    if let Some((s, _, d)) = ints {
        // Every value lies between start and limit, so it fits; checked all the same.
        let v: Vec<i64> = (0..n as i128)
            .map(|i| i64::try_from(s + i * d).ok())
            .collect::<Option<_>>()
            .ok_or("the values overflow int64")?;
        return crate::interp::tensor_ops::cast(&Tensor::i64(vec![n], v), start.dtype)
            .map(|mut v| v.remove(0));
    }
    let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
    let t = Tensor {
        dtype: DType::F64,
        shape: vec![n],
        data: crate::ir::Data::F64(v),
    };
    crate::interp::tensor_ops::cast(&t, start.dtype).map(|mut v| v.remove(0))
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
