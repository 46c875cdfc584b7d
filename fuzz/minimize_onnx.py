#!/usr/bin/env python3
"""Minimizes a crashing ONNX input structurally (libFuzzer's byte-level `tmin` rarely gets
past protobuf's length prefixes): drops nodes, outputs, initializers, inputs, value infos,
attributes and metadata one at a time while the fuzz target still fails the same way.

    python3 fuzz/minimize_onnx.py TARGET_BINARY CRASH OUT [--signature TEXT] [--timeout S]

The signature defaults to the failure's first line (`panicked at FILE:LINE`, a sanitizer
report or libFuzzer's out-of-memory/timeout line); a candidate counts only when the
target fails with the same one.
"""

import argparse
import re
import subprocess
import sys
import tempfile

import onnx

SIG = re.compile(
    r"(panicked at [^\n]*|ERROR: AddressSanitizer: [\w-]+|ERROR: libFuzzer: [\w-]+)"
)


TIMEOUT = 20


def failure(binary: str, data: bytes) -> str | None:
    with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
        f.write(data)
        f.flush()
        p = subprocess.run(
            [binary, "-rss_limit_mb=2048", "-malloc_limit_mb=1024", f"-timeout={TIMEOUT}", f.name],
            capture_output=True,
            text=True,
            errors="replace",
        )
    if p.returncode == 0:
        return None
    m = SIG.search(p.stderr)
    return m.group(1) if m else "failed"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("crash")
    ap.add_argument("out")
    ap.add_argument("--signature")
    ap.add_argument("--timeout", type=int, default=20, help="seconds that count as a hang")
    a = ap.parse_args()
    global TIMEOUT
    TIMEOUT = a.timeout
    data = open(a.crash, "rb").read()
    sig = a.signature or failure(a.binary, data)
    if sig is None:
        sys.exit("the input does not fail")
    print("signature:", sig)
    model = onnx.ModelProto()
    model.ParseFromString(data)

    def ok(m: onnx.ModelProto) -> bool:
        s = failure(a.binary, m.SerializeToString())
        return s is not None and sig in s

    def shrink_list(get):
        changed = False
        i = len(get(model)) - 1
        while i >= 0:
            cand = onnx.ModelProto()
            cand.CopyFrom(model)
            del get(cand)[i]
            if ok(cand):
                model.CopyFrom(cand)
                changed = True
            i -= 1
        return changed

    for field in ("doc_string", "producer_name", "producer_version", "domain"):
        cand = onnx.ModelProto()
        cand.CopyFrom(model)
        cand.ClearField(field)
        if ok(cand):
            model.CopyFrom(cand)
    while True:
        changed = False
        for get in (
            lambda m: m.graph.node,
            lambda m: m.graph.output,
            lambda m: m.graph.initializer,
            lambda m: m.graph.input,
            lambda m: m.graph.value_info,
            lambda m: m.metadata_props,
            lambda m: m.functions,
        ):
            changed |= shrink_list(get)
        for k in range(len(model.graph.node)):
            changed |= shrink_list(lambda m, k=k: m.graph.node[k].attribute)
        if not changed:
            break
    out = model.SerializeToString()
    open(a.out, "wb").write(out)
    print(f"{len(data)} -> {len(out)} bytes: {a.out}")


if __name__ == "__main__":
    main()
