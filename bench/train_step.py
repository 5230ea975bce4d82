"""Training throughput of a network built from our parts vs the same network from the reference's parts.

    ours:      pfa.neuron.LIF + pfa.PFA (batched composition, recomputed in backward)
    baseline:  spikingjelly's LIFNode + LoopPFA (the reference's algorithm: one full [N, T, C, H, W] tensor per rank)

Both variants train (forward, loss, backward, Adam step, reset) on the same random batch, timed alternately in one
process so that machine noise hits both alike; the table reports medians and the ratio ours / baseline in images per
second (and peak memory on CUDA). Networks are named entries of CONFIGS; add one with a builder taking
(neuron factory, PFA factory or None for pfa.PFA).

    python bench/train_step.py                          # every config, CPU
    python bench/train_step.py --config fmnist --device cuda --steps 20
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional, neuron, surrogate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pfa.losses import mse_rate_loss  # noqa: E402
from pfa.models.fmnist import FashionMNISTNet  # noqa: E402
from pfa.neuron import LIF  # noqa: E402


class LoopPFA(nn.Module):
    """PFA computed as the reference does: a Python loop over the rank, each term a full [N, T, C, H, W] tensor.

    Same parameters as pfa.PFA; the rank weights stay 1/R ("mul") or 1 ("add", the reference's unweighted sum).
    """

    def __init__(self, T: int, C: int, rank: int, fusion: str = "add"):
        super().__init__()
        self.rank, self.fusion = rank, fusion
        self.spatial = nn.Conv2d(T, rank, 3, padding=1)
        self.temporal = nn.Linear(C, rank)
        self.channel = nn.Linear(T, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1)  # [N, T, C, H, W]
        n, t, c, h, w = x.shape
        spatial = torch.sigmoid(self.spatial(x.mean(2))).flatten(2).permute(1, 0, 2)  # [R, N, H*W]
        pooled = x.mean((3, 4))  # [N, T, C]
        temporal = torch.sigmoid(self.temporal(pooled)).permute(2, 0, 1)  # [R, N, T]
        channel = torch.sigmoid(self.channel(pooled.transpose(1, 2))).permute(2, 0, 1)  # [R, N, C]
        weight = 1.0 if self.fusion == "add" else 1.0 / self.rank
        attention = torch.zeros_like(x)
        for r in range(self.rank):
            space_time = torch.bmm(spatial[r].unsqueeze(2), temporal[r].unsqueeze(1))  # [N, H*W, T]
            term = torch.bmm(space_time.reshape(n, -1, 1), channel[r].unsqueeze(1))  # [N, H*W*T, C]
            attention = attention + weight * term.view(n, h, w, t, c).permute(0, 3, 4, 1, 2)
        y = attention + x if self.fusion == "add" else attention * x
        return F.relu(y).transpose(0, 1)


def spikingjelly_lif() -> nn.Module:
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")


def our_lif() -> nn.Module:
    return LIF(tau=2.0, detach_reset=True, surrogate="atan")


@dataclass
class BenchConfig:
    build: Callable[[Callable[[], nn.Module], Callable[..., nn.Module] | None], nn.Module]
    input_shape: tuple[int, ...]
    classes: int
    batch_size: int


CONFIGS = {
    "fmnist": BenchConfig(lambda lif, pfa: FashionMNISTNet(4, 128, 4, "pfa", 0.7, lif, pfa), (1, 28, 28), 10, 64),
    "fmnist-quick": BenchConfig(lambda lif, pfa: FashionMNISTNet(4, 32, 4, "pfa", 0.3, lif, pfa), (1, 28, 28), 10, 64),
}
VARIANTS = {"ours": (our_lif, None), "baseline": (spikingjelly_lif, LoopPFA)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model, optimizer, images, labels, steps: int) -> list[float]:
    """Seconds of each full training step."""
    times = []
    for _ in range(steps):
        synchronize(images.device)
        start = time.perf_counter()
        loss = mse_rate_loss(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        functional.reset_net(model)
        synchronize(images.device)
        times.append(time.perf_counter() - start)
    return times


def bench(name: str, device: torch.device, steps: int, warmup: int, rounds: int, batch_size: int | None) -> dict:
    config = CONFIGS[name]
    batch = batch_size or config.batch_size
    images = torch.rand(batch, *config.input_shape, device=device)
    labels = torch.randint(0, config.classes, (batch,), device=device)
    setups, times, memory = {}, {v: [] for v in VARIANTS}, {}
    for variant, (lif, pfa) in VARIANTS.items():
        torch.manual_seed(0)
        model = config.build(lif, pfa).to(device)
        setups[variant] = (model, torch.optim.Adam(model.parameters(), 1e-3))
        time_steps(*setups[variant], images, labels, warmup)
    for _ in range(rounds):  # alternate, so that load changes affect both variants alike
        for variant, setup in setups.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times[variant] += time_steps(*setup, images, labels, steps)
            if device.type == "cuda":
                memory[variant] = torch.cuda.max_memory_allocated(device) / 2**20
    rate = {v: batch / statistics.median(t) for v, t in times.items()}
    return {"config": name, "batch": batch, "ours": rate["ours"], "baseline": rate["baseline"],
            "ratio": rate["ours"] / rate["baseline"], "memory": memory}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append", help="network(s) to time [default: all]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, help="override the config's batch size")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, device {device} ({where})")
    print("| config | batch | ours img/s | baseline img/s | ours / baseline | peak MiB ours / baseline |")
    print("|---|---|---|---|---|---|")
    results = []
    for name in args.config or list(CONFIGS):
        r = bench(name, device, args.steps, args.warmup, args.rounds, args.batch_size)
        mem = f"{r['memory']['ours']:.0f} / {r['memory']['baseline']:.0f}" if r["memory"] else "n/a (CPU)"
        print(f"| {name} | {r['batch']} | {r['ours']:.1f} | {r['baseline']:.1f} | {r['ratio']:.2f}x | {mem} |",
              flush=True)
        results.append(r)
    return results


if __name__ == "__main__":
    main()
