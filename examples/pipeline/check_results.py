#!/usr/bin/env python3
"""Checks that the committed record of the pipeline example is well-formed, without torch
or the models (CI runs it from scripts/test.sh; the pipeline itself is not run there):

- results/results.csv has the columns pipeline.py writes, one row per variant, numbers
  where numbers belong, sizes and latencies positive, accuracies and cosines in range,
  and every variant's agreement check "ok";
- results/results.md names every variant and links the plot; sizes_latency.png is a PNG;
- results/details.json parses and covers the same variants.

    python3 examples/pipeline/check_results.py
"""
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "results")

INTS = ["onnx_bytes", "x86_64_code_bytes", "x86_64_weight_bytes", "aarch64_code_bytes", "aarch64_weight_bytes",
        "hexagon_text_bytes", "hexagon_rodata_bytes", "arena_bytes", "arena_lower_bound", "heads_removed",
        "heads_total", "channels_removed", "channels_total", "float_nodes", "kernels"]
UNIT = ["accuracy_ort", "accuracy_edgecc_x86_64", "cosine_to_fp32_ort", "cosine_to_fp32_edgecc", "x86_64_cos_min",
        "aarch64_cos_min", "hexagon_cos_min"]
ERRS = ["x86_64_err", "aarch64_err", "hexagon_err"]
POSITIVE = ["edgecc_ms", "ort_ms", "edgecc_over_ort"]


def fail(msg):
    sys.exit(f"examples/pipeline/results: {msg}")


def main():
    path = os.path.join(RES, "results.csv")
    if not os.path.exists(path):
        fail("results.csv is missing (run examples/pipeline/pipeline.py)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        fail("results.csv has no rows")
    need = ["variant", "description", "tolerance", "check"] + INTS + UNIT + ERRS + POSITIVE
    missing = [c for c in need if c not in rows[0]]
    if missing:
        fail(f"results.csv lacks columns {missing}")
    names = [r["variant"] for r in rows]
    if len(set(names)) != len(names) or "fp32" not in names:
        fail(f"variants must be unique and include fp32: {names}")
    for r in rows:
        v = r["variant"]
        try:
            ints = {c: int(r[c]) for c in INTS}
            unit = {c: float(r[c]) for c in UNIT}
            errs = {c: float(r[c]) for c in ERRS}
            pos = {c: float(r[c]) for c in POSITIVE}
            tol = float(r["tolerance"])
        except ValueError as e:
            fail(f"{v}: not a number: {e}")
        if any(ints[c] <= 0 for c in INTS if c.endswith("bytes") or c == "kernels"):
            fail(f"{v}: a size is not positive")
        if ints["arena_bytes"] < ints["arena_lower_bound"]:
            fail(f"{v}: arena below its lower bound")
        if not (0 <= ints["heads_removed"] <= ints["heads_total"] and 0 <= ints["channels_removed"] <= ints["channels_total"]):
            fail(f"{v}: removed more heads or channels than there are")
        if any(not -1.0 <= x <= 1.0 + 1e-6 for x in unit.values()):
            fail(f"{v}: an accuracy or cosine is out of range")
        if any(x < 0 for x in errs.values()) or any(x <= 0 for x in pos.values()):
            fail(f"{v}: a negative error or a non-positive latency")
        if r["check"] != "ok" or any(x > tol for x in errs.values()):
            fail(f"{v}: the agreement check did not pass ({r['check']}; tolerance {tol})")
    md = open(os.path.join(RES, "results.md"), encoding="utf-8").read()
    for n in names:
        if f"| {n} |" not in md:
            fail(f"results.md has no row for {n}")
    if "sizes_latency.png" not in md:
        fail("results.md does not show sizes_latency.png")
    with open(os.path.join(RES, "sizes_latency.png"), "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            fail("sizes_latency.png is not a PNG")
    with open(os.path.join(RES, "details.json")) as f:
        details = json.load(f)
    for step in ("compile", "run", "latency"):
        if not set(names) <= set(details.get(step, {})):
            fail(f"details.json: step {step} lacks some variants")
    print(f"examples/pipeline/results: {len(rows)} variants, well-formed, every check ok")


if __name__ == "__main__":
    main()
