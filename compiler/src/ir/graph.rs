//! The graph IR: operator nodes on a `petgraph` stable graph, values in a side table.
//!
//! Nodes are operators; a petgraph edge `producer → consumer` carries the [`ValueId`] that
//! flows along it, so petgraph's algorithms see data dependencies directly. Stable
//! indices let passes delete and insert nodes without invalidating the others. Every value
//! has a dtype and a static shape from the moment it exists: [`Graph::add_node`] runs shape
//! inference for the node it adds, so there is no "not yet inferred" state to forget.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;

use super::{DType, Op, Tensor, infer};
use crate::Error;

/// The most bytes one value (a graph input, a node's output) may have: 4 GiB, far above
/// any edge model's tensors. A shape beyond it, or whose element count overflows 64 bits,
/// is refused where it is declared ([`crate::onnx`]) or inferred ([`Graph::add_node`]), so
/// nothing downstream multiplies dims unchecked or sizes memory from a header's claim.
pub const MAX_VALUE_BYTES: u64 = 4 << 30;

/// Bytes of a dense `dtype` tensor of `shape` (a byte per element for strings), or `None`
/// when it is 2^64 bytes or more.
pub fn checked_bytes(dtype: DType, shape: &[usize]) -> Option<u64> {
    let n = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
    let bits = if dtype == DType::String {
        8
    } else {
        dtype.bits()
    } as u128;
    u64::try_from((n as u128 * bits).div_ceil(8)).ok()
}

/// Why a value of `dtype` and `shape` is refused (see [`MAX_VALUE_BYTES`]), if it is.
pub fn value_size_error(dtype: DType, shape: &[usize]) -> Option<String> {
    match checked_bytes(dtype, shape) {
        None => Some(format!("{dtype}{shape:?} is more than 2^64 bytes")),
        Some(b) if b > MAX_VALUE_BYTES => Some(format!(
            "{dtype}{shape:?} would take {b} bytes, more than the 4 GiB edgecc allows for \
             one tensor"
        )),
        Some(_) => None,
    }
}

/// Index of a value in [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// A tensor-valued edge of the graph: a graph input, a constant, or a node output.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The data of a constant (an initializer, a `Constant` node, or a folded result).
    pub konst: Option<Tensor>,
    /// The node that computes it; `None` for graph inputs and constants.
    pub producer: Option<NodeIndex>,
}

impl Value {
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes the value occupies densely (0 for strings, which never reach the arena).
    pub fn byte_size(&self) -> usize {
        (self.num_elements() * self.dtype.bits()).div_ceil(8)
    }
}

/// An operator applied to values.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The ONNX node name, or a generated `op_N` one when the model had none.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A model's computation with static shapes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    dag: StableDiGraph<Node, ValueId>,
    values: Vec<Value>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// The model's names for its outputs, when they differ from the values' own names (an
    /// output reached through Identity is the same value as its input).
    pub output_names: Vec<String>,
    /// Constant bytes that evaluating nodes at compile time has created, and how many more
    /// than [`FOLD_BUDGET_BASE`] it may create ([`Graph::may_fold`]).
    folded_bytes: u64,
    fold_allowance: u64,
}

/// A folded result up to this size is always made (shape arithmetic, small tables): a
/// node of the file then costs at most this much memory.
pub const FOLD_ALWAYS_BYTES: u64 = 1 << 10;

/// No folded result is larger than this: a broadcast of a small constant into a huge one
/// would bloat the artifact for no gain; such nodes stay nodes.
pub const MAX_FOLDED_BYTES: u64 = 16 << 20;

/// Larger folded results together may take this much, plus what
/// [`Graph::allow_folding`] adds in proportion to the model's own constants: a hundred
/// nodes each broadcasting a number to 16 MiB must not cost gigabytes.
pub const FOLD_BUDGET_BASE: u64 = 16 << 20;

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Whether a node whose results take `bytes` may be evaluated now and replaced by
    /// constants (records them if so): always up to [`FOLD_ALWAYS_BYTES`], never past
    /// [`MAX_FOLDED_BYTES`], and in between while the budget lasts. A node not folded stays
    /// a node and is computed at run time, so this changes speed, never results.
    pub fn may_fold(&mut self, bytes: u64) -> bool {
        if bytes <= FOLD_ALWAYS_BYTES {
            return true;
        }
        let budget = FOLD_BUDGET_BASE.saturating_add(self.fold_allowance);
        if bytes > MAX_FOLDED_BYTES || self.folded_bytes.saturating_add(bytes) > budget {
            return false;
        }
        self.folded_bytes += bytes;
        true
    }

    /// The largest result [`Graph::may_fold`] would accept now.
    pub fn fold_room(&self) -> u64 {
        let budget = FOLD_BUDGET_BASE.saturating_add(self.fold_allowance);
        budget
            .saturating_sub(self.folded_bytes)
            .clamp(FOLD_ALWAYS_BYTES, MAX_FOLDED_BYTES)
    }

    /// Raises the folding budget by `bytes` (the importer adds four times the model's
    /// initializers, so models with large weights fold as before).
    pub fn allow_folding(&mut self, bytes: u64) {
        self.fold_allowance = self.fold_allowance.saturating_add(bytes);
    }

    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.0 as usize]
    }

    pub fn value_mut(&mut self, v: ValueId) -> &mut Value {
        &mut self.values[v.0 as usize]
    }

    /// Every value ever created, including ones no node uses any more.
    pub fn values(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (ValueId(i as u32), v))
    }

    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.dag[n]
    }

    /// The node, if it has not been removed (for rewrites that delete as they go).
    pub fn try_node(&self, n: NodeIndex) -> Option<&Node> {
        self.dag.node_weight(n)
    }

    pub fn node_count(&self) -> usize {
        self.dag.node_count()
    }

    /// The constant data of `v`, if it is a constant.
    pub fn konst(&self, v: ValueId) -> Option<&Tensor> {
        self.value(v).konst.as_ref()
    }

    /// Declares a graph input (the caller pushes it to [`Graph::inputs`]).
    pub fn add_input(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<usize>,
    ) -> ValueId {
        self.push_value(Value {
            name: name.into(),
            dtype,
            shape,
            konst: None,
            producer: None,
        })
    }

    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        self.push_value(Value {
            name: name.into(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            konst: Some(t),
            producer: None,
        })
    }

    fn push_value(&mut self, v: Value) -> ValueId {
        self.values.push(v);
        ValueId(self.values.len() as u32 - 1)
    }

    /// Adds `op` over `inputs`, infers its outputs' types and creates them (named
    /// `<node>:<i>` until the caller renames them). Fails, changing nothing, when the
    /// inputs do not fit the op.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<ValueId>,
    ) -> Result<(NodeIndex, Vec<ValueId>), Error> {
        let name = name.into();
        let types: Vec<(DType, &[usize])> = inputs
            .iter()
            .map(|&v| {
                let v = self.value(v);
                (v.dtype, v.shape.as_slice())
            })
            .collect();
        let out_types = infer::infer(&op, &types).map_err(|e| infer_error(&name, &op, e))?;
        for (i, (dtype, shape)) in out_types.iter().enumerate() {
            if let Some(msg) = value_size_error(*dtype, shape) {
                return Err(Error::Shape {
                    node: name,
                    op: op.name().to_string(),
                    msg: format!("output {i}: {msg}"),
                });
            }
        }
        let n = self.dag.add_node(Node {
            name: name.clone(),
            op,
            inputs: inputs.clone(),
            outputs: Vec::new(),
        });
        let outputs: Vec<ValueId> = out_types
            .into_iter()
            .enumerate()
            .map(|(i, (dtype, shape))| {
                self.push_value(Value {
                    name: format!("{name}:{i}"),
                    dtype,
                    shape,
                    konst: None,
                    producer: Some(n),
                })
            })
            .collect();
        self.dag[n].outputs = outputs.clone();
        for &v in &inputs {
            if let Some(p) = self.value(v).producer {
                self.dag.add_edge(p, n, v);
            }
        }
        Ok((n, outputs))
    }

    /// Removes a node. Its outputs stay in the value table without a producer; callers
    /// first reroute their uses.
    pub fn remove_node(&mut self, n: NodeIndex) -> Option<Node> {
        let node = self.dag.remove_node(n)?;
        for &o in &node.outputs {
            self.values[o.0 as usize].producer = None;
        }
        Some(node)
    }

    /// The name of the i-th graph output as the model calls it.
    pub fn output_name(&self, i: usize) -> &str {
        match self.output_names.get(i) {
            Some(n) => n,
            None => &self.value(self.outputs[i]).name,
        }
    }

    /// Nodes that read `v`, in index order, once each.
    pub fn consumers(&self, v: ValueId) -> Vec<NodeIndex> {
        let mut out: Vec<NodeIndex> = self
            .dag
            .node_indices()
            .filter(|&n| self.dag[n].inputs.contains(&v))
            .collect();
        out.dedup();
        out
    }

    /// Makes every reader of `old` (nodes and graph outputs) read `new` instead.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in self.consumers(old) {
            for i in self.dag[n].inputs.iter_mut() {
                if *i == old {
                    *i = new;
                }
            }
            let stale: Vec<_> = self
                .dag
                .edges_directed(n, Direction::Incoming)
                .filter(|e| *e.weight() == old)
                .map(|e| e.id())
                .collect();
            for e in stale {
                self.dag.remove_edge(e);
            }
            if let Some(p) = self.value(new).producer {
                self.dag.add_edge(p, n, new);
            }
        }
        for o in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Nodes in a topological order that is a pure function of the graph (ties broken by
    /// node index, i.e. import order), so printing and code generation are deterministic.
    pub fn topo_order(&self) -> Vec<NodeIndex> {
        let mut indegree: std::collections::HashMap<NodeIndex, usize> = self
            .dag
            .node_indices()
            .map(|n| (n, self.dag.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: BinaryHeap<Reverse<NodeIndex>> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| Reverse(*n))
            .collect();
        let mut order = Vec::with_capacity(self.dag.node_count());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for e in self.dag.edges_directed(n, Direction::Outgoing) {
                let d = indegree
                    .get_mut(&e.target())
                    .expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(e.target()));
                }
            }
        }
        order
    }

    /// Node indices in index order.
    pub fn node_indices(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.dag.node_indices()
    }

    /// Replaces a node's op in place, re-inferring its output types; the outputs must keep
    /// their types (a rewrite that changes types builds a new node instead).
    pub fn set_op(&mut self, n: NodeIndex, op: Op, inputs: Vec<ValueId>) -> Result<(), Error> {
        let types: Vec<(DType, &[usize])> = inputs
            .iter()
            .map(|&v| (self.value(v).dtype, self.value(v).shape.as_slice()))
            .collect();
        let node_name = self.dag[n].name.clone();
        let out = infer::infer(&op, &types).map_err(|e| infer_error(&node_name, &op, e))?;
        let old = &self.dag[n].outputs;
        if out.len() != old.len()
            || out
                .iter()
                .zip(old)
                .any(|((d, s), &o)| *d != self.value(o).dtype || *s != self.value(o).shape)
        {
            return Err(Error::Internal(format!(
                "rewrite of {node_name} changes its output types"
            )));
        }
        let stale: Vec<_> = self
            .dag
            .edges_directed(n, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in stale {
            self.dag.remove_edge(e);
        }
        for &v in &inputs {
            if let Some(p) = self.value(v).producer {
                self.dag.add_edge(p, n, v);
            }
        }
        let node = &mut self.dag[n];
        node.op = op;
        node.inputs = inputs;
        Ok(())
    }

    /// Renames a node (a fusion names the node that stands for several after them all).
    pub fn set_node_name(&mut self, n: NodeIndex, name: impl Into<String>) {
        self.dag[n].name = name.into();
    }

    /// Whether `v` is read by a node or is a graph output.
    pub fn is_used(&self, v: ValueId) -> bool {
        self.outputs.contains(&v) || self.dag.node_weights().any(|n| n.inputs.contains(&v))
    }
}

/// The error a node that does not fit its op becomes.
fn infer_error(node: &str, op: &Op, e: infer::InferError) -> Error {
    match e {
        infer::InferError::Invalid(msg) => Error::Shape {
            node: node.to_string(),
            op: op.name().to_string(),
            msg,
        },
        infer::InferError::Unsupported(reason) => Error::Unsupported(vec![crate::UnsupportedOp {
            node: node.to_string(),
            op_type: op.name().to_string(),
            domain: String::new(),
            opset: 0,
            reason: Some(reason),
        }]),
    }
}
