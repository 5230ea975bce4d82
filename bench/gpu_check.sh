#!/usr/bin/env bash
# Every GPU check in one run, for a task that is lent a device: CuPy kernels and AMP tests, the GPU benchmark tables,
# and a short CIFAR10-DVS-config training on sample recordings with the CuPy LIF and AMP. Output goes to $OUT (or ./gpu-out).
# Needs this project, spikingjelly 2 and CuPy importable there (carry wheels for what the device lacks).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import torch, spikingjelly; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  python -c "import cupy; print('cupy', cupy.__version__)" || echo "cupy missing: the CuPy rows will be absent"
} 2>&1 | tee "$out/versions.txt"
python -m pytest -q -m gpu tests 2>&1 | tee "$out/gpu_tests.txt"
python bench/bench_pfa.py --device cuda 2>&1 | tee "$out/bench_pfa.txt"
python bench/bench_lif.py --device cuda --repeats 7 2>&1 | tee "$out/bench_lif.txt"
python bench/train_step.py --device cuda --steps 20 2>&1 | tee "$out/train_step.txt"
python bench/bench_cifar_step.py --device cuda --batch-size 32 --amp fp16 2>&1 | tee "$out/bench_cifar_step.txt"
data=$(mktemp -d)
python -m pfa.data.samples --dataset cifar10dvs --root "$data/c10dvs" >/dev/null
python CIFAR/main.py --dataset cifar10dvs --data-dir "$data/c10dvs" --device cuda --epochs 3 --batch-size 8 \
  --out-dir "$out/c10dvs-run" 2>&1 | tail -n 20 | tee "$out/train_c10dvs.txt"
