#!/usr/bin/env python3
"""Generate edgecc's example / test ONNX models and onnxruntime reference outputs.

Usage:
    python3 scripts/make_models.py            # (re)write examples/models/ and tests/data/
    python3 scripts/make_models.py --check    # regenerate into a temp dir, compare with the
                                              # committed files, re-run onnxruntime on them
    python3 scripts/make_models.py --stats    # also print per-node activation statistics

Requirements: onnx (1.23.x), onnxruntime, numpy (ml_dtypes comes with onnx).

Determinism: all random values come from numpy's legacy ``RandomState`` (its stream is
frozen across numpy versions), models are serialized with ``SerializeToString`` (no
external-data rewriting), and nothing depends on time, paths or dict ordering.  The only
machine-dependent files are onnxruntime outputs (``output_*.npy`` / ``output_*.pb``), which
``--check`` compares with a tolerance instead of byte-for-byte.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
PRODUCER = "edgecc-examples"
PRODUCER_VERSION = "1"
IR_VERSION = 9
OPSET = 17
SEED = 20240601

# Output files (onnxruntime results) may differ in the last ulp between CPUs / ORT builds.
CHECK_RTOL = 1e-5
CHECK_ATOL = 1e-6


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def rng(tag: str) -> np.random.RandomState:
    """Independent deterministic stream per model (adding a model never shifts others)."""
    return np.random.RandomState((SEED + sum(ord(c) * 131 ** i for i, c in enumerate(tag))) % 2**32)


def he(r: np.random.RandomState, shape, fan_in: int) -> np.ndarray:
    return (r.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def uniform(r: np.random.RandomState, shape, lo: float, hi: float) -> np.ndarray:
    return r.uniform(lo, hi, shape).astype(np.float32)


def init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def make_model(graph: onnx.GraphProto, opset: int = OPSET, ir_version: int = IR_VERSION) -> onnx.ModelProto:
    m = helper.make_model(
        graph,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        opset_imports=[helper.make_opsetid("", opset)],
    )
    m.ir_version = ir_version
    return m


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def save_model(path: Path, model: onnx.ModelProto) -> None:
    # Plain serialization: onnx.save_model may rewrite external-data fields.
    write_bytes(path, model.SerializeToString())


def save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)


def ort_session(model_path: Path, optimize: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Reference = plain op-by-op semantics (no Conv+BN folding etc.).
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.log_severity_level = 3
    return ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])


def run_ort(model_path: Path, inputs: list[np.ndarray], optimize: bool = False) -> list[np.ndarray]:
    sess = ort_session(model_path, optimize)
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), inputs)}
    return sess.run(None, feeds)


def write_reference(model_dir: Path, model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run onnxruntime on model_dir/model.onnx and write .npy + ONNX test_data_set_0/*.pb."""
    outputs = run_ort(model_dir / "model.onnx", inputs)
    ds = model_dir / "test_data_set_0"
    for i, (vi, a) in enumerate(zip(model.graph.input, inputs)):
        save_npy(model_dir / f"input_{i}.npy", a)
        write_bytes(ds / f"input_{i}.pb", numpy_helper.from_array(a, vi.name).SerializeToString())
    for i, (vi, a) in enumerate(zip(model.graph.output, outputs)):
        save_npy(model_dir / f"output_{i}.npy", a)
        write_bytes(ds / f"output_{i}.pb", numpy_helper.from_array(a, vi.name).SerializeToString())
    return outputs


def finish_example(model_dir: Path, model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    onnx.checker.check_model(model, full_check=True)
    save_model(model_dir / "model.onnx", model)
    return write_reference(model_dir, model, inputs)


# --------------------------------------------------------------------------------------
# 1. MLP
# --------------------------------------------------------------------------------------

def build_mlp() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    r = rng("mlp")
    w1 = he(r, (128, 64), 64)              # Gemm transB=1 -> [out, in]
    b1 = uniform(r, (128,), -0.1, 0.1)
    w2 = he(r, (128, 64), 128)             # MatMul [128, 64]
    b2 = uniform(r, (64,), -0.1, 0.1)
    w3 = he(r, (64, 10), 64)               # Gemm transB=0 -> [in, out]
    b3 = uniform(r, (10,), -0.5, 0.5)
    x = r.standard_normal((1, 64)).astype(np.float32)

    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["relu1"], name="relu1"),
        helper.make_node("MatMul", ["relu1", "fc2.weight"], ["fc2_mm"], name="fc2_matmul"),
        helper.make_node("Add", ["fc2_mm", "fc2.bias"], ["fc2"], name="fc2_add"),
        helper.make_node("Sigmoid", ["fc2"], ["sig"], name="sigmoid"),
        helper.make_node("Gemm", ["sig", "fc3.weight", "fc3.bias"], ["logits"], name="fc3",
                         alpha=0.5, beta=2.0, transB=0),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=[init("fc1.weight", w1), init("fc1.bias", b1), init("fc2.weight", w2),
                     init("fc2.bias", b2), init("fc3.weight", w3), init("fc3.bias", b3)],
    )
    return make_model(graph), [x]


# --------------------------------------------------------------------------------------
# 2. CNN
# --------------------------------------------------------------------------------------

def build_cnn() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    r = rng("cnn")
    f32 = np.float32
    conv1_w = he(r, (16, 3, 3, 3), 3 * 9)
    conv1_b = uniform(r, (16,), -0.1, 0.1)
    # BN stats: roughly what conv1 produces on N(0,1) input (mean ~ bias, var ~ 2).
    bn_scale = uniform(r, (16,), 0.8, 1.2)
    bn_bias = uniform(r, (16,), -0.1, 0.3)
    bn_mean = uniform(r, (16,), -0.2, 0.2)
    bn_var = uniform(r, (16,), 1.5, 2.5)
    dw_w = he(r, (16, 1, 3, 3), 9)
    dw_b = uniform(r, (16,), 0.0, 0.2)
    pw_w = he(r, (32, 16, 1, 1), 16)
    pw_b = uniform(r, (32,), -0.1, 0.1)
    dil_w = he(r, (32, 32, 3, 3), 32 * 9)
    dil_b = uniform(r, (32,), -0.1, 0.1)
    fc_w = he(r, (10, 32), 32) * f32(2.0)   # a bit of spread in the logits
    fc_b = uniform(r, (10,), -0.2, 0.2)
    image = r.standard_normal((1, 3, 32, 32)).astype(f32)

    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["b1"],
                         name="bn1", epsilon=1e-5),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="maxpool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "dw.weight", "dw.bias"], ["d1"], name="dwconv", group=16,
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d1", "clip.min", "clip.max"], ["d1c"], name="relu6"),
        helper.make_node("Conv", ["d1c", "pw.weight", "pw.bias"], ["pw"], name="pwconv", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["pw"], ["pwr"], name="relu2"),
        helper.make_node("AveragePool", ["pwr"], ["ap"], name="avgpool", kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("Conv", ["ap", "dil.weight", "dil.bias"], ["dl"], name="dilconv",
                         kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Tanh", ["dl"], ["dlt"], name="tanh"),
        helper.make_node("Add", ["ap", "dlt"], ["res"], name="residual_add"),
        helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    inits = [
        init("conv1.weight", conv1_w), init("conv1.bias", conv1_b),
        init("bn1.scale", bn_scale), init("bn1.bias", bn_bias), init("bn1.mean", bn_mean), init("bn1.var", bn_var),
        init("dw.weight", dw_w), init("dw.bias", dw_b),
        init("clip.min", np.array(0.0, f32)), init("clip.max", np.array(6.0, f32)),
        init("pw.weight", pw_w), init("pw.bias", pw_b),
        init("dil.weight", dil_w), init("dil.bias", dil_b),
        init("fc.weight", fc_w), init("fc.bias", fc_b),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    return make_model(graph), [image]


# --------------------------------------------------------------------------------------
# 3. Conv1d
# --------------------------------------------------------------------------------------

def build_conv1d() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    r = rng("conv1d")
    c1_w = he(r, (8, 4, 5), 4 * 5)
    c1_b = uniform(r, (8,), -0.1, 0.1)
    c2_w = he(r, (8, 4, 3), 4 * 3)     # groups=2: [out=8, in/groups=4, k=3]
    c2_b = uniform(r, (8,), -0.1, 0.1)
    x = r.standard_normal((1, 4, 50)).astype(np.float32)
    # [1,4,50] -conv k5 s2 SAME_UPPER-> [1,8,25] -maxpool k3 s2-> [1,8,12]
    # -conv k3 d2 g2 pads 1,1-> [1,8,10] -transpose-> [1,10,8] -reshape-> [1,80]
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
                         kernel_shape=[5], strides=[2], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="maxpool1", kernel_shape=[3], strides=[2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2",
                         kernel_shape=[3], dilations=[2], group=2, pads=[1, 1]),
        helper.make_node("Transpose", ["c2"], ["t"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("Reshape", ["t", "reshape.shape"], ["y"], name="reshape"),
    ]
    graph = helper.make_graph(
        nodes, "conv1d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 50])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 80])],
        initializer=[init("conv1.weight", c1_w), init("conv1.bias", c1_b),
                     init("conv2.weight", c2_w), init("conv2.bias", c2_b),
                     init("reshape.shape", np.array([1, -1], np.int64))],
    )
    return make_model(graph), [x]


# --------------------------------------------------------------------------------------
# 4. Symbolic batch
# --------------------------------------------------------------------------------------

def build_symbolic() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    r = rng("symbolic")
    w = he(r, (16, 8), 16)
    x = r.standard_normal((3, 16)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="matmul"),
        helper.make_node("Relu", ["mm"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "symbolic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        initializer=[init("w", w)],
    )
    return make_model(graph), [x]


# --------------------------------------------------------------------------------------
# 4b. Einsum attention
# --------------------------------------------------------------------------------------

def build_einsum() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """One attention block written with Einsum, as PyTorch exports torch.einsum code."""
    r = rng("einsum")
    d_model, heads, dh, seq = 16, 2, 8, 7
    wq = he(r, (d_model, heads, dh), d_model)
    wk = he(r, (d_model, heads, dh), d_model)
    wv = he(r, (d_model, heads, dh), d_model)
    wo = he(r, (heads, dh, d_model), d_model)
    x = r.standard_normal((1, seq, d_model)).astype(np.float32)
    nodes = [
        helper.make_node("Einsum", ["x", "wq"], ["q"], name="q_proj", equation="bsd,dhe->bhse"),
        helper.make_node("Einsum", ["x", "wk"], ["k"], name="k_proj", equation="bsd,dhe->bhse"),
        helper.make_node("Einsum", ["x", "wv"], ["v"], name="v_proj", equation="bsd,dhe->bhse"),
        helper.make_node("Einsum", ["q", "k"], ["scores"], name="scores", equation="bhqd,bhkd->bhqk"),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"], name="scale"),
        helper.make_node("Softmax", ["scaled"], ["probs"], name="softmax", axis=-1),
        helper.make_node("Einsum", ["probs", "v"], ["ctx"], name="context", equation="bhqk,bhkd->bqhd"),
        helper.make_node("Einsum", ["ctx", "wo"], ["y"], name="out_proj", equation="bqhd,hde->bqe"),
        helper.make_node("Einsum", ["y"], ["pooled"], name="pool", equation="bqe->be"),
    ]
    graph = helper.make_graph(
        nodes, "einsum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, d_model])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, d_model]),
         helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, d_model])],
        initializer=[init("wq", wq), init("wk", wk), init("wv", wv), init("wo", wo),
                     init("scale", np.array(1.0 / math.sqrt(dh), np.float32))],
    )
    return make_model(graph), [x]


# --------------------------------------------------------------------------------------
# 5. Error-path / decoder test data
# --------------------------------------------------------------------------------------

def build_unsupported() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Valid, runnable model mixing supported ops (Relu, Add) with LSTM, TopK and Det."""
    r = rng("unsupported")
    hidden, inp, seq = 2, 3, 4
    W = uniform(r, (1, 4 * hidden, inp), -0.5, 0.5)
    R = uniform(r, (1, 4 * hidden, hidden), -0.5, 0.5)
    x = r.standard_normal((1, 8)).astype(np.float32)
    seq_in = r.standard_normal((seq, 1, inp)).astype(np.float32)
    mats = r.standard_normal((2, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Relu", ["x"], ["xr"], name="relu0"),
        helper.make_node("TopK", ["xr", "k"], ["top_vals", "top_idx"], name="weird_topk", axis=-1),
        helper.make_node("Add", ["top_vals", "bias3"], ["top_plus"], name="add0"),
        helper.make_node("LSTM", ["seq", "lstm.W", "lstm.R"], ["", "lstm_h"], name="my_lstm", hidden_size=hidden),
        helper.make_node("Det", ["mats"], ["det"], name="det0"),
        helper.make_node("Relu", ["det"], ["det_relu"], name="relu1"),
    ]
    graph = helper.make_graph(
        nodes, "unsupported_ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
         helper.make_tensor_value_info("seq", TensorProto.FLOAT, [seq, 1, inp]),
         helper.make_tensor_value_info("mats", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("top_plus", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("top_idx", TensorProto.INT64, [1, 3]),
         helper.make_tensor_value_info("lstm_h", TensorProto.FLOAT, [1, 1, hidden]),
         helper.make_tensor_value_info("det_relu", TensorProto.FLOAT, [2])],
        initializer=[init("k", np.array([3], np.int64)), init("bias3", np.array([1.0, 2.0, 3.0], np.float32)),
                     init("lstm.W", W), init("lstm.R", R)],
    )
    return make_model(graph), [x, seq_in, mats]


def build_external(location: str) -> tuple[onnx.ModelProto, bytes, list[np.ndarray]]:
    """x[1,4] @ w[4,3] (w stored externally at `location`) -> y[1,3]."""
    r = rng("external")
    w = uniform(r, (4, 3), -1.0, 1.0)
    x = r.standard_normal((1, 4)).astype(np.float32)
    t = TensorProto()
    t.name = "w"
    t.data_type = TensorProto.FLOAT
    t.dims.extend(w.shape)
    t.data_location = TensorProto.EXTERNAL
    blob = w.astype("<f4").tobytes()
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(blob)))):
        e = t.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "external_data",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[t],
    )
    return make_model(graph), blob, [x]


def _f(v):
    """JSON-friendly float: non-finite values become strings."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


NAN, INF = float("nan"), float("inf")

# (dtype, shape, values, encodings) -- encodings: "typed" = make_tensor(raw=False),
# "raw" = numpy_helper.from_array (raw_data, sub-byte types packed).
DTYPE_CASES = [
    (TensorProto.FLOAT, [2, 4], [0.0, -0.0, 1.5, -2.25, 0.1, 3.4028234663852886e38, 1.401298464324817e-45, -1e-3],
     ("typed", "raw")),
    (TensorProto.UINT8, [5], [0, 1, 127, 128, 255], ("typed", "raw")),
    (TensorProto.INT8, [5], [-128, -1, 0, 1, 127], ("typed", "raw")),
    (TensorProto.UINT16, [5], [0, 1, 256, 32768, 65535], ("typed", "raw")),
    (TensorProto.INT16, [5], [-32768, -1, 0, 1, 32767], ("typed", "raw")),
    (TensorProto.INT32, [5], [-2147483648, -1, 0, 1, 2147483647], ("typed", "raw")),
    (TensorProto.INT64, [2, 3], [-(2**63), -1, 0, 1, 2**63 - 1, 2**40], ("typed", "raw")),
    (TensorProto.STRING, [2, 2], ["", "hello", "ünïcødé ✓", "a\nb"], ("typed",)),
    (TensorProto.BOOL, [3], [True, False, True], ("typed", "raw")),
    (TensorProto.FLOAT16, [2, 5], [0.0, -0.0, 1.0, -2.5, 65504.0, 6.103515625e-05, 5.960464477539063e-08,
                                   1.0 / 3.0, INF, -INF], ("typed", "raw")),
    (TensorProto.DOUBLE, [6], [0.0, -0.0, 0.1, 1e308, 5e-324, -3.5], ("typed", "raw")),
    (TensorProto.UINT32, [4], [0, 1, 2**31, 2**32 - 1], ("typed", "raw")),
    (TensorProto.UINT64, [4], [0, 1, 2**63, 2**64 - 1], ("typed", "raw")),
    (TensorProto.COMPLEX64, [3], [1 + 2j, -3.5 + 0.25j, complex(0.0, -0.0)], ("typed", "raw")),
    (TensorProto.COMPLEX128, [2], [complex(1e300, -1e-300), 0.1 + 0.2j], ("typed", "raw")),
    (TensorProto.BFLOAT16, [7], [0.0, -0.0, 1.0, -2.5, 0.1, 3.3895313892515355e38, 9.183549615799121e-41],
     ("typed", "raw")),
    (TensorProto.FLOAT8E4M3FN, [9], [0.0, -0.0, 1.0, -1.5, 448.0, -448.0, 2.0**-9, 0.3125, NAN], ("typed", "raw")),
    (TensorProto.FLOAT8E4M3FNUZ, [7], [0.0, 1.0, -1.5, 240.0, -240.0, 2.0**-10, NAN], ("typed", "raw")),
    (TensorProto.FLOAT8E5M2, [9], [0.0, -0.0, 1.0, -1.5, 57344.0, 2.0**-16, INF, -INF, NAN], ("typed", "raw")),
    (TensorProto.FLOAT8E5M2FNUZ, [6], [0.0, 1.0, -1.5, 57344.0, 2.0**-17, NAN], ("typed", "raw")),
    (TensorProto.UINT4, [5], [0, 1, 7, 8, 15], ("typed", "raw")),
    (TensorProto.INT4, [5], [-8, -1, 0, 1, 7], ("typed", "raw")),
    (TensorProto.FLOAT4E2M1, [11], [0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -6.0, -0.5], ("typed", "raw")),
    (TensorProto.FLOAT8E8M0, [6], [1.0, 2.0, 0.5, 2.0**127, 2.0**-127, NAN], ("typed", "raw")),
    (TensorProto.UINT2, [5], [0, 1, 2, 3, 1], ("typed", "raw")),
    (TensorProto.INT2, [7], [-2, -1, 0, 1, -2, 1, 0], ("typed", "raw")),
    (TensorProto.FLOAT6E2M3, [7], [0.0, -0.0, 0.125, 1.0, -1.75, 7.5, 3.25], ("typed", "raw")),
    (TensorProto.FLOAT6E3M2, [9], [0.0, -0.0, 0.0625, 1.0, -1.25, 28.0, -28.0, 0.75, 5.0], ("typed", "raw")),
]

FLOATISH = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16,
            TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
            TensorProto.FLOAT8E5M2FNUZ, TensorProto.FLOAT4E2M1, TensorProto.FLOAT8E8M0,
            TensorProto.FLOAT6E2M3, TensorProto.FLOAT6E3M2}
BITS_WIDTH = {TensorProto.FLOAT: np.uint32, TensorProto.DOUBLE: np.uint64, TensorProto.FLOAT16: np.uint16,
              TensorProto.BFLOAT16: np.uint16}  # everything else in FLOATISH: 1 byte per element
ONE_CODE_PER_INT32 = {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
                      TensorProto.FLOAT8E5M2FNUZ, TensorProto.FLOAT8E8M0, TensorProto.FLOAT6E2M3,
                      TensorProto.FLOAT6E3M2}


def _np_array(dtype: int, shape, values) -> np.ndarray:
    npdt = helper.tensor_dtype_to_np_dtype(dtype)
    if dtype == TensorProto.STRING:
        return np.array(values, dtype=object).reshape(shape)
    if dtype in FLOATISH and dtype not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        # ml_dtypes: convert through float32 (exact for every value listed above)
        return np.array(values, dtype=np.float32).astype(npdt).reshape(shape)
    return np.array(values, dtype=npdt).reshape(shape)


def _bits(arr: np.ndarray, dtype: int) -> np.ndarray:
    return arr.view(BITS_WIDTH.get(dtype, np.uint8))


def _json_values(arr: np.ndarray, dtype: int):
    flat = arr.reshape(-1)
    if dtype == TensorProto.STRING:
        return [s if isinstance(s, str) else s.decode("utf-8") for s in flat.tolist()]
    if dtype == TensorProto.BOOL:
        return [bool(v) for v in flat]
    if dtype in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        return [[_f(v.real), _f(v.imag)] for v in flat]
    if dtype in FLOATISH:
        return [_f(v) for v in flat.astype(np.float64)]
    return [int(v) for v in flat]


def build_dtypes() -> tuple[onnx.ModelProto, dict]:
    inits, meta = [], {}
    extra = [  # edge-case shapes
        ("float_scalar_typed", TensorProto.FLOAT, [], [42.5], "typed"),
        ("float_empty_raw", TensorProto.FLOAT, [0, 3], [], "raw"),
        ("int64_empty_typed", TensorProto.INT64, [0], [], "typed"),
        ("float_special_raw", TensorProto.FLOAT, [3], [INF, -INF, NAN], "raw"),
        ("double_special_typed", TensorProto.DOUBLE, [3], [INF, -INF, NAN], "typed"),
    ]
    cases = []
    for dtype, shape, values, encs in DTYPE_CASES:
        for enc in encs:
            cases.append((f"{TensorProto.DataType.Name(dtype).lower()}_{enc}", dtype, shape, values, enc))
    cases += extra
    for name, dtype, shape, values, enc in cases:
        arr = _np_array(dtype, shape, values)
        if enc == "raw":
            t = numpy_helper.from_array(arr, name)
            assert t.HasField("raw_data") and t.data_type == dtype, name
        else:
            vals = arr.reshape(-1).tolist() if dtype in (TensorProto.STRING,) else arr.reshape(-1)
            t = helper.make_tensor(name, dtype, shape, vals, raw=False)
            assert not t.HasField("raw_data"), name
            if dtype in ONE_CODE_PER_INT32:
                # make_tensor re-encodes float8 values with saturate=True (inf -> max finite);
                # store the exact codes instead (same layout: one code per int32_data entry).
                del t.int32_data[:]
                t.int32_data.extend(int(b) for b in _bits(arr, dtype).reshape(-1))
        back = numpy_helper.to_array(t)
        assert list(back.shape) == list(shape), (name, back.shape)
        if dtype == TensorProto.STRING:
            assert back.reshape(-1).tolist() == list(values), name
        elif dtype in FLOATISH:
            assert np.array_equal(_bits(back, dtype), _bits(arr, dtype)), (name, back, arr)
        else:
            assert np.array_equal(back, arr), (name, back, arr)
        inits.append(t)
        entry = {
            "dtype": int(dtype),
            "dtype_name": TensorProto.DataType.Name(dtype),
            "shape": [int(d) for d in shape],
            "raw": enc == "raw",
            "field": next((f.name for f, _ in t.ListFields() if f.name.endswith("_data")), None),
            "values": _json_values(back, dtype),
        }
        if dtype in FLOATISH:
            entry["bits"] = [int(b) for b in _bits(back, dtype).reshape(-1)]
        meta[name] = entry
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"], name="identity")], "dtypes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=inits,
    )
    # IR 9 cannot declare int4/float4/e8m0/int2/float6; use the current IR version.
    return make_model(graph, ir_version=onnx.IR_VERSION), meta


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------

def generate(root: Path, stats: bool = False) -> None:
    ex = root / "examples" / "models"
    td = root / "tests" / "data"

    examples = {"mlp": build_mlp, "cnn": build_cnn, "conv1d": build_conv1d, "symbolic": build_symbolic,
                "einsum": build_einsum}
    for name, fn in examples.items():
        model, inputs = fn()
        outs = finish_example(ex / name, model, inputs)
        if stats:
            print_stats(name, ex / name / "model.onnx", model, inputs, outs)

    # --- corrupt / degenerate files
    mlp_bytes = (ex / "mlp" / "model.onnx").read_bytes()
    write_bytes(td / "corrupt_truncated.onnx", mlp_bytes[: len(mlp_bytes) // 2])
    write_bytes(td / "corrupt_garbage.onnx", np.random.RandomState(0xBADF00D).bytes(4096))
    write_bytes(td / "empty.onnx", b"")

    # --- unsupported ops (valid + runnable)
    model, inputs = build_unsupported()
    onnx.checker.check_model(model, full_check=True)
    save_model(td / "unsupported_ops.onnx", model)

    # --- external data
    model, blob, inputs = build_external("weights.bin")
    d = td / "external_data"
    write_bytes(d / "weights.bin", blob)
    save_model(d / "model.onnx", model)
    onnx.checker.check_model(str(d / "model.onnx"), full_check=True)
    write_reference(d, model, inputs)
    for sub, loc in (("external_escape", "../../etc/passwd"), ("external_abs", "/etc/passwd")):
        model, _, _ = build_external(loc)
        save_model(td / sub / "model.onnx", model)

    # --- dtypes
    model, meta = build_dtypes()
    onnx.checker.check_model(model, full_check=True)
    save_model(td / "dtypes.onnx", model)
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False, allow_nan=False)}" for k, v in meta.items()]
    write_bytes(td / "dtypes.json", ("{\n" + ",\n".join(lines) + "\n}\n").encode("utf-8"))

    verify(root)


def verify(root: Path) -> None:
    """Sanity checks on a generated tree (loads, checker, error files really are broken)."""
    import onnxruntime as ort

    td = root / "tests" / "data"
    # truncated / garbage must not parse
    for bad in ("corrupt_truncated.onnx", "corrupt_garbage.onnx"):
        try:
            onnx.load_model_from_string((td / bad).read_bytes())
        except Exception:
            pass
        else:
            raise SystemExit(f"{bad} unexpectedly parses as a ModelProto")
    m = onnx.load_model_from_string(b"")
    assert not m.HasField("graph"), "empty.onnx should decode to a ModelProto without a graph"
    # unsupported_ops runs in ORT
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    outs = run_ort(td / "unsupported_ops.onnx",
                   [x, np.ones((4, 1, 3), np.float32), np.eye(3, dtype=np.float32)[None].repeat(2, 0)])
    assert len(outs) == 4
    # escaping external data must be refused by the onnx checker
    for sub in ("external_escape", "external_abs"):
        try:
            onnx.checker.check_model(str(td / sub / "model.onnx"), full_check=True)
        except Exception:
            pass
        else:
            raise SystemExit(f"onnx.checker accepted {sub}/model.onnx")
    # dtypes.onnx runs (initializers unused)
    y = run_ort(td / "dtypes.onnx", [np.array([1.0, -2.0], np.float32)])[0]
    assert np.array_equal(y, [1.0, -2.0])
    _ = ort  # imported for availability check


def print_stats(name, path, model, inputs, outs) -> None:
    """Expose every intermediate as an output and print its range (saturation check)."""
    import onnxruntime as ort  # noqa: F401

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in have:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / "m.onnx"
        p.write_bytes(m.SerializeToString())
        res = run_ort(p, inputs)
    print(f"== {name}")
    for vi, a in zip(m.graph.output, res):
        a = np.asarray(a, dtype=np.float64)
        print(f"  {vi.name:12s} shape={list(a.shape)} min={a.min():+.4f} max={a.max():+.4f} "
              f"mean={a.mean():+.4f} std={a.std():.4f} zero_frac={np.mean(a == 0):.2f}")
    opt = run_ort(path, inputs, optimize=True)
    for a, b in zip(outs, opt):
        print(f"  ORT ENABLE_ALL vs DISABLE_ALL max|diff| = {np.max(np.abs(a - b)):.3g}")


OUTPUT_PREFIXES = ("output_",)


def _is_ort_output(rel: Path) -> bool:
    return rel.name.startswith(OUTPUT_PREFIXES) and rel.suffix in (".npy", ".pb")


def _load_any(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    t = TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def check() -> int:
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp)
        for sub in ("examples/models", "tests/data"):
            new_files = {p.relative_to(tmp) for p in (tmp / sub).rglob("*") if p.is_file()}
            old_files = {p.relative_to(REPO) for p in (REPO / sub).rglob("*") if p.is_file()
                         and p.name != "README.md"}
            for rel in sorted(new_files - old_files):
                problems.append(f"missing in repo: {rel}")
            for rel in sorted(old_files - new_files):
                print(f"note: extra file not produced by generator: {rel}")
            for rel in sorted(new_files & old_files):
                if filecmp.cmp(tmp / rel, REPO / rel, shallow=False):
                    continue
                if _is_ort_output(rel):
                    a, b = _load_any(tmp / rel), _load_any(REPO / rel)
                    if a.shape == b.shape and a.dtype == b.dtype and np.allclose(a, b, CHECK_RTOL, CHECK_ATOL):
                        print(f"note: {rel} differs in low bits (max|diff|={np.max(np.abs(a - b)):.3g})")
                        continue
                problems.append(f"differs: {rel}")
    # re-run onnxruntime on the *committed* models/inputs
    dirs = [d for d in (REPO / "examples" / "models").iterdir() if (d / "model.onnx").exists()]
    dirs.append(REPO / "tests" / "data" / "external_data")
    for d in sorted(dirs):
        n_in = len(list(d.glob("input_*.npy")))
        inputs = [np.load(d / f"input_{i}.npy") for i in range(n_in)]
        got = run_ort(d / "model.onnx", inputs)
        for i, g in enumerate(got):
            ref = np.load(d / f"output_{i}.npy")
            if not (g.shape == ref.shape and np.allclose(g, ref, CHECK_RTOL, CHECK_ATOL)):
                problems.append(f"onnxruntime disagrees with {d.relative_to(REPO)}/output_{i}.npy")
        onnx.checker.check_model(str(d / "model.onnx"), full_check=True)
    for p in problems:
        print("DRIFT:", p)
    print("check:", "FAILED" if problems else "OK")
    return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="verify committed files instead of writing")
    ap.add_argument("--stats", action="store_true", help="print activation statistics per node")
    args = ap.parse_args()
    if args.check:
        return check()
    generate(REPO, stats=args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
