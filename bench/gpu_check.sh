#!/usr/bin/env bash
# The GPU checks of issue 21, for a session that is lent a CUDA machine: one script whose parts have timeouts that
# add up to under 10 minutes (the device tool's limit for one command); unmeasured so far, expect a few minutes.
# That machine has torch and torchvision but maybe no pytest or Streamlit, and no internet: MNIST travels along
# as its four .gz files in gpu_data/ (git-ignored; flat or in gpu_data/MNIST/raw/), unpacked here first.
#   bash bench/gpu_check.sh            # from the repository root or anywhere
# Prints: the card, the GPU tests (tests/gpu_checks.py: pytest -m gpu where pytest is there), the CLI's default
# recipe to 99% on the GPU, and bench/device_speed.py's GPU / CPU table (bf16 and torch.compile columns too).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0

raw=gpu_data/MNIST/raw
mkdir -p "$raw"
for f in gpu_data/*.gz; do [ -e "$f" ] && mv "$f" "$raw/"; done
for f in "$raw"/*.gz; do [ -e "$f" ] && gunzip -kf "$f"; done
ls "$raw"
export MNISTVIZ_DATA="$PWD/gpu_data"

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'cpu threads', torch.get_num_threads())"

echo "== GPU tests"
if python3 -c "import pytest, plotly, pandas, streamlit" 2>/dev/null; then
  timeout 180 python3 -m pytest -q -m gpu tests/test_device.py -p no:cacheprovider || status=1
else
  echo "(no pytest / Streamlit here: the same checks without pytest)"
  timeout 180 python3 -m tests.gpu_checks || status=1
fi

echo "== the default recipe to 99% on the GPU, through the CLI (3 seeds)"
runs=$(mktemp -d)
for seed in 0 1 2; do
  timeout 45 python3 -m mnistviz.train --device cuda --target-accuracy 0.99 --seed "$seed" --runs-dir "$runs" \
    --no-progress 2>&1 | tail -n 2 || status=1
done
rm -rf "$runs"

echo "== bench/device_speed.py"
timeout 240 python3 bench/device_speed.py --bf16 --compile || status=1
exit $status
