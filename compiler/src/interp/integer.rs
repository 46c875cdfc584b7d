//! MatMulInteger and ConvInteger: u8/i8 operands with their zero points subtracted, products
//! summed exactly in i64 and stored as i32 (the spec's output type; a sum that does not fit
//! is an error rather than a silent wrap).

use super::ops::{broadcast_strides, geo, hw, out_shape};
use crate::ir::infer::broadcast;
use crate::ir::{DType, Data, Tensor, WindowAttrs};

type R = Result<Vec<Tensor>, String>;

fn int8s(t: &Tensor, what: &str) -> Result<Vec<i64>, String> {
    match t.dtype {
        DType::U8 | DType::I8 => t
            .to_i64s()
            .ok_or_else(|| format!("{what}: unreadable {}", t.dtype)),
        other => Err(format!("{what} must be u8 or i8, got {other}")),
    }
}

fn i32_tensor(shape: Vec<usize>, v: Vec<i64>) -> R {
    let v = v
        .into_iter()
        .map(|s| i32::try_from(s).map_err(|_| format!("sum {s} overflows i32")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![Tensor {
        dtype: DType::I32,
        shape,
        data: Data::I32(v),
    }])
}

/// `x - zp` for every element of `x` (of shape `shape`), the zero point broadcast to it.
/// A 1-D zero point of A (`row`) names rows, so it reads as `[M, 1]`.
fn centred(x: &Tensor, zp: Option<&Tensor>, row: bool, what: &str) -> Result<Vec<i64>, String> {
    let mut v = int8s(x, what)?;
    let Some(z) = zp else { return Ok(v) };
    let zs = int8s(z, what)?;
    if zs.len() == 1 {
        v.iter_mut().for_each(|e| *e -= zs[0]);
        return Ok(v);
    }
    let shape = if x.shape.len() == 1 {
        vec![1, x.shape[0]]
    } else {
        x.shape.clone()
    };
    let zshape = if row && z.shape.len() == 1 {
        vec![z.shape[0], 1]
    } else {
        z.shape.clone()
    };
    if broadcast(&zshape, &shape)? != shape {
        return Err(format!(
            "{what}'s zero point {:?} does not fit {:?}",
            z.shape, x.shape
        ));
    }
    let zs_strides = broadcast_strides(&zshape, &shape);
    super::tensor_ops::each_index(&shape, |i, idx| {
        let zi: usize = idx.iter().zip(&zs_strides).map(|(a, b)| a * b).sum();
        v[i] -= zs[zi];
    });
    Ok(v)
}

/// ONNX MatMulInteger.
pub fn matmul_integer(ta: &Tensor, tb: &Tensor, za: Option<&Tensor>, zb: Option<&Tensor>) -> R {
    let a = centred(ta, za, true, "A")?;
    let b = centred(tb, zb, false, "B")?;
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
    if ra < 2 || rb < 2 {
        return Err("operands must have rank >= 1".into());
    }
    let (m, k, n) = (a_shape[ra - 2], a_shape[ra - 1], b_shape[rb - 1]);
    if b_shape[rb - 2] != k {
        return Err("inner dims differ".into());
    }
    let batch = broadcast(&a_shape[..ra - 2], &b_shape[..rb - 2])?;
    let sa = broadcast_strides(&a_shape[..ra - 2], &batch);
    let sb = broadcast_strides(&b_shape[..rb - 2], &batch);
    let nb: usize = batch.iter().product();
    let mut out = vec![0i64; nb * m * n];
    super::tensor_ops::each_index(&batch, |bi, idx| {
        let a0: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum::<usize>() * m * k;
        let b0: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum::<usize>() * k * n;
        for i in 0..m {
            for j in 0..n {
                out[bi * m * n + i * n + j] =
                    (0..k).map(|p| a[a0 + i * k + p] * b[b0 + p * n + j]).sum();
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
    i32_tensor(shape, out)
}

/// ONNX ConvInteger: a zero-padded convolution of the centred operands, which is the
/// spec's padding with the zero point.
pub fn conv_integer(
    tx: &Tensor,
    tw: &Tensor,
    zx: Option<&Tensor>,
    zw: Option<&Tensor>,
    w: &WindowAttrs,
    group: usize,
) -> R {
    if !(3..=4).contains(&tx.shape.len()) || tw.shape.len() != tx.shape.len() || group == 0 {
        return Err(format!("x {:?} and w {:?} do not fit", tx.shape, tw.shape));
    }
    let x = centred(tx, zx, false, "x")?;
    let wt = match zw {
        // One zero point per output channel: [M] read as [M, 1, 1(, 1)].
        Some(z) if z.len() > 1 => {
            let mut zshape = vec![1; tw.shape.len()];
            zshape[0] = z.len();
            let z = Tensor {
                shape: zshape,
                ..z.clone()
            };
            centred(tw, Some(&z), false, "w")?
        }
        _ => centred(tw, zw, false, "w")?,
    };
    let (n, c) = (tx.shape[0], tx.shape[1]);
    let (h, wd) = hw(&tx.shape);
    let co = tw.shape[0];
    let cpg = c / group;
    let opg = co / group;
    let g = geo(w, &tx.shape)?;
    let (oh, ow) = g.o;
    let mut out = vec![0i64; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            let grp = o / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0i64;
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
                                s += xv * wv;
                            }
                        }
                    }
                    out[((b * co + o) * oh + oy) * ow + ox] = s;
                }
            }
        }
    }
    i32_tensor(out_shape(&tx.shape, co, g.o), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::AutoPad;

    fn u8t(shape: Vec<usize>, v: &[u8]) -> Tensor {
        Tensor {
            dtype: DType::U8,
            shape,
            data: Data::U8(v.to_vec()),
        }
    }

    fn i8t(shape: Vec<usize>, v: &[i8]) -> Tensor {
        Tensor {
            dtype: DType::I8,
            shape,
            data: Data::I8(v.to_vec()),
        }
    }

    fn ints(r: R) -> (Vec<usize>, Vec<i64>) {
        let t = r.unwrap().remove(0);
        assert_eq!(t.dtype, DType::I32);
        (t.shape.clone(), t.to_i64s().unwrap())
    }

    /// The ONNX spec's example (onnx/backend/test/case/node/matmulinteger.py).
    #[test]
    fn matmul_integer_spec_example() {
        let a = u8t(vec![4, 3], &[11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]);
        let b = u8t(vec![3, 2], &[1, 4, 2, 5, 3, 6]);
        let za = u8t(vec![], &[12]);
        let zb = u8t(vec![], &[0]);
        let (shape, y) = ints(matmul_integer(&a, &b, Some(&za), Some(&zb)));
        assert_eq!(shape, [4, 2]);
        assert_eq!(y, [-38, -83, -44, -98, -50, -113, -56, -128]);
    }

    #[test]
    fn matmul_integer_per_row_and_column_zero_points() {
        // A [2,2] u8 with per-row zp [1, 2]; B [2,2] i8 with per-column zp [-1, 3].
        let a = u8t(vec![2, 2], &[1, 2, 3, 4]);
        let b = i8t(vec![2, 2], &[0, 4, 1, 5]);
        let za = u8t(vec![2], &[1, 2]);
        let zb = i8t(vec![2], &[-1, 3]);
        // A - za = [[0,1],[1,2]]; B - zb = [[1,1],[2,2]].
        let (_, y) = ints(matmul_integer(&a, &b, Some(&za), Some(&zb)));
        assert_eq!(y, [2, 2, 5, 5]);
        // The same zero points in the N-D forms [M,1] and [1,N].
        let za2 = u8t(vec![2, 1], &[1, 2]);
        let zb2 = i8t(vec![1, 2], &[-1, 3]);
        let (_, y2) = ints(matmul_integer(&a, &b, Some(&za2), Some(&zb2)));
        assert_eq!(y, y2);
        // Without zero points, and with batch broadcasting of a rank-1 B.
        let a3 = i8t(vec![2, 1, 2], &[-128, 127, 1, 1]);
        let b3 = i8t(vec![2], &[-128, -128]);
        let (shape, y3) = ints(matmul_integer(&a3, &b3, None, None));
        assert_eq!(shape, [2, 1]);
        assert_eq!(y3, [16384 - 16256, -256]);
    }

    fn window(kernel: Vec<usize>, pads: Vec<usize>) -> WindowAttrs {
        let r = kernel.len();
        WindowAttrs {
            kernel,
            strides: vec![1; r],
            dilations: vec![1; r],
            pads,
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        }
    }

    /// The ONNX spec's examples (onnx/backend/test/case/node/convinteger.py): padding with
    /// the zero point adds nothing.
    #[test]
    fn conv_integer_spec_examples() {
        let x = u8t(vec![1, 1, 3, 3], &[2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let w = u8t(vec![1, 1, 2, 2], &[1, 1, 1, 1]);
        let zx = u8t(vec![], &[1]);
        let (shape, y) = ints(conv_integer(
            &x,
            &w,
            Some(&zx),
            None,
            &window(vec![2, 2], vec![0; 4]),
            1,
        ));
        assert_eq!(shape, [1, 1, 2, 2]);
        assert_eq!(y, [12, 16, 24, 28]);
        let (shape, y) = ints(conv_integer(
            &x,
            &w,
            Some(&zx),
            None,
            &window(vec![2, 2], vec![1; 4]),
            1,
        ));
        assert_eq!(shape, [1, 1, 4, 4]);
        assert_eq!(y, [1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9]);
    }

    #[test]
    fn conv_integer_per_channel_weight_zero_point_and_groups() {
        // Two groups of one channel each, 1-D, kernel 2; w zp per output channel.
        let x = i8t(vec![1, 2, 3], &[1, 2, 3, -1, -2, -3]);
        let w = i8t(vec![2, 1, 2], &[5, 6, -5, -4]);
        let zw = i8t(vec![2], &[5, -5]);
        // Centred w: [[0, 1], [0, 1]] → y[o][i] = x[o][i + 1].
        let (shape, y) = ints(conv_integer(
            &x,
            &w,
            None,
            Some(&zw),
            &window(vec![2], vec![0, 0]),
            2,
        ));
        assert_eq!(shape, [1, 2, 2]);
        assert_eq!(y, [2, 3, -2, -3]);
    }

    /// MaxPool of u8/i8 (QOperator models pool quantized tensors) keeps the dtype and picks
    /// the exact maximum, padding never winning.
    #[test]
    fn max_pool_of_u8_and_i8() {
        let op = crate::ir::Op::MaxPool {
            window: window(vec![2, 2], vec![1, 1, 1, 1]),
        };
        let mut w = window(vec![2, 2], vec![1, 1, 1, 1]);
        w.strides = vec![2, 2];
        let op2 = crate::ir::Op::MaxPool { window: w };
        let x = u8t(vec![1, 1, 2, 2], &[0, 255, 7, 3]);
        let y = crate::interp::eval(&op, &[&x]).unwrap().remove(0);
        assert_eq!(y.dtype, DType::U8);
        assert_eq!(y.shape, [1, 1, 3, 3]);
        assert_eq!(y.to_i64s().unwrap(), [0, 255, 255, 7, 255, 255, 7, 7, 3]);
        let x = i8t(vec![1, 1, 2, 2], &[-128, -5, -7, -100]);
        let y = crate::interp::eval(&op2, &[&x]).unwrap().remove(0);
        assert_eq!(y.dtype, DType::I8);
        assert_eq!(y.to_i64s().unwrap(), [-128, -5, -7, -100]);
    }
}
