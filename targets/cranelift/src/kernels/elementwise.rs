//! Elementwise kernels: an SSA expression evaluated over strided, broadcast views.
//!
//! Dimensions are simplified first (size-1 dimensions dropped, and a dimension merged
//! into the next inner one when every view is contiguous across the two), so broadcasts
//! and transposes keep their innermost run as long as possible. The innermost dimension
//! is vectorised when the output's inner stride is 1 and every input's is 0 or 1 (a
//! stride-0 input is one splat load), two vectors per iteration; its `len mod 4` tail
//! runs the same expression on scalars. Otherwise the innermost loop is scalar.

use edgecc_program::{Buffer, ExprNode, View};

use crate::error::{Error, unsupported};
use crate::fx::{Fx, W, bytes_of};
use crate::kernels::{check_expr, eval_expr};

/// A simplified loop dimension: its size and the byte stride of each view (inputs, then
/// the output).
struct Dim {
    size: u64,
    strides: Vec<i64>,
}

fn simplify(shape: &[u64], views: &[&View]) -> Result<Vec<Dim>, Error> {
    let mut dims: Vec<Dim> = Vec::new();
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let strides = views
            .iter()
            .map(|v| bytes_of(v.strides[d]))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(last) = dims.last_mut() {
            let mergeable = last
                .strides
                .iter()
                .zip(&strides)
                .all(|(&o, &i)| o == i * size as i64);
            if mergeable {
                last.size *= size;
                last.strides = strides;
                continue;
            }
        }
        dims.push(Dim { size, strides });
    }
    Ok(dims)
}

pub(crate) fn emit(
    fx: &mut Fx,
    shape: &[u64],
    inputs: &[View],
    expr: &[ExprNode],
    output: &View,
) -> Result<(), Error> {
    check_expr(expr, inputs.len())?;
    let views: Vec<&View> = inputs.iter().chain(std::iter::once(output)).collect();
    for v in &views {
        if v.strides.len() != shape.len() {
            return Err(unsupported(format!(
                "elementwise view has {} strides for rank {}",
                v.strides.len(),
                shape.len()
            )));
        }
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let dims = simplify(shape, &views)?;
    // An input may be hoisted and reordered unless it can share memory with the output
    // (in-place kernels, or two views into the arena).
    let readonly: Vec<bool> = inputs
        .iter()
        .map(|v| {
            !(v.buf == output.buf
                || matches!(
                    (v.buf, output.buf),
                    (Buffer::Arena { .. }, Buffer::Arena { .. })
                ))
        })
        .collect();
    let mut ptrs = Vec::with_capacity(views.len());
    for v in &views {
        let p = fx.buf(v.buf);
        ptrs.push(fx.addp(p, bytes_of(v.offset as i64)?));
    }
    level(fx, &dims, &ptrs, expr, &readonly);
    Ok(())
}

fn level(fx: &mut Fx, dims: &[Dim], ptrs: &[Value], expr: &[ExprNode], ro: &[bool]) {
    match dims {
        [] => {
            point(fx, W::S1, ptrs, &vec![0; ptrs.len()], expr, ro);
        }
        [inner] => innermost(fx, inner, ptrs, expr, ro),
        [outer, rest @ ..] => {
            fx.for_n(outer.size, &[], |fx, i, _| {
                let p: Vec<Value> = ptrs
                    .iter()
                    .zip(&outer.strides)
                    .map(|(&p, &s)| fx.addp_scaled(p, i, s))
                    .collect();
                level(fx, rest, &p, expr, ro);
                vec![]
            });
        }
    }
}

use cranelift_codegen::ir::Value;

/// Evaluates the expression at `ptrs` (one per view) with lane strides `lane` (bytes).
fn point(fx: &mut Fx, w: W, ptrs: &[Value], lane: &[i64], expr: &[ExprNode], ro: &[bool]) {
    let n_in = ptrs.len() - 1;
    let ins: Vec<Value> = (0..n_in)
        .map(|i| fx.load_w(w, ptrs[i], 0, lane[i], ro[i]))
        .collect();
    let r = eval_expr(fx, w, expr, &ins);
    fx.store_w(w, r, ptrs[n_in], 0, lane[n_in]);
}

fn innermost(fx: &mut Fx, d: &Dim, ptrs: &[Value], expr: &[ExprNode], ro: &[bool]) {
    let n_in = ptrs.len() - 1;
    let vector =
        d.size >= 4 && d.strides[n_in] == 4 && d.strides[..n_in].iter().all(|&s| s == 0 || s == 4);
    let (nvec, tail) = if vector {
        (d.size / 4, d.size % 4)
    } else {
        (0, d.size)
    };
    // Two vectors per iteration (halves the loop overhead and gives the scheduler two
    // independent chains), then an odd last vector.
    fx.for_n(nvec / 2, &[], |fx, i, _| {
        let p: Vec<Value> = ptrs
            .iter()
            .zip(&d.strides)
            .map(|(&p, &s)| fx.addp_scaled(p, i, 8 * s))
            .collect();
        point(fx, W::V4, &p, &d.strides, expr, ro);
        let q: Vec<Value> = p
            .iter()
            .zip(&d.strides)
            .map(|(&p, &s)| fx.addp(p, 4 * s))
            .collect();
        point(fx, W::V4, &q, &d.strides, expr, ro);
        vec![]
    });
    if nvec % 2 == 1 {
        let p: Vec<Value> = ptrs
            .iter()
            .zip(&d.strides)
            .map(|(&p, &s)| fx.addp(p, (nvec as i64 - 1) * 4 * s))
            .collect();
        point(fx, W::V4, &p, &d.strides, expr, ro);
    }
    let base: Vec<Value> = ptrs
        .iter()
        .zip(&d.strides)
        .map(|(&p, &s)| fx.addp(p, nvec as i64 * 4 * s))
        .collect();
    fx.for_n_unrolled(tail, 3, &[], |fx, i, _| {
        let p: Vec<Value> = base
            .iter()
            .zip(&d.strides)
            .map(|(&p, &s)| fx.addp_scaled(p, i, s))
            .collect();
        point(fx, W::S1, &p, &d.strides, expr, ro);
        vec![]
    });
}
