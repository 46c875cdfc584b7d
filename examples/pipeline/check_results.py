#!/usr/bin/env python3
"""Checks that the committed record of the pipeline example is well-formed, without torch
or the models (CI runs it from scripts/test.sh; the pipeline itself is not run there):

- results/results.csv has the columns pipeline.py writes, one row per variant, numbers
  where numbers belong, sizes and latencies positive, accuracies and cosines in range,
  and every variant's agreement check "ok" under the tolerance pipeline.py's rule gives
  (fp32: 1e-4 and cosine 0.9999; int8: 1.5x onnxruntime's own spread, at least 1e-2, and
  accuracy within a point), recomputed here so a hand-loosened tolerance fails;
- results/results.md names every variant and links the plot; sizes_latency.png is a PNG;
- README.md carries results.md's tables unchanged (between its markers);
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
        "heads_total", "channels_removed", "channels_total", "float_nodes", "kernels", "aarch64_rows", "hexagon_rows"]
UNIT = ["accuracy_ort", "accuracy_edgecc_x86_64", "cosine_to_fp32_ort", "cosine_to_fp32_edgecc", "x86_64_cos_min",
        "aarch64_cos_min", "hexagon_cos_min", "accuracy_ort_literal", "ort_literal_cos_min", "cos_tolerance"]
ERRS = ["x86_64_err", "aarch64_err", "hexagon_err"]
OTHER_ERRS = ["x86_64_err_median", "x86_64_err_vs_literal", "ort_literal_err", "ort_literal_err_median",
              "aarch64_err_vs_x86_64", "hexagon_err_vs_x86_64"]
# pipeline.py's rule (TOL_FP32, COS_MIN, TOL_INT8, SPREAD, ACC_TOL)
TOL_FP32, COS_MIN, TOL_INT8, SPREAD, ACC_TOL = 1e-4, 0.9999, 1e-2, 1.5, 0.01
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
    need = ["variant", "description", "tolerance", "check"] + INTS + UNIT + ERRS + OTHER_ERRS + POSITIVE
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
            other = {c: float(r[c]) for c in OTHER_ERRS}
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
        if any(x < 0 for x in list(errs.values()) + list(other.values())) or any(x <= 0 for x in pos.values()):
            fail(f"{v}: a negative error or a non-positive latency")
        int8 = "dyn" in v or "qdq" in v
        if int8:
            want_tol = max(TOL_INT8, SPREAD * other["ort_literal_err"])
            want_cos = min(COS_MIN, 1 - SPREAD * (1 - unit["ort_literal_cos_min"]))
        else:
            want_tol, want_cos = TOL_FP32, COS_MIN
        if abs(tol - want_tol) > 1e-5 * want_tol or abs(unit["cos_tolerance"] - want_cos) > 1e-5:
            fail(f"{v}: tolerance {tol} / {unit['cos_tolerance']} is not the rule's {want_tol:.6g} / {want_cos:.6g}")
        if r["check"] != "ok" or any(x > tol * (1 + 1e-5) for x in errs.values()):
            fail(f"{v}: the agreement check did not pass ({r['check']}; tolerance {tol})")
        if any(unit[c] < want_cos - 1e-5 for c in ("x86_64_cos_min", "aarch64_cos_min", "hexagon_cos_min")):
            fail(f"{v}: a cosine to onnxruntime is below {want_cos:.6g}")
        if int8 and abs(unit["accuracy_edgecc_x86_64"] - unit["accuracy_ort"]) > ACC_TOL + 1e-6:
            fail(f"{v}: edgecc's accuracy is more than {ACC_TOL:g} from onnxruntime's")
    md = open(os.path.join(RES, "results.md"), encoding="utf-8").read()
    for n in names:
        if f"| {n} |" not in md:
            fail(f"results.md has no row for {n}")
    if "sizes_latency.png" not in md:
        fail("results.md does not show sizes_latency.png")
    with open(os.path.join(RES, "sizes_latency.png"), "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            fail("sizes_latency.png is not a PNG")
    begin = "<!-- results: written by pipeline.py's report step from results/results.md; do not edit -->"
    end = "<!-- end of results -->"
    readme = open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    if begin not in readme or end not in readme:
        fail("README.md lacks the results markers")
    block = readme.split(begin, 1)[1].split(end, 1)[0]
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## "))
    want = [("#" + line if line.startswith("## ") else line.replace("](sizes_latency.png)", "](results/sizes_latency.png)"))
            for line in lines[start:]]
    if block.strip() != "\n".join(want).strip():
        fail("README.md's results block differs from results.md (rerun the report step)")
    with open(os.path.join(RES, "details.json")) as f:
        details = json.load(f)
    for step in ("compile", "run", "latency"):
        if not set(names) <= set(details.get(step, {})):
            fail(f"details.json: step {step} lacks some variants")
    print(f"examples/pipeline/results: {len(rows)} variants, well-formed, every check ok")


if __name__ == "__main__":
    main()
