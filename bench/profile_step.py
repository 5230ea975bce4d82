"""Where the time of one FMNIST training step goes: torch.profiler over a few steps of bench/train_step.py's setup.

    python bench/profile_step.py --config fmnist-quick [--variant baseline] [--steps 4] [--rows 20]
"""

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_step import AMP, CONFIGS, VARIANTS, Setup, time_steps  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="fmnist-quick")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="ours")
    parser.add_argument("--batch-size", type=int, help="override the config's batch size")
    parser.add_argument("--steps", type=int, default=4, help="profiled steps (after 2 untimed ones)")
    parser.add_argument("--rows", type=int, default=20, help="operators listed, by self CPU time")
    args = parser.parse_args(argv)
    config = CONFIGS[args.config]
    batch = args.batch_size or config.batch_size
    torch.manual_seed(0)
    model, optimizer = VARIANTS[args.variant].build(config, torch.device("cpu"))
    setup = Setup(model, optimizer, AMP["none"], torch.amp.GradScaler("cpu", enabled=False))
    images, labels = torch.rand(batch, *config.input_shape), torch.randint(0, config.classes, (batch,))
    time_steps(setup, images, labels, 2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = time_steps(setup, images, labels, args.steps)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    print(f"{args.config}, {args.variant}, batch {batch}, {torch.get_num_threads()} threads: "
          f"{1e3 * sum(seconds) / len(seconds):.0f} ms per step (profiled)\n{table}")
    return table


if __name__ == "__main__":
    main()
