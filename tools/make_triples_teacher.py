"""Build a trained 1000-class teacher from the Fashion-MNIST teacher, for bench/topk-agreement.

The random-weight wide_teacher fixture has an artificially heavy, structureless tail. This one is a
real trained model: the input is three Fashion-MNIST images side by side ([N, 2352] pixels, scale
1/255 applied by precompute-logits), the class is the triple of garments (100*a + 10*b + c), and the
output is the joint log-probability log p(a) + log p(b) + log p(c) under data/teacher.onnx. Its
tail carries the teacher's real confusions (shirt vs T-shirt vs pullover, ...), multiplied out.

Writes bench/models/fmnist_triples_1000.onnx (git-ignored; ~3.5 MB, the teacher's weights).

    /usr/bin/python3 tools/make_triples_teacher.py [teacher.onnx] [out.onnx]
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "data", "teacher.onnx")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "bench", "models", "fmnist_triples_1000.onnx")


def main():
    teacher = onnx.load(SRC)
    g = teacher.graph
    (t_in,), (t_out,) = [i.name for i in g.input], [o.name for o in g.output]
    # Rename the teacher's own input and output so the composed graph can reuse the public names.
    for node in g.node:
        node.input[:] = ["t_" + n if n in (t_in, t_out) else n for n in node.input]
        node.output[:] = ["t_" + n if n in (t_in, t_out) else n for n in node.output]

    def const(name, values, dtype=np.int64):
        return numpy_helper.from_array(np.array(values, dtype=dtype), name)

    inits = list(g.initializer) + [
        const("shape_images", [-1, 1, 28, 28]), const("shape_triples", [-1, 3, 10]),
        const("shape_a", [-1, 10, 1, 1]), const("shape_b", [-1, 1, 10, 1]), const("shape_c", [-1, 1, 1, 10]),
        const("shape_out", [-1, 1000]), const("i0", 0), const("i1", 1), const("i2", 2),
    ]
    nodes = [helper.make_node("Reshape", ["x", "shape_images"], ["t_" + t_in])]
    nodes += list(g.node)
    nodes += [
        helper.make_node("LogSoftmax", ["t_" + t_out], ["logp"], axis=1),
        helper.make_node("Reshape", ["logp", "shape_triples"], ["logp3"]),
        helper.make_node("Gather", ["logp3", "i0"], ["lpa"], axis=1),
        helper.make_node("Gather", ["logp3", "i1"], ["lpb"], axis=1),
        helper.make_node("Gather", ["logp3", "i2"], ["lpc"], axis=1),
        helper.make_node("Reshape", ["lpa", "shape_a"], ["ra"]),
        helper.make_node("Reshape", ["lpb", "shape_b"], ["rb"]),
        helper.make_node("Reshape", ["lpc", "shape_c"], ["rc"]),
        helper.make_node("Add", ["ra", "rb"], ["ab"]),
        helper.make_node("Add", ["ab", "rc"], ["abc"]),
        helper.make_node("Reshape", ["abc", "shape_out"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "fmnist_triples_1000",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3 * 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])], inits)
    model = helper.make_model(graph, producer_name="kdcache-bench", opset_imports=teacher.opset_import)
    model.ir_version = teacher.ir_version
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    onnx.save(model, OUT)
    print(f"{OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
