//! Softmax and reductions over the middle axis of a dense `[outer, len, inner]` tensor.
//!
//! With `inner == 1` each reduced row is contiguous: it is walked with f32x4 vectors
//! (lane-wise partial results, combined across lanes at the end) plus a scalar tail.
//! With `inner > 1` four neighbouring columns are reduced at once, one vector per step of
//! the axis (stride `inner`), and the `inner mod 4` last columns one at a time.
//! Max and Min propagate NaN; Prod multiplies in the same lane-wise order Sum adds.
//! Softmax is three passes (max, `exp(x − max)` stored and summed, divide), so it also
//! works in place.

use cranelift_codegen::ir::{InstBuilder, Value, types};
use edgecc_program::ReduceOp;

use crate::fx::{Fx, W};
use crate::math;

/// Folds `len` elements at `p`, `p + stride`, ... (bytes) with width `w`.
fn fold(
    fx: &mut Fx,
    w: W,
    p: Value,
    len: u64,
    stride: i64,
    init: Value,
    f: &mut dyn FnMut(&mut Fx, Value, Value, Value) -> Value,
) -> Value {
    fx.for_n(len, &[init], |fx, i, c| {
        let q = fx.addp_scaled(p, i, stride);
        let x = fx.load_w(w, q, 0, 4, false);
        vec![f(fx, q, x, c[0])]
    })[0]
}

/// Folds a contiguous row: vectors, then lanes combined by `comb`, then a scalar tail.
#[allow(clippy::too_many_arguments)]
fn fold_row(
    fx: &mut Fx,
    p: Value,
    len: u64,
    neutral: f32,
    f: &mut dyn FnMut(&mut Fx, W, Value, Value, Value) -> Value,
    comb: fn(&mut Fx, W, Value) -> Value,
) -> Value {
    let v0 = fx.fconst(W::V4, neutral);
    let acc = fold(fx, W::V4, p, len / 4, 16, v0, &mut |fx, q, x, a| {
        f(fx, W::V4, q, x, a)
    });
    let mut s = comb(fx, W::V4, acc);
    let tail = fx.addp(p, (len / 4 * 16) as i64);
    for t in 0..len % 4 {
        let q = fx.addp(tail, t as i64 * 4);
        let x = fx.load_w(W::S1, q, 0, 4, false);
        s = f(fx, W::S1, q, x, s);
    }
    s
}

fn sum_lanes(fx: &mut Fx, w: W, v: Value) -> Value {
    fx.hsum(w, v)
}
fn max_lanes(fx: &mut Fx, w: W, v: Value) -> Value {
    fx.hmax(w, v)
}

/// `a op x` for one step of a reduction. Max and Min are Cranelift's `fmax`/`fmin`, which
/// return NaN when either operand is NaN, as the interpreter does (`Fx::max`, one
/// instruction on x64, would drop a NaN accumulator).
fn reduce_step(fx: &mut Fx, op: ReduceOp, a: Value, x: Value) -> Value {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => fx.b.ins().fadd(a, x),
        ReduceOp::Max => fx.b.ins().fmax(a, x),
        ReduceOp::Min => fx.b.ins().fmin(a, x),
        ReduceOp::Prod => fx.b.ins().fmul(a, x),
    }
}

/// The four lanes of `v` combined by `op` (pairwise, like `Fx::hsum`).
fn reduce_lanes(fx: &mut Fx, op: ReduceOp, w: W, v: Value) -> Value {
    if w == W::S1 {
        return v;
    }
    let l: Vec<Value> = (0..4u8).map(|i| fx.b.ins().extractlane(v, i)).collect();
    let a = reduce_step(fx, op, l[0], l[1]);
    let c = reduce_step(fx, op, l[2], l[3]);
    reduce_step(fx, op, a, c)
}

/// `out[o, i] = op over l of in[o, l, i]`.
pub(crate) fn emit_reduce(
    fx: &mut Fx,
    op: ReduceOp,
    outer: u64,
    len: u64,
    inner: u64,
    input: Value,
    output: Value,
) {
    let neutral = match op {
        ReduceOp::Sum | ReduceOp::Mean => 0.0,
        ReduceOp::Max => f32::NEG_INFINITY,
        ReduceOp::Min => f32::INFINITY,
        ReduceOp::Prod => 1.0,
    };
    let mut f = move |fx: &mut Fx, _w: W, _q: Value, x: Value, a: Value| reduce_step(fx, op, a, x);
    let finish = |fx: &mut Fx, w: W, v: Value| match op {
        ReduceOp::Mean => {
            let d = fx.fconst(w, len as f32);
            fx.b.ins().fdiv(v, d)
        }
        _ => v,
    };
    fx.for_n(outer, &[], |fx, o, _| {
        let src = fx.addp_scaled(input, o, (len * inner * 4) as i64);
        let dst = fx.addp_scaled(output, o, (inner * 4) as i64);
        if inner == 1 {
            let comb: fn(&mut Fx, W, Value) -> Value = match op {
                ReduceOp::Sum | ReduceOp::Mean => sum_lanes,
                ReduceOp::Max => |fx, w, v| reduce_lanes(fx, ReduceOp::Max, w, v),
                ReduceOp::Min => |fx, w, v| reduce_lanes(fx, ReduceOp::Min, w, v),
                ReduceOp::Prod => |fx, w, v| reduce_lanes(fx, ReduceOp::Prod, w, v),
            };
            let s = fold_row(fx, src, len, neutral, &mut f, comb);
            let s = finish(fx, W::S1, s);
            fx.store(s, dst, 0);
        } else {
            columns(fx, inner, |fx, w, col| {
                let p = fx.b.ins().iadd(src, col);
                let init = fx.fconst(w, neutral);
                let s = fold(
                    fx,
                    w,
                    p,
                    len,
                    (inner * 4) as i64,
                    init,
                    &mut |fx, q, x, a| f(fx, w, q, x, a),
                );
                let s = finish(fx, w, s);
                let q = fx.b.ins().iadd(dst, col);
                fx.store_w(w, s, q, 0, 4);
            });
        }
        vec![]
    });
}

/// Calls `body(w, byte offset of the column group)` for every 4-column group of a row of
/// `inner` columns (as a loop), then for each of the last `inner mod 4` columns.
fn columns(fx: &mut Fx, inner: u64, mut body: impl FnMut(&mut Fx, W, Value)) {
    let groups = inner / 4;
    fx.for_n(groups, &[], |fx, j, _| {
        let off = fx.b.ins().imul_imm_s(j, 16);
        body(fx, W::V4, off);
        vec![]
    });
    for t in 0..inner % 4 {
        let off = fx.iconst(((groups * 4 + t) * 4) as i64);
        body(fx, W::S1, off);
    }
}

/// The additive mask of a softmax as codegen sees it: the address of its element 0 and
/// its element strides over `[dims..., len, inner]`.
pub(crate) struct Mask<'a> {
    pub base: Value,
    pub dims: &'a [u64],
    pub strides: &'a [i64],
}

/// Calls `body(row index, mask row address)` for every row of the nested outer `dims`,
/// advancing the mask by its stride per dim.
fn mask_rows(
    fx: &mut Fx,
    dims: &[u64],
    strides: &[i64],
    row: Value,
    mask: Value,
    body: &mut dyn FnMut(&mut Fx, Value, Value),
) {
    let Some((&n, rest)) = dims.split_first() else {
        body(fx, row, mask);
        return;
    };
    let below: u64 = rest.iter().product();
    fx.for_n(n, &[], |fx, i, _| {
        let r = fx.b.ins().imul_imm_s(i, below as i64);
        let r = fx.b.ins().iadd(row, r);
        let m = fx.addp_scaled(mask, i, strides[0] * 4);
        mask_rows(fx, rest, &strides[1..], r, m, body);
        vec![]
    });
}

/// Softmax of the contiguous row at `src` into `dst` (which may be `src`).
fn softmax_row(fx: &mut Fx, src: Value, dst: Value, len: u64) {
    let m = fold_row(
        fx,
        src,
        len,
        f32::NEG_INFINITY,
        &mut |fx, w, _q, x, a| fx.max(w, a, x),
        max_lanes,
    );
    exp_and_divide(fx, src, dst, len, m);
}

/// The last two passes of a row softmax given its maximum `m`: `exp(x − m)` stored to
/// `dst` and summed, then `dst` divided by the sum.
fn exp_and_divide(fx: &mut Fx, src: Value, dst: Value, len: u64, m: Value) {
    // `q` points into the input; the exp is stored at the same offset of the output.
    let delta = fx.b.ins().isub(dst, src);
    let s = fold_row(
        fx,
        src,
        len,
        0.0,
        &mut |fx, w, q, x, a| {
            let mv = fx.splat(w, m);
            let d = fx.b.ins().fsub(x, mv);
            let e = math::exp(fx, w, d);
            let out = fx.b.ins().iadd(q, delta);
            fx.store(e, out, 0);
            fx.b.ins().fadd(a, e)
        },
        sum_lanes,
    );
    fold_row(
        fx,
        dst,
        len,
        0.0,
        &mut |fx, w, q, x, a| {
            let sv = fx.splat(w, s);
            let y = fx.b.ins().fdiv(x, sv);
            fx.store(y, q, 0);
            a
        },
        sum_lanes,
    );
}

/// Softmax of `scale · x + mask` over contiguous rows (`inner == 1`): a first pass
/// computes the scaled, masked row into `dst` (rounding each step to f32, as the
/// unfused Mul and Add would) and its maximum; the usual exp and divide passes then run
/// in place on `dst`.
fn emit_scaled_softmax(
    fx: &mut Fx,
    outer: u64,
    len: u64,
    input: Value,
    output: Value,
    scale: f32,
    mask: Option<Mask>,
) {
    let row_bytes = (len * 4) as i64;
    let (dims, strides, base) = match &mask {
        Some(m) => (m.dims.to_vec(), m.strides.to_vec(), m.base),
        // No mask: one outer dim, the mask pointer unused.
        None => (vec![outer], vec![0, 0, 0], input),
    };
    let k = dims.len();
    // Along the row the mask is contiguous (stride 1) or one value (stride 0).
    let along = if len > 1 { strides[k] } else { 0 };
    let zero = fx.iconst(0);
    mask_rows(fx, &dims, &strides, zero, base, &mut |fx, o, mrow| {
        let src = fx.addp_scaled(input, o, row_bytes);
        let dst = fx.addp_scaled(output, o, row_bytes);
        let to_dst = fx.b.ins().isub(dst, src);
        let to_mask = fx.b.ins().isub(mrow, src);
        let row_mask = (mask.is_some() && along == 0).then(|| fx.load(types::F32, mrow, 0, true));
        let m = fold_row(
            fx,
            src,
            len,
            f32::NEG_INFINITY,
            &mut |fx, w, q, x, a| {
                let mut t = x;
                if scale != 1.0 {
                    let c = fx.fconst(w, scale);
                    t = fx.b.ins().fmul(t, c);
                }
                if mask.is_some() {
                    let mv = match row_mask {
                        Some(v) => fx.splat(w, v),
                        None => {
                            let at = fx.b.ins().iadd(q, to_mask);
                            fx.load_w(w, at, 0, 4, true)
                        }
                    };
                    t = fx.b.ins().fadd(t, mv);
                }
                let out = fx.b.ins().iadd(q, to_dst);
                fx.store(t, out, 0);
                fx.max(w, a, t)
            },
            max_lanes,
        );
        exp_and_divide(fx, dst, dst, len, m);
    });
}

/// Softmax over the middle axis of `scale · input + mask`; the plain softmax (scale 1, no
/// mask) emits no multiply or add.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_softmax(
    fx: &mut Fx,
    outer: u64,
    len: u64,
    inner: u64,
    input: Value,
    output: Value,
    scale: f32,
    mask: Option<Mask>,
) {
    if scale != 1.0 || mask.is_some() {
        // The checker admits these only with inner == 1.
        emit_scaled_softmax(fx, outer, len, input, output, scale, mask);
        return;
    }
    fx.for_n(outer, &[], |fx, o, _| {
        let src = fx.addp_scaled(input, o, (len * inner * 4) as i64);
        let dst = fx.addp_scaled(output, o, (len * inner * 4) as i64);
        if inner == 1 {
            softmax_row(fx, src, dst, len);
        } else {
            let stride = (inner * 4) as i64;
            columns(fx, inner, |fx, w, col| {
                let p = fx.b.ins().iadd(src, col);
                let q = fx.b.ins().iadd(dst, col);
                let init = fx.fconst(w, f32::NEG_INFINITY);
                let m = fold(fx, w, p, len, stride, init, &mut |fx, _q, x, a| {
                    fx.max(w, a, x)
                });
                let delta = fx.b.ins().isub(q, p);
                let z = fx.fconst(w, 0.0);
                let s = fold(fx, w, p, len, stride, z, &mut |fx, at, x, a| {
                    let d = fx.b.ins().fsub(x, m);
                    let e = math::exp(fx, w, d);
                    let out = fx.b.ins().iadd(at, delta);
                    fx.store(e, out, 0);
                    fx.b.ins().fadd(a, e)
                });
                fold(fx, w, q, len, stride, s, &mut |fx, at, x, a| {
                    let y = fx.b.ins().fdiv(x, s);
                    fx.store(y, at, 0);
                    a
                });
            });
        }
        vec![]
    });
}

/// A layer norm's scale or bias as codegen sees it: the address of its element 0, and
/// whether it is one value for the whole row (stride 0) instead of one per element.
pub(crate) struct RowParam {
    pub base: Value,
    pub broadcast: bool,
}

/// A broadcast parameter, loaded once per kernel as a scalar and a vector.
enum Param {
    Row(Value),
    One(Value, Value),
}

impl Param {
    fn new(fx: &mut Fx, p: RowParam) -> Param {
        if p.broadcast {
            let s = fx.load(types::F32, p.base, 0, true);
            let v = fx.splat(W::V4, s);
            Param::One(s, v)
        } else {
            Param::Row(p.base)
        }
    }

    /// The parameter's lanes for the element of the row at `q`; `off` is the byte offset
    /// from the row's start to the parameter's element 0 (unused when broadcast).
    fn at(&self, fx: &mut Fx, w: W, q: Value, off: Option<Value>) -> Value {
        match *self {
            Param::One(s, v) => {
                if w == W::S1 {
                    s
                } else {
                    v
                }
            }
            Param::Row(_) => {
                let at = match off {
                    Some(off) => fx.b.ins().iadd(q, off),
                    None => q,
                };
                fx.load_w(w, at, 0, 4, true)
            }
        }
    }
}

/// Layer normalization of contiguous rows of `len` floats: one pass sums the row for its
/// mean, a second sums the squared deviations (the two-pass variance, as the reference
/// interpreter computes it, so no cancellation), a third writes
/// `(x − mean) · inv · scale + bias`. Every pass is f32x4 vectors plus a scalar tail with
/// one horizontal add per row, the same order as [`emit_reduce`]'s mean, so the
/// statistics equal those of the unfused Reduce kernels bit for bit. The last pass reads
/// each element before it writes it, so `output == input` works.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_layer_norm(
    fx: &mut Fx,
    outer: u64,
    len: u64,
    epsilon: f32,
    input: Value,
    output: Value,
    scale: Option<RowParam>,
    bias: Option<RowParam>,
    mean: Option<Value>,
    inv_std: Option<Value>,
) {
    let row_bytes = (len * 4) as i64;
    let scale = scale.map(|p| Param::new(fx, p));
    let bias = bias.map(|p| Param::new(fx, p));
    fx.for_n(outer, &[], |fx, o, _| {
        let src = fx.addp_scaled(input, o, row_bytes);
        let dst = fx.addp_scaled(output, o, row_bytes);
        let n = fx.fconst(W::S1, len as f32);
        let s = fold_row(
            fx,
            src,
            len,
            0.0,
            &mut |fx, _w, _q, x, a| fx.b.ins().fadd(a, x),
            sum_lanes,
        );
        let m = fx.b.ins().fdiv(s, n);
        let m4 = fx.splat(W::V4, m);
        let pick = |w: W, s: Value, v: Value| if w == W::S1 { s } else { v };
        let ss = fold_row(
            fx,
            src,
            len,
            0.0,
            &mut |fx, w, _q, x, a| {
                let d = fx.b.ins().fsub(x, pick(w, m, m4));
                let d2 = fx.b.ins().fmul(d, d);
                fx.b.ins().fadd(a, d2)
            },
            sum_lanes,
        );
        let var = fx.b.ins().fdiv(ss, n);
        let e = fx.fconst(W::S1, epsilon);
        let ve = fx.b.ins().fadd(var, e);
        let sd = fx.b.ins().sqrt(ve);
        let one = fx.fconst(W::S1, 1.0);
        let inv = fx.b.ins().fdiv(one, sd);
        let inv4 = fx.splat(W::V4, inv);
        // Byte offsets from the input row to the output row and to each parameter.
        let to_dst = fx.b.ins().isub(dst, src);
        let to_param = |fx: &mut Fx, p: &Option<Param>| match p {
            Some(Param::Row(base)) => Some(fx.b.ins().isub(*base, src)),
            _ => None,
        };
        let to_scale = to_param(fx, &scale);
        let to_bias = to_param(fx, &bias);
        fold_row(
            fx,
            src,
            len,
            0.0,
            &mut |fx, w, q, x, a| {
                let d = fx.b.ins().fsub(x, pick(w, m, m4));
                let mut y = fx.b.ins().fmul(d, pick(w, inv, inv4));
                if let Some(p) = &scale {
                    let g = p.at(fx, w, q, to_scale);
                    y = fx.b.ins().fmul(y, g);
                }
                if let Some(p) = &bias {
                    let b = p.at(fx, w, q, to_bias);
                    y = fx.b.ins().fadd(y, b);
                }
                let out = fx.b.ins().iadd(q, to_dst);
                fx.store(y, out, 0);
                a
            },
            sum_lanes,
        );
        if let Some(p) = mean {
            let at = fx.addp_scaled(p, o, 4);
            fx.store(m, at, 0);
        }
        if let Some(p) = inv_std {
            let at = fx.addp_scaled(p, o, 4);
            fx.store(inv, at, 0);
        }
        vec![]
    });
}
