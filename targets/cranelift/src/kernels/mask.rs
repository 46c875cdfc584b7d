//! Mask kernels: comparisons that write bool bytes ([`Kernel::Compare`]), logic on bool
//! bytes ([`Kernel::Logic`]) and the selection of elements by a bool mask
//! ([`Kernel::Select`], ONNX Where), with the semantics of `edgecc_program::exec`.
//!
//! These run over attention masks and similar small tensors, so they are scalar loop
//! nests: dimensions are simplified as for elementwise kernels (size-1 dimensions dropped,
//! a dimension merged into the next inner one when every view is contiguous across the
//! two), and every loop carries one pointer per view, advanced by its byte stride, so the
//! innermost loop is the loads, one compare or select, the store, and one add per view.
//! Bool bytes (and bytes of every dtype a select moves) are loaded as integers, so
//! float bits, NaN payloads included, are never touched by a float instruction except
//! in an f32 comparison.
//!
//! A Logic kernel whose views are all contiguous or broadcast in the innermost dimension
//! runs 16 bytes at a time. A Select whose condition is a constant broadcast (one byte for
//! the whole kernel) is a plain strided copy of the chosen operand.
//!
//! [`Kernel::Compare`]: edgecc_program::Kernel::Compare
//! [`Kernel::Logic`]: edgecc_program::Kernel::Logic
//! [`Kernel::Select`]: edgecc_program::Kernel::Select

use cranelift_codegen::ir::{
    InstBuilder, Type, Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use edgecc_program::{Buffer, CmpOp, DType, LogicOp, View};

use crate::error::{Error, unsupported};
use crate::fx::Fx;

/// A simplified loop dimension: its size and the byte stride of each view.
pub(crate) struct Dim {
    pub size: u64,
    pub strides: Vec<i64>,
}

/// `elems · size` bytes, refused when it is far from `i64` range.
pub(crate) fn byte_stride(elems: i64, size: u64) -> Result<i64, Error> {
    elems
        .checked_mul(size as i64)
        .filter(|b| b.unsigned_abs() < (1u64 << 48))
        .ok_or_else(|| unsupported(format!("element offset {elems} is out of range")))
}

/// Drops size-1 dimensions and merges a dimension into the next inner one when every view
/// steps across the pair as across one dimension. `views` pairs each view with its element
/// size in bytes.
pub(crate) fn simplify(shape: &[u64], views: &[(&View, u64)]) -> Result<Vec<Dim>, Error> {
    for (v, _) in views {
        if v.strides.len() != shape.len() {
            return Err(unsupported(format!(
                "view has {} strides for rank {}",
                v.strides.len(),
                shape.len()
            )));
        }
    }
    let mut dims: Vec<Dim> = Vec::new();
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let strides = views
            .iter()
            .map(|(v, s)| byte_stride(v.strides[d], *s))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(last) = dims.last_mut()
            && last
                .strides
                .iter()
                .zip(&strides)
                .all(|(&o, &i)| o == i * size as i64)
        {
            last.size *= size;
            last.strides = strides;
            continue;
        }
        dims.push(Dim { size, strides });
    }
    Ok(dims)
}

/// Base pointers of `views` (element offsets applied).
pub(crate) fn bases(fx: &mut Fx, views: &[(&View, u64)]) -> Result<Vec<Value>, Error> {
    let mut ptrs = Vec::with_capacity(views.len());
    for (v, size) in views {
        let p = fx.buf(v.buf);
        ptrs.push(fx.addp(p, byte_stride(v.offset as i64, *size)?));
    }
    Ok(ptrs)
}

/// Whether an input in `buf` may be loaded `readonly + can_move`: only when it cannot
/// share memory with the output (the contract says it does not; arena views are kept
/// ordered anyway, as in elementwise kernels).
pub(crate) fn readonly(buf: Buffer, out: Buffer) -> bool {
    !(buf == out || matches!((buf, out), (Buffer::Arena { .. }, Buffer::Arena { .. })))
}

/// Runs `body` at every point of the nest with one pointer per view.
pub(crate) fn nest(
    fx: &mut Fx,
    dims: &[Dim],
    ptrs: &[Value],
    body: &mut dyn FnMut(&mut Fx, &[Value]),
) -> Result<(), Error> {
    match dims {
        [] => {
            body(fx, ptrs);
            Ok(())
        }
        [outer, rest @ ..] => {
            let mut res = Ok(());
            fx.for_n(outer.size, ptrs, |fx, _, p| {
                if let Err(e) = nest(fx, rest, p, body) {
                    res = Err(e);
                }
                p.iter()
                    .zip(&outer.strides)
                    .map(|(&p, &s)| fx.addp(p, s))
                    .collect()
            });
            res
        }
    }
}

pub(crate) fn int_type(bytes: u64) -> Type {
    match bytes {
        1 => types::I8,
        4 => types::I32,
        _ => types::I64,
    }
}

/// A bool byte normalised to 0 or 1 (`i8`).
fn truth(fx: &mut Fx, byte: Value) -> Value {
    fx.b.ins().icmp_imm_u(IntCC::NotEqual, byte, 0)
}

/// `Kernel::Compare`.
pub(crate) fn emit_compare(
    fx: &mut Fx,
    shape: &[u64],
    op: CmpOp,
    dtype: DType,
    a: &View,
    b: &View,
    output: &View,
) -> Result<(), Error> {
    if shape.contains(&0) {
        return Ok(());
    }
    let size = dtype.size() as u64;
    let views = [(a, size), (b, size), (output, 1)];
    let dims = simplify(shape, &views)?;
    let ptrs = bases(fx, &views)?;
    let ro = [readonly(a.buf, output.buf), readonly(b.buf, output.buf)];
    let (signed, unsigned) = match op {
        CmpOp::Equal => (IntCC::Equal, IntCC::Equal),
        CmpOp::Less => (IntCC::SignedLessThan, IntCC::UnsignedLessThan),
        CmpOp::LessOrEqual => (IntCC::SignedLessThanOrEqual, IntCC::UnsignedLessThanOrEqual),
        CmpOp::Greater => (IntCC::SignedGreaterThan, IntCC::UnsignedGreaterThan),
        CmpOp::GreaterOrEqual => (
            IntCC::SignedGreaterThanOrEqual,
            IntCC::UnsignedGreaterThanOrEqual,
        ),
    };
    // Ordered float conditions: false when either side is NaN.
    let float = match op {
        CmpOp::Equal => FloatCC::Equal,
        CmpOp::Less => FloatCC::LessThan,
        CmpOp::LessOrEqual => FloatCC::LessThanOrEqual,
        CmpOp::Greater => FloatCC::GreaterThan,
        CmpOp::GreaterOrEqual => FloatCC::GreaterThanOrEqual,
    };
    nest(fx, &dims, &ptrs, &mut |fx, p| {
        let r = match dtype {
            DType::F32 => {
                let x = fx.load(types::F32, p[0], 0, ro[0]);
                let y = fx.load(types::F32, p[1], 0, ro[1]);
                fx.b.ins().fcmp(float, x, y)
            }
            DType::I32 | DType::I64 | DType::I8 => {
                let t = int_type(size);
                let x = fx.load(t, p[0], 0, ro[0]);
                let y = fx.load(t, p[1], 0, ro[1]);
                fx.b.ins().icmp(signed, x, y)
            }
            DType::U8 => {
                let x = fx.load(types::I8, p[0], 0, ro[0]);
                let y = fx.load(types::I8, p[1], 0, ro[1]);
                fx.b.ins().icmp(unsigned, x, y)
            }
            DType::Bool => {
                let x = fx.load(types::I8, p[0], 0, ro[0]);
                let y = fx.load(types::I8, p[1], 0, ro[1]);
                let (x, y) = (truth(fx, x), truth(fx, y));
                fx.b.ins().icmp(unsigned, x, y)
            }
        };
        fx.store(r, p[2], 0);
    })
}

/// One logic step on normalised (0/1) bytes or 16-byte vectors of them.
fn connect(fx: &mut Fx, op: LogicOp, x: Value, y: Option<Value>) -> Value {
    match (op, y) {
        (LogicOp::And, Some(y)) => fx.b.ins().band(x, y),
        (LogicOp::Or, Some(y)) => fx.b.ins().bor(x, y),
        (LogicOp::Xor, Some(y)) => fx.b.ins().bxor(x, y),
        // Not (the checker guarantees a second operand for the others).
        _ => {
            let one = match fx.b.func.dfg.value_type(x) {
                types::I8X16 => {
                    let one = fx.b.ins().iconst(types::I8, 1);
                    fx.b.ins().splat(types::I8X16, one)
                }
                t => fx.b.ins().iconst(t, 1),
            };
            fx.b.ins().bxor(x, one)
        }
    }
}

/// `Kernel::Logic`.
pub(crate) fn emit_logic(
    fx: &mut Fx,
    shape: &[u64],
    op: LogicOp,
    a: &View,
    b: Option<&View>,
    output: &View,
) -> Result<(), Error> {
    if (op == LogicOp::Not) != b.is_none() {
        return Err(unsupported(format!(
            "logic {op:?} with the wrong operand count"
        )));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let mut views = vec![(a, 1)];
    views.extend(b.map(|b| (b, 1)));
    views.push((output, 1));
    let n_in = views.len() - 1;
    let mut dims = simplify(shape, &views)?;
    let ptrs = bases(fx, &views)?;
    let ro: Vec<bool> = views[..n_in]
        .iter()
        .map(|(v, _)| readonly(v.buf, output.buf))
        .collect();
    let scalar = |fx: &mut Fx, p: &[Value]| {
        let x = fx.load(types::I8, p[0], 0, ro[0]);
        let x = truth(fx, x);
        let y = (n_in == 2).then(|| {
            let y = fx.load(types::I8, p[1], 0, ro[1]);
            truth(fx, y)
        });
        let r = connect(fx, op, x, y);
        fx.store(r, p[n_in], 0);
    };
    // The innermost dimension 16 bytes at a time when the output is contiguous there and
    // every input contiguous or broadcast; the rest of it (and everything else) scalar.
    let vector = dims.last().is_some_and(|d| {
        d.size >= 16
            && d.strides[n_in] == 1
            && d.strides[..n_in].iter().all(|s| (0..=1).contains(s))
    });
    if !vector {
        let mut body = scalar;
        return nest(fx, &dims, &ptrs, &mut body);
    }
    let Some(inner) = dims.pop() else {
        return Err(unsupported("logic kernel without dimensions"));
    };
    let (nvec, tail) = (inner.size / 16, inner.size % 16);
    let mut body = |fx: &mut Fx, p: &[Value]| {
        let zero = {
            let z = fx.b.ins().iconst(types::I8, 0);
            fx.b.ins().splat(types::I8X16, z)
        };
        let one = {
            let o = fx.b.ins().iconst(types::I8, 1);
            fx.b.ins().splat(types::I8X16, o)
        };
        let ends = fx.for_n(nvec, p, |fx, _, q| {
            let mut t = Vec::with_capacity(n_in);
            for i in 0..n_in {
                let v = if inner.strides[i] == 0 {
                    let s = fx.load(types::I8, q[i], 0, ro[i]);
                    fx.b.ins().splat(types::I8X16, s)
                } else {
                    fx.load(types::I8X16, q[i], 0, ro[i])
                };
                // Lanes of all ones where the byte is non-zero, then 0/1.
                let m = fx.b.ins().icmp(IntCC::NotEqual, v, zero);
                t.push(fx.b.ins().band(m, one));
            }
            let r = connect(fx, op, t[0], t.get(1).copied());
            fx.store(r, q[n_in], 0);
            q.iter()
                .zip(&inner.strides)
                .map(|(&q, &s)| fx.addp(q, 16 * s))
                .collect()
        });
        fx.for_n(tail, &ends, |fx, _, q| {
            scalar(fx, q);
            q.iter()
                .zip(&inner.strides)
                .map(|(&q, &s)| fx.addp(q, s))
                .collect()
        });
    };
    nest(fx, &dims, &ptrs, &mut body)
}

/// `Kernel::Select`. `const_cond` is the condition when it is one constant byte for the
/// whole kernel (a constant view broadcast in every dimension); the kernel is then a copy.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_select(
    fx: &mut Fx,
    shape: &[u64],
    elem_bytes: u32,
    cond: &View,
    a: &View,
    b: &View,
    output: &View,
    const_cond: Option<bool>,
) -> Result<(), Error> {
    if !matches!(elem_bytes, 1 | 4 | 8) {
        return Err(unsupported(format!(
            "select elem_bytes {elem_bytes} is not 1, 4 or 8"
        )));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let size = elem_bytes as u64;
    let t = int_type(size);
    if let Some(c) = const_cond {
        let src = if c { a } else { b };
        let views = [(src, size), (output, size)];
        let dims = simplify(shape, &views)?;
        let ptrs = bases(fx, &views)?;
        let ro = readonly(src.buf, output.buf);
        return nest(fx, &dims, &ptrs, &mut |fx, p| {
            let v = fx.load(t, p[0], 0, ro);
            fx.store(v, p[1], 0);
        });
    }
    let views = [(cond, 1), (a, size), (b, size), (output, size)];
    let dims = simplify(shape, &views)?;
    let ptrs = bases(fx, &views)?;
    let ro = [
        readonly(cond.buf, output.buf),
        readonly(a.buf, output.buf),
        readonly(b.buf, output.buf),
    ];
    nest(fx, &dims, &ptrs, &mut |fx, p| {
        let c = fx.load(types::I8, p[0], 0, ro[0]);
        let x = fx.load(t, p[1], 0, ro[1]);
        let y = fx.load(t, p[2], 0, ro[2]);
        // `select` takes any non-zero condition as true.
        let r = fx.b.ins().select(c, x, y);
        fx.store(r, p[3], 0);
    })
}
