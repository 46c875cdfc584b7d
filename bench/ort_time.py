#!/usr/bin/env python3
"""Median onnxruntime latency of one model on given inputs, single-threaded, as JSON.

    python3 bench/ort_time.py model.onnx in0.npy [in1.npy ...] N [--warmup W]
    python3 bench/ort_time.py --identity NAME in.npy out.onnx   # just write the floor model

Inputs are fed to the model's graph inputs in order. Prints one JSON object on stdout:

    median_s            median wall time of sess.run(None, feed) (what most callers do)
    iobinding_median_s  the same through a pre-built IOBinding (no per-call dict/ndarray
                        conversion: the smallest Python-side overhead ORT offers)
    floor_s, floor_iobinding_s
                        the same two for a one-node Identity model on the first input:
                        the fixed cost of a call from Python, not the model's work
                        (null when the `onnx` package is missing)
    runs, warmup, ort_version

Session options: intra_op_num_threads=1, inter_op_num_threads=1, ORT_SEQUENTIAL,
ORT_ENABLE_ALL, CPUExecutionProvider. Used by `cargo run --release -p edgecc-bench --bin
latency`, which spawns it once per model and round.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def timed(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    clock = time.perf_counter
    for _ in range(runs):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return statistics.median(ts)


def identity_model(feed: dict[str, np.ndarray]) -> bytes | None:
    """A model that copies its first input: the per-call floor. None without `onnx`."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        return None
    name, arr = next(iter(feed.items()))
    elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
    x = helper.make_tensor_value_info(name, elem, list(arr.shape))
    y = helper.make_tensor_value_info("y", elem, list(arr.shape))
    g = helper.make_graph([helper.make_node("Identity", [name], ["y"])], "floor", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m.SerializeToString()


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--identity"] and len(args) == 4:
        ident = identity_model({args[1]: np.load(args[2])})
        if ident is None:
            sys.exit("--identity needs the onnx package")
        with open(args[3], "wb") as f:
            f.write(ident)
        return
    warmup = None
    if "--warmup" in args:
        i = args.index("--warmup")
        warmup = int(args[i + 1])
        del args[i : i + 2]
    if len(args) < 3:
        sys.exit(__doc__)
    model, files, runs = args[0], args[1:-1], int(args[-1])
    warmup = max(10, runs // 10) if warmup is None else warmup

    sess = session(model)
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(files):
        sys.exit(f"{model} takes {len(names)} inputs ({', '.join(names)}), {len(files)} given")
    feed = {n: np.load(f) for n, f in zip(names, files)}

    med = timed(lambda: sess.run(None, feed), runs, warmup)

    binding = sess.io_binding()
    for n, a in feed.items():
        binding.bind_cpu_input(n, a)
    for o in sess.get_outputs():
        binding.bind_output(o.name)
    med_io = timed(lambda: sess.run_with_iobinding(binding), runs, warmup)

    floor = floor_io = None
    ident = identity_model(feed)
    if ident is not None:
        fsess = session(ident)
        ffeed = dict([next(iter(feed.items()))])
        floor = timed(lambda: fsess.run(None, ffeed), runs, warmup)
        fb = fsess.io_binding()
        fb.bind_cpu_input(*next(iter(ffeed.items())))
        fb.bind_output("y")
        floor_io = timed(lambda: fsess.run_with_iobinding(fb), runs, warmup)

    print(
        json.dumps(
            {
                "median_s": med,
                "iobinding_median_s": med_io,
                "floor_s": floor,
                "floor_iobinding_s": floor_io,
                "runs": runs,
                "warmup": warmup,
                "ort_version": ort.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
