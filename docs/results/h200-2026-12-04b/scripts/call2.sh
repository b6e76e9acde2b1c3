#!/usr/bin/env bash
# Node + node_modules, install the provider, then A/B the teacher's thread on CUDA and on 16 CPU cores.
set -u
mkdir -p /tmp/kit && tar -xJf .gpu/node.tar.xz -C /tmp/kit && tar -xJf .gpu/mods.tar.xz -C . || exit 9
export PATH=/tmp/kit/bin:$PATH
node --version
PY=$(command -v python3)
SP=$($PY -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
node dist/src/cli/kdcache.js cuda install --from /tmp/kit/prov
node dist/src/cli/kdcache.js cuda check
node -e "import('./dist/src/util/addon.js').then((m) => { const r = m.loadAddon(); console.log('addon', r.ok, r.reason ?? ''); if (r.ok) console.log('zstd', r.addon.zstdCompress(new Uint8Array(10), new Uint8Array(100), 1)); })"
[ -f bench/models/mlp_784_4096x3_10.onnx ] || $PY tools/make_bench_models.py bench/models
ls -la bench/models
b() { # name, args...
  local name=$1; shift
  echo "== $name: $*"
  touch /tmp/stamp; sleep 1
  timeout 200 node dist/bench/precompute.js "$@" > "$OUT/$name.log" 2>&1; echo "rc $?"
  tail -6 "$OUT/$name.log"
  mkdir -p "$OUT/$name" && find bench/results -maxdepth 1 -newer /tmp/stamp -name 'precompute*.json' -exec cp {} "$OUT/$name/" \;
}
b cuda-main   --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3 --inference-thread main
b cuda-worker --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3 --inference-thread worker
b cuda-worker-b1024 --device cuda --models mlp,big --rows-scale 10 --reps 3 --inference-thread worker --batch 1024
b cpu-main    --device cpu --models mlp,big --reps 3 --inference-thread main
b cpu-worker  --device cpu --models mlp,big --reps 3 --inference-thread worker
b cpu-worker-p$(( $(nproc) - 1 )) --device cpu --models mlp,big --reps 3 --inference-thread worker --pipeline-threads $(( $(nproc) - 1 ))
echo done
