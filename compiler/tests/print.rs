//! The text IR of the example models after the default passes: a reviewed snapshot, so a
//! change in import, inference or passes shows up as a diff.

use std::path::Path;

fn printed(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/models")
        .join(name)
        .join("model.onnx");
    let (_, mut g) = edgecc::onnx::load(&path, &Default::default()).unwrap();
    edgecc::passes::PassManager::default_pipeline()
        .run(&mut g)
        .unwrap();
    edgecc::ir::print::print(&g)
}

#[test]
fn mlp() {
    insta::assert_snapshot!(printed("mlp"));
}

#[test]
fn cnn() {
    insta::assert_snapshot!(printed("cnn"));
}

#[test]
fn conv1d() {
    insta::assert_snapshot!(printed("conv1d"));
}

/// Every example model, as imported and after the default passes (both from the compile
/// pipeline), prints, parses back (weights filled with zeros: the text holds only small
/// constants) and prints the same, byte for byte.
#[test]
fn example_models_round_trip_through_the_parser() {
    use edgecc::ir::parse::{MissingConsts, ParseOptions, parse_with};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models");
    let mut models: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    models.sort();
    assert!(models.len() >= 11, "{models:?}");
    let fill = ParseOptions {
        missing_consts: MissingConsts::Fill,
    };
    for m in models {
        let mut opts = edgecc::pipeline::Options {
            name: "model".into(),
            ..Default::default()
        };
        if m.ends_with("symbolic") {
            opts.input_shapes.insert("x".into(), vec![3, 16]);
        }
        // The graph as imported and after the passes; no lowering, so models without
        // compiled kernels yet (the QDQ example) round-trip too.
        let (_, imported) =
            edgecc::onnx::load(&m.join("model.onnx"), &opts.import_options()).unwrap();
        let mut optimized = imported.clone();
        edgecc::passes::PassManager::default_pipeline()
            .run(&mut optimized)
            .unwrap();
        let graphs = [("imported", imported), ("after passes", optimized)];
        for (stage, g) in &graphs {
            let text = edgecc::ir::print::print(g);
            let back = parse_with(&text, fill)
                .unwrap_or_else(|e| panic!("{} ({stage}): {e}", m.display()));
            edgecc::ir::verify::verify(&back).unwrap();
            assert_eq!(
                edgecc::ir::print::print(&back),
                text,
                "{} ({stage})",
                m.display()
            );
        }
    }
}
