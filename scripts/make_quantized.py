#!/usr/bin/env python3
"""Writes examples/models/cnn_qdq: examples/models/cnn quantized by onnxruntime's
quantize_static in the QDQ format (uint8 activations, per-channel int8 weights), calibrated
on seeded random images, with onnxruntime's outputs on a seeded input as the reference.

    python3 scripts/make_quantized.py
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "examples/models/cnn/model.onnx"
OUT = ROOT / "examples/models/cnn_qdq"
SHAPE = (1, 3, 32, 32)


class Reader(CalibrationDataReader):
    """Eight seeded random images, the same distribution as the cnn example's input."""

    def __init__(self):
        r = np.random.RandomState(1234)
        self.batches = iter([{"image": r.uniform(-1, 1, SHAPE).astype(np.float32)} for _ in range(8)])

    def get_next(self):
        return next(self.batches, None)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    quantize_static(str(SRC), str(OUT / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    x = np.random.RandomState(99).uniform(-1, 1, SHAPE).astype(np.float32)
    opts = ort.SessionOptions()
    # Unoptimised, so onnxruntime evaluates the QDQ graph as written (no fused int8 kernels).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(OUT / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"image": x})
    np.save(OUT / "input_0.npy", x)
    for i, o in enumerate(outs):
        np.save(OUT / f"output_{i}.npy", o)


if __name__ == "__main__":
    main()
