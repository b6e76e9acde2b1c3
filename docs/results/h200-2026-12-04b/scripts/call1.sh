#!/usr/bin/env bash
# Stage the CUDA provider (38 MB) on the warm machine; call2 must follow within 30 s.
set -e
mkdir -p /tmp/kit && tar -xJf .gpu/prov90.tar.xz -C /tmp/kit && ls -la /tmp/kit/prov
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
nproc
for p in python3 /usr/bin/python3 /opt/torch/.venv/bin/python3; do command -v $p >/dev/null && $p -c 'import sys, onnx, numpy; print(sys.executable, onnx.__version__)' 2>&1 | tail -1; done
