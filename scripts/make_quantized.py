#!/usr/bin/env python3
"""Writes the int8 examples onnxruntime's quantizer makes from the float ones, each with
seeded calibration data and onnxruntime's outputs on a seeded input as the reference:

- examples/models/cnn_qdq: examples/models/cnn by quantize_static, QDQ format (uint8
  activations, per-channel int8 weights). Reference: onnxruntime with all graph
  optimisations disabled (the QDQ graph as written).
- examples/models/cnn_qoperator: the same by quantize_static, QOperator format
  (QLinearConv, com.microsoft QLinearAdd/QLinearAveragePool/QLinearGlobalAveragePool/QGemm/
  QLinearSoftmax). Reference: onnxruntime with default session options (its int8 kernels).
- examples/models/encoder_qdq: examples/models/encoder by quantize_static, QDQ format
  (uint8 activations, per-tensor int8 weights), calibrated on seeded token sequences.
  Reference: default session options.
- examples/models/encoder_qoperator: the same in the QOperator format (QLinearMatMul,
  com.microsoft QLinearAdd/QLinearMul/QLinearSoftmax; Gather, Reshape and Transpose of uint8
  tensors). Reference: default options.
- examples/models/encoder_dynamic: examples/models/encoder by quantize_dynamic (int8
  weights; DynamicQuantizeLinear + MatMulInteger + Cast/Mul). Reference: default options.
- examples/models/encoder_pruned_qdq, encoder_pruned_dynamic: examples/models/encoder
  structurally pruned (see `prune_encoder`: heads and FFN channels zeroed as a pruning tool
  leaves them), then quantized like encoder_qdq (but per-channel, as pruned models are) and
  encoder_dynamic. What edgecc's dead-heads and dead-channels passes must find through the
  quantization (compiler/tests/cli.rs checks it).

The models onnxruntime runs with its int8 kernels (all but cnn_qdq) have 7-bit weights
(`reduce_range=True`): on x86 without VNNI, onnxruntime's u8×s8 kernels sum pairs of products
in saturating i16 (vpmaddubsw), so full-range int8 weights give results that depend on the
CPU (measured on an AVX2 machine: encoder_dynamic's layer0 V MatMulInteger up to 22710 off
the exact sums, which reach 25373). 7-bit weights cannot saturate (2·255·64 < 32768),
which makes the committed outputs the exact int8 results on every machine.

    python3 scripts/make_quantized.py
"""
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples/models"
CNN_SHAPE = (1, 3, 32, 32)
SEQ = 16
VOCAB = 100


class Batches(CalibrationDataReader):
    """A fixed list of feeds, one per get_next."""

    def __init__(self, feeds):
        self.batches = iter(feeds)

    def get_next(self):
        return next(self.batches, None)


def cnn_calibration():
    """Eight seeded random images, the same distribution as the cnn example's input."""
    r = np.random.RandomState(1234)
    return Batches([{"image": r.uniform(-1, 1, CNN_SHAPE).astype(np.float32)} for _ in range(8)])


def encoder_feed(r):
    """A token sequence and an attention mask masking a random-length tail."""
    ids = r.randint(0, VOCAB, size=(1, SEQ)).astype(np.int64)
    mask = np.ones((1, SEQ), dtype=np.int64)
    mask[0, r.randint(SEQ // 2, SEQ + 1):] = 0
    return {"input_ids": ids, "attention_mask": mask}


def encoder_calibration():
    r = np.random.RandomState(4321)
    return Batches([encoder_feed(r) for _ in range(16)])


def reference(out, feeds, optimized):
    """Saves the inputs and onnxruntime's outputs: with `optimized` under default session
    options (onnxruntime's own int8 kernels, what users compare against), else with graph
    optimisations off (the graph as written)."""
    opts = ort.SessionOptions()
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(out / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    outs = sess.run(None, feeds)
    for i, n in enumerate(names):
        np.save(out / f"input_{i}.npy", feeds[n])
    for i, o in enumerate(outs):
        np.save(out / f"output_{i}.npy", o)


def cnn(name, fmt, optimized, reduce_range):
    out = MODELS / name
    out.mkdir(parents=True, exist_ok=True)
    quantize_static(str(MODELS / "cnn/model.onnx"), str(out / "model.onnx"), cnn_calibration(),
                    quant_format=fmt, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, reduce_range=reduce_range)
    x = np.random.RandomState(99).uniform(-1, 1, CNN_SHAPE).astype(np.float32)
    reference(out, {"image": x}, optimized)


def encoder_input():
    """The encoder example's own committed input."""
    src = MODELS / "encoder"
    return {"input_ids": np.load(src / "input_0.npy"), "attention_mask": np.load(src / "input_1.npy")}


def encoder_qdq():
    out = MODELS / "encoder_qdq"
    out.mkdir(parents=True, exist_ok=True)
    quantize_static(str(MODELS / "encoder/model.onnx"), str(out / "model.onnx"),
                    encoder_calibration(), quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=True)
    reference(out, encoder_input(), optimized=True)


def encoder_qoperator():
    out = MODELS / "encoder_qoperator"
    out.mkdir(parents=True, exist_ok=True)
    quantize_static(str(MODELS / "encoder/model.onnx"), str(out / "model.onnx"),
                    encoder_calibration(), quant_format=QuantFormat.QOperator,
                    per_channel=False, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, reduce_range=True)
    reference(out, encoder_input(), optimized=True)


def encoder_dynamic():
    out = MODELS / "encoder_dynamic"
    out.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(MODELS / "encoder/model.onnx"), str(out / "model.onnx"),
                     weight_type=QuantType.QInt8, reduce_range=True)
    reference(out, encoder_input(), optimized=True)


def prune_encoder(path):
    """examples/models/encoder with structured pruning applied, written to `path`:

    - layer0: heads 1 and 2 removed as a pruning tool does (their Q/K/V weight columns and
      biases and their output-projection rows zeroed); FFN channels 0-15 removed (first
      projection columns and bias, second projection rows).
    - layer1: head 3 with only its output-projection rows zeroed (its V is not: a head the
      dynamic quantization must keep, see dead_heads.rs); FFN channels 48-63 with only the
      first projection's columns and bias zeroed (GELU(0) = 0).
    """
    m = onnx.load(str(MODELS / "encoder/model.onnx"))
    w = {t.name: numpy_helper.to_array(t).copy() for t in m.graph.initializer}
    d = 8  # head width
    for h in (1, 2):
        cols = slice(h * d, (h + 1) * d)
        for t in "qkv":
            w[f"layer0/{t}_w"][:, cols] = 0
            w[f"layer0/{t}_b"][cols] = 0
        w["layer0/o_w"][cols, :] = 0
    w["layer0/f1_w"][:, 0:16] = 0
    w["layer0/f1_b"][0:16] = 0
    w["layer0/f2_w"][0:16, :] = 0
    w["layer1/o_w"][3 * d:4 * d, :] = 0
    w["layer1/f1_w"][:, 48:64] = 0
    w["layer1/f1_b"][48:64] = 0
    for t in m.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(w[t.name], t.name))
    onnx.save(m, str(path))


def encoder_pruned():
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pruned.onnx"
        prune_encoder(src)
        out = MODELS / "encoder_pruned_qdq"
        out.mkdir(parents=True, exist_ok=True)
        quantize_static(str(src), str(out / "model.onnx"), encoder_calibration(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        reduce_range=True)
        reference(out, encoder_input(), optimized=True)
        out = MODELS / "encoder_pruned_dynamic"
        out.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(str(src), str(out / "model.onnx"), weight_type=QuantType.QInt8,
                         reduce_range=True)
        reference(out, encoder_input(), optimized=True)


def main():
    cnn("cnn_qdq", QuantFormat.QDQ, optimized=False, reduce_range=False)
    cnn("cnn_qoperator", QuantFormat.QOperator, optimized=True, reduce_range=True)
    encoder_qdq()
    encoder_qoperator()
    encoder_dynamic()
    encoder_pruned()


if __name__ == "__main__":
    main()
