//! Object files as artifacts: determinism, a `.so` loaded through the runtime, and an
//! aarch64 build that really runs (static C harness under `qemu-aarch64`).
//!
//! The network mixes every kernel; tolerance `atol = rtol = 3e-5`: GEMM/conv sums of at
//! most 32 terms reassociated (~32·eps), then the exp polynomial (< 3e-7 relative)
//! through tanh and softmax.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use edgecc_cranelift::{ObjectOptions, Target, compile_object, emit_clif, link_shared};

const TOL: f32 = 3e-5;

#[test]
fn object_is_deterministic() {
    let p = network();
    for t in ["x86_64", "aarch64-neon"] {
        let target: Target = t.parse().unwrap();
        let a = compile_object(&p, &target, &ObjectOptions::default()).unwrap();
        let b = compile_object(&p, &target, &ObjectOptions::default()).unwrap();
        assert!(a.bytes == b.bytes, "{t}: two compiles differ");
        println!(
            "{t}: {} bytes of code, {} bytes of constants, object {} bytes",
            a.text_bytes,
            a.const_bytes,
            a.bytes.len()
        );
        assert!(a.text_bytes > 0 && a.const_bytes >= (8 * 27 + 8 * 9 + 320 + 10 + 8) * 4);
    }
}

/// Generated code must call nothing (no libm, no memcpy, no `fmaf` from a missing FMA
/// flag): the objects have no undefined symbols, on every target.
#[test]
fn objects_import_nothing() {
    let p = network();
    let dir = scratch_dir("nm");
    for t in [
        "x86_64",
        "x86_64+avx+fma",
        "aarch64-neon",
        "aarch64-unknown-none",
    ] {
        let obj = compile_object(&p, &t.parse().unwrap(), &ObjectOptions::default()).unwrap();
        let o = dir.join("net.o");
        std::fs::write(&o, &obj.bytes).unwrap();
        let out = Command::new("nm")
            .arg("-u")
            .arg(&o)
            .output()
            .expect("nm (binutils) is required");
        assert!(out.status.success());
        let undefined = String::from_utf8_lossy(&out.stdout);
        assert!(
            undefined.trim().is_empty(),
            "{t}: undefined symbols:\n{undefined}"
        );
        let defined = String::from_utf8_lossy(&Command::new("nm").arg(&o).output().unwrap().stdout)
            .to_string();
        assert!(
            defined.contains(" T net_run")
                && (defined.contains(" R net_model") || defined.contains(" D net_model")),
            "{t}: {defined}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The baseline x86_64 target (SSE4.2, no AVX/FMA: `fmul`+`fadd`, `maxps` patterns) runs
/// correctly as a `.so` on this host.
#[test]
fn baseline_x86_64_shared_object() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let p = network();
    let target: Target = "x86_64".parse().unwrap();
    let obj = compile_object(&p, &target, &ObjectOptions::default()).unwrap();
    let dir = scratch_dir("so-base");
    let (o, so) = (dir.join("net.o"), dir.join("libnet.so"));
    std::fs::write(&o, &obj.bytes).unwrap();
    link_shared(&o, &so, &target).unwrap();
    // SAFETY: the library is the artifact just built; it has no initialisers.
    let lib = unsafe { edgecc_runtime::dylib::Library::open(&so, "net") }.unwrap();
    let ins = inputs_for(&p, 5);
    let got = run_desc(lib.model().unwrap().desc(), &p, &ins);
    assert_close(
        &got,
        &run_exec(&p, &ins),
        TOL,
        TOL,
        "network via baseline x86_64 .so",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shared_object_through_runtime_loader() {
    let p = network();
    let target = Target::host().unwrap();
    let obj = compile_object(
        &p,
        &target,
        &ObjectOptions {
            pic: true,
            ..Default::default()
        },
    )
    .unwrap();
    let dir = scratch_dir("so");
    let (o, so) = (dir.join("net.o"), dir.join("libnet.so"));
    std::fs::write(&o, &obj.bytes).unwrap();
    link_shared(&o, &so, &target).unwrap();
    // SAFETY: the library is the artifact just built; it has no initialisers.
    let lib = unsafe { edgecc_runtime::dylib::Library::open(&so, "net") }.unwrap();
    let model = lib.model().unwrap();
    assert_eq!(model.name(), "net");
    assert_eq!(model.inputs().len(), 3);
    // SAFETY: names in an edgecc descriptor are C strings.
    assert_eq!(unsafe { model.outputs()[0].name() }, "probs");
    assert_eq!(model.outputs()[3].shape(), &[5, 6]);
    let ins = inputs_for(&p, 7);
    let got = run_desc(model.desc(), &p, &ins);
    assert_close(&got, &run_exec(&p, &ins), TOL, TOL, "network via .so");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jit_network_and_clif_listing() {
    let p = network();
    let ins = inputs_for(&p, 9);
    assert_close(
        &run_jit(&p, &ins),
        &run_exec(&p, &ins),
        TOL,
        TOL,
        "network via JIT",
    );
    if std::env::var_os("EDGECC_DUMP").is_some() {
        for t in ["x86_64", "aarch64-neon"] {
            let l = emit_clif(&p, &t.parse().unwrap()).unwrap();
            l.lines()
                .filter(|l| l.contains("machine code"))
                .for_each(|l| println!("{t} {l}"));
        }
    }
    let listing = emit_clif(&p, &"aarch64-neon".parse().unwrap()).unwrap();
    assert!(
        listing.contains("function") && listing.contains("net_k3_gemm") && listing.contains("fmla"),
        "{}",
        &listing[..400]
    );
}

#[test]
fn targets_parse_and_reject() {
    for ok in [
        "x86_64",
        "aarch64-neon",
        "aarch64-unknown-linux-gnu",
        "aarch64-unknown-none",
        "x86_64-unknown-linux-gnu",
        "x86_64+avx+fma",
    ] {
        ok.parse::<Target>().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "riscv64gc-unknown-linux-gnu",
        "x86_64+nonsense",
        "not a triple",
    ] {
        assert!(bad.parse::<Target>().is_err(), "{bad} accepted");
    }
}

fn tool(name: &str) {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "`{name}` is required for the aarch64 test (apt install qemu-user gcc-aarch64-linux-gnu); it is missing"
    );
}

fn write_floats(path: &Path, v: &[f32]) {
    std::fs::write(path, bytes(v)).unwrap();
}

/// Compiles the network for aarch64, links it statically with `runtime/c/edgecc_harness.c`
/// and runs it under qemu. Fails (does not skip) without the cross tools.
#[test]
fn aarch64_runs_under_qemu() {
    tool("aarch64-linux-gnu-gcc");
    tool("qemu-aarch64");
    let p = network();
    let target: Target = "aarch64-neon".parse().unwrap();
    let dir = scratch_dir("a64");
    for pic in [false, true] {
        let obj = compile_object(
            &p,
            &target,
            &ObjectOptions {
                pic,
                ..Default::default()
            },
        )
        .unwrap();
        let ins = inputs_for(&p, 3);
        let got = run_under_qemu(&p, &obj.bytes, &ins, &dir);
        assert_close(
            &got,
            &run_exec(&p, &ins),
            TOL,
            TOL,
            &format!("network on aarch64 (pic {pic})"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Links `obj` (compiled from `p` for aarch64) with the C harness and runs it under qemu
/// on `ins`; returns the outputs.
fn run_under_qemu(
    p: &edgecc_program::Program,
    obj: &[u8],
    ins: &[Vec<f32>],
    dir: &Path,
) -> Vec<Vec<f32>> {
    let o = dir.join(format!("{}.o", p.name));
    std::fs::write(&o, obj).unwrap();
    let harness_src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/c/edgecc_harness.c");
    let exe = dir.join("harness");
    let out = Command::new("aarch64-linux-gnu-gcc")
        .args(["-static", "-O2", "-Wall", "-Werror"])
        .arg(format!("-DEDGECC_MODEL={}_model", p.name))
        .arg(&harness_src)
        .arg(&o)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "link failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new("qemu-aarch64");
    cmd.arg(&exe);
    for (i, v) in ins.iter().enumerate() {
        let f = dir.join(format!("in{i}.bin"));
        write_floats(&f, v);
        cmd.arg(f);
    }
    cmd.arg("--");
    let outs: Vec<_> = (0..p.outputs.len())
        .map(|i| dir.join(format!("out{i}.bin")))
        .collect();
    cmd.args(&outs);
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "harness failed ({}): {}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    outs.iter()
        .map(|f| floats(&std::fs::read(f).unwrap()))
        .collect()
}

/// The aarch64 GEMM paths under qemu: A loaded as f32x4 lanes (packed constant A, and a
/// transposed input A) with row tails of 4 and of 3 (scalar A), and convolutions in
/// several im2col blocks with a shorter last block, several groups and strides.
#[test]
fn aarch64_gemm_and_conv_shapes_under_qemu() {
    tool("aarch64-linux-gnu-gcc");
    tool("qemu-aarch64");
    let target: Target = "aarch64-neon".parse().unwrap();
    let dir = scratch_dir("a64-shapes");
    let mut progs = vec![
        // a_t: A element (r, k) at r + k·m, rows contiguous; M = 8 + 8 + 4.
        gemm_program(
            2,
            20,
            27,
            13,
            true,
            false,
            false,
            false,
            false,
            Some("col"),
            edgecc_program::Activation::Relu,
            1.0,
        ),
        // Packed constant A, M = 8 + 4, transposed B.
        gemm_program(
            1,
            12,
            30,
            17,
            false,
            true,
            true,
            false,
            false,
            None,
            edgecc_program::Activation::None,
            -0.75,
        ),
        // Packed constant A with M = 8 + 3 (the tail takes scalar A loads).
        gemm_program(
            1,
            11,
            13,
            9,
            false,
            false,
            true,
            true,
            false,
            Some("row"),
            edgecc_program::Activation::Tanh,
            1.0,
        ),
    ];
    // Small-M (GEMV) tiles: M = 1 with A contiguous along K (f32x4 lanes) and N = 32·2 +
    // 4 + 3, K = 4·9 + 3; M = 2 with packed A and a transposed B; M = 3 with A transposed
    // (scalar A loads) and a sigmoid epilogue.
    progs.push(gemm_program(
        1,
        1,
        71,
        39,
        false,
        false,
        false,
        true,
        false,
        Some("row"),
        edgecc_program::Activation::Relu,
        1.0,
    ));
    progs.push(gemm_program(
        2,
        2,
        29,
        18,
        false,
        true,
        true,
        false,
        false,
        Some("full"),
        edgecc_program::Activation::None,
        -0.75,
    ));
    progs.push(gemm_program(
        1,
        3,
        53,
        21,
        true,
        false,
        false,
        true,
        false,
        Some("col"),
        edgecc_program::Activation::Sigmoid,
        1.0,
    ));
    // Pools with vector interiors on aarch64: stride 1 (3×3, pad 1, average without
    // the padding: border rows as vectors), stride 2 (2×2 even/odd lanes, 3×3 pad 1 with
    // an overlapping last vector) and stride 3 (lane loads).
    use edgecc_program::PoolKind;
    progs.push(pool_program(
        PoolKind::Avg {
            count_include_pad: false,
        },
        2,
        9,
        14,
        win(3, 1, 1, 1),
    ));
    progs.push(pool_program(PoolKind::Max, 2, 12, 22, win(2, 2, 1, 0)));
    progs.push(pool_program(PoolKind::Max, 1, 11, 29, win(3, 2, 1, 1)));
    progs.push(pool_program(
        PoolKind::Avg {
            count_include_pad: true,
        },
        1,
        10,
        31,
        win(3, 3, 2, 2),
    ));
    let w3 = |s: u32| win(3, s, 1, 1);
    // K = 81: blocks of 4 rows of 23 columns, 22 rows = 5 blocks + 2; 2 groups of 12.
    progs.push(conv_program(
        1,
        18,
        24,
        2,
        22,
        23,
        w3(1),
        true,
        edgecc_program::Activation::Relu,
    ));
    // Stride 2, 3 groups of 5 output channels (a 5-row tail: scalar A loads).
    progs.push(conv_program(
        2,
        27,
        15,
        3,
        30,
        31,
        w3(2),
        false,
        edgecc_program::Activation::None,
    ));
    for (i, mut p) in progs.into_iter().enumerate() {
        p.name = format!("s{i}");
        let obj = compile_object(&p, &target, &ObjectOptions::default()).unwrap();
        let ins = inputs_for(&p, 17 + i as u64);
        let got = run_under_qemu(&p, &obj.bytes, &ins, &dir);
        let k = 81.0f32;
        assert_close(
            &got,
            &run_exec(&p, &ins),
            2e-6 * k,
            1e-5,
            &format!("aarch64 shape {i}"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Kernel::Convert` on aarch64 under qemu, every dtype pair in one program: six inputs of
/// edge values (i64 extremes, ±0, ±inf, NaN, 2^31, large floats, bool bytes > 1), one
/// output per pair, compared bit for bit with `exec`. Counts of 35 leave a scalar tail
/// after the f32x4 loop of f32 ↔ i32 (byte outputs use 36: the harness files are f32s).
#[test]
fn aarch64_convert_under_qemu() {
    use edgecc_program::{Buffer, DType, IoTensor, Kernel};
    tool("aarch64-linux-gnu-gcc");
    tool("qemu-aarch64");
    const N: u64 = 36;
    let dts = [
        DType::F32,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::I8,
        DType::Bool,
    ];
    let ints = [
        0i64,
        1,
        -1,
        127,
        128,
        -129,
        255,
        256,
        i32::MAX as i64,
        i32::MIN as i64,
        1 << 31,
        (1 << 24) + 1,
        i64::MAX,
        i64::MIN,
        -300,
    ];
    let fl = [
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        2147483648.0,
        -2147483904.0,
        9.3e18,
        -1e30,
        255.9,
        -128.9,
        -0.5,
        1.5,
        16777217.0,
        300.0,
    ];
    let data = |d: DType| -> Vec<u8> {
        (0..N as usize)
            .flat_map(|i| match d {
                DType::F32 => fl[i % fl.len()].to_le_bytes().to_vec(),
                DType::Bool => vec![[0u8, 1, 2, 0xff][i % 4]],
                _ => ints[i % ints.len()].to_le_bytes()[..d.size()].to_vec(),
            })
            .collect()
    };
    let t = |name: String, dtype, n| IoTensor {
        name,
        dtype,
        shape: vec![n],
    };
    let inputs: Vec<IoTensor> = dts.iter().map(|&d| t(d.name().into(), d, N)).collect();
    let (mut outputs, mut kernels) = (vec![], vec![]);
    for (fi, &from) in dts.iter().enumerate() {
        for &to in &dts {
            let count = if to.size() == 1 { N } else { N - 1 };
            kernels.push(Kernel::Convert {
                count,
                from,
                to,
                input: Buffer::Input(fi as u32),
                output: Buffer::Output(outputs.len() as u32),
            });
            outputs.push(t(format!("{}_{}", from.name(), to.name()), to, count));
        }
    }
    let p = program(inputs, outputs, vec![], 0, kernels);
    let ins: Vec<Vec<u8>> = dts.iter().map(|&d| data(d)).collect();
    let refs: Vec<&[u8]> = ins.iter().map(|v| &v[..]).collect();
    let mut want: Vec<Vec<u8>> = p
        .outputs
        .iter()
        .map(|o| vec![0u8; o.byte_size() as usize])
        .collect();
    let mut wrefs: Vec<&mut [u8]> = want.iter_mut().map(|v| &mut v[..]).collect();
    edgecc_program::exec::run(&p, &refs, &mut wrefs, &mut []).unwrap();
    let target: Target = "aarch64-neon".parse().unwrap();
    let obj = compile_object(&p, &target, &ObjectOptions::default()).unwrap();
    let dir = scratch_dir("a64-convert");
    let fins: Vec<Vec<f32>> = ins.iter().map(|b| floats(b)).collect();
    let got = run_under_qemu(&p, &obj.bytes, &fins, &dir);
    assert_eq!(got.len(), 36);
    for ((g, w), o) in got.iter().zip(&want).zip(&p.outputs) {
        assert_eq!(&bytes(g), w, "aarch64 convert {}", o.name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
