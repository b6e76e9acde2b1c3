"""Train the Fashion-MNIST teacher CNN and export it to data/teacher.onnx.

Trains on the full 60k Fashion-MNIST train set with torch on CPU (2 threads),
inputs float32 [N,1,28,28] = pixels / 255 (no mean/std normalisation), then
exports `image` -> `logits` [N,10] (dynamic batch, opset 13) to
data/teacher.onnx and writes data/teacher.json (architecture, parameter count,
epochs, train time, test accuracy on the full 10k test set and on the first
2,000 test examples, which are the bundled demo test subset).

Rerun (from the repo root; needs Debian's dataset-fashion-mnist package):
    /usr/bin/python3 tools/train_teacher.py
Options: --epochs N (default 6), --time-one-epoch (time one epoch and exit).
"""
import argparse
import gzip
import json
import os
import random
import sys
import time

import numpy as np
import onnx
import torch
from torch import nn

SRC = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT_ONNX = os.path.join(ROOT, "data", "teacher.onnx")
OUT_JSON = os.path.join(ROOT, "data", "teacher.json")
SEED = 1234
BATCH = 128
LR = 2e-3
DEMO_TEST = 2000
ARCH = ("conv3x3(32)-BN-ReLU, conv3x3(32)-BN-ReLU, maxpool2, "
        "conv3x3(64)-BN-ReLU, conv3x3(64)-BN-ReLU, maxpool2, flatten, "
        "dropout(0.3), dense(256)-ReLU, dropout(0.3), dense(10); "
        "'same' padding; BatchNorm folded into the convs in the ONNX export")


def load_idx(name):
    with gzip.open(os.path.join(SRC, name), "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def to_input(images):
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def conv_bn(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


def make_model():
    return nn.Sequential(
        *conv_bn(1, 32), *conv_bn(32, 32), nn.MaxPool2d(2),
        *conv_bn(32, 64), *conv_bn(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, 10))


@torch.no_grad()
def predict(model, x):
    model.eval()
    return torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])


def accuracy(logits, labels):
    return float((logits.argmax(1) == labels).float().mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--time-one-epoch", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(2)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)

    x_train = to_input(load_idx("train-images-idx3-ubyte.gz"))
    y_train = torch.from_numpy(load_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    x_test = to_input(load_idx("t10k-images-idx3-ubyte.gz"))
    y_test = torch.from_numpy(load_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))

    model = make_model()
    n_params = sum(p.numel() for p in model.parameters())
    epochs = 1 if args.time_one_epoch else args.epochs
    steps_per_epoch = (len(x_train) + BATCH - 1) // BATCH
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)

    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(x_train), BATCH):
            idx = perm[i:i + BATCH]
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        acc = accuracy(predict(model, x_test), y_test)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x_train):.4f} "
              f"test acc {acc:.4f} ({time.time() - t0:.0f}s)", flush=True)
    train_seconds = time.time() - t0
    if args.time_one_epoch:
        return

    model.eval()
    logits = predict(model, x_test)
    test_acc = accuracy(logits, y_test)
    demo_acc = accuracy(logits[:DEMO_TEST], y_test[:DEMO_TEST])

    torch.onnx.export(
        model, x_test[:2], OUT_ONNX, opset_version=13,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True)
    onnx_model = onnx.load(OUT_ONNX)
    onnx.checker.check_model(onnx_model)
    size = os.path.getsize(OUT_ONNX)
    print(f"exported {OUT_ONNX}: {size} bytes")
    if size > 4 * 1024 * 1024:
        sys.exit("teacher.onnx is larger than 4 MB")
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(OUT_ONNX)
        got = sess.run(["logits"], {"image": x_test[:256].numpy()})[0]
        diff = float(np.abs(got - logits[:256].numpy()).max())
        print(f"onnxruntime vs torch max abs diff: {diff:.2e}")
    except ImportError:
        print("python onnxruntime not installed; skipping ONNX output check")

    info = {
        "file": "data/teacher.onnx",
        "dataset": "Fashion-MNIST (full 60,000 train; evaluated on 10,000 test)",
        "input": {"name": "image", "dtype": "float32", "shape": ["batch", 1, 28, 28],
                  "preprocessing": "pixel / 255 (scale 1/255, no mean/std)"},
        "output": {"name": "logits", "dtype": "float32", "shape": ["batch", 10]},
        "architecture": ARCH,
        "parameters": n_params,
        "optimizer": f"Adam, one-cycle LR max {LR}, batch {BATCH}",
        "epochs": epochs,
        "seed": SEED,
        "train_seconds": round(train_seconds, 1),
        "test_accuracy": round(test_acc, 4),
        "demo_test_accuracy": round(demo_acc, 4),
        "demo_test_examples": DEMO_TEST,
        "onnx_opset": 13,
        "onnx_bytes": size,
        "torch_version": torch.__version__,
        "threads": 2,
        "command": "/usr/bin/python3 tools/train_teacher.py"
                   + ("" if epochs == 6 else f" --epochs {epochs}"),
    }
    with open(OUT_JSON, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
