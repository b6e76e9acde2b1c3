#!/usr/bin/env bash
# Reproduce docs/gpu.md on a GPU box: CPU vs CUDA caches of the Fashion-MNIST teacher (max relative
# difference), and pipeline vs raw session.run throughput on CUDA and CPU for the benchmark teachers.
#
# Needs: Node 20 with `npm ci` done; an NVIDIA driver; CUDA 13 + cuDNN 9 libraries on LD_LIBRARY_PATH;
# the CUDA provider installed (kdcache cuda install --from <folder or .tgz>); /usr/bin/python3 with onnx
# (python3-onnx) to generate the benchmark teachers once.
#
#   bash tools/gpu-bench.sh [out-dir]        # results land in bench/results/*.json and out-dir
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/gpu}
npm run build --silent
node dist/src/cli/kdcache.js cuda check

# 1. Same teacher, same data, CPU and CUDA: how close are the cached logits?
for dev in cpu cuda; do
  node dist/src/cli/precompute-logits.js --teacher data/teacher.onnx \
    --data data/fashion-mnist-train-images.idx3-ubyte.gz --labels data/fashion-mnist-train-labels.idx1-ubyte.gz \
    --scale 1/255 --device "$dev" --batch-size 1024 --out "$OUT/fmnist-$dev" --overwrite
done
node dist/bench/compare-caches.js "$OUT/fmnist-cpu" "$OUT/fmnist-cuda" --name gpu-fmnist-cpu-vs-cuda

# 2. Throughput: the full pipeline against a raw session.run loop, on CUDA (target >= 0.9) and CPU.
node dist/bench/precompute.js --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3
node dist/bench/precompute.js --device cpu --models big,cnn --reps 2
echo "results: bench/results/gpu-fmnist-cpu-vs-cuda.json bench/results/precompute-cuda.json bench/results/precompute.json"
