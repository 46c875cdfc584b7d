//! Ops that work on any dtype or produce non-float results: data movement (Gather, Slice,
//! Expand, Tile, Pad, Split, Where), Cast, comparisons and logic, integer arithmetic for
//! shape computations. Everything goes through one index gather so every dtype is handled
//! the same way.

use super::ops::{broadcast_strides, strides};
use crate::ir::infer::{broadcast, norm_axis, reduce_axes, shape_range, slice_range};
use crate::ir::{Binary, Cmp, DType, Data, Logic, PadMode, Tensor};

type R = Result<Vec<Tensor>, String>;

/// Calls `f(flat, idx)` for every multi-index of `shape` in row-major order.
pub fn each_index(shape: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let n: usize = shape.iter().product();
    let mut idx = vec![0; shape.len()];
    for flat in 0..n {
        f(flat, &idx);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

fn dot(idx: &[usize], s: &[usize]) -> usize {
    idx.iter().zip(s).map(|(a, b)| a * b).sum()
}

/// `out[i] = t[src[i]]` for any dtype; `fill` (when given) is used for `usize::MAX` sources.
pub fn take(
    t: &Tensor,
    shape: Vec<usize>,
    src: &[usize],
    fill: Option<f64>,
) -> Result<Tensor, String> {
    macro_rules! g {
        ($v:expr, $k:ident, $conv:expr) => {{
            let fv = fill.map($conv);
            Data::$k(
                src.iter()
                    .map(|&i| {
                        if i == usize::MAX {
                            fv.clone().unwrap_or_default()
                        } else {
                            $v[i].clone()
                        }
                    })
                    .collect(),
            )
        }};
    }
    let data = match &t.data {
        Data::F32(v) => g!(v, F32, |x| x as f32),
        Data::F64(v) => g!(v, F64, |x| x),
        Data::I64(v) => g!(v, I64, |x| x as i64),
        Data::I32(v) => g!(v, I32, |x| x as i32),
        Data::I16(v) => g!(v, I16, |x| x as i16),
        Data::I8(v) => g!(v, I8, |x| x as i8),
        Data::U64(v) => g!(v, U64, |x| x as u64),
        Data::U32(v) => g!(v, U32, |x| x as u32),
        Data::U16(v) => g!(v, U16, |x| x as u16),
        Data::U8(v) => g!(v, U8, |x| x as u8),
        Data::Bool(v) => g!(v, Bool, |x| x != 0.0),
        Data::Str(v) => g!(v, Str, |_| Vec::new()),
        Data::C64(v) => g!(v, C64, |x| [x as f32, 0.0]),
        Data::C128(v) => g!(v, C128, |x| [x, 0.0]),
        Data::Codes(v) => g!(v, Codes, |_| 0u16),
    };
    Ok(Tensor {
        dtype: t.dtype,
        shape,
        data,
    })
}

pub fn reshape(t: &Tensor, shape: Vec<usize>) -> Tensor {
    Tensor {
        dtype: t.dtype,
        shape,
        data: t.data.clone(),
    }
}

/// Index sources of `t` broadcast to `shape`.
fn broadcast_sources(t: &Tensor, shape: &[usize]) -> Vec<usize> {
    let s = broadcast_strides(&t.shape, shape);
    let mut src = Vec::with_capacity(shape.iter().product());
    each_index(shape, |_, idx| src.push(dot(idx, &s)));
    src
}

pub fn expand(t: &Tensor, target: &[i64]) -> R {
    let target: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
    let shape = broadcast(&t.shape, &target)?;
    let src = broadcast_sources(t, &shape);
    Ok(vec![take(t, shape, &src, None)?])
}

pub fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> R {
    let ax = norm_axis(axis, data.shape.len())?;
    let idx = indices.to_i64s().ok_or("indices must be integers")?;
    let n = data.shape[ax] as i64;
    let outer: usize = data.shape[..ax].iter().product();
    let inner: usize = data.shape[ax + 1..].iter().product();
    let mut src = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in &idx {
            let i = if i < 0 { i + n } else { i };
            if i < 0 || i >= n {
                return Err(format!("index {i} out of range for dim of size {n}"));
            }
            for k in 0..inner {
                src.push((o * data.shape[ax] + i as usize) * inner + k);
            }
        }
    }
    let mut shape = data.shape[..ax].to_vec();
    shape.extend_from_slice(&indices.shape);
    shape.extend_from_slice(&data.shape[ax + 1..]);
    Ok(vec![take(data, shape, &src, None)?])
}

/// Resolves a possibly negative index into `0..n`.
fn resolve(i: i64, n: usize) -> Result<usize, String> {
    let r = if i < 0 { i + n as i64 } else { i };
    if r < 0 || r >= n as i64 {
        Err(format!("index {i} out of range for dim of size {n}"))
    } else {
        Ok(r as usize)
    }
}

/// GatherElements as flat positions in data: one per element of indices, row-major.
/// The compiled path turns these into a constant index table, so both share this.
pub fn gather_elements_sources(
    data_shape: &[usize],
    indices: &[i64],
    idx_shape: &[usize],
    axis: i64,
) -> Result<Vec<usize>, String> {
    let ax = norm_axis(axis, data_shape.len())?;
    let s = strides(data_shape);
    let mut src = Vec::with_capacity(indices.len());
    let mut err = None;
    each_index(idx_shape, |flat, idx| {
        match resolve(indices[flat], data_shape[ax]) {
            Ok(i) => src.push(dot(idx, &s) - idx[ax] * s[ax] + i * s[ax]),
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    });
    err.map_or(Ok(src), Err)
}

/// GatherND as rows of data viewed as `[prod(data_shape[..b+k]), slice]` (`k` the last
/// dim of indices, `slice` the product of the remaining data dims): one row per index
/// tuple, row-major over `idx_shape[..-1]`.
pub fn gather_nd_rows(
    data_shape: &[usize],
    indices: &[i64],
    idx_shape: &[usize],
    batch_dims: usize,
) -> Result<Vec<usize>, String> {
    let k = *idx_shape.last().ok_or("indices must have rank >= 1")?;
    let b = batch_dims;
    if b + k > data_shape.len() || b >= idx_shape.len() {
        return Err(format!(
            "indices {idx_shape:?} with batch_dims {b} do not fit data {data_shape:?}"
        ));
    }
    let tuples = indices.len() / k.max(1);
    let per_batch = tuples / idx_shape[..b].iter().product::<usize>().max(1);
    let dims = &data_shape[b..b + k];
    let rows_per_batch: usize = dims.iter().product();
    let s = strides(dims);
    (0..tuples)
        .map(|t| {
            let batch = t / per_batch.max(1);
            let mut row = batch * rows_per_batch;
            for j in 0..k {
                row += resolve(indices[t * k + j], dims[j])? * s[j];
            }
            Ok(row)
        })
        .collect()
}

pub fn slice(t: &Tensor, starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64]) -> R {
    let r = t.shape.len();
    let mut start = vec![0i64; r];
    let mut step = vec![1i64; r];
    let mut shape = t.shape.clone();
    for (i, &a) in axes.iter().enumerate() {
        let d = norm_axis(a, r)?;
        let (s, st, n) = slice_range(t.shape[d], starts[i], ends[i], steps[i])?;
        start[d] = s;
        step[d] = st;
        shape[d] = n;
    }
    let s = strides(&t.shape);
    let mut src = Vec::with_capacity(shape.iter().product());
    each_index(&shape, |_, idx| {
        let off: i64 = (0..r)
            .map(|d| (start[d] + idx[d] as i64 * step[d]) * s[d] as i64)
            .sum();
        src.push(off as usize);
    });
    Ok(vec![take(t, shape, &src, None)?])
}

pub fn split(t: &Tensor, axis: i64, sizes: &[usize]) -> R {
    let ax = norm_axis(axis, t.shape.len())?;
    let mut at = 0i64;
    let mut out = Vec::new();
    for &n in sizes {
        let end = at + n as i64;
        out.push(slice(t, &[at], &[end], &[ax as i64], &[1])?.remove(0));
        at = end;
    }
    Ok(out)
}

pub fn tile(t: &Tensor, repeats: &[usize]) -> R {
    let shape: Vec<usize> = t.shape.iter().zip(repeats).map(|(a, b)| a * b).collect();
    let s = strides(&t.shape);
    let mut src = Vec::with_capacity(shape.iter().product());
    each_index(&shape, |_, idx| {
        src.push(
            idx.iter()
                .zip(&t.shape)
                .zip(&s)
                .map(|((i, n), st)| (i % n) * st)
                .sum(),
        );
    });
    Ok(vec![take(t, shape, &src, None)?])
}

pub fn pad(t: &Tensor, pads: &[i64], mode: PadMode, value: f64) -> R {
    let r = t.shape.len();
    let shape: Vec<usize> = (0..r)
        .map(|d| (t.shape[d] as i64 + pads[d] + pads[d + r]) as usize)
        .collect();
    let s = strides(&t.shape);
    let mut src = Vec::with_capacity(shape.iter().product());
    let mut bad = false;
    each_index(&shape, |_, idx| {
        let mut off = 0usize;
        for d in 0..r {
            let n = t.shape[d] as i64;
            let mut i = idx[d] as i64 - pads[d];
            if i < 0 || i >= n {
                match mode {
                    PadMode::Constant => {
                        off = usize::MAX;
                        break;
                    }
                    _ if n == 0 => {
                        bad = true;
                        off = usize::MAX;
                        break;
                    }
                    PadMode::Edge => i = i.clamp(0, n - 1),
                    PadMode::Wrap => i = i.rem_euclid(n),
                    PadMode::Reflect => {
                        if n == 1 {
                            i = 0;
                        } else {
                            let period = 2 * (n - 1);
                            let m = i.rem_euclid(period);
                            i = if m < n { m } else { period - m };
                        }
                    }
                }
            }
            off += i as usize * s[d];
        }
        src.push(off);
    });
    if bad {
        return Err("cannot reflect or replicate an empty dim".into());
    }
    Ok(vec![take(t, shape, &src, Some(value))?])
}

pub fn where_(c: &Tensor, x: &Tensor, y: &Tensor) -> R {
    let Data::Bool(cv) = &c.data else {
        return Err("condition must be bool".into());
    };
    let shape = broadcast(&broadcast(&c.shape, &x.shape)?, &y.shape)?;
    let (sc, sx, sy) = (
        broadcast_strides(&c.shape, &shape),
        broadcast_strides(&x.shape, &shape),
        broadcast_strides(&y.shape, &shape),
    );
    // Gather from the concatenation [x, y].
    let both = super::ops::concat_data(&[x, y])?;
    let xl = x.len();
    let mut src = Vec::with_capacity(shape.iter().product());
    each_index(&shape, |_, idx| {
        src.push(if cv[dot(idx, &sc)] {
            dot(idx, &sx)
        } else {
            xl + dot(idx, &sy)
        });
    });
    Ok(vec![take(&both, shape, &src, None)?])
}

pub fn shape(t: &Tensor, start: i64, end: Option<i64>) -> R {
    Ok(vec![shape_of(&t.shape, start, end)])
}

/// Shape's result for a value of shape `shape`.
pub fn shape_of(shape: &[usize], start: i64, end: Option<i64>) -> Tensor {
    let (a, b) = shape_range(shape.len(), start, end);
    Tensor::i64(vec![b - a], shape[a..b].iter().map(|&d| d as i64).collect())
}

/// Element values as f64, for casts and comparisons (exact for every int up to 2^53).
fn as_f64(t: &Tensor) -> Result<Vec<f64>, String> {
    t.to_f64s()
        .ok_or_else(|| format!("{} is not numeric", t.dtype))
}

pub fn cast(t: &Tensor, to: DType) -> R {
    // Integers convert through i64 so large values stay exact; floats through f64.
    let ints = t
        .to_i64s()
        .filter(|_| !matches!(t.dtype, DType::F32 | DType::F64));
    let data = match to {
        DType::F32 => Data::F32(as_f64(t)?.into_iter().map(|x| x as f32).collect()),
        DType::F64 => Data::F64(as_f64(t)?),
        DType::Bool => Data::Bool(as_f64(t)?.into_iter().map(|x| x != 0.0).collect()),
        _ => {
            let v: Vec<i64> = match ints {
                Some(v) => v,
                None => as_f64(t)?.into_iter().map(|x| x as i64).collect(),
            };
            match to {
                DType::I64 => Data::I64(v),
                DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
                DType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
                DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
                DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
                DType::U16 => Data::U16(v.iter().map(|&x| x as u16).collect()),
                DType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
                DType::U64 => Data::U64(v.iter().map(|&x| x as u64).collect()),
                other => return Err(format!("Cast to {other} is not supported")),
            }
        }
    };
    Ok(vec![Tensor {
        dtype: to,
        shape: t.shape.clone(),
        data,
    }])
}

/// The broadcast shape of two tensors and the strides that read each of them in it.
type Zipped = (Vec<usize>, Vec<usize>, Vec<usize>);

fn zip_shape(a: &Tensor, b: &Tensor) -> Result<Zipped, String> {
    let shape = broadcast(&a.shape, &b.shape)?;
    let (sa, sb) = (
        broadcast_strides(&a.shape, &shape),
        broadcast_strides(&b.shape, &shape),
    );
    Ok((shape, sa, sb))
}

/// Elementwise arithmetic on f64 tensors (and Pow with an f64 exponent).
pub fn f64_binary(op: Binary, a: &Tensor, b: &Tensor) -> R {
    let (x, y) = (as_f64(a)?, as_f64(b)?);
    let (shape, sa, sb) = zip_shape(a, b)?;
    let mut out = Vec::with_capacity(shape.iter().product());
    each_index(&shape, |_, idx| {
        let (p, q) = (x[dot(idx, &sa)], y[dot(idx, &sb)]);
        out.push(match op {
            Binary::Add => p + q,
            Binary::Sub => p - q,
            Binary::Mul => p * q,
            Binary::Div => p / q,
            Binary::Max if p.is_nan() || q.is_nan() => f64::NAN,
            Binary::Max => p.max(q),
            Binary::Min if p.is_nan() || q.is_nan() => f64::NAN,
            Binary::Min => p.min(q),
            Binary::Pow => p.powf(q),
        });
    });
    Ok(vec![Tensor {
        dtype: DType::F64,
        shape,
        data: Data::F64(out),
    }])
}

/// Elementwise arithmetic on integer tensors (shape computations, token ids). Pow takes an
/// exponent of any numeric type; the result has the base's type.
pub fn int_binary(op: Binary, a: &Tensor, b: &Tensor) -> R {
    if op == Binary::Pow && matches!(b.dtype, DType::F32 | DType::F64) {
        let r = f64_binary(op, a, b)?.remove(0);
        return cast(&r, a.dtype);
    }
    let (x, y) = (
        a.to_i64s().ok_or("not integers")?,
        b.to_i64s().ok_or("not integers")?,
    );
    let (shape, sa, sb) = zip_shape(a, b)?;
    let mut out = Vec::with_capacity(shape.iter().product());
    let mut err = None;
    each_index(&shape, |_, idx| {
        let (p, q) = (x[dot(idx, &sa)], y[dot(idx, &sb)]);
        out.push(match op {
            Binary::Add => p.wrapping_add(q),
            Binary::Sub => p.wrapping_sub(q),
            Binary::Mul => p.wrapping_mul(q),
            Binary::Div if q == 0 => {
                err = Some("integer division by zero".to_string());
                0
            }
            // ONNX integer Div truncates toward zero, like C.
            Binary::Div => p.wrapping_div(q),
            Binary::Max => p.max(q),
            Binary::Min => p.min(q),
            Binary::Pow => (p as f64).powf(q as f64) as i64,
        });
    });
    if let Some(e) = err {
        return Err(e);
    }
    let t = Tensor::i64(shape, out);
    if a.dtype == DType::I64 {
        Ok(vec![t])
    } else {
        cast(&t, a.dtype)
    }
}

/// ONNX CumSum along `axis`. Each scan runs in order from its start (the last element
/// when `reverse`), one running sum per scan: f32 accumulates in f32 and f64 in f64, one
/// addition per element, as numpy's `cumsum`; integers accumulate in i64 with wrapping
/// adds and are narrowed at the end, which is two's complement wrapping in their own width.
/// With `exclusive` each output is the sum before its element is added (the first is 0).
pub fn cumsum(t: &Tensor, axis: i64, exclusive: bool, reverse: bool) -> R {
    let ax = norm_axis(axis, t.shape.len())?;
    let outer: usize = t.shape[..ax].iter().product();
    let len = t.shape.get(ax).copied().unwrap_or(1);
    let inner: usize = t.shape[(ax + 1).min(t.shape.len())..].iter().product();
    // The flat indices of one scan, in scan order.
    let scan = |o: usize, i: usize| {
        (0..len).map(move |k| {
            let k = if reverse { len - 1 - k } else { k };
            (o * len + k) * inner + i
        })
    };
    macro_rules! run {
        ($v:expr, $zero:expr, $add:expr) => {{
            let v = $v;
            let mut out = vec![$zero; v.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let mut acc = $zero;
                    for at in scan(o, i) {
                        let next = $add(acc, v[at]);
                        out[at] = if exclusive { acc } else { next };
                        acc = next;
                    }
                }
            }
            out
        }};
    }
    let shape = t.shape.clone();
    match &t.data {
        Data::F32(v) => Ok(vec![Tensor::f32(shape, run!(v, 0f32, |a, b| a + b))]),
        Data::F64(v) => Ok(vec![Tensor {
            dtype: DType::F64,
            shape,
            data: Data::F64(run!(v, 0f64, |a, b| a + b)),
        }]),
        _ if matches!(t.dtype, DType::I64 | DType::I32) => {
            let v = t.to_i64s().ok_or("not integers")?;
            let out = run!(v, 0i64, i64::wrapping_add);
            cast(&Tensor::i64(shape, out), t.dtype)
        }
        _ => Err(format!("CumSum of {} is not supported", t.dtype)),
    }
}

pub fn compare(op: Cmp, a: &Tensor, b: &Tensor) -> R {
    let (shape, sa, sb) = zip_shape(a, b)?;
    if let (Data::Str(x), Data::Str(y)) = (&a.data, &b.data) {
        if op != Cmp::Equal {
            return Err("strings compare only for equality".into());
        }
        let mut out = Vec::with_capacity(shape.iter().product());
        each_index(&shape, |_, idx| {
            out.push(x[dot(idx, &sa)] == y[dot(idx, &sb)])
        });
        return Ok(vec![Tensor::bool(shape, out)]);
    }
    // Integers compare as i64 (exact), everything else as f64.
    let ints = matches!(
        a.dtype,
        DType::I64
            | DType::I32
            | DType::I16
            | DType::I8
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::Bool
    );
    let mut out = Vec::with_capacity(shape.iter().product());
    if ints {
        let (x, y) = (
            a.to_i64s()
                .or_else(|| {
                    as_f64(a)
                        .ok()
                        .map(|v| v.iter().map(|&f| f as i64).collect())
                })
                .ok_or("not comparable")?,
            b.to_i64s()
                .or_else(|| {
                    as_f64(b)
                        .ok()
                        .map(|v| v.iter().map(|&f| f as i64).collect())
                })
                .ok_or("not comparable")?,
        );
        each_index(&shape, |_, idx| {
            out.push(cmp(op, x[dot(idx, &sa)].cmp(&y[dot(idx, &sb)]).into()))
        });
    } else {
        let (x, y) = (as_f64(a)?, as_f64(b)?);
        each_index(&shape, |_, idx| {
            out.push(cmp(op, x[dot(idx, &sa)].partial_cmp(&y[dot(idx, &sb)])));
        });
    }
    Ok(vec![Tensor::bool(shape, out)])
}

fn cmp(op: Cmp, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    match (op, o) {
        (_, None) => false,
        (Cmp::Equal, Some(o)) => o == Equal,
        (Cmp::Less, Some(o)) => o == Less,
        (Cmp::LessOrEqual, Some(o)) => o != Greater,
        (Cmp::Greater, Some(o)) => o == Greater,
        (Cmp::GreaterOrEqual, Some(o)) => o != Less,
    }
}

pub fn logic(op: Logic, a: &Tensor, b: &Tensor) -> R {
    let (Data::Bool(x), Data::Bool(y)) = (&a.data, &b.data) else {
        return Err("inputs must be bool".into());
    };
    let (shape, sa, sb) = zip_shape(a, b)?;
    let mut out = Vec::with_capacity(shape.iter().product());
    each_index(&shape, |_, idx| {
        let (p, q) = (x[dot(idx, &sa)], y[dot(idx, &sb)]);
        out.push(match op {
            Logic::And => p && q,
            Logic::Or => p || q,
            Logic::Xor => p != q,
        });
    });
    Ok(vec![Tensor::bool(shape, out)])
}

pub fn not(a: &Tensor) -> R {
    let Data::Bool(x) = &a.data else {
        return Err("input must be bool".into());
    };
    Ok(vec![Tensor::bool(
        a.shape.clone(),
        x.iter().map(|v| !v).collect(),
    )])
}

/// Output shape of a reduction and, per output element, the flat input indices it covers.
pub fn reduce_groups(
    shape: &[usize],
    axes: Option<&[i64]>,
    keepdims: bool,
) -> Result<(Vec<usize>, Vec<Vec<usize>>), String> {
    let set = reduce_axes(axes, shape.len())?;
    let kept: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(d, &n)| if set.contains(&d) { 1 } else { n })
        .collect();
    let s = strides(&kept);
    let mut groups = vec![Vec::new(); kept.iter().product()];
    each_index(shape, |flat, idx| {
        let o: usize = idx
            .iter()
            .zip(&s)
            .enumerate()
            .map(|(d, (i, st))| if set.contains(&d) { 0 } else { i * st })
            .sum();
        groups[o].push(flat);
    });
    let out = if keepdims {
        kept
    } else {
        shape
            .iter()
            .enumerate()
            .filter(|(d, _)| !set.contains(d))
            .map(|(_, &n)| n)
            .collect()
    };
    Ok((out, groups))
}
