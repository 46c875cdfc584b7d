//! Constant folding: a node whose inputs are all constants is evaluated at compile time
//! by the reference interpreter and replaced by its results.
//!
//! Exact by construction: the folded values are what the interpreter would compute at run
//! time. Folding runs to a fixed point in one sweep because nodes are visited in
//! topological order.

use super::Pass;
use crate::Error;
use crate::interp;
use crate::ir::{Graph, Op};

pub struct FoldConstants;

/// A DequantizeLinear of a constant is a quantized weight: it stays 8-bit for
/// `fold-requant`, which either consumes it in an integer kernel or dequantizes it itself.
pub fn keeps_quantized(op: &Op) -> bool {
    matches!(op, Op::DequantizeLinear { .. })
}

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        let mut folded = 0;
        for n in g.topo_order() {
            let node = g.node(n).clone();
            if node.inputs.is_empty()
                || !node.inputs.iter().all(|&i| g.konst(i).is_some())
                || keeps_quantized(&node.op)
            {
                continue;
            }
            // Results past 16 MiB, or past the graph's folding budget, stay nodes
            // (`Graph::may_fold`).
            let bytes = node
                .outputs
                .iter()
                .map(|&o| g.value(o).byte_size() as u64)
                .sum::<u64>();
            if !g.may_fold(bytes) {
                continue;
            }
            let args: Vec<_> = node
                .inputs
                .iter()
                .map(|&i| g.konst(i).expect("checked"))
                .collect();
            let results = interp::eval(&node.op, &args).map_err(|msg| Error::Shape {
                node: node.name.clone(),
                op: node.op.name().into(),
                msg,
            })?;
            for (&o, t) in node.outputs.iter().zip(results) {
                let name = g.value(o).name.clone();
                let c = g.add_const(name, t);
                g.replace_uses(o, c);
            }
            g.remove_node(n);
            folded += 1;
        }
        Ok(format!("folded {folded} nodes"))
    }
}
