#!/usr/bin/env bash
# One prepared GPU check (a few minutes): build with CUDA ON, run the gpu-marked tests, then the
# kernel-vs-CPU check, CUDA emit latency and pinned-vs-pageable bandwidth (benchmarks/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
REACTOR_ENGINE_CUDA=ON scripts/setup.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
.venv/bin/python -m pytest -m gpu tests -q -rs 2>&1 | tee "$out/gpu-tests.txt"
.venv/bin/python benchmarks/gpu_check.py | tee "$out/gpu-check.json"
