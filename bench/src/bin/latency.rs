//! x86_64 latency of edgecc's JIT-compiled models side by side with onnxruntime, in one run.
//!
//!     cargo run --release -p edgecc-bench --bin latency -- [MODEL ...] [--runs N]
//!         [--warmup W] [--rounds R] [--python PY] [--disable-pass NAME ...]
//!
//! MODEL is a folder with `model.onnx` and `input_<i>.npy`, or a name under
//! `examples/models/` (default: `edgecc_bench::DEFAULT_MODELS`, the small models and the
//! encoders). Each round times N edgecc runs
//! (after W warm-up runs) through `edgecc_runtime::Model::run`, then spawns
//! `bench/ort_time.py` for the same model, input and N; the table keeps each side's lowest
//! per-round median, which filters out rounds disturbed by other work on the machine.
//! Both sides run on one thread. `--disable-pass` compiles without the named passes (as
//! `edgecc compile --disable-pass`), to measure what a pass buys.

use std::process::Command;
use std::time::Instant;

use edgecc::run_target::AlignedArena;
use edgecc_bench::{Case, DEFAULT_MODELS, Prepared, Result, human_bytes, median, prepare};
use edgecc_cranelift::{ObjectOptions, Target};
use serde_json::Value;

struct Args {
    models: Vec<String>,
    /// Passes left out of the pipeline (`--disable-pass`, repeatable).
    disable: Vec<String>,
    runs: usize,
    warmup: usize,
    rounds: usize,
    python: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        models: vec![],
        disable: vec![],
        runs: 2000,
        warmup: 200,
        rounds: 3,
        python: "python3".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        let mut num = |what: &str| -> Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number"))
        };
        match s.as_str() {
            "--runs" => a.runs = num("--runs")?.max(1),
            "--warmup" => a.warmup = num("--warmup")?,
            "--rounds" => a.rounds = num("--rounds")?.max(1),
            "--python" => a.python = it.next().ok_or("--python needs a program")?,
            "-h" | "--help" => {
                return Err(
                    "usage: latency [MODEL ...] [--runs N] [--warmup W] [--rounds R] [--python PY] [--disable-pass NAME ...]"
                        .into(),
                );
            }
            "--disable-pass" => a
                .disable
                .push(it.next().ok_or("--disable-pass needs a pass name")?),
            _ if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => a.models.push(s),
        }
    }
    if a.models.is_empty() {
        a.models = DEFAULT_MODELS.iter().map(|s| s.to_string()).collect();
    }
    Ok(a)
}

/// Median seconds per edgecc inference over `runs` timed calls.
fn time_edgecc(
    model: &edgecc_runtime::Model,
    p: &Prepared,
    runs: usize,
    warmup: usize,
) -> Result<f64> {
    let prog = p.program();
    let mut arena = AlignedArena::new(prog.arena_size as usize, prog.arena_align as usize);
    let mut outs = p.output_buffers();
    let ins: Vec<&[u8]> = p.inputs.iter().map(|b| b.as_slice()).collect();
    let mut out_refs: Vec<&mut [u8]> = outs.iter_mut().map(|b| b.as_mut_slice()).collect();
    let arena = arena.as_mut_slice();
    let err = |e: edgecc_runtime::Error| format!("{}: run failed: {e:?}", p.case.name);
    for _ in 0..warmup {
        model.run(&ins, &mut out_refs, arena).map_err(err)?;
    }
    let mut ts = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        model.run(&ins, &mut out_refs, arena).map_err(err)?;
        ts.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(&mut ts))
}

struct OrtTimes {
    run: f64,
    iobinding: f64,
    floor_iobinding: Option<f64>,
    version: String,
}

fn time_ort(a: &Args, case: &Case) -> Result<OrtTimes> {
    let script = edgecc_bench::workspace_root().join("bench/ort_time.py");
    let out = Command::new(&a.python)
        .arg(&script)
        .arg(&case.model)
        .args(&case.inputs)
        .arg(a.runs.to_string())
        .arg("--warmup")
        .arg(a.warmup.to_string())
        .output()
        .map_err(|e| format!("cannot run {} {}: {e}", a.python, script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{}: bad JSON ({e})", script.display()))?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    Ok(OrtTimes {
        run: f("median_s").ok_or("median_s missing")?,
        iobinding: f("iobinding_median_s").ok_or("iobinding_median_s missing")?,
        floor_iobinding: f("floor_iobinding_s"),
        version: v
            .get("ort_version")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
    })
}

struct Row {
    name: String,
    edgecc: f64,
    ort: OrtTimes,
    front_ms: f64,
    jit_ms: f64,
    text_jit: u64,
    text_x64: u64,
    text_a64: u64,
    const_bytes: u64,
    arena: u64,
    lower_bound: u64,
    heuristic: &'static str,
    max_err: Option<f32>,
}

fn bench(a: &Args, name: &str) -> Result<Row> {
    let case = Case::find(name)?;
    let p = prepare(&case, &a.disable)?;
    let prog = p.program();

    let t0 = Instant::now();
    let jit = edgecc_cranelift::compile_jit(prog).map_err(|e| e.to_string())?;
    let jit_ms = t0.elapsed().as_secs_f64() * 1e3;
    let model = edgecc_runtime::Model::new(jit.desc()).map_err(|e| format!("{e:?}"))?;

    let obj = |t: &str| -> Result<edgecc_cranelift::CompiledObject> {
        let target: Target = t.parse().map_err(|e| format!("{t}: {e}"))?;
        edgecc_cranelift::compile_object(prog, &target, &ObjectOptions::default())
            .map_err(|e| e.to_string())
    };
    let x64 = obj("x86_64")?;
    let a64 = obj("aarch64-neon")?;

    // Correctness first: the timed code must compute the reference outputs.
    let mut outs = p.output_buffers();
    {
        let ins: Vec<&[u8]> = p.inputs.iter().map(|b| b.as_slice()).collect();
        let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|b| b.as_mut_slice()).collect();
        let mut arena = AlignedArena::new(prog.arena_size as usize, prog.arena_align as usize);
        model
            .run(&ins, &mut refs, arena.as_mut_slice())
            .map_err(|e| format!("{e:?}"))?;
    }
    let max_err = p.max_abs_error(&outs)?;

    let mut best_e = f64::INFINITY;
    let mut best_o: Option<OrtTimes> = None;
    for r in 0..a.rounds {
        let e = time_edgecc(&model, &p, a.runs, a.warmup)?;
        let o = time_ort(a, &case)?;
        eprintln!(
            "{name} round {}: edgecc {:.2} µs, onnxruntime {:.2} µs (iobinding {:.2} µs)",
            r + 1,
            e * 1e6,
            o.run * 1e6,
            o.iobinding * 1e6
        );
        best_e = best_e.min(e);
        best_o = Some(match best_o {
            None => o,
            Some(b) => OrtTimes {
                run: b.run.min(o.run),
                iobinding: b.iobinding.min(o.iobinding),
                floor_iobinding: match (b.floor_iobinding, o.floor_iobinding) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
                version: o.version,
            },
        });
    }
    Ok(Row {
        name: case.name.clone(),
        edgecc: best_e,
        ort: best_o.expect("at least one round"),
        front_ms: p.front_time.as_secs_f64() * 1e3,
        jit_ms,
        text_jit: jit.text_bytes(),
        text_x64: x64.text_bytes,
        text_a64: a64.text_bytes,
        const_bytes: a64.const_bytes,
        arena: prog.arena_size,
        lower_bound: p.compiled.lowered.arena_lower_bound,
        heuristic: p.compiled.lowered.arena_heuristic,
        max_err,
    })
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut rows = Vec::new();
    for m in &a.models {
        match bench(&a, m) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("{m}: {e}");
                std::process::exit(1);
            }
        }
    }
    let us = |s: f64| format!("{:.2}", s * 1e6);
    println!(
        "\nx86_64 latency, one thread, median of {} runs after {} warm-up, best of {} rounds \
         (onnxruntime {}):\n",
        a.runs,
        a.warmup,
        a.rounds,
        rows.first().map(|r| r.ort.version.as_str()).unwrap_or("?")
    );
    println!(
        "| model | edgecc µs | onnxruntime µs (sess.run) | onnxruntime µs (IOBinding) | \
         ORT per-call floor µs (Identity, IOBinding) | edgecc/ORT (sess.run) | edgecc/ORT (IOBinding) | \
         edgecc/(ORT IOBinding − floor) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {} |",
            r.name,
            us(r.edgecc),
            us(r.ort.run),
            us(r.ort.iobinding),
            r.ort.floor_iobinding.map(us).unwrap_or_else(|| "–".into()),
            r.edgecc / r.ort.run,
            r.edgecc / r.ort.iobinding,
            match r.ort.floor_iobinding {
                Some(f) if r.ort.iobinding > f =>
                    format!("{:.3}", r.edgecc / (r.ort.iobinding - f)),
                _ => "–".into(),
            },
        );
    }
    println!("\nCompilation and sizes:\n");
    println!(
        "| model | front end + lowering ms | JIT ms | code bytes (JIT, host ISA) | code bytes x86_64 | \
         code bytes aarch64-neon | constants | arena | arena lower bound | arena/bound | heuristic | \
         max abs err vs ORT reference |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in &rows {
        let ratio = if r.lower_bound > 0 {
            format!("{:.2}", r.arena as f64 / r.lower_bound as f64)
        } else {
            "–".into()
        };
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.front_ms,
            r.jit_ms,
            r.text_jit,
            r.text_x64,
            r.text_a64,
            human_bytes(r.const_bytes),
            r.arena,
            r.lower_bound,
            ratio,
            r.heuristic,
            r.max_err
                .map(|e| format!("{e:.1e}"))
                .unwrap_or_else(|| "–".into()),
        );
    }
}
