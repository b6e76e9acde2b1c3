#!/usr/bin/env python3
"""PyTorch reference for bench/train-vs-pytorch: train the same student with the same loss and
optimizer as kdcache and print examples/s as one JSON line.

Students (as kdcache builds them, see src/train/students.py equivalents in src/train/students.ts):
  mlp: 784-256-128-10, ReLU
  cnn: conv3x3(1->32, same)+ReLU, maxpool2, conv3x3(32->64, same)+ReLU, maxpool2, flatten, dense->10
Loss: kdcache's default distillation loss, alpha=1, T=4: T^2 * KL(softmax(t/T) || softmax(s/T)),
mean over the batch. Optimizer: Adam, lr 1e-3. Data: fixed random inputs and teacher logits, in
memory (the step is what is measured). Also reports which BLAS library the process loaded, so a run
on the slow reference BLAS is visible.

  /usr/bin/python3 tools/train_speed_torch.py --model mlp --batch 256 --seconds 10 [--threads 2]
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def build(model: str) -> nn.Module:
    if model == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    )


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    log_pt = F.log_softmax(teacher / T, dim=1)
    log_ps = F.log_softmax(student / T, dim=1)
    return T * T * (log_pt.exp() * (log_pt - log_ps)).sum(dim=1).mean()


def loaded_blas() -> str:
    """The BLAS shared objects mapped into this process (libopenblas vs the reference libblas)."""
    found = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if any(k in name for k in ("blas", "mkl", "blis")):
                found.add(os.path.realpath(path))
    return ", ".join(sorted(found)) or "none found"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = PyTorch's own default")
    a = p.parse_args()
    torch.manual_seed(0)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    model = build(a.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    shape = (a.batch, 784) if a.model == "mlp" else (a.batch, 1, 28, 28)
    batches = [(torch.rand(shape), torch.randn(a.batch, 10) * 3) for _ in range(8)]

    def step(i: int) -> float:
        x, t = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = kd_loss(model(x), t, 4.0)
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(a.warmup):
        step(i)
    times = []
    cpu_start = time.process_time()
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < a.seconds:
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
        i += 1
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    times.sort()
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}",
        "model": a.model,
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "steps": i,
        "examples_per_second": i * a.batch / total,
        # all threads' CPU time: with one thread, throughput that other load on the machine hardly changes
        "examples_per_cpu_second": i * a.batch / cpu,
        "median_ms_per_step": times[len(times) // 2] * 1000,
        "blas": loaded_blas(),
    }))


if __name__ == "__main__":
    main()
