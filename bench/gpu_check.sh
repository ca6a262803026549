#!/usr/bin/env bash
# The GPU check of the speed issue (#8), for a session that is lent a CUDA machine.
# That machine has its own Python with torch, timm and transformers but no internet and
# no Debian datasets, so Fashion-MNIST travels with the working tree:
#   here:   bash bench/gpu_check.sh --stage      # copies the data into .gpu-carry/ (git-ignored)
#   there:  the device tool's run, command "bash bench/gpu_check.sh", carry [".gpu-carry"]
# It installs kdbench into that Python (no dependencies fetched), then runs the device
# tests, a smoke grid on cuda, and one quick pair on cuda and on the same machine's CPU.
# Each step's output goes to $OUT (the device tool brings it back). About 6 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --stage ]; then
  src=${KDBENCH_DATA:-/usr/share/datasets/fashion-mnist}
  mkdir -p .gpu-carry/fashion-mnist && cp "$src"/*-ubyte* .gpu-carry/fashion-mnist/ || exit 1
  grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >> .git/info/exclude
  du -sh .gpu-carry
  exit 0
fi

OUT=${OUT:-$(mktemp -d)}
export KDBENCH_DATA=$PWD/.gpu-carry/fashion-mnist KDBENCH_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
KDBENCH_HOME=$(mktemp -d)
export KDBENCH_HOME
[ -d "$KDBENCH_DATA" ] || { echo "no $KDBENCH_DATA: run 'bash bench/gpu_check.sh --stage' first and carry .gpu-carry"; exit 2; }

if ! python3 -c "import importlib.metadata as m; m.distribution('kdbench')" 2>/dev/null; then
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 \
    || { cat "$OUT/install.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, transformers; print(torch.__version__, timm.__version__, transformers.__version__)" \
  | tee -a "$OUT/gpu.txt"

step() {  # step NAME COMMAND...: run it, keep its output, say how long it took
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$OUT/$name.log" 2>&1
  echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/gpu.txt"
}
step tests python3 -m pytest -q -p no:cacheprovider tests/test_accel.py
step smoke kdbench run --profile smoke --pairs mlp-hinton,resnet-cnn,vit-cnn --device cuda --quiet --out runs/gpu-smoke
step quick-cuda kdbench run --pairs resnet-cnn --device cuda --quiet --out runs/gpu-quick
step quick-cpu kdbench run --pairs resnet-cnn --device cpu --quiet --out runs/cpu-quick
