//! Inlining of model-local functions (`ModelProto.functions`), which the dynamo exporter
//! uses to wrap ops such as LayerNorm or a whole attention block. Each call is replaced
//! by the function's body with the call's inputs, outputs and attributes bound, so a
//! function-wrapped op compiles like the plain op.

use std::collections::HashMap;

use onnx_protobuf::{AttributeProto, FunctionProto, ModelProto, NodeProto};

use crate::Error;

/// Calls nested deeper than this are refused (a function calling itself, directly or not).
const MAX_DEPTH: usize = 32;

/// Inlining stops with an error past `INLINED_NODES_BASE` plus `INLINED_NODES_PER_NODE`
/// nodes per node in the file (graph and function bodies): functions that each call the
/// next twice, 30 deep, are two kilobytes of file and 2^30 nodes inlined. Memory stays
/// proportional to the file.
pub const INLINED_NODES_BASE: usize = 1 << 16;
pub const INLINED_NODES_PER_NODE: usize = 16;

/// The graph's nodes with every call of a local function expanded, recursively.
pub fn inline(model: &ModelProto, nodes: &[NodeProto]) -> Result<Vec<NodeProto>, Error> {
    if model.functions.is_empty() {
        return Ok(nodes.to_vec());
    }
    let table: HashMap<(&str, &str), &FunctionProto> = model
        .functions
        .iter()
        .map(|f| ((f.domain.as_str(), f.name.as_str()), f))
        .collect();
    let mut out = Vec::with_capacity(nodes.len());
    let mut counter = 0usize;
    let in_file = nodes.len() + model.functions.iter().map(|f| f.node.len()).sum::<usize>();
    let budget = INLINED_NODES_BASE + INLINED_NODES_PER_NODE * in_file;
    for n in nodes {
        expand(&table, n, 0, &mut counter, &mut out, budget)?;
    }
    Ok(out)
}

fn expand(
    table: &HashMap<(&str, &str), &FunctionProto>,
    call: &NodeProto,
    depth: usize,
    counter: &mut usize,
    out: &mut Vec<NodeProto>,
    budget: usize,
) -> Result<(), Error> {
    let Some(f) = table.get(&(call.domain.as_str(), call.op_type.as_str())) else {
        if out.len() >= budget {
            return Err(Error::Model(format!(
                "inlining the model's local functions makes more than {budget} nodes (the \
                 calls multiply: '{}' is reached at depth {depth})",
                call.op_type
            )));
        }
        out.push(call.clone());
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        return Err(Error::Model(format!(
            "function '{}' nests more than {MAX_DEPTH} calls deep (recursive?)",
            f.name
        )));
    }
    *counter += 1;
    let prefix = format!(
        "{}/{}#{}/",
        if call.name.is_empty() {
            &call.op_type
        } else {
            &call.name
        },
        f.name,
        counter
    );
    // Formal → actual names; an omitted optional input or output maps to "".
    let mut names: HashMap<&str, String> = HashMap::new();
    for (i, formal) in f.input.iter().enumerate() {
        names.insert(formal, call.input.get(i).cloned().unwrap_or_default());
    }
    for (i, formal) in f.output.iter().enumerate() {
        names.insert(formal, call.output.get(i).cloned().unwrap_or_default());
    }
    // Attribute values: the call's, else the function's defaults.
    let mut attrs: HashMap<&str, &AttributeProto> = HashMap::new();
    for a in &f.attribute_proto {
        attrs.insert(a.name.as_str(), a);
    }
    for a in &call.attribute {
        attrs.insert(a.name.as_str(), a);
    }
    let rename = |n: &str| -> String {
        if n.is_empty() {
            return String::new();
        }
        match names.get(n) {
            Some(actual) => actual.clone(),
            None => format!("{prefix}{n}"),
        }
    };
    for body in &f.node {
        let mut node = body.clone();
        node.name = format!("{prefix}{}", body.name);
        node.input = body.input.iter().map(|n| rename(n)).collect();
        node.output = body.output.iter().map(|n| rename(n)).collect();
        // Bind attribute references; an unbound reference is dropped (the attribute's
        // default then applies, as the spec says).
        node.attribute = body
            .attribute
            .iter()
            .filter_map(|a| {
                if a.ref_attr_name.is_empty() {
                    return Some(a.clone());
                }
                attrs.get(a.ref_attr_name.as_str()).map(|v| {
                    let mut bound = (*v).clone();
                    bound.name = a.name.clone();
                    bound
                })
            })
            .collect();
        expand(table, &node, depth + 1, counter, out, budget)?;
    }
    Ok(())
}
