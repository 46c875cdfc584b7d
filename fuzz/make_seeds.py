#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/README.md).

    python3 fuzz/make_seeds.py            # the committed seeds: fuzz/seeds/<target>/
    python3 fuzz/make_seeds.py --full DIR # everything: DIR/<target>/ (not for git)

Sources: the example models (examples/models), the ONNX backend node tests that
`scripts/make_node_tests.py target/onnx-node-tests` writes, the filetests' text IR, and for
`--full` the text IR of every example model (`edgecc compile --emit ir`, so build edgecc
first: `cargo build -p edgecc`). The committed selection keeps small files only: example
models under 100 KB, the smallest node model per distinct set of ops (a few hundred), one
input `.pb` per (dtype, rank, raw_data) combination, the examples' `.npy` files under 8 KB
plus a hand-made set of every `.npy` dtype and layout, the filetests. Two runs write the
same files.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_TESTS = ROOT / "target" / "onnx-node-tests"
TARGETS = ["onnx_import", "npy", "tensor_proto", "ir_parse", "runtime"]


def write(out: Path, name: str, data: bytes) -> None:
    (out / name).write_bytes(data)


def onnx_import(out: Path, full: bool) -> None:
    import onnx

    for m in sorted(ROOT.glob("examples/models/*/model.onnx")):
        if full or m.stat().st_size <= 100_000:
            shutil.copy(m, out / f"example_{m.parent.name}.onnx")
    # External data: the target's folder holds weights.bin (4096 bytes) and sub/data (64).
    from onnx import TensorProto, helper

    for loc, offset, dims in [("weights.bin", 128, [4, 8]), ("sub/data", 0, [16])]:
        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
        w.data_location = TensorProto.EXTERNAL
        n = 1
        for d in dims:
            n *= d
        for k, v in [("location", loc), ("offset", str(offset)), ("length", str(4 * n))]:
            e = w.external_data.add()
            e.key, e.value = k, v
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dims[0]])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        node = (
            helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")
            if len(dims) == 2
            else helper.make_node("Add", ["x", "w"], ["y"], name="add")
        )
        g = helper.make_graph([node], "external", [x], [y], [w])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        write(out, f"external_{loc.replace('/', '_')}.onnx", m.SerializeToString())
    by_ops = collections.defaultdict(list)
    for d in sorted(NODE_TESTS.iterdir()):
        p = d / "model.onnx"
        if not p.exists():
            continue
        if full:
            shutil.copy(p, out / f"node_{d.name[5:]}.onnx")
            continue
        if p.stat().st_size > 8192:
            continue
        m = onnx.load(str(p), load_external_data=False)
        ops = tuple(sorted({n.op_type for n in m.graph.node}))
        by_ops[ops].append((p.stat().st_size, d.name))
    for _, cases in sorted(by_ops.items()):
        _, name = min(cases)
        shutil.copy(NODE_TESTS / name / "model.onnx", out / f"node_{name[5:]}.onnx")


def tensor_proto(out: Path, full: bool) -> None:
    import onnx

    seen = set()
    for d in sorted(NODE_TESTS.iterdir()):
        for pb in sorted(glob.glob(str(d / "test_data_set_0" / "*.pb"))):
            data = Path(pb).read_bytes()
            if full:
                write(out, f"node_{d.name[5:]}_{Path(pb).name}", data)
                continue
            if len(data) > 2048:
                continue
            t = onnx.TensorProto()
            try:
                t.ParseFromString(data)
            except Exception:
                continue  # a SequenceProto or OptionalProto
            if not t.dims and not t.raw_data and t.data_type == 0:
                continue
            key = (t.data_type, len(t.dims), bool(t.raw_data))
            if key not in seen:
                seen.add(key)
                write(out, f"node_{d.name[5:]}_{Path(pb).name}", data)
    for pb in sorted(ROOT.glob("examples/models/*/test_data_set_0/*.pb")):
        if full or pb.stat().st_size <= 8192:
            shutil.copy(pb, out / f"{pb.parent.parent.name}_{pb.name}")


def npy(out: Path, full: bool) -> None:
    import numpy as np

    for p in sorted(ROOT.glob("examples/models/*/*.npy")):
        if full or p.stat().st_size <= 8192:
            shutil.copy(p, out / f"{p.parent.name}_{p.name}")
    rng = np.random.default_rng(0)
    cases = {
        "f4_2x3": rng.standard_normal((2, 3)).astype("<f4"),
        "f8_4": rng.standard_normal(4),
        "i8_3": np.arange(3, dtype="<i8"),
        "i4_2x2": np.arange(4, dtype="<i4").reshape(2, 2),
        "i1_5": np.arange(-2, 3, dtype="i1"),
        "u1_1x4": np.arange(4, dtype="u1").reshape(1, 4),
        "b1_3": np.array([True, False, True]),
        "scalar_f4": np.array(1.5, dtype="<f4"),
        "empty_0x3": np.zeros((0, 3), dtype="<f4"),
        "be_f4": np.arange(3, dtype=">f4"),
        "fortran_f4": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
        "u2_unsupported": np.arange(3, dtype="<u2"),
        "f2_unsupported": np.arange(3, dtype="<f2"),
        "rank5": np.zeros((1, 1, 2, 1, 2), dtype="<f4"),
        "structured": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]),
    }
    for name, a in cases.items():
        np.save(out / f"{name}.npy", a)


def ir_parse(out: Path, full: bool) -> None:
    for f in sorted(ROOT.glob("compiler/tests/filetests/*/*.ir")):
        shutil.copy(f, out / f"{f.parent.name}__{f.name}")
    if not full:
        return
    edgecc = ROOT / "target" / "debug" / "edgecc"
    if not edgecc.exists():
        sys.exit(f"{edgecc} is missing: cargo build -p edgecc")
    with tempfile.TemporaryDirectory() as tmp:
        for m in sorted(ROOT.glob("examples/models/*/model.onnx")):
            ir = Path(tmp) / "model.ir"
            args = [str(edgecc), "compile", str(m), "--target", "x86_64", "--emit", "ir",
                    "-o", str(ir)]
            if m.parent.name == "symbolic":
                continue  # needs --input-shape
            subprocess.run(args, check=True, capture_output=True)
            shutil.copy(ir, out / f"example_{m.parent.name}.ir")


def runtime(out: Path, full: bool) -> None:
    # Bytes the target reads as choices; any will do, libFuzzer finds its way from them.
    import random

    r = random.Random(0)
    for i in range(16):
        write(out, f"random_{i:02}", bytes(r.randrange(256) for _ in range(64 * (i + 1))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", metavar="DIR", help="write the full corpora to DIR")
    a = ap.parse_args()
    if not NODE_TESTS.exists():
        sys.exit(f"{NODE_TESTS} is missing: python3 scripts/make_node_tests.py {NODE_TESTS}")
    base = Path(a.full) if a.full else ROOT / "fuzz" / "seeds"
    for t in TARGETS:
        out = base / t
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        globals()[t](out, a.full is not None)
        print(f"{out}: {len(os.listdir(out))} files")


if __name__ == "__main__":
    main()
