"""One FSVAE training step with PFA on its input spikes against the plain FSVAE, measured in one process.

step   = forward (PFA, encoder, posterior + prior re-run on each prefix, decoder), MMD loss, backward, AdamW step and
         FSVAE's weight clipping, on the same images, with the same RNG seed and the same non-PFA weights;
ratio  = median over rounds of (FSVAE + PFA) / FSVAE, each round running both once, interleaved;
memory = on CUDA, peak memory allocated during the step.

    python bench/bench_fsvae_step.py [--device cuda] [--batch-size 250] [--time-steps 16] [--channels 1] [--repeats 5]
"""

import argparse
import statistics
import time

import torch

from pfa.models.fsvae import FSVAE


def build(attention: str, args) -> FSVAE:
    return FSVAE(args.channels, T=args.time_steps, attention=attention, rank=args.rank).to(args.device)


def train_step(model: FSVAE, optimizer, images: torch.Tensor, seed: int) -> tuple[float, int]:
    """Seconds and peak CUDA bytes of one training step."""
    torch.manual_seed(seed)
    cuda = images.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    _, losses = model(images)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    model.clip_weights()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() if cuda else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--time-steps", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.device = torch.device(args.device)

    torch.manual_seed(0)
    plain = build("none", args)
    with_pfa = build("pfa", args)
    with_pfa.load_state_dict(plain.state_dict(), strict=False)  # same weights except PFA's own
    models = {"fsvae": plain, "fsvae+pfa": with_pfa}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-3) for name, m in models.items()}
    images = torch.rand(args.batch_size, args.channels, 32, 32, device=args.device) * 2 - 1

    for name, model in models.items():  # warm-up: allocator, kernels, optimizer state
        train_step(model, optimizers[name], images, seed=0)
    times = {name: [] for name in models}
    peaks = {name: 0 for name in models}
    for round_index in range(args.repeats):
        for name, model in models.items():
            seconds, peak = train_step(model, optimizers[name], images, seed=round_index)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)
    ratios = [a / b for a, b in zip(times["fsvae+pfa"], times["fsvae"], strict=True)]

    print(f"FSVAE training step, device={args.device}, torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"N={args.batch_size}, C={args.channels}, 32x32, T={args.time_steps}, rank={args.rank}, "
          f"{args.repeats} rounds")
    for name in models:
        memory = f", peak {peaks[name] / 2**20:.0f} MiB" if args.device.type == "cuda" else ""
        print(f"  {name:10s} median {statistics.median(times[name]) * 1e3:9.1f} ms{memory}")
    print(f"  ratio (fsvae+pfa) / fsvae: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
