//! One module per kernel kind of the lowered program, plus the pieces they share: the
//! fused activation epilogue and the elementwise expression evaluator.

pub(crate) mod conv;
pub(crate) mod convert;
pub(crate) mod copy;
pub(crate) mod elementwise;
pub(crate) mod gather;
pub(crate) mod gemm;
pub(crate) mod integer;
pub(crate) mod mask;
pub(crate) mod qbinary;
pub(crate) mod qconv;
pub(crate) mod qdepthwise;
pub(crate) mod qgemm;
pub(crate) mod qwindow;
pub(crate) mod rows;
pub(crate) mod window;

use cranelift_codegen::ir::{InstBuilder, Value};
use edgecc_program::{Activation, BinaryOp, ExprNode, UnaryOp};

use crate::error::{Error, unsupported};
use crate::fx::{Fx, W};
use crate::math;

/// Applies a fused activation, with the semantics of `edgecc_program::exec::activate`
/// (Relu of NaN is 0; Clip lets NaN through).
pub(crate) fn activate(fx: &mut Fx, w: W, act: Activation, x: Value) -> Value {
    match act {
        Activation::None => x,
        Activation::Relu => {
            let z = fx.fconst(w, 0.0);
            fx.max(w, x, z)
        }
        Activation::Clip { lo, hi } => clip(fx, w, x, lo, hi),
        Activation::Sigmoid => math::sigmoid(fx, w, x),
        Activation::Tanh => math::tanh(fx, w, x),
        Activation::Gelu { tanh: false } => {
            // 0.5·x·(1 + erf(x/√2)), as the elementwise lowering of Gelu spells it.
            let s = fx.fconst(w, std::f32::consts::FRAC_1_SQRT_2);
            let xs = fx.b.ins().fmul(x, s);
            let e = math::erf(fx, w, xs);
            gelu_tail(fx, w, x, e)
        }
        Activation::Gelu { tanh: true } => {
            // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
            let x2 = fx.b.ins().fmul(x, x);
            let x3 = fx.b.ins().fmul(x2, x);
            let k = fx.fconst(w, 0.044715);
            let t = fx.b.ins().fmul(x3, k);
            let t = fx.b.ins().fadd(x, t);
            let c = fx.fconst(w, (2.0f64 / std::f64::consts::PI).sqrt() as f32);
            let t = fx.b.ins().fmul(t, c);
            let e = math::tanh(fx, w, t);
            gelu_tail(fx, w, x, e)
        }
        Activation::HardSwish => {
            let s = fx.fconst(w, 1.0 / 6.0);
            let h = fx.fconst(w, 0.5);
            let t = fx.b.ins().fmul(x, s);
            let t = fx.b.ins().fadd(t, h);
            let t = clip(fx, w, t, 0.0, 1.0);
            fx.b.ins().fmul(x, t)
        }
    }
}

/// `0.5·x·(1 + e)`, the common end of both GELU forms.
fn gelu_tail(fx: &mut Fx, w: W, x: Value, e: Value) -> Value {
    let one = fx.fconst(w, 1.0);
    let half = fx.fconst(w, 0.5);
    let e1 = fx.b.ins().fadd(e, one);
    let hx = fx.b.ins().fmul(x, half);
    fx.b.ins().fmul(hx, e1)
}

/// `x < lo ? lo : x`, then `hi < x ? hi : x`: ordered compares are false for NaN, so NaN
/// passes through as ONNX Clip specifies.
fn clip(fx: &mut Fx, w: W, x: Value, lo: f32, hi: f32) -> Value {
    use cranelift_codegen::ir::condcodes::FloatCC;
    let lo = fx.fconst(w, lo);
    let hi = fx.fconst(w, hi);
    let c = fx.b.ins().fcmp(FloatCC::LessThan, x, lo);
    let x = fx.pick(w, c, lo, x);
    let c = fx.b.ins().fcmp(FloatCC::LessThan, hi, x);
    fx.pick(w, c, hi, x)
}

/// Checks an expression once at compile time: operands refer backwards, inputs exist.
pub(crate) fn check_expr(expr: &[ExprNode], n_inputs: usize) -> Result<(), Error> {
    if expr.is_empty() {
        return Err(unsupported("empty elementwise expression"));
    }
    for (i, node) in expr.iter().enumerate() {
        let ok = |a: u32| (a as usize) < i;
        let fine = match *node {
            ExprNode::Input(k) => (k as usize) < n_inputs,
            ExprNode::Const(_) => true,
            ExprNode::Unary(_, a) | ExprNode::Clip { x: a, .. } => ok(a),
            ExprNode::Binary(_, a, b) => ok(a) && ok(b),
        };
        if !fine {
            return Err(unsupported(format!(
                "elementwise node {i} ({node:?}) refers forward or to a missing input"
            )));
        }
    }
    Ok(())
}

/// Emits a checked expression over per-input values `ins` (already loaded, width `w`).
pub(crate) fn eval_expr(fx: &mut Fx, w: W, expr: &[ExprNode], ins: &[Value]) -> Value {
    let mut vals: Vec<Value> = Vec::with_capacity(expr.len());
    for node in expr {
        let v = match *node {
            ExprNode::Input(i) => ins[i as usize],
            ExprNode::Const(c) => fx.fconst(w, c),
            ExprNode::Unary(op, a) => {
                let a = vals[a as usize];
                match op {
                    UnaryOp::Neg => fx.b.ins().fneg(a),
                    UnaryOp::Abs => fx.b.ins().fabs(a),
                    UnaryOp::Relu => activate(fx, w, Activation::Relu, a),
                    UnaryOp::Exp => math::exp(fx, w, a),
                    UnaryOp::Tanh => math::tanh(fx, w, a),
                    UnaryOp::Sigmoid => math::sigmoid(fx, w, a),
                    UnaryOp::Sqrt => fx.b.ins().sqrt(a),
                    UnaryOp::Erf => math::erf(fx, w, a),
                    UnaryOp::Log => math::log(fx, w, a),
                    UnaryOp::Round => fx.b.ins().nearest(a),
                    UnaryOp::Reciprocal => {
                        let one = fx.fconst(w, 1.0);
                        fx.b.ins().fdiv(one, a)
                    }
                }
            }
            ExprNode::Binary(op, a, b) => {
                let (a, b) = (vals[a as usize], vals[b as usize]);
                match op {
                    BinaryOp::Add => fx.b.ins().fadd(a, b),
                    BinaryOp::Sub => fx.b.ins().fsub(a, b),
                    BinaryOp::Mul => fx.b.ins().fmul(a, b),
                    BinaryOp::Div => fx.b.ins().fdiv(a, b),
                    BinaryOp::Max => fx.max(w, a, b),
                    BinaryOp::Min => fx.min(w, a, b),
                    BinaryOp::Pow => math::pow(fx, w, a, b),
                }
            }
            ExprNode::Clip { x, lo, hi } => clip(fx, w, vals[x as usize], lo, hi),
        };
        vals.push(v);
    }
    *vals.last().expect("checked non-empty")
}
