"""PyTorch twin of `train-student`, for the parity check in docs/results.md.

Trains the same student as kdcache's built-in specs (src/train/students.ts) with the same loss
(src/train/tf-losses.ts), optimiser and data, reading the teacher logits that the experiment
exported from the kdcache train cache, so that any accuracy difference comes from the framework,
not from the recipe. What is matched, and where it is defined in kdcache:

  architecture  mlp:H1,H2,..  dense(H)-ReLU ... dense(10), raw logits           students.ts buildMlp
                cnn:C1,C2,..  [conv3x3 same (C)-ReLU, maxpool2] ... flatten, dense(10)
  init          Glorot-uniform kernels, zero biases (tfjs layer defaults)      students.ts glorot()
  loss          alpha*T^2*mean_b KL(softmax(z_t/T) || softmax(z_s/T))
                + (1-alpha)*mean_b CE(y, z_s); both terms are means over the batch   tf-losses.ts
  optimiser     Adam(lr, beta1 0.9, beta2 0.999, eps 1e-7): tf.train.adam(lr) with the
                backend's float32 epsilon; eps is added to sqrt(v_hat) in both      trainer.ts
  batches       a fresh random order of all rows every epoch, last partial batch kept
  inputs        pixel / 255 as float32, flat 784 for an MLP (cache preprocessing scale 1/255)

Prints one JSON object per seed (accuracy and agreement with the teacher on the test set).

    /usr/bin/python3 tools/torch_student.py --teacher-logits out/experiment/teacher-train-logits.npy \
        --test-teacher-logits out/experiment/teacher-test-logits.npy \
        --student mlp:128 --alpha 0.9 --temperature 4 --epochs 15 --seeds 0,1,2
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SRC = "/usr/share/datasets/fashion-mnist"
TF_EPSILON = 1e-7  # tfjs EPSILON_FLOAT32, the default Adam epsilon on float32 backends


def load_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = int.from_bytes(raw[:4], "big") & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def parse_student(spec):
    kind, _, sizes = spec.partition(":")
    if kind not in ("mlp", "cnn"):
        sys.exit(f"--student {spec}: expected mlp:H1,H2,... or cnn:C1,C2,...")
    return kind, [int(s) for s in sizes.split(",") if s.strip()]


def glorot_(layer):
    # torch's xavier_uniform_ uses the same fan_in/fan_out as Keras for dense and conv kernels.
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def make_student(spec, classes=10):
    kind, sizes = parse_student(spec)
    layers = []
    if kind == "mlp":
        width = 28 * 28
        for h in sizes:
            layers += [glorot_(nn.Linear(width, h)), nn.ReLU()]
            width = h
        layers.append(glorot_(nn.Linear(width, classes)))
        return nn.Sequential(*layers)
    cin, side = 1, 28
    for c in sizes:
        layers += [glorot_(nn.Conv2d(cin, c, 3, padding=1)), nn.ReLU(), nn.MaxPool2d(2)]
        cin, side = c, side // 2
    layers += [nn.Flatten(), glorot_(nn.Linear(cin * side * side, classes))]
    return nn.Sequential(*layers)


def distillation_loss(zs, zt, y, alpha, temperature):
    total = zs.new_zeros(())
    if alpha > 0:
        log_pt = F.log_softmax(zt / temperature, dim=1)
        log_ps = F.log_softmax(zs / temperature, dim=1)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()
        total = total + alpha * temperature * temperature * kl
    if alpha < 1:
        total = total + (1 - alpha) * F.cross_entropy(zs, y)
    return total


def inputs(images, spec):
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255))
    return x.reshape(len(x), -1) if spec.startswith("mlp") else x.unsqueeze(1)


@torch.no_grad()
def predict(model, x):
    model.eval()
    return torch.cat([model(x[i:i + 2000]) for i in range(0, len(x), 2000)])


def train_one(a, seed, data):
    x, y, zt, xt, yt, zt_test = data
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    model = make_student(a.student)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=TF_EPSILON)
    n = len(x)
    started = time.perf_counter()
    for _ in range(a.epochs):
        model.train()
        perm = torch.from_numpy(order_rng.permutation(n))
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            loss = distillation_loss(model(x[idx]), zt[idx], y[idx], a.alpha, a.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - started
    pred = predict(model, xt).argmax(1)
    return {
        "framework": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "student": a.student, "alpha": a.alpha, "temperature": a.temperature, "epochs": a.epochs,
        "batch_size": a.batch_size, "lr": a.lr, "seed": seed,
        "accuracy": float((pred == yt).float().mean()),
        "agreement": float((pred == zt_test.argmax(1)).float().mean()),
        "train_seconds": round(seconds, 2),
        "examples_per_second": round(a.epochs * n / seconds, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher-logits", required=True, help="float32 [60000,10] .npy, rows in dataset order")
    ap.add_argument("--test-teacher-logits", required=True, help="float32 [10000,10] .npy (for agreement)")
    ap.add_argument("--train-images", default=os.path.join(SRC, "train-images-idx3-ubyte.gz"))
    ap.add_argument("--train-labels", default=os.path.join(SRC, "train-labels-idx1-ubyte.gz"))
    ap.add_argument("--test-images", default=os.path.join(SRC, "t10k-images-idx3-ubyte.gz"))
    ap.add_argument("--test-labels", default=os.path.join(SRC, "t10k-labels-idx1-ubyte.gz"))
    ap.add_argument("--student", default="mlp:128")
    ap.add_argument("--alpha", type=float, required=True)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    x = inputs(load_idx(a.train_images), a.student)
    y = torch.from_numpy(load_idx(a.train_labels).astype(np.int64))
    zt = torch.from_numpy(np.load(a.teacher_logits).astype(np.float32))
    xt = inputs(load_idx(a.test_images), a.student)
    yt = torch.from_numpy(load_idx(a.test_labels).astype(np.int64))
    zt_test = torch.from_numpy(np.load(a.test_teacher_logits).astype(np.float32))
    if len(zt) != len(x) or len(zt_test) != len(xt):
        sys.exit(f"teacher logits rows ({len(zt)}, {len(zt_test)}) do not match the images ({len(x)}, {len(xt)})")
    for seed in (int(s) for s in a.seeds.split(",")):
        print(json.dumps(train_one(a, seed, (x, y, zt, xt, yt, zt_test))), flush=True)


if __name__ == "__main__":
    main()
