"""Training throughput of a network built from our parts vs the same network from the reference's parts.

    ours:      pfa.lif.neuron.LIF + pfa.PFA (batched composition, recomputed in backward) + pfa.lif.layers' pooling
               and dropout, channels-last, and the optimiser as pfa's engine builds it (fused Adam)
    baseline:  spikingjelly's LIFNode + LoopPFA (the reference's algorithm: one full [N, T, C, H, W] tensor per rank)
               + torch's pooling and dropout, NCHW, torch's default Adam

Both variants train (forward, loss, backward, Adam step, reset) on the same random batch, timed alternately in one
process so that machine noise hits both alike; the table reports medians and the ratio ours / baseline in images per
second (and peak memory on CUDA). Both use the network's own neuron options (FMNIST: the reset is not detached); ours
is the network as FMNIST/run.py trains it, the baseline the reference's.
Networks are named entries of CONFIGS; add one with a builder taking (neuron factory or None for the network's own,
PFA factory or None for pfa.PFA, channels_last). `--amp fp16|bf16` runs both under autocast (fp16 with a GradScaler
on CUDA); `--compile` wraps ours in torch.compile and reports the compile time (its first steps) separately.
Ours uses the LIF backend "auto" (on CPU the C loops, where they build).

    python bench/train_step.py                          # every config, CPU
    python bench/train_step.py --config fmnist --device cuda --steps 20 --amp bf16
"""

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parent)]

from _baselines import LoopPFA, spikingjelly_lif, with_torch_layers  # noqa: E402

from pfa.engine.config import TrainConfig  # noqa: E402
from pfa.engine.losses import mse_rate_loss  # noqa: E402
from pfa.engine.state import build_optimizer  # noqa: E402
from pfa.lif import native as _native  # noqa: E402
from pfa.models.fmnist import FashionMNISTNet  # noqa: E402


@dataclass
class BenchConfig:
    build: Callable[[Callable[[], nn.Module] | None, Callable[..., nn.Module] | None, bool], nn.Module]
    input_shape: tuple[int, ...]
    classes: int
    batch_size: int


CONFIGS = {
    "fmnist": BenchConfig(lambda *parts: FashionMNISTNet(4, 128, 4, "pfa", 0.7, *parts), (1, 28, 28), 10, 64),
    "fmnist-quick": BenchConfig(lambda *parts: FashionMNISTNet(4, 32, 4, "pfa", 0.3, *parts), (1, 28, 28), 10, 64),
}


@dataclass
class Variant:
    parts: tuple  # the builder's (neuron factory, PFA factory, channels_last)
    finish: Callable[[nn.Module], nn.Module]
    optimizer: Callable[[object], torch.optim.Optimizer]

    def build(self, config: BenchConfig, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        model = self.finish(config.build(*self.parts)).to(device)
        return model, self.optimizer(model.parameters())


VARIANTS = {
    "ours": Variant((None, None, True), lambda model: model, lambda params: build_optimizer(TrainConfig(), params)),
    "baseline": Variant((lambda: spikingjelly_lif(detach_reset=False), LoopPFA, False), with_torch_layers,
                        lambda params: torch.optim.Adam(params, 1e-3)),
}
AMP = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Setup:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    amp: torch.dtype | None
    scaler: torch.amp.GradScaler


def time_steps(setup: Setup, images, labels, steps: int) -> list[float]:
    """Seconds of each full training step."""
    times, model, optimizer, scaler = [], setup.model, setup.optimizer, setup.scaler
    device = images.device.type
    for _ in range(steps):
        synchronize(images.device)
        start = time.perf_counter()
        autocast = torch.autocast(device, setup.amp) if setup.amp is not None else contextlib.nullcontext()
        with autocast:
            loss = mse_rate_loss(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        functional.reset_net(model)
        synchronize(images.device)
        times.append(time.perf_counter() - start)
    return times


def bench(name: str, device: torch.device, steps: int, warmup: int, rounds: int, batch_size: int | None,
          amp: str = "none", compile: bool = False) -> dict:
    config = CONFIGS[name]
    batch = batch_size or config.batch_size
    images = torch.rand(batch, *config.input_shape, device=device)
    labels = torch.randint(0, config.classes, (batch,), device=device)
    setups, times, memory, compile_s = {}, {v: [] for v in VARIANTS}, {}, None
    for variant, recipe in VARIANTS.items():
        torch.manual_seed(0)
        model, optimizer = recipe.build(config, device)
        if compile and variant == "ours":
            model = torch.compile(model)
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and amp == "fp16")
        setups[variant] = Setup(model, optimizer, AMP[amp], scaler)
        first = time_steps(setups[variant], images, labels, max(warmup, 1))
        if compile and variant == "ours":
            compile_s = sum(first)
    for _ in range(rounds):  # alternate, so that load changes affect both variants alike
        for variant, setup in setups.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times[variant] += time_steps(setup, images, labels, steps)
            if device.type == "cuda":
                memory[variant] = torch.cuda.max_memory_allocated(device) / 2**20
    rate = {v: batch / statistics.median(t) for v, t in times.items()}
    return {"config": name, "batch": batch, "ours": rate["ours"], "baseline": rate["baseline"],
            "ratio": rate["ours"] / rate["baseline"], "memory": memory, "compile_s": compile_s}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append", help="network(s) to time [default: all]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, help="override the config's batch size")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--amp", choices=sorted(AMP), default="none", help="autocast dtype for both variants")
    parser.add_argument("--compile", action="store_true", help="torch.compile ours (compile time reported apart)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    lif = "cpu" if device.type == "cpu" and _native.available() else "auto"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, device {device} ({where}), amp {args.amp}, compile {args.compile}, "
          f"our LIF backend {lif}")
    print("| config | batch | ours img/s | baseline img/s | ours / baseline | peak MiB ours / baseline |")
    print("|---|---|---|---|---|---|")
    results = []
    for name in args.config or list(CONFIGS):
        r = bench(name, device, args.steps, args.warmup, args.rounds, args.batch_size, args.amp, args.compile)
        mem = f"{r['memory']['ours']:.0f} / {r['memory']['baseline']:.0f}" if r["memory"] else "n/a (CPU)"
        print(f"| {name} | {r['batch']} | {r['ours']:.1f} | {r['baseline']:.1f} | {r['ratio']:.2f}x | {mem} |",
              flush=True)
        if r["compile_s"] is not None:
            print(f"compile: ours' first {max(args.warmup, 1)} steps took {r['compile_s']:.1f} s", flush=True)
        results.append(r)
    return results


if __name__ == "__main__":
    main()
