#!/usr/bin/env bash
# Installs what the tests need (Debian and PyPI packages, when missing) and runs every test.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --python
# The committed example models and onnxruntime references must be what the script makes.
python3 scripts/make_models.py --check
# The committed record of the pipeline example (examples/pipeline/results) is well-formed and
# every variant's agreement check passed; the pipeline itself (torch, minutes) is not run here.
python3 examples/pipeline/check_results.py
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The ONNX backend node tests, written once per pinned onnx version (tests/tests/conformance.rs).
python3 scripts/make_node_tests.py target/onnx-node-tests
cargo test --workspace
# The fuzz targets build, and the inputs fuzzing found bugs with stay fixed (fuzz/README.md).
bash scripts/fuzz-smoke.sh
