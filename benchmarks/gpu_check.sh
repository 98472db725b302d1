#!/usr/bin/env bash
# GPU check (issue 12, item 6): YOPO saliency on CUDA for ResNet-50, VGG-19 and one LLaMA-7B-shaped
# layer (11008 x 4096), CUDA/CPU mask agreement, masked AMP training steps; prints one summary
# table and writes benchmarks/results/gpu_check.json. Under 5 minutes on an H100/H200.
# Without CUDA it says what it skips and exits 0.
#   bash benchmarks/gpu_check.sh            # PYTHON=... to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch, torchvision, safetensors" 2>/dev/null || {
    echo "gpu_check: needs torch, torchvision and safetensors for $PY (pip install -e .)" >&2; exit 2; }
exec timeout 600 "$PY" benchmarks/gpu_check.py "$@"
