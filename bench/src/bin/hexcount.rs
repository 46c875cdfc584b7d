//! Hexagon: code size and guest packets and instructions per inference, HVX vs plain C,
//! under qemu-hexagon.
//!
//!     cargo run --release -p edgecc-bench --bin hexcount -- [MODEL ...] [--work DIR]
//!
//! For each model: emits the C twice (`--hvx 128` and `--hvx off`), builds each for v67
//! with the `edgecc run --target hexagon` harness, runs each under qemu-hexagon with a
//! counting plugin (`bench/c/hexinsn.c`, built here with `cc`), checks both builds give
//! the same outputs and reports the largest error against the folder's onnxruntime
//! outputs. A packet is up to four instructions issued together, so packets are the
//! closest to cycles qemu offers; instructions are counted from each packet's
//! disassembly. Sizes come from `llvm-size-19` on the model's object alone (`-c`, no
//! harness): `.text` is code, `.rodata` the weights and tables (the HVX build's are
//! repacked: GEMM columns padded to 32, convolution taps to 4).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edgecc::target::{Hexagon, HexagonArch};
use edgecc_bench::{Case, Prepared, Result, prepare};
use edgecc_hexagon::Hvx;

const DEFAULT: &[&str] = &[
    "digits_cnn_qdq",
    "digits_cnn_qoperator",
    "cnn_qdq",
    "cnn_qoperator",
    "encoder_qdq",
];

fn main() {
    if let Err(e) = run() {
        eprintln!("hexcount: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut models = vec![];
    let mut work = std::env::temp_dir().join("edgecc-bench-hexagon");
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--work" => work = it.next().ok_or("--work needs a directory")?.into(),
            "-h" | "--help" => return Err("usage: hexcount [MODEL ...] [--work DIR]".into()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ => models.push(a),
        }
    }
    if models.is_empty() {
        models = DEFAULT.iter().map(|s| s.to_string()).collect();
    }
    let plugin = plugin(&work)?;
    println!(
        "| model | .text HVX | .text plain | .rodata HVX | .rodata plain | packets HVX | packets plain | plain/HVX | instructions HVX | instructions plain | plain/HVX | max abs err vs ORT |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in &models {
        let case = Case::find(m)?;
        let p = prepare(&case, &[])?;
        match measure(&p, &plugin, &work.join(&case.name)) {
            Ok(r) => println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1}x | {} | {} | {:.1}x | {} |",
                case.name,
                r.text[0],
                r.text[1],
                r.rodata[0],
                r.rodata[1],
                r.counts[0].packets,
                r.counts[1].packets,
                r.counts[1].packets as f64 / r.counts[0].packets as f64,
                r.counts[0].instructions,
                r.counts[1].instructions,
                r.counts[1].instructions as f64 / r.counts[0].instructions as f64,
                r.err.map_or("-".into(), |e| format!("{e:.2e}")),
            ),
            Err(e) => println!("| {} | {} |", case.name, e.replace('\n', " ")),
        }
    }
    Ok(())
}

struct Report {
    /// HVX, plain.
    text: [u64; 2],
    rodata: [u64; 2],
    counts: [Counts; 2],
    err: Option<f32>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    packets: u64,
    instructions: u64,
}

fn measure(p: &Prepared, plugin: &Path, dir: &Path) -> Result<Report> {
    let mut text = [0; 2];
    let mut rodata = [0; 2];
    let mut counts = [Counts::default(); 2];
    let mut outputs = vec![];
    for (i, hvx) in [Hvx::B128, Hvx::Off].into_iter().enumerate() {
        let target = Hexagon {
            arch: HexagonArch::V67,
            hvx,
        };
        let d = dir.join(if hvx == Hvx::Off { "plain" } else { "hvx" });
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let exe =
            edgecc::run_hexagon::build(p.program(), &target, &d).map_err(|e| e.to_string())?;
        let (t, r) = size(&d, &target)?;
        text[i] = t;
        rodata[i] = r;
        let (outs, n) = count(&exe, plugin, &p.inputs, p.program())?;
        counts[i] = n;
        outputs.push(outs);
    }
    if outputs[0] != outputs[1] {
        return Err("HVX and plain-C outputs differ".into());
    }
    let mut split = vec![];
    let mut at = 0;
    for t in &p.program().outputs {
        let n = t.byte_size() as usize;
        split.push(outputs[0][at..at + n].to_vec());
        at += n;
    }
    let err = p.max_abs_error(&split)?;
    Ok(Report {
        text,
        rodata,
        counts,
        err,
    })
}

/// `.text` and `.rodata` bytes of `model.c` compiled alone.
fn size(dir: &Path, target: &Hexagon) -> Result<(u64, u64)> {
    let obj = dir.join("model.o");
    let st = Command::new("clang-19")
        .current_dir(dir)
        .args(target.clang_flags())
        .args(["-O2", "-ffreestanding", "-c", "model.c", "-o"])
        .arg(&obj)
        .status()
        .map_err(|e| format!("clang-19: {e}"))?;
    if !st.success() {
        return Err("clang-19 -c model.c failed".into());
    }
    let out = Command::new("llvm-size-19")
        .args(["-A"])
        .arg(&obj)
        .output()
        .map_err(|e| format!("llvm-size-19: {e} (apt-get install llvm-19)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let section = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    Ok((section(".text"), section(".rodata")))
}

/// Builds the counting plugin (`bench/c/hexinsn.c`) into `dir` with the host's `cc`.
fn plugin(dir: &Path) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/hexinsn.c");
    let so = dir.join("hexinsn.so");
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let st = Command::new("cc")
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&so)
        .arg(&src)
        .status()
        .map_err(|e| format!("cc: {e}"))?;
    if !st.success() {
        return Err("cc bench/c/hexinsn.c failed".into());
    }
    Ok(so)
}

/// Runs `exe` once under qemu-hexagon with the counting plugin; returns the outputs and
/// the packets and instructions executed (the whole process, harness included: its I/O
/// loops are a few hundred packets).
fn count(
    exe: &Path,
    plugin: &Path,
    inputs: &[Vec<u8>],
    p: &edgecc_program::Program,
) -> Result<(Vec<u8>, Counts)> {
    let log = exe.with_extension("counts");
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new("qemu-hexagon")
        .arg("-plugin")
        .arg(plugin)
        .args(["-d", "plugin", "-D"])
        .arg(&log)
        .arg(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qemu-hexagon: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            for b in inputs {
                if stdin.write_all(b).is_err() {
                    break;
                }
            }
        });
        child.wait_with_output().map_err(|e| e.to_string())
    })?;
    if !out.status.success() {
        return Err(format!("the harness exited with {}", out.status));
    }
    let want: u64 = p.outputs.iter().map(|t| t.byte_size()).sum();
    if out.stdout.len() as u64 != want {
        return Err("the harness wrote the wrong number of output bytes".into());
    }
    let text = std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let field = |name: &str| -> Option<u64> {
        let mut w = text.split_whitespace();
        w.position(|x| x == name)?;
        w.next()?.parse().ok()
    };
    match (field("packets"), field("instructions")) {
        (Some(packets), Some(instructions)) => Ok((
            out.stdout,
            Counts {
                packets,
                instructions,
            },
        )),
        _ => Err(format!("no counts in {}", log.display())),
    }
}
