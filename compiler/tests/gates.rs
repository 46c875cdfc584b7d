//! Regression gates: a firmware build sized for one artifact must keep fitting the next.
//!
//! Every example model is compiled with the `edgecc` binary for aarch64-neon and x86_64
//! (and the int8 and two float models for hexagon-v66 with HVX, whose code size is the
//! `.text` clang-19 makes of the C), and its figures are held against the ones committed
//! in `gates.json` beside this file:
//!
//! - the arena may not grow by more than 3 %, the code (`.text`, apart from the weights)
//!   by more than 5 %;
//! - a figure that shrank by more than that fails too, so that the committed figure
//!   keeps the gain instead of leaving room for a later regression;
//! - the runtime crate's code (`.text` of its release rlib on the host) has a ceiling.
//!
//! An intended change updates the figures in the same commit, so the review sees them:
//! `EDGECC_UPDATE_GATES=1 cargo test -p edgecc --test gates` rewrites `gates.json` with
//! what it measured (and fails, so that a CI run never updates silently).
//!
//! Determinism: every compile runs twice, in two processes, and the artifacts (object or
//! C, header, manifest) must be byte-identical; the second compile also runs from another
//! working directory with a relative model path, which may change only the manifest's
//! `source`. The compiler uses no threads (Cranelift compiles the kernels one after the
//! other), so there is no thread count to vary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// Allowed change either way, in per mille.
const ARENA_GROWTH: u64 = 30;
const CODE_GROWTH: u64 = 50;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn gates_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gates.json")
}

/// Extra `compile` arguments some models need (symbolic dimensions).
fn model_args(name: &str) -> Vec<String> {
    match name {
        "symbolic" => vec!["--input-shape".into(), "x=3x16".into()],
        _ => vec![],
    }
}

/// The example models, by folder name.
fn models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("examples/models"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path()
                .join("model.onnx")
                .exists()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

/// The models whose Hexagon build is gated too: every int8 example and two float ones.
fn hexagon_models() -> Vec<String> {
    models()
        .into_iter()
        .filter(|m| {
            m.ends_with("_qdq")
                || m.ends_with("_qoperator")
                || m.ends_with("_dynamic")
                || m == "cnn"
                || m == "encoder"
        })
        .collect()
}

/// The artifact files of one compile, by name, with the manifest's `source` removed (the
/// only field that names the caller's path).
fn artifacts(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let mut bytes = std::fs::read(&p).unwrap();
        if name.ends_with(".json") {
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            v["model"]["source"] = Value::Null;
            bytes = serde_json::to_vec(&v).unwrap();
        }
        files.insert(name, bytes);
    }
    files
}

/// Compiles `model` for `target` twice (the second time from another working directory,
/// with a relative path), checks the artifacts are identical, and returns the manifest.
fn compile_twice(model: &str, target: &str, out: &str) -> Value {
    let src = root()
        .join("examples/models")
        .join(model)
        .join("model.onnx");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (i, d) in dirs.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgecc"));
        if i == 0 {
            cmd.arg("compile").arg(&src);
        } else {
            cmd.current_dir(root().join("examples/models").join(model))
                .args(["compile", "model.onnx"]);
        }
        cmd.args(["--target", target, "--name", "gated", "-o"])
            .arg(d.path().join(out))
            .args(model_args(model));
        let o = cmd.output().expect("run edgecc");
        assert!(
            o.status.success(),
            "{model} for {target}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (a, b) = (artifacts(dirs[0].path()), artifacts(dirs[1].path()));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{model} for {target}: different files"
    );
    for (name, bytes) in &a {
        assert!(
            bytes == &b[name],
            "{model} for {target}: {name} differs between two compiles"
        );
    }
    let manifest = std::fs::read(dirs[0].path().join(Path::new(out).with_extension("json")));
    let mut m: Value = serde_json::from_slice(&manifest.unwrap()).unwrap();
    if target.starts_with("hexagon") {
        m["artifact"]["text_bytes"] = json!(hexagon_text(&dirs[0].path().join(out)));
    }
    m
}

/// `.text` bytes of the Hexagon C compiled as `run` and the docs build it (v66 with HVX).
fn hexagon_text(c: &Path) -> u64 {
    let obj = c.with_extension("o");
    let st = Command::new("clang-19")
        .args(["--target=hexagon", "-mv66", "-mhvx", "-mhvx-length=128b"])
        .args(["-O2", "-ffreestanding", "-c"])
        .arg(c)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("clang-19 (scripts/install-deps.sh installs it)");
    assert!(st.success(), "clang-19 -c {}", c.display());
    text_bytes(&std::fs::read(&obj).unwrap())
}

/// The summed size of the `.text*` sections of an ELF object, or of every object in an
/// archive (an rlib).
fn text_bytes(data: &[u8]) -> u64 {
    use object::read::archive::ArchiveFile;
    use object::{Object, ObjectSection};
    let elf = |d: &[u8]| -> u64 {
        let f = object::File::parse(d).expect("an object file");
        f.sections()
            .filter(|s| s.name().is_ok_and(|n| n.starts_with(".text")))
            .map(|s| s.size())
            .sum()
    };
    match ArchiveFile::parse(data) {
        Ok(a) => a
            .members()
            .map(|m| m.unwrap())
            .filter(|m| m.name().ends_with(b".o"))
            .map(|m| elf(m.data(data).unwrap()))
            .sum(),
        Err(_) => elf(data),
    }
}

/// `.text` of the runtime crate built for release on the host, in its own target folder
/// (no lock shared with the cargo running this test).
fn runtime_text() -> u64 {
    let dir = root().join("target/gates-runtime");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--quiet", "--release", "-p", "edgecc-runtime"])
        .arg("--target-dir")
        .arg(&dir)
        .status()
        .expect("run cargo");
    assert!(st.success(), "cargo build -p edgecc-runtime --release");
    text_bytes(&std::fs::read(dir.join("release/libedgecc_runtime.rlib")).unwrap())
}

/// `measured` against `committed` within `per_mille` either way; the message if not.
fn gate(what: &str, measured: u64, committed: Option<u64>, per_mille: u64) -> Option<String> {
    let Some(c) = committed else {
        return Some(format!("{what}: {measured}, no committed figure"));
    };
    let change = 100.0 * (measured as f64 / c.max(1) as f64 - 1.0);
    if measured * 1000 > c * (1000 + per_mille) {
        Some(format!(
            "{what} grew from {c} to {measured} (+{change:.1} %, gate {} %)",
            per_mille / 10
        ))
    } else if measured * 1000 < c * (1000 - per_mille) {
        Some(format!(
            "{what} shrank from {c} to {measured} ({change:.1} %): commit the smaller figure"
        ))
    } else {
        None
    }
}

#[test]
fn arena_and_code_sizes_hold_and_compiles_are_deterministic() {
    let committed: Value = std::fs::read(gates_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(json!({}));
    let mut measured = json!({
        "_about": "Committed figures of the regression gates (compiler/tests/gates.rs): \
                   arena and code bytes per example model and target, the runtime crate's \
                   .text. Update with EDGECC_UPDATE_GATES=1 cargo test -p edgecc --test gates.",
        "models": {},
    });
    let mut failures = vec![];
    let hexagon = hexagon_models();
    for model in models() {
        let mut targets: Vec<(&str, &str)> =
            vec![("aarch64-neon", "model.o"), ("x86_64", "model.o")];
        if hexagon.contains(&model) {
            targets.push(("hexagon", "model.c"));
        }
        for (target, out) in targets {
            let m = compile_twice(&model, target, out);
            let arena = m["arena"]["size"].as_u64().unwrap();
            let code = if target == "hexagon" {
                m["artifact"]["text_bytes"].as_u64().unwrap()
            } else {
                m["artifact"]["code_bytes"].as_u64().unwrap()
            };
            let was = &committed["models"][&model][target];
            let what = format!("{model} for {target}");
            failures.extend(gate(
                &format!("{what}: arena"),
                arena,
                was["arena"].as_u64(),
                ARENA_GROWTH,
            ));
            failures.extend(gate(
                &format!("{what}: code"),
                code,
                was["code"].as_u64(),
                CODE_GROWTH,
            ));
            measured["models"][&model][target] = json!({ "arena": arena, "code": code });
        }
    }
    let rt = runtime_text();
    let ceiling = committed["runtime_text_ceiling"].as_u64();
    match ceiling {
        Some(c) if rt <= c => {}
        Some(c) => failures.push(format!("the runtime's .text is {rt} bytes, over its {c}")),
        None => failures.push(format!("the runtime's .text is {rt} bytes, no ceiling")),
    }
    // The ceiling: what was measured, plus 5 %, unless an update is asked for below it.
    measured["runtime_text_bytes"] = json!(rt);
    measured["runtime_text_ceiling"] = json!(rt + rt / 20);
    if std::env::var_os("EDGECC_UPDATE_GATES").is_some() {
        let mut text = serde_json::to_string_pretty(&measured).unwrap();
        text.push('\n');
        std::fs::write(gates_file(), text).unwrap();
        panic!(
            "wrote {} ({} differences before); commit it",
            gates_file().display(),
            failures.len()
        );
    }
    assert!(
        failures.is_empty(),
        "regression gates failed (an intended change updates compiler/tests/gates.json: \
         EDGECC_UPDATE_GATES=1 cargo test -p edgecc --test gates):\n{}",
        failures.join("\n")
    );
}

/// The gate itself: growth within the tolerance passes, past it fails, and so does a
/// shrink past it (the committed figure must keep the gain).
#[test]
fn gates_fail_past_their_tolerance_both_ways() {
    assert_eq!(gate("a", 103, Some(100), 30), None);
    assert!(gate("a", 104, Some(100), 30).unwrap().contains("grew"));
    assert_eq!(gate("a", 97, Some(100), 30), None);
    assert!(gate("a", 96, Some(100), 30).unwrap().contains("shrank"));
    assert!(gate("a", 1, None, 30).unwrap().contains("no committed"));
}
