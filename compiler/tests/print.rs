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
