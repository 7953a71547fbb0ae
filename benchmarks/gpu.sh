#!/usr/bin/env bash
# The GPU benchmark in one call, on a machine that has torch, torchvision, lightning, torchmetrics,
# timm and rich but no internet. Beforehand, here: ../shared/tools/device-wheels.sh  (fills .whl/)
# On the GPU machine, from the repository root: bash benchmarks/gpu.sh [benchmarks.gpu options]
# The table is printed and, when $OUT is set, written to $OUT/gpu_results.md.
set -euo pipefail
pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:src:.
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true
python -m benchmarks.gpu "$@"
