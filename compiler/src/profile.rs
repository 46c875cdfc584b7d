//! `edgecc run --profile`: the time of every kernel of the compiled program on the host,
//! in the user's terms (the graph nodes each kernel computes), with a summary per kernel
//! kind — what onnxruntime's profiler gives its users, for edgecc's code.
//!
//! Kernels are timed one call at a time through the JIT (each kernel is its own function;
//! see `edgecc_cranelift::JitKernel`), in program order, for several whole inferences; the
//! median of each is reported next to the median of the entry point itself, so the
//! timer's own cost shows as the gap between the two totals.

use std::fmt;
use std::time::{Duration, Instant};

use edgecc_program::{Kernel, Program};

use crate::Error;
use crate::run_target::HostIo;

/// One kernel's line of a profile.
pub struct KernelTime {
    pub kind: &'static str,
    /// The graph nodes it computes.
    pub nodes: String,
    /// Its sizes, e.g. `b1 128x384x1536` for a GEMM.
    pub shape: String,
    /// Floating-point operations per call (multiply and add counted apart) for GEMMs and
    /// convolutions, 0 for the rest.
    pub flops: u64,
    pub median: Duration,
}

pub struct Profile {
    pub kernels: Vec<KernelTime>,
    /// Median time of one whole inference through the entry point (no per-kernel timer).
    pub run_median: Duration,
    pub runs: usize,
}

fn target_err(e: impl fmt::Display) -> Error {
    Error::Target(e.to_string())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The sizes and work of one kernel, for reports.
fn describe(k: &Kernel) -> (String, u64) {
    let dims = |s: &[u64]| {
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    };
    match k {
        Kernel::Gemm {
            batch, m, n, k: kk, ..
        } => (
            format!("b{batch} {m}x{n}x{kk}"),
            2 * *batch as u64 * *m as u64 * *n as u64 * *kk as u64,
        ),
        Kernel::Conv {
            c_in,
            c_out,
            groups,
            spatial: s,
            window: w,
            ..
        } => (
            format!(
                "{c_in}->{c_out} g{groups} {}x{} -> {}x{} k{}x{} s{}",
                s.in_h, s.in_w, s.out_h, s.out_w, w.kh, w.kw, w.stride_w
            ),
            2 * s.n as u64
                * s.out_h as u64
                * s.out_w as u64
                * *c_out as u64
                * (*c_in / (*groups).max(1)) as u64
                * w.kh as u64
                * w.kw as u64,
        ),
        Kernel::QGemm { m, n, k: kk, .. } => (
            format!("{m}x{n}x{kk} int8"),
            2 * *m as u64 * *n as u64 * *kk as u64,
        ),
        Kernel::QConv {
            c_in,
            c_out,
            groups,
            spatial: s,
            window: w,
            ..
        } => (
            format!(
                "{c_in}->{c_out} g{groups} {}x{} -> {}x{} k{}x{} s{} int8",
                s.in_h, s.in_w, s.out_h, s.out_w, w.kh, w.kw, w.stride_w
            ),
            2 * s.n as u64
                * s.out_h as u64
                * s.out_w as u64
                * *c_out as u64
                * (*c_in / (*groups).max(1)) as u64
                * w.kh as u64
                * w.kw as u64,
        ),
        Kernel::Pool {
            channels,
            spatial: s,
            window: w,
            ..
        } => (
            format!(
                "{channels}x{}x{} k{}x{} s{}",
                s.in_h, s.in_w, w.kh, w.kw, w.stride_w
            ),
            0,
        ),
        Kernel::Elementwise { shape, expr, .. } => {
            (format!("{} ({} ops)", dims(shape), expr.len()), 0)
        }
        Kernel::Softmax {
            outer, len, inner, ..
        }
        | Kernel::Reduce {
            outer, len, inner, ..
        } => (format!("{outer}x[{len}]x{inner}"), 0),
        Kernel::LayerNorm { outer, len, .. } => (format!("{outer}x[{len}]"), 0),
        Kernel::Copy { bytes, .. } => (format!("{bytes} B"), 0),
        Kernel::Gather {
            outer,
            axis_len,
            inner,
            count,
            ..
        } => (format!("{count} of {outer}x[{axis_len}]x{inner}"), 0),
        Kernel::Convert {
            count, from, to, ..
        } => (format!("{count} {}->{}", from.name(), to.name()), 0),
        Kernel::Compare {
            shape, op, dtype, ..
        } => (format!("{} {op:?} {}", dims(shape), dtype.name()), 0),
        Kernel::Logic { shape, op, .. } => (format!("{} {op:?}", dims(shape)), 0),
        Kernel::QBinary { shape, q, .. } => (format!("{} {:?} int8", dims(shape), q.op), 0),
        Kernel::IntElementwise {
            shape, op, dtype, ..
        } => (format!("{} {op:?} {}", dims(shape), dtype.name()), 0),
        Kernel::CumSum {
            outer,
            len,
            inner,
            dtype,
            ..
        } => (format!("{outer}x[{len}]x{inner} {}", dtype.name()), 0),
        Kernel::Select {
            shape, elem_bytes, ..
        } => (format!("{} of {elem_bytes} B", dims(shape)), 0),
    }
}

/// Compiles `program` for the host and times each kernel over `runs` inferences (after
/// one checked warm-up run). `kernel_nodes` names each kernel's graph nodes
/// ([`crate::lower::Lowered::kernel_nodes`]).
pub fn profile_jit(
    program: &Program,
    kernel_nodes: &[String],
    inputs: &[Vec<u8>],
    runs: usize,
) -> Result<Profile, Error> {
    let runs = runs.max(1);
    let jit = edgecc_cranelift::compile_jit(program).map_err(target_err)?;
    let model = edgecc_runtime::Model::new(jit.desc()).map_err(target_err)?;
    let mut io = HostIo::new(program);

    // The checked call validates every buffer and fills in the pointer arrays that the
    // kernels take; the timed calls below reuse exactly those.
    let mut whole = Vec::with_capacity(runs);
    for _ in 0..=runs {
        let t = Instant::now();
        io.run(&model, inputs)?;
        whole.push(t.elapsed());
    }
    whole.remove(0);
    let (in_ptrs, out_ptrs, arena_ptr) = io.pointers();

    let kernels = jit.kernels();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); kernels.len()];
    for _ in 0..runs {
        for (k, t) in kernels.iter().zip(times.iter_mut()) {
            let start = Instant::now();
            // SAFETY: the pointers are those the checked run just above validated and
            // passed to the entry point, still backed by `inputs` and `io`; kernels run
            // in program order, as the entry point runs them.
            let status = unsafe { k.call(in_ptrs, out_ptrs, arena_ptr) };
            t.push(start.elapsed());
            if status != 0 {
                return Err(Error::Target(format!(
                    "kernel returned status {status} while profiling"
                )));
            }
        }
    }
    let kernels = program
        .kernels
        .iter()
        .zip(times.iter_mut())
        .enumerate()
        .map(|(i, (k, t))| {
            let (shape, flops) = describe(k);
            KernelTime {
                kind: k.name(),
                nodes: kernel_nodes.get(i).cloned().unwrap_or_default(),
                shape,
                flops,
                median: median(t),
            }
        })
        .collect();
    Ok(Profile {
        kernels,
        run_median: median(&mut whole),
        runs,
    })
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: Duration = self.kernels.iter().map(|k| k.median).sum();
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12);
        writeln!(
            f,
            "{:>4}  {:<11} {:>10} {:>6} {:>8}  {:<28} nodes",
            "#", "kernel", "median us", "%", "GFLOP/s", "shape"
        )?;
        for (i, k) in self.kernels.iter().enumerate() {
            let gflops = if k.flops > 0 && !k.median.is_zero() {
                format!("{:.1}", k.flops as f64 / k.median.as_secs_f64() / 1e9)
            } else {
                String::new()
            };
            writeln!(
                f,
                "{i:>4}  {:<11} {:>10.2} {:>6.1} {:>8}  {:<28} {}",
                k.kind,
                us(k.median),
                pct(k.median),
                gflops,
                k.shape,
                k.nodes
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<11} {:>6} {:>10} {:>6} {:>8}",
            "by kind", "count", "us", "%", "GFLOP/s"
        )?;
        let mut kinds: Vec<&'static str> = self.kernels.iter().map(|k| k.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let mut rows: Vec<(&str, usize, Duration, u64)> = kinds
            .into_iter()
            .map(|kind| {
                let ks = self.kernels.iter().filter(|k| k.kind == kind);
                let (n, d, fl) = ks.fold((0, Duration::ZERO, 0), |(n, d, fl), k| {
                    (n + 1, d + k.median, fl + k.flops)
                });
                (kind, n, d, fl)
            })
            .collect();
        rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
        for (kind, n, d, fl) in rows {
            let gflops = if fl > 0 && !d.is_zero() {
                format!("{:.1}", fl as f64 / d.as_secs_f64() / 1e9)
            } else {
                String::new()
            };
            writeln!(
                f,
                "{kind:<11} {n:>6} {:>10.2} {:>6.1} {gflops:>8}",
                us(d),
                pct(d)
            )?;
        }
        writeln!(f)?;
        write!(
            f,
            "sum of kernel medians {:.2} us; whole inference median {:.2} us ({} runs)",
            us(total),
            us(self.run_median),
            self.runs
        )?;
        writeln!(f)
    }
}
