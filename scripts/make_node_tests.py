#!/usr/bin/env python3
"""Writes the ONNX backend node tests to OUT_DIR in the classic on-disk layout.

    python3 scripts/make_node_tests.py target/onnx-node-tests

Current `onnx` wheels no longer ship `onnx/backend/test/data/node/`; they build the cases in
memory (`onnx.backend.test.loader.load_node_model_tests()`), some from random inputs. This
script pins the `onnx` version (the one in scripts/requirements.txt, checked at start), seeds
numpy, and writes every case as

    OUT_DIR/<test>/model.onnx
    OUT_DIR/<test>/test_data_set_<i>/input_<k>.pb, output_<k>.pb

exactly as onnx's own `backend-test-tools generate-data` did (TensorProto for tensors,
SequenceProto / OptionalProto for sequence and optional values). Two runs give identical
bytes. Nothing is skipped silently: a case that cannot be written is listed in
OUT_DIR/SKIPPED.txt with the reason (the file is always written, empty when nothing was
skipped). OUT_DIR/STAMP records the onnx and numpy versions and this script's hash; when it
matches, the script returns at once (CI and scripts/test.sh call it every time).

The conformance runner is tests/tests/conformance.rs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import sys
import traceback
import warnings
from pathlib import Path

SEED = 0
HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"


def pinned_onnx_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        m = re.match(r"^\s*onnx\s*==\s*([^\s;#]+)", line)
        if m:
            return m.group(1)
    sys.exit(f"make_node_tests.py: no `onnx==VERSION` pin in {REQUIREMENTS}")


def stamp_text(onnx_version: str, numpy_version: str) -> str:
    script_hash = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return (
        f"onnx {onnx_version}\n"
        f"numpy {numpy_version}\n"
        f"seed {SEED}\n"
        f"script-sha256 {script_hash}\n"
    )


def write_value(path: Path, value, vi) -> None:
    """Serializes one input or output like onnx's generate_data: by the declared type."""
    from onnx import TensorProto, numpy_helper

    kind = vi.type.WhichOneof("value")
    if kind == "map_type":
        proto = numpy_helper.from_dict(value, vi.name)
    elif kind == "sequence_type":
        proto = numpy_helper.from_list(value, vi.name)
    elif kind == "optional_type":
        proto = numpy_helper.from_optional(value, vi.name)
    elif kind == "tensor_type":
        if isinstance(value, TensorProto):
            proto = value
        else:
            proto = numpy_helper.from_array(value, vi.name)
    else:
        raise ValueError(f"value '{vi.name}' has an unsupported type kind {kind!r}")
    path.write_bytes(proto.SerializeToString(deterministic=True))


def write_case(case, out: Path) -> None:
    model = case.model
    if model is None:
        raise ValueError("the case has no in-memory model")
    if not case.data_sets:
        raise ValueError("the case has no data sets")
    out.mkdir(parents=True)
    (out / "model.onnx").write_bytes(model.SerializeToString(deterministic=True))
    graph = model.graph
    for i, (inputs, outputs) in enumerate(case.data_sets):
        ds = out / f"test_data_set_{i}"
        ds.mkdir()
        if len(inputs) > len(graph.input) or len(outputs) > len(graph.output):
            raise ValueError(
                f"data set {i} has {len(inputs)} inputs / {len(outputs)} outputs, "
                f"the graph declares {len(graph.input)} / {len(graph.output)}"
            )
        for k, value in enumerate(inputs):
            write_value(ds / f"input_{k}.pb", value, graph.input[k])
        for k, value in enumerate(outputs):
            write_value(ds / f"output_{k}.pb", value, graph.output[k])


def generate(out_dir: Path, stamp: str) -> tuple[int, list[tuple[str, str]]]:
    import numpy as np

    # The cases draw their random inputs from numpy's global generator as the modules are
    # imported, in a fixed (alphabetical) order.
    np.random.seed(SEED)
    from onnx.backend.test.loader import load_node_model_tests

    # The generators divide by zero and overflow on purpose; that is not our noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = sys.stdout
        sys.stdout = io.StringIO()
        try:
            cases = load_node_model_tests()
        finally:
            sys.stdout = saved

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    skipped: list[tuple[str, str]] = []
    written = 0
    seen: set[str] = set()
    for case in cases:
        name = case.name
        if name in seen or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            skipped.append((name, "duplicate or unsafe test name"))
            continue
        seen.add(name)
        try:
            write_case(case, tmp / name)
            written += 1
        except Exception as e:  # noqa: BLE001 - every failure is listed, never hidden
            shutil.rmtree(tmp / name, ignore_errors=True)
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            skipped.append((name, last.replace("\n", " ")))
    skipped.sort()
    (tmp / "SKIPPED.txt").write_text("".join(f"{n}\t{r}\n" for n, r in skipped))
    (tmp / "STAMP").write_text(stamp + f"cases {written}\nskipped {len(skipped)}\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return written, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path, help="where to write the cases")
    ap.add_argument(
        "--force", action="store_true", help="regenerate even if the stamp matches"
    )
    args = ap.parse_args()

    want = pinned_onnx_version()
    try:
        import numpy
        import onnx
    except ImportError as e:
        sys.exit(
            f"make_node_tests.py: {e}; install the pinned packages with "
            f"`pip install -r {REQUIREMENTS}`"
        )
    if onnx.__version__ != want:
        sys.exit(
            f"make_node_tests.py: onnx {onnx.__version__} is installed but "
            f"{REQUIREMENTS.name} pins onnx=={want}; the node tests differ between "
            f"versions. Run `pip install -r {REQUIREMENTS}`."
        )

    out_dir: Path = args.out_dir
    stamp = stamp_text(onnx.__version__, numpy.__version__)
    stamp_file = out_dir / "STAMP"
    if (
        not args.force
        and stamp_file.is_file()
        and stamp_file.read_text().startswith(stamp)
    ):
        print(f"{out_dir}: node tests of onnx {onnx.__version__} already there")
        return

    written, skipped = generate(out_dir, stamp)
    print(
        f"{out_dir}: wrote {written} node tests of onnx {onnx.__version__} "
        f"(numpy seed {SEED}); {len(skipped)} skipped"
        + (f", listed in {out_dir / 'SKIPPED.txt'}" if skipped else "")
    )
    for name, reason in skipped:
        print(f"  skipped {name}: {reason}", file=sys.stderr)


if __name__ == "__main__":
    main()
