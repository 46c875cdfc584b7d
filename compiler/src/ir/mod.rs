//! The graph IR: typed ops on a petgraph graph with static shapes.

mod dtype;
pub mod einsum;
mod graph;
pub mod infer;
mod op;
pub mod parse;
pub mod print;
mod tensor;
pub mod verify;

pub use dtype::DType;
pub use einsum::Equation;
pub use graph::{
    FOLD_ALWAYS_BYTES, FOLD_BUDGET_BASE, Graph, MAX_FOLDED_BYTES, MAX_VALUE_BYTES, Node, Value,
    ValueId, checked_bytes, value_size_error,
};
pub use op::{
    Act, AutoPad, Binary, Cmp, Logic, Op, PadMode, QBinaryAttrs, QBinaryOp, ReduceKind, Requant,
    Unary, WindowAttrs,
};
pub use petgraph::stable_graph::NodeIndex;
pub use tensor::{Data, Tensor, decode_code};
