//! The ONNX backend node tests (~1,900 cases over ~200 op types), each imported, run on the
//! interpreter and compiled for the x86_64 JIT, against the suite's expected outputs; a
//! deterministic sample also runs under qemu-aarch64.
//!
//! The cases are written once by `python3 scripts/make_node_tests.py target/onnx-node-tests`
//! (the pinned `onnx`, a fixed seed, the classic `<test>/model.onnx` +
//! `test_data_set_0/{input,output}_K.pb` layout); `EDGECC_NODE_TESTS` points elsewhere. A
//! missing directory fails the test with that command; it is never skipped.
//!
//! Each case ends as, per engine, `passed`, `failed` (a wrong result, an error that is not
//! "unsupported", or a panic) or `unsupported` (the importer refuses an op, or the value
//! types are not tensors; for the JIT also a lowering refused for a dtype or attribute).
//! The summary is printed overall and per op type, and written to
//! `target/conformance-report.json`.
//!
//! Ratchet: `tests/conformance/passing.txt` lists the cases that pass on both the
//! interpreter and the JIT (and on aarch64 when sampled). The test fails when a listed case
//! stops passing; newly passing cases are printed as a hint. `EDGECC_UPDATE_RATCHET=1`
//! rewrites the file with the current passing set.
//!
//! Tolerance: `|got - want| <= 1e-5 + 1e-3 * |want|` for floats (ONNX's rtol; an atol a
//! little looser than the suite's 1e-7, for f32 kernels near zero), NaN where and only where
//! expected, infinities exact; integers, bools and strings exact; shapes and dtypes exact.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edgecc::Error;
use edgecc::ir::{DType, Data, Graph, Tensor};
use edgecc::onnx::ImportOptions;
use edgecc::passes::PassManager;
use edgecc_program::Program;
use onnx_protobuf::ModelProto;

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;
/// Every `AARCH64_EVERY`-th case (in name order) of those that pass on the interpreter and
/// lower runs under qemu-aarch64.
const AARCH64_EVERY: usize = 10;

// ---------------------------------------------------------------------------------------
// Outcomes

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Passed,
    Failed(String),
    /// A panic in edgecc: always a bug.
    Panicked(String),
    Unsupported(String),
}

impl Outcome {
    fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    fn label(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "failed",
            Outcome::Panicked(_) => "panicked",
            Outcome::Unsupported(_) => "unsupported",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Failed(r) | Outcome::Panicked(r) | Outcome::Unsupported(r) => Some(r),
            Outcome::Passed => None,
        }
    }
}

struct CaseResult {
    name: String,
    /// The op type the case counts under.
    op: String,
    interp: Outcome,
    jit: Outcome,
    /// `Some` when the case is in the aarch64 sample.
    aarch64: Option<Outcome>,
    elapsed: Duration,
}

/// A case's result, with its program and data when it lowered (for the aarch64 sample).
type Run = (CaseResult, Option<Program>, Option<Loaded>);

impl CaseResult {
    /// Passes on the interpreter and the JIT, and on aarch64 when sampled.
    fn passes(&self) -> bool {
        self.interp.passed()
            && self.jit.passed()
            && self.aarch64.as_ref().is_none_or(Outcome::passed)
    }
}

// ---------------------------------------------------------------------------------------
// Panics: recorded with their location, not printed by the default hook mid-run.

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_string()
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
    }));
}

/// Runs `f`, turning a panic into `Err(message)`.
fn guarded<T>(stage: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        let msg = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "unknown panic".into());
        format!("panic in {stage}: {msg}")
    })
}

// ---------------------------------------------------------------------------------------
// Comparison

fn is_float(d: DType) -> bool {
    !matches!(
        d,
        DType::U8
            | DType::I8
            | DType::U16
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U32
            | DType::U64
            | DType::Bool
            | DType::String
            | DType::U4
            | DType::I4
            | DType::U2
            | DType::I2
    )
}

/// Both parts of complex numbers, real values otherwise.
fn float_values(t: &Tensor) -> Option<Vec<f64>> {
    match &t.data {
        Data::C64(v) => Some(v.iter().flat_map(|c| [c[0] as f64, c[1] as f64]).collect()),
        Data::C128(v) => Some(v.iter().flat_map(|c| [c[0], c[1]]).collect()),
        _ => t.to_f64s(),
    }
}

fn close(got: f64, want: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= ATOL + RTOL * want.abs()
}

/// `Ok` when `got` matches `want`; otherwise what differs.
fn compare(what: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype != want.dtype {
        return Err(format!(
            "{what}: dtype {} where {} is expected",
            got.dtype, want.dtype
        ));
    }
    if got.shape != want.shape {
        return Err(format!(
            "{what}: shape {:?} where {:?} is expected",
            got.shape, want.shape
        ));
    }
    if !is_float(want.dtype) {
        if got.data == want.data {
            return Ok(());
        }
        let (g, w) = match (got.to_f64s(), want.to_f64s()) {
            (Some(g), Some(w)) => (g, w),
            _ => return Err(format!("{what}: values differ")),
        };
        let bad: Vec<usize> = (0..w.len()).filter(|&i| g[i] != w[i]).collect();
        let i = bad.first().copied().unwrap_or(0);
        return Err(format!(
            "{what}: {} of {} elements differ; first at {i}: got {}, want {}",
            bad.len(),
            w.len(),
            g.get(i).copied().unwrap_or(f64::NAN),
            w.get(i).copied().unwrap_or(f64::NAN)
        ));
    }
    let (Some(g), Some(w)) = (float_values(got), float_values(want)) else {
        return Err(format!("{what}: values are not numeric"));
    };
    if g.len() != w.len() {
        return Err(format!("{what}: {} values, {} expected", g.len(), w.len()));
    }
    let mut bad = 0usize;
    let mut first = None;
    let mut max_err = 0f64;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        if !close(a, b) {
            bad += 1;
            first.get_or_insert(i);
            if a.is_finite() && b.is_finite() {
                max_err = max_err.max((a - b).abs());
            }
        }
    }
    match first {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: {bad} of {} elements off (rtol {RTOL}, atol {ATOL}); first at {i}: \
             got {}, want {}; max |err| {max_err:.3e}",
            w.len(),
            g[i],
            w[i]
        )),
    }
}

fn compare_all(got: &[Tensor], want: &[Tensor]) -> Outcome {
    if got.len() != want.len() {
        return Outcome::Failed(format!("{} outputs, {} expected", got.len(), want.len()));
    }
    let errs: Vec<String> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter_map(|(i, (g, w))| compare(&format!("output {i}"), g, w).err())
        .collect();
    if errs.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(errs.join("; "))
    }
}

// ---------------------------------------------------------------------------------------
// One case

/// The tensors `prefix_0.pb`, `prefix_1.pb`, ... of a data set.
fn read_pbs(dir: &Path, prefix: &str) -> Result<Vec<Tensor>, String> {
    let mut out = Vec::new();
    for i in 0.. {
        let p = dir.join(format!("{prefix}_{i}.pb"));
        if !p.exists() {
            break;
        }
        out.push(edgecc::io::read_tensor(&p).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn unsupported_text(err: &Error) -> Option<String> {
    match err {
        Error::Unsupported(ops) => Some(
            ops.iter()
                .map(|o| match &o.reason {
                    Some(r) => format!("{} ({r})", o.op_type),
                    None => o.op_type.clone(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

/// Graph inputs and outputs that are sequences, optionals or maps.
fn non_tensor_values(model: &ModelProto) -> Vec<String> {
    let g = model.graph.get_or_default();
    let inits: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input
        .iter()
        .filter(|vi| !inits.contains(vi.name.as_str()))
        .chain(&g.output)
        .filter(|vi| !vi.type_.has_tensor_type())
        .map(|vi| vi.name.clone())
        .collect()
}

/// What the case needs to run after import.
struct Loaded {
    graph: Graph,
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
}

/// Reads and imports a case. `Err` is the outcome for every engine.
fn load(dir: &Path, model: &ModelProto) -> Result<Loaded, Outcome> {
    let non_tensor = non_tensor_values(model);
    if !non_tensor.is_empty() {
        return Err(Outcome::Unsupported(format!(
            "non-tensor graph values (sequence/optional/map): {}",
            non_tensor.join(", ")
        )));
    }
    let ds = dir.join("test_data_set_0");
    let inputs = read_pbs(&ds, "input").map_err(|e| Outcome::Failed(format!("input: {e}")))?;
    let outputs = read_pbs(&ds, "output").map_err(|e| Outcome::Failed(format!("output: {e}")))?;
    let path = dir.join("model.onnx");
    let g = model.graph.get_or_default();
    let inits: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let input_names: Vec<String> = g
        .input
        .iter()
        .filter(|vi| !inits.contains(vi.name.as_str()))
        .map(|vi| vi.name.clone())
        .collect();
    // As a user would: unknown dims from the data set (--input-shape), and inputs that an
    // ahead-of-time compiler must know (axes, shapes, pads... given as graph inputs here)
    // bound to the data set's values (--freeze), when the importer names them.
    let imported = guarded("import", || {
        let mut opts = ImportOptions::default();
        loop {
            match edgecc::onnx::load(&path, &opts) {
                Err(Error::UnresolvedDims(_)) if opts.input_shapes.is_empty() => {
                    for (n, t) in input_names.iter().zip(&inputs) {
                        opts.input_shapes.insert(n.clone(), t.shape.clone());
                    }
                }
                Err(Error::Unsupported(ops)) => {
                    let wanted: Vec<usize> = ops
                        .iter()
                        .filter_map(|o| o.reason.as_deref().and_then(not_constant))
                        .filter_map(|n| input_names.iter().position(|x| x == n))
                        .filter(|&i| !opts.frozen_inputs.contains_key(&input_names[i]))
                        .collect();
                    if wanted.is_empty() || wanted.iter().any(|&i| i >= inputs.len()) {
                        return Err(Error::Unsupported(ops));
                    }
                    for i in wanted {
                        opts.frozen_inputs
                            .insert(input_names[i].clone(), inputs[i].clone());
                    }
                }
                other => return other.map(|(m, g)| (m, g, opts.frozen_inputs)),
            }
        }
    })
    .map_err(Outcome::Panicked)?;
    let (graph, frozen) = match imported {
        Ok((_, g, frozen)) => (g, frozen),
        Err(e) => {
            return Err(match unsupported_text(&e) {
                Some(t) => Outcome::Unsupported(t),
                None => Outcome::Failed(format!("import: {}", one_line(&e.to_string()))),
            });
        }
    };
    if !frozen.is_empty() {
        FROZEN_CASES.fetch_add(1, Ordering::Relaxed);
    }
    let inputs = input_names
        .iter()
        .zip(inputs)
        .filter(|(n, _)| !frozen.contains_key(*n))
        .map(|(_, t)| t)
        .collect::<Vec<_>>();
    if graph.inputs.len() != inputs.len() || graph.outputs.len() != outputs.len() {
        return Err(Outcome::Failed(format!(
            "the graph has {} inputs and {} outputs, the data set {} and {}",
            graph.inputs.len(),
            graph.outputs.len(),
            inputs.len(),
            outputs.len()
        )));
    }
    Ok(Loaded {
        graph,
        inputs,
        outputs,
    })
}

/// Cases that ran with inputs bound at compile time (see `load`).
static FROZEN_CASES: AtomicUsize = AtomicUsize::new(0);

/// The value name in an importer reason such as "input 'axes' is not a constant".
fn not_constant(reason: &str) -> Option<&str> {
    let end = reason.find("' is not a constant")?;
    let start = reason[..end].rfind('\'')? + 1;
    Some(&reason[start..end])
}

/// At most `n` characters of `s`.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run_interp(l: &Loaded) -> Outcome {
    match guarded("interpreter", || edgecc::interp::run(&l.graph, &l.inputs)) {
        Err(p) => Outcome::Panicked(p),
        Ok(Err(e)) => Outcome::Failed(format!("interpreter: {}", one_line(&e.to_string()))),
        Ok(Ok(got)) => compare_all(&got, &l.outputs),
    }
}

/// Passes and lowering. A lowering refused for a dtype or op variant is "unsupported".
fn compile(l: &Loaded) -> Result<Program, Outcome> {
    let r = guarded("passes/lowering", || -> Result<Program, Outcome> {
        let mut g = l.graph.clone();
        PassManager::default_pipeline()
            .run(&mut g)
            .map_err(|e| Outcome::Failed(format!("passes: {}", one_line(&e.to_string()))))?;
        match edgecc::lower::lower(&g, "conf") {
            Ok(lowered) => Ok(lowered.program),
            Err(e @ Error::Target(_)) => Err(Outcome::Unsupported(format!(
                "target: {}",
                one_line(&e.to_string())
            ))),
            Err(e) => Err(match unsupported_text(&e) {
                Some(t) => Outcome::Unsupported(format!("target: {t}")),
                None => Outcome::Failed(format!("lowering: {}", one_line(&e.to_string()))),
            }),
        }
    });
    match r {
        Err(p) => Err(Outcome::Panicked(p)),
        Ok(r) => r,
    }
}

/// Runs a program with `run` and compares with the expected outputs.
fn run_program(
    stage: &str,
    program: &Program,
    l: &Loaded,
    run: impl FnOnce(&Program, &[Vec<u8>]) -> Result<Vec<Vec<u8>>, Error>,
) -> Outcome {
    let mut bytes = Vec::new();
    for (i, t) in l.inputs.iter().enumerate() {
        match t.to_le_bytes() {
            Some(b) => bytes.push(b),
            None => {
                return Outcome::Unsupported(format!("target: input {i} is {}", t.dtype));
            }
        }
    }
    let got = match guarded(stage, || run(program, &bytes)) {
        Err(p) => return Outcome::Panicked(p),
        Ok(Err(e)) => return Outcome::Failed(format!("{stage}: {}", one_line(&e.to_string()))),
        Ok(Ok(got)) => got,
    };
    let mut tensors = Vec::new();
    for (i, (b, w)) in got.iter().zip(&l.outputs).enumerate() {
        let io = &program.outputs[i];
        let shape: Vec<usize> = io.shape.iter().map(|&d| d as usize).collect();
        let dtype = DType::from_onnx(io.dtype as i32).unwrap_or(w.dtype);
        match Tensor::from_le_bytes(dtype, shape, b) {
            Some(t) => tensors.push(t),
            None => {
                return Outcome::Failed(format!(
                    "{stage}: output {i}: {} bytes do not make a {dtype}{:?}",
                    b.len(),
                    io.shape
                ));
            }
        }
    }
    compare_all(&tensors, &l.outputs)
}

/// The op type a case counts under: its only op type; for a multi-node case the op of
/// the single-node case it expands (`X_expanded`), else the op whose name starts the test
/// name; else its op types joined.
fn case_op(name: &str, ops: &BTreeSet<String>, single: &BTreeMap<String, String>) -> String {
    if ops.len() == 1 {
        return ops.iter().next().unwrap().clone();
    }
    if let Some(i) = name.find("_expanded")
        && let Some(op) = single.get(&name[..i])
    {
        return op.clone();
    }
    let key: String = name
        .trim_start_matches("test_")
        .chars()
        .filter(|&c| c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    let mut known: Vec<&String> = single.values().collect();
    known.sort_by_key(|op| std::cmp::Reverse(op.len()));
    if let Some(op) = known
        .into_iter()
        .find(|op| key.starts_with(&op.to_lowercase()))
    {
        return op.clone();
    }
    ops.iter().cloned().collect::<Vec<_>>().join("+")
}

// ---------------------------------------------------------------------------------------
// The run

fn cases_dir() -> PathBuf {
    std::env::var_os("EDGECC_NODE_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::root().join("target/onnx-node-tests"))
}

fn pinned_onnx() -> String {
    let req = std::fs::read_to_string(common::root().join("scripts/requirements.txt")).unwrap();
    req.lines()
        .find_map(|l| l.trim().strip_prefix("onnx=="))
        .expect("scripts/requirements.txt pins onnx==VERSION")
        .trim()
        .to_string()
}

fn require_cross_tools() {
    for (tool, install) in [
        ("qemu-aarch64", "apt-get install qemu-user"),
        (
            "aarch64-linux-gnu-gcc",
            "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        ),
    ] {
        match Command::new(tool).arg("--version").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("`{tool} --version` failed ({}); {install}", o.status),
            Err(e) => panic!("`{tool}` is missing ({e}): the aarch64 sample needs it; {install}"),
        }
    }
}

/// Per engine: passed, failed (incl. panics), unsupported.
#[derive(Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    unsupported: usize,
}

impl Counts {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed(_) | Outcome::Panicked(_) => self.failed += 1,
            Outcome::Unsupported(_) => self.unsupported += 1,
        }
    }

    fn text(&self) -> String {
        format!(
            "{} passed, {} failed, {} unsupported",
            self.passed, self.failed, self.unsupported
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "passed": self.passed, "failed": self.failed, "unsupported": self.unsupported
        })
    }
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    serde_json::json!({ "result": o.label(), "reason": o.reason() })
}

#[test]
fn onnx_backend_node_tests() {
    let start = Instant::now();
    let dir = cases_dir();
    let generate = format!("python3 scripts/make_node_tests.py {}", dir.display());
    let stamp = std::fs::read_to_string(dir.join("STAMP")).unwrap_or_else(|e| {
        panic!(
            "the ONNX node tests are not at {} ({e}); generate them with\n    {generate}\n\
             (from the repository root, with the packages of scripts/requirements.txt), \
             or point EDGECC_NODE_TESTS at them",
            dir.display()
        )
    });
    let pinned = pinned_onnx();
    assert!(
        stamp.lines().next() == Some(&format!("onnx {pinned}")),
        "{} holds node tests of {:?}, but scripts/requirements.txt pins onnx=={pinned}; \
         regenerate them with\n    {generate}",
        dir.display(),
        stamp.lines().next()
    );
    let skipped = std::fs::read_to_string(dir.join("SKIPPED.txt")).unwrap_or_default();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() > 1000,
        "only {} cases in {}; regenerate them with\n    {generate}",
        names.len(),
        dir.display()
    );
    require_cross_tools();

    // Op types of every model first, so a multi-node case can count under its op.
    let models: Vec<Result<ModelProto, String>> = names
        .iter()
        .map(|n| edgecc::onnx::read(&dir.join(n).join("model.onnx")).map_err(|e| e.to_string()))
        .collect();
    let op_sets: Vec<BTreeSet<String>> = models
        .iter()
        .map(|m| match m {
            Ok(m) => m
                .graph
                .get_or_default()
                .node
                .iter()
                .map(|n| n.op_type.clone())
                .collect(),
            Err(_) => BTreeSet::new(),
        })
        .collect();
    let single: BTreeMap<String, String> = names
        .iter()
        .zip(&op_sets)
        .filter(|(_, ops)| ops.len() == 1)
        .map(|(n, ops)| (n.clone(), ops.iter().next().unwrap().clone()))
        .collect();

    // Interpreter and JIT, on a few threads; programs that lowered are kept for aarch64.
    install_panic_hook();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Run>>> = Mutex::new((0..names.len()).map(|_| None).collect());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= names.len() {
                        break;
                    }
                    let t0 = Instant::now();
                    let name = &names[i];
                    let op = case_op(name, &op_sets[i], &single);
                    let (interp, jit, program, loaded) = match &models[i] {
                        Err(e) => {
                            let o = Outcome::Failed(format!("decode: {e}"));
                            (o.clone(), o, None, None)
                        }
                        Ok(model) => match load(&dir.join(name), model) {
                            Err(o) => (o.clone(), o, None, None),
                            Ok(l) => {
                                let interp = run_interp(&l);
                                match compile(&l) {
                                    Err(o) => (interp, o, None, None),
                                    Ok(p) => {
                                        let jit = run_program("JIT", &p, &l, |p, b| {
                                            edgecc::run_target::run_jit(p, b)
                                        });
                                        (interp, jit, Some(p), Some(l))
                                    }
                                }
                            }
                        },
                    };
                    let r = CaseResult {
                        name: name.clone(),
                        op,
                        interp,
                        jit,
                        aarch64: None,
                        elapsed: t0.elapsed(),
                    };
                    results.lock().unwrap()[i] = Some((r, program, loaded));
                }
            });
        }
    });
    let mut runs: Vec<Run> = results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every case ran"))
        .collect();
    let host_time = start.elapsed();

    // The aarch64 sample: every AARCH64_EVERY-th case that passes on the interpreter and
    // lowers, in name order. One qemu run each, on the same threads.
    let target: edgecc_cranelift::Target = "aarch64-neon".parse().expect("aarch64 target");
    let sample: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, (r, p, _))| r.interp.passed() && p.is_some())
        .map(|(i, _)| i)
        .step_by(AARCH64_EVERY)
        .collect();
    let next = AtomicUsize::new(0);
    let cross: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= sample.len() {
                        break;
                    }
                    let i = sample[k];
                    let (_, p, l) = &runs[i];
                    let (p, l) = (p.as_ref().unwrap(), l.as_ref().unwrap());
                    let o = run_program("aarch64", p, l, |p, b| {
                        edgecc::run_target::run_cross(p, &target, b)
                    });
                    cross.lock().unwrap().push((i, o));
                }
            });
        }
    });
    for (i, o) in cross.into_inner().unwrap() {
        runs[i].0.aarch64 = Some(o);
    }
    let _ = std::panic::take_hook();
    let results: Vec<CaseResult> = runs.into_iter().map(|(r, _, _)| r).collect();
    let elapsed = start.elapsed();

    report(&results, &skipped, host_time, elapsed);
    ratchet(&results);
}

fn report(results: &[CaseResult], skipped: &str, host_time: Duration, elapsed: Duration) {
    let mut interp = Counts::default();
    let mut jit = Counts::default();
    let mut a64 = Counts::default();
    let mut per_op: BTreeMap<&str, (Counts, Counts)> = BTreeMap::new();
    for r in results {
        interp.add(&r.interp);
        jit.add(&r.jit);
        if let Some(o) = &r.aarch64 {
            a64.add(o);
        }
        let e = per_op.entry(&r.op).or_default();
        e.0.add(&r.interp);
        e.1.add(&r.jit);
    }
    let mut out = String::new();
    writeln!(out, "\n== ONNX backend node tests: per op type ==").unwrap();
    writeln!(
        out,
        "{:<34} {:>5} | {:>30} | {:>30}",
        "op", "cases", "interpreter (pass/fail/unsup)", "x86_64 JIT (pass/fail/unsup)"
    )
    .unwrap();
    let mut all_unsupported = Vec::new();
    for (op, (i, j)) in &per_op {
        let n = i.passed + i.failed + i.unsupported;
        if i.unsupported == n && j.unsupported == n {
            all_unsupported.push(format!("{op} ({n})"));
            continue;
        }
        writeln!(
            out,
            "{op:<34} {n:>5} | {:>30} | {:>30}",
            format!("{}/{}/{}", i.passed, i.failed, i.unsupported),
            format!("{}/{}/{}", j.passed, j.failed, j.unsupported)
        )
        .unwrap();
    }
    writeln!(
        out,
        "unsupported on both (op types, cases): {}",
        all_unsupported.join(", ")
    )
    .unwrap();

    // What blocks the most cases, by the first reason given (an op type and why).
    for (engine, pick) in [
        (
            "import",
            (|r: &CaseResult| &r.interp) as fn(&CaseResult) -> &Outcome,
        ),
        ("JIT (of interpreter-passing cases)", |r: &CaseResult| {
            &r.jit
        }),
    ] {
        let mut blockers: BTreeMap<String, usize> = BTreeMap::new();
        for r in results {
            if engine.starts_with("JIT") && !r.interp.passed() {
                continue;
            }
            if let Outcome::Unsupported(why) = pick(r) {
                let first = why.trim_start_matches("target: ");
                let first = first.split(", ").next().unwrap_or(first);
                *blockers.entry(clip(first, 90)).or_default() += 1;
            }
        }
        let mut top: Vec<(String, usize)> = blockers.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        writeln!(out, "\nmost common unsupported, {engine}:").unwrap();
        for (why, n) in top.iter().take(12) {
            writeln!(out, "  {n:>4} {why}").unwrap();
        }
    }

    let failed: Vec<&CaseResult> = results
        .iter()
        .filter(|r| {
            matches!(r.interp, Outcome::Failed(_))
                || matches!(r.jit, Outcome::Failed(_))
                || matches!(r.aarch64, Some(Outcome::Failed(_)))
        })
        .collect();
    if !failed.is_empty() {
        writeln!(out, "\n== FAILED ({}) ==", failed.len()).unwrap();
        for r in &failed {
            let mut lines: Vec<(String, &str)> = Vec::new();
            for (engine, o) in [
                ("interpreter", Some(&r.interp)),
                ("JIT", Some(&r.jit)),
                ("aarch64", r.aarch64.as_ref()),
            ] {
                if let Some(Outcome::Failed(why)) = o {
                    // The same reason on several engines (an import error) once.
                    match lines.iter_mut().find(|(_, w)| *w == why.as_str()) {
                        Some(l) => l.0 = format!("{}+{engine}", l.0),
                        None => lines.push((engine.to_string(), why)),
                    }
                }
            }
            for (engines, why) in lines {
                writeln!(out, "{} [{}] {engines}: {}", r.name, r.op, clip(why, 300)).unwrap();
            }
        }
    }
    let panicked: Vec<(&CaseResult, &str)> = results
        .iter()
        .flat_map(|r| {
            [Some(&r.interp), Some(&r.jit), r.aarch64.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(move |o| match o {
                    Outcome::Panicked(p) => Some((r, p.as_str())),
                    _ => None,
                })
        })
        .collect();
    if !panicked.is_empty() {
        writeln!(
            out,
            "\n!!!!!!!! {} PANICS IN EDGECC (bugs; counted as failed) !!!!!!!!",
            panicked.len()
        )
        .unwrap();
        for (r, p) in &panicked {
            writeln!(out, "PANIC {} [{}]: {p}", r.name, r.op).unwrap();
        }
    }
    let mut slow: Vec<&CaseResult> = results.iter().collect();
    slow.sort_by_key(|r| std::cmp::Reverse(r.elapsed));
    writeln!(out, "\nslowest cases:").unwrap();
    for r in slow.iter().take(5) {
        writeln!(out, "  {:>7.2?} {}", r.elapsed, r.name).unwrap();
    }
    let n_skipped = skipped.lines().filter(|l| !l.trim().is_empty()).count();
    writeln!(
        out,
        "\n== ONNX backend node tests: {} cases ==",
        results.len()
    )
    .unwrap();
    if n_skipped > 0 {
        writeln!(
            out,
            "{n_skipped} cases could not be written by make_node_tests.py (SKIPPED.txt):\n{skipped}"
        )
        .unwrap();
    }
    writeln!(out, "interpreter:        {}", interp.text()).unwrap();
    writeln!(out, "x86_64 JIT:         {}", jit.text()).unwrap();
    writeln!(
        out,
        "aarch64 (qemu, every {AARCH64_EVERY}th interpreter-passing case that lowers): {}",
        a64.text()
    )
    .unwrap();
    writeln!(
        out,
        "cases with shape-deciding inputs frozen to the data set's values (--freeze): {}",
        FROZEN_CASES.load(Ordering::Relaxed)
    )
    .unwrap();
    writeln!(
        out,
        "panics: {}; time: {:.1?} (host {:.1?})",
        panicked.len(),
        elapsed,
        host_time
    )
    .unwrap();
    // Straight to stderr: libtest's capture would hide the summary of a passing run.
    let _ = std::io::stderr().lock().write_all(out.as_bytes());

    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "op": r.op,
                "interpreter": outcome_json(&r.interp),
                "jit_x86_64": outcome_json(&r.jit),
                "aarch64": r.aarch64.as_ref().map(outcome_json),
                "passes": r.passes(),
                "ms": r.elapsed.as_secs_f64() * 1e3,
            })
        })
        .collect();
    let ops: serde_json::Map<String, serde_json::Value> = per_op
        .iter()
        .map(|(op, (i, j))| {
            (
                op.to_string(),
                serde_json::json!({ "interpreter": i.json(), "jit_x86_64": j.json() }),
            )
        })
        .collect();
    let json = serde_json::json!({
        "tolerance": { "rtol": RTOL, "atol": ATOL },
        "summary": {
            "cases": results.len(),
            "skipped_by_generator": n_skipped,
            "interpreter": interp.json(),
            "jit_x86_64": jit.json(),
            "aarch64_sample": a64.json(),
            "panics": panicked.len(),
            "seconds": elapsed.as_secs_f64(),
        },
        "per_op": ops,
        "cases": cases,
    });
    let path = common::root().join("target/conformance-report.json");
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _ = writeln!(std::io::stderr().lock(), "report: {}", path.display());
}

/// A line on stderr, past libtest's capture.
fn say(s: String) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

fn ratchet(results: &[CaseResult]) {
    let path = common::root().join("tests/conformance/passing.txt");
    let passing: BTreeSet<&str> = results
        .iter()
        .filter(|r| r.passes())
        .map(|r| r.name.as_str())
        .collect();
    if std::env::var("EDGECC_UPDATE_RATCHET").is_ok_and(|v| v == "1") {
        let text: String = passing.iter().map(|n| format!("{n}\n")).collect();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        say(format!(
            "ratchet: wrote {} passing cases to {}",
            passing.len(),
            path.display()
        ));
        return;
    }
    let listed_text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with EDGECC_UPDATE_RATCHET=1 cargo test -p edgecc-e2e --test conformance",
            path.display()
        )
    });
    let listed: BTreeSet<&str> = listed_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let by_name: BTreeMap<&str, &CaseResult> =
        results.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut regressions = Vec::new();
    for name in &listed {
        match by_name.get(name) {
            None => regressions.push(format!("{name}: no longer in the generated cases")),
            Some(r) if !r.passes() => {
                let why = [
                    ("interpreter", Some(&r.interp)),
                    ("JIT", Some(&r.jit)),
                    ("aarch64", r.aarch64.as_ref()),
                ]
                .into_iter()
                .filter_map(|(e, o)| {
                    o.filter(|o| !o.passed())
                        .map(|o| format!("{e} {}: {}", o.label(), o.reason().unwrap_or("")))
                })
                .collect::<Vec<_>>()
                .join("; ");
                regressions.push(format!("{name}: {why}"));
            }
            Some(_) => {}
        }
    }
    let new: Vec<&&str> = passing.iter().filter(|n| !listed.contains(*n)).collect();
    if !new.is_empty() {
        say(format!(
            "ratchet: {} cases pass that {} does not list (add them with \
             EDGECC_UPDATE_RATCHET=1 cargo test -p edgecc-e2e --test conformance):",
            new.len(),
            path.display()
        ));
        for n in &new {
            say(format!("  {n}"));
        }
    }
    assert!(
        regressions.is_empty(),
        "{} cases listed in {} no longer pass:\n{}",
        regressions.len(),
        path.display(),
        regressions.join("\n")
    );
    say(format!(
        "ratchet: all {} listed cases pass ({} pass in all)",
        listed.len(),
        passing.len()
    ));
}
