//! Running a program on Hexagon for real: the emitted C and a freestanding harness,
//! compiled by clang-19 and linked by ld.lld into a static ELF that qemu-hexagon runs.
//! `edgecc run --target hexagon` and the tests use this.
//!
//! There is no Hexagon libc on the machines we run on, so the harness ([`HARNESS_C`])
//! brings its own `_start` and makes the Linux system calls itself. Inputs go in on stdin
//! and outputs come back on stdout, as raw bytes in descriptor order, so nothing about
//! the model is compiled into the harness but a few sizes from `model.h`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edgecc_program::Program;

use crate::Error;
use crate::artifact::header;
use crate::run_target::tool;
use crate::target::Hexagon;

/// The Debian packages of the tools this module runs.
pub const INSTALL: &str = "apt-get install clang-19 lld-19 qemu-user";

/// The harness's own exit statuses, apart from the model's (0, a kernel's positive
/// status, or a negative `EDGECC_ERR_*` of the checked call, as its low 8 bits).
const EXIT_SHORT_INPUT: i32 = 120;
const EXIT_IO_SIZE: i32 = 121;
const EXIT_WRITE: i32 = 122;

/// The harness: reads every input's bytes from stdin (fd 0), runs the model through
/// `edgecc_run_checked` with a static 128-byte-aligned arena, writes every output's bytes
/// to stdout (fd 1) and exits with the status. Built with
/// `-DEDGECC_MODEL=<name>_model -DEDGECC_ARENA_SIZE=<NAME>_ARENA_SIZE` (the macro from
/// `model.h`), `-DEDGECC_IO_BYTES=` (all inputs and outputs, each rounded up to 128
/// bytes) and `-DEDGECC_MAX_IO=` (how many there are).
pub const HARNESS_C: &str = r#"/* edgecc's harness for a Hexagon build under qemu-hexagon (edgecc run --target hexagon).
 * Freestanding: _start is here and the Linux system calls go through trap0(#1), number in
 * r6, arguments in r0-r2 (asm-generic numbers: read 63, write 64, exit 93). */
#include "model.h"

#if !defined(EDGECC_MODEL) || !defined(EDGECC_ARENA_SIZE) || !defined(EDGECC_IO_BYTES) \
    || !defined(EDGECC_MAX_IO)
#error "define EDGECC_MODEL, EDGECC_ARENA_SIZE, EDGECC_IO_BYTES and EDGECC_MAX_IO"
#endif

#define EXIT_SHORT_INPUT 120
#define EXIT_IO_SIZE 121
#define EXIT_WRITE 122

static long sys(long n, long a, long b, long c) {
    register long r0 asm("r0") = a;
    register long r1 asm("r1") = b;
    register long r2 asm("r2") = c;
    register long r6 asm("r6") = n;
    asm volatile("trap0(#1)" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r6) : "memory");
    return r0;
}

/* One spare byte each, so that a model without an arena or I/O still declares arrays. */
static uint8_t arena[EDGECC_ARENA_SIZE + 1u] __attribute__((aligned(128)));
static uint8_t io[EDGECC_IO_BYTES + 1u] __attribute__((aligned(128)));
static const void *ins[EDGECC_MAX_IO + 1u];
static void *outs[EDGECC_MAX_IO + 1u];

static __attribute__((noreturn)) void finish(int32_t status) {
    sys(93, status, 0, 0);
    for (;;) {
    }
}

/* The next n bytes of the I/O buffer, 128-byte aligned; NULL if they do not fit. */
static uint8_t *take(uint64_t *used, uint64_t n) {
    uint64_t step = (n + 127u) & ~(uint64_t)127u;
    uint8_t *p = io + *used;
    if (n > (uint64_t)EDGECC_IO_BYTES || step > (uint64_t)EDGECC_IO_BYTES - *used)
        return 0;
    *used += step;
    return p;
}

/* Reads (nr 63) or writes (nr 64) exactly n bytes, however the kernel splits them. */
static int transfer(long nr, long fd, uint8_t *p, uint64_t n) {
    while (n > 0) {
        long k = sys(nr, fd, (long)p, (long)n);
        if (k <= 0)
            return 1;
        p += k;
        n -= (uint64_t)k;
    }
    return 0;
}

void _start(void) {
    const edgecc_model_desc *m = &EDGECC_MODEL;
    uint64_t used = 0;
    uint32_t i;
    int32_t st;
    if (m->magic != EDGECC_ABI_MAGIC || m->abi_version != EDGECC_ABI_VERSION)
        finish(EDGECC_ERR_ABI);
    if (m->num_inputs > EDGECC_MAX_IO || m->num_outputs > EDGECC_MAX_IO - m->num_inputs)
        finish(EXIT_IO_SIZE);
    for (i = 0; i < m->num_inputs; i++) {
        uint8_t *p = take(&used, m->inputs[i].byte_size);
        if (p == 0)
            finish(EXIT_IO_SIZE);
        if (transfer(63, 0, p, m->inputs[i].byte_size))
            finish(EXIT_SHORT_INPUT);
        ins[i] = p;
    }
    for (i = 0; i < m->num_outputs; i++) {
        uint8_t *p = take(&used, m->outputs[i].byte_size);
        if (p == 0)
            finish(EXIT_IO_SIZE);
        outs[i] = p;
    }
    st = edgecc_run_checked(m, ins, m->num_inputs, outs, m->num_outputs, arena, EDGECC_ARENA_SIZE);
    if (st != 0)
        finish(st);
    for (i = 0; i < m->num_outputs; i++)
        if (transfer(64, 1, outs[i], m->outputs[i].byte_size))
            finish(EXIT_WRITE);
    finish(0);
}
"#;

/// Bytes of the harness's I/O buffer: every input and output, each rounded up to 128.
fn io_bytes(program: &Program) -> u64 {
    let all = program.inputs.iter().chain(&program.outputs);
    all.map(|t| t.byte_size().next_multiple_of(128)).sum()
}

/// Writes `model.c`, `model.h` and the harness into `dir` and links them into a static
/// ELF for `target` with clang-19 and ld.lld. Returns the ELF's path.
pub fn build(program: &Program, target: &Hexagon, dir: &Path) -> Result<PathBuf, Error> {
    let c = target.emit_c(program)?;
    let files = [
        ("model.c", c),
        (
            "model.h",
            header::header(program, "edgecc run", &target.to_string()),
        ),
        ("edgecc_harness.c", HARNESS_C.to_string()),
    ];
    for (name, text) in &files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    let up = program.name.to_uppercase();
    let exe = dir.join("model.elf");
    tool(
        Command::new("clang-19")
            .current_dir(dir)
            .args(target.clang_flags())
            .args([
                "-O2",
                "-ffreestanding",
                "-nostdlib",
                "-fuse-ld=lld",
                "-static",
            ])
            .arg(format!("-DEDGECC_MODEL={}_model", program.name))
            .arg(format!("-DEDGECC_ARENA_SIZE={up}_ARENA_SIZE"))
            .arg(format!("-DEDGECC_IO_BYTES={}u", io_bytes(program)))
            .arg(format!(
                "-DEDGECC_MAX_IO={}u",
                program.inputs.len() + program.outputs.len()
            ))
            .args(["edgecc_harness.c", "model.c", "-o"])
            .arg(&exe),
        "clang-19",
        INSTALL,
    )
    .map_err(|e| match e {
        // clang runs but finds no ld.lld: name the package that has it.
        Error::Target(m) if m.contains("ld.lld") || m.contains("-fuse-ld=lld") => Error::Target(
            format!("{m}\nthe Hexagon link needs ld.lld from lld-19; install it with `{INSTALL}`"),
        ),
        e => e,
    })?;
    Ok(exe)
}

/// Refuses a core qemu-hexagon cannot run (v68 and later), with the names that run.
pub fn check_runnable(target: &Hexagon) -> Result<(), Error> {
    if target.arch.runs_under_qemu() {
        return Ok(());
    }
    Err(Error::Target(format!(
        "qemu-hexagon runs only v66 and v67 code; run with --target hexagon-v66 or \
         hexagon-v67 (hexagon-{cpu} code can still be compiled: edgecc compile --target \
         hexagon-{cpu})",
        cpu = target.arch.cpu()
    )))
}

/// Builds `program` for `target`, runs it once under qemu-hexagon with `inputs` (raw bytes
/// in descriptor order) and returns the outputs' bytes.
pub fn run(program: &Program, target: &Hexagon, inputs: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, Error> {
    check_runnable(target)?;
    let sizes_match = inputs.len() == program.inputs.len()
        && program
            .inputs
            .iter()
            .zip(inputs)
            .all(|(t, b)| t.byte_size() == b.len() as u64);
    if !sizes_match {
        return Err(Error::Input(format!(
            "{} input buffer(s) do not match the model's {} input(s) and their sizes",
            inputs.len(),
            program.inputs.len()
        )));
    }
    let dir = tempfile::tempdir().map_err(|e| Error::io("temporary directory", e))?;
    let exe = build(program, target, dir.path())?;
    let mut child = Command::new("qemu-hexagon")
        .arg(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Target(format!(
                "cannot run `qemu-hexagon` ({e}); install it with `{INSTALL}`"
            ))
        })?;
    let stdin = child.stdin.take();
    let out = std::thread::scope(|s| {
        // Written from a second thread: a model with large outputs could otherwise fill
        // the stdout pipe while we still write its inputs.
        s.spawn(move || {
            if let Some(mut w) = stdin {
                for b in inputs {
                    // A harness that exits early closes the pipe; its status says why.
                    if w.write_all(b).is_err() {
                        break;
                    }
                }
            }
        });
        child.wait_with_output()
    })
    .map_err(|e| Error::io("qemu-hexagon", e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(code) => {
            let why = match code {
                EXIT_SHORT_INPUT => "standard input ended before the inputs were complete".into(),
                EXIT_IO_SIZE => "the inputs and outputs do not fit the harness's buffer".into(),
                EXIT_WRITE => "writing the outputs to standard output failed".into(),
                // The low 8 bits of the model's status, as a signed byte (-2 arena size...).
                _ => format!("the model returned status {}", code as u8 as i8),
            };
            return Err(Error::Target(format!(
                "{target} under qemu-hexagon: {why} (exit status {code}){}{stderr}",
                if stderr.is_empty() { "" } else { "\n" }
            )));
        }
        None => {
            return Err(Error::Target(format!(
                "{target} under qemu-hexagon: killed ({}){}{stderr}",
                out.status,
                if stderr.is_empty() { "" } else { "\n" }
            )));
        }
    }
    let want: u64 = program.outputs.iter().map(|o| o.byte_size()).sum();
    if out.stdout.len() as u64 != want {
        return Err(Error::Target(format!(
            "{target} under qemu-hexagon wrote {} bytes of output, expected {want}",
            out.stdout.len()
        )));
    }
    let mut rest = out.stdout.as_slice();
    Ok(program
        .outputs
        .iter()
        .map(|o| {
            let (head, tail) = rest.split_at(o.byte_size() as usize);
            rest = tail;
            head.to_vec()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::HexagonArch;
    use edgecc_hexagon::Hvx;
    use edgecc_program::{Buffer, Const, ConstId, DType, IoTensor, Kernel};

    /// Gathers 2 of 10 floats by the i32 indices in the input; index 10 is out of range,
    /// so the kernel returns status 1 (`STATUS_INDEX_OUT_OF_RANGE`).
    fn gather() -> Program {
        let io = |name: &str, dtype, n| IoTensor {
            name: name.into(),
            dtype,
            shape: vec![n],
        };
        Program {
            name: "g".into(),
            inputs: vec![io("idx", DType::I32, 2)],
            outputs: vec![io("y", DType::F32, 2)],
            arena_size: 0,
            arena_align: 64,
            consts: vec![Const {
                name: "table".into(),
                dtype: DType::F32,
                shape: vec![10],
                data: (0..10).flat_map(|i| (i as f32).to_le_bytes()).collect(),
            }],
            kernels: vec![Kernel::Gather {
                outer: 1,
                axis_len: 10,
                inner: 1,
                count: 2,
                elem_bytes: 4,
                data: Buffer::Const(ConstId(0)),
                indices: Buffer::Input(0),
                index_bytes: 4,
                output: Buffer::Output(0),
                elementwise: false,
            }],
        }
    }

    fn indices(v: [i32; 2]) -> Vec<Vec<u8>> {
        vec![v.iter().flat_map(|i| i.to_le_bytes()).collect()]
    }

    const V66: Hexagon = Hexagon {
        arch: HexagonArch::V66,
        hvx: Hvx::B128,
    };

    #[test]
    fn hexagon_harness_returns_outputs_and_reports_the_model_status() {
        let p = gather();
        let out = run(&p, &V66, &indices([7, 2])).unwrap();
        let want: Vec<u8> = [7f32, 2.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        assert_eq!(out, [want]);
        let e = run(&p, &V66, &indices([3, 10])).unwrap_err().to_string();
        assert!(e.contains("the model returned status 1"), "{e}");
        let e = run(&p, &V66, &[vec![0; 4]]).unwrap_err().to_string();
        assert!(e.contains("do not match"), "{e}");
        let v68 = Hexagon {
            arch: HexagonArch::V68,
            hvx: Hvx::Off,
        };
        let e = run(&p, &v68, &indices([0, 0])).unwrap_err().to_string();
        assert!(e.contains("only v66 and v67"), "{e}");
    }

    /// The harness's own failure: stdin that ends before the inputs are complete.
    #[test]
    fn hexagon_harness_exits_120_on_short_input() {
        let dir = tempfile::tempdir().unwrap();
        let exe = build(&gather(), &V66, dir.path()).unwrap();
        let mut child = Command::new("qemu-hexagon")
            .arg(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("qemu-hexagon ({e}); install: {INSTALL}"));
        child.stdin.take().unwrap().write_all(&[1, 0, 0]).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(EXIT_SHORT_INPUT));
        assert!(out.stdout.is_empty());
    }
}
