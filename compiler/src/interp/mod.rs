//! The reference interpreter: naive, obviously correct, the oracle for every pass and
//! every backend.
//!
//! Each op is written the way the ONNX spec reads, with index arithmetic in the open and
//! no blocking or vectorisation. Sums of products (MatMul, Gemm, Conv, pooling averages,
//! Softmax denominators) accumulate in f64 and round once, so the interpreter is at least
//! as accurate as any f32 kernel it checks.

pub mod integer;
pub mod ops;
pub mod quant;
pub mod tensor_ops;

use std::collections::HashMap;

use crate::Error;
use crate::ir::{Graph, Tensor, ValueId};

pub use ops::eval;

/// Runs the graph on `inputs` (in graph input order) and returns its outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
    let env = run_all(g, inputs)?;
    g.outputs
        .iter()
        .map(|o| {
            env.get(o)
                .cloned()
                .or_else(|| g.konst(*o).cloned())
                .ok_or_else(|| Error::Internal(format!("output {} not computed", g.value(*o).name)))
        })
        .collect()
}

/// Runs the graph and returns every value it computed, by id (for `--print-values` style
/// debugging and for tests that compare intermediates).
pub fn run_all(g: &Graph, inputs: &[Tensor]) -> Result<HashMap<ValueId, Tensor>, Error> {
    if inputs.len() != g.inputs.len() {
        return Err(Error::Input(format!(
            "model takes {} inputs, got {}",
            g.inputs.len(),
            inputs.len()
        )));
    }
    let mut env: HashMap<ValueId, Tensor> = HashMap::new();
    for (&id, t) in g.inputs.iter().zip(inputs) {
        let v = g.value(id);
        if t.dtype != v.dtype || t.shape != v.shape {
            return Err(Error::Input(format!(
                "input '{}' must be {}{:?}, got {}{:?}",
                v.name, v.dtype, v.shape, t.dtype, t.shape
            )));
        }
        env.insert(id, t.clone());
    }
    for n in g.topo_order() {
        let node = g.node(n);
        let args: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|i| {
                env.get(i).or_else(|| g.konst(*i)).ok_or_else(|| {
                    Error::Internal(format!("value {} unavailable", g.value(*i).name))
                })
            })
            .collect::<Result<_, _>>()?;
        let outs = eval(&node.op, &args).map_err(|msg| Error::Shape {
            node: node.name.clone(),
            op: node.op.name().into(),
            msg,
        })?;
        for (&o, t) in node.outputs.iter().zip(outs) {
            env.insert(o, t);
        }
    }
    Ok(env)
}
