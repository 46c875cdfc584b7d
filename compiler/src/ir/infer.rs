//! Shape and type inference, one rule per op. Called by [`super::Graph::add_node`], so a
//! node whose inputs do not fit its op is never built.

use super::{Binary, DType, Op, ReduceKind, Requant};

type Types = Vec<(DType, Vec<usize>)>;

/// Why a node's inputs do not fit its op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InferError {
    /// The node is invalid ONNX (shapes that do not broadcast, bad attributes...).
    Invalid(String),
    /// The node is valid but uses something edgecc does not implement (a dtype, mostly).
    Unsupported(String),
}

impl From<String> for InferError {
    fn from(s: String) -> Self {
        InferError::Invalid(s)
    }
}

impl From<&str> for InferError {
    fn from(s: &str) -> Self {
        InferError::Invalid(s.into())
    }
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InferError::Invalid(m) | InferError::Unsupported(m) => f.write_str(m),
        }
    }
}

/// numpy-style multidirectional broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i < r - a.len() {
            1
        } else {
            a[i - (r - a.len())]
        };
        let db = if i < r - b.len() {
            1
        } else {
            b[i - (r - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(format!(
                    "shapes {a:?} and {b:?} do not broadcast (dim {da} vs {db})"
                ));
            }
        };
    }
    Ok(out)
}

/// Normalises a possibly negative axis against `rank` (`allow_end` admits `rank` itself).
/// Index tensors are i64 or i32.
fn int_indices(t: DType) -> Result<(), InferError> {
    if matches!(t, DType::I64 | DType::I32) {
        Ok(())
    } else {
        Err(InferError::Invalid(format!(
            "indices must be i64 or i32, got {t}"
        )))
    }
}

pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// [`norm_axis`] for ops that index a dim of the input: a scalar has none.
pub fn dim_axis(axis: i64, rank: usize) -> Result<usize, String> {
    if rank == 0 {
        return Err(format!(
            "axis {axis}: the input is a scalar, it has no dims"
        ));
    }
    norm_axis(axis, rank)
}

fn want(n: usize, types: &[(DType, &[usize])], lo: usize) -> Result<(), InferError> {
    if types.len() < lo || types.len() > n {
        return Err(if lo == n {
            format!("expects {n} inputs, got {}", types.len()).into()
        } else {
            format!("expects {lo} to {n} inputs, got {}", types.len()).into()
        });
    }
    Ok(())
}

fn numeric(t: &(DType, &[usize]), what: &str) -> Result<(), InferError> {
    if !matches!(t.0, DType::F32 | DType::F64 | DType::I64 | DType::I32) {
        return Err(InferError::Unsupported(format!(
            "{what} of type {} (f32, f64, i64 and i32 are supported)",
            t.0
        )));
    }
    Ok(())
}

fn boolean(t: &(DType, &[usize])) -> Result<(), InferError> {
    if t.0 != DType::Bool {
        return Err(InferError::Invalid(format!(
            "input must be bool, got {}",
            t.0
        )));
    }
    Ok(())
}

/// Checks QuantizeLinear/DequantizeLinear's scale (f32) and zero point (`zp`, the quantized
/// dtype): both a scalar or 1-element 1-D tensor (per tensor), or both 1-D with the length
/// of input dim `axis` (per channel).
fn quant_params(types: &[(DType, &[usize])], axis: i64, zp: DType) -> Result<(), InferError> {
    let shape = types[0].1;
    float(&types[1], "scale")?;
    let scale = types[1].1;
    let fits = match scale {
        [] | [1] => true,
        [n] => {
            let a = dim_axis(axis, shape.len())?;
            shape[a] == *n
        }
        _ => false,
    };
    if !fits {
        return Err(InferError::Invalid(format!(
            "scale of shape {scale:?} is neither a scalar nor 1-D along axis {axis} of {shape:?}"
        )));
    }
    if let Some(z) = types.get(2) {
        if z.0 != zp {
            return Err(InferError::Invalid(format!(
                "zero point of type {} (expected {zp})",
                z.0
            )));
        }
        // Per tensor, a scalar and a 1-element vector are the same (onnxruntime's
        // quantizer writes such mixed pairs).
        let per_tensor = |s: &[usize]| matches!(s, [] | [1]);
        if z.1 != scale && !(per_tensor(z.1) && per_tensor(scale)) {
            return Err(InferError::Invalid(format!(
                "zero point of shape {:?} differs from the scale's {scale:?}",
                z.1
            )));
        }
    }
    Ok(())
}

/// Checks the operands of [`Op::QGemm`] and [`Op::QConv`]: 8-bit activations with a scalar
/// zero point of their type, i8 weights, i32 bias.
fn int_operands(types: &[(DType, &[usize])]) -> Result<(), InferError> {
    let x = types[0].0;
    if !matches!(x, DType::U8 | DType::I8) {
        return Err(InferError::Invalid(format!("input of type {x} (u8 or i8)")));
    }
    if types[1].0 != x || types[1].1.iter().product::<usize>() != 1 {
        return Err(InferError::Invalid(format!(
            "zero point {} {:?} is not one {x}",
            types[1].0, types[1].1
        )));
    }
    if types[2].0 != DType::I8 {
        return Err(InferError::Invalid(format!(
            "weights of type {} (i8)",
            types[2].0
        )));
    }
    if types[3].0 != DType::I32 || types[3].1.len() != 1 {
        return Err(InferError::Invalid(format!(
            "bias {} {:?} is not a 1-D i32 vector",
            types[3].0, types[3].1
        )));
    }
    Ok(())
}

/// The 8-bit integer operands of MatMulInteger and ConvInteger.
fn int8(t: &(DType, &[usize]), what: &str) -> Result<(), InferError> {
    if !matches!(t.0, DType::U8 | DType::I8) {
        return Err(InferError::Unsupported(format!(
            "{what} of type {} (u8 and i8 are supported)",
            t.0
        )));
    }
    Ok(())
}

/// Checks a requantization's multipliers (one i32, or one per `channels`) and range.
fn requant_params(
    types: &[(DType, &[usize])],
    requant: Option<Requant>,
    channels: usize,
) -> Result<(), InferError> {
    let Some(r) = requant else { return Ok(()) };
    let (full_lo, full_hi) = match r.to {
        DType::U8 => (0, 255),
        DType::I8 => (-128, 127),
        other => return Err(InferError::Invalid(format!("requantization to {other}"))),
    };
    if !(1..=62).contains(&r.shift) || r.lo > r.hi || r.lo < full_lo || r.hi > full_hi {
        return Err(InferError::Invalid(format!(
            "requantization {r} out of range"
        )));
    }
    let m = types[4];
    if m.0 != DType::I32 || !(m.1 == [1] || m.1 == [channels]) {
        return Err(InferError::Invalid(format!(
            "multipliers {} {:?} are not [1] or [{channels}] i32",
            m.0, m.1
        )));
    }
    Ok(())
}

fn zero_point_of(z: &(DType, &[usize]), operand: DType, what: &str) -> Result<(), InferError> {
    if z.0 != operand {
        return Err(InferError::Invalid(format!(
            "{what}'s zero point of type {} (expected {operand})",
            z.0
        )));
    }
    Ok(())
}

/// Whether a MatMulInteger zero point of shape `z` fits `operand`: a scalar (or one
/// element), or per row of A (`row`: `[M]`, or A's rank with its last dim 1) or per
/// column of B (`[N]`, or B's rank with its second-to-last dim 1), the leading dims
/// broadcasting to the operand's.
pub fn integer_zero_point_fits(z: &[usize], operand: &[usize], row: bool) -> bool {
    let r = operand.len();
    if z.iter().product::<usize>() == 1 && z.len() <= r.max(1) {
        return true;
    }
    if r < 2 {
        return false;
    }
    let (keep, one) = if row { (r - 2, r - 1) } else { (r - 1, r - 2) };
    if z.len() == 1 {
        return z[0] == operand[keep];
    }
    z.len() == r
        && z[one] == 1
        && z[keep] == operand[keep]
        && z[..r - 2]
            .iter()
            .zip(&operand[..r - 2])
            .all(|(a, b)| a == b || *a == 1)
}

/// The dtypes Cast converts between.
pub fn castable(d: DType) -> bool {
    matches!(
        d,
        DType::F32
            | DType::F64
            | DType::I64
            | DType::I32
            | DType::I16
            | DType::I8
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64
            | DType::Bool
    )
}

/// The dims `[start, end)` Shape returns, clamped as the spec says.
pub fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (a, b) = (clamp(start), clamp(end.unwrap_or(r)));
    (a, b.max(a))
}

/// The reduced dims; `None` or an empty list means all.
pub fn reduce_axes(axes: Option<&[i64]>, rank: usize) -> Result<Vec<usize>, String> {
    match axes {
        None | Some([]) => Ok((0..rank).collect()),
        Some(a) => a.iter().map(|&x| norm_axis(x, rank)).collect(),
    }
}

/// ONNX Slice on one dim of size `n`: the clamped start, the step and the element count.
pub fn slice_range(n: usize, start: i64, end: i64, step: i64) -> Result<(i64, i64, usize), String> {
    if step == 0 {
        return Err("slice step 0".into());
    }
    let n = n as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (s, e) = (fix(start), fix(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, n), e.clamp(0, n))
    } else {
        (s.clamp(-1, n - 1), e.clamp(-1, n - 1))
    };
    let count = if step > 0 {
        if e > s { (e - s + step - 1) / step } else { 0 }
    } else if s > e {
        (s - e - step - 1) / (-step)
    } else {
        0
    };
    Ok((s, step, count as usize))
}

fn float(t: &(DType, &[usize]), what: &str) -> Result<(), InferError> {
    if t.0 != DType::F32 {
        return Err(InferError::Unsupported(format!(
            "{what} of type {} (f32 is supported)",
            t.0
        )));
    }
    Ok(())
}

/// Output types of `op` applied to inputs of the given types. Operands that must be
/// constants (Reshape's shape, Slice's bounds...) were read into the op at import.
pub fn infer(op: &Op, types: &[(DType, &[usize])]) -> Result<Types, InferError> {
    for (i, (_, shape)) in types.iter().enumerate() {
        check_size(shape).map_err(|e| format!("input {i}: {e}"))?;
    }
    let out = infer_op(op, types)?;
    for (i, (_, shape)) in out.iter().enumerate() {
        check_size(shape).map_err(|e| format!("output {i}: {e}"))?;
    }
    Ok(out)
}

/// Refuses a shape over [`super::MAX_ELEMENTS`].
fn check_size(shape: &[usize]) -> Result<(), String> {
    match super::checked_elements(shape) {
        Some(_) => Ok(()),
        None => Err(format!(
            "shape {shape:?} has more than 2^{} elements",
            super::MAX_ELEMENTS.trailing_zeros()
        )),
    }
}

fn infer_op(op: &Op, types: &[(DType, &[usize])]) -> Result<Types, InferError> {
    match op {
        Op::Unary(_) | Op::Clip { .. } | Op::Identity => {
            want(1, types, 1)?;
            match op {
                Op::Identity => {}
                Op::Unary(crate::ir::Unary::Neg | crate::ir::Unary::Abs) => {
                    numeric(&types[0], "input")?
                }
                _ => float(&types[0], "input")?,
            }
            Ok(vec![(types[0].0, types[0].1.to_vec())])
        }
        Op::Binary(b) => {
            want(2, types, 2)?;
            if types[0].0 != types[1].0 && *b != Binary::Pow {
                return Err(InferError::Invalid(format!(
                    "input types differ: {} and {}",
                    types[0].0, types[1].0
                )));
            }
            numeric(&types[0], "input")?;
            numeric(&types[1], "input")?;
            Ok(vec![(types[0].0, broadcast(types[0].1, types[1].1)?)])
        }
        Op::Compare(_) => {
            want(2, types, 2)?;
            if types[0].0 != types[1].0 {
                return Err(InferError::Invalid(format!(
                    "input types differ: {} and {}",
                    types[0].0, types[1].0
                )));
            }
            Ok(vec![(DType::Bool, broadcast(types[0].1, types[1].1)?)])
        }
        Op::Logic(_) => {
            want(2, types, 2)?;
            for t in types {
                boolean(t)?;
            }
            Ok(vec![(DType::Bool, broadcast(types[0].1, types[1].1)?)])
        }
        Op::Not => {
            want(1, types, 1)?;
            boolean(&types[0])?;
            Ok(vec![(DType::Bool, types[0].1.to_vec())])
        }
        Op::Where => {
            want(3, types, 3)?;
            boolean(&types[0])?;
            if types[1].0 != types[2].0 {
                return Err(InferError::Invalid(format!(
                    "x and y types differ: {} and {}",
                    types[1].0, types[2].0
                )));
            }
            let s = broadcast(&broadcast(types[0].1, types[1].1)?, types[2].1)?;
            Ok(vec![(types[1].0, s)])
        }
        Op::Cast { to } => {
            want(1, types, 1)?;
            for d in [types[0].0, *to] {
                if !castable(d) {
                    return Err(InferError::Unsupported(format!("Cast involving {d}")));
                }
            }
            Ok(vec![(*to, types[0].1.to_vec())])
        }
        Op::QuantizeLinear { axis, to } => {
            want(3, types, 2)?;
            float(&types[0], "input")?;
            if !matches!(to, DType::U8 | DType::I8) {
                return Err(InferError::Unsupported(format!("QuantizeLinear to {to}")));
            }
            quant_params(types, *axis, *to)?;
            Ok(vec![(*to, types[0].1.to_vec())])
        }
        Op::DequantizeLinear { axis } => {
            want(3, types, 2)?;
            let from = types[0].0;
            if !matches!(from, DType::U8 | DType::I8 | DType::I32) {
                return Err(InferError::Unsupported(format!(
                    "DequantizeLinear from {from}"
                )));
            }
            quant_params(types, *axis, from)?;
            Ok(vec![(DType::F32, types[0].1.to_vec())])
        }
        Op::QGemm { requant } => {
            let n_in = 4 + usize::from(requant.is_some());
            want(n_in, types, n_in)?;
            let (a, b) = (types[0].1, types[2].1);
            int_operands(types)?;
            let (&k, [kb, n]) = (a.last().unwrap_or(&0), b) else {
                return Err(InferError::Invalid(format!("b of shape {b:?} is not 2-D")));
            };
            if a.is_empty() || k != *kb {
                return Err(InferError::Invalid(format!(
                    "a {a:?} and b {b:?} do not multiply"
                )));
            }
            if types[3].1 != [*n] {
                return Err(InferError::Invalid(format!(
                    "bias of shape {:?} is not [{n}]",
                    types[3].1
                )));
            }
            let mut shape = a.to_vec();
            *shape.last_mut().expect("checked non-empty") = *n;
            requant_params(types, *requant, *n)?;
            Ok(vec![(requant.map_or(DType::I32, |r| r.to), shape)])
        }
        Op::QConv {
            window,
            group,
            requant,
        } => {
            let n_in = 4 + usize::from(requant.is_some());
            want(n_in, types, n_in)?;
            int_operands(types)?;
            let conv = Op::Conv {
                window: window.clone(),
                group: *group,
            };
            let shape = infer(
                &conv,
                &[
                    (DType::F32, types[0].1),
                    (DType::F32, types[2].1),
                    (DType::F32, types[3].1),
                ],
            )?
            .remove(0)
            .1;
            requant_params(types, *requant, shape[1])?;
            Ok(vec![(requant.map_or(DType::I32, |r| r.to), shape)])
        }
        Op::QBinary(q) => {
            want(2, types, 2)?;
            let (a, b) = (types[0].0, types[1].0);
            let bad = |e: String| InferError::Invalid(format!("{}: {e}", op.name()));
            let program = q
                .to_program()
                .ok_or_else(|| bad(format!("result of type {}", q.to)))?;
            let (pa, pb) = (
                a.to_program()
                    .ok_or_else(|| bad(format!("a of type {a}")))?,
                b.to_program()
                    .ok_or_else(|| bad(format!("b of type {b}")))?,
            );
            program.check(pa, pb).map_err(bad)?;
            Ok(vec![(q.to, broadcast(types[0].1, types[1].1)?)])
        }
        Op::DynamicQuantizeLinear => {
            want(1, types, 1)?;
            float(&types[0], "input")?;
            Ok(vec![
                (DType::U8, types[0].1.to_vec()),
                (DType::F32, vec![]),
                (DType::U8, vec![]),
            ])
        }
        Op::MatMulInteger => {
            want(4, types, 2)?;
            int8(&types[0], "A")?;
            int8(&types[1], "B")?;
            let (a, b) = (types[0].1, types[1].1);
            let out = infer(&Op::MatMul, &[(DType::F32, a), (DType::F32, b)])?;
            for (k, (what, operand, row)) in
                [("A", a, true), ("B", b, false)].into_iter().enumerate()
            {
                if let Some(z) = types.get(2 + k) {
                    zero_point_of(z, types[k].0, what)?;
                    if !integer_zero_point_fits(z.1, operand, row) {
                        return Err(InferError::Invalid(format!(
                            "{what}'s zero point of shape {:?} is neither a scalar nor per {} of {operand:?}",
                            z.1,
                            if row { "row" } else { "column" }
                        )));
                    }
                }
            }
            Ok(vec![(
                DType::I32,
                out.into_iter().next().map(|o| o.1).unwrap_or_default(),
            )])
        }
        Op::ConvInteger { window, group } => {
            want(4, types, 2)?;
            int8(&types[0], "x")?;
            int8(&types[1], "w")?;
            let conv = Op::Conv {
                window: window.clone(),
                group: *group,
            };
            let out = infer(&conv, &[(DType::F32, types[0].1), (DType::F32, types[1].1)])?;
            if let Some(z) = types.get(2) {
                zero_point_of(z, types[0].0, "x")?;
                if !matches!(z.1, [] | [1]) {
                    return Err(InferError::Invalid(format!(
                        "x's zero point of shape {:?} is not a scalar",
                        z.1
                    )));
                }
            }
            if let Some(z) = types.get(3) {
                zero_point_of(z, types[1].0, "w")?;
                let m = types[1].1[0];
                if !matches!(z.1, [] | [1]) && z.1 != [m] {
                    return Err(InferError::Invalid(format!(
                        "w's zero point of shape {:?} is neither a scalar nor [{m}]",
                        z.1
                    )));
                }
            }
            Ok(vec![(
                DType::I32,
                out.into_iter().next().map(|o| o.1).unwrap_or_default(),
            )])
        }
        Op::Shape { start, end } => {
            want(1, types, 1)?;
            let (a, b) = shape_range(types[0].1.len(), *start, *end);
            Ok(vec![(DType::I64, vec![b - a])])
        }
        Op::Gelu { .. } | Op::HardSigmoid { .. } | Op::HardSwish => {
            want(1, types, 1)?;
            float(&types[0], "input")?;
            Ok(vec![(DType::F32, types[0].1.to_vec())])
        }
        Op::LayerNorm { axis, stats, .. } => {
            want(3, types, 2)?;
            for t in types {
                float(t, "operand")?;
            }
            let x = types[0].1;
            let ax = norm_axis(*axis, x.len())?;
            for t in &types[1..] {
                if broadcast(t.1, &x[ax..])? != x[ax..] {
                    return Err(InferError::Invalid(format!(
                        "scale/bias {:?} do not broadcast to {:?}",
                        t.1,
                        &x[ax..]
                    )));
                }
            }
            let mut outs = vec![(DType::F32, x.to_vec())];
            if *stats {
                let mut s = x[..ax].to_vec();
                s.resize(x.len(), 1);
                outs.push((DType::F32, s.clone()));
                outs.push((DType::F32, s));
            }
            Ok(outs)
        }
        Op::Reduce {
            axes,
            keepdims,
            kind,
        } => {
            want(1, types, 1)?;
            numeric(&types[0], "input")?;
            if *kind == ReduceKind::Mean {
                float(&types[0], "input")?;
            }
            let x = types[0].1;
            let set = reduce_axes(axes.as_deref(), x.len())?;
            let mut out = Vec::new();
            for (d, &n) in x.iter().enumerate() {
                if set.contains(&d) {
                    if *keepdims {
                        out.push(1);
                    }
                } else {
                    out.push(n);
                }
            }
            Ok(vec![(types[0].0, out)])
        }
        Op::Gather { axis } => {
            want(2, types, 2)?;
            // 8-bit indices are edgecc's own: `fold-requant` looks quantized values up in
            // 256-entry tables (an i8 index wraps negative like any other).
            if !matches!(types[1].0, DType::I64 | DType::I32 | DType::U8 | DType::I8) {
                return Err(InferError::Invalid(format!(
                    "indices must be i64 or i32, got {}",
                    types[1].0
                )));
            }
            let x = types[0].1;
            let ax = dim_axis(*axis, x.len())?;
            let mut out = x[..ax].to_vec();
            out.extend_from_slice(types[1].1);
            out.extend_from_slice(&x[ax + 1..]);
            Ok(vec![(types[0].0, out)])
        }
        Op::GatherElements { axis } => {
            want(2, types, 2)?;
            int_indices(types[1].0)?;
            let (x, idx) = (types[0].1, types[1].1);
            let ax = dim_axis(*axis, x.len())?;
            if idx.len() != x.len() {
                return Err(InferError::Invalid(format!(
                    "indices have rank {}, data rank {}",
                    idx.len(),
                    x.len()
                )));
            }
            if (0..x.len()).any(|d| d != ax && idx[d] > x[d]) {
                return Err(InferError::Invalid(format!(
                    "indices shape {idx:?} exceeds data shape {x:?} off axis {ax}"
                )));
            }
            Ok(vec![(types[0].0, idx.to_vec())])
        }
        Op::GatherND { batch_dims } => {
            want(2, types, 2)?;
            int_indices(types[1].0)?;
            let (x, idx) = (types[0].1, types[1].1);
            let b = *batch_dims;
            let k = idx.last().copied().unwrap_or(0);
            if idx.is_empty()
                || x.is_empty()
                || b >= x.len().min(idx.len())
                || k < 1
                || b + k > x.len()
            {
                return Err(InferError::Invalid(format!(
                    "data {x:?}, indices {idx:?} and batch_dims {b} do not fit \
                     (need 1 <= indices.shape[-1] <= rank(data) - batch_dims)"
                )));
            }
            if x[..b] != idx[..b] {
                return Err(InferError::Invalid(format!(
                    "batch dims of data {x:?} and indices {idx:?} differ"
                )));
            }
            let mut out = idx[..idx.len() - 1].to_vec();
            out.extend_from_slice(&x[b + k..]);
            Ok(vec![(types[0].0, out)])
        }
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        } => {
            want(1, types, 1)?;
            let x = types[0].1;
            if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
                return Err(InferError::Invalid(
                    "starts, ends, axes and steps differ in length".into(),
                ));
            }
            let mut out = x.to_vec();
            for (i, &a) in axes.iter().enumerate() {
                let d = dim_axis(a, x.len())?;
                out[d] = slice_range(x[d], starts[i], ends[i], steps[i])?.2;
            }
            Ok(vec![(types[0].0, out)])
        }
        Op::Unsqueeze { axes } => {
            want(1, types, 1)?;
            let x = types[0].1;
            let r = x.len() + axes.len();
            let mut set: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, r))
                .collect::<Result<_, _>>()?;
            set.sort_unstable();
            if set.windows(2).any(|w| w[0] == w[1]) {
                return Err(InferError::Invalid(format!("repeated axis in {axes:?}")));
            }
            let mut it = x.iter();
            let out = (0..r)
                .map(|d| {
                    if set.contains(&d) {
                        1
                    } else {
                        it.next().copied().unwrap_or(1)
                    }
                })
                .collect();
            Ok(vec![(types[0].0, out)])
        }
        Op::Squeeze { axes } => {
            want(1, types, 1)?;
            let x = types[0].1;
            let set: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&a| dim_axis(a, x.len()))
                    .collect::<Result<_, _>>()?,
                None => (0..x.len()).filter(|&d| x[d] == 1).collect(),
            };
            if let Some(&d) = set.iter().find(|&&d| x[d] != 1) {
                return Err(InferError::Invalid(format!(
                    "cannot squeeze dim {d} of size {}",
                    x[d]
                )));
            }
            let out = (0..x.len())
                .filter(|d| !set.contains(d))
                .map(|d| x[d])
                .collect();
            Ok(vec![(types[0].0, out)])
        }
        Op::Expand { shape } => {
            want(1, types, 1)?;
            let target: Vec<usize> = shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("negative dim in {shape:?}")))
                .collect::<Result<_, _>>()?;
            Ok(vec![(types[0].0, broadcast(types[0].1, &target)?)])
        }
        Op::Split { axis, sizes } => {
            want(1, types, 1)?;
            let x = types[0].1;
            let ax = dim_axis(*axis, x.len())?;
            if sizes.iter().sum::<usize>() != x[ax] {
                return Err(InferError::Invalid(format!(
                    "split sizes {sizes:?} do not add up to {}",
                    x[ax]
                )));
            }
            Ok(sizes
                .iter()
                .map(|&n| {
                    let mut s = x.to_vec();
                    s[ax] = n;
                    (types[0].0, s)
                })
                .collect())
        }
        Op::Tile { repeats } => {
            want(1, types, 1)?;
            let x = types[0].1;
            if repeats.len() != x.len() {
                return Err(InferError::Invalid(format!(
                    "repeats {repeats:?} do not match rank {}",
                    x.len()
                )));
            }
            let out = x
                .iter()
                .zip(repeats)
                .map(|(a, b)| a.checked_mul(*b))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| format!("repeats {repeats:?} of {x:?} overflow"))?;
            Ok(vec![(types[0].0, out)])
        }
        Op::Pad { pads, .. } => {
            want(1, types, 1)?;
            let x = types[0].1;
            if pads.len() != 2 * x.len() {
                return Err(InferError::Invalid(format!(
                    "pads {pads:?} do not match rank {}",
                    x.len()
                )));
            }
            let out = (0..x.len())
                .map(|d| {
                    let n = (x[d] as i64)
                        .checked_add(pads[d])
                        .and_then(|n| n.checked_add(pads[d + x.len()]))
                        .ok_or_else(|| format!("pads {pads:?} overflow dim {d}"))?;
                    usize::try_from(n).map_err(|_| format!("pads {pads:?} crop dim {d} below 0"))
                })
                .collect::<Result<_, _>>()?;
            Ok(vec![(types[0].0, out)])
        }
        Op::MatMul => {
            want(2, types, 2)?;
            float(&types[0], "A")?;
            float(&types[1], "B")?;
            let (a, b) = (types[0].1, types[1].1);
            if a.is_empty() || b.is_empty() {
                return Err(InferError::Invalid("operands must have rank >= 1".into()));
            }
            // Rank-1 operands are promoted (and the added dim removed afterwards).
            let a2: Vec<usize> = if a.len() == 1 {
                vec![1, a[0]]
            } else {
                a.to_vec()
            };
            let b2: Vec<usize> = if b.len() == 1 {
                vec![b[0], 1]
            } else {
                b.to_vec()
            };
            let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
            let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
            if k != k2 {
                return Err(InferError::Invalid(format!(
                    "inner dims differ: {a:?} x {b:?}"
                )));
            }
            let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
            if a.len() > 1 {
                out.push(m);
            }
            if b.len() > 1 {
                out.push(n);
            }
            Ok(vec![(DType::F32, out)])
        }
        Op::FusedMatMul {
            trans_a,
            trans_b,
            bias,
            residual,
            ..
        } => {
            let n_in = 2 + usize::from(*bias) + usize::from(*residual);
            want(n_in, types, n_in)?;
            for t in types {
                float(t, "operand")?;
            }
            let (a, b) = (types[0].1, types[1].1);
            if a.len() < 2 || b.len() < 2 {
                return Err(InferError::Invalid(format!(
                    "A and B must have rank >= 2, got {a:?} and {b:?}"
                )));
            }
            let last2 = |s: &[usize], t: bool| {
                let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
                if t { (c, r) } else { (r, c) }
            };
            let ((m, k), (k2, n)) = (last2(a, *trans_a), last2(b, *trans_b));
            if k != k2 {
                return Err(InferError::Invalid(format!(
                    "inner dims differ: A' is {m}x{k}, B' is {k2}x{n}"
                )));
            }
            let mut out = broadcast(&a[..a.len() - 2], &b[..b.len() - 2])?;
            out.extend([m, n]);
            for t in &types[2..] {
                if broadcast(t.1, &out)? != out {
                    return Err(InferError::Invalid(format!(
                        "bias/residual {:?} does not broadcast to {out:?}",
                        t.1
                    )));
                }
            }
            Ok(vec![(DType::F32, out)])
        }
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            want(3, types, 2)?;
            for t in types {
                float(t, "operand")?;
            }
            let (a, b) = (types[0].1, types[1].1);
            if a.len() != 2 || b.len() != 2 {
                return Err(InferError::Invalid(format!(
                    "A and B must be 2-D, got {a:?} and {b:?}"
                )));
            }
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(InferError::Invalid(format!(
                    "inner dims differ: A' is {m}x{k}, B' is {k2}x{n}"
                )));
            }
            if let Some(c) = types.get(2) {
                let bc = broadcast(c.1, &[m, n])?;
                if bc != [m, n] {
                    return Err(InferError::Invalid(format!(
                        "C {:?} does not broadcast to [{m}, {n}]",
                        c.1
                    )));
                }
            }
            Ok(vec![(DType::F32, vec![m, n])])
        }
        Op::Conv { window, group } => {
            want(3, types, 2)?;
            for t in types {
                float(t, "operand")?;
            }
            let (x, w) = (types[0].1, types[1].1);
            if x.len() < 3 || x.len() > 4 || w.len() != x.len() {
                return Err(InferError::Invalid(format!(
                    "X {x:?} and W {w:?} must both be 3-D or 4-D"
                )));
            }
            let g = *group;
            if g == 0 || x[1] % g != 0 || w[0] % g != 0 || x[1] / g != w[1] {
                return Err(InferError::Invalid(format!(
                    "channels do not fit: X has {} channels, W is {w:?}, group {g}",
                    x[1]
                )));
            }
            if window.kernel != w[2..] {
                return Err(InferError::Invalid(format!(
                    "kernel_shape {:?} differs from W's spatial dims {:?}",
                    window.kernel,
                    &w[2..]
                )));
            }
            if let Some(b) = types.get(2)
                && b.1 != [w[0]]
            {
                return Err(InferError::Invalid(format!(
                    "bias shape {:?} is not [{}]",
                    b.1, w[0]
                )));
            }
            let (_, out) = window.resolve(&x[2..])?;
            let mut shape = vec![x[0], w[0]];
            shape.extend(out);
            Ok(vec![(DType::F32, shape)])
        }
        Op::FusedConv {
            window,
            group,
            bias,
            residual,
            ..
        } => {
            let n_conv = 2 + usize::from(*bias);
            let n_in = n_conv + usize::from(*residual);
            want(n_in, types, n_in)?;
            let conv = Op::Conv {
                window: window.clone(),
                group: *group,
            };
            let out = infer(&conv, &types[..n_conv])?;
            if let Some(r) = types.get(n_conv) {
                float(r, "residual")?;
                if r.1 != out[0].1.as_slice() {
                    return Err(InferError::Invalid(format!(
                        "residual shape {:?} is not the output shape {:?}",
                        r.1, out[0].1
                    )));
                }
            }
            Ok(out)
        }
        Op::MaxPool { window } | Op::AveragePool { window, .. } => {
            want(1, types, 1)?;
            // The max of quantized values is exact: `fold-requant` pools u8/i8 directly.
            let int_max =
                matches!(op, Op::MaxPool { .. }) && matches!(types[0].0, DType::U8 | DType::I8);
            if !int_max {
                float(&types[0], "X")?;
            }
            let x = types[0].1;
            if x.len() < 3 || x.len() > 4 {
                return Err(InferError::Invalid(format!("X {x:?} must be 3-D or 4-D")));
            }
            let (_, out) = window.resolve(&x[2..])?;
            let mut shape = vec![x[0], x[1]];
            shape.extend(out);
            Ok(vec![(types[0].0, shape)])
        }
        Op::GlobalAveragePool => {
            want(1, types, 1)?;
            float(&types[0], "X")?;
            let x = types[0].1;
            if x.len() < 3 {
                return Err(InferError::Invalid(format!("X {x:?} must have rank >= 3")));
            }
            let mut shape = x.to_vec();
            for d in shape.iter_mut().skip(2) {
                *d = 1;
            }
            Ok(vec![(DType::F32, shape)])
        }
        Op::BatchNorm { .. } => {
            want(5, types, 5)?;
            for t in types {
                float(t, "operand")?;
            }
            let x = types[0].1;
            if x.len() < 2 {
                return Err(InferError::Invalid(format!("X {x:?} must have rank >= 2")));
            }
            for (i, t) in types.iter().enumerate().skip(1) {
                if t.1 != [x[1]] {
                    return Err(InferError::Invalid(format!(
                        "input {i} has shape {:?}, expected [{}]",
                        t.1, x[1]
                    )));
                }
            }
            Ok(vec![(DType::F32, x.to_vec())])
        }
        Op::Flatten { axis } => {
            want(1, types, 1)?;
            let x = types[0].1;
            let axis = flatten_axis(*axis, x.len())?;
            let outer: usize = x[..axis].iter().product();
            let inner: usize = x[axis..].iter().product();
            Ok(vec![(types[0].0, vec![outer, inner])])
        }
        Op::Reshape { shape, allowzero } => {
            want(1, types, 1)?;
            let x = types[0].1;
            Ok(vec![(types[0].0, reshape_target(x, shape, *allowzero)?)])
        }
        Op::Transpose { perm } => {
            want(1, types, 1)?;
            let x = types[0].1;
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len()
                || perm
                    .iter()
                    .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(InferError::Invalid(format!(
                    "perm {perm:?} is not a permutation of rank {}",
                    x.len()
                )));
            }
            Ok(vec![(types[0].0, perm.iter().map(|&p| x[p]).collect())])
        }
        Op::Concat { axis } => {
            if types.is_empty() {
                return Err(InferError::Invalid("expects at least one input".into()));
            }
            let r = types[0].1.len();
            let ax = dim_axis(*axis, r)?;
            let mut shape = types[0].1.to_vec();
            for t in &types[1..] {
                if t.0 != types[0].0 {
                    return Err(InferError::Invalid("inputs have different dtypes".into()));
                }
                if t.1.len() != r
                    || t.1
                        .iter()
                        .zip(types[0].1)
                        .enumerate()
                        .any(|(d, (a, b))| d != ax && a != b)
                {
                    return Err(InferError::Invalid(format!(
                        "input shapes {:?} and {:?} differ outside axis {ax}",
                        types[0].1, t.1
                    )));
                }
                shape[ax] += t.1[ax];
            }
            Ok(vec![(types[0].0, shape)])
        }
        Op::Einsum(eq) => {
            let first = types
                .first()
                .ok_or_else(|| InferError::Invalid("expects at least one input".into()))?;
            for t in types {
                if t.0 != first.0 {
                    return Err(InferError::Invalid(format!(
                        "input types differ: {} and {}",
                        first.0, t.0
                    )));
                }
                numeric(t, "input")?;
            }
            let shapes: Vec<&[usize]> = types.iter().map(|t| t.1).collect();
            Ok(vec![(first.0, eq.resolve(&shapes)?.output_shape())])
        }
        Op::CumSum { axis, .. } => {
            want(1, types, 1)?;
            numeric(&types[0], "input")?;
            norm_axis(*axis, types[0].1.len())?;
            Ok(vec![(types[0].0, types[0].1.to_vec())])
        }
        Op::Softmax { axis, .. } => {
            want(1, types, 1)?;
            float(&types[0], "input")?;
            norm_axis(*axis, types[0].1.len())?;
            Ok(vec![(DType::F32, types[0].1.to_vec())])
        }
        Op::AttentionSoftmax { .. } => {
            want(2, types, 1)?;
            for t in types {
                float(t, "operand")?;
            }
            let x = types[0].1;
            if x.is_empty() {
                return Err(InferError::Invalid("input must have an axis".into()));
            }
            if let Some(m) = types.get(1)
                && broadcast(m.1, x)? != x
            {
                return Err(InferError::Invalid(format!(
                    "mask {:?} does not broadcast to {x:?}",
                    m.1
                )));
            }
            Ok(vec![(DType::F32, x.to_vec())])
        }
    }
}

/// Flatten's axis in `0..=rank`.
pub fn flatten_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a > rank as i64 {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// The output shape of ONNX Reshape: 0 copies the input dim (unless `allowzero`), one -1 is
/// inferred.
pub fn reshape_target(x: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer_at = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err(format!("shape {shape:?} has more than one -1"));
                }
                out.push(1);
            }
            0 if !allowzero => {
                let d = *x
                    .get(i)
                    .ok_or_else(|| format!("shape {shape:?}: 0 at {i} has no input dim"))?;
                out.push(d);
            }
            s if s >= 0 => out.push(s as usize),
            _ => return Err(format!("shape {shape:?} has a negative dim")),
        }
    }
    check_size(&out).map_err(|e| format!("target {e}"))?;
    let known: usize = out.iter().product();
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {x:?} to {shape:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {x:?} ({total} elements) to {shape:?}"
        ));
    }
    Ok(out)
}
