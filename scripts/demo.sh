#!/usr/bin/env bash
# The README's first command: builds edgecc, compiles the example CNN for aarch64, runs it
# under qemu-aarch64 and compares it with the reference interpreter and onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build -q -p edgecc
edgecc=target/debug/edgecc
model=examples/models/cnn/model.onnx
out=build/demo
mkdir -p "$out"
set -x
$edgecc inspect $model
$edgecc compile $model --target aarch64-neon --name cnn -o $out/cnn.o
$edgecc run $model --target aarch64-neon --input image=examples/models/cnn/input_0.npy --output-dir $out/aarch64
$edgecc run $model --reference --input image=examples/models/cnn/input_0.npy --output-dir $out/reference
$edgecc compare $out/aarch64 $out/reference
# onnxruntime's outputs for the same input, committed next to the model:
$edgecc compare $out/aarch64/logits.npy examples/models/cnn/output_0.npy
$edgecc compare $out/aarch64/probs.npy examples/models/cnn/output_1.npy
