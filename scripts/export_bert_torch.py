#!/usr/bin/env python3
"""Exports a small BERT encoder (Hugging Face `transformers.BertModel`, random weights, fixed
seed) from PyTorch with both of PyTorch's ONNX exporters, as users export theirs:

    examples/models/bert_torchscript/   torch.onnx.export(..., dynamo=False), opset 17
    examples/models/bert_opset13/       torch.onnx.export(..., dynamo=False), opset 13
                                        (LayerNorm decomposed: ReduceMean/Sub/Pow/Sqrt/Div)
    examples/models/bert_dynamo/        torch.onnx.export(..., dynamo=True),  opset 18
    examples/models/distilbert/         a DistilBertModel (hidden 64, 2 layers, default
                                        SDPA attention, whose export guards fully masked
                                        rows with IsNaN/Where), TorchScript, opset 17
    examples/models/roberta/            a RobertaModel (same sizes): position ids computed
                                        at run time from input_ids (Equal, Not, Cast,
                                        CumSum, integer Mul/Add) and token types gathered
                                        by them (GatherElements), TorchScript, opset 17

Each folder gets model.onnx, the inputs (input_ids, attention_mask: int64 [1, SEQ], the
mask with padding at the end) and onnxruntime's outputs (last_hidden_state,
pooler_output) as input_<i>.npy / output_<i>.npy, like the other examples.

Needs torch, transformers and onnxscript (the dynamo exporter), which the project's tests
do not: the exported files are committed. Run it in a virtualenv that has them:

    python3 -m venv ~/.venvs/torch
    ~/.venvs/torch/bin/pip install torch transformers onnxscript onnx==1.23.2 onnxruntime==1.32.0
    ~/.venvs/torch/bin/python scripts/export_bert_torch.py

Exports are deterministic for a given torch version; the torch and transformers versions
used are written to each folder's `exported_with.txt`.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers

SEQ, VOCAB = 16, 1000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "models")


def perturbed(model):
    """Shifts LayerNorm parameters and biases (every 1-D parameter) so none is the
    identity or zero, as trained weights are not."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def build():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    model = transformers.BertModel(cfg).eval()
    return perturbed(model)


def build_distilbert():
    torch.manual_seed(1)
    cfg = transformers.DistilBertConfig(
        vocab_size=VOCAB,
        dim=64,
        n_layers=2,
        n_heads=4,
        hidden_dim=128,
        max_position_embeddings=64,
    )
    model = transformers.DistilBertModel(cfg).eval()
    return perturbed(model)


class WrappedDistil(torch.nn.Module):
    """Models without a pooler (DistilBERT, RoBERTa here): one output."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        self.eval()

    def forward(self, input_ids, attention_mask):
        return (self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,)


def build_roberta():
    torch.manual_seed(2)
    cfg = transformers.RobertaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    model = transformers.RobertaModel(cfg, add_pooling_layer=False).eval()
    return perturbed(model)


def inputs():
    rng = np.random.RandomState(7)
    ids = rng.randint(1, VOCAB, size=(1, SEQ)).astype(np.int64)
    mask = np.ones((1, SEQ), dtype=np.int64)
    mask[0, SEQ - 4 :] = 0  # padding at the end, as a tokenizer gives it
    ids[0, SEQ - 4 :] = 0
    return ids, mask


class Wrapped(torch.nn.Module):
    """Returns a tuple, so the exported outputs have stable names."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        self.eval()

    def forward(self, input_ids, attention_mask):
        out = self.m(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return out.last_hidden_state, out.pooler_output


def export(model, dynamo, out_dir, opset=None, wrapper=None, output_names=None, pad_id=0):
    os.makedirs(out_dir, exist_ok=True)
    ids, mask = inputs()
    ids[mask == 0] = pad_id
    path = os.path.join(out_dir, "model.onnx")
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    wrapper = wrapper or Wrapped
    names = dict(
        input_names=["input_ids", "attention_mask"],
        output_names=output_names or ["last_hidden_state", "pooler_output"],
    )
    if dynamo:
        prog = torch.onnx.export(wrapper(model), args, dynamo=True, opset_version=18,
                                 external_data=False, **names)
        prog.save(path, external_data=False)
    else:
        torch.onnx.export(wrapper(model), args, path, dynamo=False, opset_version=opset or 17,
                          do_constant_folding=True, **names)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "attention_mask": mask}
    feeds = {i.name: feeds[i.name] for i in sess.get_inputs()}
    outs = sess.run(None, feeds)
    with torch.no_grad():
        want = wrapper(model)(*args)
    for o, w in zip(outs, want):
        err = np.abs(o - w.numpy()).max()
        assert err < 1e-4, f"onnxruntime vs torch: {err}"
    for i, name in enumerate(x.name for x in sess.get_inputs()):
        np.save(os.path.join(out_dir, f"input_{i}.npy"), feeds[name])
    for i, o in enumerate(outs):
        np.save(os.path.join(out_dir, f"output_{i}.npy"), o)
    with open(os.path.join(out_dir, "exported_with.txt"), "w") as f:
        f.write(f"torch {torch.__version__}\ntransformers {transformers.__version__}\n"
                f"onnx {onnx.__version__}\nonnxruntime {ort.__version__}\n"
                f"exporter {'dynamo' if dynamo else 'torchscript'}, opset {opset or (18 if dynamo else 17)}\n")
    ops = sorted({(n.domain, n.op_type) for n in m.graph.node})
    print(f"{out_dir}: {len(m.graph.node)} nodes, {len(m.functions)} functions, "
          f"opset {[(o.domain, o.version) for o in m.opset_import]}; ops {ops}")


def main():
    model = build()
    which = sys.argv[1:] or ["torchscript", "opset13", "dynamo", "distilbert", "roberta"]
    if "torchscript" in which:
        export(model, False, os.path.join(ROOT, "bert_torchscript"))
    if "opset13" in which:
        export(model, False, os.path.join(ROOT, "bert_opset13"), opset=13)
    if "dynamo" in which:
        export(model, True, os.path.join(ROOT, "bert_dynamo"))
    if "roberta" in which:
        # RoBERTa's padding id is 1: the padded tail of the ids must hold it.
        export(build_roberta(), False, os.path.join(ROOT, "roberta"), wrapper=WrappedDistil,
               output_names=["last_hidden_state"], pad_id=1)
    if "distilbert" in which:
        export(build_distilbert(), False, os.path.join(ROOT, "distilbert"), wrapper=WrappedDistil,
               output_names=["last_hidden_state"])


if __name__ == "__main__":
    main()
