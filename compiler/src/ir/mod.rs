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

/// The most elements one value may have: 2^40 (4 TiB of f32), far beyond any edge model,
/// and small enough that element and byte counts never overflow. Shape inference refuses
/// larger inputs and outputs ([`infer::infer`]), and declared graph inputs are checked
/// where they are read (the importer, the text parser), so every shape in a [`Graph`]
/// keeps to it.
pub const MAX_ELEMENTS: usize = 1 << 40;

/// The element count of `shape` when it keeps to [`MAX_ELEMENTS`], `None` otherwise. A
/// zero dim does not excuse the others: the product of the non-zero dims must keep to it,
/// so products over any part of the shape (rows, strides) cannot overflow either.
pub fn checked_elements(shape: &[usize]) -> Option<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |n, &d| {
            n.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS)
        })?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}
