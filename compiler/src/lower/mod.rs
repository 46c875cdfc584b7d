//! Lowering: the optimized graph becomes a target-neutral [`Program`] — kernels over the
//! caller's buffers, constants and one planned arena.
//!
//! Done here, because every target wants it:
//! - shape-only ops (Reshape, Flatten, Identity) cost nothing: their output aliases the
//!   input's storage;
//! - an activation whose only reader is a GEMM/MatMul/Conv becomes that kernel's epilogue;
//! - BatchNormalization becomes one multiply-add with folded per-channel constants;
//! - a MatMul against a shared right-hand side folds its batch into M, so the GEMM is one
//!   big matrix product instead of many small ones;
//! - a FusedMatMul (the `fuse-epilogue` pass) is one GEMM whose epilogue adds the bias and
//!   the residual and applies the activation.

pub mod einsum;
mod fuse;
pub mod memory;
mod quant;

use std::collections::HashMap;

use edgecc_program::{
    self as p, ARENA_ALIGN, Activation, BinaryOp, Buffer, CmpOp, Const, ConstId, ExprNode,
    IoTensor, Kernel, LogicOp, PoolKind, Program, ReduceOp, SoftmaxMask, Spatial, UnaryOp, View,
    Window,
};

use crate::Error;
use crate::interp::ops::{broadcast_strides, strides};
use crate::ir::infer::{broadcast, norm_axis};
use crate::ir::{
    Act, Binary, Cmp, DType, Graph, Logic, NodeIndex, Op, PadMode, ReduceKind, Tensor, Unary,
    ValueId, WindowAttrs,
};

/// The lowered program with what the planner found.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub program: Program,
    /// Peak of simultaneously live arena bytes; the arena can be no smaller.
    pub arena_lower_bound: u64,
    /// The placement heuristic that gave the smallest arena.
    pub arena_heuristic: &'static str,
    /// Activations folded into a preceding kernel.
    pub fused_activations: usize,
    /// Elementwise kernels folded into the next one (see `fuse.rs`).
    pub merged_elementwise: usize,
    /// Elementwise kernels that run in place, in an input's storage.
    pub in_place: usize,
    /// For each kernel of the program, the graph nodes it computes (`Conv_3+Relu_4` when
    /// an activation was fused), or `output copy <name>`: how profiles and listings name
    /// kernels in the user's terms.
    pub kernel_nodes: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    Input(u32),
    Output(u32),
    Const(ConstId),
    /// An arena buffer, planned after all kernels are known.
    Temp(usize),
}

struct Temp {
    size: u64,
    first: usize,
    last: usize,
}

struct Builder<'g> {
    g: &'g Graph,
    loc: HashMap<ValueId, Loc>,
    consts: Vec<Const>,
    temps: Vec<Temp>,
    kernels: Vec<Kernel>,
    /// Activation nodes folded into their producer, skipped when reached.
    skip: Vec<NodeIndex>,
    fused: usize,
    /// Elementwise kernels that reuse an input's storage.
    in_place: usize,
    /// A one-byte constant `true`, made on first use (see `move_elements`).
    true_const: Option<ConstId>,
}

fn unsupported(g: &Graph, n: NodeIndex, why: impl Into<String>) -> Error {
    let node = g.node(n);
    Error::Unsupported(vec![crate::UnsupportedOp {
        node: node.name.clone(),
        op_type: node.op.name().into(),
        domain: String::new(),
        opset: 0,
        reason: Some(why.into()),
    }])
}

fn dense(shape: &[usize]) -> Vec<i64> {
    strides(shape).into_iter().map(|s| s as i64).collect()
}

impl<'g> Builder<'g> {
    /// Where a value lives, creating constants and temps on first sight.
    fn loc(&mut self, v: ValueId) -> Loc {
        if let Some(&l) = self.loc.get(&v) {
            return l;
        }
        let val = self.g.value(v);
        let l = if let Some(t) = &val.konst {
            let id = ConstId(self.consts.len() as u32);
            self.consts.push(Const {
                name: val.name.clone(),
                dtype: t.dtype.to_program().unwrap_or(p::DType::U8),
                shape: t.shape.iter().map(|&d| d as u64).collect(),
                data: t.to_le_bytes().unwrap_or_default(),
            });
            Loc::Const(id)
        } else {
            self.temps.push(Temp {
                size: val.byte_size() as u64,
                first: usize::MAX,
                last: 0,
            });
            Loc::Temp(self.temps.len() - 1)
        };
        self.loc.insert(v, l);
        l
    }

    /// The buffer of `v` as the kernel about to be pushed reads or writes it.
    fn buf(&mut self, v: ValueId) -> Buffer {
        let l = self.loc(v);
        self.touch(l)
    }

    fn touch(&mut self, l: Loc) -> Buffer {
        let step = self.kernels.len();
        match l {
            Loc::Input(i) => Buffer::Input(i),
            Loc::Output(i) => Buffer::Output(i),
            Loc::Const(c) => Buffer::Const(c),
            Loc::Temp(t) => {
                let temp = &mut self.temps[t];
                temp.first = temp.first.min(step);
                temp.last = temp.last.max(step);
                // Temps are numbered; offsets are patched in after planning.
                Buffer::Arena { offset: t as u64 }
            }
        }
    }

    /// A new arena temp not tied to a value; live from the first to the last kernel that
    /// touches it.
    fn temp(&mut self, size: u64) -> Loc {
        self.temps.push(Temp {
            size,
            first: usize::MAX,
            last: 0,
        });
        Loc::Temp(self.temps.len() - 1)
    }

    /// A scratch temp live only during the next kernel.
    fn scratch(&mut self, size: u64) -> Buffer {
        let t = self.temp(size);
        self.touch(t)
    }

    /// Average pooling with `count_include_pad` where a ceil-mode window runs past the end
    /// padding. ONNX divides by the window positions inside the padded input, which the
    /// Pool kernel (dividing by kh·kw) does not model; pooling an explicitly zero-padded
    /// copy without padding and with `count_include_pad = false` computes exactly that.
    fn avg_pool_overhanging(&mut self, x: ValueId, out: ValueId, s: Spatial, w: Window) {
        let planes = self.shape(x)[..2].iter().product::<usize>() as u64;
        let (hp, wp) = (
            (s.in_h + w.pad_top + w.pad_bottom) as u64,
            (s.in_w + w.pad_left + w.pad_right) as u64,
        );
        let padded = self.temp(planes * hp * wp * 4);
        let buf = self.touch(padded);
        self.kernels.push(Kernel::Elementwise {
            shape: vec![planes * hp * wp],
            inputs: vec![],
            expr: vec![ExprNode::Const(0.0)],
            output: View {
                buf,
                offset: 0,
                strides: vec![1],
            },
        });
        let input = View {
            buf: self.buf(x),
            offset: 0,
            strides: vec![(s.in_h * s.in_w) as i64, s.in_w as i64, 1],
        };
        let buf = self.touch(padded);
        self.kernels.push(Kernel::Elementwise {
            shape: vec![planes, s.in_h as u64, s.in_w as u64],
            inputs: vec![input],
            expr: vec![ExprNode::Input(0)],
            output: View {
                buf,
                offset: w.pad_top as u64 * wp + w.pad_left as u64,
                strides: vec![(hp * wp) as i64, wp as i64, 1],
            },
        });
        let input = self.touch(padded);
        let output = self.buf(out);
        self.kernels.push(Kernel::Pool {
            dtype: p::DType::F32,
            kind: PoolKind::Avg {
                count_include_pad: false,
            },
            channels: planes as u32,
            spatial: Spatial {
                in_h: hp as u32,
                in_w: wp as u32,
                ..s
            },
            window: Window {
                pad_top: 0,
                pad_left: 0,
                pad_bottom: 0,
                pad_right: 0,
                ..w
            },
            input,
            output,
        });
    }

    fn konst(&mut self, name: String, t: Tensor) -> ConstId {
        let id = ConstId(self.consts.len() as u32);
        self.consts.push(Const {
            name,
            dtype: p::DType::F32,
            shape: t.shape.iter().map(|&d| d as u64).collect(),
            data: t.to_le_bytes().unwrap_or_default(),
        });
        id
    }

    /// GatherElements and GatherND with constant indices (position ids, the dynamo
    /// exporter's mask indexing): the op is run once at compile time on a tensor holding
    /// each element's own position, which yields the source position of every output
    /// element; one Gather kernel then copies through that table, whole runs of contiguous
    /// elements at a time when the table allows. Returns false for any other node.
    fn move_by_table(&mut self, n: NodeIndex) -> Result<bool, Error> {
        /// Tables beyond this many entries (8 bytes each) are refused rather than baked in.
        const MAX_TABLE: usize = 1 << 20;
        let g = self.g;
        let node = g.node(n);
        let (ins, out) = (&node.inputs, node.outputs[0]);
        let data = g.value(ins[0]);
        let bits = data.dtype.bits();
        if let Op::GatherElements { axis } = node.op
            && ins.len() == 2
            && g.konst(ins[1]).is_none()
        {
            self.gather_elements(n, axis)?;
            return Ok(true);
        }
        let wanted = matches!(node.op, Op::GatherElements { .. } | Op::GatherND { .. });
        if !wanted || node.outputs.len() != 1 || !bits.is_multiple_of(8) || data.konst.is_some() {
            return Ok(false);
        }
        let mut args = vec![Tensor::i64(
            data.shape.clone(),
            (0..data.num_elements() as i64).collect(),
        )];
        for &v in &ins[1..] {
            match g.konst(v) {
                Some(t) => args.push(t.clone()),
                None => return Err(unsupported(g, n, "indices computed at run time")),
            }
        }
        if g.value(out).num_elements() > MAX_TABLE {
            return Err(unsupported(
                g,
                n,
                format!("moves more than {MAX_TABLE} elements of {}", data.dtype),
            ));
        }
        let refs: Vec<&Tensor> = args.iter().collect();
        let src = crate::interp::ops::eval(&node.op, &refs)
            .map_err(|m| unsupported(g, n, m))?
            .into_iter()
            .next()
            .and_then(|t| t.to_i64s())
            .ok_or_else(|| Error::Internal(format!("{}: no position table", node.name)))?;
        let total = data.num_elements();
        // The longest run of contiguous, run-aligned sources over trailing output dims.
        let out_shape = &g.value(out).shape;
        let mut run = 1usize;
        for d in (0..out_shape.len()).rev() {
            let r = run * out_shape[d];
            let whole = r > 0
                && total.is_multiple_of(r)
                && src.chunks(r).all(|c| {
                    c[0] % r as i64 == 0 && c.iter().enumerate().all(|(e, &x)| x == c[0] + e as i64)
                });
            if !whole {
                break;
            }
            run = r;
        }
        let rows: Vec<i64> = src.iter().step_by(run).map(|&x| x / run as i64).collect();
        if rows.is_empty() {
            return Ok(true);
        }
        let id = ConstId(self.consts.len() as u32);
        self.consts.push(Const {
            name: format!("{}_positions", node.name),
            dtype: p::DType::I64,
            shape: vec![rows.len() as u64],
            data: rows.iter().flat_map(|r| r.to_le_bytes()).collect(),
        });
        let input = self.buf(ins[0]);
        let output = self.buf(out);
        self.kernels.push(Kernel::Gather {
            outer: 1,
            axis_len: (total / run) as u64,
            inner: run as u64,
            count: rows.len() as u64,
            elem_bytes: (bits / 8) as u32,
            data: input,
            indices: Buffer::Const(id),
            index_bytes: 8,
            output,
            elementwise: false,
        });
        Ok(true)
    }

    /// GatherElements with indices computed at run time, as one Gather kernel with an index
    /// per element; data and indices must have the same shape but along the axis (what
    /// `torch.gather` of an expanded buffer exports).
    fn gather_elements(&mut self, n: NodeIndex, axis: i64) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (d, i, out) = (node.inputs[0], node.inputs[1], node.outputs[0]);
        let (ds, is) = (self.shape(d).to_vec(), self.shape(i).to_vec());
        let ax = norm_axis(axis, ds.len()).map_err(|m| unsupported(g, n, m))?;
        if ds.len() != is.len() || (0..ds.len()).any(|k| k != ax && ds[k] != is[k]) {
            return Err(unsupported(
                g,
                n,
                format!(
                    "run-time indices {is:?} must match data {ds:?} off axis {ax} \
                     (smaller index shapes are not compiled yet)"
                ),
            ));
        }
        let index_bytes = match g.value(i).dtype {
            DType::I64 => 8,
            DType::I32 => 4,
            other => return Err(unsupported(g, n, format!("{other} indices"))),
        };
        let bits = g.value(d).dtype.bits();
        if !bits.is_multiple_of(8) || bits > 64 || g.value(d).dtype.to_program().is_none() {
            return Err(unsupported(g, n, format!("{} data", g.value(d).dtype)));
        }
        let data = self.buf(d);
        let indices = self.buf(i);
        let output = self.buf(out);
        self.kernels.push(Kernel::Gather {
            outer: ds[..ax].iter().product::<usize>() as u64,
            axis_len: ds[ax] as u64,
            inner: ds[ax + 1..].iter().product::<usize>() as u64,
            count: is[ax] as u64,
            elem_bytes: (bits / 8) as u32,
            data,
            indices,
            index_bytes,
            output,
            elementwise: true,
        });
        Ok(())
    }

    fn f32_const(&self, v: ValueId) -> Option<&'g [f32]> {
        self.g.konst(v).and_then(|t| t.as_f32())
    }

    fn shape(&self, v: ValueId) -> &'g [usize] {
        &self.g.value(v).shape
    }

    /// A view of `v` broadcast to `out` shape.
    fn bview(&mut self, v: ValueId, out: &[usize]) -> View {
        let strides = broadcast_strides(self.shape(v), out)
            .into_iter()
            .map(|s| s as i64)
            .collect();
        View {
            buf: self.buf(v),
            offset: 0,
            strides,
        }
    }

    /// Copies `input`, a (broadcast) f32 view over `shape`, into a new dense arena temp: for
    /// operands whose strides a kernel's views cannot express.
    fn dense_copy(&mut self, input: View, shape: &[usize]) -> Loc {
        let t = self.temp((shape.iter().product::<usize>() * 4) as u64);
        let buf = self.touch(t);
        self.kernels.push(Kernel::Elementwise {
            shape: shape.iter().map(|&d| d as u64).collect(),
            inputs: vec![input],
            expr: vec![ExprNode::Input(0)],
            output: View {
                buf,
                offset: 0,
                strides: dense(shape),
            },
        });
        t
    }

    fn dview(&mut self, v: ValueId) -> View {
        let strides = dense(self.shape(v));
        View {
            buf: self.buf(v),
            offset: 0,
            strides,
        }
    }

    /// The single activation reading `v`, if it can be folded into `v`'s producer.
    fn fusable_activation(&self, v: ValueId) -> Option<(NodeIndex, Activation)> {
        if self.g.outputs.contains(&v) {
            return None;
        }
        let users = self.g.consumers(v);
        let [u] = users.as_slice() else { return None };
        let act = Act::of(&self.g.node(*u).op)?;
        Some((*u, activation(act)))
    }

    /// Output value and activation for a kernel producing `v`, folding a following
    /// activation when possible.
    fn epilogue(&mut self, v: ValueId) -> (ValueId, Activation) {
        match self.fusable_activation(v) {
            Some((u, act)) => {
                self.skip.push(u);
                self.fused += 1;
                (self.g.node(u).outputs[0], act)
            }
            None => (v, Activation::None),
        }
    }

    /// Whether `v` is read by node `n` and nothing else, following aliases (a Reshape of
    /// `v` reads `v`'s storage too).
    fn only_reader(&self, v: ValueId, n: NodeIndex) -> bool {
        if self.g.outputs.contains(&v) {
            return false;
        }
        self.g.consumers(v).into_iter().all(|c| {
            c == n || self.g.node(c).op.is_view() && self.only_reader(self.g.node(c).outputs[0], n)
        })
    }

    /// The value whose storage `v` shares: up through Reshape/Flatten/Identity.
    fn storage_root(&self, mut v: ValueId) -> ValueId {
        while let Some(p) = self.g.value(v).producer {
            let node = self.g.node(p);
            if !node.op.is_view() {
                break;
            }
            v = node.inputs[0];
        }
        v
    }

    /// Lets an elementwise result reuse the storage of an input that dies here: same shape,
    /// an arena temp, and no other reader. The kernel then runs in place (identical input
    /// and output views, which the program contract allows), so a chain such as
    /// Conv → BatchNorm → Relu needs one buffer, not two.
    fn reuse_input(&mut self, n: NodeIndex, out: ValueId, inputs: &[ValueId]) {
        if self.loc.contains_key(&out) {
            return;
        }
        let shape = self.shape(out);
        for &i in inputs {
            if self.shape(i) == shape
                && self.g.value(i).dtype == self.g.value(out).dtype
                && matches!(self.loc.get(&i), Some(Loc::Temp(_)))
                && self.only_reader(self.storage_root(i), n)
            {
                let l = self.loc[&i];
                self.loc.insert(out, l);
                self.in_place += 1;
                return;
            }
        }
    }

    fn elementwise(&mut self, out: ValueId, inputs: &[ValueId], expr: Vec<ExprNode>) {
        let shape = self.shape(out).to_vec();
        let views = inputs.iter().map(|&i| self.bview(i, &shape)).collect();
        let output = self.dview(out);
        self.kernels.push(Kernel::Elementwise {
            shape: shape.iter().map(|&d| d as u64).collect(),
            inputs: views,
            expr,
            output,
        });
    }

    fn copy(&mut self, from: Loc, to: Loc, bytes: u64) {
        let src = self.touch(from);
        let dst = self.touch(to);
        self.kernels.push(Kernel::Copy { bytes, src, dst });
    }

    fn node(&mut self, n: NodeIndex) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (ins, out) = (&node.inputs, node.outputs[0]);
        if self.move_by_table(n)? {
            return Ok(());
        }
        for &o in &node.outputs {
            // Data movement copies elements bit for bit, whatever their type.
            let moves = matches!(
                node.op,
                Op::Slice { .. }
                    | Op::Expand { .. }
                    | Op::Split { .. }
                    | Op::Transpose { .. }
                    | Op::Concat { .. }
                    | Op::Gather { .. }
            ) && g.value(o).dtype.to_program().is_some();
            let converts = matches!(node.op, Op::Cast { .. });
            // Mask kernels produce bool bytes (comparisons, logic) or move elements of
            // any dtype a program can hold (Where, Tile).
            let masks = matches!(
                node.op,
                Op::Compare(_) | Op::Logic(_) | Op::Not | Op::Where | Op::Tile { .. }
            ) && g.value(o).dtype.to_program().is_some();
            // Integer arithmetic and running sums have kernels of their own.
            let ints = matches!(g.value(o).dtype, DType::I32 | DType::I64)
                && matches!(
                    node.op,
                    Op::Binary(_) | Op::Unary(Unary::Neg | Unary::Abs) | Op::CumSum { .. }
                );
            // Quantized data: the integer kernels, (de)quantization and max pooling,
            // which is exact on 8-bit values.
            let quantized = matches!(
                node.op,
                Op::QuantizeLinear { .. }
                    | Op::QGemm { .. }
                    | Op::QConv { .. }
                    | Op::QBinary(_)
                    | Op::DynamicQuantizeLinear
                    | Op::MatMulInteger
                    | Op::ConvInteger { .. }
            ) || matches!(node.op, Op::MaxPool { .. })
                && matches!(g.value(o).dtype, DType::U8 | DType::I8);
            if g.value(o).dtype != DType::F32
                && !node.op.is_view()
                && !quantized
                && !moves
                && !converts
                && !masks
                && !ints
            {
                return Err(unsupported(
                    g,
                    n,
                    format!(
                        "{} results are not supported by the targets yet",
                        g.value(o).dtype
                    ),
                ));
            }
        }
        match &node.op {
            Op::QuantizeLinear { axis, to } => self.quantize_linear(n, *axis, *to)?,
            Op::DequantizeLinear { axis } => self.dequantize_linear(n, *axis)?,
            Op::QGemm { requant } => self.qgemm(n, *requant)?,
            Op::QConv {
                window,
                group,
                requant,
            } => self.qconv(n, window, *group, *requant)?,
            Op::QBinary(q) => self.qbinary(n, q)?,
            Op::DynamicQuantizeLinear => self.dynamic_quantize_linear(n)?,
            Op::MatMulInteger | Op::ConvInteger { .. } => {
                return Err(unsupported(
                    g,
                    n,
                    "an integer product whose weights are not a constant int8 tensor with \
                     zero point 0 (fold-requant makes the others QGemm/QConv)",
                ));
            }
            Op::Unary(_) | Op::Binary(_) if g.value(out).dtype != DType::F32 => {
                self.int_elementwise(n)?
            }
            Op::CumSum {
                axis,
                exclusive,
                reverse,
            } => {
                let shape = self.shape(out).to_vec();
                let ax = norm_axis(*axis, shape.len()).map_err(|m| unsupported(g, n, m))?;
                let dtype = g.value(out).dtype;
                let dtype = dtype
                    .to_program()
                    .filter(|d| matches!(d, p::DType::F32 | p::DType::I32 | p::DType::I64))
                    .ok_or_else(|| unsupported(g, n, format!("CumSum of {dtype}")))?;
                let input = self.buf(ins[0]);
                let output = self.buf(out);
                if g.value(out).num_elements() > 0 {
                    self.kernels.push(Kernel::CumSum {
                        outer: shape[..ax].iter().product::<usize>() as u64,
                        len: shape.get(ax).copied().unwrap_or(1) as u64,
                        inner: shape[(ax + 1).min(shape.len())..].iter().product::<usize>() as u64,
                        dtype,
                        exclusive: *exclusive,
                        reverse: *reverse,
                        input,
                        output,
                    });
                }
            }
            Op::Unary(u) => {
                let op = match u {
                    Unary::Relu => UnaryOp::Relu,
                    Unary::Sigmoid => UnaryOp::Sigmoid,
                    Unary::Tanh => UnaryOp::Tanh,
                    Unary::Exp => UnaryOp::Exp,
                    Unary::Neg => UnaryOp::Neg,
                    Unary::Abs => UnaryOp::Abs,
                    Unary::Sqrt => UnaryOp::Sqrt,
                    Unary::Reciprocal => UnaryOp::Reciprocal,
                    Unary::Erf => UnaryOp::Erf,
                    Unary::Log => UnaryOp::Log,
                };
                self.reuse_input(n, out, &ins[..1]);
                self.elementwise(
                    out,
                    &ins[..1],
                    vec![ExprNode::Input(0), ExprNode::Unary(op, 0)],
                );
            }
            Op::Clip { min, max } => {
                self.reuse_input(n, out, &ins[..1]);
                self.elementwise(
                    out,
                    &ins[..1],
                    vec![
                        ExprNode::Input(0),
                        ExprNode::Clip {
                            x: 0,
                            lo: *min,
                            hi: *max,
                        },
                    ],
                );
            }
            Op::Binary(b) => {
                let op = match b {
                    Binary::Add => BinaryOp::Add,
                    Binary::Sub => BinaryOp::Sub,
                    Binary::Mul => BinaryOp::Mul,
                    Binary::Div => BinaryOp::Div,
                    Binary::Max => BinaryOp::Max,
                    Binary::Min => BinaryOp::Min,
                    Binary::Pow => return self.pow(n),
                };
                self.reuse_input(n, out, &ins[..2]);
                self.elementwise(
                    out,
                    &ins[..2],
                    vec![
                        ExprNode::Input(0),
                        ExprNode::Input(1),
                        ExprNode::Binary(op, 0, 1),
                    ],
                );
            }
            Op::MatMul => self.matmul(n, 1.0, [false; 2], [false; 2], None)?,
            Op::FusedMatMul {
                alpha,
                trans_a,
                trans_b,
                bias,
                residual,
                act,
            } => self.matmul(
                n,
                *alpha,
                [*trans_a, *trans_b],
                [*bias, *residual],
                Some(activation(*act)),
            )?,
            Op::HardSigmoid { alpha, beta } => {
                self.reuse_input(n, out, &ins[..1]);
                self.elementwise(
                    out,
                    &ins[..1],
                    vec![
                        ExprNode::Input(0),
                        ExprNode::Const(*alpha),
                        ExprNode::Binary(BinaryOp::Mul, 0, 1),
                        ExprNode::Const(*beta),
                        ExprNode::Binary(BinaryOp::Add, 2, 3),
                        ExprNode::Clip {
                            x: 4,
                            lo: 0.0,
                            hi: 1.0,
                        },
                    ],
                );
            }
            Op::HardSwish => {
                self.reuse_input(n, out, &ins[..1]);
                self.elementwise(
                    out,
                    &ins[..1],
                    vec![
                        ExprNode::Input(0),
                        ExprNode::Const(1.0 / 6.0),
                        ExprNode::Binary(BinaryOp::Mul, 0, 1),
                        ExprNode::Const(0.5),
                        ExprNode::Binary(BinaryOp::Add, 2, 3),
                        ExprNode::Clip {
                            x: 4,
                            lo: 0.0,
                            hi: 1.0,
                        },
                        ExprNode::Binary(BinaryOp::Mul, 0, 5),
                    ],
                );
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                let (sa, sb) = (self.shape(ins[0]), self.shape(ins[1]));
                let (m, k) = if *trans_a {
                    (sa[1], sa[0])
                } else {
                    (sa[0], sa[1])
                };
                let nn = if *trans_b { sb[0] } else { sb[1] };
                let a_strides = if *trans_a {
                    vec![0, 1, m as i64]
                } else {
                    vec![0, k as i64, 1]
                };
                let b_strides = if *trans_b {
                    vec![0, 1, k as i64]
                } else {
                    vec![0, nn as i64, 1]
                };
                let bias = match ins.get(2) {
                    Some(_) if *beta == 0.0 => None,
                    Some(&c) => {
                        let cs: Vec<i64> = broadcast_strides(self.shape(c), &[m, nn])
                            .into_iter()
                            .map(|s| s as i64)
                            .collect();
                        let buf = if *beta == 1.0 {
                            self.buf(c)
                        } else if let Some(cv) = self.f32_const(c) {
                            let scaled = cv.iter().map(|&x| x * beta).collect();
                            let t = Tensor::f32(self.shape(c).to_vec(), scaled);
                            Buffer::Const(self.konst(format!("{}*beta", g.value(c).name), t))
                        } else {
                            // beta·C computed at run time into a temp the GEMM reads.
                            let shape = self.shape(c).to_vec();
                            let t = self.temp(g.value(c).byte_size() as u64);
                            let input = self.dview(c);
                            let buf = self.touch(t);
                            self.kernels.push(Kernel::Elementwise {
                                shape: shape.iter().map(|&d| d as u64).collect(),
                                inputs: vec![input],
                                expr: vec![
                                    ExprNode::Input(0),
                                    ExprNode::Const(*beta),
                                    ExprNode::Binary(BinaryOp::Mul, 0, 1),
                                ],
                                output: View {
                                    buf,
                                    offset: 0,
                                    strides: dense(&shape),
                                },
                            });
                            self.touch(t)
                        };
                        Some(View {
                            buf,
                            offset: 0,
                            strides: vec![0, cs[0], cs[1]],
                        })
                    }
                    None => None,
                };
                let a = View {
                    buf: self.buf(ins[0]),
                    offset: 0,
                    strides: a_strides,
                };
                let b = View {
                    buf: self.buf(ins[1]),
                    offset: 0,
                    strides: b_strides,
                };
                let (out, act) = self.epilogue(out);
                let c = View {
                    buf: self.buf(out),
                    offset: 0,
                    strides: vec![0, nn as i64, 1],
                };
                self.kernels.push(Kernel::Gemm {
                    batch: 1,
                    m: m as u32,
                    n: nn as u32,
                    k: k as u32,
                    a,
                    b,
                    alpha: *alpha,
                    bias,
                    residual: None,
                    act,
                    c,
                });
            }
            Op::Conv { window, group } | Op::FusedConv { window, group, .. } => {
                let xs = self.shape(ins[0]).to_vec();
                let ws = self.shape(ins[1]).to_vec();
                if self.f32_const(ins[1]).is_none() {
                    return Err(unsupported(g, n, "the weight is not a constant"));
                }
                // A FusedConv says which of its optional inputs are there; the residual
                // is the dense output-shaped one after the bias.
                let (bias_in, residual_in, fused_act) = match &node.op {
                    Op::FusedConv {
                        bias,
                        residual,
                        act,
                        ..
                    } => {
                        let b = if *bias { ins.get(2).copied() } else { None };
                        let r = if *residual {
                            ins.get(2 + usize::from(*bias)).copied()
                        } else {
                            None
                        };
                        (b, r, Some(activation(*act)))
                    }
                    _ => (ins.get(2).copied(), None, None),
                };
                let bias = match bias_in {
                    Some(b) => match self.loc(b) {
                        Loc::Const(c) => Some(c),
                        _ => return Err(unsupported(g, n, "the bias is not a constant")),
                    },
                    None => None,
                };
                let (spatial, win) = geometry(window, &xs)?;
                let weight = match self.loc(ins[1]) {
                    Loc::Const(c) => c,
                    _ => unreachable!("checked constant above"),
                };
                let scratch_bytes = Kernel::conv_scratch_bytes(
                    xs[1] as u32,
                    ws[0] as u32,
                    *group as u32,
                    &spatial,
                    &win,
                );
                let input = self.buf(ins[0]);
                let residual = residual_in.map(|r| self.buf(r));
                let (out, act) = match fused_act {
                    Some(act) => (out, act),
                    None => self.epilogue(out),
                };
                let output = self.buf(out);
                let scratch = (scratch_bytes > 0).then(|| self.scratch(scratch_bytes));
                self.kernels.push(Kernel::Conv {
                    c_in: xs[1] as u32,
                    c_out: ws[0] as u32,
                    groups: *group as u32,
                    spatial,
                    window: win,
                    input,
                    weight,
                    bias,
                    residual,
                    act,
                    output,
                    scratch,
                });
            }
            Op::MaxPool { window } | Op::AveragePool { window, .. } => {
                let kind = match &node.op {
                    Op::AveragePool {
                        count_include_pad, ..
                    } => PoolKind::Avg {
                        count_include_pad: *count_include_pad,
                    },
                    _ => PoolKind::Max,
                };
                let xs = self.shape(ins[0]).to_vec();
                let (spatial, win) = geometry(window, &xs)?;
                if kind
                    == (PoolKind::Avg {
                        count_include_pad: true,
                    })
                    && overhangs(&spatial, &win)
                {
                    self.avg_pool_overhanging(ins[0], out, spatial, win);
                    return Ok(());
                }
                let dtype = g.value(out).dtype.to_program().unwrap_or(p::DType::F32);
                let input = self.buf(ins[0]);
                let output = self.buf(out);
                self.kernels.push(Kernel::Pool {
                    dtype,
                    kind,
                    channels: (xs[0] * xs[1]) as u32,
                    spatial,
                    window: win,
                    input,
                    output,
                });
            }
            Op::GlobalAveragePool => {
                let xs = self.shape(ins[0]);
                let (outer, len) = (
                    (xs[0] * xs[1]) as u64,
                    xs[2..].iter().product::<usize>() as u64,
                );
                let input = self.buf(ins[0]);
                let output = self.buf(out);
                self.kernels.push(Kernel::Reduce {
                    op: ReduceOp::Mean,
                    outer,
                    len,
                    inner: 1,
                    input,
                    output,
                });
            }
            Op::BatchNorm { epsilon } => {
                let params: Vec<&[f32]> = ins[1..5]
                    .iter()
                    .map(|&v| self.f32_const(v))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        unsupported(g, n, "scale, bias, mean and var must be constants")
                    })?;
                let (scale, bias, mean, var) = (params[0], params[1], params[2], params[3]);
                let mul: Vec<f32> = scale
                    .iter()
                    .zip(var)
                    .map(|(&s, &v)| s / (v + epsilon).sqrt())
                    .collect();
                let add: Vec<f32> = bias
                    .iter()
                    .zip(mean)
                    .zip(&mul)
                    .map(|((&b, &m), &k)| b - m * k)
                    .collect();
                let c = mul.len();
                let shape = self.shape(out).to_vec();
                let mut ch = vec![0i64; shape.len()];
                ch[1] = 1;
                let mul = self.konst(format!("{}.scale", node.name), Tensor::f32(vec![c], mul));
                let add = self.konst(format!("{}.shift", node.name), Tensor::f32(vec![c], add));
                self.reuse_input(n, out, &ins[..1]);
                let x = self.bview(ins[0], &shape);
                let output = self.dview(out);
                self.kernels.push(Kernel::Elementwise {
                    shape: shape.iter().map(|&d| d as u64).collect(),
                    inputs: vec![
                        x,
                        View {
                            buf: Buffer::Const(mul),
                            offset: 0,
                            strides: ch.clone(),
                        },
                        View {
                            buf: Buffer::Const(add),
                            offset: 0,
                            strides: ch,
                        },
                    ],
                    expr: vec![
                        ExprNode::Input(0),
                        ExprNode::Input(1),
                        ExprNode::Binary(BinaryOp::Mul, 0, 1),
                        ExprNode::Input(2),
                        ExprNode::Binary(BinaryOp::Add, 2, 3),
                    ],
                    output,
                });
            }
            Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Identity
            | Op::Unsqueeze { .. }
            | Op::Squeeze { .. } => {
                let from = self.loc(ins[0]);
                match self.loc.get(&out).copied() {
                    // The result must land in a caller buffer: copy it there.
                    Some(to) => self.copy(from, to, g.value(out).byte_size() as u64),
                    None => {
                        self.loc.insert(out, from);
                    }
                }
            }
            Op::Transpose { perm } => {
                let s = dense(self.shape(ins[0]));
                let shape = self.shape(out).to_vec();
                let input = View {
                    buf: self.buf(ins[0]),
                    offset: 0,
                    strides: perm.iter().map(|&p| s[p]).collect(),
                };
                let output = self.dview(out);
                let elem_bytes = self.elem_bytes(n, out)?;
                self.move_elements(
                    shape.iter().map(|&d| d as u64).collect(),
                    elem_bytes,
                    input,
                    output,
                );
            }
            Op::Concat { axis } => {
                let shape = self.shape(out).to_vec();
                let ax = norm_axis(*axis, shape.len()).map_err(|m| unsupported(g, n, m))?;
                let os = dense(&shape);
                let mut at = 0u64;
                for &i in ins {
                    let part = self.shape(i).to_vec();
                    let input = self.dview(i);
                    let output = View {
                        buf: self.buf(out),
                        offset: at * os[ax] as u64,
                        strides: os.clone(),
                    };
                    if part[ax] > 0 {
                        let elem_bytes = self.elem_bytes(n, out)?;
                        self.move_elements(
                            part.iter().map(|&d| d as u64).collect(),
                            elem_bytes,
                            input,
                            output,
                        );
                    }
                    at += part[ax] as u64;
                }
            }
            Op::Reduce {
                kind,
                axes,
                keepdims: _,
            } => self.reduce(n, *kind, axes.as_deref())?,
            Op::Einsum(eq) => self.einsum(n, eq)?,
            Op::LayerNorm { axis, epsilon, .. } => self.layer_norm(n, *axis, *epsilon)?,
            Op::Gelu { tanh: true } => {
                // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
                let c = (2.0f64 / std::f64::consts::PI).sqrt() as f32;
                self.reuse_input(n, out, &ins[..1]);
                self.elementwise(
                    out,
                    &ins[..1],
                    vec![
                        ExprNode::Input(0),                     // 0: x
                        ExprNode::Binary(BinaryOp::Mul, 0, 0),  // 1: x²
                        ExprNode::Binary(BinaryOp::Mul, 1, 0),  // 2: x³
                        ExprNode::Const(0.044715),              // 3
                        ExprNode::Binary(BinaryOp::Mul, 2, 3),  // 4
                        ExprNode::Binary(BinaryOp::Add, 0, 4),  // 5: x + 0.044715·x³
                        ExprNode::Const(c),                     // 6
                        ExprNode::Binary(BinaryOp::Mul, 5, 6),  // 7
                        ExprNode::Unary(UnaryOp::Tanh, 7),      // 8
                        ExprNode::Const(1.0),                   // 9
                        ExprNode::Binary(BinaryOp::Add, 8, 9),  // 10
                        ExprNode::Const(0.5),                   // 11
                        ExprNode::Binary(BinaryOp::Mul, 0, 11), // 12: x/2
                        ExprNode::Binary(BinaryOp::Mul, 12, 10),
                    ],
                );
            }
            Op::Slice {
                starts,
                ends,
                axes,
                steps,
            } => self.slice(ins[0], out, starts, ends, axes, steps)?,
            Op::Split { axis, sizes } => {
                let shape = self.shape(ins[0]).to_vec();
                let ax = norm_axis(*axis, shape.len()).map_err(|m| unsupported(g, n, m))?;
                let mut at = 0i64;
                for (&o, &size) in node.outputs.iter().zip(sizes) {
                    let end = at + size as i64;
                    self.slice(ins[0], o, &[at], &[end], &[ax as i64], &[1])?;
                    at = end;
                }
            }
            Op::Expand { .. } => {
                let shape = self.shape(out).to_vec();
                let input = self.bview(ins[0], &shape);
                let output = self.dview(out);
                let elem_bytes = self.elem_bytes(n, out)?;
                self.move_elements(
                    shape.iter().map(|&d| d as u64).collect(),
                    elem_bytes,
                    input,
                    output,
                );
            }
            Op::Pad {
                pads,
                mode: PadMode::Constant,
                value,
            } if g.value(out).dtype == DType::F32 => {
                self.pad_constant(ins[0], out, pads, *value as f32)
            }
            Op::Gelu { tanh: false } => {
                // 0.5·x·(1 + erf(x/√2))
                self.reuse_input(n, out, &ins[..1]);
                self.elementwise(
                    out,
                    &ins[..1],
                    vec![
                        ExprNode::Input(0),                               // 0: x
                        ExprNode::Const(std::f32::consts::FRAC_1_SQRT_2), // 1
                        ExprNode::Binary(BinaryOp::Mul, 0, 1),            // 2
                        ExprNode::Unary(UnaryOp::Erf, 2),                 // 3
                        ExprNode::Const(1.0),                             // 4
                        ExprNode::Binary(BinaryOp::Add, 3, 4),            // 5
                        ExprNode::Const(0.5),                             // 6
                        ExprNode::Binary(BinaryOp::Mul, 0, 6),            // 7
                        ExprNode::Binary(BinaryOp::Mul, 7, 5),
                    ],
                );
            }
            Op::Gather { axis } => {
                let data_shape = self.shape(ins[0]).to_vec();
                let ax = norm_axis(*axis, data_shape.len()).map_err(|m| unsupported(g, n, m))?;
                let elem_bytes = self.elem_bytes(n, out)?;
                let index_bytes = match g.value(ins[1]).dtype {
                    DType::I64 => 8,
                    DType::I32 => 4,
                    // A u8 index read as signed wraps by +axis_len to itself (tables
                    // of 256 entries only, which is what `fold-requant` makes).
                    DType::I8 => 1,
                    DType::U8 if data_shape[ax] == 256 => 1,
                    other => return Err(unsupported(g, n, format!("{other} indices"))),
                };
                let count = g.value(ins[1]).num_elements() as u64;
                let data = self.buf(ins[0]);
                let indices = self.buf(ins[1]);
                let output = self.buf(out);
                self.kernels.push(Kernel::Gather {
                    outer: data_shape[..ax].iter().product::<usize>() as u64,
                    axis_len: data_shape[ax] as u64,
                    inner: data_shape[ax + 1..].iter().product::<usize>() as u64,
                    count,
                    elem_bytes,
                    data,
                    indices,
                    index_bytes,
                    output,
                    elementwise: false,
                });
            }
            Op::GatherElements { .. } | Op::GatherND { .. } => {
                return Err(unsupported(g, n, "indices computed at run time"));
            }
            Op::Cast { to } => {
                let from = g.value(ins[0]).dtype;
                let (Some(pf), Some(pt)) = (from.to_program(), to.to_program()) else {
                    return Err(unsupported(g, n, format!("Cast from {from} to {to}")));
                };
                let count = g.value(out).num_elements() as u64;
                let input = self.buf(ins[0]);
                let output = self.buf(out);
                if count > 0 {
                    self.kernels.push(Kernel::Convert {
                        count,
                        from: pf,
                        to: pt,
                        input,
                        output,
                    });
                }
            }
            Op::Compare(c) => {
                let dtype = g.value(ins[0]).dtype;
                let dtype = dtype
                    .to_program()
                    .ok_or_else(|| unsupported(g, n, format!("Compare of {dtype}")))?;
                let op = match c {
                    Cmp::Equal => CmpOp::Equal,
                    Cmp::Less => CmpOp::Less,
                    Cmp::LessOrEqual => CmpOp::LessOrEqual,
                    Cmp::Greater => CmpOp::Greater,
                    Cmp::GreaterOrEqual => CmpOp::GreaterOrEqual,
                };
                let shape = self.shape(out).to_vec();
                let a = self.bview(ins[0], &shape);
                let b = self.bview(ins[1], &shape);
                let output = self.dview(out);
                self.kernels.push(Kernel::Compare {
                    shape: shape.iter().map(|&d| d as u64).collect(),
                    op,
                    dtype,
                    a,
                    b,
                    output,
                });
            }
            Op::Logic(_) | Op::Not => {
                let op = match &node.op {
                    Op::Logic(Logic::And) => LogicOp::And,
                    Op::Logic(Logic::Or) => LogicOp::Or,
                    Op::Logic(Logic::Xor) => LogicOp::Xor,
                    _ => LogicOp::Not,
                };
                let shape = self.shape(out).to_vec();
                let a = self.bview(ins[0], &shape);
                let b = (op != LogicOp::Not).then(|| self.bview(ins[1], &shape));
                let output = self.dview(out);
                self.kernels.push(Kernel::Logic {
                    shape: shape.iter().map(|&d| d as u64).collect(),
                    op,
                    a,
                    b,
                    output,
                });
            }
            Op::Where => {
                let dtype = g.value(out).dtype;
                let elem_bytes = dtype
                    .to_program()
                    .ok_or_else(|| unsupported(g, n, format!("Where of {dtype}")))?
                    .size() as u32;
                let shape = self.shape(out).to_vec();
                let cond = self.bview(ins[0], &shape);
                let a = self.bview(ins[1], &shape);
                let b = self.bview(ins[2], &shape);
                let output = self.dview(out);
                self.kernels.push(Kernel::Select {
                    shape: shape.iter().map(|&d| d as u64).collect(),
                    elem_bytes,
                    cond,
                    a,
                    b,
                    output,
                });
            }
            Op::Tile { repeats } => self.tile(n, repeats)?,
            Op::Shape { .. } | Op::Pad { .. } => {
                return Err(unsupported(
                    g,
                    n,
                    "no compiled kernel yet (the interpreter runs it)",
                ));
            }
            Op::Softmax { axis, coerce_2d } => {
                let shape = self.shape(ins[0]).to_vec();
                let ax = norm_axis(*axis, shape.len()).map_err(|m| unsupported(g, n, m))?;
                let (outer, len, inner) = if *coerce_2d {
                    (
                        shape[..ax].iter().product::<usize>(),
                        shape[ax..].iter().product::<usize>(),
                        1,
                    )
                } else {
                    (
                        shape[..ax].iter().product(),
                        shape[ax],
                        shape[ax + 1..].iter().product(),
                    )
                };
                let input = self.buf(ins[0]);
                let output = self.buf(out);
                self.kernels.push(Kernel::Softmax {
                    outer: outer as u64,
                    len: len as u64,
                    inner: inner as u64,
                    input,
                    output,
                    scale: 1.0,
                    mask: None,
                });
            }
            Op::AttentionSoftmax { scale } => self.attention_softmax(n, *scale),
        }
        Ok(())
    }

    /// `softmax(scale·x + mask)` over the last axis as one [`Kernel::Softmax`]. The mask
    /// is read through a broadcast view; its outer dims are kept (size-1 dims dropped,
    /// neighbours merged when they nest) so one mask row can serve every head. The result
    /// may take x's storage: the kernel reads each element before writing it.
    fn attention_softmax(&mut self, n: NodeIndex, scale: f32) {
        let node = self.g.node(n);
        let (x, out) = (node.inputs[0], node.outputs[0]);
        let shape = self.shape(x).to_vec();
        let r = shape.len();
        let len = shape[r - 1];
        let outer: usize = shape[..r - 1].iter().product();
        let mask = node.inputs.get(1).map(|&m| {
            let v = self.bview(m, &shape);
            // (dim, stride) of the outer dims, size 1 dropped, nested neighbours merged.
            let mut dims: Vec<(u64, i64)> = Vec::new();
            for (&d, &s) in shape[..r - 1].iter().zip(&v.strides) {
                if d == 1 {
                    continue;
                }
                match dims.last_mut() {
                    Some((pd, ps)) if *ps == s * d as i64 => {
                        *pd *= d as u64;
                        *ps = s;
                    }
                    _ => dims.push((d as u64, s)),
                }
            }
            if dims.is_empty() {
                dims.push((1, 0));
            }
            let mut strides: Vec<i64> = dims.iter().map(|&(_, s)| s).collect();
            strides.extend([v.strides[r - 1], 0]);
            SoftmaxMask {
                outer: dims.iter().map(|&(d, _)| d).collect(),
                view: View {
                    buf: v.buf,
                    offset: v.offset,
                    strides,
                },
            }
        });
        self.reuse_input(n, out, &[x]);
        let input = self.buf(x);
        let output = self.buf(out);
        self.kernels.push(Kernel::Softmax {
            outer: outer as u64,
            len: len as u64,
            inner: 1,
            input,
            output,
            scale,
            mask,
        });
    }

    /// Integer Add, Sub, Mul, Max, Min, Neg and Abs on i32/i64 (with broadcasting) as one
    /// [`Kernel::IntElementwise`], wrapping exactly as the interpreter's `i64` arithmetic
    /// narrowed to the operand width. Div and Pow are not compiled for integers: the
    /// interpreter runs them (Div by zero is an error there, and a program has no way to
    /// report one).
    fn int_elementwise(&mut self, n: NodeIndex) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (ins, out) = (&node.inputs, node.outputs[0]);
        let dtype = g.value(out).dtype;
        let dtype = dtype
            .to_program()
            .filter(|d| matches!(d, p::DType::I32 | p::DType::I64))
            .ok_or_else(|| unsupported(g, n, format!("{dtype} arithmetic")))?;
        let op = match &node.op {
            Op::Binary(Binary::Add) => p::IntOp::Add,
            Op::Binary(Binary::Sub) => p::IntOp::Sub,
            Op::Binary(Binary::Mul) => p::IntOp::Mul,
            Op::Binary(Binary::Max) => p::IntOp::Max,
            Op::Binary(Binary::Min) => p::IntOp::Min,
            Op::Unary(Unary::Neg) => p::IntOp::Neg,
            Op::Unary(Unary::Abs) => p::IntOp::Abs,
            other => {
                return Err(unsupported(
                    g,
                    n,
                    format!(
                        "integer {} is not compiled yet (the interpreter runs it)",
                        other.name()
                    ),
                ));
            }
        };
        let arity = if op.is_binary() { 2 } else { 1 };
        if ins.len() != arity || g.value(ins[0]).dtype != g.value(out).dtype {
            return Err(unsupported(g, n, "operand types differ from the result"));
        }
        self.reuse_input(n, out, &ins[..arity]);
        let shape = self.shape(out).to_vec();
        let a = self.bview(ins[0], &shape);
        let b = op.is_binary().then(|| self.bview(ins[1], &shape));
        let output = self.dview(out);
        self.kernels.push(Kernel::IntElementwise {
            shape: shape.iter().map(|&d| d as u64).collect(),
            dtype,
            op,
            a,
            b,
            output,
        });
        Ok(())
    }

    /// A `[batch, rows, cols]` view of a MatMul operand whose own batch dims are `own`.
    /// A batch of one is read with stride 0; one that equals the full batch is read in
    /// place; a partial broadcast (e.g. `[2,1]` against `[2,3]`) is first copied out to the
    /// full batch so the GEMM sees one batch stride.
    fn batched_operand(
        &mut self,
        v: ValueId,
        own: &[usize],
        batch: &[usize],
        mat: [usize; 2],
        batched: bool,
    ) -> View {
        let size = mat[0] * mat[1];
        let own_n: usize = own.iter().product();
        let full: usize = batch.iter().product();
        let strides = |bs: usize| vec![bs as i64, mat[1] as i64, 1];
        if own_n == 1 || !batched {
            return View {
                buf: self.buf(v),
                offset: 0,
                strides: strides(0),
            };
        }
        if own_n == full {
            return View {
                buf: self.buf(v),
                offset: 0,
                strides: strides(size),
            };
        }
        let mut shape = batch.to_vec();
        shape.extend(mat);
        let mut src = own.to_vec();
        src.extend(mat);
        let input = View {
            buf: self.buf(v),
            offset: 0,
            strides: broadcast_strides(&src, &shape)
                .into_iter()
                .map(|s| s as i64)
                .collect(),
        };
        let t = self.dense_copy(input, &shape);
        View {
            buf: self.touch(t),
            offset: 0,
            strides: strides(size),
        }
    }

    /// Reductions over a contiguous run of dims map onto the `[outer, len, inner]` Reduce
    /// kernel; others are not compiled yet.
    fn reduce(
        &mut self,
        n: NodeIndex,
        kind: ReduceKind,
        axes: Option<&[i64]>,
    ) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (x, out) = (node.inputs[0], node.outputs[0]);
        let shape = self.shape(x).to_vec();
        let mut set =
            crate::ir::infer::reduce_axes(axes, shape.len()).map_err(|m| unsupported(g, n, m))?;
        set.sort_unstable();
        set.dedup();
        let op = match kind {
            ReduceKind::Sum => ReduceOp::Sum,
            ReduceKind::Mean => ReduceOp::Mean,
            ReduceKind::Max => ReduceOp::Max,
            ReduceKind::Min => ReduceOp::Min,
            ReduceKind::Prod => ReduceOp::Prod,
        };
        if set.is_empty() || set.windows(2).any(|w| w[1] != w[0] + 1) {
            if set.is_empty() {
                let from = self.loc(x);
                let to = self.loc(out);
                self.copy(from, to, g.value(out).byte_size() as u64);
                return Ok(());
            }
            return Err(unsupported(
                g,
                n,
                "reduction over non-adjacent axes is not compiled yet",
            ));
        }
        let (a, b) = (set[0], set[set.len() - 1] + 1);
        let input = self.buf(x);
        let output = self.buf(out);
        self.kernels.push(Kernel::Reduce {
            op,
            outer: shape[..a].iter().product::<usize>() as u64,
            len: shape[a..b].iter().product::<usize>() as u64,
            inner: shape[b..].iter().product::<usize>() as u64,
            input,
            output,
        });
        Ok(())
    }

    /// LayerNormalization as one [`Kernel::LayerNorm`] over `[outer, len]` rows (every
    /// dim from the axis on flattened into `len`), writing the Mean and InvStdDev outputs
    /// too when the node has them. Scale and bias are vectors over the flattened row, so
    /// only a full (dense) or single-element one has a single stride; a partially
    /// broadcast one (e.g. `[1, H]` over `[S, H]` rows) is refused.
    fn layer_norm(&mut self, n: NodeIndex, axis: i64, epsilon: f32) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (x, out) = (node.inputs[0], node.outputs[0]);
        let shape = self.shape(x).to_vec();
        let ax = norm_axis(axis, shape.len()).map_err(|m| unsupported(g, n, m))?;
        let outer: usize = shape[..ax].iter().product();
        let len: usize = shape[ax..].iter().product();
        let mut params = Vec::new();
        for &p in &node.inputs[1..] {
            let count: usize = self.shape(p).iter().product();
            let stride = if count == len {
                1
            } else if count == 1 {
                0
            } else {
                return Err(unsupported(g, n, "partially broadcast scale or bias"));
            };
            params.push(View {
                buf: self.buf(p),
                offset: 0,
                strides: vec![stride],
            });
        }
        let mut params = params.into_iter();
        let (scale, bias) = (params.next(), params.next());
        let input = self.buf(x);
        let output = self.buf(out);
        let mean = node.outputs.get(1).map(|&m| self.buf(m));
        let inv_std = node.outputs.get(2).map(|&v| self.buf(v));
        self.kernels.push(Kernel::LayerNorm {
            outer: outer as u64,
            len: len as u64,
            epsilon,
            input,
            scale,
            bias,
            output,
            mean,
            inv_std,
        });
        Ok(())
    }

    /// A slice is a strided view of its input (negative steps are negative strides),
    /// copied out.
    fn slice(
        &mut self,
        x: ValueId,
        out: ValueId,
        starts: &[i64],
        ends: &[i64],
        axes: &[i64],
        steps: &[i64],
    ) -> Result<(), Error> {
        let shape = self.shape(x).to_vec();
        let dense_in = dense(&shape);
        let mut offset = 0i64;
        let mut strides = dense_in.clone();
        for (i, &a) in axes.iter().enumerate() {
            let d = norm_axis(a, shape.len()).map_err(Error::Internal)?;
            let (start, step, _) =
                crate::ir::infer::slice_range(shape[d], starts[i], ends[i], steps[i])
                    .map_err(Error::Internal)?;
            offset += start * dense_in[d];
            strides[d] = dense_in[d] * step;
        }
        let out_shape = self.shape(out).to_vec();
        if out_shape.contains(&0) {
            return Ok(());
        }
        let input = View {
            buf: self.buf(x),
            offset: offset as u64,
            strides,
        };
        let output = self.dview(out);
        let elem_bytes = match self.g.value(out).dtype.to_program() {
            Some(d) => d.size() as u32,
            None => {
                return Err(Error::Internal(format!(
                    "slice of {} reached lowering",
                    self.g.value(out).dtype
                )));
            }
        };
        self.move_elements(
            out_shape.iter().map(|&d| d as u64).collect(),
            elem_bytes,
            input,
            output,
        );
        Ok(())
    }

    /// Constant padding: fill the output with the value, then copy the (possibly cropped)
    /// input into its interior.
    fn pad_constant(&mut self, x: ValueId, out: ValueId, pads: &[i64], value: f32) {
        let (xs, os) = (self.shape(x).to_vec(), self.shape(out).to_vec());
        let r = xs.len();
        let total: usize = os.iter().product();
        if total > 0 {
            let buf = self.buf(out);
            self.kernels.push(Kernel::Elementwise {
                shape: vec![total as u64],
                inputs: vec![],
                expr: vec![ExprNode::Const(value)],
                output: View {
                    buf,
                    offset: 0,
                    strides: vec![1],
                },
            });
        }
        // The copied region: input dims minus negative pads, placed at the positive pads.
        let (din, dout) = (dense(&xs), dense(&os));
        let mut region = Vec::with_capacity(r);
        let (mut in_off, mut out_off) = (0i64, 0i64);
        for d in 0..r {
            let (b, e) = (pads[d], pads[d + r]);
            let n = xs[d] as i64 - (-b).max(0) - (-e).max(0);
            region.push(n.max(0) as u64);
            in_off += (-b).max(0) * din[d];
            out_off += b.max(0) * dout[d];
        }
        if region.contains(&0) {
            return;
        }
        let input = View {
            buf: self.buf(x),
            offset: in_off as u64,
            strides: din,
        };
        let output = View {
            buf: self.buf(out),
            offset: out_off as u64,
            strides: dout,
        };
        self.kernels.push(Kernel::Elementwise {
            shape: region,
            inputs: vec![input],
            expr: vec![ExprNode::Input(0)],
            output,
        });
    }

    /// Bytes per element of `v`, for kernels that move elements of any program dtype.
    fn elem_bytes(&self, n: NodeIndex, v: ValueId) -> Result<u32, Error> {
        let dtype = self.g.value(v).dtype;
        match dtype.to_program() {
            Some(d) => Ok(d.size() as u32),
            None => Err(unsupported(self.g, n, format!("{dtype} elements"))),
        }
    }

    /// A strided copy of `shape` elements of `elem_bytes` bytes from `input` to `output`
    /// (views in elements): the elementwise copy for 4-byte elements, otherwise a select
    /// on a constant true condition, which targets emit as a plain copy.
    fn move_elements(&mut self, shape: Vec<u64>, elem_bytes: u32, input: View, output: View) {
        if shape.contains(&0) {
            return;
        }
        if elem_bytes == 4 {
            self.kernels.push(Kernel::Elementwise {
                shape,
                inputs: vec![input],
                expr: vec![ExprNode::Input(0)],
                output,
            });
            return;
        }
        let id = match self.true_const {
            Some(id) => id,
            None => {
                let id = ConstId(self.consts.len() as u32);
                self.consts.push(Const {
                    name: "true".into(),
                    dtype: p::DType::Bool,
                    shape: vec![],
                    data: vec![1],
                });
                self.true_const = Some(id);
                id
            }
        };
        let rank = shape.len();
        self.kernels.push(Kernel::Select {
            shape,
            elem_bytes,
            cond: View {
                buf: Buffer::Const(id),
                offset: 0,
                strides: vec![0; rank],
            },
            b: input.clone(),
            a: input,
            output,
        });
    }

    /// Tile as one strided copy over the doubled-rank shape `[r0, d0, r1, d1, ...]`
    /// (`r` the repeats, `d` the input dims): the input is read with strides
    /// `[0, s0, 0, s1, ...]` and the output written densely.
    fn tile(&mut self, n: NodeIndex, repeats: &[usize]) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (x, out) = (node.inputs[0], node.outputs[0]);
        let dtype = g.value(out).dtype;
        let elem_bytes = dtype
            .to_program()
            .ok_or_else(|| unsupported(g, n, format!("Tile of {dtype}")))?
            .size() as u32;
        let (xs, os) = (self.shape(x).to_vec(), self.shape(out).to_vec());
        let (sin, sout) = (dense(&xs), dense(&os));
        let mut shape = Vec::with_capacity(2 * xs.len());
        let mut in_strides = Vec::with_capacity(2 * xs.len());
        let mut out_strides = Vec::with_capacity(2 * xs.len());
        for (d, &r) in repeats.iter().enumerate() {
            shape.extend([r as u64, xs[d] as u64]);
            in_strides.extend([0, sin[d]]);
            out_strides.extend([xs[d] as i64 * sout[d], sout[d]]);
        }
        let input = View {
            buf: self.buf(x),
            offset: 0,
            strides: in_strides,
        };
        let output = View {
            buf: self.buf(out),
            offset: 0,
            strides: out_strides,
        };
        self.move_elements(shape, elem_bytes, input, output);
        Ok(())
    }

    /// Pow: a constant scalar exponent the kernels express exactly (1, 2, 0.5, -1) is a
    /// multiply, a square root or a reciprocal; any other exponent, constant or not, is
    /// the general `BinaryOp::Pow` (`exp(y · log|x|)` with C's special values). A constant
    /// exponent of an integer type is converted at compile time, as the interpreter does.
    fn pow(&mut self, n: NodeIndex) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (x, y, out) = (node.inputs[0], node.inputs[1], node.outputs[0]);
        let konst = g.konst(y).and_then(|t| t.to_f64s());
        if let Some(e) = konst.as_deref().filter(|v| v.len() == 1).map(|v| v[0]) {
            let expr = match e {
                1.0 => Some(vec![ExprNode::Input(0)]),
                2.0 => Some(vec![
                    ExprNode::Input(0),
                    ExprNode::Binary(BinaryOp::Mul, 0, 0),
                ]),
                0.5 => Some(vec![ExprNode::Input(0), ExprNode::Unary(UnaryOp::Sqrt, 0)]),
                -1.0 => Some(vec![
                    ExprNode::Input(0),
                    ExprNode::Unary(UnaryOp::Reciprocal, 0),
                ]),
                _ => None,
            };
            if let Some(expr) = expr {
                self.reuse_input(n, out, &[x]);
                self.elementwise(out, &[x], expr);
                return Ok(());
            }
        }
        let shape = self.shape(out).to_vec();
        let exponent = match (g.value(y).dtype, konst) {
            (DType::F32, _) => self.bview(y, &shape),
            (_, Some(v)) => {
                let ys = self.shape(y).to_vec();
                let t = Tensor::f32(ys.clone(), v.iter().map(|&e| e as f32).collect());
                let id = self.konst(format!("{}_exponent", node.name), t);
                View {
                    buf: Buffer::Const(id),
                    offset: 0,
                    strides: broadcast_strides(&ys, &shape)
                        .into_iter()
                        .map(|s| s as i64)
                        .collect(),
                }
            }
            (d, None) => {
                return Err(unsupported(
                    g,
                    n,
                    format!("{d} exponents computed at run time"),
                ));
            }
        };
        self.reuse_input(n, out, &[x]);
        let base = self.bview(x, &shape);
        let output = self.dview(out);
        self.kernels.push(Kernel::Elementwise {
            shape: shape.iter().map(|&d| d as u64).collect(),
            inputs: vec![base, exponent],
            expr: vec![
                ExprNode::Input(0),
                ExprNode::Input(1),
                ExprNode::Binary(BinaryOp::Pow, 0, 1),
            ],
            output,
        });
        Ok(())
    }

    /// One Gemm kernel for a MatMul (`alpha` 1, no transposes, no epilogue inputs, `act`
    /// `None`: a following activation may still be folded) or a FusedMatMul (inputs A, B,
    /// then the bias and residual that `extra` says are present).
    fn matmul(
        &mut self,
        n: NodeIndex,
        alpha: f32,
        trans: [bool; 2],
        extra: [bool; 2],
        act: Option<Activation>,
    ) -> Result<(), Error> {
        let g = self.g;
        let node = g.node(n);
        let (ia, ib) = (node.inputs[0], node.inputs[1]);
        let (sa, sb) = (self.shape(ia).to_vec(), self.shape(ib).to_vec());
        let a2: Vec<usize> = if sa.len() == 1 {
            vec![1, sa[0]]
        } else {
            sa.clone()
        };
        let b2: Vec<usize> = if sb.len() == 1 {
            vec![sb[0], 1]
        } else {
            sb.clone()
        };
        // The stored matrices, and their shapes as multiplied.
        let (ma, mb) = (&a2[a2.len() - 2..], &b2[b2.len() - 2..]);
        let (m, k) = if trans[0] {
            (ma[1], ma[0])
        } else {
            (ma[0], ma[1])
        };
        let nn = if trans[1] { mb[0] } else { mb[1] };
        let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
        let batch = broadcast(ab, bb).map_err(|e| unsupported(g, n, e))?;
        let nbatch: usize = batch.iter().product();
        let mut full = batch.clone();
        full.extend([m, nn]);
        // Bias, then residual, as views broadcast over the full `[batch.., m, n]` output.
        let mut addends: Vec<Option<ValueId>> = Vec::new();
        let mut next = 2;
        for present in extra {
            addends.push(present.then(|| {
                next += 1;
                node.inputs[next - 1]
            }));
        }
        let (out, act) = match act {
            Some(act) => (node.outputs[0], act),
            None => self.epilogue(node.outputs[0]),
        };
        // A shared right-hand side: fold A's batch into M, so the GEMM is one big matrix
        // product — when A's rows and every addend's rows follow one stride across it
        // (an addend whose batch dims do not collapse either way is copied out dense,
        // see `epilogue_operand`, and then they do).
        let folds = |v: ValueId| {
            let s = self.shape(v);
            rows_stride(s, &full, batch.len() + 1).is_some()
                || rows_stride(s, &full, batch.len()).is_none()
        };
        let fold = bb.iter().product::<usize>() == 1
            && (nbatch == 1 || (!trans[0] && addends.iter().flatten().all(|&v| folds(v))));
        let (batch_n, m_eff) = if fold { (1, nbatch * m) } else { (nbatch, m) };
        let mut a = self.batched_operand(ia, ab, &batch, [ma[0], ma[1]], batch_n > 1);
        let mut b = self.batched_operand(ib, bb, &batch, [mb[0], mb[1]], batch_n > 1);
        for (v, t) in [(&mut a, trans[0]), (&mut b, trans[1])] {
            if t {
                v.strides.swap(1, 2);
            }
            if batch_n == 1 {
                v.strides[0] = 0;
            }
        }
        let mut views = [None, None];
        for (slot, v) in views.iter_mut().zip(&addends) {
            if let Some(v) = *v {
                *slot = Some(self.epilogue_operand(v, &full, fold));
            }
        }
        let [bias, residual] = views;
        let c = View {
            buf: self.buf(out),
            offset: 0,
            strides: vec![if batch_n == 1 { 0 } else { (m * nn) as i64 }, nn as i64, 1],
        };
        self.kernels.push(Kernel::Gemm {
            batch: batch_n as u32,
            m: m_eff as u32,
            n: nn as u32,
            k: k as u32,
            a,
            b,
            alpha,
            bias,
            residual,
            act,
            c,
        });
        Ok(())
    }

    /// A bias or residual `v` of a GEMM whose output is `full` (`[batch.., m, n]`) as a
    /// `[b, row, col]` view: with `fold` the batch dims and M are one row dim, else the
    /// batch dims are one. When its broadcast strides do not collapse that way, `v` is
    /// first expanded into a dense temp of the output's shape.
    fn epilogue_operand(&mut self, v: ValueId, full: &[usize], fold: bool) -> View {
        let r = full.len();
        let s = broadcast_strides(self.shape(v), full);
        let col = s[r - 1] as i64;
        let collapsed = if fold {
            rows_stride(self.shape(v), full, r - 1).map(|rs| [0, rs, col])
        } else {
            rows_stride(self.shape(v), full, r - 2).map(|bs| [bs, s[r - 2] as i64, col])
        };
        if let Some(strides) = collapsed {
            return View {
                buf: self.buf(v),
                offset: 0,
                strides: strides.to_vec(),
            };
        }
        let input = self.bview(v, full);
        let t = self.dense_copy(input, full);
        let dense_view = |bs: i64, rs: i64| View {
            buf: Buffer::Arena { offset: 0 },
            offset: 0,
            strides: vec![bs, rs, 1],
        };
        let (m, n) = (full[r - 2] as i64, full[r - 1] as i64);
        let mut view = if fold {
            dense_view(0, n)
        } else {
            dense_view(m * n, n)
        };
        view.buf = self.touch(t);
        view
    }
}

/// The single element stride of the first `dims` dims of `shape` broadcast to `full`,
/// flattened into one index, if there is one: every dim of size > 1 steps by the stride
/// of the next such dim times that dim's size (or all of them broadcast, stride 0).
fn rows_stride(shape: &[usize], full: &[usize], dims: usize) -> Option<i64> {
    let s = broadcast_strides(shape, full);
    let live: Vec<usize> = (0..dims).filter(|&d| full[d] > 1).collect();
    let Some(&last) = live.last() else {
        return Some(0);
    };
    for w in live.windows(2) {
        if s[w[0]] != s[w[1]] * full[w[1]] {
            return None;
        }
    }
    Some(s[last] as i64)
}

/// The target's activation for the IR's.
fn activation(a: Act) -> Activation {
    match a {
        Act::None => Activation::None,
        Act::Relu => Activation::Relu,
        Act::Clip { min, max } => Activation::Clip { lo: min, hi: max },
        Act::Sigmoid => Activation::Sigmoid,
        Act::Tanh => Activation::Tanh,
        Act::Gelu { tanh } => Activation::Gelu { tanh },
        Act::HardSwish => Activation::HardSwish,
    }
}

/// Whether the last window reaches past the end padding (possible with `ceil_mode`).
fn overhangs(s: &Spatial, w: &Window) -> bool {
    let reach = |out: u32, stride: u32, k: u32, dil: u32| (out - 1) * stride + (k - 1) * dil + 1;
    reach(s.out_h, w.stride_h, w.kh, w.dilation_h) > s.in_h + w.pad_top + w.pad_bottom
        || reach(s.out_w, w.stride_w, w.kw, w.dilation_w) > s.in_w + w.pad_left + w.pad_right
}

/// The program's window geometry for 1-D or 2-D NCHW input.
fn geometry(w: &WindowAttrs, xs: &[usize]) -> Result<(Spatial, Window), Error> {
    let (pads, out) = w.resolve(&xs[2..]).map_err(Error::Internal)?;
    let u = |x: usize| x as u32;
    Ok(if w.kernel.len() == 1 {
        (
            Spatial {
                n: u(xs[0]),
                in_h: 1,
                in_w: u(xs[2]),
                out_h: 1,
                out_w: u(out[0]),
            },
            Window {
                kh: 1,
                kw: u(w.kernel[0]),
                stride_h: 1,
                stride_w: u(w.strides[0]),
                dilation_h: 1,
                dilation_w: u(w.dilations[0]),
                pad_top: 0,
                pad_left: u(pads[0]),
                pad_bottom: 0,
                pad_right: u(pads[1]),
            },
        )
    } else {
        (
            Spatial {
                n: u(xs[0]),
                in_h: u(xs[2]),
                in_w: u(xs[3]),
                out_h: u(out[0]),
                out_w: u(out[1]),
            },
            Window {
                kh: u(w.kernel[0]),
                kw: u(w.kernel[1]),
                stride_h: u(w.strides[0]),
                stride_w: u(w.strides[1]),
                dilation_h: u(w.dilations[0]),
                dilation_w: u(w.dilations[1]),
                pad_top: u(pads[0]),
                pad_left: u(pads[1]),
                pad_bottom: u(pads[2]),
                pad_right: u(pads[3]),
            },
        )
    })
}

fn io_tensor(g: &Graph, v: ValueId) -> Result<IoTensor, Error> {
    let val = g.value(v);
    let dtype = val.dtype.to_program().ok_or_else(|| {
        Error::Target(format!(
            "'{}' is {}, which artifacts cannot pass yet",
            val.name, val.dtype
        ))
    })?;
    Ok(IoTensor {
        name: val.name.clone(),
        dtype,
        shape: val.shape.iter().map(|&d| d as u64).collect(),
    })
}

/// Applies `f` to every buffer a kernel names.
fn map_buffers(k: &mut Kernel, f: &impl Fn(Buffer) -> Buffer) {
    let v = |view: &mut View| view.buf = f(view.buf);
    match k {
        Kernel::Gemm {
            a,
            b,
            bias,
            residual,
            c,
            ..
        } => {
            v(a);
            v(b);
            for e in [bias, residual].into_iter().flatten() {
                v(e);
            }
            v(c);
        }
        Kernel::Conv {
            input,
            residual,
            output,
            scratch,
            ..
        } => {
            *input = f(*input);
            *output = f(*output);
            if let Some(r) = residual {
                *r = f(*r);
            }
            if let Some(s) = scratch {
                *s = f(*s);
            }
        }
        Kernel::QGemm { a, a_zero, c, .. } => {
            v(a);
            v(c);
            if let p::ZeroPoint::Runtime(b) = a_zero {
                *b = f(*b);
            }
        }
        Kernel::QConv {
            input,
            in_zero,
            output,
            scratch,
            ..
        } => {
            *input = f(*input);
            *output = f(*output);
            if let p::ZeroPoint::Runtime(b) = in_zero {
                *b = f(*b);
            }
            if let Some(s) = scratch {
                *s = f(*s);
            }
        }
        Kernel::Pool { input, output, .. } | Kernel::Reduce { input, output, .. } => {
            *input = f(*input);
            *output = f(*output);
        }
        Kernel::Softmax {
            input,
            output,
            mask,
            ..
        } => {
            *input = f(*input);
            *output = f(*output);
            if let Some(m) = mask {
                v(&mut m.view);
            }
        }
        Kernel::Elementwise { inputs, output, .. } => {
            inputs.iter_mut().for_each(v);
            v(output);
        }
        Kernel::Copy { src, dst, .. } => {
            *src = f(*src);
            *dst = f(*dst);
        }
        Kernel::Gather {
            data,
            indices,
            output,
            ..
        } => {
            *data = f(*data);
            *indices = f(*indices);
            *output = f(*output);
        }
        Kernel::Convert { input, output, .. } => {
            *input = f(*input);
            *output = f(*output);
        }
        Kernel::Compare { a, b, output, .. } | Kernel::QBinary { a, b, output, .. } => {
            v(a);
            v(b);
            v(output);
        }
        Kernel::IntElementwise { a, b, output, .. } => {
            v(a);
            if let Some(b) = b {
                v(b);
            }
            v(output);
        }
        Kernel::CumSum { input, output, .. } => {
            *input = f(*input);
            *output = f(*output);
        }
        Kernel::LayerNorm {
            input,
            scale,
            bias,
            output,
            mean,
            inv_std,
            ..
        } => {
            *input = f(*input);
            *output = f(*output);
            for s in [scale, bias].into_iter().flatten() {
                v(s);
            }
            for b in [mean, inv_std].into_iter().flatten() {
                *b = f(*b);
            }
        }
        Kernel::Logic { a, b, output, .. } => {
            v(a);
            if let Some(b) = b {
                v(b);
            }
            v(output);
        }
        Kernel::Select {
            cond, a, b, output, ..
        } => {
            v(cond);
            v(a);
            v(b);
            v(output);
        }
    }
}

/// Lowers a graph whose ops all have kernels. `name` prefixes the artifact's symbols.
/// A node's name, or its op type and index when the model left it unnamed.
fn node_label(g: &Graph, n: NodeIndex) -> String {
    let node = g.node(n);
    if node.name.is_empty() {
        format!("{}#{}", node.op.name(), n.index())
    } else {
        node.name.clone()
    }
}

pub fn lower(g: &Graph, name: &str) -> Result<Lowered, Error> {
    let mut b = Builder {
        g,
        loc: HashMap::new(),
        consts: Vec::new(),
        temps: Vec::new(),
        kernels: Vec::new(),
        skip: Vec::new(),
        fused: 0,
        in_place: 0,
        true_const: None,
    };
    for (i, &v) in g.inputs.iter().enumerate() {
        b.loc.insert(v, Loc::Input(i as u32));
    }
    // Outputs computed by nodes are written in place; the rest are copied at the end.
    let mut late_copies = Vec::new();
    for (i, &v) in g.outputs.iter().enumerate() {
        let out = Loc::Output(i as u32);
        if g.value(v).producer.is_some() && !b.loc.contains_key(&v) {
            b.loc.insert(v, out);
        } else {
            late_copies.push((v, out));
        }
    }
    let mut kernel_nodes = Vec::new();
    let mut unsupported_nodes = Vec::new();
    for n in g.topo_order() {
        if b.skip.contains(&n) {
            continue;
        }
        let fused_before = b.skip.len();
        match b.node(n) {
            Ok(()) => {}
            // Keep going, so that every node the targets cannot run is reported at once.
            Err(Error::Unsupported(ops)) => unsupported_nodes.extend(ops),
            Err(e) => return Err(e),
        }
        let label = std::iter::once(n)
            .chain(b.skip[fused_before..].iter().copied())
            .map(|m| node_label(g, m))
            .collect::<Vec<_>>()
            .join("+");
        kernel_nodes.resize(b.kernels.len(), label);
    }
    if !unsupported_nodes.is_empty() {
        return Err(Error::Unsupported(unsupported_nodes));
    }
    for (v, out) in late_copies {
        let from = b.loc(v);
        b.copy(from, out, g.value(v).byte_size() as u64);
        kernel_nodes.resize(b.kernels.len(), format!("output copy {}", g.value(v).name));
    }
    let merged_elementwise = fuse::elementwise_chains(&mut b.kernels, &mut kernel_nodes);
    if merged_elementwise > 0 {
        // Kernels moved and intermediates vanished: lifetimes from the final list.
        for t in &mut b.temps {
            (t.first, t.last) = (usize::MAX, 0);
        }
        for (step, k) in b.kernels.iter().enumerate() {
            for t in fuse::temps_of(k) {
                let temp = &mut b.temps[t];
                temp.first = temp.first.min(step);
                temp.last = temp.last.max(step);
            }
        }
        for t in &mut b.temps {
            if t.first == usize::MAX {
                // Never stored any more: no bytes, no lifetime.
                (t.size, t.first, t.last) = (0, 0, 0);
            }
        }
    }

    let reqs: Vec<memory::Request> = b
        .temps
        .iter()
        .map(|t| memory::Request {
            size: t.size,
            first: t.first.min(t.last),
            last: t.last,
        })
        .collect();
    let plan = memory::plan(&reqs, ARENA_ALIGN);
    let offsets = plan.offsets.clone();
    let mut kernels = b.kernels;
    for k in &mut kernels {
        map_buffers(k, &|buf| match buf {
            Buffer::Arena { offset } => Buffer::Arena {
                offset: offsets[offset as usize],
            },
            other => other,
        });
    }
    let program = Program {
        name: name.to_string(),
        inputs: g
            .inputs
            .iter()
            .map(|&v| io_tensor(g, v))
            .collect::<Result<_, _>>()?,
        outputs: g
            .outputs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                io_tensor(g, v).map(|t| IoTensor {
                    name: g.output_name(i).to_string(),
                    ..t
                })
            })
            .collect::<Result<_, _>>()?,
        arena_size: plan.size,
        arena_align: ARENA_ALIGN,
        consts: b.consts,
        kernels,
    };
    Ok(Lowered {
        program,
        arena_lower_bound: plan.lower_bound,
        arena_heuristic: plan.heuristic,
        fused_activations: b.fused,
        merged_elementwise,
        in_place: b.in_place,
        kernel_nodes,
    })
}
