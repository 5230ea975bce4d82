#!/usr/bin/env bash
# Every GPU check in one run, for a task that is lent a device: CuPy kernels and AMP tests, the GPU benchmark tables
# (the training step in fp32, AMP fp16, AMP bf16 and torch.compile), and a short CIFAR10-DVS-config training on sample
# recordings with the CuPy LIF and AMP. Output goes to $OUT (or ./gpu-out).
# Needs this project, spikingjelly 2 and CuPy importable there (carry wheels for what the device lacks).
#   bench/gpu_check.sh             # on the GPU machine
#   bench/gpu_check.sh --dry-run   # on a CPU: the training-step lines with tiny steps, to check the script itself
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [[ "${1:-}" == "--dry-run" ]]; then
  device=cpu; step_args=(--config fmnist-quick --batch-size 2 --steps 1 --rounds 1 --warmup 0)
else
  device=cuda; step_args=(--steps 20)
fi
{
  date -u
  [[ $device == cuda ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import torch, spikingjelly; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  python -c "import cupy; print('cupy', cupy.__version__)" || echo "cupy missing: the CuPy rows will be absent"
} 2>&1 | tee "$out/versions.txt"
if [[ $device == cuda ]]; then
  python -m pytest -q -m gpu tests 2>&1 | tee "$out/gpu_tests.txt"
  python bench/bench_pfa.py --device cuda 2>&1 | tee "$out/bench_pfa.txt"
  python bench/bench_lif.py --device cuda --repeats 7 2>&1 | tee "$out/bench_lif.txt"
fi
for amp in none fp16 bf16; do
  python bench/train_step.py --device $device "${step_args[@]}" --amp $amp 2>&1 | tee "$out/train_step_$amp.txt"
done
python bench/train_step.py --device $device "${step_args[@]}" --compile 2>&1 | tee "$out/train_step_compile.txt"
[[ $device == cuda ]] || exit 0
python bench/bench_cifar_step.py --device cuda --batch-size 32 --amp fp16 2>&1 | tee "$out/bench_cifar_step.txt"
data=$(mktemp -d)
python -m pfa.data.samples --dataset cifar10dvs --root "$data/c10dvs" >/dev/null
python CIFAR/main.py --dataset cifar10dvs --data-dir "$data/c10dvs" --device cuda --epochs 3 --batch-size 8 \
  --amp fp16 --out-dir "$out/c10dvs-run" 2>&1 | tail -n 20 | tee "$out/train_c10dvs.txt"
