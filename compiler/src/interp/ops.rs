//! One function per op. Shapes were checked by inference when the node was built; these
//! re-derive what they need and return `Err` rather than panic if handed something else.

use super::tensor_ops;
use crate::ir::infer::{broadcast, flatten_axis, norm_axis, reshape_target};
use crate::ir::{Act, Binary, DType, Data, Equation, Op, ReduceKind, Tensor, Unary, WindowAttrs};

type R = Result<Vec<Tensor>, String>;

fn f32s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32], String> {
    t.as_f32()
        .ok_or_else(|| format!("{what} must be f32, got {}", t.dtype))
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Strides that read `shape` as if broadcast to `out` (0 on broadcast dims).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let s = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|d| {
            if d < off || shape[d - off] == 1 {
                0
            } else {
                s[d - off]
            }
        })
        .collect()
}

fn dot(idx: &[usize], s: &[usize]) -> usize {
    idx.iter().zip(s).map(|(a, b)| a * b).sum()
}

pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Evaluates one op on concrete tensors.
pub fn eval(op: &Op, x: &[&Tensor]) -> R {
    let arg = |i: usize| -> Result<&Tensor, String> {
        x.get(i)
            .copied()
            .ok_or_else(|| format!("missing input {i}"))
    };
    match op {
        Op::Unary(u @ (Unary::Neg | Unary::Abs)) if arg(0)?.dtype != DType::F32 => {
            let t = arg(0)?;
            let v = t.to_i64s().ok_or("input must be numeric")?;
            let out = v.iter().map(|&x| {
                if *u == Unary::Neg {
                    x.wrapping_neg()
                } else {
                    x.wrapping_abs()
                }
            });
            tensor_ops::cast(&Tensor::i64(t.shape.clone(), out.collect()), t.dtype)
        }
        Op::Unary(u) => {
            let a = f32s(arg(0)?, "input")?;
            let f: fn(f32) -> f32 = match u {
                // NaN propagates, as in ONNX's max(0, x) reference.
                Unary::Relu => |v| if v > 0.0 || v.is_nan() { v } else { 0.0 },
                Unary::Sigmoid => sigmoid,
                Unary::Tanh => f32::tanh,
                Unary::Exp => f32::exp,
                Unary::Neg => |v| -v,
                Unary::Abs => f32::abs,
                Unary::Sqrt => f32::sqrt,
                Unary::Reciprocal => |v| 1.0 / v,
                Unary::Erf => |v| libm::erf(v as f64) as f32,
                Unary::Log => f32::ln,
            };
            Ok(vec![Tensor::f32(
                arg(0)?.shape.clone(),
                a.iter().map(|&v| f(v)).collect(),
            )])
        }
        Op::Clip { min, max } => {
            let a = f32s(arg(0)?, "input")?;
            let (lo, hi) = (*min, *max);
            let out = a
                .iter()
                .map(|&v| if v.is_nan() { v } else { v.max(lo).min(hi) })
                .collect();
            Ok(vec![Tensor::f32(arg(0)?.shape.clone(), out)])
        }
        Op::Binary(b) if arg(0)?.dtype == DType::F64 => {
            tensor_ops::f64_binary(*b, arg(0)?, arg(1)?)
        }
        Op::Binary(b) if arg(0)?.dtype != DType::F32 => {
            tensor_ops::int_binary(*b, arg(0)?, arg(1)?)
        }
        Op::Binary(Binary::Pow) if arg(1)?.dtype != DType::F32 => {
            let e = tensor_ops::cast(arg(1)?, DType::F32)?.remove(0);
            eval(&Op::Binary(Binary::Pow), &[arg(0)?, &e])
        }
        Op::Binary(b) => {
            let (ta, tb) = (arg(0)?, arg(1)?);
            let (a, bv) = (f32s(ta, "A")?, f32s(tb, "B")?);
            let shape = broadcast(&ta.shape, &tb.shape)?;
            let (sa, sb) = (
                broadcast_strides(&ta.shape, &shape),
                broadcast_strides(&tb.shape, &shape),
            );
            let f: fn(f32, f32) -> f32 = match b {
                Binary::Add => |p, q| p + q,
                Binary::Sub => |p, q| p - q,
                Binary::Mul => |p, q| p * q,
                Binary::Div => |p, q| p / q,
                Binary::Max => |p, q| {
                    if p.is_nan() || q.is_nan() {
                        f32::NAN
                    } else {
                        p.max(q)
                    }
                },
                Binary::Min => |p, q| {
                    if p.is_nan() || q.is_nan() {
                        f32::NAN
                    } else {
                        p.min(q)
                    }
                },
                Binary::Pow => f32::powf,
            };
            let mut out = vec![0.0; shape.iter().product()];
            super::tensor_ops::each_index(&shape, |i, idx| {
                out[i] = f(a[dot(idx, &sa)], bv[dot(idx, &sb)])
            });
            Ok(vec![Tensor::f32(shape, out)])
        }
        Op::MatMul => matmul(arg(0)?, arg(1)?),
        Op::FusedMatMul {
            alpha,
            trans_a,
            trans_b,
            bias,
            residual,
            act,
        } => fused_matmul(x, *alpha, [*trans_a, *trans_b], [*bias, *residual], *act),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => gemm(
            arg(0)?,
            arg(1)?,
            x.get(2).copied(),
            *alpha,
            *beta,
            *trans_a,
            *trans_b,
        ),
        Op::Conv { window, group } => conv(arg(0)?, arg(1)?, x.get(2).copied(), window, *group),
        Op::FusedConv {
            window,
            group,
            bias,
            residual,
            act,
        } => fused_conv(x, window, *group, [*bias, *residual], *act),
        Op::MaxPool { window } if matches!(arg(0)?.dtype, DType::U8 | DType::I8) => {
            // Pooled as f32 (exact for 8-bit values); an empty window gives the minimum.
            let t = arg(0)?;
            let (min, max) = if t.dtype == DType::U8 {
                (0.0, 255.0)
            } else {
                (-128.0, 127.0)
            };
            let f = tensor_ops::cast(t, DType::F32)?.remove(0);
            let pooled = pool(&f, window, None)?.remove(0);
            let v = pooled.as_f32().ok_or("pooling result")?.iter().map(|&x| {
                let x: f32 = if x.is_finite() { x } else { min };
                x.clamp(min, max) as i64
            });
            let data = if t.dtype == DType::U8 {
                Data::U8(v.map(|x| x as u8).collect())
            } else {
                Data::I8(v.map(|x| x as i8).collect())
            };
            Ok(vec![Tensor {
                dtype: t.dtype,
                shape: pooled.shape,
                data,
            }])
        }
        Op::MaxPool { window } => pool(arg(0)?, window, None),
        Op::AveragePool {
            window,
            count_include_pad,
        } => pool(arg(0)?, window, Some(*count_include_pad)),
        Op::GlobalAveragePool => {
            let t = arg(0)?;
            let a = f32s(t, "X")?;
            let planes = t.shape[0] * t.shape[1];
            let size: usize = t.shape[2..].iter().product();
            let out = (0..planes)
                .map(|p| {
                    let s: f64 = a[p * size..(p + 1) * size].iter().map(|&v| v as f64).sum();
                    (s / size as f64) as f32
                })
                .collect();
            let mut shape = t.shape.clone();
            for d in shape.iter_mut().skip(2) {
                *d = 1;
            }
            Ok(vec![Tensor::f32(shape, out)])
        }
        Op::BatchNorm { epsilon } => {
            let t = arg(0)?;
            let a = f32s(t, "X")?;
            let (scale, bias, mean, var) = (
                f32s(arg(1)?, "scale")?,
                f32s(arg(2)?, "B")?,
                f32s(arg(3)?, "mean")?,
                f32s(arg(4)?, "var")?,
            );
            let c = t.shape[1];
            let inner: usize = t.shape[2..].iter().product();
            let out = a
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = (i / inner) % c;
                    (v - mean[ch]) / (var[ch] + epsilon).sqrt() * scale[ch] + bias[ch]
                })
                .collect();
            Ok(vec![Tensor::f32(t.shape.clone(), out)])
        }
        Op::Flatten { axis } => {
            let t = arg(0)?;
            let axis = flatten_axis(*axis, t.shape.len())?;
            let outer = t.shape[..axis].iter().product();
            let inner = t.shape[axis..].iter().product();
            Ok(vec![reshaped(t, vec![outer, inner])])
        }
        Op::Reshape { shape, allowzero } => {
            let t = arg(0)?;
            Ok(vec![reshaped(
                t,
                reshape_target(&t.shape, shape, *allowzero)?,
            )])
        }
        Op::Identity => Ok(vec![arg(0)?.clone()]),
        Op::Transpose { perm } => {
            let t = arg(0)?;
            let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
            let s = strides(&t.shape);
            let ps: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
            let mut src = Vec::with_capacity(t.len());
            super::tensor_ops::each_index(&shape, |_, idx| src.push(dot(idx, &ps)));
            Ok(vec![gather(t, shape, &src)?])
        }
        Op::Concat { axis } => {
            let first = arg(0)?;
            let ax = norm_axis(*axis, first.shape.len())?;
            let mut shape = first.shape.clone();
            shape[ax] = x.iter().map(|t| t.shape[ax]).sum();
            let outer: usize = shape[..ax].iter().product();
            let mut parts: Vec<(usize, &Tensor)> = Vec::new();
            for t in x {
                parts.push((t.shape[ax..].iter().product(), t));
            }
            // Element sources as (input, flat index) pairs, then one typed gather.
            let mut src = Vec::new();
            for o in 0..outer {
                for (pi, (chunk, _)) in parts.iter().enumerate() {
                    for j in 0..*chunk {
                        src.push((pi, o * chunk + j));
                    }
                }
            }
            Ok(vec![concat_gather(x, first.dtype, shape, &src)?])
        }
        Op::HardSigmoid { alpha, beta } => {
            let t = arg(0)?;
            let a = f32s(t, "input")?;
            let out = a.iter().map(|&x| hard_sigmoid(x, *alpha, *beta)).collect();
            Ok(vec![Tensor::f32(t.shape.clone(), out)])
        }
        Op::HardSwish => {
            let t = arg(0)?;
            let a = f32s(t, "input")?;
            let out = a
                .iter()
                .map(|&x| x * hard_sigmoid(x, 1.0 / 6.0, 0.5))
                .collect();
            Ok(vec![Tensor::f32(t.shape.clone(), out)])
        }
        Op::Gelu { tanh } => {
            let t = arg(0)?;
            let a = f32s(t, "input")?;
            let out = a
                .iter()
                .map(|&x| {
                    let x = x as f64;
                    let y = if *tanh {
                        0.5 * x
                            * (1.0
                                + ((2.0 / std::f64::consts::PI).sqrt()
                                    * (x + 0.044715 * x * x * x))
                                    .tanh())
                    } else {
                        0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
                    };
                    y as f32
                })
                .collect();
            Ok(vec![Tensor::f32(t.shape.clone(), out)])
        }
        Op::LayerNorm {
            axis,
            epsilon,
            stats,
        } => {
            let t = arg(0)?;
            let a = f32s(t, "X")?;
            let ax = norm_axis(*axis, t.shape.len())?;
            let inner_shape = &t.shape[ax..];
            let len: usize = inner_shape.iter().product();
            let scale = arg(1)?;
            let sc = f32s(scale, "scale")?;
            let ss = broadcast_strides(&scale.shape, inner_shape);
            let bias = x.get(2).copied();
            let bs = bias.map(|b| broadcast_strides(&b.shape, inner_shape));
            let bv = bias.map(|b| f32s(b, "B")).transpose()?;
            let mut out = vec![0f32; a.len()];
            let (mut means, mut invs) = (Vec::new(), Vec::new());
            let mut idxs = Vec::with_capacity(len);
            super::tensor_ops::each_index(inner_shape, |_, idx| idxs.push(idx.to_vec()));
            let rows: usize = t.shape[..ax].iter().product();
            for row in 0..rows {
                let chunk = &a[row * len..(row + 1) * len];
                let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
                let var = chunk
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / len as f64;
                let inv = 1.0 / (var + *epsilon as f64).sqrt();
                means.push(mean as f32);
                invs.push(inv as f32);
                for (j, &v) in chunk.iter().enumerate() {
                    let mut y = (v as f64 - mean) * inv * sc[dot(&idxs[j], &ss)] as f64;
                    if let (Some(b), Some(s)) = (bv, &bs) {
                        y += b[dot(&idxs[j], s)] as f64;
                    }
                    out[row * len + j] = y as f32;
                }
            }
            let mut outs = vec![Tensor::f32(t.shape.clone(), out)];
            if *stats {
                let mut s = t.shape[..ax].to_vec();
                s.resize(t.shape.len(), 1);
                outs.push(Tensor::f32(s.clone(), means));
                outs.push(Tensor::f32(s, invs));
            }
            Ok(outs)
        }
        Op::Reduce {
            kind,
            axes,
            keepdims,
        } => {
            let t = arg(0)?;
            let (shape, groups) = tensor_ops::reduce_groups(&t.shape, axes.as_deref(), *keepdims)?;
            let v = t.to_f64s().ok_or("input must be numeric")?;
            let out: Vec<f64> = groups
                .iter()
                .map(|g| {
                    let it = g.iter().map(|&i| v[i]);
                    match kind {
                        ReduceKind::Sum => it.sum(),
                        ReduceKind::Mean => it.sum::<f64>() / g.len().max(1) as f64,
                        ReduceKind::Prod => it.product(),
                        ReduceKind::Max => it.fold(f64::NEG_INFINITY, |m, x| {
                            if x.is_nan() || m.is_nan() {
                                f64::NAN
                            } else {
                                m.max(x)
                            }
                        }),
                        ReduceKind::Min => it.fold(f64::INFINITY, |m, x| {
                            if x.is_nan() || m.is_nan() {
                                f64::NAN
                            } else {
                                m.min(x)
                            }
                        }),
                    }
                })
                .collect();
            let r = Tensor {
                dtype: DType::F64,
                shape,
                data: Data::F64(out),
            };
            if t.dtype == DType::I64 {
                // Integer sums stay exact in i64 (the f64 path is exact below 2^53).
                tensor_ops::cast(&r, DType::I64)
            } else {
                tensor_ops::cast(&r, t.dtype)
            }
        }
        Op::Compare(c) => tensor_ops::compare(*c, arg(0)?, arg(1)?),
        Op::Logic(l) => tensor_ops::logic(*l, arg(0)?, arg(1)?),
        Op::Not => tensor_ops::not(arg(0)?),
        Op::Where => tensor_ops::where_(arg(0)?, arg(1)?, arg(2)?),
        Op::Cast { to } => tensor_ops::cast(arg(0)?, *to),
        Op::QuantizeLinear { axis, to } => {
            super::quant::quantize(arg(0)?, arg(1)?, x.get(2).copied(), *axis, *to)
        }
        Op::DequantizeLinear { axis } => {
            super::quant::dequantize(arg(0)?, arg(1)?, x.get(2).copied(), *axis)
        }
        Op::QGemm { requant } => super::quant::qgemm(x, *requant),
        Op::QConv {
            window,
            group,
            requant,
        } => super::quant::qconv(x, window, *group, *requant),
        Op::QBinary(q) => super::quant::qbinary(arg(0)?, arg(1)?, q),
        Op::DynamicQuantizeLinear => super::quant::dynamic_quantize(arg(0)?),
        Op::MatMulInteger => {
            super::integer::matmul_integer(arg(0)?, arg(1)?, x.get(2).copied(), x.get(3).copied())
        }
        Op::ConvInteger { window, group } => super::integer::conv_integer(
            arg(0)?,
            arg(1)?,
            x.get(2).copied(),
            x.get(3).copied(),
            window,
            *group,
        ),
        Op::Shape { start, end } => tensor_ops::shape(arg(0)?, *start, *end),
        Op::Gather { axis } => tensor_ops::gather(arg(0)?, arg(1)?, *axis),
        Op::GatherElements { axis } => {
            let (data, idx) = (arg(0)?, arg(1)?);
            let i = idx.to_i64s().ok_or("indices must be integers")?;
            let src = tensor_ops::gather_elements_sources(&data.shape, &i, &idx.shape, *axis)?;
            Ok(vec![tensor_ops::take(data, idx.shape.clone(), &src, None)?])
        }
        Op::GatherND { batch_dims } => {
            let (data, idx) = (arg(0)?, arg(1)?);
            let i = idx.to_i64s().ok_or("indices must be integers")?;
            let rows = tensor_ops::gather_nd_rows(&data.shape, &i, &idx.shape, *batch_dims)?;
            let k = idx.shape.last().copied().unwrap_or(0);
            let tail = &data.shape[*batch_dims + k..];
            let slice: usize = tail.iter().product();
            let src: Vec<usize> = rows
                .iter()
                .flat_map(|&r| (0..slice).map(move |e| r * slice + e))
                .collect();
            let mut shape = idx.shape[..idx.shape.len() - 1].to_vec();
            shape.extend_from_slice(tail);
            Ok(vec![tensor_ops::take(data, shape, &src, None)?])
        }
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        } => tensor_ops::slice(arg(0)?, starts, ends, axes, steps),
        Op::Unsqueeze { .. } | Op::Squeeze { .. } => {
            let t = arg(0)?;
            let types = [(t.dtype, t.shape.as_slice())];
            let shape = crate::ir::infer::infer(op, &types)
                .map_err(|e| e.to_string())?
                .remove(0)
                .1;
            Ok(vec![tensor_ops::reshape(t, shape)])
        }
        Op::Expand { shape } => tensor_ops::expand(arg(0)?, shape),
        Op::Split { axis, sizes } => tensor_ops::split(arg(0)?, *axis, sizes),
        Op::Tile { repeats } => tensor_ops::tile(arg(0)?, repeats),
        Op::Pad { pads, mode, value } => tensor_ops::pad(arg(0)?, pads, *mode, *value),
        Op::Einsum(eq) => einsum(eq, x),
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        } => tensor_ops::cumsum(arg(0)?, *axis, *exclusive, *reverse),
        Op::AttentionSoftmax { scale } => {
            // Exactly the unfused ops: Mul, then Add, then Softmax over the last axis.
            let input = arg(0)?;
            let c = Tensor::f32(vec![], vec![*scale]);
            let mut t = eval(&Op::Binary(Binary::Mul), &[input, &c])?.remove(0);
            if let Some(&mask) = x.get(1) {
                t = eval(&Op::Binary(Binary::Add), &[&t, mask])?.remove(0);
            }
            let softmax = Op::Softmax {
                axis: -1,
                coerce_2d: false,
            };
            eval(&softmax, &[&t])
        }
        Op::Softmax { axis, coerce_2d } => {
            let t = arg(0)?;
            let a = f32s(t, "input")?;
            let ax = norm_axis(*axis, t.shape.len())?;
            let (outer, len, inner) = if *coerce_2d {
                (
                    t.shape[..ax].iter().product(),
                    t.shape[ax..].iter().product(),
                    1,
                )
            } else {
                (
                    t.shape[..ax].iter().product::<usize>(),
                    t.shape[ax],
                    t.shape[ax + 1..].iter().product::<usize>(),
                )
            };
            let mut out = vec![0.0f32; a.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let at = |k: usize| o * len * inner + k * inner + i;
                    let m = (0..len).map(|k| a[at(k)]).fold(f32::NEG_INFINITY, f32::max);
                    let sum: f64 = (0..len).map(|k| ((a[at(k)] - m) as f64).exp()).sum();
                    for k in 0..len {
                        out[at(k)] = (((a[at(k)] - m) as f64).exp() / sum) as f32;
                    }
                }
            }
            Ok(vec![Tensor::f32(t.shape.clone(), out)])
        }
    }
}

/// Einsum over any number of inputs, straight from the definition: for every output
/// index, the sum over every value of the summed labels of the product of the operands.
/// Floats accumulate in f64 and round once; integers accumulate in i64, wrapping.
fn einsum(eq: &Equation, x: &[&Tensor]) -> R {
    let shapes: Vec<&[usize]> = x.iter().map(|t| t.shape.as_slice()).collect();
    let r = eq.resolve(&shapes)?;
    let dtype = x.first().map(|t| t.dtype).ok_or("Einsum needs an input")?;
    if x.iter().any(|t| t.dtype != dtype) {
        return Err("Einsum inputs have different dtypes".into());
    }
    let strides: Vec<Vec<usize>> = x
        .iter()
        .enumerate()
        .map(|(i, t)| r.label_strides(i, &t.shape))
        .collect();
    let out_shape = r.output_shape();
    let summed = r.summed();
    let sum_shape: Vec<usize> = summed.iter().map(|&l| r.sizes[l]).collect();
    // Per input, the offset of every combination of the summed labels.
    let inner: Vec<Vec<usize>> = strides
        .iter()
        .map(|s| {
            let ls: Vec<usize> = summed.iter().map(|&l| s[l]).collect();
            let mut offs = Vec::with_capacity(sum_shape.iter().product());
            super::tensor_ops::each_index(&sum_shape, |_, idx| offs.push(dot(idx, &ls)));
            offs
        })
        .collect();
    let outer: Vec<Vec<usize>> = strides
        .iter()
        .map(|s| r.output.iter().map(|&l| s[l]).collect())
        .collect();
    let n_out: usize = out_shape.iter().product();
    let n_sum: usize = sum_shape.iter().product();
    let mut bases = vec![0usize; x.len()];
    if matches!(dtype, DType::F32 | DType::F64) {
        let vals: Vec<Vec<f64>> = x
            .iter()
            .map(|t| t.to_f64s().ok_or("Einsum input must be numeric"))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(n_out);
        super::tensor_ops::each_index(&out_shape, |_, idx| {
            for (b, o) in bases.iter_mut().zip(&outer) {
                *b = dot(idx, o);
            }
            let mut acc = 0f64;
            for c in 0..n_sum {
                let mut p = 1f64;
                for (i, v) in vals.iter().enumerate() {
                    p *= v[bases[i] + inner[i][c]];
                }
                acc += p;
            }
            out.push(acc);
        });
        let t = Tensor {
            dtype: DType::F64,
            shape: out_shape,
            data: Data::F64(out),
        };
        tensor_ops::cast(&t, dtype)
    } else {
        let vals: Vec<Vec<i64>> = x
            .iter()
            .map(|t| t.to_i64s().ok_or("Einsum input must be numeric"))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(n_out);
        super::tensor_ops::each_index(&out_shape, |_, idx| {
            for (b, o) in bases.iter_mut().zip(&outer) {
                *b = dot(idx, o);
            }
            let mut acc = 0i64;
            for c in 0..n_sum {
                let mut p = 1i64;
                for (i, v) in vals.iter().enumerate() {
                    p = p.wrapping_mul(v[bases[i] + inner[i][c]]);
                }
                acc = acc.wrapping_add(p);
            }
            out.push(acc);
        });
        tensor_ops::cast(&Tensor::i64(out_shape, out), dtype)
    }
}

fn reshaped(t: &Tensor, shape: Vec<usize>) -> Tensor {
    Tensor {
        dtype: t.dtype,
        shape,
        data: t.data.clone(),
    }
}

/// `out[i] = t[src[i]]`, for any dtype.
fn gather(t: &Tensor, shape: Vec<usize>, src: &[usize]) -> Result<Tensor, String> {
    macro_rules! g {
        ($v:expr, $k:ident) => {
            Data::$k(src.iter().map(|&i| $v[i].clone()).collect())
        };
    }
    let data = match &t.data {
        Data::F32(v) => g!(v, F32),
        Data::F64(v) => g!(v, F64),
        Data::I64(v) => g!(v, I64),
        Data::I32(v) => g!(v, I32),
        Data::I16(v) => g!(v, I16),
        Data::I8(v) => g!(v, I8),
        Data::U64(v) => g!(v, U64),
        Data::U32(v) => g!(v, U32),
        Data::U16(v) => g!(v, U16),
        Data::U8(v) => g!(v, U8),
        Data::Bool(v) => g!(v, Bool),
        Data::Str(v) => g!(v, Str),
        Data::C64(v) => g!(v, C64),
        Data::C128(v) => g!(v, C128),
        Data::Codes(v) => g!(v, Codes),
    };
    Ok(Tensor {
        dtype: t.dtype,
        shape,
        data,
    })
}

fn concat_gather(
    x: &[&Tensor],
    dtype: DType,
    shape: Vec<usize>,
    src: &[(usize, usize)],
) -> Result<Tensor, String> {
    macro_rules! g {
        ($k:ident) => {{
            let parts: Vec<&Vec<_>> = x
                .iter()
                .map(|t| match &t.data {
                    Data::$k(v) => Ok(v),
                    _ => Err("Concat inputs have different dtypes".to_string()),
                })
                .collect::<Result<_, _>>()?;
            Data::$k(src.iter().map(|&(p, i)| parts[p][i].clone()).collect())
        }};
    }
    let data = match &x[0].data {
        Data::F32(_) => g!(F32),
        Data::I64(_) => g!(I64),
        Data::I32(_) => g!(I32),
        Data::I8(_) => g!(I8),
        Data::U8(_) => g!(U8),
        Data::Bool(_) => g!(Bool),
        _ => return Err(format!("Concat of {dtype} is not supported")),
    };
    Ok(Tensor { dtype, shape, data })
}

fn matmul(ta: &Tensor, tb: &Tensor) -> R {
    let (a, b) = (f32s(ta, "A")?, f32s(tb, "B")?);
    let a_shape: Vec<usize> = if ta.shape.len() == 1 {
        vec![1, ta.shape[0]]
    } else {
        ta.shape.clone()
    };
    let b_shape: Vec<usize> = if tb.shape.len() == 1 {
        vec![tb.shape[0], 1]
    } else {
        tb.shape.clone()
    };
    let (ra, rb) = (a_shape.len(), b_shape.len());
    let (m, k, n) = (a_shape[ra - 2], a_shape[ra - 1], b_shape[rb - 1]);
    if b_shape[rb - 2] != k {
        return Err("inner dims differ".into());
    }
    let batch = broadcast(&a_shape[..ra - 2], &b_shape[..rb - 2])?;
    let sa = broadcast_strides(&a_shape[..ra - 2], &batch);
    let sb = broadcast_strides(&b_shape[..rb - 2], &batch);
    let nb: usize = batch.iter().product();
    let mut out = vec![0.0f32; nb * m * n];
    super::tensor_ops::each_index(&batch, |bi, idx| {
        let a0 = dot(idx, &sa) * m * k;
        let b0 = dot(idx, &sb) * k * n;
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += a[a0 + i * k + p] as f64 * b[b0 + p * n + j] as f64;
                }
                out[bi * m * n + i * n + j] = s as f32;
            }
        }
    });
    let mut shape = batch;
    if ta.shape.len() > 1 {
        shape.push(m);
    }
    if tb.shape.len() > 1 {
        shape.push(n);
    }
    Ok(vec![Tensor::f32(shape, out)])
}

/// `max(0, min(1, alpha·x + beta))`; NaN passes through (numpy's clip).
fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    let y = alpha * x + beta;
    if y.is_nan() { y } else { y.clamp(0.0, 1.0) }
}

/// [`Op::FusedMatMul`] as the ops it replaces, one after the other, so that it rounds
/// as they do: (transposes,) MatMul, the alpha scaling, Add bias, Add residual, the
/// activation's own op.
fn fused_matmul(x: &[&Tensor], alpha: f32, trans: [bool; 2], extra: [bool; 2], act: Act) -> R {
    let want = 2 + extra.iter().filter(|&&e| e).count();
    if x.len() != want {
        return Err(format!("expects {want} inputs, got {}", x.len()));
    }
    let operand = |i: usize| -> Result<Tensor, String> {
        let t = x[i];
        if t.shape.len() < 2 {
            return Err("A and B must have rank >= 2".into());
        }
        if !trans[i] {
            return Ok(t.clone());
        }
        let r = t.shape.len();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        first(eval(&Op::Transpose { perm }, &[t])?)
    };
    let (a, b) = (operand(0)?, operand(1)?);
    let mut y = first(matmul(&a, &b)?)?;
    if alpha != 1.0 {
        let v = f32s(&y, "product")?.iter().map(|&p| alpha * p).collect();
        y = Tensor::f32(y.shape.clone(), v);
    }
    for &addend in &x[2..] {
        let sum = first(eval(&Op::Binary(Binary::Add), &[&y, addend])?)?;
        if sum.shape != y.shape {
            return Err(format!(
                "bias/residual {:?} does not broadcast to {:?}",
                addend.shape, y.shape
            ));
        }
        y = sum;
    }
    if let Some(op) = act.op() {
        y = first(eval(&op, &[&y])?)?;
    }
    Ok(vec![y])
}

/// [`Op::FusedConv`] as the ops it replaces, one after the other: Conv (with its bias),
/// Add residual, the activation's own op.
fn fused_conv(x: &[&Tensor], window: &WindowAttrs, group: usize, extra: [bool; 2], act: Act) -> R {
    let n_conv = 2 + usize::from(extra[0]);
    let want = n_conv + usize::from(extra[1]);
    if x.len() != want {
        return Err(format!("expects {want} inputs, got {}", x.len()));
    }
    let mut y = first(conv(
        x[0],
        x[1],
        x.get(2).copied().filter(|_| extra[0]),
        window,
        group,
    )?)?;
    if extra[1] {
        let sum = first(eval(&Op::Binary(Binary::Add), &[&y, x[n_conv]])?)?;
        if sum.shape != y.shape {
            return Err(format!(
                "residual {:?} is not the output shape {:?}",
                x[n_conv].shape, y.shape
            ));
        }
        y = sum;
    }
    if let Some(op) = act.op() {
        y = first(eval(&op, &[&y])?)?;
    }
    Ok(vec![y])
}

fn first(mut v: Vec<Tensor>) -> Result<Tensor, String> {
    if v.is_empty() {
        return Err("op produced no output".into());
    }
    Ok(v.swap_remove(0))
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    ta: &Tensor,
    tb: &Tensor,
    tc: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
) -> R {
    let (a, b) = (f32s(ta, "A")?, f32s(tb, "B")?);
    let (m, k) = if trans_a {
        (ta.shape[1], ta.shape[0])
    } else {
        (ta.shape[0], ta.shape[1])
    };
    let n = if trans_b { tb.shape[0] } else { tb.shape[1] };
    let at = |i: usize, p: usize| if trans_a { a[p * m + i] } else { a[i * k + p] };
    let bt = |p: usize, j: usize| if trans_b { b[j * k + p] } else { b[p * n + j] };
    let c = match tc {
        Some(t) => Some((f32s(t, "C")?, broadcast_strides(&t.shape, &[m, n]))),
        None => None,
    };
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                s += at(i, p) as f64 * bt(p, j) as f64;
            }
            let mut v = alpha as f64 * s;
            if let Some((cv, cs)) = &c {
                v += beta as f64 * cv[i * cs[0] + j * cs[1]] as f64;
            }
            out[i * n + j] = v as f32;
        }
    }
    Ok(vec![Tensor::f32(vec![m, n], out)])
}

/// Input spatial dims as (h, w), treating 1-D as h = 1.
pub(crate) fn hw(shape: &[usize]) -> (usize, usize) {
    if shape.len() == 3 {
        (1, shape[2])
    } else {
        (shape[2], shape[3])
    }
}

/// (kernel, stride, dilation, pad_begin) per axis as (h, w) pairs for 1-D or 2-D windows.
pub(crate) struct Geo {
    pub(crate) k: (usize, usize),
    pub(crate) s: (usize, usize),
    pub(crate) d: (usize, usize),
    pub(crate) p: (usize, usize),
    /// End pads: positions past the input but before `in + end` count as padding.
    pub(crate) e: (usize, usize),
    pub(crate) o: (usize, usize),
}

pub(crate) fn geo(w: &WindowAttrs, in_shape: &[usize]) -> Result<Geo, String> {
    let (pads, out) = w.resolve(&in_shape[2..])?;
    Ok(if w.kernel.len() == 1 {
        Geo {
            k: (1, w.kernel[0]),
            s: (1, w.strides[0]),
            d: (1, w.dilations[0]),
            p: (0, pads[0]),
            e: (0, pads[1]),
            o: (1, out[0]),
        }
    } else {
        Geo {
            k: (w.kernel[0], w.kernel[1]),
            s: (w.strides[0], w.strides[1]),
            d: (w.dilations[0], w.dilations[1]),
            p: (pads[0], pads[1]),
            e: (pads[2], pads[3]),
            o: (out[0], out[1]),
        }
    })
}

pub(crate) fn out_shape(in_shape: &[usize], c: usize, o: (usize, usize)) -> Vec<usize> {
    if in_shape.len() == 3 {
        vec![in_shape[0], c, o.1]
    } else {
        vec![in_shape[0], c, o.0, o.1]
    }
}

fn conv(tx: &Tensor, tw: &Tensor, tb: Option<&Tensor>, w: &WindowAttrs, group: usize) -> R {
    let (x, wt) = (f32s(tx, "X")?, f32s(tw, "W")?);
    let bias = tb.map(|t| f32s(t, "B")).transpose()?;
    let (n, c) = (tx.shape[0], tx.shape[1]);
    let (h, wd) = hw(&tx.shape);
    let co = tw.shape[0];
    let cpg = c / group;
    let opg = co / group;
    let g = geo(w, &tx.shape)?;
    let (oh, ow) = g.o;
    let mut out = vec![0.0f32; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            let grp = o / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias.map_or(0.0, |bv| bv[o] as f64);
                    for ci in 0..cpg {
                        let ch = grp * cpg + ci;
                        for ky in 0..g.k.0 {
                            let iy = (oy * g.s.0 + ky * g.d.0) as isize - g.p.0 as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..g.k.1 {
                                let ix = (ox * g.s.1 + kx * g.d.1) as isize - g.p.1 as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((b * c + ch) * h + iy as usize) * wd + ix as usize];
                                let wv = wt[((o * cpg + ci) * g.k.0 + ky) * g.k.1 + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((b * co + o) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    Ok(vec![Tensor::f32(out_shape(&tx.shape, co, g.o), out)])
}

/// Max pooling when `avg` is None, else average pooling with `count_include_pad`.
fn pool(tx: &Tensor, w: &WindowAttrs, avg: Option<bool>) -> R {
    let x = f32s(tx, "X")?;
    let (n, c) = (tx.shape[0], tx.shape[1]);
    let (h, wd) = hw(&tx.shape);
    let g = geo(w, &tx.shape)?;
    let (oh, ow) = g.o;
    let mut out = vec![0.0f32; n * c * oh * ow];
    for p in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut mx = f32::NEG_INFINITY;
                let mut sum = 0f64;
                let mut count = 0usize;
                let mut padded = 0usize;
                for ky in 0..g.k.0 {
                    let iy = (oy * g.s.0 + ky * g.d.0) as isize - g.p.0 as isize;
                    for kx in 0..g.k.1 {
                        let ix = (ox * g.s.1 + kx * g.d.1) as isize - g.p.1 as isize;
                        // The window position counts towards count_include_pad if it
                        // lies within the padded input (not past the end pad, which
                        // ceil_mode can reach).
                        let in_padded = iy < (h + g.e.0) as isize && ix < (wd + g.e.1) as isize;
                        if iy < 0 || iy >= h as isize || ix < 0 || ix >= wd as isize {
                            if in_padded {
                                padded += 1;
                            }
                            continue;
                        }
                        let v = x[(p * h + iy as usize) * wd + ix as usize];
                        mx = if v.is_nan() || mx.is_nan() {
                            f32::NAN
                        } else {
                            mx.max(v)
                        };
                        sum += v as f64;
                        count += 1;
                    }
                }
                out[(p * oh + oy) * ow + ox] = match avg {
                    None => mx,
                    Some(include_pad) => {
                        let div = if include_pad { count + padded } else { count };
                        (sum / div.max(1) as f64) as f32
                    }
                };
            }
        }
    }
    Ok(vec![Tensor::f32(out_shape(&tx.shape, c, g.o), out)])
}

/// All elements of `parts` in order, as one flat tensor of their common dtype.
pub fn concat_data(parts: &[&Tensor]) -> Result<Tensor, String> {
    let n: usize = parts.iter().map(|t| t.len()).sum();
    let src: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, t)| (0..t.len()).map(move |i| (p, i)))
        .collect();
    concat_gather(parts, parts[0].dtype, vec![n], &src)
}
