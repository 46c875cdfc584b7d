//! Kernels over strided views, one loop per dimension of the iteration shape and one
//! element per innermost step: float expressions (`Elementwise`), comparisons, boolean
//! connectives, `Select` and wrapping integer arithmetic. Each reads every input of an
//! element before it writes that element, so an output that is an input with the same
//! view (in place) is fine.

use std::fmt::Write;

use edgecc_program::{CmpOp, DType, ExprNode, IntOp, LogicOp, View};

use crate::Error;
use crate::c::*;
use crate::math;

/// `out[i] = expr(inputs[..][i])` in f32, one C statement (one rounding) per node.
pub(crate) fn elementwise(
    s: &mut String,
    shape: &[u64],
    inputs: &[View],
    expr: &[ExprNode],
    output: &View,
) -> Result<(), Error> {
    for (i, v) in inputs.iter().enumerate() {
        check_rank(v, shape.len(), &format!("input {i}"))?;
    }
    check_rank(output, shape.len(), "output")?;
    if expr.is_empty() {
        return Err(Error("malformed program: empty expression".into()));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let all: Vec<&View> = inputs.iter().chain([output]).collect();
    let (shape, views) = simplify(shape, &all);
    let (inputs, output) = (&views[..inputs.len()], &views[inputs.len()]);
    // Nodes the result does not depend on are not emitted (an unused local would be a
    // warning).
    let mut live = vec![false; expr.len()];
    live[expr.len() - 1] = true;
    for j in (0..expr.len()).rev() {
        if !live[j] {
            continue;
        }
        match expr[j] {
            ExprNode::Unary(_, x) | ExprNode::Clip { x, .. } => {
                if let Some(l) = live.get_mut(x as usize) {
                    *l = true;
                }
            }
            ExprNode::Binary(_, a, b) => {
                for x in [a, b] {
                    if let Some(l) = live.get_mut(x as usize) {
                        *l = true;
                    }
                }
            }
            ExprNode::Input(_) | ExprNode::Const(_) => {}
        }
    }
    let (ind, depth) = open_loops(s, &shape);
    for (j, e) in expr.iter().enumerate() {
        if !live[j] {
            continue;
        }
        let get = |x: u32| -> Result<String, Error> {
            if (x as usize) < j {
                Ok(format!("v{x}"))
            } else {
                Err(Error(
                    "malformed program: expression operand out of order".into(),
                ))
            }
        };
        let rhs = match *e {
            ExprNode::Input(i) => {
                let v = inputs.get(i as usize).ok_or_else(|| {
                    Error("malformed program: expression input out of range".into())
                })?;
                format!("{}[{}]", ptr(v.buf, "f32a"), at(v))
            }
            ExprNode::Const(c) => float_lit(c),
            ExprNode::Unary(op, x) => math::unary(op, &get(x)?),
            ExprNode::Binary(op, a, b) => math::binary(op, &get(a)?, &get(b)?),
            ExprNode::Clip { x, lo, hi } => {
                format!("ec_clip({}, {}, {})", get(x)?, float_lit(lo), float_lit(hi))
            }
        };
        let _ = writeln!(s, "{ind}const float v{j} = {rhs};");
    }
    let _ = writeln!(
        s,
        "{ind}{}[{}] = v{};",
        ptr(output.buf, "f32a"),
        at(output),
        expr.len() - 1
    );
    close_loops(s, depth);
    Ok(())
}

/// `out[i] = a[i] op b[i]` as a 0/1 byte; floats compare as IEEE (NaN unordered, `-0 ==
/// +0`) through integer keys, the integer dtypes as their C types (`uint8_t` unsigned),
/// bools as 0/1.
pub(crate) fn compare(
    s: &mut String,
    shape: &[u64],
    op: CmpOp,
    dtype: DType,
    a: &View,
    b: &View,
    output: &View,
) -> Result<(), Error> {
    for (v, what) in [(a, "a"), (b, "b"), (output, "output")] {
        check_rank(v, shape.len(), what)?;
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let (shape, v) = simplify(shape, &[a, b, output]);
    let (a, b, output) = (&v[0], &v[1], &v[2]);
    let t = ctype(dtype);
    let c = match op {
        CmpOp::Equal => "==",
        CmpOp::Less => "<",
        CmpOp::LessOrEqual => "<=",
        CmpOp::Greater => ">",
        CmpOp::GreaterOrEqual => ">=",
    };
    let (ind, depth) = open_loops(s, &shape);
    let load = |v: &View| {
        let x = format!("{}[{}]", ptr(v.buf, t), at(v));
        if dtype == DType::Bool {
            format!("({x} != 0)")
        } else {
            x
        }
    };
    let e = if dtype == DType::F32 {
        // On integer keys (`ec_fkey`), NaN first: a float compare against a constant
        // infinity is miscompiled for NaN by clang-19's Hexagon back end.
        let _ = writeln!(
            s,
            "{ind}const float x = {};\n{ind}const float y = {};",
            load(a),
            load(b)
        );
        format!("!ec_fnan(x) && !ec_fnan(y) && ec_fkey(x) {c} ec_fkey(y)")
    } else {
        format!("{} {c} {}", load(a), load(b))
    };
    let _ = writeln!(
        s,
        "{ind}{}[{}] = (uint8_t)({e});",
        ptr(output.buf, "u8a"),
        at(output)
    );
    close_loops(s, depth);
    Ok(())
}

/// `out[i] = a[i] op b[i]` on bool bytes (non-zero is true), stored as 0/1.
pub(crate) fn logic(
    s: &mut String,
    shape: &[u64],
    op: LogicOp,
    a: &View,
    b: Option<&View>,
    output: &View,
) -> Result<(), Error> {
    check_rank(a, shape.len(), "a")?;
    check_rank(output, shape.len(), "output")?;
    if let Some(b) = b {
        check_rank(b, shape.len(), "b")?;
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let all: Vec<&View> = [a, output].into_iter().chain(b).collect();
    let (shape, v) = simplify(shape, &all);
    let (a, output, b) = (&v[0], &v[1], v.get(2));
    let load = |v: &View| format!("({}[{}] != 0)", ptr(v.buf, "u8a"), at(v));
    let x = load(a);
    let e = match (op, b) {
        (LogicOp::Not, None) => format!("!{x}"),
        (LogicOp::Not, Some(_)) | (_, None) => {
            return Err(Error(format!(
                "malformed program: {op:?} with the wrong number of operands"
            )));
        }
        (_, Some(b)) => {
            let y = load(b);
            match op {
                LogicOp::And => format!("{x} & {y}"),
                LogicOp::Or => format!("{x} | {y}"),
                _ => format!("{x} ^ {y}"),
            }
        }
    };
    let (ind, depth) = open_loops(s, &shape);
    let _ = writeln!(
        s,
        "{ind}{}[{}] = (uint8_t)({e});",
        ptr(output.buf, "u8a"),
        at(output)
    );
    close_loops(s, depth);
    Ok(())
}

/// The C type of a `Select` element of `elem_bytes` bytes (1, 4 or 8).
pub(crate) fn select_type(elem_bytes: u32) -> Option<&'static str> {
    match elem_bytes {
        1 => Some("u8a"),
        4 => Some("i32a"),
        8 => Some("i64a"),
        _ => None,
    }
}

/// `out[i] = cond[i] ? a[i] : b[i]`, elements copied bit for bit.
pub(crate) fn select(
    s: &mut String,
    shape: &[u64],
    elem_bytes: u32,
    [cond, a, b, output]: [&View; 4],
) -> Result<(), Error> {
    for (v, what) in [(cond, "cond"), (a, "a"), (b, "b"), (output, "output")] {
        check_rank(v, shape.len(), what)?;
    }
    let t = select_type(elem_bytes).ok_or_else(|| {
        Error(format!(
            "malformed program: select of {elem_bytes}-byte elements"
        ))
    })?;
    if shape.contains(&0) {
        return Ok(());
    }
    let (shape, v) = simplify(shape, &[cond, a, b, output]);
    let (cond, a, b, output) = (&v[0], &v[1], &v[2], &v[3]);
    let (ind, depth) = open_loops(s, &shape);
    let _ = writeln!(
        s,
        "{ind}{}[{}] = {}[{}] ? {}[{}] : {}[{}];",
        ptr(output.buf, t),
        at(output),
        ptr(cond.buf, "u8a"),
        at(cond),
        ptr(a.buf, t),
        at(a),
        ptr(b.buf, t),
        at(b)
    );
    close_loops(s, depth);
    Ok(())
}

/// Wrapping two's complement arithmetic on `I32` or `I64`: sums, differences, products
/// and negations go through the unsigned type (defined wrap-around in C).
pub(crate) fn int_elementwise(
    s: &mut String,
    shape: &[u64],
    dtype: DType,
    op: IntOp,
    a: &View,
    b: Option<&View>,
    output: &View,
) -> Result<(), Error> {
    let (t, st, ut) = match dtype {
        DType::I32 => ("i32a", "int32_t", "uint32_t"),
        DType::I64 => ("i64a", "int64_t", "uint64_t"),
        _ => {
            return Err(Error(format!(
                "malformed program: integer arithmetic on {}",
                dtype.name()
            )));
        }
    };
    check_rank(a, shape.len(), "a")?;
    check_rank(output, shape.len(), "output")?;
    if let Some(b) = b {
        check_rank(b, shape.len(), "b")?;
    }
    if op.is_binary() != b.is_some() {
        return Err(Error(format!(
            "malformed program: {op:?} with the wrong number of operands"
        )));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let all: Vec<&View> = [a, output].into_iter().chain(b).collect();
    let (shape, v) = simplify(shape, &all);
    let (a, output, b) = (&v[0], &v[1], v.get(2));
    let (ind, depth) = open_loops(s, &shape);
    let _ = writeln!(s, "{ind}const {st} x = {}[{}];", ptr(a.buf, t), at(a));
    if let Some(b) = b {
        let _ = writeln!(s, "{ind}const {st} y = {}[{}];", ptr(b.buf, t), at(b));
    }
    let r = match op {
        IntOp::Add => format!("({st})(({ut})x + ({ut})y)"),
        IntOp::Sub => format!("({st})(({ut})x - ({ut})y)"),
        IntOp::Mul => format!("({st})(({ut})x * ({ut})y)"),
        IntOp::Max => "x > y ? x : y".into(),
        IntOp::Min => "x < y ? x : y".into(),
        IntOp::Neg => format!("({st})(({ut})0 - ({ut})x)"),
        IntOp::Abs => format!("x < 0 ? ({st})(({ut})0 - ({ut})x) : x"),
    };
    let _ = writeln!(s, "{ind}{}[{}] = {r};", ptr(output.buf, t), at(output));
    close_loops(s, depth);
    Ok(())
}
