"""What attention costs in a CIFAR-family training step: the same network with each registered attention kind
(none, PFA, MA-SNN, TA-SNN, TCJA, ...).

Each variant is built by `pfa.tasks.cifar` from a dataset's defaults (CIFAR10-DVS: VGG, T=12, R=8, 128x128 frames pooled
to 48x48) and trains (forward, MSE on the firing rate, backward, Adam step, reset) on one random batch; the variants
are timed in alternating rounds in one process, so machine noise hits all alike. Reported: medians in images/s, the
share of the step the attention takes, 1 - t(none) / t(attention) (goal for PFA: <= 15 %), the bytes autograd saves
for backward, and peak memory on CUDA. On CPU the share is also given in process CPU time, which other processes'
load disturbs less than wall time (`--threads 1` steadies it further).

    python bench/bench_cifar_step.py                                  # CIFAR10-DVS, CPU, batch 4
    python bench/bench_cifar_step.py --device cuda --batch-size 32 --amp fp16 --dataset dvsgesture
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from spikingjelly.activation_based import functional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pfa.attention.registry import attention_kinds  # noqa: E402
from pfa.engine.config import parse_config  # noqa: E402
from pfa.engine.losses import mse_rate_loss  # noqa: E402
from pfa.tasks.cifar import IMAGE_DATASETS, CifarConfig, Data, build_model  # noqa: E402

FRAMES = {"cifar10dvs": (128, 128, 10), "ncaltech101": (180, 240, 101), "dvsgesture": (128, 128, 11)}
VARIANTS = attention_kinds()  # "none" first: the baseline of every share


def build(dataset: str, attention: str, width: float, device: torch.device) -> tuple[torch.nn.Module, CifarConfig]:
    cfg = parse_config(CifarConfig, ["--dataset", dataset, "--attention", attention, "--width", str(width)])
    if dataset in IMAGE_DATASETS:
        data = Data(None, None, 10 if dataset == "cifar10" else 100, 3, (32, 32), images=True)
    else:
        height, width_px, classes = FRAMES[dataset]
        data = Data(None, None, classes, 2, (height, width_px), images=False)
    torch.manual_seed(0)
    model, _ = build_model(cfg, data)
    return model.to(device), cfg


def batch_for(cfg: CifarConfig, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    if cfg.dataset in IMAGE_DATASETS:
        inputs = torch.randn(batch, 3, 32, 32, generator=generator)
        classes = 10 if cfg.dataset == "cifar10" else 100
    else:
        height, width, classes = FRAMES[cfg.dataset]
        inputs = (torch.rand(batch, cfg.T, 2, height, width, generator=generator) < 0.05).float()
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return inputs.to(device), labels.to(device)


def train_step(model, optimizer, inputs, labels, autocast) -> tuple[float, float]:
    """Wall and process CPU seconds of one training step."""
    if inputs.is_cuda:
        torch.cuda.synchronize()
    start, start_cpu = time.perf_counter(), time.process_time()
    with autocast():
        loss = mse_rate_loss(model(inputs), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    functional.reset_net(model)
    if inputs.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - start_cpu


def saved_for_backward(model, inputs, labels, autocast) -> float:
    """MiB that autograd keeps between forward and backward (distinct storages)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
        loss = mse_rate_loss(model(inputs), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    functional.reset_net(model)
    return sum(storages.values()) / 2**20


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10dvs", choices=(*FRAMES, *IMAGE_DATASETS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1 = the paper's network)")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="autocast on CUDA")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, one timed step per variant each")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    def autocast():
        dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype, enabled=device.type == "cuda" and args.amp != "none")

    setups, saved = {}, {}
    for variant in VARIANTS:
        model, cfg = build(args.dataset, variant, args.width, device)
        inputs, labels = batch_for(cfg, args.batch_size, device)
        optimizer = torch.optim.Adam(model.parameters(), 1e-4)
        saved[variant] = saved_for_backward(model, inputs, labels, autocast)
        for _ in range(args.warmup):
            train_step(model, optimizer, inputs, labels, autocast)
        setups[variant] = (model, optimizer, inputs, labels)
    times, cpu_times, peak = {v: [] for v in VARIANTS}, {v: [] for v in VARIANTS}, {}
    for _ in range(args.rounds):
        for variant, setup in setups.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            wall, cpu = train_step(*setup, autocast)
            times[variant].append(wall)
            cpu_times[variant].append(cpu)
            if device.type == "cuda":
                peak[variant] = torch.cuda.max_memory_allocated(device) / 2**20
    median = {v: statistics.median(t) for v, t in times.items()}
    median_cpu = {v: statistics.median(t) for v, t in cpu_times.items()}

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.dataset}: {cfg.arch}, T={cfg.T}, R={cfg.rank}, width {args.width}, batch {args.batch_size}, "
          f"amp {args.amp}; torch {torch.__version__}, {where}; medians of {args.rounds} interleaved steps")
    print("| attention | images/s | step ms | share of the step (wall) | share (CPU time) | saved for backward MiB "
          "| peak MiB |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for variant in VARIANTS:
        share = 1 - median["none"] / median[variant]
        share_cpu = 1 - median_cpu["none"] / median_cpu[variant]
        results[variant] = {"images_per_s": args.batch_size / median[variant], "step_s": median[variant],
                            "share": share, "share_cpu": share_cpu, "saved_mib": saved[variant],
                            "peak_mib": peak.get(variant)}
        shares = "- | -" if variant == "none" else f"{100 * share:.1f} % | {100 * share_cpu:.1f} %"
        memory = f"{peak[variant]:.0f}" if variant in peak else "n/a (CPU)"
        print(f"| {variant} | {args.batch_size / median[variant]:.2f} | {1000 * median[variant]:.0f} | {shares} | "
              f"{saved[variant]:.0f} | {memory} |")
    return results


if __name__ == "__main__":
    main()
