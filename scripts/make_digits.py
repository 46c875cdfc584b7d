#!/usr/bin/env python3
"""Writes examples/models/digits_cnn, digits_cnn_qdq and digits_cnn_qoperator: a small CNN
trained on scikit-learn's digits (8×8 grey images, 10 classes), exported to ONNX (opset 17),
and the same quantized by onnxruntime's quantize_static in the QDQ format (uint8
activations) and in the QOperator format (int8 activations), calibrated on training images. Also writes the held-out test set (digits_cnn/test_images.npy f32 [N,1,8,8] in 0..1,
test_labels.npy i64 [N]) and the accuracies of the float model and of onnxruntime's int8
run into digits_cnn/README.md. Every random choice is seeded.

Needs torch and scikit-learn (the torch virtualenv); the tests need neither:

    ~/.venvs/torch/bin/python scripts/make_digits.py
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
FLOAT = ROOT / "examples/models/digits_cnn"
QDQ = ROOT / "examples/models/digits_cnn_qdq"
QOP = ROOT / "examples/models/digits_cnn_qoperator"
EPOCHS = 40


class DigitsCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, image):
        return self.classifier(self.features(image))


def data():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


def train(x, y):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = DigitsCnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model.eval()


class Calibration(CalibrationDataReader):
    """64 training images, one per batch (the model's batch is 1)."""

    def __init__(self, x):
        idx = np.random.RandomState(7).choice(len(x), 64, replace=False)
        self.batches = iter([{"image": x[i:i + 1]} for i in idx])

    def get_next(self):
        return next(self.batches, None)


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def accuracy(folder, x, y):
    """onnxruntime with default session options, one image at a time; its logits for every
    test image are saved as the folder's test_logits.npy f32[N,10]."""
    sess = session(folder / "model.onnx")
    logits = np.concatenate([sess.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])
    np.save(folder / "test_logits.npy", logits)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def reference(folder, x):
    np.save(folder / "input_0.npy", x)
    np.save(folder / "output_0.npy", session(folder / "model.onnx").run(None, {"image": x})[0])


def main():
    x_train, x_test, y_train, y_test = data()
    model = train(x_train, y_train)
    FLOAT.mkdir(parents=True, exist_ok=True)
    QDQ.mkdir(parents=True, exist_ok=True)
    QOP.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.from_numpy(x_test[:1]),), str(FLOAT / "model.onnx"),
                      input_names=["image"], output_names=["logits"], opset_version=17,
                      dynamo=False)
    # Per-channel int8 weights, 7-bit (reduce_range) as in scripts/make_quantized.py, so
    # onnxruntime's u8×s8 kernels cannot saturate and its results do not depend on the CPU.
    quantize_static(str(FLOAT / "model.onnx"), str(QDQ / "model.onnx"), Calibration(x_train),
                    quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    # The QOperator format with int8 activations: QLinearConv (Relu folded into its range),
    # MaxPool and Flatten of int8 tensors, com.microsoft QGemm.
    quantize_static(str(FLOAT / "model.onnx"), str(QOP / "model.onnx"), Calibration(x_train),
                    quant_format=QuantFormat.QOperator, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    np.save(FLOAT / "test_images.npy", x_test)
    np.save(FLOAT / "test_labels.npy", y_test)
    for folder in (FLOAT, QDQ, QOP):
        reference(folder, x_test[:1])
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    float_acc = accuracy(FLOAT, x_test, y_test)
    int8_acc = accuracy(QDQ, x_test, y_test)
    qop_acc = accuracy(QOP, x_test, y_test)
    print(f"torch {torch_acc:.4f}, onnxruntime float {float_acc:.4f}, int8 QDQ {int8_acc:.4f}, "
          f"int8 QOperator {qop_acc:.4f}")
    (FLOAT / "README.md").write_text(f"""# digits_cnn, digits_cnn_qdq, digits_cnn_qoperator

Made by `scripts/make_digits.py` (the torch virtualenv; torch and scikit-learn): a small CNN
(Conv 1→8 3×3, Relu, Conv 8→16 3×3, Relu, MaxPool 2, Flatten, Gemm 256→32, Relu, Gemm
32→10) trained {EPOCHS} epochs (Adam, seeded) on scikit-learn's digits dataset (8×8 grey
images scaled to 0..1, 10 classes), exported by torch.onnx (TorchScript, opset 17), input
`image` f32[1,1,8,8], output `logits` f32[1,10]. `../digits_cnn_qdq/model.onnx` is the same
quantized by onnxruntime's `quantize_static` (QDQ, per-channel 7-bit int8 weights, uint8
activations) calibrated on 64 training images, and `../digits_cnn_qoperator/model.onnx` the
same in the QOperator format with int8 activations (QLinearConv, MaxPool and Flatten of int8,
com.microsoft QGemm).

The held-out test set (25 %, stratified, `random_state=0`): `test_images.npy` f32[{len(x_test)},1,8,8],
`test_labels.npy` i64[{len(x_test)}]. `input_0.npy`/`output_0.npy` (in each folder): the first test
image and onnxruntime's logits (default session options); `test_logits.npy` (in each folder):
onnxruntime's logits f32[{len(x_test)},10] for every test image. The weights are 7-bit
(`reduce_range`) so that onnxruntime's u8×s8 kernels cannot saturate (see
`../README.md`).

| model | test accuracy (onnxruntime, default options) |
|---|---|
| float (`digits_cnn`) | {float_acc * 100:.2f} % |
| int8 QDQ (`digits_cnn_qdq`) | {int8_acc * 100:.2f} % |
| int8 QOperator (`digits_cnn_qoperator`) | {qop_acc * 100:.2f} % |
""")


if __name__ == "__main__":
    main()
