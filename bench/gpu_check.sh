#!/usr/bin/env bash
# GPU check, under 5 minutes on one GPU: SmolLM2 LoRA training fp32 vs bf16 autocast (examples/s
# and final loss), PSIM, ICL label scoring and ONION on the GPU vs the same code on the CPU
# (identical predictions), and a two-process (DDP) run when there are several GPUs; then one
# summary table. Extra arguments go to bench/gpu_check.py (e.g. --model, --loss-tolerance).
#
#   bash bench/gpu_check.sh        # from anywhere; PYTHON=... to choose the interpreter
#
# Exit status: 0 every check passed, 1 a check failed (or timed out), 2 no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_VERBOSITY=error PYTHONUNBUFFERED=1

gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [ "$gpus" -eq 0 ]; then
  echo "gpu_check: no CUDA device here ($("$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA build", torch.version.cuda)')); run it on a GPU machine" >&2
  exit 2
fi
"$PYTHON" -c 'import torch; print("gpu_check:", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0), "torch", torch.__version__)'

results=$(mktemp)
trap 'rm -f "$results"' EXIT
status=0
# one process, batch 16: every check (about 2-3 minutes on an H100/H200)
timeout 200 "$PYTHON" bench/gpu_check.py --json "$results" "$@" || status=1
if [ "$gpus" -ge 2 ]; then
  # two processes x batch 8 train as one x batch 16: same loss, compared in the summary
  CUDA_VISIBLE_DEVICES=0,1 timeout 90 "$PYTHON" -m accelerate.commands.launch --multi_gpu \
    --num_processes 2 bench/gpu_check.py --ddp --batch-size 8 --json "$results" "$@" || status=1
else
  echo "gpu_check: one GPU, no two-process run"
fi
"$PYTHON" bench/gpu_check.py --summary "$results" || status=1
exit "$status"
