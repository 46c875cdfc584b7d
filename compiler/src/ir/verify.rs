//! Structural checks of a graph, run between passes in debug builds and tests.

use super::{Graph, infer};
use crate::Error;

/// Checks that every value keeps to [`super::MAX_ELEMENTS`], that every node's inputs
/// exist and are defined before use, that producer links and types agree with shape
/// inference, that the graph is acyclic, and that every output is defined. Returns the
/// first violation found.
pub fn verify(g: &Graph) -> Result<(), Error> {
    let bad = |msg: String| Err(Error::Internal(format!("verifier: {msg}")));
    let order = g.topo_order();
    if order.len() != g.node_count() {
        return bad("graph has a cycle".into());
    }
    let mut defined: std::collections::HashSet<_> = g.inputs.iter().copied().collect();
    for (id, v) in g.values() {
        if super::checked_elements(&v.shape).is_none() {
            return bad(format!(
                "{} has shape {:?}, more than 2^{} elements",
                v.name,
                v.shape,
                super::MAX_ELEMENTS.trailing_zeros()
            ));
        }
        if v.konst.is_some() {
            if v.producer.is_some() {
                return bad(format!("constant {} has a producer", v.name));
            }
            defined.insert(id);
        }
    }
    for n in order {
        let node = g.node(n);
        for &i in &node.inputs {
            if !defined.contains(&i) {
                return bad(format!(
                    "node {} reads {} before it is defined",
                    node.name,
                    g.value(i).name
                ));
            }
        }
        let types: Vec<_> = node
            .inputs
            .iter()
            .map(|&v| (g.value(v).dtype, g.value(v).shape.as_slice()))
            .collect();
        let want = infer::infer(&node.op, &types)
            .map_err(|e| Error::Internal(format!("verifier: node {}: {e}", node.name)))?;
        if want.len() != node.outputs.len() {
            return bad(format!(
                "node {} has the wrong number of outputs",
                node.name
            ));
        }
        for (&o, (dt, shape)) in node.outputs.iter().zip(want) {
            let v = g.value(o);
            if v.producer != Some(n) {
                return bad(format!(
                    "output {} of {} has another producer",
                    v.name, node.name
                ));
            }
            if v.dtype != dt || v.shape != shape {
                return bad(format!(
                    "output {} of {} is {}{:?}, inference says {dt}{shape:?}",
                    v.name, node.name, v.dtype, v.shape
                ));
            }
            defined.insert(o);
        }
    }
    for &o in &g.outputs {
        if !defined.contains(&o) {
            return bad(format!("graph output {} is never defined", g.value(o).name));
        }
    }
    Ok(())
}
