"""Write small deterministic ONNX test fixtures into test/fixtures/.

Makes: mlp16.onnx, mlp16_batch1.onnx, two_io.onnx, cnn_tiny.onnx,
nan_teacher.onnx, external_escape.onnx, sparse_escape.onnx,
external_ok.onnx (+ external_ok.bin), probs_teacher.onnx,
seq_teacher.onnx and not_onnx.onnx (see test/fixtures/README.md).

Rerun (from the repo root):
    /usr/bin/python3 tools/make_fixtures.py [outdir]
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures")


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def vinfo(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def save(graph, filename, check=True):
    model = helper.make_model(
        graph, producer_name="kdcache-fixtures",
        opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if check:
        onnx.checker.check_model(model)
    path = os.path.join(OUT, filename)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    print(f"{filename}: {os.path.getsize(path)} bytes")


def mlp16_weights():
    rng = np.random.default_rng(16)
    return [
        init("W1", rand(rng, 16, 32, scale=(2 / 16) ** 0.5)),
        init("B1", rand(rng, 32, scale=0.1)),
        init("W2", rand(rng, 32, 4, scale=(2 / 32) ** 0.5)),
        init("B2", rand(rng, 4, scale=0.1)),
    ]


def mlp16(batch, filename):
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "W2", "B2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp16",
        [vinfo("x", TensorProto.FLOAT, [batch, 16])],
        [vinfo("logits", TensorProto.FLOAT, [batch, 4])],
        mlp16_weights())
    save(graph, filename)


def two_io():
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Sub", ["a", "b"], ["d"]),
        helper.make_node("Gemm", ["s", "Ws", "Bs"], ["sum_logits"]),
        helper.make_node("Gemm", ["d", "Wd", "Bd"], ["diff_logits"]),
    ]
    inits = [
        init("Ws", rand(rng, 16, 4, scale=0.25)),
        init("Bs", rand(rng, 4, scale=0.1)),
        init("Wd", rand(rng, 16, 4, scale=0.25)),
        init("Bd", rand(rng, 4, scale=0.1)),
    ]
    graph = helper.make_graph(
        nodes, "two_io",
        [vinfo("a", TensorProto.FLOAT, ["batch", 16]),
         vinfo("b", TensorProto.FLOAT, ["batch", 16])],
        [vinfo("sum_logits", TensorProto.FLOAT, ["batch", 4]),
         vinfo("diff_logits", TensorProto.FLOAT, ["batch", 4])],
        inits)
    save(graph, "two_io.onnx")


def cnn_tiny():
    # Inputs are expected in [0, 1] (pixels / 255). Scales chosen so that
    # logits have a std of roughly 2 on Fashion-MNIST images.
    rng = np.random.default_rng(28)
    nodes = [
        helper.make_node("Conv", ["image", "Wc", "Bc"], ["c"],
                         kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["cr"]),
        helper.make_node("Flatten", ["cr"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "Wf", "Bf"], ["logits"]),
    ]
    inits = [
        init("Wc", rand(rng, 4, 1, 3, 3, scale=(2 / 9) ** 0.5)),
        init("Bc", rand(rng, 4, scale=0.1)),
        init("Wf", rand(rng, 4 * 14 * 14, 10, scale=(1 / 784) ** 0.5 * 7.5)),
        init("Bf", rand(rng, 10, scale=0.1)),
    ]
    graph = helper.make_graph(
        nodes, "cnn_tiny",
        [vinfo("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [vinfo("logits", TensorProto.FLOAT, ["batch", 10])],
        inits)
    save(graph, "cnn_tiny.onnx")


def nan_teacher():
    # logits = Log(x[:, :4]); negative entries give NaN, zeros give -Inf.
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["xs"]),
        helper.make_node("Log", ["xs"], ["logits"]),
    ]
    inits = [
        init("starts", np.array([0], dtype=np.int64)),
        init("ends", np.array([4], dtype=np.int64)),
        init("axes", np.array([1], dtype=np.int64)),
    ]
    graph = helper.make_graph(
        nodes, "nan_teacher",
        [vinfo("x", TensorProto.FLOAT, ["batch", 16])],
        [vinfo("logits", TensorProto.FLOAT, ["batch", 4])],
        inits)
    save(graph, "nan_teacher.onnx")


def external_escape():
    # The weight claims to live in an external file outside the model's
    # directory. Loaders must refuse it; the path must never be read.
    w = TensorProto()
    w.name = "W"
    w.data_type = TensorProto.FLOAT
    w.dims.extend([16, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"),
                       ("offset", "0"), ("length", str(16 * 4 * 4))):
        entry = w.external_data.add()
        entry.key = key
        entry.value = value
    nodes = [helper.make_node("Gemm", ["x", "W"], ["out"])]
    graph = helper.make_graph(
        nodes, "external_escape",
        [vinfo("x", TensorProto.FLOAT, ["batch", 16])],
        [vinfo("out", TensorProto.FLOAT, ["batch", 4])],
        [w])
    save(graph, "external_escape.onnx", check=False)


def external_tensor(name, dims, location, length):
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"),
                       ("length", str(length))):
        entry = t.external_data.add()
        entry.key = key
        entry.value = value
    return t


def sparse_escape():
    # Same escape as external_escape, hidden in a sparse initializer's values:
    # the external-data guard must look inside sparse tensors too.
    values = external_tensor("W", [64], "../../etc/passwd", 64 * 4)
    indices = numpy_helper.from_array(np.arange(64, dtype=np.int64), "W_idx")
    sparse = helper.make_sparse_tensor(values, indices, [16, 4])
    nodes = [helper.make_node("Gemm", ["x", "W"], ["out"])]
    graph = helper.make_graph(
        nodes, "sparse_escape",
        [vinfo("x", TensorProto.FLOAT, ["batch", 16])],
        [vinfo("out", TensorProto.FLOAT, ["batch", 4])],
        sparse_initializer=[sparse])
    save(graph, "sparse_escape.onnx", check=False)


def external_ok():
    # Legitimate external data next to the model (external_ok.bin): loads.
    # Tests copy it and replace the .bin with a symlink leading outside.
    rng = np.random.default_rng(5)
    w = rand(rng, 16, 4, scale=0.5)
    with open(os.path.join(OUT, "external_ok.bin"), "wb") as f:
        f.write(w.tobytes())
    nodes = [helper.make_node("Gemm", ["x", "W"], ["out"])]
    graph = helper.make_graph(
        nodes, "external_ok",
        [vinfo("x", TensorProto.FLOAT, ["batch", 16])],
        [vinfo("out", TensorProto.FLOAT, ["batch", 4])],
        [external_tensor("W", [16, 4], "external_ok.bin", w.nbytes)])
    save(graph, "external_ok.onnx", check=False)


def probs_teacher():
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Gemm", ["x", "W", "B"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probs"], axis=-1),
    ]
    inits = [
        init("W", rand(rng, 16, 4, scale=0.5)),
        init("B", rand(rng, 4, scale=0.1)),
    ]
    graph = helper.make_graph(
        nodes, "probs_teacher",
        [vinfo("x", TensorProto.FLOAT, ["batch", 16])],
        [vinfo("probs", TensorProto.FLOAT, ["batch", 4])],
        inits)
    save(graph, "probs_teacher.onnx")


def seq_teacher():
    # Embedding [V, D] -> MatMul [D, V]. V=4096, D=16 would be ~512 KB of
    # weights; fits the ~600 KB budget.
    vocab, dim = 4096, 16
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node("Gather", ["E", "tokens"], ["emb"], axis=0),
        helper.make_node("MatMul", ["emb", "P"], ["logits"]),
    ]
    inits = [
        init("E", rand(rng, vocab, dim)),
        init("P", rand(rng, dim, vocab, scale=dim ** -0.5)),
    ]
    graph = helper.make_graph(
        nodes, "seq_teacher",
        [vinfo("tokens", TensorProto.INT64, ["batch", "seq"])],
        [vinfo("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
        inits)
    save(graph, "seq_teacher.onnx")


def not_onnx():
    text = ("this is not an onnx model\n" * 8)[:200]
    path = os.path.join(OUT, "not_onnx.onnx")
    with open(path, "w") as f:
        f.write(text)
    print(f"not_onnx.onnx: {os.path.getsize(path)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    mlp16("batch", "mlp16.onnx")
    mlp16(1, "mlp16_batch1.onnx")
    two_io()
    cnn_tiny()
    nan_teacher()
    external_escape()
    sparse_escape()
    external_ok()
    probs_teacher()
    seq_teacher()
    not_onnx()


if __name__ == "__main__":
    main()
