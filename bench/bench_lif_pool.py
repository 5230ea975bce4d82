"""A LIF layer and the 2x2 max pooling of its spikes, forward+backward: fused in our C loops against the same pair run
one after the other, measured in one process (CPU, channels-last maps as the FMNIST network has them).

fused    = pfa.lif.layers.SpikingMaxPool2d(LIF()): the full spikes are never stored;
unfused  = our LIF (C loops), then torch's MaxPool2d;
sj       = spikingjelly 2's LIFNode (the reference's neuron), then torch's MaxPool2d;
memory   = bytes saved for backward beyond the input, in units of the input's size.
Every ratio is the median over rounds of per-round ratios (each round runs every candidate once, interleaved).

    python bench/bench_lif_pool.py [--repeats 7] [--threads 1]
"""

import statistics

import torch
import torch.nn as nn
from _baselines import spikingjelly_lif
from _measure import parse_bench_args, saved_beyond
from bench_lif import stateful, time_fwd_bwd
from spikingjelly.activation_based import layer

from pfa.lif.layers import SpikingMaxPool2d
from pfa.lif.neuron import LIF

SHAPES = [(4, 64, 32, 28, 28), (4, 64, 128, 28, 28), (4, 64, 128, 14, 14)]  # FMNIST's layers at width 32 and 128


def candidates() -> dict:
    def then_pool(neuron):
        return stateful(nn.Sequential(neuron, layer.SeqToANNContainer(nn.MaxPool2d(2))))

    return {"fused": stateful(SpikingMaxPool2d(LIF(backend="cpu", detach_reset=False))),
            "unfused": then_pool(LIF(backend="cpu", detach_reset=False)),
            "sj": then_pool(spikingjelly_lif(detach_reset=False))}


def bench_shape(shape, repeats):
    torch.manual_seed(0)
    x = (torch.randn(shape) + 0.5).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3).requires_grad_()
    grad = torch.randn(*shape[:3], shape[3] // 2, shape[4] // 2)
    runs = candidates()
    times = {name: [] for name in runs}
    for round_ in range(repeats + 1):  # round 0 warms up
        for name, fn in runs.items():
            elapsed = time_fwd_bwd(fn, (x,), grad, x.device)
            if round_ > 0:
                times[name].append(elapsed)
    return [(name, 1e3 * statistics.median(times[name]),
             statistics.median(a / b for a, b in zip(times[name], times["fused"], strict=True)),
             saved_beyond(fn, x) / (x.numel() * x.element_size())) for name, fn in runs.items()]


def main():
    args = parse_bench_args(__doc__)
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, medians of {args.repeats} rounds")
    print("| T, N, C, H, W | candidate | ms | ÷ fused | saved for backward beyond input (× input) |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        for name, ms, over_fused, memory in bench_shape(shape, args.repeats):
            print(f"| {', '.join(map(str, shape))} | {name} | {ms:.1f} | {over_fused:.2f} | {memory:.2f} |")


if __name__ == "__main__":
    main()
