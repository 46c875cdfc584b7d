//! aarch64 guest instructions per inference, edgecc vs onnxruntime's aarch64 build, on an
//! emulated Cortex-A76 (or another `--cpu`).
//!
//!     cargo run --release -p edgecc-bench --bin a64insn -- [MODEL ...] [--k K] [--cpu CPU]
//!         [--target TARGET] [--work DIR] [--profile] [--disable-pass NAME ...]
//!
//! For each model: compiles the object for `--target` (default `aarch64-neon+dotprod`:
//! the Cortex-A76 has the dot-product extension, which only the int8 kernels use), links it statically with
//! `runtime/c/edgecc_harness.c` (run count as last argument), checks the outputs under
//! `qemu-aarch64` against the folder's `output_<i>.npy`, then runs the counting tool's
//! `count.py exe` on the harness and `count.py ort` on the model. `--profile` also splits
//! edgecc's count by function (one per kernel) with `bench/c/tbprof.c`, a qemu plugin.
//! `--disable-pass` compiles without the named passes, to measure what a pass buys.
//!
//! The counting tool is not part of this repository: it is looked up in
//! `$AARCH64_INSN_DIR`, else `../shared/aarch64-insn` beside the repository, and must have
//! been set up with its `setup.sh` (which installs to `$A64_HOME`).

use std::path::{Path, PathBuf};
use std::process::Command;

use edgecc_bench::{Case, DEFAULT_MODELS, Prepared, Result, parse_count_line, prepare};
use edgecc_cranelift::{ObjectOptions, Target};

const HARNESS_C: &str = edgecc_runtime::HARNESS_C;
const TBPROF_C: &str = include_str!("../../c/tbprof.c");

struct Args {
    models: Vec<String>,
    /// Passes left out of the pipeline (`--disable-pass`, repeatable).
    disable: Vec<String>,
    k: u32,
    cpu: String,
    /// The edgecc target the object is compiled for.
    target: String,
    work: PathBuf,
    profile: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        models: vec![],
        disable: vec![],
        k: 10,
        cpu: "cortex-a76".into(),
        target: "aarch64-neon+dotprod".into(),
        work: std::env::temp_dir().join("edgecc-bench-a64"),
        profile: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--k" => {
                a.k = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&k| k > 0)
                    .ok_or("--k needs a positive number")?
            }
            "--cpu" => a.cpu = it.next().ok_or("--cpu needs a qemu CPU model")?,
            "--target" => a.target = it.next().ok_or("--target needs a target")?,
            "--work" => a.work = it.next().ok_or("--work needs a directory")?.into(),
            "--profile" => a.profile = true,
            "-h" | "--help" => {
                return Err(
                    "usage: a64insn [MODEL ...] [--k K] [--cpu CPU] [--target TARGET] [--work DIR] [--profile] [--disable-pass NAME ...]"
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

/// The counting tool's directory, with a clear message when it is missing.
fn tool_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("AARCH64_INSN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| edgecc_bench::workspace_root().join("../shared/aarch64-insn"));
    if !dir.join("count.py").exists() {
        return Err(format!(
            "the aarch64 instruction counter (count.py) is not in {}.\n\
             It is not part of edgecc: point AARCH64_INSN_DIR at its folder and run its \
             setup.sh once (see docs/benchmarks.md).",
            dir.display()
        ));
    }
    Ok(dir)
}

/// `$A64_HOME` as count.py computes it.
fn a64_home() -> PathBuf {
    std::env::var_os("A64_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/aarch64-insn")
        })
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}):\n{}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The linked harness and the arguments before the run count.
struct Built {
    exe: PathBuf,
    args: Vec<PathBuf>,
    outputs: Vec<PathBuf>,
    text_bytes: u64,
}

fn build(p: &Prepared, dir: &Path, target: &str) -> Result<Built> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let target: Target = target.parse().map_err(|e| format!("{e}"))?;
    let obj = edgecc_cranelift::compile_object(p.program(), &target, &ObjectOptions::default())
        .map_err(|e| e.to_string())?;
    let name = p.case.c_name();
    let obj_path = dir.join(format!("{name}.o"));
    write(&obj_path, &obj.bytes)?;
    let c = dir.join("edgecc_harness.c");
    write(&c, HARNESS_C)?;
    let exe = dir.join(format!("{name}_bench"));
    run(Command::new("aarch64-linux-gnu-gcc")
        .args(["-static", "-O2"])
        .arg(format!("-DEDGECC_MODEL={name}_model"))
        .arg("-o")
        .arg(&exe)
        .arg(&c)
        .arg(&obj_path))?;
    let mut args = Vec::new();
    for (i, b) in p.inputs.iter().enumerate() {
        let f = dir.join(format!("in{i}.bin"));
        write(&f, b)?;
        args.push(f);
    }
    args.push("--".into());
    let outputs: Vec<PathBuf> = (0..p.program().outputs.len())
        .map(|i| dir.join(format!("out{i}.bin")))
        .collect();
    args.extend(outputs.iter().cloned());
    Ok(Built {
        exe,
        args,
        outputs,
        text_bytes: obj.text_bytes,
    })
}

/// Runs the harness once under the system's qemu-aarch64 and compares with the reference.
fn check(p: &Prepared, b: &Built) -> Result<Option<f32>> {
    run(Command::new("qemu-aarch64")
        .arg(&b.exe)
        .args(&b.args)
        .arg("2"))?;
    let outs = b
        .outputs
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| format!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>>>()?;
    p.max_abs_error(&outs)
}

fn count(tool: &Path, a: &Args, what: &[&std::ffi::OsStr]) -> Result<f64> {
    let out = run(Command::new("python3")
        .arg(tool.join("count.py"))
        .args(["--k", &a.k.to_string(), "--cpu", &a.cpu])
        .args(what))?;
    parse_count_line(&out).ok_or_else(|| format!("count.py printed no count:\n{out}"))
}

/// Builds the per-translation-block counting plugin beside the counter's qemu.
fn build_tbprof(work: &Path) -> Result<PathBuf> {
    let src = work.join("tbprof.c");
    write(&src, TBPROF_C)?;
    let so = work.join("libtbprof.so");
    let include = a64_home().join("qemu/qemu-7.2.0/include/qemu");
    if !include.join("qemu-plugin.h").exists() {
        return Err(format!(
            "{}: no qemu-plugin.h (run the counter's setup.sh)",
            include.display()
        ));
    }
    run(Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg("-I")
        .arg(&include)
        .arg(&src))?;
    Ok(so)
}

/// Guest instructions executed per function symbol of `exe` for `runs` runs.
fn profile_once(
    plugin: &Path,
    a: &Args,
    b: &Built,
    runs: u32,
    out: &Path,
) -> Result<Vec<(u64, u64)>> {
    let qemu = a64_home().join("qemu/build/qemu-aarch64");
    let mut arg = std::ffi::OsString::from(plugin);
    arg.push(",out=");
    arg.push(out);
    run(Command::new(qemu)
        .args(["-cpu", &a.cpu, "-plugin"])
        .arg(arg)
        .arg(&b.exe)
        .args(&b.args)
        .arg(runs.to_string()))?;
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let pc = u64::from_str_radix(f.next()?.trim_start_matches("0x"), 16).ok()?;
            let n: u64 = f.next()?.parse().ok()?;
            Some((pc, n))
        })
        .collect())
}

/// Per-function instructions per inference: (1+K runs − 1 run) / K, attributed by `nm`.
fn profile(plugin: &Path, a: &Args, b: &Built, dir: &Path) -> Result<Vec<(String, f64)>> {
    let nm = run(Command::new("aarch64-linux-gnu-nm")
        .args(["-n", "--defined-only"])
        .arg(&b.exe))?;
    let mut syms: Vec<(u64, String)> = nm
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.next()?;
            matches!(kind, "t" | "T" | "W" | "w").then(|| (addr, name.to_string()))
        })
        .collect();
    syms.sort();
    let attribute = |blocks: Vec<(u64, u64)>| {
        let mut per: std::collections::BTreeMap<String, f64> = Default::default();
        for (pc, n) in blocks {
            let i = syms.partition_point(|(a, _)| *a <= pc);
            let name = if i == 0 { "?" } else { syms[i - 1].1.as_str() };
            *per.entry(name.to_string()).or_default() += n as f64;
        }
        per
    };
    let one = attribute(profile_once(plugin, a, b, 1, &dir.join("tb1.txt"))?);
    let many = attribute(profile_once(plugin, a, b, 1 + a.k, &dir.join("tbk.txt"))?);
    let mut rows: Vec<(String, f64)> = many
        .into_iter()
        .map(|(n, c)| {
            let d = (c - one.get(&n).copied().unwrap_or(0.0)) / a.k as f64;
            (n, d)
        })
        .filter(|(_, d)| *d >= 0.5)
        .collect();
    rows.sort_by(|x, y| y.1.total_cmp(&x.1));
    Ok(rows)
}

/// onnxruntime's count for an Identity model on the model's first input (see
/// `bench/ort_time.py --identity`), or `None` when that cannot be made.
fn ort_floor(tool: &Path, a: &Args, p: &Prepared, dir: &Path) -> Result<Option<f64>> {
    let (Some(name), Some(input)) = (p.input_names.first(), p.case.inputs.first()) else {
        return Ok(None);
    };
    let model = dir.join("identity.onnx");
    let script = edgecc_bench::workspace_root().join("bench/ort_time.py");
    let made = Command::new("python3")
        .arg(&script)
        .args(["--identity", name])
        .arg(input)
        .arg(&model)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !made.success() {
        eprintln!("no Identity model (is the onnx package installed?): no ORT floor");
        return Ok(None);
    }
    let spec = format!("{name}={}", input.display());
    let what: Vec<&std::ffi::OsStr> = vec![
        "ort".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        spec.as_ref(),
    ];
    count(tool, a, &what).map(Some)
}

struct Row {
    name: String,
    edgecc: f64,
    ort: f64,
    /// The same count for a one-node Identity model on the first input: what a call to
    /// `sess.run` from Python costs before any kernel runs. `None` without `onnx`.
    ort_floor: Option<f64>,
    text_bytes: u64,
    max_err: Option<f32>,
    profile: Vec<(String, f64)>,
}

fn bench(tool: &Path, plugin: Option<&Path>, a: &Args, m: &str) -> Result<Row> {
    let case = Case::find(m)?;
    let p = prepare(&case, &a.disable)?;
    let dir = a.work.join(&case.name);
    let b = build(&p, &dir, &a.target)?;
    let max_err = check(&p, &b)?;
    let mut what: Vec<&std::ffi::OsStr> = vec!["exe".as_ref(), b.exe.as_os_str()];
    what.extend(b.args.iter().map(|x| x.as_os_str()));
    let edgecc = count(tool, a, &what)?;
    eprintln!("{m}: edgecc {edgecc:.0} instructions per inference");
    let specs: Vec<String> = p
        .input_names
        .iter()
        .zip(&case.inputs)
        .map(|(n, f)| format!("{n}={}", f.display()))
        .collect();
    let mut what: Vec<&std::ffi::OsStr> = vec!["ort".as_ref(), case.model.as_os_str()];
    for s in &specs {
        what.push("--input".as_ref());
        what.push(s.as_ref());
    }
    let ort = count(tool, a, &what)?;
    eprintln!("{m}: onnxruntime {ort:.0} instructions per inference");
    let ort_floor = ort_floor(tool, a, &p, &dir)?;
    let profile = match plugin {
        Some(pl) => profile(pl, a, &b, &dir)?,
        None => vec![],
    };
    Ok(Row {
        name: case.name,
        edgecc,
        ort,
        ort_floor,
        text_bytes: b.text_bytes,
        max_err,
        profile,
    })
}

fn main() {
    let res = (|| -> Result<(Args, Vec<Row>)> {
        let a = parse_args()?;
        let tool = tool_dir()?;
        std::fs::create_dir_all(&a.work).map_err(|e| format!("{}: {e}", a.work.display()))?;
        let plugin = if a.profile {
            Some(build_tbprof(&a.work)?)
        } else {
            None
        };
        let mut rows = Vec::new();
        for m in &a.models {
            rows.push(bench(&tool, plugin.as_deref(), &a, m).map_err(|e| format!("{m}: {e}"))?);
        }
        Ok((a, rows))
    })();
    let (a, rows) = match res {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!(
        "\naarch64 guest instructions per inference on qemu {} (count.py, k={}):\n",
        a.cpu, a.k
    );
    println!(
        "| model | edgecc | onnxruntime (aarch64 wheel, 1 thread) | edgecc/ORT | \
         ORT per-call floor (Identity) | edgecc/(ORT − floor) | edgecc code bytes | \
         max abs err vs reference |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (floor, net) = match r.ort_floor {
            Some(f) => (format!("{f:.0}"), format!("{:.3}", r.edgecc / (r.ort - f))),
            None => ("–".into(), "–".into()),
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} |",
            r.name,
            r.edgecc,
            r.ort,
            r.edgecc / r.ort,
            floor,
            net,
            r.text_bytes,
            r.max_err
                .map(|e| format!("{e:.1e}"))
                .unwrap_or_else(|| "–".into()),
        );
    }
    for r in rows.iter().filter(|r| !r.profile.is_empty()) {
        let total: f64 = r.profile.iter().map(|(_, n)| n).sum();
        println!(
            "\n{}: edgecc instructions per inference by function:\n",
            r.name
        );
        println!("| function | instructions | share |");
        println!("|---|---:|---:|");
        for (name, n) in &r.profile {
            println!("| `{name}` | {n:.0} | {:.1} % |", 100.0 * n / total);
        }
    }
}
