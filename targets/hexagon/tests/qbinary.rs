//! The integer Add/Mul kernel (`Kernel::QBinary`) under qemu-hexagon, HVX and plain C,
//! bit-exact against the executor: dtype mixes, broadcasts, vector tails, extreme
//! multipliers and shifts, zero points at the ends of their ranges, in place.

mod common;

use common::*;

use edgecc_program::{Buffer, DType, Kernel, QBinary, QBinaryOp, View};

fn view(buf: Buffer, offset: u64, strides: &[i64]) -> View {
    View {
        buf,
        offset,
        strides: strides.to_vec(),
    }
}

fn dense(shape: &[u64]) -> Vec<i64> {
    let mut st = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for d in (0..shape.len()).rev() {
        st[d] = acc;
        acc *= shape[d] as i64;
    }
    st
}

fn zero(rng: &mut Rng, d: DType) -> i32 {
    match d {
        DType::U8 => rng.range(0, 255) as i32,
        _ => rng.range(-128, 127) as i32,
    }
}

/// Parameters as `fold-requant` would choose them for random scales: the larger
/// multiplier with 30 bits, the other anything in range.
fn params(rng: &mut Rng, mul: bool, a: DType, b: DType, y: DType, relu: bool) -> QBinary {
    let big = |rng: &mut Rng| rng.range(1 << 29, (1 << 30) - 1) as i32;
    let any = |rng: &mut Rng| rng.range(-(1 << 30), (1 << 30) - 1) as i32;
    let op = if mul {
        QBinaryOp::Mul { m: big(rng) }
    } else if rng.next().is_multiple_of(2) {
        QBinaryOp::Add {
            ma: big(rng),
            mb: any(rng),
        }
    } else {
        QBinaryOp::Add {
            ma: any(rng),
            mb: big(rng),
        }
    };
    let zy = zero(rng, y);
    let (lo, hi) = if y == DType::U8 {
        (0, 255)
    } else {
        (-128, 127)
    };
    QBinary {
        op,
        a_zero: zero(rng, a),
        b_zero: zero(rng, b),
        shift: if mul {
            rng.range(36, 38) as u32
        } else {
            rng.range(29, 30) as u32
        },
        dtype: y,
        zero_point: zy,
        lo: if relu { zy } else { lo },
        hi,
    }
}

#[test]
fn qbinary_programs_match_the_executor() {
    let mut rng = Rng(0x51ab_2e77_0c3d_9a41);
    let mut b = Builder::new();
    use DType::{I8, U8};
    // (shape, b's strides (None: dense), a, b, y, mul, relu)
    type Case = (Vec<u64>, Option<Vec<i64>>, DType, DType, DType, bool, bool);
    let cases: Vec<Case> = vec![
        // One contiguous run with a tail (300 = 2·128 + 44), every dtype mix.
        (vec![300], None, U8, U8, U8, false, false),
        (vec![2, 3, 50], None, I8, I8, I8, false, true),
        (vec![257], None, U8, I8, I8, true, false),
        (vec![4, 64], None, I8, U8, U8, true, true),
        // A per-column bias (b broadcast along rows), rows of 384 (three vectors).
        (vec![3, 384], Some(vec![0, 1]), U8, I8, U8, false, false),
        // A per-channel value over NCHW planes (b one byte per row: splatted).
        (
            vec![2, 3, 16, 16],
            Some(vec![0, 1, 0, 0]),
            U8,
            U8,
            U8,
            true,
            false,
        ),
        // A scalar.
        (vec![5, 131], Some(vec![0, 0]), I8, U8, I8, false, false),
        // Rows shorter than a vector, and a single element: plain C in both builds.
        (vec![7, 9], Some(vec![0, 1]), U8, U8, U8, false, false),
        (vec![1], None, I8, I8, U8, true, false),
    ];
    for (shape, bst, da, db, dy, mul, relu) in cases {
        let n: u64 = shape.iter().product();
        let st = dense(&shape);
        let bst = bst.unwrap_or_else(|| st.clone());
        let b_len = shape
            .iter()
            .zip(&bst)
            .map(|(&d, &s)| (d as i64 - 1) * s)
            .sum::<i64>()
            + 1;
        let x = b.input(da, rng.bytes(n as usize));
        let y = b.input(db, rng.bytes(b_len as usize));
        let out = b.output(dy, n);
        b.p.kernels.push(Kernel::QBinary {
            shape: shape.clone(),
            a: view(x, 0, &st),
            a_dtype: da,
            b: view(y, 0, &bst),
            b_dtype: db,
            q: params(&mut rng, mul, da, db, dy, relu),
            output: view(out, 0, &st),
        });
    }
    let (got, want) = run_both(&b, "qbinary");
    assert_same(&b.p, &got, &want);
    for (i, w) in want.iter().enumerate() {
        let distinct = w.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(w.len() < 8 || distinct > 4, "output {i} is nearly constant");
    }
}

/// The ends of every range: multipliers ±2^15, shift 1 and 31, zero points at the ends
/// of their dtypes (the largest `|x − z|`), a transposed output (plain C in the HVX
/// build too), and the output written in place over `a` in the arena.
#[test]
fn qbinary_extremes_transposes_and_in_place_match_the_executor() {
    let mut rng = Rng(0x0dd_ba11_5eed);
    let mut b = Builder::new();
    let all: Vec<u8> = (0..=255u8).collect();
    let rev: Vec<u8> = (0..=255u8).rev().collect();
    let (max, min) = ((1 << 30) - 1, -(1 << 30));
    let extremes = [
        (QBinaryOp::Mul { m: max }, 46, 0, -128, DType::U8, DType::I8),
        (
            QBinaryOp::Mul { m: min },
            46,
            255,
            127,
            DType::U8,
            DType::I8,
        ),
        (QBinaryOp::Mul { m: 1 }, 16, -128, 0, DType::I8, DType::U8),
        (
            QBinaryOp::Add { ma: min, mb: max },
            16,
            0,
            255,
            DType::U8,
            DType::U8,
        ),
        (
            QBinaryOp::Add { ma: max, mb: max },
            46,
            127,
            -128,
            DType::I8,
            DType::I8,
        ),
        (
            QBinaryOp::Add {
                ma: 3 << 14,
                mb: -5 << 13,
            },
            16,
            -128,
            127,
            DType::I8,
            DType::I8,
        ),
        (
            QBinaryOp::Add {
                ma: 0x2000_7fff,
                mb: -0x2000_7fff,
            },
            31,
            0,
            0,
            DType::U8,
            DType::U8,
        ),
    ];
    for (i, &(op, shift, za, zb, da, db)) in extremes.iter().enumerate() {
        let x = b.input(da, all.clone());
        let y = b.input(db, rev.clone());
        let dy = if i % 2 == 0 { DType::I8 } else { DType::U8 };
        let out = b.output(dy, 256);
        let zy = zero(&mut rng, dy);
        b.p.kernels.push(Kernel::QBinary {
            shape: vec![256],
            a: view(x, 0, &[1]),
            a_dtype: da,
            b: view(y, 0, &[1]),
            b_dtype: db,
            q: QBinary {
                op,
                a_zero: za,
                b_zero: zb,
                shift,
                dtype: dy,
                zero_point: zy,
                lo: if dy == DType::U8 { 0 } else { -128 },
                hi: if dy == DType::U8 { 255 } else { 127 },
            },
            output: view(out, 0, &[1]),
        });
    }
    // Transposed output: [16, 12] read row-major, written column-major.
    let x = b.input(DType::U8, rng.bytes(192));
    let y = b.input(DType::U8, rng.bytes(192));
    let out = b.output(DType::U8, 192);
    b.p.kernels.push(Kernel::QBinary {
        shape: vec![16, 12],
        a: view(x, 0, &[12, 1]),
        a_dtype: DType::U8,
        b: view(y, 0, &[12, 1]),
        b_dtype: DType::U8,
        q: params(&mut rng, false, DType::U8, DType::U8, DType::U8, false),
        output: view(out, 0, &[1, 16]),
    });
    // In place in the arena: copy a in, add b onto it, copy out.
    let n = 333u64;
    let src = b.input(DType::I8, rng.bytes(n as usize));
    let y = b.input(DType::I8, rng.bytes(n as usize));
    let staged = b.arena(n + 5);
    let Buffer::Arena { offset } = staged else {
        unreachable!()
    };
    let at = Buffer::Arena { offset };
    b.p.kernels.push(Kernel::Copy {
        bytes: n,
        src,
        dst: at,
    });
    let q = params(&mut rng, false, DType::I8, DType::I8, DType::I8, false);
    b.p.kernels.push(Kernel::QBinary {
        shape: vec![n],
        a: view(at, 0, &[1]),
        a_dtype: DType::I8,
        b: view(y, 0, &[1]),
        b_dtype: DType::I8,
        q,
        output: view(at, 0, &[1]),
    });
    let out = b.output(DType::I8, n);
    b.p.kernels.push(Kernel::Copy {
        bytes: n,
        src: at,
        dst: out,
    });
    let (got, want) = run_both(&b, "qbinary-edges");
    assert_same(&b.p, &got, &want);
    // The largest products (255² · (2^30 − 1)) round across a step at shift 46.
    let distinct = |w: &Vec<u8>| w.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(distinct(&want[0]), 2);
    assert!(distinct(&want[5]) > 32);
}

#[test]
fn qbinary_parameters_out_of_range_are_refused() {
    let mut b = Builder::new();
    let x = b.input(DType::U8, vec![0; 4]);
    let out = b.output(DType::U8, 4);
    b.p.kernels.push(Kernel::QBinary {
        shape: vec![4],
        a: view(x, 0, &[1]),
        a_dtype: DType::U8,
        b: view(x, 0, &[1]),
        b_dtype: DType::U8,
        q: QBinary {
            op: QBinaryOp::Add { ma: 1, mb: 1 },
            a_zero: 0,
            b_zero: 300,
            shift: 47,
            dtype: DType::U8,
            zero_point: 0,
            lo: 0,
            hi: 255,
        },
        output: view(out, 0, &[1]),
    });
    let e = edgecc_hexagon::emit_c(&b.p, &edgecc_hexagon::Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kernel 0 (qbinary)") && e.contains("zero point"),
        "{e}"
    );
}
