//! Shared by `ops_jit.rs` and `ops_aarch64.rs`: random op instances (proptest strategies
//! over shapes and attributes, a seed for the values), a builder that puts any number of
//! instances into one graph, and the comparison of compiled outputs with the reference
//! interpreter under a per-op tolerance.
//!
//! # Tolerances
//!
//! `U = 2^-24` is the unit roundoff of f32. The interpreter is the oracle: it computes
//! elementwise ops in f32 exactly as ONNX specifies and accumulates sums of products in
//! f64, rounding once, so for those its result is the correctly rounded exact value (up
//! to one f64 rounding, negligible). Per op (see the `tol_*` functions for the reasons):
//!
//! | op | bound on \|compiled − reference\| |
//! |---|---|
//! | Add Sub Mul Div Max Min, Neg Abs Relu Clip, Sqrt Reciprocal | exact (IEEE ops, correctly rounded in both) |
//! | MaxPool, Transpose, Concat, Reshape, Flatten, Identity, outputs that are inputs/constants | exact (data movement, comparisons) |
//! | MatMul, Gemm, Conv (+ fused Relu/Clip) | per element `(K+5)·U·M`, `M` = the same op on \|operands\| (`Σ|a||b|`, `|α|`, `|β||c|`, `|bias|`) |
//! | Exp | `4e-7·|ref| + 2^-126` |
//! | Tanh (and fused into GEMM/Conv) | `3e-7` absolute (+ GEMM bound) |
//! | Sigmoid (and fused) | `6e-7·|ref| + 2^-126` (+ ¼ GEMM bound) |
//! | Softmax | `(2·3e-7 + (L+3)·U)·|ref| + 2^-126`, `L` = reduced length |
//! | AveragePool, GlobalAveragePool | `(L+2)·U·max|x|`, `L` = window/plane size |
//! | BatchNormalization | `8·U·(|x·s/σ| + |mean·s/σ| + |bias|)` |
//! | multi-op chains | `1e-5·max(1, max|ref|)` |
#![allow(dead_code)]

use std::fmt::Debug;

use edgecc::ir::{
    AutoPad, Binary, Cmp, DType, Graph, Logic, Op, Tensor, Unary, ValueId, WindowAttrs,
};
use edgecc::passes::PassManager;
use proptest::prelude::*;

/// Unit roundoff of f32.
pub const U: f64 = 1.0 / 16_777_216.0;
/// Just above the smallest normal f32 (1.1755e-38). The backend's exp clamps its argument at -87.3365 so that
/// `2^n` stays normal: where the true result is subnormal or 0 it returns e^-87.3365 ≈
/// 1.1755e-38 instead.
pub const MIN_NORMAL: f64 = 1.2e-38;
/// targets/cranelift/src/math.rs states exp's max relative error "about 2 ulp, < 3e-7";
/// the interpreter's `f32::exp` adds at most half an ulp (6e-8). 4e-7 ≈ 3.4 ulp.
pub const EXP_REL: f64 = 4e-7;
/// math.rs: tanh absolute error "about 1 ulp of 1 (≤ 2e-7)"; plus the reference's
/// rounding (≤ 6e-8 for |tanh| ≤ 1), rounded up.
pub const TANH_ABS: f64 = 3e-7;
/// math.rs: sigmoid is `1/(1+e^-x)`: exp's 3e-7 scaled by `e/(1+e) ≤ 1`, then one add and
/// one divide (U each); the interpreter's f32 sigmoid is itself within ~2 ulp (1.2e-7).
pub const SIGMOID_REL: f64 = 6e-7;
/// Multi-op chains: the per-op bounds compose, but instead of propagating per-element
/// bounds through several ops we bound the error against the output's scale. With the
/// sizes used (K ≤ ~100, operands ≤ 1) accumulated rounding stays below ~1e-6 of the
/// scale, while any indexing, fusion or aliasing error is O(scale).
pub const CHAIN_SCALE: f64 = 1e-5;

// ---------------------------------------------------------------------------------------
// Values

/// SplitMix64: the values of a case are a function of its seed, so proptest shrinks
/// shapes and attributes while the data stays reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.u64() % n.max(1) as u64) as usize
    }
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        (lo as f64 + (hi as f64 - lo as f64) * self.unit()) as f32
    }
    pub fn vals(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    /// Magnitudes in `[lo, hi]` with a random sign.
    pub fn away(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let v = self.uniform(lo, hi);
                if self.u64() & 1 == 0 { v } else { -v }
            })
            .collect()
    }
    /// Uniform values with about a quarter replaced by entries of `special`.
    pub fn with_specials(&mut self, n: usize, lo: f32, hi: f32, special: &[f32]) -> Vec<f32> {
        (0..n)
            .map(|_| {
                if self.below(4) == 0 {
                    special[self.below(special.len())]
                } else {
                    self.uniform(lo, hi)
                }
            })
            .collect()
    }
    pub fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::f32(shape.to_vec(), self.vals(n, lo, hi))
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

pub fn abs_t(t: &Tensor) -> Tensor {
    Tensor::f32(
        t.shape.clone(),
        t.as_f32().unwrap().iter().map(|v| v.abs()).collect(),
    )
}

/// `op` evaluated by the interpreter on the absolute values of `args`: for sums of
/// products this is `Σ|a||b|` per output element, the scale of the rounding error.
pub fn magnitude(op: &Op, args: &[&Tensor]) -> Vec<f64> {
    let abs: Vec<Tensor> = args.iter().map(|t| abs_t(t)).collect();
    let refs: Vec<&Tensor> = abs.iter().collect();
    let out = edgecc::interp::eval(op, &refs).unwrap();
    out[0].as_f32().unwrap().iter().map(|&v| v as f64).collect()
}

// ---------------------------------------------------------------------------------------
// Tolerances and comparison

/// `|got − want| ≤ elem[i] + rel·|want| + abs + scale·max(1, max|want|)`; all zero means
/// exactly equal (as values: -0 equals +0, NaN equals NaN).
#[derive(Clone, Debug, Default)]
pub struct Tol {
    pub elem: Vec<f64>,
    pub rel: f64,
    pub abs: f64,
    pub scale: f64,
}

impl Tol {
    pub fn exact() -> Tol {
        Tol::default()
    }
    pub fn rel(rel: f64, abs: f64) -> Tol {
        Tol {
            rel,
            abs,
            ..Tol::default()
        }
    }
    pub fn elem(elem: Vec<f64>) -> Tol {
        Tol {
            elem,
            ..Tol::default()
        }
    }
    pub fn scale(scale: f64) -> Tol {
        Tol {
            scale,
            ..Tol::default()
        }
    }
    fn is_exact(&self) -> bool {
        self.elem.iter().all(|&e| e == 0.0)
            && self.rel == 0.0
            && self.abs == 0.0
            && self.scale == 0.0
    }
}

/// Sum-of-products ops (MatMul, Gemm, Conv): the kernels accumulate `K` products in f32
/// in their own order (register tiles, unrolled K, FMA where the ISA has it), the
/// interpreter in f64. The classic bound for a dot product is `γ_K·Σ|a||b|` with
/// `γ_K ≈ K·U`; `alpha` scaling, the compile-time `beta·C`, the bias add and the final
/// rounding of both sides add at most 5 more `U·M`. Relu/Clip are 1-Lipschitz and exact.
pub fn tol_dot(k: usize, mag: &[f64]) -> Vec<f64> {
    mag.iter().map(|m| (k as f64 + 5.0) * U * m).collect()
}

/// An activation applied after a sum-of-products whose error is bounded by `elem`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    None,
    Relu,
    Clip(f32, f32),
    Sigmoid,
    Tanh,
}

impl Act {
    pub fn op(self) -> Option<Op> {
        match self {
            Act::None => None,
            Act::Relu => Some(Op::Unary(Unary::Relu)),
            Act::Clip(min, max) => Some(Op::Clip { min, max }),
            Act::Sigmoid => Some(Op::Unary(Unary::Sigmoid)),
            Act::Tanh => Some(Op::Unary(Unary::Tanh)),
        }
    }
    /// The tolerance after this activation: Relu/Clip keep the bound (1-Lipschitz, exact);
    /// tanh is 1-Lipschitz plus its own absolute error; sigmoid is ¼-Lipschitz plus its
    /// relative error.
    pub fn tol(self, elem: Vec<f64>) -> Tol {
        match self {
            Act::None | Act::Relu | Act::Clip(..) => Tol::elem(elem),
            Act::Tanh => Tol {
                elem,
                abs: TANH_ABS,
                ..Tol::default()
            },
            Act::Sigmoid => Tol {
                elem: elem.into_iter().map(|e| 0.25 * e).collect(),
                rel: SIGMOID_REL,
                abs: MIN_NORMAL,
                ..Tol::default()
            },
        }
    }
}

pub fn act_strategy() -> BoxedStrategy<Act> {
    prop_oneof![
        3 => Just(Act::None),
        2 => Just(Act::Relu),
        1 => Just(Act::Clip(0.0, 6.0)),
        1 => Just(Act::Clip(-0.5, 0.25)),
        1 => Just(Act::Sigmoid),
        1 => Just(Act::Tanh),
    ]
    .boxed()
}

fn compare(label: &str, got: &[f32], want: &Tensor, tol: &Tol) -> Result<(), String> {
    let w = want
        .as_f32()
        .ok_or_else(|| format!("{label}: reference is not f32"))?;
    if got.len() != w.len() {
        return Err(format!(
            "{label}: compiled output has {} elements, reference {:?} has {}",
            got.len(),
            want.shape,
            w.len()
        ));
    }
    let maxref = w
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f64, |m, &v| m.max(v.abs() as f64));
    let exact = tol.is_exact();
    let mut bad = Vec::new();
    let mut nbad = 0usize;
    for (i, (&g, &r)) in got.iter().zip(w).enumerate() {
        let ok = if g == r || (g.is_nan() && r.is_nan()) {
            true
        } else if exact || !g.is_finite() || !r.is_finite() {
            false
        } else {
            let d = (g as f64 - r as f64).abs();
            let b = tol.elem.get(i).copied().unwrap_or(0.0)
                + tol.rel * (r as f64).abs()
                + tol.abs
                + tol.scale * maxref.max(1.0);
            d <= b
        };
        if !ok {
            nbad += 1;
            if bad.len() < 6 {
                let b = tol.elem.get(i).copied().unwrap_or(0.0)
                    + tol.rel * (r as f64).abs()
                    + tol.abs
                    + tol.scale * maxref.max(1.0);
                bad.push(format!(
                    "[{i}] got {g:e} want {r:e} (diff {:e}, bound {b:e})",
                    (g as f64 - r as f64).abs()
                ));
            }
        }
    }
    if nbad > 0 {
        return Err(format!(
            "{label}: {nbad} of {} elements of {:?} out of tolerance: {}",
            w.len(),
            want.shape,
            bad.join("; ")
        ));
    }
    Ok(())
}

/// Non-float outputs (bools, integers) are compared byte for byte with the reference's
/// little-endian encoding (bools as 0/1).
fn compare_bytes(label: &str, got: &[u8], want: &Tensor) -> Result<(), String> {
    let w = want
        .to_le_bytes()
        .ok_or_else(|| format!("{label}: reference has no byte encoding"))?;
    if got.len() != w.len() {
        return Err(format!(
            "{label}: compiled output has {} bytes, reference {:?} {} has {}",
            got.len(),
            want.shape,
            want.dtype,
            w.len()
        ));
    }
    let size = want.dtype.bits().max(8) / 8;
    let bad: Vec<usize> = (0..w.len() / size)
        .filter(|&i| got[i * size..(i + 1) * size] != w[i * size..(i + 1) * size])
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = bad
        .iter()
        .take(6)
        .map(|&i| {
            format!(
                "[{i}] got {:02x?} want {:02x?}",
                &got[i * size..(i + 1) * size],
                &w[i * size..(i + 1) * size]
            )
        })
        .collect();
    Err(format!(
        "{label}: {} of {} {} elements of {:?} differ: {}",
        bad.len(),
        w.len() / size,
        want.dtype,
        want.shape,
        shown.join("; ")
    ))
}

// ---------------------------------------------------------------------------------------
// Graph builder

/// A graph under construction, with the input data and, per graph output, a label (the
/// instance's parameters) and its tolerance.
pub struct Net {
    pub g: Graph,
    pub inputs: Vec<Tensor>,
    /// Per input, the bytes the compiled code gets when they are not `inputs[i]`'s own
    /// (bool bytes other than 0/1, which the interpreter reads as true).
    pub raw: Vec<Option<Vec<u8>>>,
    pub outs: Vec<(String, Tol)>,
    uid: usize,
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Net {
    pub fn new() -> Net {
        Net {
            g: Graph::new("ops"),
            inputs: Vec::new(),
            raw: Vec::new(),
            outs: Vec::new(),
            uid: 0,
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.uid += 1;
        format!("{prefix}{}", self.uid)
    }

    pub fn input(&mut self, t: Tensor) -> ValueId {
        let name = self.fresh("x");
        let v = self.g.add_input(name, t.dtype, t.shape.clone());
        self.g.inputs.push(v);
        self.inputs.push(t);
        self.raw.push(None);
        v
    }

    /// A graph input whose compiled code gets `bytes`; the interpreter gets them decoded
    /// (`Tensor::from_le_bytes`, so a bool byte 2 is true).
    pub fn input_bytes(
        &mut self,
        dtype: edgecc::ir::DType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    ) -> ValueId {
        let t = Tensor::from_le_bytes(dtype, shape, &bytes).expect("test bug: bad input bytes");
        let v = self.input(t);
        *self.raw.last_mut().unwrap() = Some(bytes);
        v
    }

    pub fn konst(&mut self, t: Tensor) -> ValueId {
        let name = self.fresh("c");
        self.g.add_const(name, t)
    }

    /// A graph input or a constant holding `t`.
    pub fn data(&mut self, is_const: bool, t: Tensor) -> ValueId {
        if is_const {
            self.konst(t)
        } else {
            self.input(t)
        }
    }

    pub fn node(&mut self, op: Op, ins: &[ValueId]) -> ValueId {
        let name = self.fresh("n");
        match self.g.add_node(name, op.clone(), ins.to_vec()) {
            Ok((_, outs)) => outs[0],
            Err(e) => panic!("test bug: cannot build {op}: {e}"),
        }
    }

    /// Every output of a node (for multi-output ops).
    pub fn node_outs(&mut self, op: Op, ins: &[ValueId]) -> Vec<ValueId> {
        let name = self.fresh("n");
        match self.g.add_node(name, op.clone(), ins.to_vec()) {
            Ok((_, outs)) => outs,
            Err(e) => panic!("test bug: cannot build {op}: {e}"),
        }
    }

    pub fn output(&mut self, v: ValueId, label: impl Into<String>, tol: Tol) {
        self.g.outputs.push(v);
        self.outs.push((label.into(), tol));
    }

    /// Interpreter, then passes, lowering and `run` on the lowered program; every output
    /// is compared, and every mismatch is reported.
    fn check_with(
        &self,
        run: impl FnOnce(&edgecc_program::Program, &[Vec<u8>]) -> Result<Vec<Vec<u8>>, edgecc::Error>,
    ) -> Result<(), String> {
        let want = edgecc::interp::run(&self.g, &self.inputs)
            .map_err(|e| format!("interpreter failed: {e}"))?;
        let mut g = self.g.clone();
        PassManager::default_pipeline()
            .run(&mut g)
            .map_err(|e| format!("passes failed: {e}"))?;
        let lowered = edgecc::lower::lower(&g, "ops")
            .map_err(|e| format!("lowering failed: {e} (graph outputs: {:?})", self.labels()))?;
        let bytes: Vec<Vec<u8>> = self
            .inputs
            .iter()
            .zip(&self.raw)
            .map(|(t, raw)| raw.clone().unwrap_or_else(|| t.to_le_bytes().unwrap()))
            .collect();
        let got = run(&lowered.program, &bytes).map_err(|e| {
            format!(
                "compiled run failed: {e} (graph outputs: {:?})",
                self.labels()
            )
        })?;
        let mut errs = Vec::new();
        for (i, ((label, tol), w)) in self.outs.iter().zip(&want).enumerate() {
            if w.dtype != edgecc::ir::DType::F32 {
                if let Err(e) = compare_bytes(&format!("output {i} ({label})"), &got[i], w) {
                    errs.push(e);
                }
                continue;
            }
            let g: Vec<f32> = got[i]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            if let Err(e) = compare(&format!("output {i} ({label})"), &g, w, tol) {
                errs.push(e);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }

    fn labels(&self) -> Vec<&str> {
        self.outs.iter().map(|(l, _)| l.as_str()).collect()
    }

    /// The lowered program on the scalar executor (`edgecc_program::exec`).
    pub fn check_exec(&self) -> Result<(), String> {
        self.check_with(|p, ins| {
            let in_refs: Vec<&[u8]> = ins.iter().map(|b| b.as_slice()).collect();
            let mut outs: Vec<Vec<u8>> = p
                .outputs
                .iter()
                .map(|o| vec![0u8; o.byte_size() as usize])
                .collect();
            let mut out_refs: Vec<&mut [u8]> = outs.iter_mut().map(|b| b.as_mut_slice()).collect();
            let mut arena = vec![0u8; p.arena_size as usize];
            edgecc_program::exec::run(p, &in_refs, &mut out_refs, &mut arena)
                .map_err(|e| edgecc::Error::Target(e.to_string()))?;
            Ok(outs)
        })
    }

    pub fn check_jit(&self) -> Result<(), String> {
        self.check_with(edgecc::run_target::run_jit)
    }

    pub fn check_cross(&self, target: &edgecc_cranelift::Target) -> Result<(), String> {
        self.check_with(|p, b| edgecc::run_target::run_cross(p, target, b))
    }
}

/// One instance of `build` on the JIT, as a proptest case.
pub fn jit_case<P: Debug>(p: &P, build: fn(&mut Net, &P)) -> Result<(), TestCaseError> {
    let mut net = Net::new();
    build(&mut net, p);
    net.check_jit().map_err(TestCaseError::fail)
}

/// Few cases per op keep the debug-build suite fast; no regression files in the tree;
/// shrinking recompiles per step, so it is bounded. `PROPTEST_CASES` overrides the count
/// (for a longer bug hunt).
pub fn config(cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..proptest::test_runner::Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Shapes

/// A dimension in `1..=max`, weighted towards 1 and odd sizes (vector tails).
pub fn dim(max: usize) -> BoxedStrategy<usize> {
    prop_oneof![
        2 => Just(1usize),
        4 => (0..=(max - 1) / 2).prop_map(|h| 2 * h + 1),
        3 => 1..=max,
    ]
    .boxed()
}

/// Largest dim for a tensor of rank `r`, keeping tensors small.
pub fn max_dim(r: usize) -> usize {
    match r {
        0 | 1 => 37,
        2 => 20,
        3 => 9,
        4 => 6,
        _ => 5,
    }
}

pub fn shape(ranks: std::ops::RangeInclusive<usize>) -> BoxedStrategy<Vec<usize>> {
    ranks
        .prop_flat_map(|r| prop::collection::vec(dim(max_dim(r)), r))
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Unary ops and Clip

#[derive(Clone, Debug)]
pub enum UnaryKind {
    U(Unary),
    Clip(f32, f32),
}

#[derive(Clone, Debug)]
pub struct UnaryP {
    pub kind: UnaryKind,
    pub shape: Vec<usize>,
    pub seed: u64,
}

pub fn unary_strategy() -> BoxedStrategy<UnaryP> {
    let kind = prop_oneof![
        Just(UnaryKind::U(Unary::Relu)),
        Just(UnaryKind::U(Unary::Sigmoid)),
        Just(UnaryKind::U(Unary::Tanh)),
        Just(UnaryKind::U(Unary::Exp)),
        Just(UnaryKind::U(Unary::Neg)),
        Just(UnaryKind::U(Unary::Abs)),
        Just(UnaryKind::U(Unary::Sqrt)),
        Just(UnaryKind::U(Unary::Reciprocal)),
        clip_bounds().prop_map(|(a, b)| UnaryKind::Clip(a, b)),
    ];
    (kind, shape(0..=4), any::<u64>())
        .prop_map(|(kind, shape, seed)| UnaryP { kind, shape, seed })
        .boxed()
}

pub fn clip_bounds() -> BoxedStrategy<(f32, f32)> {
    prop_oneof![
        Just((0.0, 6.0)),
        Just((-1.0, 1.0)),
        Just((f32::NEG_INFINITY, 0.5)),
        Just((-0.5, f32::INFINITY)),
        Just((f32::NEG_INFINITY, f32::INFINITY)),
        Just((0.75, 0.75)),
        // min > max: ONNX gives max everywhere.
        Just((1.0, -1.0)),
        (-3.0f32..0.0, 0.0f32..3.0),
    ]
    .boxed()
}

/// Exp arguments: ±30, near the top of f32's range (e^88.37 ≈ 2.4e38 is finite; the
/// backend clamps at 88.3763, above which it saturates, see `exp_near_overflow` in
/// ops_jit.rs), and below -87.34 where the reference is subnormal.
pub const EXP_SPECIAL: &[f32] = &[
    30.0, -30.0, 88.0, 88.3, 88.37, -87.0, -87.33, -88.0, -95.0, -103.0, -150.0, 0.0, 1e-8, -1e-8,
    60.5, -60.5, 1.0, -1.0,
];
pub const TANH_SPECIAL: &[f32] = &[
    0.0, 1e-4, -1e-4, 1e-8, -1e-8, 0.5, -0.5, 9.0, -9.0, 20.0, -20.0, 50.0, -50.0, 100.0, -100.0,
];
pub const SIGMOID_SPECIAL: &[f32] = &[
    0.0, 1e-8, 30.0, -30.0, 88.0, -88.0, 88.5, -88.5, 100.0, -100.0, 17.0, -17.0,
];

pub fn build_unary(net: &mut Net, p: &UnaryP) {
    let mut rng = Rng::new(p.seed);
    let n = numel(&p.shape);
    let (op, vals, tol) = match p.kind {
        UnaryKind::Clip(min, max) => (
            Op::Clip { min, max },
            rng.with_specials(n, -4.0, 4.0, &[min, max, 0.0]),
            Tol::exact(),
        ),
        UnaryKind::U(u) => {
            let (vals, tol) = match u {
                // Correctly rounded IEEE operations (sqrt, 1/x) or exact ones.
                Unary::Relu | Unary::Neg | Unary::Abs => {
                    (rng.with_specials(n, -4.0, 4.0, &[0.0, -0.0]), Tol::exact())
                }
                Unary::Sqrt => (
                    rng.with_specials(n, 0.0, 100.0, &[0.0, 1.0, 4.0, 1e-30]),
                    Tol::exact(),
                ),
                Unary::Reciprocal => (rng.away(n, 0.01, 100.0), Tol::exact()),
                Unary::Erf | Unary::Log => {
                    unreachable!("the generator picks only ops with compiled kernels")
                }
                Unary::Exp => (
                    rng.with_specials(n, -20.0, 20.0, EXP_SPECIAL),
                    Tol::rel(EXP_REL, MIN_NORMAL),
                ),
                Unary::Tanh => (
                    rng.with_specials(n, -10.0, 10.0, TANH_SPECIAL),
                    Tol::rel(0.0, TANH_ABS),
                ),
                Unary::Sigmoid => (
                    rng.with_specials(n, -20.0, 20.0, SIGMOID_SPECIAL),
                    Tol::rel(SIGMOID_REL, MIN_NORMAL),
                ),
            };
            (Op::Unary(u), vals, tol)
        }
    };
    let x = net.input(Tensor::f32(p.shape.clone(), vals));
    let y = net.node(op, &[x]);
    net.output(y, format!("{p:?}"), tol);
}

// ---------------------------------------------------------------------------------------
// Binary ops with broadcasting

/// An operand's shape relative to the output shape `out`: drop `drop` leading dims (rank
/// mismatch; all of them gives a rank-0 scalar), then set the dims whose bit (by position
/// in `out`) is in `ones` to 1 (row, column, leading 1s, both-sides broadcasting).
#[derive(Clone, Copy, Debug)]
pub struct Form {
    pub drop: usize,
    pub ones: u8,
}

impl Form {
    pub fn shape(self, out: &[usize]) -> Vec<usize> {
        let d = self.drop.min(out.len());
        (d..out.len())
            .map(|i| if self.ones >> i & 1 == 1 { 1 } else { out[i] })
            .collect()
    }
}

fn form_strategy(r: usize) -> BoxedStrategy<Form> {
    let last = if r > 0 { 1u8 << (r - 1) } else { 0 };
    let all = ((1u16 << r) - 1) as u8;
    prop_oneof![
        // equal shapes
        3 => Just(Form { drop: 0, ones: 0 }),
        // rank-0 scalar
        1 => Just(Form { drop: r, ones: 0 }),
        // [1, 1, ..., 1]
        1 => Just(Form { drop: 0, ones: all }),
        // row: [n]
        2 => Just(Form { drop: r.saturating_sub(1), ones: 0 }),
        // column: [..., m, 1]
        2 => Just(Form { drop: 0, ones: last }),
        // leading 1s: [1, ..., 1, n]
        1 => Just(Form { drop: 0, ones: all & !last }),
        // anything
        4 => (0..=r, any::<u8>()).prop_map(|(drop, ones)| Form { drop, ones }),
    ]
    .boxed()
}

#[derive(Clone, Debug)]
pub struct BinaryP {
    pub op: Binary,
    pub out: Vec<usize>,
    pub a: Form,
    pub b: Form,
    pub a_const: bool,
    pub b_const: bool,
    pub seed: u64,
}

pub fn binary_strategy() -> BoxedStrategy<BinaryP> {
    let op = prop_oneof![
        Just(Binary::Add),
        Just(Binary::Sub),
        Just(Binary::Mul),
        Just(Binary::Div),
        Just(Binary::Max),
        Just(Binary::Min),
    ];
    (op, shape(0..=4))
        .prop_flat_map(|(op, out)| {
            let r = out.len();
            (
                Just(op),
                Just(out),
                form_strategy(r),
                form_strategy(r),
                prop_oneof![3 => Just(0u8), 1 => Just(1), 1 => Just(2)],
                any::<u64>(),
            )
        })
        .prop_map(|(op, out, a, b, k, seed)| BinaryP {
            op,
            out,
            a,
            b,
            a_const: k == 1,
            b_const: k == 2,
            seed,
        })
        .boxed()
}

/// Exact: both sides apply the same correctly rounded f32 operation to the same operands;
/// Max/Min pick one operand (no NaNs are generated).
pub fn build_binary(net: &mut Net, p: &BinaryP) {
    let mut rng = Rng::new(p.seed);
    let (sa, sb) = (p.a.shape(&p.out), p.b.shape(&p.out));
    let va = rng.vals(numel(&sa), -4.0, 4.0);
    let vb = if p.op == Binary::Div {
        rng.away(numel(&sb), 0.5, 2.0)
    } else {
        rng.with_specials(numel(&sb), -4.0, 4.0, &[0.0, 1.0, -1.0])
    };
    let a = net.data(p.a_const, Tensor::f32(sa, va));
    let b = net.data(p.b_const, Tensor::f32(sb, vb));
    let y = net.node(Op::Binary(p.op), &[a, b]);
    net.output(y, format!("{p:?}"), Tol::exact());
}

// ---------------------------------------------------------------------------------------
// Masks: comparisons, logic, Where, Tile

/// An op of the mask family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaskOp {
    Cmp(Cmp),
    Logic(Logic),
    Not,
    Where,
    Tile,
}

#[derive(Clone, Debug)]
pub struct MaskP {
    pub op: MaskOp,
    /// The dtype of the compared, selected or tiled data (bool for logic).
    pub dtype: DType,
    /// The broadcast shape (Tile: the input's shape).
    pub out: Vec<usize>,
    /// Operand shapes as forms of `out`: `[a, b]` or `[cond, x, y]`.
    pub forms: [Form; 3],
    /// Which operand (if any, index < 3) is a constant.
    pub konst: u8,
    /// Tile's repeats, one per dim of `out`.
    pub repeats: Vec<usize>,
    pub seed: u64,
}

/// Every dtype a program holds.
pub const MASK_DTYPES: [DType; 6] = [
    DType::F32,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::I8,
    DType::Bool,
];

pub fn mask_strategy() -> BoxedStrategy<MaskP> {
    let op = prop_oneof![
        1 => Just(MaskOp::Cmp(Cmp::Equal)),
        1 => Just(MaskOp::Cmp(Cmp::Less)),
        1 => Just(MaskOp::Cmp(Cmp::LessOrEqual)),
        1 => Just(MaskOp::Cmp(Cmp::Greater)),
        1 => Just(MaskOp::Cmp(Cmp::GreaterOrEqual)),
        1 => Just(MaskOp::Logic(Logic::And)),
        1 => Just(MaskOp::Logic(Logic::Or)),
        1 => Just(MaskOp::Logic(Logic::Xor)),
        1 => Just(MaskOp::Not),
        2 => Just(MaskOp::Where),
        2 => Just(MaskOp::Tile),
    ];
    (op, 0..MASK_DTYPES.len(), shape(0..=4))
        .prop_flat_map(|(op, d, out)| {
            let r = out.len();
            // Tile keeps its input and repeats small: the output is their product.
            let out = if op == MaskOp::Tile {
                out.into_iter().take(3).map(|n| n.min(7)).collect()
            } else {
                out
            };
            let rt = out.len();
            (
                Just(op),
                Just(d),
                Just(out),
                [form_strategy(r), form_strategy(r), form_strategy(r)],
                prop_oneof![3 => Just(3u8), 1 => 0u8..3],
                prop::collection::vec(1usize..=3, rt),
                any::<u64>(),
            )
        })
        .prop_map(|(op, d, out, forms, konst, repeats, seed)| MaskP {
            dtype: if matches!(op, MaskOp::Logic(_) | MaskOp::Not) {
                DType::Bool
            } else {
                MASK_DTYPES[d]
            },
            op,
            out,
            forms,
            konst,
            repeats,
            seed,
        })
        .boxed()
}

/// Values of `dtype` drawn from a small set with the edge cases of each type, so that
/// equal elements are common: NaN, ±0 and ±inf for f32; for i64, neighbours above 2^53
/// that round to the same f32/f64 and the extremes; the wrap points of the narrow types.
/// Bool graph inputs also get bytes 2 and 255, which are true. Returns the interpreter's
/// tensor and, for a graph input, the bytes the compiled code gets.
pub fn mask_data(
    rng: &mut Rng,
    dtype: DType,
    shape: &[usize],
    raw_bools: bool,
) -> (Tensor, Vec<u8>) {
    let n = numel(shape);
    let mut bytes = Vec::with_capacity(n * 8);
    for _ in 0..n {
        match dtype {
            DType::F32 => {
                let set = [
                    0.0f32,
                    -0.0,
                    1.0,
                    -1.0,
                    0.5,
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    16_777_216.0,
                    -3.4e38,
                ];
                let v = if rng.below(3) == 0 {
                    rng.uniform(-2.0, 2.0)
                } else {
                    set[rng.below(set.len())]
                };
                bytes.extend(v.to_le_bytes());
            }
            DType::I64 => {
                let set = [
                    0i64,
                    1,
                    -1,
                    (1 << 53) + 1,
                    1 << 53,
                    -(1 << 53) - 1,
                    -(1 << 53),
                    i64::MAX,
                    i64::MAX - 1,
                    i64::MIN,
                    i64::MIN + 1,
                    (1 << 32) + 7,
                    7,
                ];
                bytes.extend(set[rng.below(set.len())].to_le_bytes());
            }
            DType::I32 => {
                let set = [0i32, 1, -1, 16_777_217, 16_777_216, i32::MAX, i32::MIN, -7];
                bytes.extend(set[rng.below(set.len())].to_le_bytes());
            }
            DType::U8 | DType::I8 => {
                let set = [0u8, 1, 2, 127, 128, 200, 255];
                bytes.push(set[rng.below(set.len())]);
            }
            DType::Bool => {
                let set: &[u8] = if raw_bools {
                    &[0, 1, 0, 1, 2, 255]
                } else {
                    &[0, 1]
                };
                bytes.push(set[rng.below(set.len())]);
            }
            other => panic!("test bug: no mask data for {other}"),
        }
    }
    let t = Tensor::from_le_bytes(dtype, shape.to_vec(), &bytes).expect("mask data");
    (t, bytes)
}

/// One operand: a constant or a graph input with (for bools) raw bytes.
fn mask_operand(
    net: &mut Net,
    rng: &mut Rng,
    dtype: DType,
    shape: &[usize],
    konst: bool,
) -> ValueId {
    let (t, bytes) = mask_data(rng, dtype, shape, !konst);
    if konst {
        net.konst(t)
    } else {
        net.input_bytes(dtype, shape.to_vec(), bytes)
    }
}

/// Exact: comparisons, logic and selection have one right answer in every dtype.
pub fn build_mask(net: &mut Net, p: &MaskP) {
    let mut rng = Rng::new(p.seed);
    let k = |i: u8| p.konst == i;
    let y = match p.op {
        MaskOp::Cmp(_) | MaskOp::Logic(_) => {
            let (sa, sb) = (p.forms[0].shape(&p.out), p.forms[1].shape(&p.out));
            let a = mask_operand(net, &mut rng, p.dtype, &sa, k(0));
            let b = mask_operand(net, &mut rng, p.dtype, &sb, k(1));
            let op = match p.op {
                MaskOp::Cmp(c) => Op::Compare(c),
                MaskOp::Logic(l) => Op::Logic(l),
                _ => unreachable!(),
            };
            net.node(op, &[a, b])
        }
        MaskOp::Not => {
            let a = mask_operand(net, &mut rng, DType::Bool, &p.out, k(0));
            net.node(Op::Not, &[a])
        }
        MaskOp::Where => {
            let s: Vec<Vec<usize>> = p.forms.iter().map(|f| f.shape(&p.out)).collect();
            let c = mask_operand(net, &mut rng, DType::Bool, &s[0], k(0));
            // Selected bools are copied bit for bit, so they are 0/1 (valid ONNX bools).
            let (x, _) = mask_data(&mut rng, p.dtype, &s[1], false);
            let (y, _) = mask_data(&mut rng, p.dtype, &s[2], false);
            let x = net.data(k(1), x);
            let y = net.data(k(2), y);
            net.node(Op::Where, &[c, x, y])
        }
        MaskOp::Tile => {
            let (x, _) = mask_data(&mut rng, p.dtype, &p.out, false);
            let x = net.data(k(0), x);
            net.node(
                Op::Tile {
                    repeats: p.repeats.clone(),
                },
                &[x],
            )
        }
    };
    net.output(y, format!("{p:?}"), Tol::exact());
}

/// Every mask op in every dtype it takes, on fixed broadcast forms: one instance each,
/// whatever proptest samples.
pub fn every_mask_case() -> Vec<MaskP> {
    let ops = [
        MaskOp::Cmp(Cmp::Equal),
        MaskOp::Cmp(Cmp::Less),
        MaskOp::Cmp(Cmp::LessOrEqual),
        MaskOp::Cmp(Cmp::Greater),
        MaskOp::Cmp(Cmp::GreaterOrEqual),
        MaskOp::Logic(Logic::And),
        MaskOp::Logic(Logic::Or),
        MaskOp::Logic(Logic::Xor),
        MaskOp::Not,
        MaskOp::Where,
        MaskOp::Tile,
    ];
    let mut cases = Vec::new();
    let mut seed = 0;
    for op in ops {
        let dtypes: &[DType] = if matches!(op, MaskOp::Logic(_) | MaskOp::Not) {
            &[DType::Bool]
        } else {
            &MASK_DTYPES
        };
        for &dtype in dtypes {
            seed += 1;
            // [3, 1, 37] against a row [37] and a column [3, 1, 1]: broadcasts on both
            // sides and a 16-byte vector body with a tail.
            let forms = [
                Form {
                    drop: 0,
                    ones: 0b010,
                },
                Form { drop: 2, ones: 0 },
                Form {
                    drop: 0,
                    ones: 0b110,
                },
            ];
            let (out, repeats) = if op == MaskOp::Tile {
                (vec![2, 1, 3], vec![2, 3, 1])
            } else {
                (vec![3, 5, 37], vec![])
            };
            cases.push(MaskP {
                op,
                dtype,
                out,
                forms,
                // Inputs mostly; every operand position constant now and then.
                konst: [3, 0, 3, 1, 3, 2][seed as usize % 6],
                repeats,
                seed,
            });
        }
    }
    cases
}

/// Data movement of any dtype (bytes, 4- and 8-byte elements copied bit for bit):
/// Expand, Transpose, Concat, Slice (negative step), Split and Gather, each on a graph
/// input of `dtype`, each result a graph output.
pub fn build_movement(net: &mut Net, dtype: DType, seed: u64) {
    let mut rng = Rng::new(seed);
    let label = |op: &str| format!("{op} of {dtype}");
    let (x, _) = mask_data(&mut rng, dtype, &[3, 1, 5], false);
    let x = net.input(x);
    let e = net.node(
        Op::Expand {
            shape: vec![2, 3, 4, 5],
        },
        &[x],
    );
    net.output(e, label("Expand"), Tol::exact());
    let (y, _) = mask_data(&mut rng, dtype, &[2, 3, 17], false);
    let y = net.input(y);
    let t = net.node(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[y],
    );
    net.output(t, label("Transpose"), Tol::exact());
    let (z, _) = mask_data(&mut rng, dtype, &[2, 3, 4], false);
    let z = net.konst(z);
    let c = net.node(Op::Concat { axis: 2 }, &[y, z]);
    net.output(c, label("Concat"), Tol::exact());
    let sl = net.node(
        Op::Slice {
            starts: vec![-1, 1],
            ends: vec![-100, 16],
            axes: vec![0, 2],
            steps: vec![-1, 3],
        },
        &[y],
    );
    net.output(sl, label("Slice"), Tol::exact());
    let name = format!("split_{}", net.g.node_count());
    let (_, parts) = net
        .g
        .add_node(
            name,
            Op::Split {
                axis: 1,
                sizes: vec![1, 2],
            },
            vec![y],
        )
        .expect("split");
    net.output(parts[1], label("Split"), Tol::exact());
    let idx = net.input(Tensor::i64(vec![4], vec![2, 0, -1, 2]));
    let gth = net.node(Op::Gather { axis: 1 }, &[y, idx]);
    net.output(gth, label("Gather"), Tol::exact());
}

/// The attention-mask chain PyTorch's exporters write, on `[batch, heads, q, k]` scores:
/// `drop = Not(Cast(attention_mask → bool)) or Equal(input_ids, 0)`, reshaped to
/// `[batch, 1, 1, k]`, then `Softmax(Where(drop, -3.4e38, scores))` over `k`. The i64
/// inputs are graph inputs (ids above 2^53, a mask value 2 that is still "keep"); the
/// last batch row is fully masked (softmax of equal values: uniform).
pub fn attention_mask_net() -> Net {
    let (b, h, q, k) = (3usize, 2usize, 4usize, 9usize);
    let mut rng = Rng::new(17);
    let mut net = Net::new();
    let scores = net.input(rng.tensor(&[b, h, q, k], -4.0, 4.0));
    let mask: Vec<i64> = (0..b * k)
        .map(|i| match (i / k, i % k) {
            (2, _) => 0,
            (_, j) if j >= 6 + i / k => 0,
            (_, 3) => 2,
            _ => 1,
        })
        .collect();
    let ids: Vec<i64> = (0..b * k)
        .map(|i| match i % k {
            1 => 0,
            j => (1i64 << 53) + j as i64 * 1000 + 1,
        })
        .collect();
    let mask = net.input(Tensor::i64(vec![b, k], mask));
    let ids = net.input(Tensor::i64(vec![b, k], ids));
    let zero = net.konst(Tensor::i64(vec![], vec![0]));
    let keep = net.node(Op::Cast { to: DType::Bool }, &[mask]);
    let masked = net.node(Op::Not, &[keep]);
    let pad = net.node(Op::Compare(Cmp::Equal), &[ids, zero]);
    let drop = net.node(Op::Logic(Logic::Or), &[masked, pad]);
    let drop = net.node(
        Op::Reshape {
            shape: vec![b as i64, 1, 1, k as i64],
            allowzero: false,
        },
        &[drop],
    );
    let neg = net.konst(Tensor::f32(vec![], vec![-3.4e38]));
    let scores = net.node(Op::Where, &[drop, neg, scores]);
    let y = net.node(
        Op::Softmax {
            axis: -1,
            coerce_2d: false,
        },
        &[scores],
    );
    net.output(
        y,
        "attention mask softmax",
        Tol::rel(2.0 * EXP_REL + (k as f64 + 3.0) * U, MIN_NORMAL),
    );
    // The mask itself as a second output (bool bytes).
    net.output(drop, "attention drop mask", Tol::exact());
    net
}

// ---------------------------------------------------------------------------------------
// MatMul

/// How an operand's batch dims relate to the broadcast batch `batch`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Batch {
    /// No batch dims (a matrix).
    Absent,
    /// `batch` itself.
    Full,
    /// `r` dims of size 1.
    Ones(usize),
}

#[derive(Clone, Debug)]
pub struct MatMulP {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub batch: Vec<usize>,
    pub a_batch: Batch,
    pub b_batch: Batch,
    /// Rank-1 operands (then without batch dims).
    pub a_vec: bool,
    pub b_vec: bool,
    pub b_const: bool,
    pub act: Act,
    pub seed: u64,
}

fn batch_strategy() -> BoxedStrategy<Batch> {
    prop_oneof![
        2 => Just(Batch::Absent),
        3 => Just(Batch::Full),
        1 => (1usize..=2).prop_map(Batch::Ones),
    ]
    .boxed()
}

pub fn matmul_strategy() -> BoxedStrategy<MatMulP> {
    (
        (dim(20), dim(24), dim(28)),
        prop::collection::vec(1usize..=4, 0..=2),
        (batch_strategy(), batch_strategy()),
        prop_oneof![6 => Just((false, false)), 1 => Just((true, false)), 1 => Just((false, true)), 1 => Just((true, true))],
        any::<bool>(),
        act_strategy(),
        any::<u64>(),
    )
        .prop_map(|((m, k, n), batch, (ab, bb), (av, bv), b_const, act, seed)| {
            // The lowering supports batches where each side is the full batch, absent
            // or all 1s ("partially broadcast" batches are reported unsupported).
            let ab = if av { Batch::Absent } else { ab };
            let bb = if bv { Batch::Absent } else { bb };
            MatMulP {
                m,
                k,
                n,
                batch,
                a_batch: ab,
                b_batch: bb,
                a_vec: av,
                b_vec: bv,
                b_const,
                act,
                seed,
            }
        })
        .boxed()
}

fn batch_dims(b: Batch, batch: &[usize]) -> Vec<usize> {
    match b {
        Batch::Absent => vec![],
        Batch::Full => batch.to_vec(),
        Batch::Ones(r) => vec![1; r],
    }
}

pub fn build_matmul(net: &mut Net, p: &MatMulP) {
    let mut rng = Rng::new(p.seed);
    let mut sa = batch_dims(p.a_batch, &p.batch);
    if p.a_vec {
        sa = vec![p.k];
    } else {
        sa.extend([p.m, p.k]);
    }
    let mut sb = batch_dims(p.b_batch, &p.batch);
    if p.b_vec {
        sb = vec![p.k];
    } else {
        sb.extend([p.k, p.n]);
    }
    let ta = rng.tensor(&sa, -1.0, 1.0);
    let tb = rng.tensor(&sb, -1.0, 1.0);
    let mag = magnitude(&Op::MatMul, &[&ta, &tb]);
    let a = net.input(ta);
    let b = net.data(p.b_const, tb);
    let mut y = net.node(Op::MatMul, &[a, b]);
    if let Some(op) = p.act.op() {
        y = net.node(op, &[y]);
    }
    net.output(y, format!("MatMul {p:?}"), p.act.tol(tol_dot(p.k, &mag)));
}

// ---------------------------------------------------------------------------------------
// Gemm

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CForm {
    Absent,
    Scalar0,
    Scalar1,
    Row,
    Row2,
    Col,
    Full,
    Ones,
}

#[derive(Clone, Debug)]
pub struct GemmP {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    pub c: CForm,
    pub b_const: bool,
    pub c_const: bool,
    pub act: Act,
    pub seed: u64,
}

pub fn gemm_strategy() -> BoxedStrategy<GemmP> {
    let c = prop_oneof![
        Just(CForm::Absent),
        Just(CForm::Scalar0),
        Just(CForm::Scalar1),
        Just(CForm::Row),
        Just(CForm::Row2),
        Just(CForm::Col),
        Just(CForm::Full),
        Just(CForm::Ones),
    ];
    (
        (dim(20), dim(24), dim(28)),
        (any::<bool>(), any::<bool>()),
        prop_oneof![3 => Just(1.0f32), 1 => Just(0.5), 1 => Just(-1.25), 1 => Just(2.0)],
        prop_oneof![3 => Just(1.0f32), 1 => Just(0.0), 1 => Just(0.75), 1 => Just(-2.0)],
        c,
        (any::<bool>(), any::<bool>()),
        act_strategy(),
        any::<u64>(),
    )
        .prop_map(
            |((m, k, n), (trans_a, trans_b), alpha, beta, c, (b_const, c_const), act, seed)| {
                // beta ∉ {0, 1}: folded into a constant C at compile time, or computed into
                // a temp by an elementwise kernel for a C that is an input.
                GemmP {
                    m,
                    k,
                    n,
                    trans_a,
                    trans_b,
                    alpha,
                    beta,
                    c,
                    b_const,
                    c_const,
                    act,
                    seed,
                }
            },
        )
        .boxed()
}

pub fn build_gemm(net: &mut Net, p: &GemmP) {
    let mut rng = Rng::new(p.seed);
    let sa = if p.trans_a { [p.k, p.m] } else { [p.m, p.k] };
    let sb = if p.trans_b { [p.n, p.k] } else { [p.k, p.n] };
    let sc: Option<Vec<usize>> = match p.c {
        CForm::Absent => None,
        CForm::Scalar0 => Some(vec![]),
        CForm::Scalar1 => Some(vec![1]),
        CForm::Row => Some(vec![p.n]),
        CForm::Row2 => Some(vec![1, p.n]),
        CForm::Col => Some(vec![p.m, 1]),
        CForm::Full => Some(vec![p.m, p.n]),
        CForm::Ones => Some(vec![1, 1]),
    };
    let ta = rng.tensor(&sa, -1.0, 1.0);
    let tb = rng.tensor(&sb, -1.0, 1.0);
    let tc = sc.map(|s| rng.tensor(&s, -2.0, 2.0));
    let op = Op::Gemm {
        alpha: p.alpha,
        beta: p.beta,
        trans_a: p.trans_a,
        trans_b: p.trans_b,
    };
    let mag_op = Op::Gemm {
        alpha: p.alpha.abs(),
        beta: p.beta.abs(),
        trans_a: p.trans_a,
        trans_b: p.trans_b,
    };
    let mut args = vec![&ta, &tb];
    if let Some(c) = &tc {
        args.push(c);
    }
    let mag = magnitude(&mag_op, &args);
    let a = net.input(ta.clone());
    let b = net.data(p.b_const, tb.clone());
    let mut ins = vec![a, b];
    if let Some(c) = tc {
        ins.push(net.data(p.c_const, c));
    }
    let mut y = net.node(op, &ins);
    if let Some(op) = p.act.op() {
        y = net.node(op, &[y]);
    }
    net.output(y, format!("Gemm {p:?}"), p.act.tol(tol_dot(p.k, &mag)));
}

// ---------------------------------------------------------------------------------------
// Conv and pooling windows

#[derive(Clone, Debug)]
pub struct WinP {
    pub spatial: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

impl WinP {
    pub fn attrs(&self) -> WindowAttrs {
        WindowAttrs {
            kernel: self.kernel.clone(),
            strides: self.strides.clone(),
            dilations: self.dilations.clone(),
            pads: self.pads.clone(),
            auto_pad: self.auto_pad,
            ceil_mode: self.ceil_mode,
        }
    }
}

fn auto_pad_strategy() -> BoxedStrategy<AutoPad> {
    prop_oneof![
        5 => Just(AutoPad::NotSet),
        1 => Just(AutoPad::SameUpper),
        1 => Just(AutoPad::SameLower),
        1 => Just(AutoPad::Valid),
    ]
    .boxed()
}

/// A 1-D or 2-D window over spatial sizes up to 12. `pool` keeps pads below the kernel
/// size (ONNX pooling), conv allows any pad up to 2. Input sizes are raised to the
/// effective kernel so the window fits.
pub fn window_strategy(pool: bool) -> BoxedStrategy<WinP> {
    (1usize..=2)
        .prop_flat_map(move |r| {
            (
                prop::collection::vec(dim(12), r),
                prop::collection::vec(
                    prop_oneof![2 => Just(1usize), 3 => Just(3), 2 => 1usize..=4],
                    r,
                ),
                prop::collection::vec(prop_oneof![3 => Just(1usize), 2 => 2usize..=3], r),
                prop::collection::vec(prop_oneof![3 => Just(1usize), 1 => Just(2)], r),
                prop::collection::vec(0usize..=2, 2 * r),
                auto_pad_strategy(),
                if pool {
                    any::<bool>().boxed()
                } else {
                    Just(false).boxed()
                },
            )
        })
        .prop_map(
            move |(mut spatial, kernel, strides, dilations, mut pads, auto_pad, ceil_mode)| {
                let r = kernel.len();
                for d in 0..r {
                    if pool {
                        pads[d] = pads[d].min(kernel[d] - 1);
                        pads[d + r] = pads[d + r].min(kernel[d] - 1);
                    }
                    let ek = (kernel[d] - 1) * dilations[d] + 1;
                    spatial[d] = spatial[d].max(ek);
                }
                if auto_pad != AutoPad::NotSet {
                    pads.iter_mut().for_each(|p| *p = 0);
                }
                WinP {
                    spatial,
                    kernel,
                    strides,
                    dilations,
                    pads,
                    auto_pad,
                    ceil_mode,
                }
            },
        )
        .boxed()
}

#[derive(Clone, Debug)]
pub struct ConvP {
    pub n: usize,
    pub groups: usize,
    /// Input and output channels per group.
    pub cpg: usize,
    pub opg: usize,
    pub win: WinP,
    pub bias: bool,
    pub act: Act,
    /// The conv result is also a graph output, so the activation is not fused.
    pub also_output: bool,
    /// A skip connection of the output's shape is added before the activation
    /// (fuse-epilogue makes a FusedConv of it unless the conv result is also an output).
    pub residual: bool,
    pub seed: u64,
}

pub fn conv_strategy() -> BoxedStrategy<ConvP> {
    let groups = prop_oneof![
        // ordinary
        4 => (Just(1usize), 1usize..=5, dim(7)),
        // depthwise (the direct window kernel)
        2 => (1usize..=6, Just(1usize), Just(1usize)),
        // depthwise with a channel multiplier
        1 => (1usize..=4, Just(1usize), 2usize..=3),
        // grouped
        2 => (2usize..=3, 1usize..=3, 1usize..=3),
    ];
    (
        1usize..=2,
        groups,
        prop_oneof![4 => window_strategy(false), 1 => pointwise_strategy()],
        any::<bool>(),
        act_strategy(),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        prop_oneof![2 => Just(false), 1 => Just(true)],
        any::<u64>(),
    )
        .prop_map(
            |(n, (groups, cpg, opg), win, bias, act, also_output, residual, seed)| ConvP {
                n,
                groups,
                cpg,
                opg,
                win,
                bias,
                act,
                also_output,
                residual,
                seed,
            },
        )
        .boxed()
}

/// 1×1, unit stride, no padding: the conv is a GEMM straight on the input.
fn pointwise_strategy() -> BoxedStrategy<WinP> {
    (1usize..=2)
        .prop_flat_map(|r| prop::collection::vec(dim(12), r))
        .prop_map(|spatial| {
            let r = spatial.len();
            WinP {
                spatial,
                kernel: vec![1; r],
                strides: vec![1; r],
                dilations: vec![1; r],
                pads: vec![0; 2 * r],
                auto_pad: AutoPad::NotSet,
                ceil_mode: false,
            }
        })
        .boxed()
}

pub fn build_conv(net: &mut Net, p: &ConvP) {
    let mut rng = Rng::new(p.seed);
    let (cin, cout) = (p.groups * p.cpg, p.groups * p.opg);
    let mut xs = vec![p.n, cin];
    xs.extend(&p.win.spatial);
    let mut ws = vec![cout, p.cpg];
    ws.extend(&p.win.kernel);
    let tx = rng.tensor(&xs, -1.0, 1.0);
    let tw = rng.tensor(&ws, -1.0, 1.0);
    let tb = p.bias.then(|| rng.tensor(&[cout], -1.0, 1.0));
    let op = Op::Conv {
        window: p.win.attrs(),
        group: p.groups,
    };
    let mut args = vec![&tx, &tw];
    if let Some(b) = &tb {
        args.push(b);
    }
    let mag = magnitude(&op, &args);
    let k = p.cpg * numel(&p.win.kernel);
    let x = net.input(tx.clone());
    let w = net.konst(tw.clone());
    let mut ins = vec![x, w];
    if let Some(b) = tb {
        ins.push(net.konst(b));
    }
    let y = net.node(op, &ins);
    let mut elem = tol_dot(k, &mag);
    if p.also_output {
        net.output(
            y,
            format!("Conv {p:?} (pre-activation)"),
            Tol::elem(elem.clone()),
        );
    }
    let y = if p.residual {
        let out_shape = net.g.value(y).shape.clone();
        let tr = rng.tensor(&out_shape, -2.0, 2.0);
        // The sum's own rounding, on top of the conv's error: half an ulp of at most
        // |conv| + |r|, bounded with the conv's magnitude.
        for ((e, m), r) in elem.iter_mut().zip(&mag).zip(tr.as_f32().unwrap()) {
            *e += (m + r.abs() as f64) * f32::EPSILON as f64;
        }
        let r = net.input(tr);
        net.node(Op::Binary(Binary::Add), &[y, r])
    } else {
        y
    };
    let z = match p.act.op() {
        Some(op) => net.node(op, &[y]),
        None => y,
    };
    if !(p.also_output && p.act == Act::None) {
        net.output(z, format!("Conv {p:?}"), p.act.tol(elem));
    }
}

/// Conv → Add(skip) → activation in each code-generation form (im2col with padding and
/// stride, pointwise, grouped, depthwise, 1-D), with and without bias; each becomes one
/// Conv kernel with a residual (see [`assert_conv_residual_kernels`]).
pub fn conv_residual_net() -> Net {
    let mut net = Net::new();
    let w3 = |spatial: Vec<usize>, stride: usize| {
        let r = spatial.len();
        WinP {
            spatial,
            kernel: vec![3; r],
            strides: vec![stride; r],
            dilations: vec![1; r],
            pads: vec![1; 2 * r],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        }
    };
    let pointwise = WinP {
        kernel: vec![1, 1],
        pads: vec![0; 4],
        ..w3(vec![5, 7], 1)
    };
    let acts = [
        Act::Relu,
        Act::None,
        Act::Clip(0.0, 6.0),
        Act::Sigmoid,
        Act::Tanh,
    ];
    // (n, groups, cpg, opg, window, bias)
    let forms = [
        (1, 1, 4, 6, w3(vec![6, 6], 1), true),
        (2, 1, 3, 5, w3(vec![9, 7], 2), false),
        (1, 1, 8, 4, pointwise, true),
        (1, 2, 3, 2, w3(vec![5, 5], 1), true),
        (2, 5, 1, 1, w3(vec![5, 7], 1), true),
        (1, 3, 1, 1, w3(vec![4, 6], 2), false),
        (1, 1, 4, 3, w3(vec![11], 1), true),
    ];
    for (i, (n, groups, cpg, opg, win, bias)) in forms.into_iter().enumerate() {
        let p = ConvP {
            n,
            groups,
            cpg,
            opg,
            win,
            bias,
            act: acts[i % acts.len()],
            also_output: false,
            residual: true,
            seed: 500 + i as u64,
        };
        build_conv(&mut net, &p);
    }
    net
}

/// `net` after the default passes lowers to Conv kernels only, each with a residual: the
/// skip connection and activation are in the conv's epilogue, not kernels of their own.
pub fn assert_conv_residual_kernels(net: &Net) {
    let mut g = net.g.clone();
    PassManager::default_pipeline().run(&mut g).unwrap();
    let lowered = edgecc::lower::lower(&g, "ops").unwrap();
    let kernels = &lowered.program.kernels;
    assert_eq!(kernels.len(), net.outs.len(), "{kernels:#?}");
    for k in kernels {
        assert!(
            matches!(
                k,
                edgecc_program::Kernel::Conv {
                    residual: Some(_),
                    ..
                }
            ),
            "{k:?}"
        );
    }
}

#[derive(Clone, Debug)]
pub struct PoolP {
    /// None: MaxPool; Some(count_include_pad): AveragePool.
    pub avg: Option<bool>,
    pub n: usize,
    pub c: usize,
    pub win: WinP,
    pub seed: u64,
}

pub fn pool_strategy() -> BoxedStrategy<PoolP> {
    (
        prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        1usize..=2,
        dim(5),
        window_strategy(true),
        any::<u64>(),
    )
        .prop_map(|(avg, n, c, win, seed)| PoolP {
            avg,
            n,
            c,
            win,
            seed,
        })
        .boxed()
}

/// MaxPool: exact (comparisons). AveragePool: the kernel sums the window's taps in f32
/// and divides: error ≤ (L−1)·U·Σ|x|/count + U·|ref| ≤ (L+2)·U·max|x|, L = kernel size.
pub fn build_pool(net: &mut Net, p: &PoolP) {
    let mut rng = Rng::new(p.seed);
    let mut xs = vec![p.n, p.c];
    xs.extend(&p.win.spatial);
    let tx = rng.tensor(&xs, -4.0, 4.0);
    let maxabs = tx
        .as_f32()
        .unwrap()
        .iter()
        .fold(0f64, |m, v| m.max(v.abs() as f64));
    let (op, tol) = match p.avg {
        None => (
            Op::MaxPool {
                window: p.win.attrs(),
            },
            Tol::exact(),
        ),
        Some(count_include_pad) => (
            Op::AveragePool {
                window: p.win.attrs(),
                count_include_pad,
            },
            Tol::rel(0.0, (numel(&p.win.kernel) as f64 + 2.0) * U * maxabs),
        ),
    };
    let x = net.input(tx);
    let y = net.node(op, &[x]);
    net.output(y, format!("{p:?}"), tol);
}

// ---------------------------------------------------------------------------------------
// GlobalAveragePool, BatchNormalization

#[derive(Clone, Debug)]
pub struct GapP {
    pub shape: Vec<usize>,
    pub seed: u64,
}

pub fn gap_strategy() -> BoxedStrategy<GapP> {
    (
        (3usize..=5).prop_flat_map(|r| {
            let m = match r {
                3 => 40,
                4 => 12,
                _ => 6,
            };
            (dim(3), dim(6), prop::collection::vec(dim(m), r - 2))
        }),
        any::<u64>(),
    )
        .prop_map(|((n, c, sp), seed)| {
            let mut shape = vec![n, c];
            shape.extend(sp);
            GapP { shape, seed }
        })
        .boxed()
}

/// Sum of the plane in f32 (any order) then one divide: (L+1)·U·max|x|, L = plane size.
pub fn build_gap(net: &mut Net, p: &GapP) {
    let mut rng = Rng::new(p.seed);
    let tx = rng.tensor(&p.shape, -4.0, 4.0);
    let maxabs = tx
        .as_f32()
        .unwrap()
        .iter()
        .fold(0f64, |m, v| m.max(v.abs() as f64));
    let len = numel(&p.shape[2..]) as f64;
    let x = net.input(tx);
    let y = net.node(Op::GlobalAveragePool, &[x]);
    net.output(
        y,
        format!("GlobalAveragePool {p:?}"),
        Tol::rel(0.0, (len + 2.0) * U * maxabs),
    );
}

#[derive(Clone, Debug)]
pub struct BnP {
    pub shape: Vec<usize>,
    pub epsilon: f32,
    pub seed: u64,
}

pub fn bn_strategy() -> BoxedStrategy<BnP> {
    (
        shape(2..=5),
        prop_oneof![Just(1e-5f32), Just(1e-3), Just(0.1)],
        any::<u64>(),
    )
        .prop_map(|(shape, epsilon, seed)| BnP {
            shape,
            epsilon,
            seed,
        })
        .boxed()
}

/// The interpreter computes `(x − mean)/sqrt(var + ε)·s + b` in f32; the lowering folds it
/// into `x·k + (b − mean·k)` with `k = s/sqrt(var+ε)` computed in f32 at compile time. Each
/// side makes ≤ 4 roundings on terms no larger than `|x·k|`, `|mean·k|`, `|b|`, so 8·U on
/// their sum bounds the difference (it can be cancellation-dominated when `x ≈ mean`).
pub fn build_bn(net: &mut Net, p: &BnP) {
    let mut rng = Rng::new(p.seed);
    let c = p.shape[1];
    let tx = rng.tensor(&p.shape, -4.0, 4.0);
    let scale = rng.vals(c, -2.0, 2.0);
    let bias = rng.vals(c, -2.0, 2.0);
    let mean = rng.vals(c, -2.0, 2.0);
    let var = rng.with_specials(c, 0.0, 3.0, &[0.0]);
    let inner = numel(&p.shape[2..]);
    let elem: Vec<f64> = tx
        .as_f32()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let ch = (i / inner) % c;
            let k = (scale[ch] as f64).abs() / (var[ch] as f64 + p.epsilon as f64).sqrt();
            8.0 * U * ((x as f64).abs() * k + (mean[ch] as f64).abs() * k + (bias[ch] as f64).abs())
        })
        .collect();
    let x = net.input(tx);
    let params: Vec<ValueId> = [scale, bias, mean, var]
        .into_iter()
        .map(|v| net.konst(Tensor::f32(vec![c], v)))
        .collect();
    let y = net.node(
        Op::BatchNorm { epsilon: p.epsilon },
        &[x, params[0], params[1], params[2], params[3]],
    );
    net.output(y, format!("BatchNormalization {p:?}"), Tol::elem(elem));
}

// ---------------------------------------------------------------------------------------
// Shape ops: Flatten, Reshape, Transpose, Concat

/// Where a shape op's input comes from: a graph input directly, or a computed value (the
/// shape op then aliases an arena temp, and a further op reads through the alias).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src {
    Input,
    Computed,
}

fn src_strategy() -> BoxedStrategy<Src> {
    prop_oneof![Just(Src::Input), Just(Src::Computed)].boxed()
}

/// Feeds `t` through `Neg` when computed.
fn source(net: &mut Net, src: Src, t: Tensor) -> ValueId {
    let x = net.input(t);
    match src {
        Src::Input => x,
        Src::Computed => net.node(Op::Unary(Unary::Neg), &[x]),
    }
}

/// Outputs the shape op's result and, for a computed source, also `Abs` of it (a read
/// through the alias). All exact: data movement only.
fn finish_shape_op(net: &mut Net, src: Src, y: ValueId, label: String) {
    net.output(y, label.clone(), Tol::exact());
    if src == Src::Computed {
        let z = net.node(Op::Unary(Unary::Abs), &[y]);
        net.output(z, format!("{label} then Abs"), Tol::exact());
    }
}

#[derive(Clone, Debug)]
pub struct FlattenP {
    pub shape: Vec<usize>,
    pub axis: i64,
    pub src: Src,
    pub seed: u64,
}

pub fn flatten_strategy() -> BoxedStrategy<FlattenP> {
    (shape(0..=4), src_strategy(), any::<u64>())
        .prop_flat_map(|(shape, src, seed)| {
            let r = shape.len() as i64;
            (Just(shape), -r..=r, Just(src), Just(seed))
        })
        .prop_map(|(shape, axis, src, seed)| FlattenP {
            shape,
            axis,
            src,
            seed,
        })
        .boxed()
}

pub fn build_flatten(net: &mut Net, p: &FlattenP) {
    let mut rng = Rng::new(p.seed);
    let t = rng.tensor(&p.shape, -4.0, 4.0);
    let x = source(net, p.src, t);
    let y = net.node(Op::Flatten { axis: p.axis }, &[x]);
    finish_shape_op(net, p.src, y, format!("{p:?}"));
}

#[derive(Clone, Debug)]
pub struct ReshapeP {
    pub shape: Vec<usize>,
    /// Bit i: merge input dim i+1 into the current target dim.
    pub merge: u8,
    /// Bit i: write target dim i as 0 (copy) when it equals input dim i.
    pub zeros: u8,
    /// Write this target dim (mod rank) as -1.
    pub minus_one: Option<usize>,
    /// For a 1-element tensor: reshape to rank 0 or to [1, 1, 1] instead.
    pub unit: Option<bool>,
    pub src: Src,
    pub seed: u64,
}

impl ReshapeP {
    pub fn target(&self) -> Vec<i64> {
        if let Some(scalar) = self.unit
            && numel(&self.shape) == 1
        {
            return if scalar { vec![] } else { vec![1, 1, 1] };
        }
        let mut t: Vec<usize> = Vec::new();
        for (i, &d) in self.shape.iter().enumerate() {
            if i > 0 && self.merge >> (i - 1) & 1 == 1 {
                *t.last_mut().unwrap() *= d;
            } else {
                t.push(d);
            }
        }
        let mut out: Vec<i64> = t
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if self.zeros >> i & 1 == 1 && self.shape.get(i) == Some(&d) {
                    0
                } else {
                    d as i64
                }
            })
            .collect();
        if let Some(j) = self.minus_one
            && !out.is_empty()
        {
            let j = j % out.len();
            out[j] = -1;
        }
        out
    }
}

pub fn reshape_strategy() -> BoxedStrategy<ReshapeP> {
    (
        shape(0..=4),
        any::<u8>(),
        prop_oneof![2 => Just(0u8), 1 => any::<u8>()],
        prop::option::of(0usize..4),
        prop::option::of(any::<bool>()),
        src_strategy(),
        any::<u64>(),
    )
        .prop_map(
            |(shape, merge, zeros, minus_one, unit, src, seed)| ReshapeP {
                shape,
                merge,
                zeros,
                minus_one,
                unit,
                src,
                seed,
            },
        )
        .boxed()
}

pub fn build_reshape(net: &mut Net, p: &ReshapeP) {
    let mut rng = Rng::new(p.seed);
    let t = rng.tensor(&p.shape, -4.0, 4.0);
    let x = source(net, p.src, t);
    let y = net.node(
        Op::Reshape {
            shape: p.target(),
            allowzero: false,
        },
        &[x],
    );
    finish_shape_op(net, p.src, y, format!("{p:?} target {:?}", p.target()));
}

#[derive(Clone, Debug)]
pub struct TransposeP {
    pub shape: Vec<usize>,
    pub perm: Vec<usize>,
    pub src: Src,
    pub seed: u64,
}

pub fn transpose_strategy() -> BoxedStrategy<TransposeP> {
    (shape(2..=5), src_strategy(), any::<u64>())
        .prop_flat_map(|(shape, src, seed)| {
            let r = shape.len();
            (
                Just(shape),
                Just((0..r).collect::<Vec<_>>()).prop_shuffle(),
                Just(src),
                Just(seed),
            )
        })
        .prop_map(|(shape, perm, src, seed)| TransposeP {
            shape,
            perm,
            src,
            seed,
        })
        .boxed()
}

pub fn build_transpose(net: &mut Net, p: &TransposeP) {
    let mut rng = Rng::new(p.seed);
    let t = rng.tensor(&p.shape, -4.0, 4.0);
    let x = source(net, p.src, t);
    let y = net.node(
        Op::Transpose {
            perm: p.perm.clone(),
        },
        &[x],
    );
    finish_shape_op(net, p.src, y, format!("{p:?}"));
}

#[derive(Clone, Debug)]
pub struct ConcatP {
    pub base: Vec<usize>,
    pub axis: i64,
    /// Per input: its size along the axis and whether it is a constant.
    pub parts: Vec<(usize, bool)>,
    pub seed: u64,
}

pub fn concat_strategy() -> BoxedStrategy<ConcatP> {
    (
        shape(1..=4),
        prop::collection::vec(
            (dim(5), prop_oneof![3 => Just(false), 1 => Just(true)]),
            1..=4,
        ),
        any::<u64>(),
    )
        .prop_flat_map(|(base, parts, seed)| {
            let r = base.len() as i64;
            (Just(base), -r..r, Just(parts), Just(seed))
        })
        .prop_map(|(base, axis, parts, seed)| ConcatP {
            base,
            axis,
            parts,
            seed,
        })
        .boxed()
}

pub fn build_concat(net: &mut Net, p: &ConcatP) {
    let mut rng = Rng::new(p.seed);
    let r = p.base.len() as i64;
    let ax = (if p.axis < 0 { p.axis + r } else { p.axis }) as usize;
    let ins: Vec<ValueId> = p
        .parts
        .iter()
        .map(|&(size, is_const)| {
            let mut s = p.base.clone();
            s[ax] = size;
            let t = rng.tensor(&s, -4.0, 4.0);
            net.data(is_const, t)
        })
        .collect();
    let y = net.node(Op::Concat { axis: p.axis }, &ins);
    net.output(y, format!("Concat {p:?}"), Tol::exact());
}

// ---------------------------------------------------------------------------------------
// Softmax

#[derive(Clone, Debug)]
pub struct SoftmaxP {
    pub shape: Vec<usize>,
    pub axis: i64,
    pub coerce_2d: bool,
    /// Values in `[-spread, spread]`: 100 makes some `exp(x − max)` underflow.
    pub spread: f32,
    pub seed: u64,
}

pub fn softmax_strategy() -> BoxedStrategy<SoftmaxP> {
    (
        shape(1..=4),
        any::<bool>(),
        prop_oneof![Just(3.0f32), Just(20.0), Just(100.0)],
        any::<u64>(),
    )
        .prop_flat_map(|(shape, coerce_2d, spread, seed)| {
            let r = shape.len() as i64;
            (
                Just(shape),
                -r..r,
                Just(coerce_2d),
                Just(spread),
                Just(seed),
            )
        })
        .prop_map(|(shape, axis, coerce_2d, spread, seed)| SoftmaxP {
            shape,
            axis,
            coerce_2d,
            spread,
            seed,
        })
        .boxed()
}

/// Numerator `exp(x − max)` within EXP_REL; the denominator sums L such terms in f32
/// ((L−1)·U relative, all terms positive) plus EXP_REL; one divide (U) and the reference's
/// rounding (U). Below the exp clamp a term is ~2^-126 instead of ~0, hence the absolute
/// part.
pub fn build_softmax(net: &mut Net, p: &SoftmaxP) {
    let mut rng = Rng::new(p.seed);
    let r = p.shape.len() as i64;
    let ax = (if p.axis < 0 { p.axis + r } else { p.axis }) as usize;
    let len = if p.coerce_2d {
        numel(&p.shape[ax..])
    } else {
        p.shape[ax]
    };
    let t = rng.tensor(&p.shape, -p.spread, p.spread);
    let x = net.input(t);
    let y = net.node(
        Op::Softmax {
            axis: p.axis,
            coerce_2d: p.coerce_2d,
        },
        &[x],
    );
    net.output(
        y,
        format!("Softmax {p:?}"),
        Tol::rel(2.0 * EXP_REL + (len as f64 + 3.0) * U, MIN_NORMAL),
    );
}

// ---------------------------------------------------------------------------------------
// AttentionSoftmax: softmax(scale·x + mask) over the last axis in one kernel

#[derive(Clone, Debug)]
pub struct AttentionSoftmaxP {
    pub shape: Vec<usize>,
    pub scale: f32,
    /// Which dims of the mask are 1 (bit d for dim d), and how many leading dims it
    /// drops; `None` for no mask.
    pub mask: Option<(u32, usize)>,
    pub mask_const: bool,
    pub seed: u64,
}

impl AttentionSoftmaxP {
    fn mask_shape(&self) -> Option<Vec<usize>> {
        let (ones, drop) = self.mask?;
        let s: Vec<usize> = self
            .shape
            .iter()
            .enumerate()
            .map(|(d, &n)| if ones & (1 << d) != 0 { 1 } else { n })
            .collect();
        Some(s[drop.min(s.len())..].to_vec())
    }
}

pub fn attention_softmax_strategy() -> BoxedStrategy<AttentionSoftmaxP> {
    (
        shape(1..=4),
        prop_oneof![Just(1.0f32), Just(0.125), Just(0.35), Just(-2.0)],
        proptest::option::of((0u32..16, 0usize..3)),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(shape, scale, mask, mask_const, seed)| AttentionSoftmaxP {
            shape,
            scale,
            mask,
            mask_const,
            seed,
        })
        .boxed()
}

/// The forms the fused kernel must get right on every target: rows with vector tails,
/// one mask row shared by every head (`[1,1,S,T]`), a per-batch key mask (`[B,1,1,T]`),
/// a mask constant along the row (stride 0), scale 1 with a mask, a scale alone.
pub fn every_attention_softmax_case() -> Vec<AttentionSoftmaxP> {
    let mut out = Vec::new();
    let shapes: [&[usize]; 4] = [&[1, 4, 16, 16], &[2, 3, 5, 7], &[3, 9], &[2, 2, 1, 33]];
    let masks = [
        None,
        Some((0b0011, 0)),
        Some((0b0110, 0)),
        Some((0b1000, 0)),
        Some((0, 0)),
        Some((0b0001, 1)),
    ];
    for (i, shape) in shapes.iter().enumerate() {
        for (j, &mask) in masks.iter().enumerate() {
            for scale in [1.0, 0.125] {
                if mask.is_none() && scale == 1.0 {
                    continue;
                }
                out.push(AttentionSoftmaxP {
                    shape: shape.to_vec(),
                    scale,
                    mask,
                    mask_const: j % 2 == 0,
                    seed: (i * 10 + j) as u64,
                });
            }
        }
    }
    out
}

/// As plain Softmax: `scale·x + mask` is computed with the unfused ops' f32 roundings on
/// both sides, so only the softmax's own error remains. Masks hold 0 and -10000 (BERT's
/// additive mask) and small values.
pub fn build_attention_softmax(net: &mut Net, p: &AttentionSoftmaxP) {
    let mut rng = Rng::new(p.seed);
    let len = *p.shape.last().expect("rank >= 1");
    let x = net.input(rng.tensor(&p.shape, -8.0, 8.0));
    let mut ins = vec![x];
    if let Some(ms) = p.mask_shape() {
        let vals: Vec<f32> = (0..numel(&ms))
            .map(|_| match rng.below(3) {
                0 => -10000.0,
                1 => 0.0,
                _ => rng.uniform(-2.0, 2.0),
            })
            .collect();
        ins.push(net.data(p.mask_const, Tensor::f32(ms, vals)));
    }
    let y = net.node(Op::AttentionSoftmax { scale: p.scale }, &ins);
    net.output(
        y,
        format!("AttentionSoftmax {p:?}"),
        Tol::rel(2.0 * EXP_REL + (len as f64 + 3.0) * U, MIN_NORMAL),
    );
}

// ---------------------------------------------------------------------------------------
// Chains

#[derive(Clone, Debug)]
pub struct ChainP {
    pub which: usize,
    /// A batch-like size and a feature-like size.
    pub a: usize,
    pub b: usize,
    pub seed: u64,
}

pub const CHAINS: usize = 6;

pub fn chain_strategy() -> BoxedStrategy<ChainP> {
    (0..CHAINS, dim(6), dim(13), any::<u64>())
        .prop_map(|(which, a, b, seed)| ChainP { which, a, b, seed })
        .boxed()
}

fn win(k: usize, s: usize, p: usize, r: usize) -> WindowAttrs {
    WindowAttrs {
        kernel: vec![k; r],
        strides: vec![s; r],
        dilations: vec![1; r],
        pads: vec![p; 2 * r],
        auto_pad: AutoPad::NotSet,
        ceil_mode: false,
    }
}

/// Multi-op graphs: fusion decisions, aliasing and intermediate graph outputs.
pub fn build_chain(net: &mut Net, p: &ChainP) {
    let mut rng = Rng::new(p.seed);
    let tol = || Tol::scale(CHAIN_SCALE);
    let label = format!("{p:?}");
    match p.which {
        // Conv → BatchNorm → Relu → MaxPool.
        0 => {
            let (c, co, h) = (p.a.min(4), 1 + p.b % 6, 4 + p.b % 8);
            let x = net.input(rng.tensor(&[2, c, h, h + 1], -1.0, 1.0));
            let w = net.konst(rng.tensor(&[co, c, 3, 3], -1.0, 1.0));
            let b = net.konst(rng.tensor(&[co], -1.0, 1.0));
            let y = net.node(
                Op::Conv {
                    window: win(3, 1, 1, 2),
                    group: 1,
                },
                &[x, w, b],
            );
            let bn: Vec<ValueId> = (0..4)
                .map(|i| {
                    let (lo, hi) = if i == 3 { (0.1, 2.0) } else { (-1.0, 1.0) };
                    net.konst(rng.tensor(&[co], lo, hi))
                })
                .collect();
            let y = net.node(
                Op::BatchNorm { epsilon: 1e-5 },
                &[y, bn[0], bn[1], bn[2], bn[3]],
            );
            let y = net.node(Op::Unary(Unary::Relu), &[y]);
            let y = net.node(
                Op::MaxPool {
                    window: win(2, 2, 0, 2),
                },
                &[y],
            );
            net.output(y, format!("Conv→BN→Relu→MaxPool {label}"), tol());
        }
        // MatMul → Add → Sigmoid, with the MatMul result also a graph output and read by
        // a second op (no fusion allowed).
        1 => {
            let (m, k, n) = (p.a, p.b, 1 + (p.b * 7) % 19);
            let x = net.input(rng.tensor(&[m, k], -1.0, 1.0));
            let w = net.konst(rng.tensor(&[k, n], -1.0, 1.0));
            let bias = net.konst(rng.tensor(&[n], -1.0, 1.0));
            let mm = net.node(Op::MatMul, &[x, w]);
            let y = net.node(Op::Binary(Binary::Add), &[mm, bias]);
            let s = net.node(Op::Unary(Unary::Sigmoid), &[y]);
            let t = net.node(Op::Unary(Unary::Tanh), &[mm]);
            net.output(s, format!("MatMul→Add→Sigmoid {label}"), tol());
            net.output(mm, format!("MatMul (also read) {label}"), tol());
            net.output(t, format!("MatMul→Tanh {label}"), tol());
        }
        // Two-layer MLP: Gemm → Relu (an output too) → Gemm(transB) → Tanh.
        2 => {
            let (m, k, h, n) = (p.a, p.b, 1 + (p.b * 5) % 17, 1 + p.a * 3);
            let x = net.input(rng.tensor(&[m, k], -1.0, 1.0));
            let w1 = net.konst(rng.tensor(&[k, h], -1.0, 1.0));
            let b1 = net.konst(rng.tensor(&[h], -1.0, 1.0));
            let w2 = net.konst(rng.tensor(&[n, h], -1.0, 1.0));
            let b2 = net.konst(rng.tensor(&[1, n], -1.0, 1.0));
            let g = |ta, tb| Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: ta,
                trans_b: tb,
            };
            let y = net.node(g(false, false), &[x, w1, b1]);
            let y = net.node(Op::Unary(Unary::Relu), &[y]);
            let z = net.node(g(false, true), &[y, w2, b2]);
            let z = net.node(Op::Unary(Unary::Tanh), &[z]);
            net.output(z, format!("MLP out {label}"), tol());
            net.output(y, format!("MLP hidden {label}"), tol());
        }
        // Outputs that are a graph input, a constant, a folded constant, the same value
        // twice, and an Identity.
        3 => {
            let s = vec![p.a, p.b];
            let x = net.input(rng.tensor(&s, -1.0, 1.0));
            let c = net.konst(rng.tensor(&s, -1.0, 1.0));
            let folded = net.node(Op::Unary(Unary::Neg), &[c]);
            let y = net.node(Op::Binary(Binary::Mul), &[x, c]);
            let id = net.node(Op::Identity, &[x]);
            let r = net.node(
                Op::Reshape {
                    shape: vec![-1],
                    allowzero: false,
                },
                &[y],
            );
            net.output(x, format!("input as output {label}"), Tol::exact());
            net.output(c, format!("constant as output {label}"), Tol::exact());
            net.output(
                folded,
                format!("folded constant as output {label}"),
                Tol::exact(),
            );
            net.output(y, format!("Mul {label}"), Tol::exact());
            net.output(y, format!("Mul again {label}"), Tol::exact());
            net.output(id, format!("Identity of input {label}"), Tol::exact());
            net.output(r, format!("Reshape of output {label}"), Tol::exact());
            net.output(x, format!("input as output again {label}"), Tol::exact());
        }
        // Conv1d → Clip → GlobalAveragePool → Flatten → Gemm → Softmax.
        4 => {
            let (c, l, classes) = (p.a, 3 + p.b, 1 + p.b % 7);
            let x = net.input(rng.tensor(&[2, c, l], -1.0, 1.0));
            let w = net.konst(rng.tensor(&[8, c, 3], -1.0, 1.0));
            let y = net.node(
                Op::Conv {
                    window: win(3, 2, 1, 1),
                    group: 1,
                },
                &[x, w],
            );
            let y = net.node(Op::Clip { min: 0.0, max: 6.0 }, &[y]);
            let y = net.node(Op::GlobalAveragePool, &[y]);
            let y = net.node(Op::Flatten { axis: 1 }, &[y]);
            let wf = net.konst(rng.tensor(&[8, classes], -1.0, 1.0));
            let y = net.node(
                Op::Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: false,
                },
                &[y, wf],
            );
            let y = net.node(
                Op::Softmax {
                    axis: -1,
                    coerce_2d: false,
                },
                &[y],
            );
            net.output(
                y,
                format!("Conv1d→Clip→GAP→Flatten→Gemm→Softmax {label}"),
                tol(),
            );
        }
        // Transpose → Concat with a constant → Softmax over the concatenated axis, and a
        // depthwise Conv → Relu whose input is a Reshape of a graph input.
        _ => {
            let (a, b) = (p.a, p.b);
            let x = net.input(rng.tensor(&[a, b, 3], -2.0, 2.0));
            let t = net.node(
                Op::Transpose {
                    perm: vec![2, 0, 1],
                },
                &[x],
            );
            let c = net.konst(rng.tensor(&[2, a, b], -2.0, 2.0));
            let y = net.node(Op::Concat { axis: 0 }, &[t, c, t]);
            let y = net.node(
                Op::Softmax {
                    axis: 0,
                    coerce_2d: false,
                },
                &[y],
            );
            net.output(y, format!("Transpose→Concat→Softmax {label}"), tol());
            let r = net.node(
                Op::Reshape {
                    shape: vec![1, a as i64, b as i64, 3],
                    allowzero: false,
                },
                &[x],
            );
            let w = net.konst(rng.tensor(&[a, 1, 3, 3], -1.0, 1.0));
            let y = net.node(
                Op::Conv {
                    window: win(3, 1, 1, 2),
                    group: a,
                },
                &[r, w],
            );
            let y = net.node(Op::Unary(Unary::Relu), &[y]);
            net.output(y, format!("Reshape→depthwise Conv→Relu {label}"), tol());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Einsum

/// Equations the Einsum tests draw from: the attention forms PyTorch exports, the ONNX
/// node-test forms, forms that need a dense copy of an operand or of the result (their
/// groups do not nest), one-operand sums, diagonals, broadcast ellipses and chains of
/// three operands.
pub const EINSUM_FORMS: &[&str] = &[
    "bhqd,bhkd->bhqk",
    "bhqk,bhkd->bhqd",
    "bid,bjd->bij",
    "ij,jk->ik",
    "ij,kj->ik",
    "ji,jk->ik",
    "ij,jk",
    "bij,bjk->bik",
    "bqhd,bkhd->bhqk",
    "bhqk,bkhd->bqhd",
    "ijk,jkl->il",
    "ijk,lkj->li",
    "ij,j->i",
    "i,i->",
    "i,j->ij",
    "ab,ab->",
    "ij,ij->ij",
    "ij,jk->",
    "ijm,jkn->ik",
    "ij->",
    "ij->ji",
    "ijk->kj",
    "ijk->ik",
    "ijk->jk",
    "ij->i",
    "ii->i",
    "ii->",
    "bii->bi",
    "...ii->...i",
    "iji->j",
    "...ij,...jk->...ik",
    "...ij,jk->...ik",
    "i...,i...->...",
    "...i->...",
    "abc,cd,de->abe",
    "ij,jk,kl->il",
    "bn,anm,bm->ba",
    "i,i,i->i",
];

#[derive(Clone, Debug)]
pub struct EinsumP {
    pub equation: &'static str,
    /// Sizes of the letters `a..z` in order of first use.
    pub sizes: Vec<usize>,
    /// The broadcast ellipsis dims, and per operand how its own ellipsis dims derive from
    /// them (bit 0: drop the first dim, bit 1: set the dims at odd positions to 1).
    pub ellipsis: Vec<usize>,
    pub forms: Vec<u8>,
    pub consts: Vec<bool>,
    pub seed: u64,
}

pub fn einsum_strategy() -> BoxedStrategy<EinsumP> {
    (
        prop::sample::select(EINSUM_FORMS),
        prop::collection::vec(dim(7), 8),
        prop::collection::vec(dim(4), 0..=2),
        prop::collection::vec(0u8..4, 3),
        prop::collection::vec(prop_oneof![3 => Just(false), 1 => Just(true)], 3),
        any::<u64>(),
    )
        .prop_map(|(equation, sizes, ellipsis, forms, consts, seed)| EinsumP {
            equation,
            sizes,
            ellipsis,
            forms,
            consts,
            seed,
        })
        .boxed()
}

impl EinsumP {
    /// The operand shapes the equation's terms describe.
    pub fn shapes(&self) -> Vec<Vec<usize>> {
        let lhs = self.equation.split("->").next().unwrap_or("");
        let mut letters: Vec<u8> = Vec::new();
        let mut shapes = Vec::new();
        for (i, term) in lhs.split(',').enumerate() {
            let (t, mut shape, mut at) = (term.as_bytes(), Vec::new(), 0);
            while at < t.len() {
                if t[at] == b'.' {
                    let f = self.forms[i % self.forms.len()];
                    let skip = usize::from(f & 1 == 1).min(self.ellipsis.len());
                    for (d, &n) in self.ellipsis.iter().enumerate().skip(skip) {
                        shape.push(if f & 2 == 2 && d % 2 == 1 { 1 } else { n });
                    }
                    at += 3;
                    continue;
                }
                let l = match letters.iter().position(|&x| x == t[at]) {
                    Some(l) => l,
                    None => {
                        letters.push(t[at]);
                        letters.len() - 1
                    }
                };
                shape.push(self.sizes[l % self.sizes.len()]);
                at += 1;
            }
            shapes.push(shape);
        }
        shapes
    }
}

/// Einsum against the interpreter. Tolerance as for MatMul with `K` the number of
/// products summed per output element (pairwise contraction through rounded f32
/// intermediates stays within the sum of the steps' bounds, which this exceeds), plus
/// `2·inputs` rounding steps.
pub fn build_einsum(net: &mut Net, p: &EinsumP) {
    let eq = edgecc::ir::Equation::parse(p.equation).expect("test equation parses");
    let mut rng = Rng::new(p.seed);
    let shapes = p.shapes();
    let tensors: Vec<Tensor> = shapes.iter().map(|s| rng.tensor(s, -1.0, 1.0)).collect();
    let op = Op::Einsum(eq.clone());
    let refs: Vec<&Tensor> = tensors.iter().collect();
    let mag = magnitude(&op, &refs);
    let shape_refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let r = eq.resolve(&shape_refs).expect("test shapes fit");
    let k: usize = r.summed().iter().map(|&l| r.sizes[l]).product();
    let ins: Vec<ValueId> = tensors
        .into_iter()
        .enumerate()
        .map(|(i, t)| net.data(i > 0 && p.consts[i % p.consts.len()], t))
        .collect();
    let y = net.node(op, &ins);
    net.output(
        y,
        format!("Einsum {} shapes {shapes:?} {p:?}", p.equation),
        Tol::elem(tol_dot(k + 2 * shapes.len(), &mag)),
    );
}

// ---------------------------------------------------------------------------------------
// GEMM epilogues: MatMul/Gemm → Add(bias) → Add(residual) → activation, which the
// fuse-epilogue pass makes one FusedMatMul and lowering one Gemm kernel

/// The activations a fused GEMM can end with (the IR's `Act`, which `Act` here predates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EpiAct {
    None,
    Relu,
    Clip,
    Sigmoid,
    Tanh,
    Gelu,
    GeluTanh,
    HardSwish,
}

impl EpiAct {
    pub fn op(self) -> Option<Op> {
        Some(match self {
            EpiAct::None => return None,
            EpiAct::Relu => Op::Unary(Unary::Relu),
            EpiAct::Clip => Op::Clip {
                min: -0.5,
                max: 0.75,
            },
            EpiAct::Sigmoid => Op::Unary(Unary::Sigmoid),
            EpiAct::Tanh => Op::Unary(Unary::Tanh),
            EpiAct::Gelu => Op::Gelu { tanh: false },
            EpiAct::GeluTanh => Op::Gelu { tanh: true },
            EpiAct::HardSwish => Op::HardSwish,
        })
    }
}

/// How the residual broadcasts to the `[batch.., m, n]` output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResForm {
    Absent,
    /// The output's own shape.
    Full,
    /// `[m, n]`: shared by every batch.
    NoBatch,
    /// `[n]`.
    Row,
    /// `[m, 1]`.
    Col,
    /// `[1]`.
    Scalar,
}

#[derive(Clone, Debug)]
pub struct EpilogueP {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Batch dims of A (empty for a Gemm).
    pub batch: Vec<usize>,
    /// ONNX Gemm (2-D, `trans_b`, its C as the bias) instead of MatMul + Add.
    pub gemm: bool,
    /// B has A's batch dims too (else it is shared and the batch folds into M).
    pub b_batched: bool,
    pub b_const: bool,
    /// A scale after the product: 0 none, 1 `Mul(0.375)`, 2 `Div(2)` (alpha either way).
    pub scale: u8,
    pub bias: bool,
    /// The Adds' operands swapped (bias or residual first).
    pub swapped: bool,
    pub residual: ResForm,
    pub act: EpiAct,
    pub seed: u64,
}

pub fn epilogue_strategy() -> BoxedStrategy<EpilogueP> {
    let act = prop_oneof![
        Just(EpiAct::None),
        Just(EpiAct::Relu),
        Just(EpiAct::Clip),
        Just(EpiAct::Sigmoid),
        Just(EpiAct::Tanh),
        Just(EpiAct::Gelu),
        Just(EpiAct::GeluTanh),
        Just(EpiAct::HardSwish),
    ];
    let res = prop_oneof![
        1 => Just(ResForm::Absent),
        2 => Just(ResForm::Full),
        1 => Just(ResForm::NoBatch),
        1 => Just(ResForm::Row),
        1 => Just(ResForm::Col),
        1 => Just(ResForm::Scalar),
    ];
    (
        (dim(20), dim(24), dim(28)),
        prop::collection::vec(1usize..=3, 0..=2),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>(), 0u8..3),
        res,
        act,
        any::<u64>(),
    )
        .prop_map(
            |(
                (m, k, n),
                batch,
                (gemm, b_batched, b_const),
                (bias, swapped, scale),
                residual,
                act,
                seed,
            )| {
                let gemm = gemm && batch.is_empty();
                EpilogueP {
                    m,
                    k,
                    n,
                    batch: if gemm { vec![] } else { batch },
                    gemm,
                    b_batched: b_batched && !gemm,
                    b_const,
                    scale,
                    bias: bias || gemm,
                    swapped,
                    residual,
                    act,
                    seed,
                }
            },
        )
        .boxed()
}

pub fn build_epilogue(net: &mut Net, p: &EpilogueP) {
    let mut rng = Rng::new(p.seed);
    let mut sa = p.batch.clone();
    sa.extend([p.m, p.k]);
    let mut sb = if p.b_batched { p.batch.clone() } else { vec![] };
    sb.extend(if p.gemm { [p.n, p.k] } else { [p.k, p.n] });
    let mut so = p.batch.clone();
    so.extend([p.m, p.n]);
    let a = net.input(rng.tensor(&sa, -1.0, 1.0));
    let b = net.data(p.b_const, rng.tensor(&sb, -1.0, 1.0));
    let bias = net.konst(rng.tensor(&[p.n], -1.0, 1.0));
    let add = |net: &mut Net, x: ValueId, y: ValueId| {
        let ins = if p.swapped { [y, x] } else { [x, y] };
        net.node(Op::Binary(Binary::Add), &ins)
    };
    let scale = |net: &mut Net, y: ValueId| match p.scale {
        1 => {
            let s = net.konst(Tensor::f32(vec![], vec![0.375]));
            net.node(Op::Binary(Binary::Mul), &[s, y])
        }
        2 => {
            let d = net.konst(Tensor::f32(vec![1], vec![2.0]));
            net.node(Op::Binary(Binary::Div), &[y, d])
        }
        _ => y,
    };
    let mut y = if p.gemm {
        let op = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        };
        net.node(op, &[a, b, bias])
    } else {
        let y = net.node(Op::MatMul, &[a, b]);
        let y = scale(net, y);
        if p.bias { add(net, y, bias) } else { y }
    };
    let rs: Option<Vec<usize>> = match p.residual {
        ResForm::Absent => None,
        ResForm::Full => Some(so.clone()),
        ResForm::NoBatch => Some(vec![p.m, p.n]),
        ResForm::Row => Some(vec![p.n]),
        ResForm::Col => Some(vec![p.m, 1]),
        ResForm::Scalar => Some(vec![1]),
    };
    if let Some(rs) = rs {
        let r = net.input(rng.tensor(&rs, -2.0, 2.0));
        y = add(net, y, r);
    }
    if let Some(op) = p.act.op() {
        y = net.node(op, &[y]);
    }
    net.output(y, format!("epilogue {p:?}"), Tol::scale(CHAIN_SCALE));
}

// ---------------------------------------------------------------------------------------
// Many instances in one graph

fn sample<S: Strategy>(
    net: &mut Net,
    runner: &mut proptest::test_runner::TestRunner,
    s: S,
    n: usize,
    build: fn(&mut Net, &S::Value),
) {
    use proptest::strategy::ValueTree;
    for _ in 0..n {
        let p = s.new_tree(runner).expect("strategy").current();
        build(net, &p);
    }
}

/// One graph holding a sample of every op family (drawn from the same strategies as the
/// JIT property tests, deterministically from `seed`) plus every chain, each instance
/// with its own inputs and outputs. `div` divides the per-family counts (the JIT's
/// checked call takes at most `edgecc_runtime::MAX_IO` = 64 inputs and outputs).
pub fn batch_net(seed: u64, div: usize) -> Net {
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let r = &mut runner;
    let mut net = Net::new();
    let k = |n: usize| n.div_ceil(div);
    sample(&mut net, r, unary_strategy(), k(12), build_unary);
    sample(&mut net, r, binary_strategy(), k(16), build_binary);
    sample(&mut net, r, matmul_strategy(), k(10), build_matmul);
    sample(&mut net, r, gemm_strategy(), k(10), build_gemm);
    sample(&mut net, r, conv_strategy(), k(10), build_conv);
    sample(&mut net, r, pool_strategy(), k(10), build_pool);
    sample(&mut net, r, gap_strategy(), k(4), build_gap);
    sample(&mut net, r, bn_strategy(), k(4), build_bn);
    sample(&mut net, r, flatten_strategy(), k(4), build_flatten);
    sample(&mut net, r, reshape_strategy(), k(4), build_reshape);
    sample(&mut net, r, transpose_strategy(), k(6), build_transpose);
    sample(&mut net, r, concat_strategy(), k(6), build_concat);
    sample(&mut net, r, softmax_strategy(), k(8), build_softmax);
    if div == 1 {
        // Masks and AttentionSoftmax have their own JIT property tests (`ops_jit.rs`), and
        // the JIT batches have no input slots to spare; aarch64 gets its sample here.
        sample(&mut net, r, mask_strategy(), 12, build_mask);
        sample(
            &mut net,
            r,
            attention_softmax_strategy(),
            6,
            build_attention_softmax,
        );
        // Likewise fused GEMM epilogues (`gemm_epilogue` in `ops_jit.rs`).
        sample(&mut net, r, epilogue_strategy(), 12, build_epilogue);
    }
    sample(&mut net, r, einsum_strategy(), k(3), build_einsum);
    for which in 0..CHAINS {
        let p = ChainP {
            which,
            a: 1 + (seed as usize + which) % 5,
            b: 1 + (seed as usize * 7 + which * 3) % 13,
            seed: seed * 100 + which as u64,
        };
        build_chain(&mut net, &p);
    }
    net
}

// ---------------------------------------------------------------------------------------
// LayerNormalization with its Mean and InvStdDev outputs, ReduceMin and ReduceProd

/// LayerNormalization over the dims from `axis` on (negative counts from the end), with
/// full-shape scale and bias, and the Mean (`which & 1`) and InvStdDev (`which & 2`)
/// outputs as graph outputs.
#[derive(Clone, Debug)]
pub struct LnStatsP {
    pub shape: Vec<usize>,
    pub axis: i64,
    pub epsilon: f32,
    pub which: u8,
    pub seed: u64,
}

pub fn ln_stats_strategy() -> BoxedStrategy<LnStatsP> {
    (
        prop::collection::vec(1usize..7, 1..5),
        0usize..8,
        any::<bool>(),
        prop_oneof![Just(1e-5f32), Just(1e-2f32), Just(0.5f32)],
        1u8..4,
        any::<u64>(),
    )
        .prop_map(|(shape, a, negative, epsilon, which, seed)| {
            let r = shape.len();
            let a = a % r;
            let axis = if negative {
                a as i64 - r as i64
            } else {
                a as i64
            };
            LnStatsP {
                shape,
                axis,
                epsilon,
                which,
                seed,
            }
        })
        .boxed()
}

/// Tolerances (the interpreter computes in f64, the lowering in f32): the mean is a sum of
/// `len` terms ≤ 5 in magnitude, so `(len+2)·U·5` absolute; the variance is a sum of
/// non-negative squares of centred values, relative error about `(len+5)·U`, halved by the
/// square root, plus the final divide: `(len+8)·U·2` relative for InvStdDev; Y below.
pub fn build_ln_stats(net: &mut Net, p: &LnStatsP) {
    let mut rng = Rng::new(p.seed);
    let r = p.shape.len() as i64;
    let ax = if p.axis < 0 { p.axis + r } else { p.axis } as usize;
    let inner = p.shape[ax..].to_vec();
    let len = numel(&inner) as f64;
    let xt = rng.tensor(&p.shape, -3.0, 5.0);
    // Y = (x − mean)/σ·scale + bias: the mean's error, divided by this row's σ (which
    // may be near 0 for a short row), scaled by ≤ 1.5; plus the bound of `layer_norm`.
    let y_tol: Vec<f64> = xt
        .as_f32()
        .unwrap()
        .chunks(len as usize)
        .flat_map(|row| {
            let m = row.iter().map(|&v| v as f64).sum::<f64>() / len;
            let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / len;
            let e = (len + 2.0) * U * 5.0 * 1.5 * 2.0 / (var + p.epsilon as f64).sqrt();
            std::iter::repeat_n(e + (len + 8.0) * 2.4e-7 * 4.0, row.len())
        })
        .collect();
    let x = net.input(xt);
    let scale = net.konst(rng.tensor(&inner, 0.5, 1.5));
    let bias = net.konst(rng.tensor(&inner, -1.0, 1.0));
    let outs = net.node_outs(
        Op::LayerNorm {
            axis: p.axis,
            epsilon: p.epsilon,
            stats: true,
        },
        &[x, scale, bias],
    );
    let label = format!("LayerNorm {:?} axis {} eps {}", p.shape, p.axis, p.epsilon);
    net.output(outs[0], format!("{label}: Y"), Tol::elem(y_tol));
    if p.which & 1 != 0 {
        net.output(
            outs[1],
            format!("{label}: Mean"),
            Tol::rel(0.0, (len + 2.0) * U * 5.0),
        );
    }
    if p.which & 2 != 0 {
        net.output(
            outs[2],
            format!("{label}: InvStdDev"),
            Tol::rel((len + 8.0) * U * 2.0, 0.0),
        );
    }
}

/// Where a LayerNormalization's scale or bias comes from: constant or graph input (a
/// runtime buffer), a full vector over the normalized dims or one value (`[1]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LnParam {
    Absent,
    ConstFull,
    ConstOne,
    InputFull,
    InputOne,
}

/// LayerNormalization over `[rows, len]` (axis -1) with every scale and bias form the
/// one-kernel lowering takes, lengths around the vector width, and the statistics
/// outputs picked by `which` as in [`LnStatsP`].
#[derive(Clone, Debug)]
pub struct LnFormP {
    pub rows: usize,
    pub len: usize,
    pub scale: LnParam,
    pub bias: LnParam,
    pub epsilon: f32,
    pub which: u8,
    pub seed: u64,
}

const LN_LENS: [usize; 12] = [1, 2, 3, 4, 5, 7, 8, 9, 13, 31, 64, 67];

fn ln_param_strategy(absent: bool) -> BoxedStrategy<LnParam> {
    let all = [
        LnParam::ConstFull,
        LnParam::ConstOne,
        LnParam::InputFull,
        LnParam::InputOne,
    ];
    let lo = if absent { 0 } else { 1 };
    (lo..5usize)
        .prop_map(move |i| if i == 0 { LnParam::Absent } else { all[i - 1] })
        .boxed()
}

pub fn ln_form_strategy() -> BoxedStrategy<LnFormP> {
    (
        1usize..5,
        0..LN_LENS.len(),
        ln_param_strategy(false),
        ln_param_strategy(true),
        prop_oneof![Just(1e-5f32), Just(1e-2f32)],
        0u8..4,
        any::<u64>(),
    )
        .prop_map(|(rows, l, scale, bias, epsilon, which, seed)| LnFormP {
            rows,
            len: LN_LENS[l],
            scale,
            bias,
            epsilon,
            which,
            seed,
        })
        .boxed()
}

/// Every length of [`LN_LENS`] once, cycling through the scale, bias and statistics forms
/// so that each form meets several lengths (one graph for the aarch64 test).
pub fn every_ln_form_case() -> Vec<LnFormP> {
    use LnParam::*;
    let scales = [ConstFull, ConstOne, InputFull, InputOne];
    let biases = [Absent, ConstFull, ConstOne, InputFull, InputOne];
    LN_LENS
        .iter()
        .enumerate()
        .map(|(i, &len)| LnFormP {
            rows: 1 + i % 3,
            len,
            scale: scales[i % scales.len()],
            bias: biases[i % biases.len()],
            epsilon: [1e-5, 1e-2][i % 2],
            which: (i % 4) as u8,
            seed: 500 + i as u64,
        })
        .collect()
}

/// Tolerances as [`build_ln_stats`] (values in [-3, 5], |scale| ≤ 1.5, |bias| ≤ 1).
pub fn build_ln_form(net: &mut Net, p: &LnFormP) {
    let mut rng = Rng::new(p.seed);
    let len = p.len as f64;
    let xt = rng.tensor(&[p.rows, p.len], -3.0, 5.0);
    let y_tol: Vec<f64> = xt
        .as_f32()
        .unwrap()
        .chunks(p.len)
        .flat_map(|row| {
            let m = row.iter().map(|&v| v as f64).sum::<f64>() / len;
            let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / len;
            let e = (len + 2.0) * U * 5.0 * 1.5 * 2.0 / (var + p.epsilon as f64).sqrt();
            std::iter::repeat_n(e + (len + 8.0) * 2.4e-7 * 4.0, row.len())
        })
        .collect();
    let x = net.input(xt);
    let mut param = |net: &mut Net, form: LnParam, lo: f32, hi: f32| {
        let t = match form {
            LnParam::Absent => return None,
            LnParam::ConstFull | LnParam::InputFull => rng.tensor(&[p.len], lo, hi),
            LnParam::ConstOne | LnParam::InputOne => rng.tensor(&[1], lo, hi),
        };
        Some(match form {
            LnParam::ConstFull | LnParam::ConstOne => net.konst(t),
            _ => net.input(t),
        })
    };
    let mut ins = vec![x];
    ins.extend(param(net, p.scale, 0.5, 1.5));
    ins.extend(param(net, p.bias, -1.0, 1.0));
    let stats = p.which != 0;
    let outs = net.node_outs(
        Op::LayerNorm {
            axis: -1,
            epsilon: p.epsilon,
            stats,
        },
        &ins,
    );
    let label = format!(
        "LayerNorm [{}, {}] scale {:?} bias {:?} eps {}",
        p.rows, p.len, p.scale, p.bias, p.epsilon
    );
    net.output(outs[0], format!("{label}: Y"), Tol::elem(y_tol));
    if p.which & 1 != 0 {
        net.output(
            outs[1],
            format!("{label}: Mean"),
            Tol::rel(0.0, (len + 2.0) * U * 5.0),
        );
    }
    if p.which & 2 != 0 {
        net.output(
            outs[2],
            format!("{label}: InvStdDev"),
            Tol::rel((len + 8.0) * U * 2.0, 0.0),
        );
    }
}

/// A reduction over the adjacent axes `a..b` of `shape`; `specials` replaces about a
/// quarter of the values by NaN and ±inf.
#[derive(Clone, Debug)]
pub struct ReduceP {
    pub shape: Vec<usize>,
    pub a: usize,
    pub b: usize,
    pub kind: edgecc::ir::ReduceKind,
    pub keepdims: bool,
    pub specials: bool,
    pub seed: u64,
}

pub fn min_prod_strategy() -> BoxedStrategy<ReduceP> {
    use edgecc::ir::ReduceKind;
    (
        prop::collection::vec(1usize..6, 1..5),
        (0usize..8, 0usize..8),
        prop_oneof![
            Just(ReduceKind::Min),
            Just(ReduceKind::Prod),
            Just(ReduceKind::Max)
        ],
        any::<bool>(),
        prop::bool::weighted(0.3),
        any::<u64>(),
    )
        .prop_map(|(shape, pick, kind, keepdims, specials, seed)| {
            let r = shape.len();
            let a = pick.0 % r;
            let b = a + 1 + pick.1 % (r - a);
            ReduceP {
                shape,
                a,
                b,
                kind,
                keepdims,
                specials,
                seed,
            }
        })
        .boxed()
}

/// Min and Max pick an element (NaN if any is): exact. Prod multiplies `len` values of magnitude in [0.9, 1.1]
/// (no overflow or underflow for `len` ≤ 625) in f32, one rounding each, against one
/// rounding of the f64 product: `(len+1)·U` relative.
pub fn build_reduce(net: &mut Net, p: &ReduceP) {
    use edgecc::ir::ReduceKind;
    let mut rng = Rng::new(p.seed);
    let n = numel(&p.shape);
    let vals = if p.kind == ReduceKind::Prod {
        let mut v = rng.away(n, 0.9, 1.1);
        if p.specials {
            for x in v.iter_mut() {
                if rng.below(4) == 0 {
                    *x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][rng.below(3)];
                }
            }
        }
        v
    } else if p.specials {
        rng.with_specials(n, -2.0, 2.0, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY])
    } else {
        rng.vals(n, -2.0, 2.0)
    };
    let x = net.input(Tensor::f32(p.shape.clone(), vals));
    let y = net.node(
        Op::Reduce {
            kind: p.kind,
            axes: Some((p.a..p.b).map(|d| d as i64).collect()),
            keepdims: p.keepdims,
        },
        &[x],
    );
    let len = numel(&p.shape[p.a..p.b]) as f64;
    let tol = match p.kind {
        ReduceKind::Prod => Tol::rel((len + 1.0) * U, 0.0),
        _ => Tol::exact(),
    };
    net.output(
        y,
        format!(
            "{:?} {:?} axes {}..{} keepdims {} specials {}",
            p.kind, p.shape, p.a, p.b, p.keepdims, p.specials
        ),
        tol,
    );
}

// ---------------------------------------------------------------------------------------
// Integer arithmetic and CumSum (RoBERTa position ids)

/// An i32 or i64 tensor of `v` (narrowed to i32 with wrapping).
pub fn int_tensor(dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Tensor {
    edgecc::interp::tensor_ops::cast(&Tensor::i64(shape, v), dtype)
        .expect("test bug: int cast")
        .remove(0)
}

/// Values that stress wrapping: small, and near the ends of `dtype`'s range.
pub fn wrap_values(rng: &mut Rng, dtype: DType, n: usize) -> Vec<i64> {
    let (lo, hi) = if dtype == DType::I32 {
        (i32::MIN as i64, i32::MAX as i64)
    } else {
        (i64::MIN, i64::MAX)
    };
    (0..n)
        .map(|_| match rng.below(6) {
            0 => hi - rng.below(3) as i64,
            1 => lo + rng.below(3) as i64,
            2 => hi / 2 + rng.below(1000) as i64,
            _ => rng.below(2001) as i64 - 1000,
        })
        .collect()
}

/// CumSum of an f32/i32/i64 input over `axis` with the given flags; integer inputs hold
/// wrapping values. Exact (the f32 sums are sequential on both sides).
pub fn build_cumsum(
    net: &mut Net,
    shape: &[usize],
    axis: i64,
    exclusive: bool,
    reverse: bool,
    dtype: DType,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let n = numel(shape);
    let x = if dtype == DType::F32 {
        net.input(rng.tensor(shape, -100.0, 100.0))
    } else {
        let v = wrap_values(&mut rng, dtype, n);
        net.input(int_tensor(dtype, shape.to_vec(), v))
    };
    let y = net.node(
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        },
        &[x],
    );
    net.output(
        y,
        format!("CumSum {dtype} {shape:?} axis {axis} exclusive {exclusive} reverse {reverse}"),
        Tol::exact(),
    );
}

/// Integer Add/Sub/Mul/Max/Min with broadcast forms (and Neg/Abs) on wrapping values,
/// each op once, plus an in-place chain.
pub fn build_int_arith(net: &mut Net, dtype: DType, seed: u64) {
    let mut rng = Rng::new(seed);
    let forms: [(&[usize], &[usize]); 5] = [
        (&[3, 5], &[3, 5]),
        (&[2, 3, 4], &[4]),
        (&[2, 1, 4], &[3, 1]),
        (&[], &[6]),
        (&[7, 1], &[1, 9]),
    ];
    let ops = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Max,
        Binary::Min,
    ];
    for (i, (sa, sb)) in forms.iter().enumerate() {
        for (j, &op) in ops.iter().enumerate() {
            let a = wrap_values(&mut rng, dtype, numel(sa));
            let b = wrap_values(&mut rng, dtype, numel(sb));
            let a = net.input(int_tensor(dtype, sa.to_vec(), a));
            // Every other right-hand side a constant.
            let b = net.data((i + j) % 2 == 1, int_tensor(dtype, sb.to_vec(), b));
            let y = net.node(Op::Binary(op), &[a, b]);
            net.output(y, format!("{op:?} {dtype} {sa:?} x {sb:?}"), Tol::exact());
        }
    }
    let x = wrap_values(&mut rng, dtype, 24);
    let x = net.input(int_tensor(dtype, vec![4, 6], x));
    let n = net.node(Op::Unary(Unary::Neg), &[x]);
    net.output(n, format!("Neg {dtype}"), Tol::exact());
    let a = net.node(Op::Unary(Unary::Abs), &[x]);
    net.output(a, format!("Abs {dtype}"), Tol::exact());
    // A chain whose intermediates die: the later kernels run in place.
    let t = net.node(Op::Binary(Binary::Mul), &[x, x]);
    let t = net.node(Op::Binary(Binary::Add), &[t, x]);
    let t = net.node(Op::Unary(Unary::Neg), &[t]);
    net.output(t, format!("-(x*x + x) {dtype}"), Tol::exact());
}

/// RoBERTa's position ids from input ids (HF `create_position_ids_from_input_ids`, as
/// both PyTorch exporters write it): `mask = Cast(Not(Equal(ids, pad)), i32)`,
/// `pos = Cast(CumSum(mask, 1) · mask, i64) + pad`, then the position embedding lookup.
pub fn roberta_position_ids(net: &mut Net) {
    let pad = 1i64;
    let (b, s, width) = (3usize, 11usize, 5usize);
    let ids: Vec<i64> = (0..b * s)
        .map(|i| match (i / s, i % s) {
            (_, 0) => 0,
            (0, j) if j >= 8 => pad,
            (1, _) => 100 + i as i64,
            (2, j) if j % 3 == 2 => pad,
            _ => 7 * i as i64 + 2,
        })
        .collect();
    let ids = net.input(Tensor::i64(vec![b, s], ids));
    let padc = net.konst(Tensor::i64(vec![], vec![pad]));
    let is_pad = net.node(Op::Compare(Cmp::Equal), &[ids, padc]);
    let keep = net.node(Op::Not, &[is_pad]);
    let mask = net.node(Op::Cast { to: DType::I32 }, &[keep]);
    let run = net.node(
        Op::CumSum {
            axis: 1,
            exclusive: false,
            reverse: false,
        },
        &[mask],
    );
    let masked = net.node(Op::Binary(Binary::Mul), &[run, mask]);
    let wide = net.node(Op::Cast { to: DType::I64 }, &[masked]);
    let pos = net.node(Op::Binary(Binary::Add), &[wide, padc]);
    net.output(pos, "RoBERTa position ids", Tol::exact());
    let mut rng = Rng::new(41);
    let table = net.konst(rng.tensor(&[s + pad as usize + 1, width], -1.0, 1.0));
    let emb = net.node(Op::Gather { axis: 0 }, &[table, pos]);
    net.output(emb, "RoBERTa position embeddings", Tol::exact());
}
