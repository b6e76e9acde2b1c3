"""Write the ONNX fixtures for sparse (top-k) and sequence caches into test/fixtures/.

Makes (fixed numpy seeds, opset 13, ir_version 8, byte-reproducible):
  seq_mask_teacher.onnx  tokens int64 [batch,seq] + attention_mask int64 [batch,seq]
                         -> logits f32 [batch,seq,4096]; a peaked sequence teacher with a mask input
  wide_teacher.onnx      x f32 [batch,32] -> logits f32 [batch,2048]; a peaked many-class MLP

Rerun (from the repo root):
    /usr/bin/python3 tools/make_sparse_fixtures.py [outdir]
"""
import os

import numpy as np
from onnx import TensorProto, helper

# The same output folder, opset and helpers as the other fixtures (run from anywhere: this file's
# folder is on sys.path when it runs as a script).
from make_fixtures import OUT, init, rand, save, vinfo


def seq_mask_teacher():
    # logits[b, t] = (E[tokens[b, t]] * mask[b, t]) @ P. Logit std ~5 over 4096 classes: peaked like
    # a trained language model (top-32 keeps most of the mass), unlike seq_teacher.onnx (std ~1).
    # Padding positions (mask 0) give all-zero logits, i.e. a uniform distribution.
    vocab, dim = 4096, 8
    rng = np.random.default_rng(17)
    nodes = [
        helper.make_node("Gather", ["E", "tokens"], ["emb"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["kept"]),
        helper.make_node("MatMul", ["kept", "P"], ["logits"]),
    ]
    inits = [
        init("E", rand(rng, vocab, dim)),
        init("P", rand(rng, dim, vocab, scale=5.0 * dim ** -0.5)),
        init("last", np.array([-1], dtype=np.int64)),
    ]
    graph = helper.make_graph(
        nodes, "seq_mask_teacher",
        [vinfo("tokens", TensorProto.INT64, ["batch", "seq"]),
         vinfo("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [vinfo("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
        inits)
    save(graph, "seq_mask_teacher.onnx")


def wide_teacher():
    # Gemm(32 -> 32) + Relu + Gemm(32 -> 2048): logit std ~5 on N(0, 1) inputs, so the teacher is
    # confident but not one-hot and top-32 drops a measurable tail.
    classes, hidden = 2048, 32
    rng = np.random.default_rng(23)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "W2", "B2"], ["logits"]),
    ]
    inits = [
        init("W1", rand(rng, 32, hidden, scale=(2 / 32) ** 0.5)),
        init("B1", rand(rng, hidden, scale=0.1)),
        init("W2", rand(rng, hidden, classes, scale=5.0 * (1 / hidden) ** 0.5)),
        init("B2", rand(rng, classes, scale=0.1)),
    ]
    graph = helper.make_graph(
        nodes, "wide_teacher",
        [vinfo("x", TensorProto.FLOAT, ["batch", 32])],
        [vinfo("logits", TensorProto.FLOAT, ["batch", classes])],
        inits)
    save(graph, "wide_teacher.onnx")


def main():
    os.makedirs(OUT, exist_ok=True)
    seq_mask_teacher()
    wide_teacher()


if __name__ == "__main__":
    main()
