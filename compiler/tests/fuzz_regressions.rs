//! Every input the fuzz targets found a bug with (`fuzz/regressions/<target>/`), run the
//! way its target runs it, with the outcome it must have now: an error naming what is
//! wrong, or success. A new file there without an entry in `EXPECTED` fails this test.
//! (The runtime's findings are unit tests in `runtime/src/lib.rs`; fuzz/README.md.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use edgecc::Error;
use edgecc::io::{TensorFormat, decode_tensor};
use edgecc::ir::parse::{MissingConsts, ParseOptions, parse_with};
use edgecc::onnx::{Dim, declared_type};
use edgecc::pipeline::{self, Options};

/// `(target, file, outcome)`: the outcome is `"ok"` or a piece of the error's text.
const EXPECTED: &[(&str, &str, &str)] = &[
    // The product of a Reshape's target dims overflowed in shape inference.
    (
        "onnx_import",
        "reshape_target_overflow.onnx",
        "node 'reshape' (Reshape): target shape [144115188075855873, 144115188075855873, 16] has more than 2^40 elements",
    ),
    // A declared input of 2^64 elements.
    (
        "onnx_import",
        "input_too_large.onnx",
        "input 'x': f32[4611686018427387904, 4] is more than 2^64 bytes",
    ),
    // fold-requant counted an island it then declined to rewrite (a weight scale < 0 has
    // no fixed-point multiplier) as a change, and repeated forever (unit test:
    // `an_island_without_multipliers_is_no_match_and_the_pass_ends`).
    (
        "onnx_import",
        "negative_weight_scale_requant_loop.onnx",
        "ok",
    ),
    // A Shape node without an input indexed an empty list at import.
    (
        "onnx_import",
        "shape_without_input.onnx",
        "node 'shape': Shape takes one input, not 0",
    ),
    // Split of a scalar with sizes left to the importer indexed the input's first dim.
    (
        "onnx_import",
        "split_of_a_scalar.onnx",
        "node 'split': Split (ai.onnx, opset 18): axis 0: the input is a scalar, it has no dims",
    ),
    // Found with the one above: Pad's `axes` input on a scalar, and fewer pads than two
    // per axis, indexed past the pads.
    (
        "onnx_import",
        "pad_axes_of_a_scalar.onnx",
        "node 'pad': Pad (ai.onnx, opset 18): axis 0: the input is a scalar, it has no dims",
    ),
    (
        "onnx_import",
        "pad_fewer_pads_than_axes.onnx",
        "node 'pad': Pad (ai.onnx, opset 18): 1 pads for 1 axes, not two per axis",
    ),
    // npyz allocated the header length the preamble states (4 GiB from 73 bytes).
    (
        "npy",
        "header_length_4gib.npy",
        "not a .npy file: the header is 4163446581 bytes long, but only 61 bytes follow",
    ),
    // npyz multiplied the dims unchecked.
    (
        "npy",
        "shape_overflow.npy",
        "shape [4294967296, 4294967296, 2] has more than 2^40 elements",
    ),
    // A zero dim first hid the others from the size check: a constant of shape
    // [0, 2^62, 2^62] overflowed any product over its trailing dims.
    (
        "tensor_proto",
        "zero_dim_overflow.pb",
        "initializer 't': dims [0, 4611686018427387904, 4611686018427387904] are too large",
    ),
];

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

/// What `fuzz/fuzz_targets/onnx_import.rs` does: the model in a folder of its own, every
/// symbolic input dim set to 1, `pipeline::compile`, the verifier on the graphs.
fn onnx_import(bytes: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, bytes).unwrap();
    let mut input_shapes = BTreeMap::new();
    if let Ok(model) = edgecc::onnx::decode(bytes)
        && let Some(g) = model.graph.as_ref()
    {
        for vi in &g.input {
            if let Ok((_, dims)) = declared_type(vi)
                && dims.iter().any(|d| matches!(d, Dim::Symbolic(_)))
            {
                let shape = dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(f) => *f,
                        Dim::Symbolic(_) => 1,
                    })
                    .collect();
                input_shapes.insert(vi.name.clone(), shape);
            }
        }
    }
    let opts = Options {
        input_shapes,
        name: "model".into(),
        ..Options::default()
    };
    match pipeline::compile(&path, &opts) {
        Err(Error::Internal(m)) => panic!("internal error: {m}"),
        Err(e) => Err(e.to_string()),
        Ok(c) => {
            edgecc::ir::verify::verify(&c.imported).unwrap();
            edgecc::ir::verify::verify(&c.graph).unwrap();
            Ok(())
        }
    }
}

fn tensor(bytes: &[u8], format: TensorFormat) -> Result<(), String> {
    let t = decode_tensor(bytes, format).map_err(|e| e.to_string())?;
    assert_eq!(Some(t.data.len()), edgecc::ir::checked_elements(&t.shape));
    Ok(())
}

/// What `fuzz/fuzz_targets/ir_parse.rs` checks: parse, verify, print, parse back, print
/// the same.
fn ir_parse(bytes: &[u8]) -> Result<(), String> {
    let fill = ParseOptions {
        missing_consts: MissingConsts::Fill,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let g = parse_with(text, fill).map_err(|e| e.to_string())?;
    edgecc::ir::verify::verify(&g).unwrap();
    let printed = edgecc::ir::print::print(&g);
    let again = parse_with(&printed, fill).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(printed, edgecc::ir::print::print(&again));
    Ok(())
}

#[test]
fn fuzz_regressions_have_their_expected_outcome() {
    let mut failures = Vec::new();
    let mut seen = 0;
    for target in ["onnx_import", "npy", "tensor_proto", "ir_parse"] {
        let dir = regressions().join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for path in files {
            let file = path.file_name().unwrap().to_str().unwrap();
            let Some(&(_, _, want)) = EXPECTED.iter().find(|e| e.0 == target && e.1 == file) else {
                failures.push(format!("{target}/{file}: no entry in EXPECTED"));
                continue;
            };
            seen += 1;
            let bytes = std::fs::read(&path).unwrap();
            let got = match target {
                "onnx_import" => onnx_import(&bytes),
                "npy" => tensor(&bytes, TensorFormat::Npy),
                "tensor_proto" => tensor(&bytes, TensorFormat::Pb),
                _ => ir_parse(&bytes),
            };
            match (got, want) {
                (Ok(()), "ok") => {}
                (Err(e), want) if want != "ok" && e.contains(want) => {}
                (got, want) => {
                    failures.push(format!("{target}/{file}: want {want:?}, got {got:?}"))
                }
            }
        }
    }
    assert_eq!(
        seen,
        EXPECTED.len(),
        "EXPECTED lists files that do not exist"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
