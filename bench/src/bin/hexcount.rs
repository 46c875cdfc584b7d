//! Hexagon: code size and guest packets per inference, HVX vs plain C, under qemu-hexagon.
//!
//!     cargo run --release -p edgecc-bench --bin hexcount -- [MODEL ...] [--work DIR]
//!
//! For each model: emits the C twice (`--hvx 128` and `--hvx off`), builds each for v67
//! with the `edgecc run --target hexagon` harness, checks both give the same outputs (and
//! reports the largest error against the folder's onnxruntime outputs), then runs each
//! once more under `qemu-hexagon -singlestep -d exec,nochain`, which logs one line per
//! executed translation block; with `-singlestep` a block is one packet (up to four
//! instructions issued together), so the count is packets per inference, the closest
//! to cycles qemu offers. Sizes come from `llvm-size-19` on the model's object alone
//! (`-c`, no harness): `.text` is code, `.rodata` the weights and tables (the HVX build's
//! are repacked: GEMM columns padded to 32, convolution taps to 4).

use std::io::{BufRead, BufReader, Write};
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
    println!(
        "| model | .text HVX | .text plain | .rodata HVX | .rodata plain | packets HVX | packets plain | plain/HVX | max abs err vs ORT |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in &models {
        let case = Case::find(m)?;
        let p = prepare(&case, &[])?;
        match measure(&p, &work.join(&case.name)) {
            Ok(r) => println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1}x | {} |",
                case.name,
                r.text[0],
                r.text[1],
                r.rodata[0],
                r.rodata[1],
                r.packets[0],
                r.packets[1],
                r.packets[1] as f64 / r.packets[0] as f64,
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
    packets: [u64; 2],
    err: Option<f32>,
}

fn measure(p: &Prepared, dir: &Path) -> Result<Report> {
    let mut text = [0; 2];
    let mut rodata = [0; 2];
    let mut packets = [0; 2];
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
        let (outs, n) = count(&exe, &p.inputs, p.program())?;
        packets[i] = n;
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
        packets,
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

/// Runs `exe` once under qemu-hexagon with the packet trace; returns the outputs and the
/// number of packets executed (the whole process, harness included: its I/O loops are
/// a few hundred packets).
fn count(exe: &Path, inputs: &[Vec<u8>], p: &edgecc_program::Program) -> Result<(Vec<u8>, u64)> {
    let fifo: PathBuf = exe.with_extension("trace");
    let _ = std::fs::remove_file(&fifo);
    let st = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map_err(|e| format!("mkfifo: {e}"))?;
    if !st.success() {
        return Err("mkfifo failed".into());
    }
    let mut child = Command::new("qemu-hexagon")
        .args(["-singlestep", "-d", "exec,nochain", "-D"])
        .arg(&fifo)
        .arg(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qemu-hexagon: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let (outs, n) = std::thread::scope(|s| {
        let counter = s.spawn(|| -> Result<u64> {
            let f = std::fs::File::open(&fifo).map_err(|e| e.to_string())?;
            let mut n = 0;
            for line in BufReader::with_capacity(1 << 20, f).split(b'\n') {
                if line.map_err(|e| e.to_string())?.starts_with(b"Trace") {
                    n += 1;
                }
            }
            Ok(n)
        });
        s.spawn(move || {
            for b in inputs {
                if stdin.write_all(b).is_err() {
                    break;
                }
            }
        });
        let out = child.wait_with_output().map_err(|e| e.to_string());
        (out, counter.join().expect("counter thread"))
    });
    let out = outs?;
    let _ = std::fs::remove_file(&fifo);
    if !out.status.success() {
        return Err(format!("the harness exited with {}", out.status));
    }
    let want: u64 = p.outputs.iter().map(|t| t.byte_size()).sum();
    if out.stdout.len() as u64 != want {
        return Err("the harness wrote the wrong number of output bytes".into());
    }
    Ok((out.stdout, n?))
}
