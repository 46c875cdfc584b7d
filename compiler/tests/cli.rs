//! The `edgecc` command line end to end: compile, run on every target, link into C,
//! and refuse bad input with a clear message and a failing exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn example(name: &str) -> PathBuf {
    root().join("examples/models").join(name)
}

fn edgecc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgecc"))
        .args(args)
        .output()
        .expect("run edgecc")
}

fn ok(args: &[&str]) -> Output {
    let out = edgecc(args);
    assert!(
        out.status.success(),
        "edgecc {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails(args: &[&str]) -> String {
    let out = edgecc(args);
    assert!(!out.status.success(), "edgecc {args:?} should have failed");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: "), "no clear error: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

fn tool(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} (is it installed? scripts/install-deps.sh): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn npy(path: &Path) -> Vec<f32> {
    edgecc::io::read_tensor(path)
        .unwrap()
        .as_f32()
        .unwrap()
        .to_vec()
}

fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0f64, |m, &x| m.max(x.abs() as f64))
        .max(1e-30);
    a.iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
        / scale
}

/// Runs an example through `edgecc run` with the given target flags and compares every
/// output with onnxruntime's (float32 bound from the design brief: 1e-4 of the output's
/// scale).
/// The examples every target runs against onnxruntime (symbolic needs a shape, apart).
const EXAMPLES: [&str; 15] = [
    "mlp",
    "cnn",
    "conv1d",
    "encoder",
    "bert_torchscript",
    "bert_dynamo",
    "bert_opset13",
    "distilbert",
    "roberta",
    "einsum",
    "encoder_pruned",
    "encoder_pruned_dynamo",
    "encoder_headless",
    "encoder_fusedqkv",
    "gpt2_pruned",
];

fn run_matches_onnxruntime(name: &str, target: &[&str], extra: &[&str]) {
    run_within(name, target, extra, 1e-4);
}

/// Quantized examples and the largest error each may have against onnxruntime, relative
/// to the output's largest magnitude: about one quantization step of the output (a
/// probability after a softmax of dequantized logits a few). Measured figures are in
/// `tests/tests/quantized.rs`' output.
const QUANTIZED_EXAMPLES: [(&str, f64); 9] = [
    ("cnn_qdq", 0.02),
    ("cnn_qoperator", 0.02),
    ("digits_cnn_qdq", 0.01),
    ("digits_cnn_qoperator", 0.01),
    ("encoder_qdq", 0.02),
    ("encoder_qoperator", 0.02),
    ("encoder_dynamic", 0.02),
    ("encoder_pruned_qdq", 0.02),
    ("encoder_pruned_dynamic", 0.02),
];

/// `edgecc run` on the quantized examples, on this machine and under qemu-aarch64 with and
/// without the dot-product extension (sdot), against onnxruntime's outputs.
#[test]
fn quantized_examples_run_on_every_target() {
    for (m, tol) in QUANTIZED_EXAMPLES {
        for target in ["x86_64", "aarch64-neon", "aarch64-neon+dotprod"] {
            run_within(m, &["--target", target], &[], tol);
        }
    }
}

/// Runs an example and checks every output against onnxruntime's within `tol`; returns
/// the folder of outputs for further comparison.
fn run_within(name: &str, target: &[&str], extra: &[&str], tol: f64) -> tempfile::TempDir {
    let dir = example(name);
    let out = tempfile::tempdir().unwrap();
    let model = dir.join("model.onnx");
    let inputs: Vec<String> = (0..)
        .map(|i| dir.join(format!("input_{i}.npy")))
        .take_while(|p| p.exists())
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    let mut args = vec!["run", model.to_str().unwrap()];
    args.extend_from_slice(target);
    args.extend_from_slice(extra);
    for i in &inputs {
        args.extend_from_slice(&["--input", i.as_str()]);
    }
    args.extend_from_slice(&["--output-dir", out.path().to_str().unwrap()]);
    ok(&args);
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    // Outputs are written by name; match them to output_K.npy through the model's order.
    let (_, g) = edgecc::onnx::load(
        &model,
        &edgecc::onnx::ImportOptions {
            input_shapes: extra
                .windows(2)
                .filter(|w| w[0] == "--input-shape")
                .map(|w| edgecc::pipeline::parse_input_shape(w[1]).unwrap())
                .collect(),
            ..Default::default()
        },
    )
    .unwrap();
    for k in 0..g.outputs.len() {
        let got = npy(&out.path().join(format!(
            "{}.npy",
            edgecc::artifact::c_ident(g.output_name(k))
        )));
        let want = npy(&dir.join(format!("output_{k}.npy")));
        let err = max_rel_err(&got, &want);
        // Reported for every model, target and output (`cargo test -- --nocapture`).
        eprintln!(
            "{name} {target:?} output {k} ({}): max |error| / max |onnxruntime| = {err:.2e}",
            g.output_name(k)
        );
        assert!(
            err <= tol,
            "{name} {target:?} output {k}: relative error {err:e}"
        );
    }
    out
}

#[test]
fn run_reference_matches_onnxruntime() {
    for m in EXAMPLES {
        run_matches_onnxruntime(m, &["--reference"], &[]);
    }
    run_matches_onnxruntime("symbolic", &["--reference"], &["--input-shape", "x=3x16"]);
}

#[test]
fn run_x86_64_jit_matches_onnxruntime() {
    for m in EXAMPLES {
        run_matches_onnxruntime(m, &["--target", "x86_64"], &[]);
    }
    run_matches_onnxruntime(
        "symbolic",
        &["--target", "x86_64"],
        &["--input-shape", "x=3x16"],
    );
}

#[test]
fn profile_times_every_kernel_under_its_node_names() {
    let model = example("encoder").join("model.onnx");
    let lowered = edgecc::pipeline::compile(
        &model,
        &edgecc::pipeline::Options {
            name: "model".into(),
            ..Default::default()
        },
    )
    .unwrap()
    .lowered;
    // The outputs are still written and still right with --profile.
    run_matches_onnxruntime("encoder", &["--profile", "--runs", "3"], &[]);
    let i0 = example("encoder").join("input_0.npy");
    let i1 = example("encoder").join("input_1.npy");
    let out = tempfile::tempdir().unwrap();
    let args = [
        "run",
        model.to_str().unwrap(),
        "--input",
        i0.to_str().unwrap(),
        "--input",
        i1.to_str().unwrap(),
        "--output-dir",
        out.path().to_str().unwrap(),
        "--profile",
        "--runs",
        "3",
    ];
    let stdout = String::from_utf8(ok(&args).stdout).unwrap();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|f| f.parse::<usize>().is_ok()))
        .collect();
    let kernels = &lowered.program.kernels;
    assert_eq!(rows.len(), kernels.len(), "{stdout}");
    for (i, (row, k)) in rows.iter().zip(kernels).enumerate() {
        assert_eq!(row[0], i.to_string());
        assert_eq!(row[1], k.name());
        assert!(row[2].parse::<f64>().is_ok(), "time in {row:?}");
        let nodes = &lowered.kernel_nodes[i];
        assert!(!nodes.is_empty() && row.last() == Some(&nodes.as_str()));
    }
    // Kernels carry the names the model gives its nodes.
    assert!(stdout.contains("layer0/attn/softmax") && stdout.contains("embeddings/word"));
    assert!(stdout.contains("by kind") && stdout.contains("whole inference median"));
    let gemm = rows.iter().find(|r| r[1] == "gemm").unwrap();
    assert!(gemm[4].parse::<f64>().unwrap() > 0.0, "GFLOP/s in {gemm:?}");

    let err = fails(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        i0.to_str().unwrap(),
        "--input",
        i1.to_str().unwrap(),
        "--target",
        "aarch64-neon",
        "--profile",
    ]);
    assert!(err.contains("--profile"), "{err}");
}

#[test]
fn freeze_binds_an_input_at_compile_time() {
    // The encoder with its attention mask fixed at compile time: one input left, same
    // outputs as onnxruntime's with that mask.
    let dir = example("bert_torchscript");
    let model = dir.join("model.onnx");
    let ids = dir.join("input_0.npy");
    let mask = dir.join("input_1.npy");
    let frozen = format!("attention_mask={}", mask.display());
    let out = tempfile::tempdir().unwrap();
    for target in ["x86_64", "aarch64-neon"] {
        ok(&[
            "run",
            model.to_str().unwrap(),
            "--freeze",
            &frozen,
            "--target",
            target,
            "--input",
            ids.to_str().unwrap(),
            "--output-dir",
            out.path().to_str().unwrap(),
        ]);
        let got = npy(&out.path().join("last_hidden_state.npy"));
        let want = npy(&dir.join("output_0.npy"));
        assert!(max_rel_err(&got, &want) <= 1e-4, "{target}");
    }
    let inspect =
        String::from_utf8(ok(&["inspect", model.to_str().unwrap(), "--freeze", &frozen]).stdout)
            .unwrap();
    assert!(
        inspect.contains("attention_mask: i64[1,16] (frozen by --freeze"),
        "{inspect}"
    );
    // Wrong shape, and a name that is not an input: clear errors.
    let err = fails(&[
        "compile",
        model.to_str().unwrap(),
        "--freeze",
        &format!(
            "attention_mask={}",
            example("mlp").join("input_0.npy").display()
        ),
        "-o",
        out.path().join("m.o").to_str().unwrap(),
    ]);
    assert!(
        err.contains("--freeze attention_mask") && err.contains("does not fit"),
        "{err}"
    );
    let err = fails(&[
        "compile",
        model.to_str().unwrap(),
        "--freeze",
        &format!("nope={}", mask.display()),
        "-o",
        out.path().join("m.o").to_str().unwrap(),
    ]);
    assert!(err.contains("not an input of the model"), "{err}");
}

#[test]
fn run_aarch64_under_qemu_matches_onnxruntime() {
    for m in EXAMPLES {
        run_matches_onnxruntime(m, &["--target", "aarch64-neon"], &[]);
    }
    run_matches_onnxruntime(
        "symbolic",
        &["--target", "aarch64-unknown-linux-gnu"],
        &["--input-shape", "x=3x16"],
    );
}

#[test]
fn onnx_test_data_pb_inputs_are_accepted() {
    let dir = example("mlp");
    let out = tempfile::tempdir().unwrap();
    let model = dir.join("model.onnx");
    let pb = dir.join("test_data_set_0/input_0.pb");
    ok(&[
        "run",
        model.to_str().unwrap(),
        "--reference",
        "--input",
        &format!("x={}", pb.display()),
        "--output-dir",
        out.path().to_str().unwrap(),
    ]);
    let want = edgecc::io::read_tensor(&dir.join("test_data_set_0/output_0.pb")).unwrap();
    let got = npy(&out.path().join("y.npy"));
    assert!(max_rel_err(&got, want.as_f32().unwrap()) <= 1e-5);
}

#[test]
fn compile_writes_object_header_and_manifest() {
    let out = tempfile::tempdir().unwrap();
    let obj = out.path().join("cnn.o");
    let model = example("cnn").join("model.onnx");
    let res = ok(&[
        "compile",
        model.to_str().unwrap(),
        "--target",
        "aarch64-neon",
        "-o",
        obj.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&res.stderr);
    assert!(report.contains("of lower bound"), "{report}");
    let bytes = std::fs::read(&obj).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([bytes[18], bytes[19]]),
        183,
        "e_machine is not aarch64"
    );
    let header = std::fs::read_to_string(out.path().join("cnn.h")).unwrap();
    assert!(header.contains("#define CNN_ARENA_SIZE"));
    assert!(header.contains("#define CNN_INPUT_IMAGE_SHAPE {1, 3, 32, 32}"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("cnn.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["model"]["name"], "cnn");
    assert_eq!(manifest["target"], "aarch64-unknown-linux-gnu");
    assert_eq!(manifest["abi_version"], 1);
    assert_eq!(
        manifest["inputs"][0]["shape"],
        serde_json::json!([1, 3, 32, 32])
    );
    assert_eq!(manifest["outputs"][1]["name"], "probs");
    assert!(
        manifest["arena"]["size"].as_u64().unwrap()
            >= manifest["arena"]["lower_bound"].as_u64().unwrap()
    );
    assert_eq!(manifest["artifact"]["sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["artifact"]["code_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn same_model_and_flags_give_identical_artifacts() {
    let out = tempfile::tempdir().unwrap();
    let model = example("cnn").join("model.onnx");
    for target in ["aarch64-neon", "x86_64", "aarch64-unknown-none"] {
        let a = out.path().join("a.o");
        let b = out.path().join("b.o");
        ok(&[
            "compile",
            model.to_str().unwrap(),
            "--target",
            target,
            "--name",
            "m",
            "-o",
            a.to_str().unwrap(),
        ]);
        ok(&[
            "compile",
            model.to_str().unwrap(),
            "--target",
            target,
            "--name",
            "m",
            "-o",
            b.to_str().unwrap(),
        ]);
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{target}: objects differ"
        );
        assert_eq!(
            std::fs::read(out.path().join("a.h")).unwrap(),
            std::fs::read(out.path().join("b.h")).unwrap()
        );
    }
}

#[test]
fn emit_ir_and_asm_are_readable() {
    let out = tempfile::tempdir().unwrap();
    let model = example("mlp").join("model.onnx");
    let ir = out.path().join("mlp.ir");
    ok(&[
        "compile",
        model.to_str().unwrap(),
        "--emit",
        "ir",
        "-o",
        ir.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&ir).unwrap();
    assert!(
        text.starts_with("graph ") && text.contains("Gemm{") && text.contains("output y"),
        "{text}"
    );
    for target in ["x86_64", "aarch64-neon"] {
        let asm = out.path().join("mlp.s");
        ok(&[
            "compile",
            model.to_str().unwrap(),
            "--target",
            target,
            "--emit",
            "asm",
            "-o",
            asm.to_str().unwrap(),
        ]);
        let text = std::fs::read_to_string(&asm).unwrap();
        assert!(
            text.contains("function") && text.len() > 1000,
            "{target}: {}",
            &text[..text.len().min(500)]
        );
    }
}

#[test]
fn aarch64_shared_object() {
    let out = tempfile::tempdir().unwrap();
    let so = out.path().join("mlp.so");
    let model = example("mlp").join("model.onnx");
    ok(&[
        "compile",
        model.to_str().unwrap(),
        "--target",
        "aarch64-neon",
        "--emit",
        "so",
        "-o",
        so.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&so).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 3, "not ET_DYN");
    assert_eq!(
        u16::from_le_bytes([bytes[18], bytes[19]]),
        183,
        "not aarch64"
    );
    let syms = tool(Command::new("aarch64-linux-gnu-nm").arg("-D").arg(&so));
    let syms = String::from_utf8_lossy(&syms.stdout);
    assert!(
        syms.contains(" T mlp_run") && syms.contains(" D mlp_model"),
        "{syms}"
    );
}

#[test]
fn bare_metal_object_runs_when_linked() {
    // An `aarch64-unknown-none` object has the same code and ABI; link it into the firmware
    // example with the Linux cross toolchain just to run it under qemu.
    let out = tempfile::tempdir().unwrap();
    let obj = out.path().join("cnn.o");
    let model = example("cnn").join("model.onnx");
    ok(&[
        "compile",
        model.to_str().unwrap(),
        "--target",
        "aarch64-unknown-none",
        "--name",
        "cnn",
        "-o",
        obj.to_str().unwrap(),
    ]);
    let undefined = tool(Command::new("aarch64-linux-gnu-nm").arg("-u").arg(&obj));
    assert!(
        undefined.stdout.is_empty(),
        "bare-metal object imports symbols: {}",
        String::from_utf8_lossy(&undefined.stdout)
    );
    let exe = out.path().join("firmware");
    tool(
        Command::new("aarch64-linux-gnu-gcc")
            .args(["-std=c99", "-O2", "-static", "-I"])
            .arg(out.path())
            .arg(root().join("examples/firmware/main.c"))
            .arg(&obj)
            .arg("-o")
            .arg(&exe),
    );
    let run = tool(Command::new("qemu-aarch64").arg(&exe));
    assert!(String::from_utf8_lossy(&run.stdout).contains("short arena: status -2"));
}

#[test]
fn header_compiles_cleanly_as_c99() {
    let out = tempfile::tempdir().unwrap();
    let model = example("cnn").join("model.onnx");
    let h = out.path().join("cnn.h");
    ok(&[
        "compile",
        model.to_str().unwrap(),
        "--emit",
        "header",
        "-o",
        h.to_str().unwrap(),
    ]);
    // A second model's header in the same translation unit must not clash.
    let h2 = out.path().join("mlp.h");
    ok(&[
        "compile",
        example("mlp").join("model.onnx").to_str().unwrap(),
        "--emit",
        "header",
        "-o",
        h2.to_str().unwrap(),
    ]);
    let c = out.path().join("use.c");
    std::fs::write(
        &c,
        "#include \"cnn.h\"\n#include \"mlp.h\"\nstatic unsigned char arena[CNN_ARENA_SIZE] __attribute__((aligned(CNN_ARENA_ALIGN)));\n\
         int check(void) { static const unsigned long long s[] = CNN_INPUT_0_SHAPE; return (int)(sizeof arena + s[1] + MLP_OUTPUT_Y_BYTES); }\n",
    )
    .unwrap();
    for cc in ["cc", "aarch64-linux-gnu-gcc"] {
        tool(
            Command::new(cc)
                .args([
                    "-std=c99",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-pedantic",
                    "-c",
                    "-o",
                ])
                .arg(out.path().join("use.o"))
                .arg(&c)
                .current_dir(out.path()),
        );
    }
}

#[test]
fn shared_object_loads_through_the_runtime() {
    let out = tempfile::tempdir().unwrap();
    let so = out.path().join("mlp.so");
    let dir = example("mlp");
    ok(&[
        "compile",
        dir.join("model.onnx").to_str().unwrap(),
        "--target",
        "x86_64",
        "--emit",
        "so",
        "-o",
        so.to_str().unwrap(),
    ]);
    // SAFETY: an edgecc artifact has no initialisers.
    let lib = unsafe { edgecc_runtime::dylib::Library::open(&so, "mlp") }.unwrap();
    let model = lib.model().unwrap();
    assert_eq!(model.name(), "mlp");
    let input = edgecc::io::read_tensor(&dir.join("input_0.npy"))
        .unwrap()
        .to_le_bytes()
        .unwrap();
    let mut out_buf = vec![0u8; model.outputs()[0].byte_size as usize];
    let mut arena = vec![0u64; (model.arena_size() as usize).div_ceil(8) + 8];
    let base = arena.as_mut_ptr() as usize;
    let skip = (base.next_multiple_of(model.arena_align() as usize) - base) as usize;
    let arena_bytes = unsafe {
        std::slice::from_raw_parts_mut(
            (arena.as_mut_ptr() as *mut u8).add(skip),
            model.arena_size() as usize,
        )
    };
    model
        .run(&[&input], &mut [&mut out_buf], arena_bytes)
        .unwrap();
    let got: Vec<f32> = out_buf
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(max_rel_err(&got, &npy(&dir.join("output_0.npy"))) <= 1e-4);
    // Wrong interface: errors, not undefined behaviour.
    use edgecc_runtime::Error as E;
    let mut small = vec![0u8; model.arena_size() as usize - 1];
    assert!(matches!(
        model.run(&[&input], &mut [&mut out_buf], &mut small),
        Err(E::ArenaTooSmall { .. }) | Err(E::ArenaMisaligned { .. })
    ));
    assert!(matches!(
        model.run(&[&input[..8]], &mut [&mut out_buf], arena_bytes),
        Err(E::InputSize { index: 0, .. })
    ));
    assert!(matches!(
        model.run(&[], &mut [&mut out_buf], arena_bytes),
        Err(E::WrongInputCount { .. })
    ));
    let mut short_out = vec![0u8; 4];
    assert!(matches!(
        model.run(&[&input], &mut [&mut short_out], arena_bytes),
        Err(E::OutputSize { .. })
    ));
    // Every refusal has the C ABI's code (edgecc_runtime::status = model.h's EDGECC_ERR_*).
    use edgecc_runtime::status;
    let mut wide_in = vec![0u32; input.len() / 4 + 1];
    let wide_in: &mut [u8] =
        unsafe { std::slice::from_raw_parts_mut(wide_in.as_mut_ptr() as *mut u8, input.len() + 4) };
    let mut wide_out = vec![0u32; out_buf.len() / 4 + 1];
    let wide_out: &mut [u8] = unsafe {
        std::slice::from_raw_parts_mut(wide_out.as_mut_ptr() as *mut u8, out_buf.len() + 4)
    };
    let mut wide_arena = vec![0u8; model.arena_size() as usize + 128];
    let code = |r: Result<(), E>| r.unwrap_err().code();
    assert_eq!(
        code(model.run(&[&input], &mut [&mut out_buf], &mut small)),
        status::ERR_ARENA_SIZE
    );
    let shift = (1..64)
        .find(|k| !(wide_arena.as_ptr() as usize + k).is_multiple_of(model.arena_align() as usize))
        .unwrap();
    let arena_size = model.arena_size() as usize;
    assert_eq!(
        code(model.run(
            &[&input],
            &mut [&mut out_buf],
            &mut wide_arena[shift..shift + arena_size]
        )),
        status::ERR_ARENA_ALIGN
    );
    assert_eq!(
        code(model.run(&[], &mut [&mut out_buf], arena_bytes)),
        status::ERR_IO_COUNT
    );
    assert_eq!(
        code(model.run(&[&input], &mut [], arena_bytes)),
        status::ERR_IO_COUNT
    );
    assert_eq!(
        code(model.run(&[&input[4..]], &mut [&mut out_buf], arena_bytes)),
        status::ERR_INPUT_SIZE
    );
    assert_eq!(
        code(model.run(&[&input], &mut [&mut short_out], arena_bytes)),
        status::ERR_OUTPUT_SIZE
    );
    let n = input.len();
    wide_in[1..n + 1].copy_from_slice(&input);
    assert_eq!(
        code(model.run(&[&wide_in[1..n + 1]], &mut [&mut out_buf], arena_bytes)),
        status::ERR_IO_ALIGN
    );
    let m = out_buf.len();
    assert_eq!(
        code(model.run(&[&input], &mut [&mut wide_out[2..m + 2]], arena_bytes)),
        status::ERR_IO_ALIGN
    );
    // A descriptor of another ABI version (the artifact's, one field changed).
    let d = model.desc();
    let other = edgecc_runtime::ModelDesc {
        abi_version: edgecc_runtime::ABI_VERSION + 1,
        ..*d
    };
    let e = edgecc_runtime::Model::new(&other).err().unwrap();
    assert_eq!(e.code(), status::ERR_ABI);
    assert!(e.to_string().contains("ABI version 2"), "{e}");
    // And the model still runs after all those refusals.
    model
        .run(&[&input], &mut [&mut out_buf], arena_bytes)
        .unwrap();
    // A library whose symbol has another name: a clear load error.
    assert!(matches!(
        unsafe { edgecc_runtime::dylib::Library::open(&so, "nope") },
        Err(edgecc_runtime::dylib::LoadError::MissingSymbol { .. })
    ));
}

#[test]
fn firmware_example_links_and_runs_under_qemu() {
    let out = tempfile::tempdir().unwrap();
    let obj = out.path().join("cnn.o");
    let model = example("cnn").join("model.onnx");
    ok(&[
        "compile",
        model.to_str().unwrap(),
        "--target",
        "aarch64-neon",
        "--name",
        "cnn",
        "-o",
        obj.to_str().unwrap(),
    ]);
    let exe = out.path().join("firmware");
    tool(
        Command::new("aarch64-linux-gnu-gcc")
            .args([
                "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-static", "-I",
            ])
            .arg(out.path())
            .arg(root().join("examples/firmware/main.c"))
            .arg(&obj)
            .arg("-o")
            .arg(&exe),
    );
    let run = tool(Command::new("qemu-aarch64").arg(&exe));
    let text = String::from_utf8_lossy(&run.stdout);
    // The same input pattern through the interpreter.
    let (_, g) = edgecc::onnx::load(&model, &Default::default()).unwrap();
    let input: Vec<f32> = (0..3 * 32 * 32u32)
        .map(|i| ((i * 7919) % 256) as f32 / 128.0 - 1.0)
        .collect();
    let want =
        edgecc::interp::run(&g, &[edgecc::ir::Tensor::f32(vec![1, 3, 32, 32], input)]).unwrap();
    let parse = |key: &str| -> Vec<f32> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{key}[")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    assert!(
        max_rel_err(&parse("logits"), want[0].as_f32().unwrap()) <= 1e-4,
        "{text}"
    );
    assert!(
        max_rel_err(&parse("probs"), want[1].as_f32().unwrap()) <= 1e-4,
        "{text}"
    );
    assert!(text.contains("short arena: status -2"), "{text}");
}

/// Compiles the encoder example (two int64 inputs, one float output, token ids that can be
/// out of range) as `enc` into `dir` with `args`.
fn compile_enc(dir: &Path, out: &str, args: &[&str]) {
    let model = example("encoder").join("model.onnx");
    let o = dir.join(out);
    let mut a = vec![
        "compile",
        model.to_str().unwrap(),
        "--name",
        "enc",
        "-o",
        o.to_str().unwrap(),
    ];
    a.extend_from_slice(args);
    ok(&a);
}

/// `tests/c/abi_checks.c` (every refusal of `enc_run_checked` and `enc_run_checked_io`,
/// each with its EDGECC_ERR_* code, the canaries proving nothing ran, the model's own
/// status for token ids out of range) against the encoder compiled for x86_64: under
/// AddressSanitizer and UBSan, under valgrind (which, as a control, must see the unchecked
/// entry point overrun a short output buffer), with a header of another ABI version, and
/// built for aarch64 under qemu.
#[test]
fn abi_refusals_from_c_under_asan_and_valgrind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    compile_enc(d, "enc.o", &["--target", "x86_64"]);
    let src = root().join("tests/c/abi_checks.c");
    let cc = |exe: &str, include: &Path, flags: &[&str]| -> PathBuf {
        let out = d.join(exe);
        tool(
            Command::new("gcc")
                .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
                .args(flags)
                .arg("-I")
                .arg(include)
                .arg(&src)
                .arg(d.join("enc.o"))
                .arg("-o")
                .arg(&out),
        );
        out
    };
    let passed = |run: &Output| -> String {
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            text.contains("abi checks:") && !text.contains("FAIL"),
            "{text}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        text
    };
    let asan = cc(
        "asan",
        d,
        &[
            "-O1",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
        ],
    );
    let text = passed(&tool(&mut Command::new(&asan)));
    assert!(text.contains("78 of 78 passed"), "{text}");

    let valgrind = |exe: &Path| {
        Command::new("valgrind")
            .args(["-q", "--error-exitcode=99", "--leak-check=full"])
            .arg(exe)
            .output()
            .unwrap_or_else(|e| panic!("cannot run valgrind (apt-get install valgrind): {e}"))
    };
    let plain = cc("plain", d, &["-O1"]);
    let run = valgrind(&plain);
    assert!(
        run.status.success(),
        "valgrind: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(passed(&run).contains("78 of 78 passed"));
    let control = cc("control", d, &["-O1", "-DOVERRUN_CONTROL"]);
    let run = valgrind(&control);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.code() == Some(99) && err.contains("Invalid write") && err.contains("enc_run"),
        "valgrind did not see the unchecked call overrun the short buffer: {err}"
    );

    // The artifact is of ABI version 1; a header of version 2 refuses to call it.
    let other = d.join("other");
    std::fs::create_dir(&other).unwrap();
    let header = std::fs::read_to_string(d.join("enc.h")).unwrap();
    let v = format!(
        "#define EDGECC_ABI_VERSION {}u",
        edgecc_runtime::ABI_VERSION
    );
    assert!(header.contains(&v), "{header}");
    let next = format!(
        "#define EDGECC_ABI_VERSION {}u",
        edgecc_runtime::ABI_VERSION + 1
    );
    std::fs::write(other.join("enc.h"), header.replace(&v, &next)).unwrap();
    let exe = cc(
        "other_abi",
        &other,
        &["-DEXPECT_OTHER_ABI", "-fsanitize=address,undefined"],
    );
    assert!(passed(&tool(&mut Command::new(&exe))).contains("4 of 4 passed"));

    // The same checks on aarch64.
    let arm = d.join("arm");
    std::fs::create_dir(&arm).unwrap();
    compile_enc(&arm, "enc.o", &["--target", "aarch64-neon"]);
    let exe = arm.join("abi_checks");
    tool(
        Command::new("aarch64-linux-gnu-gcc")
            .args([
                "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-static", "-I",
            ])
            .arg(&arm)
            .arg(&src)
            .arg(arm.join("enc.o"))
            .arg("-o")
            .arg(&exe),
    );
    assert!(passed(&tool(Command::new("qemu-aarch64").arg(&exe))).contains("78 of 78 passed"));
}

/// The same checks on the Hexagon C (plain C, v67, the model.h of the same generator and
/// the descriptor the C defines), freestanding under qemu-hexagon: 32-bit pointers and
/// `size_t`, and no 64-bit division in the checks.
#[test]
fn abi_refusals_on_hexagon() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    compile_enc(d, "model.c", &["--target", "hexagon-v67", "--hvx", "off"]);
    std::fs::copy(d.join("model.h"), d.join("enc.h")).unwrap();
    let exe = d.join("abi.elf");
    tool(
        Command::new("clang-19")
            .current_dir(d)
            .args([
                "--target=hexagon",
                "-mv67",
                "-O2",
                "-ffreestanding",
                "-nostdlib",
            ])
            .args(["-fuse-ld=lld", "-static", "-Wall", "-Wextra", "-Werror"])
            .args(["-DFREESTANDING", "-I."])
            .arg(root().join("tests/c/abi_checks.c"))
            .args(["model.c", "-o"])
            .arg(&exe),
    );
    let run = tool(Command::new("qemu-hexagon").arg(&exe));
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("78 of 78 passed") && !text.contains("FAIL"),
        "{text}"
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let data = root().join("tests/data");
    let p = |f: &str| data.join(f).to_str().unwrap().to_string();
    let err = fails(&[
        "compile",
        &p("corrupt_truncated.onnx"),
        "-o",
        "/tmp/never.o",
    ]);
    assert!(err.contains("not a valid ONNX file"), "{err}");
    let err = fails(&["compile", &p("unsupported_ops.onnx"), "-o", "/tmp/never.o"]);
    assert!(
        err.contains("3 unsupported op(s)") && err.contains("weird_topk") && err.contains("det0"),
        "{err}"
    );
    let err = fails(&[
        "compile",
        &p("external_escape/model.onnx"),
        "-o",
        "/tmp/never.o",
    ]);
    assert!(err.contains("leaves the model's folder"), "{err}");
    let err = fails(&[
        "compile",
        example("symbolic").join("model.onnx").to_str().unwrap(),
        "-o",
        "/tmp/never.o",
    ]);
    assert!(err.contains("x[batch]"), "{err}");
    let err = fails(&[
        "compile",
        example("mlp").join("model.onnx").to_str().unwrap(),
        "--target",
        "mips-unknown-linux-gnu",
        "-o",
        "/tmp/never.o",
    ]);
    assert!(err.to_lowercase().contains("mips"), "{err}");
    let err = fails(&[
        "compile",
        example("mlp").join("model.onnx").to_str().unwrap(),
        "--name",
        "1bad-name",
        "-o",
        "/tmp/never.o",
    ]);
    assert!(err.contains("not a C identifier"), "{err}");
    // A wrong input shape for `run`.
    let wrong = example("cnn").join("input_0.npy");
    let err = fails(&[
        "run",
        example("mlp").join("model.onnx").to_str().unwrap(),
        "--target",
        "x86_64",
        "--input",
        wrong.to_str().unwrap(),
    ]);
    assert!(err.contains("input 'x' must be f32[1, 64]"), "{err}");
    // inspect lists unsupported ops without failing.
    let out = ok(&["inspect", &p("unsupported_ops.onnx")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TopK  (unsupported)") && text.contains("compiles:  no"),
        "{text}"
    );
}

#[test]
fn disable_pass_leaves_every_run_of_it_out() {
    let out = tempfile::tempdir().unwrap();
    let model = example("encoder").join("model.onnx");
    let obj = out.path().join("enc.o");
    let compile = |extra: &[&str]| {
        let mut args = vec![
            "compile",
            model.to_str().unwrap(),
            "--target",
            "x86_64",
            "-o",
            obj.to_str().unwrap(),
            "--print-after",
            "all",
        ];
        args.extend_from_slice(extra);
        String::from_utf8_lossy(&ok(&args).stderr).into_owned()
    };
    let all = compile(&[]);
    assert!(all.contains("pass fold-constants") && all.contains("; after fold-constants"));
    let without = compile(&["--disable-pass", "fold-constants"]);
    assert!(
        !without.contains("pass fold-constants") && !without.contains("; after fold-constants"),
        "{without}"
    );
    assert!(without.contains("pass dead-code") && without.contains("; after dead-code"));
    let every: Vec<&str> = edgecc::passes::names()
        .into_iter()
        .flat_map(|n| ["--disable-pass", n])
        .collect();
    let none = compile(&every);
    assert!(
        !none.contains("pass ") && !none.contains("; after"),
        "{none}"
    );
    // The model still computes what onnxruntime does with the passes off.
    run_matches_onnxruntime("encoder", &["--target", "x86_64"], &every);
}

#[test]
fn unknown_pass_names_are_refused_with_the_valid_ones() {
    let model = example("mlp").join("model.onnx");
    let m = model.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("m.o");
    let o = o.to_str().unwrap();
    for args in [
        vec!["compile", m, "-o", o, "--disable-pass", "fuse-frob"],
        vec!["run", m, "--reference", "--disable-pass", "fuse-frob"],
        vec![
            "run",
            m,
            "--disable-pass",
            "fold-constants",
            "--disable-pass",
            "fuse-frob",
        ],
    ] {
        let err = fails(&args);
        let want = format!(
            "--disable-pass fuse-frob: no such pass; valid passes: {}",
            edgecc::passes::names().join(", ")
        );
        assert!(err.contains(&want), "{err}");
    }
    let err = fails(&["compile", m, "-o", o, "--print-after", "fuse-frob"]);
    let want = format!(
        "--print-after fuse-frob: no such pass; valid passes: {}, all",
        edgecc::passes::names().join(", ")
    );
    assert!(err.contains(&want), "{err}");
    assert!(!out.path().join("m.o").exists());
}

#[test]
fn compile_reports_kernels_with_and_without_fusion() {
    let out = tempfile::tempdir().unwrap();
    for name in ["mlp", "encoder"] {
        let model = example(name).join("model.onnx");
        let obj = out.path().join(format!("{name}.o"));
        let err = String::from_utf8_lossy(
            &ok(&[
                "compile",
                model.to_str().unwrap(),
                "--target",
                "x86_64",
                "-o",
                obj.to_str().unwrap(),
            ])
            .stderr,
        )
        .into_owned();
        let c = edgecc::pipeline::compile(
            &model,
            &edgecc::pipeline::Options {
                name: "model".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let n = c.lowered.program.kernels.len();
        let m = c.kernels_without_fusion.expect("lowering without fusion");
        // Fusion never adds kernels.
        assert!(n > 0 && m >= n, "{name}: {n} after fusion, {m} without");
        let line = format!("kernels: {n} after fusion ({m} without the fusion passes)");
        assert!(
            err.lines().any(|l| l == line),
            "{name}: no '{line}' in\n{err}"
        );
        assert!(err.contains(&format!(", {n} kernels, target")), "{err}");
    }
}

#[test]
fn quantized_work_left_in_float_is_listed_and_require_int8_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let ir = dir.path().join("q.ir");
    let (m, o) = (
        example("cnn_qdq").join("model.onnx"),
        ir.to_str().unwrap().to_string(),
    );
    let m = m.to_str().unwrap();
    // Without the flag the float nodes are reported, each with its reason.
    let out = ok(&["compile", m, "--emit", "ir", "-o", &o]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("run in float") && report.contains("node 'softmax' (Softmax)"),
        "{report}"
    );
    // Folded nodes are not in the list: the convolutions, and the residual Add (a QAdd).
    assert!(
        !report.contains("node 'conv1'") && !report.contains("node 'residual_add'"),
        "{report}"
    );
    let err = fails(&["compile", m, "--emit", "ir", "-o", &o, "--require-int8"]);
    assert!(
        err.contains("--require-int8") && err.contains("node 'softmax' (Softmax)"),
        "{err}"
    );
    // With fold-requant disabled every island is reported, convolutions included.
    let err = fails(&[
        "compile",
        m,
        "--emit",
        "ir",
        "-o",
        &o,
        "--require-int8",
        "--disable-pass",
        "fold-requant",
    ]);
    assert!(
        err.contains("node 'conv1' (Conv): foldable, but fold-requant did not run")
            && err.contains("node 'residual_add' (Add): foldable, but fold-requant did not run"),
        "{err}"
    );
    // A float model has nothing to report and passes the flag.
    let mlp = example("mlp").join("model.onnx");
    let out = ok(&[
        "compile",
        mlp.to_str().unwrap(),
        "--emit",
        "ir",
        "-o",
        &o,
        "--require-int8",
    ]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("run in float"));
}

/// The Hexagon examples every `run --target hexagon` configuration must reproduce bit for
/// bit as the x86_64 JIT does (integer kernels only), with their tolerance against
/// onnxruntime (the same as in `QUANTIZED_EXAMPLES`). Float models: below.
const HEXAGON_EXAMPLES: [(&str, f64); 2] =
    [("digits_cnn_qdq", 0.01), ("digits_cnn_qoperator", 0.01)];

/// `clang-19 --target=hexagon` with `flags`, freestanding, every warning an error, in `dir`.
/// The tools are required (scripts/install-deps.sh installs them): a missing one fails.
fn hexagon_clang(dir: &Path, flags: &[&str], files: &[&str]) -> Output {
    tool(
        Command::new("clang-19")
            .current_dir(dir)
            .arg("--target=hexagon")
            .args(flags)
            .args(["-O2", "-ffreestanding", "-Wall", "-Wextra", "-Werror", "-c"])
            .args(files),
    )
}

/// The `.npy` files of an output folder, by name, as bytes.
fn npy_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// `compile --target hexagon...` writes model.c, model.h and a manifest; the same flags
/// give the same bytes; `--hvx` changes the C; and clang-19 compiles the C, a caller that
/// includes the header and `run`'s harness without a warning, for the core named.
#[test]
fn hexagon_compile_writes_deterministic_c_that_clang_accepts() {
    let model = example("digits_cnn_qdq").join("model.onnx");
    let model = model.to_str().unwrap();
    let configs: [(&[&str], &[&str], &str); 3] = [
        (
            &["--target", "hexagon-v73", "--hvx", "128"],
            &["-mv73", "-mhvx", "-mhvx-length=128b"],
            "hexagon-v73+hvx128",
        ),
        (
            &["--target", "hexagon-v68"],
            &["-mv68", "-mhvx", "-mhvx-length=128b"],
            "hexagon-v68+hvx128",
        ),
        (
            &["--target", "hexagon", "--hvx", "off"],
            &["-mv66"],
            "hexagon-v66",
        ),
    ];
    let mut sources = vec![];
    for (args, clang_flags, name) in configs {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut reports = vec![];
        for d in &dirs {
            let c = d.path().join("model.c");
            let mut a = vec![
                "compile",
                model,
                "--name",
                "digits",
                "-o",
                c.to_str().unwrap(),
            ];
            a.extend_from_slice(args);
            reports.push(String::from_utf8_lossy(&ok(&a).stderr).into_owned());
        }
        let read = |i: usize, f: &str| std::fs::read(dirs[i].path().join(f)).unwrap();
        assert!(
            read(0, "model.c") == read(1, "model.c"),
            "{name}: C differs"
        );
        assert_eq!(
            read(0, "model.h"),
            read(1, "model.h"),
            "{name}: header differs"
        );
        let c = String::from_utf8(read(0, "model.c")).unwrap();
        assert!(c.contains("int32_t digits_run(") && c.contains("digits_model"));
        let report = &reports[0];
        assert!(
            report.contains(&format!("target {name}")) && report.contains("C source:"),
            "{report}"
        );
        let header = String::from_utf8(read(0, "model.h")).unwrap();
        assert!(header.contains(&format!("for {name}.")), "{header}");
        let manifest: serde_json::Value = serde_json::from_slice(&read(0, "model.json")).unwrap();
        assert_eq!(manifest["target"], name);
        assert_eq!(manifest["artifact"]["kind"], "c");
        assert_eq!(manifest["artifact"]["header"], "model.h");
        assert_eq!(
            manifest["artifact"]["sha256"],
            edgecc::artifact::manifest::sha256(c.as_bytes())
        );
        assert_eq!(manifest["artifact"]["code_bytes"], c.len());
        // A caller that includes the header, sizes everything from its macros and calls
        // every entry point; and the harness `run` links, built as `run` builds it.
        let dir = dirs[0].path();
        std::fs::write(
            dir.join("use.c"),
            "#include \"model.h\"\n\
             static uint8_t arena[DIGITS_ARENA_SIZE] __attribute__((aligned(128)));\n\
             static uint8_t in0[DIGITS_INPUT_0_BYTES], out0[DIGITS_OUTPUT_0_BYTES];\n\
             int32_t infer(void) {\n\
                 const void *ins[DIGITS_NUM_INPUTS] = { in0 };\n\
                 void *outs[DIGITS_NUM_OUTPUTS] = { out0 };\n\
                 const size_t in_sizes[DIGITS_NUM_INPUTS] = { sizeof in0 };\n\
                 const size_t out_sizes[DIGITS_NUM_OUTPUTS] = { sizeof out0 };\n\
                 int32_t st = digits_run(ins, outs, arena);\n\
                 if (st == 0) st = digits_run_checked(ins, outs, arena, sizeof arena);\n\
                 return st != 0 ? st : digits_run_checked_io(ins, in_sizes, outs, out_sizes, arena, sizeof arena);\n\
             }\n",
        )
        .unwrap();
        std::fs::write(dir.join("harness.c"), edgecc::run_hexagon::HARNESS_C).unwrap();
        let mut flags = clang_flags.to_vec();
        flags.extend([
            "-DEDGECC_MODEL=digits_model",
            "-DEDGECC_ARENA_SIZE=DIGITS_ARENA_SIZE",
            "-DEDGECC_IO_BYTES=1024u",
            "-DEDGECC_MAX_IO=2u",
        ]);
        hexagon_clang(dir, &flags, &["model.c", "use.c", "harness.c"]);
        for o in ["model.o", "use.o", "harness.o"] {
            assert!(dir.join(o).exists(), "{name}: no {o}");
        }
        // As the DSP's dynamic loader takes it (a FastRPC skeleton's library): position-
        // independent, shared, linked with nothing, and still nothing undefined or needed.
        tool(
            Command::new("clang-19")
                .current_dir(dir)
                .arg("--target=hexagon")
                .args(clang_flags)
                .args(["-O2", "-ffreestanding", "-nostdlib", "-fPIC", "-shared"])
                .args(["-fuse-ld=lld", "-Wall", "-Wextra", "-Werror"])
                .args(["model.c", "-o", "libmodel.so"]),
        );
        let undefined = tool(
            Command::new("llvm-nm-19")
                .arg("-u")
                .arg(dir.join("libmodel.so")),
        );
        assert!(
            undefined.stdout.is_empty(),
            "{name}: the shared object needs {}",
            String::from_utf8_lossy(&undefined.stdout)
        );
        let dynamic = tool(
            Command::new("llvm-readelf-19")
                .arg("-d")
                .arg(dir.join("libmodel.so")),
        );
        let dynamic = String::from_utf8_lossy(&dynamic.stdout);
        assert!(
            !dynamic.contains("NEEDED") && !dynamic.contains("TEXTREL"),
            "{name}: {dynamic}"
        );
        sources.push(c);
    }
    // With and without HVX: the int8 kernels differ.
    assert!(
        sources[0] != sources[2],
        "--hvx 128 and --hvx off give the same C"
    );
    assert!(
        !sources[2].contains("Q6_"),
        "--hvx off C uses HVX intrinsics"
    );
}

/// `run --target hexagon` (v66 and v67, with and without HVX) under qemu-hexagon gives
/// exactly the x86_64 JIT's bytes, and is within one quantization step of onnxruntime.
#[test]
fn hexagon_run_matches_x86_64_and_onnxruntime() {
    for (m, tol) in HEXAGON_EXAMPLES {
        let x86 = npy_bytes(run_within(m, &["--target", "x86_64"], &[], tol).path());
        for target in [
            &["--target", "hexagon"][..],
            &["--target", "hexagon", "--hvx", "128"],
            &["--target", "hexagon", "--hvx", "off"],
            &["--target", "hexagon-v67", "--hvx", "128"],
            &["--target", "hexagon-v66", "--hvx", "off"],
        ] {
            let got = npy_bytes(run_within(m, target, &[], tol).path());
            assert!(got == x86, "{m} {target:?}: outputs differ from x86_64's");
        }
    }
}

/// Float and mixed models on Hexagon: a float CNN and MLP, the toy encoder, a real BERT
/// export and DistilBERT (f32 GEMMs, softmax with the attention mask, layer norms, GELU,
/// the embedding Gathers) and the int8 encoder whose softmax, layer norms and some GEMMs
/// stay float. `run --target hexagon` builds them with and without HVX, runs them under
/// qemu-hexagon and must match onnxruntime as closely as the other targets do: 1e-4 of the
/// output's scale in f32, about one quantization step for the int8 model (as in
/// `QUANTIZED_EXAMPLES`). Each run's wall time (clang-19 and qemu-hexagon) is printed.
#[test]
fn hexagon_runs_float_and_mixed_models() {
    let models = [
        ("mlp", 1e-4),
        ("cnn", 1e-4),
        ("encoder", 1e-4),
        ("bert_opset13", 1e-4),
        ("distilbert", 1e-4),
        ("encoder_qdq", 0.02),
    ];
    for (m, tol) in models {
        for hvx in ["128", "off"] {
            let start = std::time::Instant::now();
            run_within(m, &["--target", "hexagon", "--hvx", hvx], &[], tol);
            eprintln!(
                "{m} --hvx {hvx}: edgecc run --target hexagon took {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Every misuse of the hexagon target is refused with a message that says what to do.
#[test]
fn hexagon_misuse_gets_clear_errors() {
    let dir = example("digits_cnn_qdq");
    let model = dir.join("model.onnx");
    let model = model.to_str().unwrap();
    let input = dir.join("input_0.npy");
    let input = input.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("m.c");
    let o = o.to_str().unwrap();
    let err = fails(&["run", model, "--target", "hexagon-v73", "--input", input]);
    assert!(
        err.contains("qemu-hexagon runs only v66 and v67") && err.contains("hexagon-v67"),
        "{err}"
    );
    let err = fails(&[
        "compile", model, "--target", "hexagon", "--hvx", "64", "-o", o,
    ]);
    assert!(err.contains("only 128-byte HVX"), "{err}");
    for emit in ["obj", "so", "asm"] {
        let err = fails(&[
            "compile", model, "--target", "hexagon", "--emit", emit, "-o", o,
        ]);
        assert!(
            err.contains("writes C") && err.contains("--emit c"),
            "{err}"
        );
    }
    let err = fails(&[
        "compile", model, "--target", "x86_64", "--emit", "c", "-o", o,
    ]);
    assert!(err.contains("--emit c is for hexagon targets"), "{err}");
    let err = fails(&[
        "compile", model, "--target", "x86_64", "--hvx", "128", "-o", o,
    ]);
    assert!(err.contains("for hexagon targets"), "{err}");
    let err = fails(&["compile", model, "--target", "hexagon-v65", "-o", o]);
    assert!(
        err.contains("unknown hexagon target") && err.contains("hexagon-v73"),
        "{err}"
    );
    let err = fails(&[
        "run",
        model,
        "--target",
        "hexagon",
        "--profile",
        "--input",
        input,
    ]);
    assert!(err.contains("qemu-hexagon"), "{err}");
    // A machine without the tools: the first missing one is named with the install command.
    let empty = tempfile::tempdir().unwrap();
    let only_clang = tempfile::tempdir().unwrap();
    let clang = tool(Command::new("sh").args(["-c", "command -v clang-19"])).stdout;
    let clang = String::from_utf8(clang).unwrap();
    std::os::unix::fs::symlink(clang.trim(), only_clang.path().join("clang-19")).unwrap();
    for (path, missing) in [
        (empty.path(), "clang-19"),
        (only_clang.path(), "qemu-hexagon"),
    ] {
        let res = Command::new(env!("CARGO_BIN_EXE_edgecc"))
            .env("PATH", path)
            .args(["run", model, "--target", "hexagon", "--input", input])
            .args(["--output-dir", out.path().to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "ran without {missing}");
        assert!(
            err.contains(&format!("cannot run `{missing}`"))
                && err.contains("apt-get install clang-19 lld-19 qemu-user"),
            "{err}"
        );
    }
}
