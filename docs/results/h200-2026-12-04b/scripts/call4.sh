#!/usr/bin/env bash
set -u
mkdir -p /tmp/kit && tar -xJf .gpu/node.tar.xz -C /tmp/kit && tar -xJf .gpu/mods.tar.xz -C . || exit 9
export PATH=/tmp/kit/bin:$PATH
PY=$(command -v python3)
SP=$($PY -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
node dist/src/cli/kdcache.js cuda install --from /tmp/kit/prov | tail -1
node dist/src/cli/kdcache.js cuda check 2>&1 | tail -4; echo "check rc ${PIPESTATUS[0]}"
echo "== demo, --device auto, every flag at its default"
node dist/src/cli/precompute-logits.js --teacher data/teacher.onnx --data data/fashion-mnist-train-images.idx3-ubyte.gz --labels data/fashion-mnist-train-labels.idx1-ubyte.gz --scale 1/255 --out /tmp/demo-auto 2>&1 | tail -1
grep -o '"execution_provider": *"[a-z]*"' /tmp/demo-auto/manifest.json | head -1
$PY tools/make_bench_models.py bench/models > /dev/null
echo "== bench cuda mlp, --inference-thread auto"
timeout 200 node dist/bench/precompute.js --device cuda --models mlp --rows-scale 20 --reps 5 > "$OUT/cuda-mlp-auto.log" 2>&1; echo "rc $?"
tail -8 "$OUT/cuda-mlp-auto.log"
cp bench/results/precompute-cuda.json "$OUT/cuda-mlp-auto.json"
echo done
