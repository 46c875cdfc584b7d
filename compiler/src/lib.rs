//! edgecc: an ahead-of-time compiler from ONNX to native code for edge devices.
//!
//! The pipeline, one module per stage: [`onnx`] decodes and imports a model into the
//! [`ir`] graph; [`passes`] rewrite it; [`interp`] is the reference interpreter every
//! pass and backend is checked against; [`lower`] plans memory and turns the graph into
//! the target-neutral [`edgecc_program::Program`]; targets turn that into artifacts, and
//! [`artifact`] writes the header and manifest beside them.

pub mod artifact;
mod error;
pub mod inspect;
pub mod interp;
pub mod io;
pub mod ir;
pub mod lower;
pub mod onnx;
pub mod passes;
pub mod pipeline;
pub mod profile;
pub mod run_hexagon;
pub mod run_target;
pub mod target;

pub use error::{Error, UnsupportedOp};
