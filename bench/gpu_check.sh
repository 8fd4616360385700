#!/bin/bash
# The GPU check of issue 15, prepared to run in one go on a machine with a CUDA GPU (about 10 minutes):
#   bash bench/gpu_check.sh            # from the repository root, with the venv's python on PATH or $PY
# 1. every test marked `cuda` (attacks, defenses, label methods, a scenario and prior training on CUDA);
# 2. IG throughput on the GPU: ResNet-18 (CIFAR stem), 3×32×32 images, b=1, 200 steps, N=64 clients
#    batched vs one at a time, and one IG step against the floor; writes docs/results/throughput-cuda.md.
set -euo pipefail
PY=${PY:-python}
export PYTHONPATH=${PYTHONPATH:-$PWD/src}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
$PY -m pytest -q -p no:cacheprovider -m cuda tests
$PY bench/bench_throughput.py --device cuda --repeats 1 --threads 1
