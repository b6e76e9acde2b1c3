#!/usr/bin/env bash
# Reproduce docs/gpu.md on a GPU box: CPU vs CUDA caches of the Fashion-MNIST teacher (max relative
# difference), and pipeline vs raw session.run throughput on CUDA and CPU for the benchmark teachers.
#
# Needs: Node 20 with `npm ci` done; an NVIDIA driver; CUDA 13 + cuDNN 9 libraries on LD_LIBRARY_PATH;
# the CUDA provider installed (kdcache cuda install --from <folder or .tgz>); a python3 with onnx and
# numpy to generate the benchmark teachers once (PYTHON=..., default python3).
#
#   bash tools/gpu-bench.sh [out-dir]        # results land in bench/results/*.json and out-dir
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/gpu}
npm run build --silent
node dist/src/cli/kdcache.js cuda check
[ -f bench/models/mlp_784_4096x3_10.onnx ] || "${PYTHON:-python3}" tools/make_bench_models.py bench/models

# 1. Same teacher, same data, CPU and CUDA: how close are the cached logits?
for dev in cpu cuda; do
  node dist/src/cli/precompute-logits.js --teacher data/teacher.onnx \
    --data data/fashion-mnist-train-images.idx3-ubyte.gz --labels data/fashion-mnist-train-labels.idx1-ubyte.gz \
    --scale 1/255 --device "$dev" --batch-size 1024 --out "$OUT/fmnist-$dev" --overwrite
done
node dist/bench/compare-caches.js "$OUT/fmnist-cpu" "$OUT/fmnist-cuda" --name gpu-fmnist-cpu-vs-cuda

# 2. Throughput: the full pipeline against a raw session.run loop, on CUDA (target >= 0.9) and CPU;
#    then what may close the gap on a GPU: bigger batches, more shard writers (each run overwrites
#    precompute-cuda.json, so copies are kept).
node dist/bench/precompute.js --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3
cp bench/results/precompute-cuda.json bench/results/precompute-cuda-b256.json
node dist/bench/precompute.js --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3 --batch 1024
cp bench/results/precompute-cuda.json bench/results/precompute-cuda-b1024.json
node dist/bench/precompute.js --device cuda --models mlp,big --rows-scale 10 --reps 3 --writers 2
cp bench/results/precompute-cuda.json bench/results/precompute-cuda-w2.json
# The teacher on the main thread, as before --inference-thread (auto puts it on its own on a GPU box).
node dist/bench/precompute.js --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3 --inference-thread main
node dist/bench/precompute.js --device cpu --models mlp,big,cnn --reps 3
# On many cores the cheap MLP reached 0.73 of raw: does leaving one core to the pipeline's own threads help?
node dist/bench/precompute.js --device cpu --models mlp,big --reps 3 --pipeline-threads $(( $(nproc) - 1 ))
echo "results: bench/results/gpu-fmnist-cpu-vs-cuda.json bench/results/precompute-cuda-{b256,b1024,w2,main}.json bench/results/precompute.json bench/results/precompute-pipeline$(( $(nproc) - 1 )).json"
