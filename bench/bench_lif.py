"""Multi-step LIF forward+backward against the floor and spikingjelly's LIFNode, measured in one process.

floor   = relu(x * y) forward+backward on a tensor of the input's shape (the cheapest elementwise layer with backward);
sj      = spikingjelly 2's LIFNode(tau=2, ATan, detach_reset, step_mode='m'); on CUDA each of its implementations
          (native CUDA, Triton, torch), switched in this process;
memory  = on CPU, bytes saved for backward beyond the input (the torch LIF saves H and its output spikes, which the next
          layer usually saves anyway); on CUDA, peak memory allocated during forward+backward beyond the input and its
          gradient; both in units of the input's size.
Every ratio is the median over rounds of per-round ratios (each round runs every candidate once, interleaved).

    python bench/bench_lif.py [--device cuda] [--repeats 7]
"""

import statistics
import time

import torch
from _baselines import spikingjelly_lif
from _measure import parse_bench_args, saved_beyond
from spikingjelly.activation_based import functional

from pfa.lif import native as _native
from pfa.lif.neuron import LIF, cupy_available

SHAPES = [(4, 64, 128, 28, 28), (4, 32, 64, 14, 14)]
SJ_CUDA_IMPLEMENTATIONS = ("cuda", "triton", "torch")


def floor(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.relu(x * y)


def stateful(module):
    def run(x):
        functional.reset_net(module)
        return module(x)

    return run


def select_spikingjelly_cuda(name: str) -> str:
    """Switches spikingjelly's LIF CUDA implementation in this process (private API: its environment variable is read
    once, at import); returns the name of the one it then uses."""
    from spikingjelly._ops.lif import _selection

    _selection._requested = name
    _selection._selections.clear()
    return _selection._get_cuda_selection(torch.device("cuda", torch.cuda.current_device())).name


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fwd_bwd(fn, inputs, grad, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn(*inputs).backward(grad)
    sync(device)
    return time.perf_counter() - start


def memory_beyond_input(fn, x: torch.Tensor, grad: torch.Tensor) -> float:
    input_bytes = x.numel() * x.element_size()
    if x.device.type == "cuda":
        x.grad = torch.zeros_like(x)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn(x).backward(grad)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / input_bytes
    return saved_beyond(fn, x) / input_bytes


def candidates(device):
    """name -> (function of x, setup called before each of its runs)."""
    found = {"lif torch": (stateful(LIF(backend="torch")), None)}
    if device.type == "cpu" and _native.available():
        found["lif cpu"] = (stateful(LIF(backend="cpu")), None)
    if device.type == "cuda" and cupy_available():
        found["lif cupy"] = (stateful(LIF(backend="cupy")), None)
    sj = stateful(spikingjelly_lif().to(device))
    if device.type != "cuda":
        found["sj"] = (sj, None)
        return found
    for name in SJ_CUDA_IMPLEMENTATIONS:
        try:
            if select_spikingjelly_cuda(name) == name:
                found[f"sj {name}"] = (sj, lambda name=name: select_spikingjelly_cuda(name))
        except RuntimeError as error:
            print(f"spikingjelly {name}: unavailable ({error})")
    return found


def bench_shape(shape, device, repeats):
    torch.manual_seed(0)
    x = (torch.randn(shape, device=device) + 0.5).requires_grad_()
    y = torch.rand_like(x)
    grad = torch.randn_like(x)
    runs = {"floor": (lambda t: floor(t, y), None), **candidates(device)}
    times = {name: [] for name in runs}
    for round_ in range(repeats + 1):  # round 0 warms up (and compiles the CuPy kernels)
        for name, (fn, setup) in runs.items():
            if setup is not None:
                setup()
            elapsed = time_fwd_bwd(fn, (x,), grad, device)
            if round_ > 0:
                times[name].append(elapsed)
    rows = []
    sj_names = [name for name in runs if name.startswith("sj")]
    sj_best = min(sj_names, key=lambda name: statistics.median(times[name]))
    for name, (fn, setup) in runs.items():
        if setup is not None:
            setup()
        rows.append(
            (
                name,
                1e3 * statistics.median(times[name]),
                statistics.median(a / b for a, b in zip(times[name], times["floor"], strict=True)),
                statistics.median(a / b for a, b in zip(times[sj_best], times[name], strict=True)),
                memory_beyond_input(fn, x, grad),
            )
        )
    return sj_best, rows


def main():
    args = parse_bench_args(__doc__)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {name}, medians of {args.repeats} rounds")
    memory = "saved for backward" if device.type == "cpu" else "peak memory"
    print(f"| T, N, C, H, W | candidate | ms | ÷ floor | best sj ÷ this | {memory} beyond input (× input) |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        sj_best, rows = bench_shape(shape, device, args.repeats)
        for candidate, ms, over_floor, speedup, memory in rows:
            label = f"{candidate} (best sj)" if candidate == sj_best else candidate
            numbers = f"{ms:.1f} | {over_floor:.2f} | {speedup:.2f} | {memory:.2f}"
            print(f"| {', '.join(map(str, shape))} | {label} | {numbers} |")


if __name__ == "__main__":
    main()
