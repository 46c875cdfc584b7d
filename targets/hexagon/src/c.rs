//! Small writers of C expressions and statements shared by the kernel emitters.

use std::fmt::Write;

use edgecc_program::{Buffer, DType, QuantOut, Requant, View, ZeroPoint};

use crate::Error;

/// The C type (a `may_alias` typedef) of one element of `d`.
pub(crate) fn ctype(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32a",
        DType::U8 | DType::Bool => "u8a",
        DType::I8 => "i8a",
        DType::I32 => "i32a",
        DType::I64 => "i64a",
    }
}

/// A C expression pointing at the start of `b`, typed `T *`.
pub(crate) fn ptr(b: Buffer, t: &str) -> String {
    match b {
        Buffer::Arena { offset } => format!("(({t} *)(arena + {offset}))"),
        Buffer::Input(i) => format!("(({t} *)inputs[{i}])"),
        Buffer::Output(i) => format!("(({t} *)outputs[{i}])"),
        Buffer::Const(c) => format!("(({t} *)c{})", c.0),
    }
}

/// The element offset of `v` at loop indices `i0, i1, ..` (one per stride).
pub(crate) fn at(v: &View) -> String {
    let mut s = format!("{}", v.offset);
    for (d, st) in v.strides.iter().enumerate() {
        if *st != 0 {
            let _ = write!(s, " + i{d} * {st}");
        }
    }
    s
}

pub(crate) fn check_rank(v: &View, rank: usize, what: &str) -> Result<(), Error> {
    if v.strides.len() == rank {
        Ok(())
    } else {
        Err(Error(format!(
            "malformed program: view `{what}` has {} strides, expected {rank}",
            v.strides.len()
        )))
    }
}

/// Opens one loop per dimension of `shape` (`i0`, `i1`, ..) and returns the indentation
/// and the number of braces to close.
pub(crate) fn open_loops(s: &mut String, shape: &[u64]) -> (String, usize) {
    let mut ind = String::from("    ");
    for (d, n) in shape.iter().enumerate() {
        let _ = writeln!(s, "{ind}for (ix_t i{d} = 0; i{d} < {n}; i{d}++) {{");
        ind.push_str("    ");
    }
    (ind, shape.len())
}

pub(crate) fn close_loops(s: &mut String, n: usize) {
    for d in (0..n).rev() {
        let _ = writeln!(s, "{}}}", "    ".repeat(d + 1));
    }
}

/// Emits the zero point as a local `zp` of the operand dtype's value.
pub(crate) fn zero_point(s: &mut String, z: ZeroPoint, d: DType) {
    match z {
        ZeroPoint::Const(v) => {
            let _ = writeln!(s, "    const int32_t zp = {v};");
        }
        ZeroPoint::Runtime(b) => {
            let _ = writeln!(
                s,
                "    const int32_t zp = (int32_t){}[0];",
                ptr(b, ctype(d))
            );
        }
    }
}

/// Emits the multiplier table of `r` (or nothing for one multiplier).
pub(crate) fn requant_table(s: &mut String, r: &Requant, channels: u32) -> Result<(), Error> {
    if r.multiplier.len() != 1 {
        if r.multiplier.len() < channels as usize {
            return Err(Error(
                "malformed program: fewer multipliers than channels".into(),
            ));
        }
        let _ = write!(
            s,
            "    static const int32_t mult[{}] = {{",
            r.multiplier.len()
        );
        for m in &r.multiplier {
            let _ = write!(s, " {m},");
        }
        s.push_str(" };\n");
    }
    Ok(())
}

/// The C statement storing accumulator `acc` for channel expression `ch` at `dst[idx]`.
pub(crate) fn store_quant(out: &QuantOut, dst: &str, idx: &str, ch: &str) -> String {
    match out {
        QuantOut::I32 => format!("{dst}[{idx}] = acc;"),
        QuantOut::Requant(r) => {
            let m = if r.multiplier.len() == 1 {
                r.multiplier[0].to_string()
            } else {
                format!("mult[{ch}]")
            };
            format!(
                "{dst}[{idx}] = ({})ec_requant(acc, {m}, {}, {}, {}, {});",
                ctype(r.dtype),
                r.shift,
                r.zero_point,
                r.lo,
                r.hi
            )
        }
    }
}

/// An exact C float literal for `x` (bit pattern for non-finite values).
pub(crate) fn float_lit(x: f32) -> String {
    if x.is_finite() {
        format!("{x:?}f")
    } else {
        format!("ec_float(0x{:08x}u)", x.to_bits())
    }
}

/// `shape` and `views` (one stride per dim each) with size-1 dims dropped and neighbouring
/// dims merged wherever every view steps through them as through one (`stride[d] ==
/// stride[d+1] · shape[d+1]`): the same elements in the same order, in fewer and longer
/// loops (clang spends less time on them, and a contiguous run is one loop).
pub(crate) fn simplify(shape: &[u64], views: &[&View]) -> (Vec<u64>, Vec<View>) {
    let mut dims: Vec<(u64, Vec<i64>)> = Vec::new();
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let st: Vec<i64> = views.iter().map(|v| v.strides[d]).collect();
        match dims.last_mut() {
            Some((pn, ps)) if ps.iter().zip(&st).all(|(p, s)| *p == s * n as i64) => {
                *pn *= n;
                *ps = st;
            }
            _ => dims.push((n, st)),
        }
    }
    let views = views
        .iter()
        .enumerate()
        .map(|(i, v)| View {
            buf: v.buf,
            offset: v.offset,
            strides: dims.iter().map(|(_, st)| st[i]).collect(),
        })
        .collect();
    (dims.into_iter().map(|(n, _)| n).collect(), views)
}
