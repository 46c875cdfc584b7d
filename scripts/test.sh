#!/usr/bin/env bash
# Installs what the tests need (Debian and PyPI packages, when missing) and runs every test.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --python
# The committed example models and onnxruntime references must be what the script makes.
python3 scripts/make_models.py --check
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The ONNX backend node tests, written once per pinned onnx version (tests/tests/conformance.rs).
python3 scripts/make_node_tests.py target/onnx-node-tests
cargo test --workspace
# The fuzz targets build, and the inputs fuzzing found bugs with stay fixed (fuzz/README.md).
bash scripts/fuzz-smoke.sh
