//! Quantized nodes: the integer GEMM and convolution `fold-requant` makes become
//! [`Kernel::QGemm`] and [`Kernel::QConv`], its integer Add and Mul [`Kernel::QBinary`]
//! (operands broadcast by stride-0 views, in place when an operand dies there); the QuantizeLinear and DequantizeLinear left at
//! the edges of float islands run as a conversion plus one elementwise kernel, computing
//! exactly what the interpreter does (the scale divides, rounding is half to even).

use edgecc_program::{
    self as p, Buffer, ConstId, ExprNode, Kernel, QuantOut, UnaryOp, View, ZeroPoint,
};

use super::{Builder, Loc, dense, geometry, unsupported};
use crate::Error;
use crate::ir::infer::norm_axis;
use crate::ir::{DType, NodeIndex, QBinaryAttrs, Requant, Tensor, ValueId, WindowAttrs};

impl Builder<'_> {
    /// A view of a quantization parameter (scalar, or 1-D along `axis`) broadcast over
    /// `shape`: stride 1 on the axis when there is one value per channel.
    fn param_view(&self, buf: Buffer, len: usize, shape: &[usize], axis: i64) -> View {
        let mut strides = vec![0i64; shape.len()];
        if len > 1
            && let Ok(a) = norm_axis(axis, shape.len())
        {
            strides[a] = 1;
        }
        View {
            buf,
            offset: 0,
            strides,
        }
    }

    /// A zero point as f32: a constant converted now, or a computed one converted by a
    /// kernel into a temp. The caller touches the location when the kernel reading it is
    /// built, so the temp lives until then.
    fn zero_point_f32(&mut self, zp: ValueId) -> Result<Loc, Error> {
        let val = self.g.value(zp);
        let len = val.num_elements();
        if let Some(t) = self.g.konst(zp) {
            let v = t.to_i64s().unwrap_or_default();
            let f = Tensor::f32(t.shape.clone(), v.iter().map(|&z| z as f32).collect());
            let id = self.konst(format!("{}.f32", val.name), f);
            return Ok(Loc::Const(id));
        }
        let from = val
            .dtype
            .to_program()
            .ok_or_else(|| Error::Model(format!("zero point of type {}", val.dtype)))?;
        let input = self.buf(zp);
        let t = self.temp(len as u64 * 4);
        let output = self.touch(t);
        self.kernels.push(Kernel::Convert {
            count: len as u64,
            from,
            to: p::DType::F32,
            input,
            output,
        });
        Ok(t)
    }

    /// `saturate(round_half_even(x / scale) + zero_point)`: one elementwise kernel into an
    /// f32 temp holding whole numbers within the target range, then a conversion (exact).
    pub(super) fn quantize_linear(
        &mut self,
        n: NodeIndex,
        axis: i64,
        to: DType,
    ) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (x, scale, out) = (node.inputs[0], node.inputs[1], node.outputs[0]);
        let shape = self.shape(x).to_vec();
        let count = shape.iter().product::<usize>() as u64;
        let (lo, hi, pt) = match to {
            DType::U8 => (0.0, 255.0, p::DType::U8),
            DType::I8 => (-128.0, 127.0, p::DType::I8),
            other => return Err(unsupported(g, n, format!("QuantizeLinear to {other}"))),
        };
        if count == 0 {
            return Ok(());
        }
        let nparams = g.value(scale).num_elements();
        let zp = match node.inputs.get(2) {
            Some(&z) => Some(self.zero_point_f32(z)?),
            None => None,
        };
        let xv = self.dview(x);
        let sbuf = self.buf(scale);
        let sv = self.param_view(sbuf, nparams, &shape, axis);
        let mut inputs = vec![xv, sv];
        let mut expr = vec![
            ExprNode::Input(0),
            ExprNode::Input(1),
            ExprNode::Binary(p::BinaryOp::Div, 0, 1),
            ExprNode::Unary(UnaryOp::Round, 2),
        ];
        if let Some(z) = zp {
            let z = self.touch(z);
            inputs.push(self.param_view(z, nparams, &shape, axis));
            expr.push(ExprNode::Input(2));
            expr.push(ExprNode::Binary(p::BinaryOp::Add, 3, 4));
        }
        let last = expr.len() as u32 - 1;
        expr.push(ExprNode::Clip { x: last, lo, hi });
        let t = self.temp(count * 4);
        let tbuf = self.touch(t);
        self.kernels.push(Kernel::Elementwise {
            shape: shape.iter().map(|&d| d as u64).collect(),
            inputs,
            expr,
            output: View {
                buf: tbuf,
                offset: 0,
                strides: dense(&shape),
            },
        });
        let input = self.touch(t);
        let output = self.buf(out);
        self.kernels.push(Kernel::Convert {
            count,
            from: p::DType::F32,
            to: pt,
            input,
            output,
        });
        Ok(())
    }

    /// `(x − zero_point) · scale`: a conversion into the f32 output, then one elementwise
    /// kernel in place.
    pub(super) fn dequantize_linear(&mut self, n: NodeIndex, axis: i64) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (x, scale, out) = (node.inputs[0], node.inputs[1], node.outputs[0]);
        let shape = self.shape(x).to_vec();
        let count = shape.iter().product::<usize>() as u64;
        let dtype = g.value(x).dtype;
        let from = dtype
            .to_program()
            .ok_or_else(|| unsupported(g, n, format!("DequantizeLinear from {dtype}")))?;
        if count == 0 {
            return Ok(());
        }
        let nparams = g.value(scale).num_elements();
        let zp = match node.inputs.get(2) {
            Some(&z) => Some(self.zero_point_f32(z)?),
            None => None,
        };
        let input = self.buf(x);
        let output = self.buf(out);
        self.kernels.push(Kernel::Convert {
            count,
            from,
            to: p::DType::F32,
            input,
            output,
        });
        let ov = self.dview(out);
        let sbuf = self.buf(scale);
        let mut inputs = vec![ov.clone(), self.param_view(sbuf, nparams, &shape, axis)];
        let expr = match zp {
            Some(z) => {
                let z = self.touch(z);
                inputs.push(self.param_view(z, nparams, &shape, axis));
                vec![
                    ExprNode::Input(0),
                    ExprNode::Input(2),
                    ExprNode::Binary(p::BinaryOp::Sub, 0, 1),
                    ExprNode::Input(1),
                    ExprNode::Binary(p::BinaryOp::Mul, 2, 3),
                ]
            }
            None => vec![
                ExprNode::Input(0),
                ExprNode::Input(1),
                ExprNode::Binary(p::BinaryOp::Mul, 0, 1),
            ],
        };
        self.kernels.push(Kernel::Elementwise {
            shape: shape.iter().map(|&d| d as u64).collect(),
            inputs,
            expr,
            output: ov,
        });
        Ok(())
    }

    /// ONNX DynamicQuantizeLinear as the interpreter computes it: the range of `x` widened
    /// to hold 0 (two reductions), `scale = (hi − lo)/255` (1 when the range is empty),
    /// `zero_point = round(clamp(−lo/scale, 0, 255))`, then QuantizeLinear's expression.
    /// Only the reductions treat NaN differently (they propagate it).
    pub(super) fn dynamic_quantize_linear(&mut self, n: NodeIndex) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let x = node.inputs[0];
        let [y, scale, zp] = node.outputs[..] else {
            return Err(unsupported(
                g,
                n,
                "DynamicQuantizeLinear without its three outputs",
            ));
        };
        let shape = self.shape(x).to_vec();
        let count = shape.iter().product::<usize>() as u64;
        if count == 0 {
            return Err(unsupported(
                g,
                n,
                "DynamicQuantizeLinear of an empty tensor",
            ));
        }
        let input = self.buf(x);
        let scalar = |buf: Buffer| View {
            buf,
            offset: 0,
            strides: vec![1],
        };
        let mut range = Vec::new();
        for op in [p::ReduceOp::Max, p::ReduceOp::Min] {
            let t = self.temp(4);
            let output = self.touch(t);
            self.kernels.push(Kernel::Reduce {
                op,
                outer: 1,
                len: count,
                inner: 1,
                input,
                output,
            });
            range.push(t);
        }
        let (max, min) = (self.touch(range[0]), self.touch(range[1]));
        let scale_buf = self.buf(scale);
        // `ind` is 1 exactly when hi − lo is 0: any positive f32 times 2^127 twice is ≥ 1.
        use ExprNode::{Binary as B, Const as C, Input as I};
        use p::BinaryOp::{Add, Div, Max, Min, Mul, Sub};
        self.kernels.push(Kernel::Elementwise {
            shape: vec![1],
            inputs: vec![scalar(max), scalar(min)],
            expr: vec![
                I(0),
                C(0.0),
                B(Max, 0, 1),
                I(1),
                B(Min, 3, 1),
                B(Sub, 2, 4),
                C(255.0),
                B(Div, 5, 6),
                C(2f32.powi(127)),
                B(Mul, 5, 8),
                B(Mul, 9, 8),
                C(1.0),
                B(Min, 10, 11),
                B(Sub, 11, 12),
                B(Add, 7, 13),
            ],
            output: scalar(scale_buf),
        });
        let zt = self.temp(4);
        let zbuf = self.touch(zt);
        let (min, scale_buf) = (self.touch(range[1]), self.buf(scale));
        self.kernels.push(Kernel::Elementwise {
            shape: vec![1],
            inputs: vec![scalar(min), scalar(scale_buf)],
            expr: vec![
                I(0),
                C(0.0),
                B(Min, 0, 1),
                I(1),
                B(Div, 2, 3),
                B(Sub, 1, 4),
                ExprNode::Clip {
                    x: 5,
                    lo: 0.0,
                    hi: 255.0,
                },
                ExprNode::Unary(UnaryOp::Round, 6),
            ],
            output: scalar(zbuf),
        });
        let (zsrc, zdst) = (self.touch(zt), self.buf(zp));
        self.kernels.push(Kernel::Convert {
            count: 1,
            from: p::DType::F32,
            to: p::DType::U8,
            input: zsrc,
            output: zdst,
        });
        // y = clamp(round(x / scale) + zero_point, 0, 255), as QuantizeLinear.
        let rank = shape.len();
        let bcast = |buf: Buffer| View {
            buf,
            offset: 0,
            strides: vec![0; rank],
        };
        let xv = self.dview(x);
        let (sb, zb) = (self.buf(scale), self.touch(zt));
        let t = self.temp(count * 4);
        let tbuf = self.touch(t);
        self.kernels.push(Kernel::Elementwise {
            shape: shape.iter().map(|&d| d as u64).collect(),
            inputs: vec![xv, bcast(sb), bcast(zb)],
            expr: vec![
                I(0),
                I(1),
                B(Div, 0, 1),
                ExprNode::Unary(UnaryOp::Round, 2),
                I(2),
                B(Add, 3, 4),
                ExprNode::Clip {
                    x: 5,
                    lo: 0.0,
                    hi: 255.0,
                },
            ],
            output: View {
                buf: tbuf,
                offset: 0,
                strides: dense(&shape),
            },
        });
        let (src, dst) = (self.touch(t), self.buf(y));
        self.kernels.push(Kernel::Convert {
            count,
            from: p::DType::F32,
            to: p::DType::U8,
            input: src,
            output: dst,
        });
        Ok(())
    }

    /// A constant operand of an integer kernel, by id.
    fn const_operand(&mut self, n: NodeIndex, v: ValueId, what: &str) -> Result<ConstId, Error> {
        match self.loc(v) {
            Loc::Const(c) => Ok(c),
            _ => Err(unsupported(
                self.g,
                n,
                format!("the {what} is not a constant"),
            )),
        }
    }

    fn zero_point(&mut self, z: ValueId) -> ZeroPoint {
        match self.g.konst(z).and_then(|t| t.to_i64s()) {
            Some(v) => ZeroPoint::Const(v[0] as i32),
            None => ZeroPoint::Runtime(self.buf(z)),
        }
    }

    fn quant_out(
        &self,
        n: NodeIndex,
        requant: Option<Requant>,
        inputs: &[ValueId],
    ) -> Result<QuantOut, Error> {
        let Some(r) = requant else {
            return Ok(QuantOut::I32);
        };
        let mult = inputs
            .get(4)
            .and_then(|&m| self.g.konst(m))
            .and_then(|t| t.to_i64s())
            .ok_or_else(|| unsupported(self.g, n, "the multipliers are not a constant"))?;
        Ok(QuantOut::Requant(p::Requant {
            dtype: r
                .to
                .to_program()
                .ok_or_else(|| unsupported(self.g, n, format!("requantization to {}", r.to)))?,
            multiplier: mult.iter().map(|&m| m as i32).collect(),
            shift: r.shift,
            zero_point: r.zero_point,
            lo: r.lo,
            hi: r.hi,
        }))
    }

    pub(super) fn qgemm(&mut self, n: NodeIndex, requant: Option<Requant>) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let ins = &node.inputs;
        let out_v = node.outputs[0];
        let a_shape = self.shape(ins[0]).to_vec();
        let b_shape = self.shape(ins[2]).to_vec();
        let (k, nn) = (b_shape[0], b_shape[1]);
        let m = a_shape.iter().product::<usize>() / k.max(1);
        let out = self.quant_out(n, requant, ins)?;
        let b = self.const_operand(n, ins[2], "weight")?;
        let bias = self.const_operand(n, ins[3], "bias")?;
        let a_dtype = g.value(ins[0]).dtype.to_program().unwrap_or(p::DType::U8);
        let a_zero = self.zero_point(ins[1]);
        if m == 0 || nn == 0 {
            return Ok(());
        }
        let a = View {
            buf: self.buf(ins[0]),
            offset: 0,
            strides: vec![k as i64, 1],
        };
        let c = View {
            buf: self.buf(out_v),
            offset: 0,
            strides: vec![nn as i64, 1],
        };
        self.kernels.push(Kernel::QGemm {
            m: m as u32,
            n: nn as u32,
            k: k as u32,
            a,
            a_dtype,
            a_zero,
            b,
            bias: Some(bias),
            out,
            c,
        });
        Ok(())
    }

    pub(super) fn qconv(
        &mut self,
        n: NodeIndex,
        window: &WindowAttrs,
        group: usize,
        requant: Option<Requant>,
    ) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let ins = &node.inputs;
        let out_v = node.outputs[0];
        let xs = self.shape(ins[0]).to_vec();
        let ws = self.shape(ins[2]).to_vec();
        let out = self.quant_out(n, requant, ins)?;
        let weight = self.const_operand(n, ins[2], "weight")?;
        let bias = self.const_operand(n, ins[3], "bias")?;
        let in_dtype = g.value(ins[0]).dtype.to_program().unwrap_or(p::DType::U8);
        let in_zero = self.zero_point(ins[1]);
        let (spatial, win) = geometry(window, &xs)?;
        let scratch_bytes =
            Kernel::qconv_scratch_bytes(xs[1] as u32, ws[0] as u32, group as u32, &spatial, &win);
        let input = self.buf(ins[0]);
        let output = self.buf(out_v);
        let scratch = (scratch_bytes > 0).then(|| self.scratch(scratch_bytes));
        self.kernels.push(Kernel::QConv {
            c_in: xs[1] as u32,
            c_out: ws[0] as u32,
            groups: group as u32,
            spatial,
            window: win,
            input,
            in_dtype,
            in_zero,
            weight,
            bias: Some(bias),
            out,
            output,
            scratch,
        });
        Ok(())
    }

    /// [`crate::ir::Op::QBinary`] as one [`Kernel::QBinary`] over the output's shape: each
    /// operand a view with stride 0 on the dims it is broadcast along.
    pub(super) fn qbinary(&mut self, n: NodeIndex, q: &QBinaryAttrs) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (a, b, out) = (node.inputs[0], node.inputs[1], node.outputs[0]);
        let qp = q
            .to_program()
            .ok_or_else(|| unsupported(g, n, format!("quantized Add/Mul into {}", q.to)))?;
        let dtype = |v: ValueId| {
            let d = g.value(v).dtype;
            d.to_program()
                .ok_or_else(|| unsupported(g, n, format!("quantized Add/Mul of {d}")))
        };
        let (a_dtype, b_dtype) = (dtype(a)?, dtype(b)?);
        qp.check(a_dtype, b_dtype)
            .map_err(|e| unsupported(g, n, format!("quantized Add/Mul: {e}")))?;
        let shape = self.shape(out).to_vec();
        if shape.contains(&0) {
            return Ok(());
        }
        self.reuse_input(n, out, &[a, b]);
        let av = self.bview(a, &shape);
        let bv = self.bview(b, &shape);
        let output = self.dview(out);
        self.kernels.push(Kernel::QBinary {
            shape: shape.iter().map(|&d| d as u64).collect(),
            a: av,
            a_dtype,
            b: bv,
            b_dtype,
            q: qp,
            output,
        });
        Ok(())
    }
}
