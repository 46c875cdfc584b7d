//! Dead-code elimination: removes nodes none of whose outputs reach a graph output.

use std::collections::HashSet;

use super::Pass;
use crate::Error;
use crate::ir::Graph;

pub struct DeadCode;

impl Pass for DeadCode {
    fn name(&self) -> &'static str {
        "dead-code"
    }

    fn run(&self, g: &mut Graph) -> Result<String, Error> {
        // Walk backwards from the outputs, marking what they need.
        let mut live: HashSet<_> = g.outputs.iter().copied().collect();
        let order = g.topo_order();
        let mut keep = HashSet::new();
        for &n in order.iter().rev() {
            let node = g.node(n);
            if node.outputs.iter().any(|o| live.contains(o)) {
                keep.insert(n);
                live.extend(node.inputs.iter().copied());
            }
        }
        let mut removed = 0;
        for n in order {
            if !keep.contains(&n) {
                g.remove_node(n);
                removed += 1;
            }
        }
        Ok(format!("removed {removed} nodes"))
    }
}
