//! QuantizeLinear and DequantizeLinear, exactly as the ONNX spec states them: quantizing
//! divides by the scale (not a multiply by its reciprocal, which rounds differently) and
//! rounds half to even before adding the zero point and saturating.

use crate::ir::infer::norm_axis;
use crate::ir::{DType, Data, QBinaryAttrs, Requant, Tensor, WindowAttrs};

type R = Result<Vec<Tensor>, String>;

/// For each element of `shape`, the index into a scalar or per-`axis` parameter of `n` values.
fn param_index(shape: &[usize], axis: i64, n: usize) -> Result<Vec<usize>, String> {
    let len: usize = shape.iter().product();
    if n == 1 {
        return Ok(vec![0; len]);
    }
    let a = norm_axis(axis, shape.len())?;
    if shape.get(a) != Some(&n) {
        return Err(format!(
            "{n} quantization parameters for dim {a} of shape {shape:?}"
        ));
    }
    let inner: usize = shape[a + 1..].iter().product();
    Ok((0..len).map(|i| (i / inner) % n).collect())
}

fn zero_points(zp: Option<&Tensor>, n: usize) -> Result<Vec<i64>, String> {
    match zp {
        None => Ok(vec![0; n]),
        Some(z) => {
            let v = z
                .to_i64s()
                .ok_or_else(|| format!("zero point of type {}", z.dtype))?;
            if v.len() != n {
                return Err(format!("{} zero points for {n} scales", v.len()));
            }
            Ok(v)
        }
    }
}

/// `saturate(round_half_even(x / scale) + zp)` into `to` (u8 or i8).
pub fn quantize(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64, to: DType) -> R {
    let xs = x.as_f32().ok_or("QuantizeLinear input must be f32")?;
    let scales = scale.as_f32().ok_or("QuantizeLinear scale must be f32")?;
    let zps = zero_points(zp, scales.len())?;
    let (lo, hi) = match to {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        other => return Err(format!("QuantizeLinear to {other} is not supported")),
    };
    let idx = param_index(&x.shape, axis, scales.len())?;
    let q = xs.iter().zip(&idx).map(|(&v, &i)| {
        let r = (v / scales[i]).round_ties_even() as f64 + zps[i] as f64;
        // NaN has no defined quantization; map it to 0 (clamped) rather than panic.
        if r.is_nan() {
            0.0f64.clamp(lo, hi)
        } else {
            r.clamp(lo, hi)
        }
    });
    let data = match to {
        DType::U8 => Data::U8(q.map(|v| v as u8).collect()),
        _ => Data::I8(q.map(|v| v as i8).collect()),
    };
    Ok(vec![Tensor {
        dtype: to,
        shape: x.shape.clone(),
        data,
    }])
}

/// `(x - zp) * scale` from u8, i8 or i32 into f32.
pub fn dequantize(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64) -> R {
    if !matches!(x.dtype, DType::U8 | DType::I8 | DType::I32) {
        return Err(format!(
            "DequantizeLinear from {} is not supported",
            x.dtype
        ));
    }
    let xs = x
        .to_i64s()
        .ok_or("DequantizeLinear input must be integer")?;
    let scales = scale.as_f32().ok_or("DequantizeLinear scale must be f32")?;
    let zps = zero_points(zp, scales.len())?;
    let idx = param_index(&x.shape, axis, scales.len())?;
    let v = xs
        .iter()
        .zip(&idx)
        // The difference is exact in i64; ONNX computes it in f32 then multiplies.
        .map(|(&q, &i)| (q - zps[i]) as f32 * scales[i])
        .collect();
    Ok(vec![Tensor::f32(x.shape.clone(), v)])
}

/// The int32 accumulators of `acc` stored as `requant` says (multipliers in `mult`, per
/// channel `c` of `channel(i)`), or as they are.
fn store(
    acc: Vec<i32>,
    shape: Vec<usize>,
    requant: Option<Requant>,
    mult: Option<&Tensor>,
    channel: impl Fn(usize) -> usize,
) -> R {
    let Some(r) = requant else {
        return Ok(vec![Tensor {
            dtype: DType::I32,
            shape,
            data: Data::I32(acc),
        }]);
    };
    let m = mult
        .and_then(|t| t.to_i64s())
        .ok_or("multipliers must be i32")?;
    let rq = edgecc_program::Requant {
        dtype: edgecc_program::DType::U8,
        multiplier: m.iter().map(|&v| v as i32).collect(),
        shift: r.shift,
        zero_point: r.zero_point,
        lo: r.lo,
        hi: r.hi,
    };
    let q = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| rq.apply(a, channel(i)));
    let data = match r.to {
        DType::U8 => Data::U8(q.map(|v| v as u8).collect()),
        DType::I8 => Data::I8(q.map(|v| v as i8).collect()),
        other => return Err(format!("requantization to {other}")),
    };
    Ok(vec![Tensor {
        dtype: r.to,
        shape,
        data,
    }])
}

fn ints(t: &Tensor, what: &str) -> Result<Vec<i64>, String> {
    t.to_i64s()
        .ok_or_else(|| format!("{what} must be integers"))
}

/// The int32 accumulators of an integer product plus the bias of each channel (wrapping,
/// like the kernels).
fn with_bias(
    acc: &Tensor,
    bias: &Tensor,
    channel: impl Fn(usize) -> usize,
) -> Result<Vec<i32>, String> {
    let (acc, bias) = (ints(acc, "accumulators")?, ints(bias, "bias")?);
    Ok(acc
        .iter()
        .enumerate()
        .map(|(i, &a)| (a as i32).wrapping_add(bias[channel(i)] as i32))
        .collect())
}

/// [`crate::ir::Op::QGemm`]: MatMulInteger's exact sums, the bias, the requantization.
pub fn qgemm(x: &[&Tensor], requant: Option<Requant>) -> R {
    let [a, za, b, bias, rest @ ..] = x else {
        return Err("QGemm needs a, a_zero, b and bias".into());
    };
    let n = b.shape.get(1).copied().unwrap_or(1).max(1);
    let sums = super::integer::matmul_integer(a, b, Some(za), None)?.remove(0);
    let acc = with_bias(&sums, bias, |i| i % n)?;
    store(acc, sums.shape, requant, rest.first().copied(), |i| i % n)
}

/// [`crate::ir::Op::QConv`]: ConvInteger's exact sums (taps outside the input add
/// nothing: the padding is the zero point), the bias, the requantization.
pub fn qconv(x: &[&Tensor], w: &WindowAttrs, group: usize, requant: Option<Requant>) -> R {
    let [tx, zx, tw, bias, rest @ ..] = x else {
        return Err("QConv needs x, x_zero, w and bias".into());
    };
    let sums = super::integer::conv_integer(tx, tw, Some(zx), None, w, group)?.remove(0);
    let co = tw.shape[0].max(1);
    let plane: usize = sums.shape[2..].iter().product::<usize>().max(1);
    let channel = |i: usize| (i / plane) % co;
    let acc = with_bias(&sums, bias, channel)?;
    store(acc, sums.shape, requant, rest.first().copied(), channel)
}

/// [`crate::ir::Op::QBinary`]: `edgecc_program::QBinary::apply` (the targets' definition)
/// on every element of the broadcast shape.
pub fn qbinary(a: &Tensor, b: &Tensor, q: &QBinaryAttrs) -> R {
    let program = q
        .to_program()
        .ok_or_else(|| format!("quantized Add/Mul into {}", q.to))?;
    let dtype = |t: &Tensor| {
        t.dtype
            .to_program()
            .ok_or_else(|| format!("quantized Add/Mul of {}", t.dtype))
    };
    program.check(dtype(a)?, dtype(b)?)?;
    let (x, y) = (
        a.to_i64s().ok_or("QAdd/QMul operands must be integers")?,
        b.to_i64s().ok_or("QAdd/QMul operands must be integers")?,
    );
    let shape = crate::ir::infer::broadcast(&a.shape, &b.shape)?;
    let (sa, sb) = (
        super::ops::broadcast_strides(&a.shape, &shape),
        super::ops::broadcast_strides(&b.shape, &shape),
    );
    let mut out = Vec::with_capacity(shape.iter().product());
    super::tensor_ops::each_index(&shape, |_, idx| {
        let at = |s: &[usize]| idx.iter().zip(s).map(|(i, s)| i * s).sum::<usize>();
        out.push(program.apply(x[at(&sa)] as i32, y[at(&sb)] as i32));
    });
    let data = match q.to {
        DType::U8 => Data::U8(out.iter().map(|&v| v as u8).collect()),
        _ => Data::I8(out.iter().map(|&v| v as i8).collect()),
    };
    Ok(vec![Tensor {
        dtype: q.to,
        shape,
        data,
    }])
}

/// ONNX DynamicQuantizeLinear in f32 as the spec (and onnxruntime) computes it: the range
/// widened to hold 0, `scale = (max - min) / 255` (1 for an all-zero input, as onnxruntime
/// does: the spec divides by zero there), `zero_point = round_half_even(clamp(0 - min /
/// scale, 0, 255))`, then QuantizeLinear with those.
pub fn dynamic_quantize(x: &Tensor) -> R {
    let xs = x
        .as_f32()
        .ok_or("DynamicQuantizeLinear input must be f32")?;
    let (lo, hi) = xs
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even() as u8;
    let scale_t = Tensor::f32(vec![], vec![scale]);
    let zp_t = Tensor {
        dtype: DType::U8,
        shape: vec![],
        data: Data::U8(vec![zp]),
    };
    let mut y = quantize(x, &scale_t, Some(&zp_t), 1, DType::U8)?;
    y.push(scale_t);
    y.push(zp_t);
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(xs: &[f32], scale: f32, zp: Option<Tensor>, to: DType) -> Vec<i64> {
        let x = Tensor::f32(vec![xs.len()], xs.to_vec());
        let s = Tensor::f32(vec![], vec![scale]);
        quantize(&x, &s, zp.as_ref(), 1, to).unwrap()[0]
            .to_i64s()
            .unwrap()
    }

    fn i8s(v: &[i8]) -> Tensor {
        Tensor {
            dtype: DType::I8,
            shape: vec![v.len()],
            data: Data::I8(v.to_vec()),
        }
    }

    fn u8s(v: &[u8]) -> Tensor {
        Tensor {
            dtype: DType::U8,
            shape: vec![v.len()],
            data: Data::U8(v.to_vec()),
        }
    }

    fn scalar(mut t: Tensor) -> Tensor {
        t.shape = vec![];
        t
    }

    #[test]
    fn rounds_ties_to_even() {
        let xs = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49, 2.51];
        assert_eq!(
            q(&xs, 1.0, Some(scalar(i8s(&[0]))), DType::I8),
            [0, 0, 2, -2, 2, -2, 0, 3]
        );
        // Ties after the zero point shift still round before the add.
        assert_eq!(
            q(&[0.5, 1.5, 2.5], 1.0, Some(scalar(u8s(&[10]))), DType::U8),
            [10, 12, 12]
        );
    }

    #[test]
    fn divides_by_the_scale() {
        // 5 / 2 = 2.5 ties to 2, 7 / 2 = 3.5 ties to 4.
        assert_eq!(q(&[5.0, 7.0], 2.0, None, DType::U8), [2, 4]);
        // 0.7 / 0.1 = 7.0 in f32 but 0.7 * (1 / 0.1) = 7.0000005: equal after rounding, so
        // check a tie that only the division produces: 0.25 / 0.1 = 2.5 exactly in f32.
        let div = (0.25f32 / 0.1f32).round_ties_even();
        assert_eq!(q(&[0.25], 0.1, None, DType::U8), [div as i64]);
    }

    #[test]
    fn saturates_at_both_ends() {
        assert_eq!(
            q(&[-1000.0, 1000.0, -0.6, 254.6], 1.0, None, DType::U8),
            [0, 255, 0, 255]
        );
        assert_eq!(
            q(&[-1000.0, 1000.0, -128.5, 127.5], 1.0, None, DType::I8),
            [-128, 127, -128, 127]
        );
        // The zero point shifts the range before saturating.
        assert_eq!(
            q(&[250.0, -5.0], 1.0, Some(scalar(u8s(&[10]))), DType::U8),
            [255, 5]
        );
    }

    #[test]
    fn per_axis_scales() {
        // Shape [2, 3], axis 0: row 0 with scale 1 / zp 1, row 1 with scale 2 / zp -1.
        let x = Tensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 2.0, 4.0, 5.0]);
        let s = Tensor::f32(vec![2], vec![1.0, 2.0]);
        let zp = i8s(&[1, -1]);
        let y = quantize(&x, &s, Some(&zp), 0, DType::I8).unwrap().remove(0);
        assert_eq!(y.to_i64s().unwrap(), [2, 3, 4, 0, 1, 1]);
        let back = dequantize(&y, &s, Some(&zp), 0).unwrap().remove(0);
        assert_eq!(back.as_f32().unwrap(), [1.0, 2.0, 3.0, 2.0, 4.0, 4.0]);
        // Axis 1 (the default) with three channels and a negative axis name the same dim.
        let s3 = Tensor::f32(vec![3], vec![1.0, 2.0, 4.0]);
        let a = quantize(&x, &s3, None, 1, DType::U8).unwrap().remove(0);
        let b = quantize(&x, &s3, None, -1, DType::U8).unwrap().remove(0);
        assert_eq!(a.to_i64s().unwrap(), [1, 1, 1, 2, 2, 1]);
        assert_eq!(a.to_i64s(), b.to_i64s());
        // A parameter count that fits no dim is an error, not a panic.
        let s5 = Tensor::f32(vec![5], vec![1.0; 5]);
        assert!(quantize(&x, &s5, None, 1, DType::U8).is_err());
    }

    #[test]
    fn dequantizes_i32_and_without_zero_point() {
        let x = Tensor {
            dtype: DType::I32,
            shape: vec![3],
            data: Data::I32(vec![-3, 0, 1 << 20]),
        };
        let s = Tensor::f32(vec![], vec![0.5]);
        let y = dequantize(&x, &s, None, 1).unwrap().remove(0);
        assert_eq!(y.as_f32().unwrap(), [-1.5, 0.0, 524288.0]);
    }

    fn dynamic(xs: &[f32]) -> (Vec<i64>, f32, i64) {
        let y = dynamic_quantize(&Tensor::f32(vec![xs.len()], xs.to_vec())).unwrap();
        assert_eq!((y[1].shape.len(), y[2].shape.len()), (0, 0));
        (
            y[0].to_i64s().unwrap(),
            y[1].as_f32().unwrap()[0],
            y[2].to_i64s().unwrap()[0],
        )
    }

    /// The three examples of the ONNX spec (onnx/backend/test/case/node/dynamicquantizelinear.py).
    #[test]
    fn dynamic_quantize_spec_examples() {
        let (y, s, z) = dynamic(&[0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
        assert_eq!((s, z), (5.0f32 / 255.0, 153));
        assert_eq!(y, [153, 255, 0, 26, 221, 179]);
        // All negative: the range is widened to include 0, so the zero point is 255.
        let (y, s, z) = dynamic(&[-1.0, -2.1, -1.3, -2.5, -3.34, -4.0]);
        assert_eq!((s, z), (4.0f32 / 255.0, 255));
        assert_eq!(y, [191, 121, 172, 96, 42, 0]);
        // All positive: zero point 0.
        let (y, s, z) = dynamic(&[
            1.0, 2.1, 1.3, 2.5, 3.34, 4.0, 1.5, 2.6, 3.9, 4.0, 3.0, 2.345,
        ]);
        assert_eq!((s, z), (4.0f32 / 255.0, 0));
        assert_eq!(y, [64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149]);
    }

    #[test]
    fn dynamic_quantize_of_zeros_has_scale_one() {
        assert_eq!(dynamic(&[0.0, 0.0]), (vec![0, 0], 1.0, 0));
    }
}
