"""Write deterministic random-weight ONNX teachers for the benchmarks.

Makes (default outdir bench/models/, which is git-ignored):
    mlp_784_1200_1200_10.onnx  x f32 [N,784] -> 2 hidden layers of 1200 -> logits [N,10]
    mlp_784_4096x3_10.onnx     x f32 [N,784] -> 3 hidden layers of 4096 -> logits [N,10]
                               (inference-dominated; ~147 MB)
    cnn_wide.onnx              image f32 [N,1,28,28] -> ResNet-ish CNN (64/128 channels)
                               -> logits [N,10]
Weights are He-initialised from a fixed seed; opset 13, ir_version 8.
Files that already exist are skipped.

Rerun (from the repo root):
    /usr/bin/python3 tools/make_bench_models.py [outdir]
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "bench", "models")


def he(rng, shape, fan_in, gain=1.0):
    return (rng.standard_normal(shape) * gain * (2.0 / fan_in) ** 0.5).astype(np.float32)


def save(filename, nodes, inputs, outputs, inits):
    path = os.path.join(OUT, filename)
    graph = helper.make_graph(nodes, filename[:-5], inputs, outputs, inits)
    model = helper.make_model(graph, producer_name="kdcache-bench",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)  # fine below the 2 GB protobuf limit
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    print(f"{filename}: {os.path.getsize(path)} bytes")


def mlp(filename, sizes, seed):
    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], [], "x"
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        out = "logits" if last else f"h{i}"
        inits += [numpy_helper.from_array(he(rng, (fan_in, fan_out), fan_in), f"W{i}"),
                  numpy_helper.from_array(np.zeros(fan_out, np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        cur = out
    save(filename, nodes,
         [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
         [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[-1]])],
         inits)


def cnn_wide(filename, seed):
    # stem conv(64) -> 2 residual blocks @64 (28x28) -> conv(128, stride 2)
    # -> 2 residual blocks @128 (14x14) -> global average pool -> Gemm(10)
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x, cin, cout, name, stride=1, relu=True, gain=1.0):
        inits.append(numpy_helper.from_array(
            he(rng, (cout, cin, 3, 3), cin * 9, gain), f"{name}_w"))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}_b"))
        nodes.append(helper.make_node(
            "Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"],
            kernel_shape=[3, 3], strides=[stride, stride], pads=[1, 1, 1, 1]))
        if not relu:
            return f"{name}_c"
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"]))
        return f"{name}_r"

    def block(x, ch, name):
        h = conv(x, ch, ch, f"{name}a")
        h = conv(h, ch, ch, f"{name}b", relu=False, gain=0.5)
        nodes.append(helper.make_node("Add", [x, h], [f"{name}_sum"]))
        nodes.append(helper.make_node("Relu", [f"{name}_sum"], [f"{name}_out"]))
        return f"{name}_out"

    h = conv("image", 1, 64, "stem")
    h = block(h, 64, "b1")
    h = block(h, 64, "b2")
    h = conv(h, 64, 128, "down", stride=2)
    h = block(h, 128, "b3")
    h = block(h, 128, "b4")
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["feat"], axis=1))
    inits.append(numpy_helper.from_array(he(rng, (128, 10), 128), "fc_w"))
    inits.append(numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["feat", "fc_w", "fc_b"], ["logits"]))
    save(filename, nodes,
         [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
         [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
         inits)


def main():
    os.makedirs(OUT, exist_ok=True)
    jobs = [
        ("mlp_784_1200_1200_10.onnx", lambda f: mlp(f, [784, 1200, 1200, 10], 1)),
        ("mlp_784_4096x3_10.onnx", lambda f: mlp(f, [784, 4096, 4096, 4096, 10], 2)),
        ("cnn_wide.onnx", lambda f: cnn_wide(f, 3)),
    ]
    for filename, make in jobs:
        if os.path.exists(os.path.join(OUT, filename)):
            print(f"{filename}: exists, skipped")
            continue
        make(filename)


if __name__ == "__main__":
    main()
