//! The harness the qemu tests share: a program builder, the freestanding C harness, and
//! the build-and-run under qemu-hexagon. The tools are required: a missing clang-19 or
//! qemu-hexagon fails with the install command.

#![allow(dead_code)]

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use edgecc_hexagon::{Hvx, Options};
use edgecc_program::{Buffer, Const, ConstId, DType, IoTensor, Program, Requant, Window};

pub const INSTALL: &str =
    "apt-get install -y clang-19 lld-19 qemu-user (or scripts/install-deps.sh)";

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Builds a program incrementally: inputs, outputs, constants and kernels.
pub struct Builder {
    pub p: Program,
    pub inputs: Vec<Vec<u8>>,
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            p: Program {
                name: "m".into(),
                inputs: vec![],
                outputs: vec![],
                arena_size: 0,
                arena_align: 64,
                consts: vec![],
                kernels: vec![],
            },
            inputs: vec![],
        }
    }
    pub fn input(&mut self, dtype: DType, data: Vec<u8>) -> Buffer {
        let n = data.len() / dtype.size();
        self.p.inputs.push(IoTensor {
            name: format!("in{}", self.p.inputs.len()),
            dtype,
            shape: vec![n as u64],
        });
        self.inputs.push(data);
        Buffer::Input(self.p.inputs.len() as u32 - 1)
    }
    pub fn output(&mut self, dtype: DType, n: u64) -> Buffer {
        self.p.outputs.push(IoTensor {
            name: format!("out{}", self.p.outputs.len()),
            dtype,
            shape: vec![n],
        });
        Buffer::Output(self.p.outputs.len() as u32 - 1)
    }
    pub fn konst(&mut self, dtype: DType, data: Vec<u8>) -> ConstId {
        let n = data.len() / dtype.size();
        self.p.consts.push(Const {
            name: format!("k{}", self.p.consts.len()),
            dtype,
            shape: vec![n as u64],
            data,
        });
        ConstId(self.p.consts.len() as u32 - 1)
    }
    pub fn arena(&mut self, bytes: u64) -> Buffer {
        let offset = self.p.arena_size;
        self.p.arena_size += bytes.next_multiple_of(64);
        Buffer::Arena { offset }
    }
}

pub fn requant(
    rng: &mut Rng,
    dtype: DType,
    channels: u32,
    per_channel: bool,
    relu: bool,
) -> Requant {
    let n = if per_channel { channels as usize } else { 1 };
    let (lo, hi) = if dtype == DType::U8 {
        (0, 255)
    } else {
        (-128, 127)
    };
    let zp = rng.range(lo as i64 + 10, hi as i64 - 10) as i32;
    Requant {
        dtype,
        multiplier: (0..n)
            .map(|_| rng.range(1 << 20, (1 << 31) - 1) as i32)
            .collect(),
        shift: rng.range(26, 34) as u32,
        zero_point: zp,
        lo: if relu { zp } else { lo },
        hi,
    }
}

pub fn i32_bytes(rng: &mut Rng, n: usize, span: i64) -> Vec<u8> {
    (0..n)
        .flat_map(|_| (rng.range(-span, span) as i32).to_le_bytes())
        .collect()
}

/// Runs `b`'s program under qemu-hexagon and with the executor; returns both outputs.
pub fn run_both(b: &Builder, tag: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (got, status) = run_qemu(b, tag);
    assert_eq!(status, 0, "status");
    let p = &b.p;
    let ins: Vec<&[u8]> = b.inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = p
        .outputs
        .iter()
        .map(|t| vec![0; t.byte_size() as usize])
        .collect();
    let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let mut arena = vec![0u8; p.arena_size as usize];
    edgecc_program::exec::run(p, &ins, &mut refs, &mut arena).expect("exec");
    (got, outs)
}

/// Runs `b`'s program under qemu-hexagon twice, emitted with HVX and as plain C, asserts
/// that both builds agree, and returns the outputs and the status `m_run` returned.
pub fn run_qemu(b: &Builder, tag: &str) -> (Vec<Vec<u8>>, i32) {
    let hvx = run_qemu_with(b, &format!("{tag}-hvx"), Hvx::B128);
    let plain = run_qemu_with(b, &format!("{tag}-plain"), Hvx::Off);
    assert_eq!(
        hvx.1, plain.1,
        "HVX and plain-C builds return different statuses"
    );
    for (i, (h, c)) in hvx.0.iter().zip(&plain.0).enumerate() {
        assert!(h == c, "output {i}: HVX and plain-C builds differ");
    }
    hvx
}

/// Emits `b`'s program with `hvx`, compiles it (v67 linked and run; v66, v68 and v73
/// compiled only; plain C without `-mhvx`) and runs it under qemu-hexagon.
pub fn run_qemu_with(b: &Builder, tag: &str, hvx: Hvx) -> (Vec<Vec<u8>>, i32) {
    let p = &b.p;
    let opts = Options { hvx };
    let c = edgecc_hexagon::emit_c(p, &opts).expect("emit_c");
    let c2 = edgecc_hexagon::emit_c(p, &opts).expect("emit_c");
    assert_eq!(c, c2, "emission is deterministic");
    let dir = std::env::temp_dir().join(format!("edgecc-hexagon-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.c"), &c).unwrap();
    std::fs::write(dir.join("harness.c"), harness(b)).unwrap();
    // The compiler's own model.h: the C file must satisfy the same ABI as the other targets.
    let h = edgecc::artifact::header::header(p, "test", "hexagon");
    std::fs::write(dir.join("m.h"), h).unwrap();
    // Compile-only builds for the CPUs qemu cannot run, in parallel with the v67 link.
    std::thread::scope(|scope| {
        for cpu in ["v66", "v68", "v73"] {
            let dir = &dir;
            scope.spawn(move || {
                compile(
                    dir,
                    cpu,
                    hvx,
                    &["-c", "model.c", "-o", &format!("model-{cpu}.o")],
                )
            });
        }
        compile(
            &dir,
            "v67",
            hvx,
            &[
                "-fuse-ld=lld",
                "-static",
                "harness.c",
                "model.c",
                "-o",
                "test.elf",
            ],
        );
    });
    let out = Command::new("qemu-hexagon")
        .arg(dir.join("test.elf"))
        .output()
        .unwrap_or_else(|e| panic!("qemu-hexagon not runnable ({e}); install: {INSTALL}"));
    assert!(out.status.success(), "qemu run failed: {:?}", out);
    let mut got = vec![];
    let mut pos = 0;
    for t in &p.outputs {
        let n = t.byte_size() as usize;
        got.push(out.stdout[pos..pos + n].to_vec());
        pos += n;
    }
    let status = out.stdout[pos..].to_vec();
    assert_eq!(status.len(), 4, "harness writes the status last");
    // EDGECC_HEXAGON_KEEP=1 keeps the C, the harness and the ELF for inspection.
    if std::env::var_os("EDGECC_HEXAGON_KEEP").is_some() {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    (got, i32::from_le_bytes(status.try_into().unwrap()))
}

pub fn compile(dir: &Path, cpu: &str, hvx: Hvx, rest: &[&str]) {
    let vector: &[&str] = match hvx {
        Hvx::B128 => &["-mhvx", "-mhvx-length=128b"],
        Hvx::Off => &[],
    };
    let out = Command::new("clang-19")
        .current_dir(dir)
        .args(["--target=hexagon", &format!("-m{cpu}")])
        .args(vector)
        .args([
            "-O2",
            "-ffreestanding",
            "-nostdlib",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .args(rest)
        .output()
        .unwrap_or_else(|e| panic!("clang-19 not runnable ({e}); install: {INSTALL}"));
    assert!(
        out.status.success(),
        "clang-19 -m{cpu} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The freestanding harness: `_start`, the inputs as arrays, one aligned arena, the
/// outputs then the status written to stdout through `trap0`.
pub fn harness(b: &Builder) -> String {
    let p = &b.p;
    let mut s = String::from(
        "#include \"m.h\"\n\
         static long sys(long n, long a, long b, long c) {\n\
         register long r0 asm(\"r0\") = a; register long r1 asm(\"r1\") = b;\n\
         register long r2 asm(\"r2\") = c; register long r6 asm(\"r6\") = n;\n\
         asm volatile(\"trap0(#1)\" : \"+r\"(r0) : \"r\"(r1), \"r\"(r2), \"r\"(r6) : \"memory\");\n\
         return r0;\n}\n",
    );
    for (i, d) in b.inputs.iter().enumerate() {
        let _ = write!(
            s,
            "static const uint8_t in{i}[{}] __attribute__((aligned(128))) = {{",
            d.len().max(1)
        );
        for x in d {
            let _ = write!(s, "{x},");
        }
        s.push_str("};\n");
    }
    for (i, t) in p.outputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "static uint8_t out{i}[{}] __attribute__((aligned(128)));",
            t.byte_size().max(1)
        );
    }
    let _ = writeln!(
        s,
        "static uint8_t arena[{}] __attribute__((aligned(128)));",
        p.arena_size.max(1)
    );
    let list = |pre: &str, n: usize| {
        (0..n)
            .map(|i| format!("{pre}{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        s,
        "static const void *const ins[] = {{ {} 0 }};\nstatic void *const outs[] = {{ {} 0 }};",
        if b.inputs.is_empty() {
            String::new()
        } else {
            list("in", b.inputs.len()) + ","
        },
        if p.outputs.is_empty() {
            String::new()
        } else {
            list("out", p.outputs.len()) + ","
        },
    );
    let sizes: Vec<String> = p
        .outputs
        .iter()
        .map(|t| format!("{}u", t.byte_size()))
        .collect();
    let _ = writeln!(
        s,
        "static const uint64_t sizes[] = {{ {} 0 }};",
        sizes.iter().map(|x| format!("{x},")).collect::<String>()
    );
    s.push_str(
        "void _start(void) {\n    int32_t st = m_run(ins, outs, arena);\n\
         /* The descriptor model.h declares (m_run_checked itself needs a 64-bit modulo,\n\
            __hexagon_umoddi3, that freestanding Hexagon links lack). */\n\
         if (m_model.magic != EDGECC_ABI_MAGIC || m_model.abi_version != EDGECC_ABI_VERSION\n\
             || m_model.arena_size != M_ARENA_SIZE || m_model.num_inputs != M_NUM_INPUTS\n\
             || m_model.num_outputs != M_NUM_OUTPUTS || m_model.run != m_run) st = -100;\n\
         for (uint32_t i = 0; i < M_NUM_OUTPUTS; i++)\n\
             if (m_model.outputs[i].byte_size != sizes[i]) st = -101;\n",
    );
    for (i, t) in p.outputs.iter().enumerate() {
        let _ = writeln!(s, "    sys(64, 1, (long)out{i}, {});", t.byte_size());
    }
    s.push_str("    sys(64, 1, (long)&st, 4);\n    sys(93, 0, 0, 0);\n    for (;;) {}\n}\n");
    s
}

/// Bytes equal, except that any NaN equals any NaN in f32 outputs: Hexagon's float
/// arithmetic returns its default NaN (all ones, 0xffffffff) instead of propagating the
/// input's payload as x86 does. Every other float bit pattern must match exactly.
pub fn assert_same(p: &Program, got: &[Vec<u8>], want: &[Vec<u8>]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if p.outputs[i].dtype == DType::F32 && g.len() == w.len() {
            let f = |b: &[u8]| -> Vec<Option<u32>> {
                b.chunks_exact(4)
                    .map(|c| {
                        let x = f32::from_le_bytes(c.try_into().unwrap());
                        (!x.is_nan()).then_some(x.to_bits())
                    })
                    .collect()
            };
            assert_eq!(f(g), f(w), "output {i} differs from the executor");
        } else {
            assert_eq!(g, w, "output {i} differs from the executor");
        }
    }
}

/// A window from (kh, kw), strides, dilations and pads (top, left, bottom, right).
pub fn window(k: (u32, u32), s: (u32, u32), d: (u32, u32), pad: (u32, u32, u32, u32)) -> Window {
    Window {
        kh: k.0,
        kw: k.1,
        stride_h: s.0,
        stride_w: s.1,
        dilation_h: d.0,
        dilation_w: d.1,
        pad_top: pad.0,
        pad_left: pad.1,
        pad_bottom: pad.2,
        pad_right: pad.3,
    }
}

/// The output size of a window along one axis (input `i`, kernel `k`, stride, dilation,
/// pads).
pub fn out_size(i: u32, k: u32, s: u32, d: u32, p0: u32, p1: u32) -> u32 {
    (i + p0 + p1 - d * (k - 1) - 1) / s + 1
}
