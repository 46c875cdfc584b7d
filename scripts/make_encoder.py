#!/usr/bin/env python3
"""A small BERT-style encoder written the way PyTorch's TorchScript exporter writes one
(opset 17): embedding Gathers, the attention-mask chain (Unsqueeze, Cast, Sub, Mul), shape
arithmetic (Shape, Gather, Unsqueeze, Concat) feeding the head-splitting Reshapes, per-head
Transpose, MatMul, scale Div, Softmax, erf-GELU written out as Div/Erf/Add/Mul/Mul, native
LayerNormalization. Random weights, fixed seed; writes model.onnx, the inputs and
onnxruntime's outputs to examples/models/encoder/.

This stands in for the PyTorch export the transformer issue asks for until torch is
available to the project's scripts; the graph patterns are the same.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB, SEQ, HIDDEN, HEADS, FFN, LAYERS = 100, 16, 32, 4, 64, 2
HEAD = HIDDEN // HEADS
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "models", "encoder")


def main():
    rng = np.random.RandomState(1234)
    inits, nodes = [], []

    def w(name, shape, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(shape[0])
        inits.append(numpy_helper.from_array((rng.randn(*shape) * scale).astype(np.float32), name))
        return name

    def gamma(name):
        inits.append(numpy_helper.from_array((1.0 + 0.1 * rng.randn(HIDDEN)).astype(np.float32), name))
        return name

    def c(name, value, dtype=np.int64):
        inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    def n(op, ins, outs, name, **attrs):
        nodes.append(helper.make_node(op, ins, outs, name=name, **attrs))
        return outs[0]

    w("word_emb", [VOCAB, HIDDEN], 0.5)
    w("pos_emb", [SEQ, HIDDEN], 0.5)
    c("pos_ids", [list(range(SEQ))])
    c("zero", 0)
    c("one_i", 1)
    c("heads", [HEADS])
    c("head_dim", [HEAD])
    c("hidden", [HIDDEN])
    c("one_f", 1.0, np.float32)
    c("neg_big", -10000.0, np.float32)
    c("sqrt_head", float(np.sqrt(HEAD)), np.float32)
    c("sqrt2", float(np.sqrt(2.0)), np.float32)
    c("half", 0.5, np.float32)

    x = n("Gather", ["word_emb", "input_ids"], ["we"], "embeddings/word")
    p = n("Gather", ["pos_emb", "pos_ids"], ["pe"], "embeddings/position")
    x = n("Add", [x, p], ["emb"], "embeddings/add")
    gamma("emb_ln_g")
    w("emb_ln_b", [HIDDEN], 0.1)
    x = n("LayerNormalization", [x, "emb_ln_g", "emb_ln_b"], ["emb_ln"], "embeddings/ln", axis=-1, epsilon=1e-12)

    # Extended attention mask: (1 - mask[:, None, None, :]) * -10000
    m = n("Unsqueeze", ["attention_mask", "axes12"], ["mask4"], "mask/unsqueeze")
    c("axes12", [1, 2])
    m = n("Cast", [m], ["maskf"], "mask/cast", to=TensorProto.FLOAT)
    m = n("Sub", ["one_f", m], ["maskinv"], "mask/sub")
    mask = n("Mul", [m, "neg_big"], ["maskbias"], "mask/mul")

    for l in range(LAYERS):
        pre = f"layer{l}/"
        # batch and seq from the input's shape, as the exporter computes them
        sh = n("Shape", [x], [pre + "shape"], pre + "shape")
        b = n("Gather", [sh, "zero"], [pre + "b"], pre + "gather_b", axis=0)
        s = n("Gather", [sh, "one_i"], [pre + "s"], pre + "gather_s", axis=0)
        bu = n("Unsqueeze", [b, "axes0"], [pre + "bu"], pre + "unsq_b")
        su = n("Unsqueeze", [s, "axes0"], [pre + "su"], pre + "unsq_s")
        split = n("Concat", [bu, su, "heads", "head_dim"], [pre + "split_shape"], pre + "concat_split", axis=0)
        merge = n("Concat", [bu, su, "hidden"], [pre + "merge_shape"], pre + "concat_merge", axis=0)
        heads = {}
        for t in "qkv":
            w(pre + t + "_w", [HIDDEN, HIDDEN])
            w(pre + t + "_b", [HIDDEN], 0.1)
            y = n("MatMul", [x, pre + t + "_w"], [pre + t + "_mm"], pre + t + "/matmul")
            y = n("Add", [y, pre + t + "_b"], [pre + t + "_add"], pre + t + "/add")
            y = n("Reshape", [y, split], [pre + t + "_r"], pre + t + "/reshape")
            perm = [0, 2, 3, 1] if t == "k" else [0, 2, 1, 3]
            heads[t] = n("Transpose", [y, ], [pre + t + "_t"], pre + t + "/transpose", perm=perm)
        sc = n("MatMul", [heads["q"], heads["k"]], [pre + "scores"], pre + "attn/qk")
        sc = n("Div", [sc, "sqrt_head"], [pre + "scaled"], pre + "attn/scale")
        sc = n("Add", [sc, mask], [pre + "masked"], pre + "attn/mask")
        pr = n("Softmax", [sc], [pre + "probs"], pre + "attn/softmax", axis=-1)
        ctx = n("MatMul", [pr, heads["v"]], [pre + "ctx"], pre + "attn/pv")
        ctx = n("Transpose", [ctx], [pre + "ctx_t"], pre + "attn/transpose", perm=[0, 2, 1, 3])
        ctx = n("Reshape", [ctx, merge], [pre + "ctx_r"], pre + "attn/reshape")
        w(pre + "o_w", [HIDDEN, HIDDEN])
        w(pre + "o_b", [HIDDEN], 0.1)
        y = n("MatMul", [ctx, pre + "o_w"], [pre + "o_mm"], pre + "out/matmul")
        y = n("Add", [y, pre + "o_b"], [pre + "o_add"], pre + "out/add")
        y = n("Add", [y, x], [pre + "res1"], pre + "out/residual")
        gamma(pre + "ln1_g")
        w(pre + "ln1_b", [HIDDEN], 0.1)
        x = n("LayerNormalization", [y, pre + "ln1_g", pre + "ln1_b"], [pre + "ln1"], pre + "ln1", axis=-1, epsilon=1e-12)
        w(pre + "f1_w", [HIDDEN, FFN])
        w(pre + "f1_b", [FFN], 0.1)
        h = n("MatMul", [x, pre + "f1_w"], [pre + "f1_mm"], pre + "ffn/up")
        h = n("Add", [h, pre + "f1_b"], [pre + "f1_add"], pre + "ffn/up_bias")
        g = n("Div", [h, "sqrt2"], [pre + "g_div"], pre + "gelu/div")
        g = n("Erf", [g], [pre + "g_erf"], pre + "gelu/erf")
        g = n("Add", [g, "one_f"], [pre + "g_add"], pre + "gelu/add")
        g = n("Mul", [h, g], [pre + "g_mul"], pre + "gelu/mul")
        g = n("Mul", [g, "half"], [pre + "gelu"], pre + "gelu/half")
        w(pre + "f2_w", [FFN, HIDDEN])
        w(pre + "f2_b", [HIDDEN], 0.1)
        y = n("MatMul", [g, pre + "f2_w"], [pre + "f2_mm"], pre + "ffn/down")
        y = n("Add", [y, pre + "f2_b"], [pre + "f2_add"], pre + "ffn/down_bias")
        y = n("Add", [y, x], [pre + "res2"], pre + "ffn/residual")
        gamma(pre + "ln2_g")
        w(pre + "ln2_b", [HIDDEN], 0.1)
        x = n("LayerNormalization", [y, pre + "ln2_g", pre + "ln2_b"], [pre + "ln2"], pre + "ln2", axis=-1, epsilon=1e-12)
    c("axes0", [0])
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    graph = helper.make_graph(
        nodes,
        "encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, SEQ]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, SEQ]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, SEQ, HIDDEN])],
        inits,
    )
    model = helper.make_model(graph, producer_name="edgecc-examples", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    os.makedirs(OUT, exist_ok=True)
    onnx.save(model, os.path.join(OUT, "model.onnx"))

    ids = rng.randint(0, VOCAB, size=(1, SEQ)).astype(np.int64)
    mask = np.ones((1, SEQ), dtype=np.int64)
    mask[0, -5:] = 0
    np.save(os.path.join(OUT, "input_0.npy"), ids)
    np.save(os.path.join(OUT, "input_1.npy"), mask)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(os.path.join(OUT, "model.onnx"), so, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input_ids": ids, "attention_mask": mask})
    np.save(os.path.join(OUT, "output_0.npy"), y)
    print("encoder:", y.shape, float(np.abs(y).max()), file=sys.stderr)


if __name__ == "__main__":
    main()
