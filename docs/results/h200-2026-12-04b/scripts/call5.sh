#!/usr/bin/env bash
set -u
mkdir -p /tmp/kit && tar -xJf .gpu/node.tar.xz -C /tmp/kit && tar -xJf .gpu/mods.tar.xz -C . || exit 9
export PATH=/tmp/kit/bin:$PATH
PY=$(command -v python3)
SP=$($PY -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
node dist/src/cli/kdcache.js cuda install --from /tmp/kit/prov | tail -1
$PY tools/make_bench_models.py bench/models > /dev/null
# Does ONNX Runtime's CPU thread pool (16 threads, idle or spinning beside a CUDA graph) slow the pipeline's teacher?
for t in 1 4; do
  echo "== cuda big,cnn, pipeline on --threads $t, raw on 16"
  timeout 150 node dist/bench/precompute.js --device cuda --models big,cnn --rows-scale 10 --reps 3 --pipeline-threads $t > "$OUT/cuda-p$t.log" 2>&1; echo "rc $?"
  tail -4 "$OUT/cuda-p$t.log"
done
echo "== cuda big,cnn, both loops on --threads 1"
timeout 150 node dist/bench/precompute.js --device cuda --models big,cnn --rows-scale 10 --reps 3 --threads 1 > "$OUT/cuda-t1.log" 2>&1; echo "rc $?"
tail -4 "$OUT/cuda-t1.log"
echo done
