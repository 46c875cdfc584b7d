#!/usr/bin/env bash
# Installs what edgecc's demo and tests need, when missing: the aarch64 cross toolchain and
# qemu-user, clang-19/lld-19/llvm-19 for the Hexagon target (Debian packages), and onnx/onnxruntime/numpy (PyPI, pinned) for the scripts
# that make and check the example models. Idempotent; needs root (or sudo) for apt.
set -euo pipefail

need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || need_apt+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v cc >/dev/null || need_apt+=(gcc)
# The Hexagon target's tests: clang-19 compiles the emitted C, ld.lld-19 links it,
# qemu-hexagon (in qemu-user) runs it.
command -v clang-19 >/dev/null || need_apt+=(clang-19)
command -v ld.lld-19 >/dev/null || need_apt+=(lld-19)
# llvm-nm-19 / llvm-readelf-19 / llvm-size-19: the Hexagon link tests and `hexcount`
# (clang-19 only recommends llvm-19).
command -v llvm-nm-19 >/dev/null || need_apt+=(llvm-19)
command -v qemu-hexagon >/dev/null || need_apt+=(qemu-user)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ "${1:-}" = "--python" ]; then
  if ! python3 -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
    echo "installing Python packages from scripts/requirements.txt"
    python3 -m pip install -q -r "$(dirname "$0")/requirements.txt"
  fi
fi
