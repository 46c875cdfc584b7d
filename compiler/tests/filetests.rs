//! Pass filetests: `tests/filetests/<pass>/<case>.ir` is a graph in the text IR with a
//! header naming the passes to run; the graph after them is an insta snapshot
//! (`snapshots/filetests__<pass>__<case>.snap`), and with `; check: interp` the reference
//! interpreter must compute the same outputs before and after on seeded random inputs
//! (`; check: interp-step` allows integer outputs, quantized values, to differ by one
//! step: the bound `fold-requant` promises).
//!
//! ```text
//! ; pass: fold-constants, dead-code     passes in order, by registered name
//! ; check: interp                       optional
//! graph g { ... }                       see edgecc::ir::parse for the format
//! ```
//!
//! Adding a case: write the .ir file, run `INSTA_UPDATE=always cargo test -p edgecc --test
//! filetests`, review the new .snap file and commit both. A file that does not parse, names
//! an unknown pass, fails the verifier or the interpreter check, or has no (or a different)
//! snapshot fails; all failing files are listed in one message.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use edgecc::interp;
use edgecc::ir::parse::{parse, random_tensor};
use edgecc::ir::{Graph, Tensor, print::print, verify::verify};
use edgecc::passes::{self, PassManager};

/// Largest output difference allowed by `check: interp`, relative to the output's scale
/// (its largest magnitude, at least 1e-30).
const TOLERANCE: f64 = 1e-5;

/// What a file's `;` header asks for.
#[derive(Debug, PartialEq)]
struct Header {
    passes: Vec<String>,
    check_interp: bool,
    /// How far integer outputs may move (0, or 1 step with `interp-step`).
    int_tolerance: f64,
}

fn header(text: &str) -> Result<Header, String> {
    let mut passes = None;
    let mut check_interp = false;
    let mut int_tolerance = 0.0;
    for line in text.lines().map(str::trim) {
        let Some(c) = line.strip_prefix(';') else {
            continue;
        };
        let c = c.trim();
        if let Some(list) = c.strip_prefix("pass:") {
            if passes.is_some() {
                return Err("two '; pass:' lines".into());
            }
            let names: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if names.iter().any(String::is_empty) {
                return Err(format!("'; pass:{list}': an empty pass name"));
            }
            passes = Some(names);
        } else if let Some(checks) = c.strip_prefix("check:") {
            for check in checks.split(',').map(str::trim) {
                match check {
                    "interp" => check_interp = true,
                    "interp-step" => {
                        check_interp = true;
                        int_tolerance = 1.0;
                    }
                    other => {
                        return Err(format!(
                            "unknown check '{other}' (known: interp, interp-step)"
                        ));
                    }
                }
            }
        }
    }
    Ok(Header {
        passes: passes.ok_or("no '; pass: NAME, ...' header line")?,
        check_interp,
        int_tolerance,
    })
}

/// Seeded inputs for the interpreter check: input `i` draws from seed `1000 + i`.
fn inputs(g: &Graph) -> Result<Vec<Tensor>, String> {
    g.inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = g.value(v);
            random_tensor(v.dtype, v.shape.clone(), 1000 + i as u64)
                .map_err(|e| format!("input {}: {e}", v.name))
        })
        .collect()
}

/// Whether `after` computes what `before` did: same dtypes and shapes; floats within
/// [`TOLERANCE`] of the output's scale, everything else exactly.
fn same_outputs(before: &[Tensor], after: &[Tensor], int_tolerance: f64) -> Result<(), String> {
    if before.len() != after.len() {
        return Err(format!(
            "{} outputs before the passes, {} after",
            before.len(),
            after.len()
        ));
    }
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if b.dtype != a.dtype || b.shape != a.shape {
            return Err(format!(
                "output {i}: {}{:?} before, {}{:?} after",
                b.dtype, b.shape, a.dtype, a.shape
            ));
        }
        let (Some(bv), Some(av)) = (b.to_f64s(), a.to_f64s()) else {
            return Err(format!("output {i}: not numeric"));
        };
        let float = matches!(b.dtype, edgecc::ir::DType::F32 | edgecc::ir::DType::F64);
        let scale = bv.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        for (k, (x, y)) in bv.iter().zip(&av).enumerate() {
            let ok = if float {
                (x - y).abs() <= TOLERANCE * scale || (x.is_nan() && y.is_nan())
            } else {
                (x - y).abs() <= int_tolerance
            };
            if !ok {
                return Err(format!(
                    "output {i} element {k}: {x} before the passes, {y} after (scale {scale})"
                ));
            }
        }
    }
    Ok(())
}

/// Parses a filetest, runs its passes with the verifier on and its checks; returns the
/// graph's text after the passes (what the snapshot holds).
fn run_case(text: &str) -> Result<String, String> {
    let h = header(text)?;
    let mut g = parse(text).map_err(|e| format!("parse error: {e}"))?;
    verify(&g).map_err(|e| format!("the input graph: {e}"))?;
    let list = h
        .passes
        .iter()
        .map(|n| {
            passes::by_name(n).ok_or_else(|| {
                format!(
                    "unknown pass '{n}' (registered: {})",
                    passes::names().join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let before = g.clone();
    let mut pm = PassManager::new(list);
    pm.verify = true;
    pm.run(&mut g).map_err(|e| e.to_string())?;
    if h.check_interp {
        let x = inputs(&before)?;
        let want = interp::run(&before, &x).map_err(|e| format!("interpreter before: {e}"))?;
        let got = interp::run(&g, &x).map_err(|e| format!("interpreter after: {e}"))?;
        same_outputs(&want, &got, h.int_tolerance).map_err(|e| format!("check interp: {e}"))?;
    }
    Ok(print(&g))
}

fn ir_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            ir_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "ir") {
            out.push(p);
        }
    }
}

/// The snapshot name of a file: its path below `filetests/` without `.ir`, `/` → `__`.
fn snapshot_name(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("__")
}

#[test]
fn filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut files = Vec::new();
    ir_files(&root, &mut files);
    assert!(!files.is_empty(), "no .ir files under {}", root.display());
    let mut failed = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&root).expect("below the root");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{rel:?}: {e}"));
        let outcome = run_case(&text).and_then(|printed| {
            let name = snapshot_name(rel);
            catch_unwind(AssertUnwindSafe(|| {
                insta::with_settings!({
                    description => format!("tests/filetests/{}", rel.display()),
                    omit_expression => true,
                }, {
                    insta::assert_snapshot!(name, printed);
                });
            }))
            .map_err(|_| "snapshot missing or different (see the diff above)".to_string())
        });
        match outcome {
            Ok(()) => eprintln!("filetest {} ... ok", rel.display()),
            Err(e) => {
                eprintln!("filetest {} ... FAILED: {e}", rel.display());
                failed.push(format!("  {}: {e}", rel.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} filetests failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// The harness itself fails what it must.
#[test]
fn bad_filetests_fail() {
    let graph = "graph g {\n  input x: f32[2]\n  y: f32[2] = Relu(x)  # r\n  output y\n}\n";
    let no_header = run_case(graph).unwrap_err();
    assert!(no_header.contains("no '; pass:"), "{no_header}");
    let unknown = run_case(&format!("; pass: fuse-frob\n{graph}")).unwrap_err();
    assert!(unknown.contains("unknown pass 'fuse-frob'"), "{unknown}");
    let bad_check = run_case(&format!("; pass: dead-code\n; check: vibes\n{graph}")).unwrap_err();
    assert!(bad_check.contains("unknown check 'vibes'"), "{bad_check}");
    let bad_ir = run_case("; pass: dead-code\ngraph g {\n  input x f32[2]\n}\n").unwrap_err();
    assert!(bad_ir.contains("parse error: line 3"), "{bad_ir}");
    assert!(run_case(&format!("; pass: dead-code\n; check: interp\n{graph}")).is_ok());

    let t = |v: Vec<f32>| Tensor::f32(vec![v.len()], v);
    assert!(same_outputs(&[t(vec![1.0, 100.0])], &[t(vec![1.0005, 100.0])], 0.0).is_ok());
    assert!(same_outputs(&[t(vec![1.0, 100.0])], &[t(vec![1.01, 100.0])], 0.0).is_err());
    assert!(same_outputs(&[t(vec![1.0])], &[t(vec![1.0, 2.0])], 0.0).is_err());
    let i = |v: Vec<i64>| Tensor::i64(vec![v.len()], v);
    assert!(same_outputs(&[i(vec![7])], &[i(vec![8])], 0.0).is_err());
    assert!(same_outputs(&[i(vec![7])], &[i(vec![8])], 1.0).is_ok());
    assert!(same_outputs(&[i(vec![7])], &[i(vec![9])], 1.0).is_err());
    assert_eq!(
        snapshot_name(Path::new("fold-constants/basic.ir")),
        "fold-constants__basic"
    );
}
