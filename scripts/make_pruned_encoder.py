#!/usr/bin/env python3
"""Makes the structured-pruning example models (the dead-heads / dead-channels passes):
a Hugging Face BertModel (random weights, seed 3, hidden 96, 6 heads of 16, 2 layers,
intermediate 384, sequence 32) with heads and FFN channels zeroed as a structured pruning
tool leaves them, and the same network with them physically removed.

    examples/models/encoder_pruned/    zeroed weights, full shapes (TorchScript, opset 17)
    examples/models/encoder_headless/  the same function, dead heads/channels sliced out
    examples/models/encoder_pruned_dynamo/  encoder_pruned through the dynamo exporter
    examples/models/encoder_fusedqkv/  a torch.nn.TransformerEncoder (one fused Q/K/V
                                       projection per layer), dynamo exporter, opset 18

encoder_fusedqkv: d_model 96, 6 heads of 16, 2 layers, FFN 192 (ReLU), batch_first,
sequence 32, float input x [1, 32, 96] (seed 4). Layer 0: head 1 has zero V rows of
in_proj (and bias), head 4 zero out_proj input columns; layer 1: head 0 zero Q, K and V
rows, head 3 zero out_proj columns (4 of 12 heads removable); FFN: per layer 32 channels
with zero linear1 rows and bias (ReLU(0) = 0) and 32 with zero linear2 columns (64 of 192
removable). (The TorchScript exporter writes this model with a Mod op edgecc does not
import, so only the dynamo export is committed.)

    examples/models/gpt2_pruned/       a transformers.GPT2Model (seed 5; n_embd 64, 4 heads
                                       of 16, 2 layers, MLP 256, gelu_new), TorchScript

gpt2_pruned: one fused c_attn Gemm split by a Split op, a one-input Concat (the empty key/
value cache), the MLP between reshapes. Layer 0: head 1 has zero V columns of c_attn and
bias (removable), head 3 zero Q columns only (kept); layer 1: head 2 has zero c_proj rows
(removable): 2 of 8 heads. MLP: layer 0 has 40 channels with zero c_fc columns and bias
(gelu_new(0) = 0), layer 1 30 channels with zero c_proj rows: 70 of 512.

What is zeroed (head h = features 16h..16h+15 of the attention width):

    layer 0  head 1: V weight rows and V bias zero                  -> dead (removable)
             head 4: output dense's input columns zero              -> dead (removable)
             head 2: Q and K weights and biases zero, V intact      -> NOT dead (uniform
                     attention still averages V)
             head 5: V weight zero but V bias non-zero              -> NOT dead
    layer 1  head 0: Q, K and V weights and biases zero             -> dead (removable)
             head 3: output dense's input columns zero              -> dead (removable)

so 4 of 12 heads are removable. FFN, per layer (384 channels): 63 channels with the
intermediate dense's weight row and bias zero (GELU(0) = 0: dead), 64 with the output
dense's input column zero (dead), and 1 with a zero weight row but a non-zero bias: a
constant channel GELU(b) whose contribution GELU(b)·W2[:, j] folds into the output bias,
so it is removable too: 128 of 384 removed per layer. encoder_headless is built by
slicing exactly those (folding the constant channel into the bias the same way).

Run with the torch virtualenv (see scripts/export_bert_torch.py):

    ~/.venvs/torch/bin/python scripts/make_pruned_encoder.py
"""
import os
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_bert_torch as ebt  # noqa: E402

ebt.SEQ = 32
HIDDEN, HEADS, LAYERS, INTER = 96, 6, 2, 384
D = HIDDEN // HEADS
VOCAB = 500
ebt.VOCAB = VOCAB

# (layer, head) -> how it is zeroed
DEAD_V = [(0, 1)]
DEAD_WO = [(0, 4), (1, 3)]
DEAD_QKV = [(1, 0)]
KEEP_QK = [(0, 2)]
KEEP_VBIAS = [(0, 5)]
REMOVABLE = {0: [1, 4], 1: [0, 3]}


def build():
    torch.manual_seed(3)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTER,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    return ebt.perturbed(transformers.BertModel(cfg).eval())


def heads(h):
    return slice(h * D, (h + 1) * D)


def prune(model):
    """Zeroes weights as described above; returns the FFN channel plan per layer."""
    rng = np.random.RandomState(11)
    plan = {}
    with torch.no_grad():
        for li, layer in enumerate(model.encoder.layer):
            att = layer.attention
            for l, h in DEAD_V:
                if l == li:
                    att.self.value.weight[heads(h), :] = 0
                    att.self.value.bias[heads(h)] = 0
            for l, h in DEAD_WO:
                if l == li:
                    att.output.dense.weight[:, heads(h)] = 0
            for l, h in DEAD_QKV:
                if l == li:
                    for lin in (att.self.query, att.self.key, att.self.value):
                        lin.weight[heads(h), :] = 0
                        lin.bias[heads(h)] = 0
            for l, h in KEEP_QK:
                if l == li:
                    for lin in (att.self.query, att.self.key):
                        lin.weight[heads(h), :] = 0
                        lin.bias[heads(h)] = 0
            for l, h in KEEP_VBIAS:
                if l == li:
                    att.self.value.weight[heads(h), :] = 0
                    assert (att.self.value.bias[heads(h)] != 0).all()
            perm = rng.permutation(INTER)
            w1_dead, w2_dead, const = perm[:63], perm[63:127], perm[127:128]
            layer.intermediate.dense.weight[w1_dead, :] = 0
            layer.intermediate.dense.bias[w1_dead] = 0
            layer.output.dense.weight[:, w2_dead] = 0
            layer.intermediate.dense.weight[const, :] = 0
            assert (layer.intermediate.dense.bias[const] != 0).all()
            plan[li] = (sorted(perm[:128].tolist()), const.tolist())
    return plan


def linear(w, b):
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return lin


def remove(model, plan):
    """Physically removes the removable heads and dead channels."""
    with torch.no_grad():
        for li, layer in enumerate(model.encoder.layer):
            att = layer.attention
            keep = [h for h in range(HEADS) if h not in REMOVABLE[li]]
            idx = torch.tensor([h * D + i for h in keep for i in range(D)])
            for name in ("query", "key", "value"):
                old = getattr(att.self, name)
                setattr(att.self, name, linear(old.weight[idx], old.bias[idx]))
            att.self.num_attention_heads = len(keep)
            att.self.all_head_size = len(keep) * D
            old = att.output.dense
            att.output.dense = linear(old.weight[:, idx], old.bias)
            dead, const = plan[li]
            kept = torch.tensor([j for j in range(INTER) if j not in dead])
            w1, b1 = layer.intermediate.dense.weight, layer.intermediate.dense.bias
            w2, b2 = layer.output.dense.weight, layer.output.dense.bias
            act = torch.nn.functional.gelu(b1[const])  # the constant channels' value
            b2 = b2 + w2[:, const] @ act
            layer.intermediate.dense = linear(w1[kept], b1[kept])
            layer.output.dense = linear(w2[:, kept], b2)
    return model


def build_fused():
    torch.manual_seed(4)
    layer = torch.nn.TransformerEncoderLayer(d_model=HIDDEN, nhead=HEADS, dim_feedforward=192,
                                             batch_first=True, dropout=0.0)
    enc = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    rng = np.random.RandomState(12)
    with torch.no_grad():
        for _, p in enc.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
        for li, l in enumerate(enc.layers):
            w, b, o = l.self_attn.in_proj_weight, l.self_attn.in_proj_bias, l.self_attn.out_proj.weight
            dead_v, dead_o = ((1,), (4,)) if li == 0 else ((0,), (3,))
            for h in dead_v:
                for blk in ((0, 1, 2) if li == 1 else (2,)):
                    w[blk * HIDDEN + h * D: blk * HIDDEN + (h + 1) * D, :] = 0
                    b[blk * HIDDEN + h * D: blk * HIDDEN + (h + 1) * D] = 0
            for h in dead_o:
                o[:, heads(h)] = 0
            perm = rng.permutation(192)
            l.linear1.weight[perm[:32], :] = 0
            l.linear1.bias[perm[:32]] = 0
            l.linear2.weight[:, perm[32:64]] = 0
    return enc


def export_fused(root):
    import onnx
    import onnxruntime as ort
    out_dir = os.path.join(root, "encoder_fusedqkv")
    os.makedirs(out_dir, exist_ok=True)
    enc = build_fused()
    x = np.random.RandomState(13).uniform(-1, 1, (1, ebt.SEQ, HIDDEN)).astype(np.float32)
    path = os.path.join(out_dir, "model.onnx")
    prog = torch.onnx.export(enc, (torch.from_numpy(x),), dynamo=True, opset_version=18,
                             external_data=False, input_names=["x"], output_names=["y"])
    prog.save(path, external_data=False)
    onnx.checker.check_model(onnx.load(path))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    with torch.no_grad():
        want = enc(torch.from_numpy(x)).numpy()
    assert np.abs(y - want).max() < 1e-4, np.abs(y - want).max()
    np.save(os.path.join(out_dir, "input_0.npy"), x)
    np.save(os.path.join(out_dir, "output_0.npy"), y)
    with open(os.path.join(out_dir, "exported_with.txt"), "w") as f:
        f.write(f"torch {torch.__version__}\nonnx {onnx.__version__}\n"
                f"onnxruntime {ort.__version__}\nexporter dynamo, opset 18\n")
    print(f"{out_dir}: exported")


def build_gpt2():
    torch.manual_seed(5)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4,
                                  n_positions=64)
    m = ebt.perturbed(transformers.GPT2Model(cfg).eval())
    e, d = 64, 16
    with torch.no_grad():
        a0, a1 = m.h[0].attn, m.h[1].attn
        a0.c_attn.weight[:, 2 * e + d: 2 * e + 2 * d] = 0  # Conv1D weights are [in, out]
        a0.c_attn.bias[2 * e + d: 2 * e + 2 * d] = 0
        a0.c_attn.weight[:, 3 * d: 4 * d] = 0  # Q only: kept
        a1.c_proj.weight[2 * d: 3 * d, :] = 0
        m.h[0].mlp.c_fc.weight[:, :40] = 0
        m.h[0].mlp.c_fc.bias[:40] = 0
        m.h[1].mlp.c_proj.weight[100:130, :] = 0
    return m


def main():
    root = ebt.ROOT
    if sys.argv[1:] == ["fused"]:
        export_fused(root)
        return
    if sys.argv[1:] == ["gpt2"]:
        ebt.export(build_gpt2(), False, os.path.join(root, "gpt2_pruned"),
                   wrapper=ebt.WrappedDistil, output_names=["last_hidden_state"])
        return
    pruned = build()
    plan = prune(pruned)
    ebt.export(pruned, False, os.path.join(root, "encoder_pruned"))
    ebt.export(pruned, True, os.path.join(root, "encoder_pruned_dynamo"))
    # The same weights (same seeds), pruned the same way, then sliced.
    headless = build()
    assert prune(headless) == plan
    headless = remove(headless, plan)
    ebt.export(headless, False, os.path.join(root, "encoder_headless"))
    a = np.load(os.path.join(root, "encoder_pruned", "output_0.npy"))
    b = np.load(os.path.join(root, "encoder_headless", "output_0.npy"))
    print("pruned vs headless (onnxruntime):", np.abs(a - b).max())
    assert np.abs(a - b).max() < 1e-4
    export_fused(root)
    ebt.export(build_gpt2(), False, os.path.join(root, "gpt2_pruned"),
               wrapper=ebt.WrappedDistil, output_names=["last_hidden_state"])


if __name__ == "__main__":
    main()
