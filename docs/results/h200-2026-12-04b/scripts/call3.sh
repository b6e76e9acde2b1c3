#!/usr/bin/env bash
# Node + node_modules, install the provider, then the CUDA check, the demo on CUDA, longer CUDA A/B runs.
set -u
mkdir -p /tmp/kit && tar -xJf .gpu/node.tar.xz -C /tmp/kit && tar -xJf .gpu/mods.tar.xz -C . || exit 9
export PATH=/tmp/kit/bin:$PATH
node --version
PY=$(command -v python3)
SP=$($PY -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
node dist/src/cli/kdcache.js cuda install --from /tmp/kit/prov
node dist/src/cli/kdcache.js cuda check; echo "check rc $?"
node -e "import('./dist/src/util/addon.js').then((m) => { const r = m.loadAddon(); console.log('addon', r.ok, r.reason ?? ''); if (r.ok) console.log('zstd', r.addon.zstdCompress(new Uint8Array(10), new Uint8Array(100), 1)); })"
[ -f bench/models/mlp_784_4096x3_10.onnx ] || $PY tools/make_bench_models.py bench/models
ls -la bench/models
b() { # name, args...
  local name=$1; shift
  echo "== $name: $*"
  touch /tmp/stamp; sleep 1
  timeout 200 node dist/bench/precompute.js "$@" > "$OUT/$name.log" 2>&1; echo "rc $?"
  tail -6 "$OUT/$name.log"
  find bench/results -maxdepth 1 -newer /tmp/stamp -name 'precompute*.json' -exec cp {} "$OUT/$name.json" \;
}
echo "== demo precompute on CUDA (auto thread)"
node dist/src/cli/precompute-logits.js --teacher data/teacher.onnx --data data/fashion-mnist-train-images.idx3-ubyte.gz --labels data/fashion-mnist-train-labels.idx1-ubyte.gz --scale 1/255 --device cuda --out /tmp/demo-cuda --overwrite 2>&1 | tail -2
node dist/src/cli/kdcache.js verify /tmp/demo-cuda | tail -1
b cuda-worker-long --device cuda --models big,cnn --rows-scale 50 --reps 3 --inference-thread worker
b cuda-main-long --device cuda --models big,cnn --rows-scale 50 --reps 3 --inference-thread main
echo done
