"""PFA forward+backward against the floor and a reference-style per-rank loop, measured in one process.

floor  = relu(x * y) forward+backward on a tensor of the input's shape (y given: the cheapest possible attention);
loop   = the reference's composition: one full [N, T, C, H, W] tensor per rank, accumulated in Python;
saved  = bytes PFA saves for backward beyond its input, in units of the input's size.

    python bench/bench_pfa.py [--device cuda] [--repeats 7]
"""

import statistics
import time

import torch
from _baselines import LoopPFA
from _measure import parse_bench_args, saved_beyond

from pfa import PFA

SHAPES = [(12, 16, 128, 24, 8), (12, 16, 256, 12, 8), (10, 16, 128, 24, 64), (4, 64, 128, 14, 4)]


def floor(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.relu(x * y)


def time_fwd_bwd(fn, inputs, grad, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*inputs)
    out.backward(grad)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_shape(shape, device, repeats):
    T, N, C, HW, R = shape
    torch.manual_seed(0)
    module = PFA(T, C, R).to(device)
    loop = LoopPFA(T, C, R, fusion="mul").to(device)
    loop.load_state_dict(module.state_dict(), strict=False)  # the same weights; lambda stays 1/R as at initialisation
    x = (torch.rand(T, N, C, HW, HW, device=device) < 0.2).float().requires_grad_()
    y = torch.rand_like(x).requires_grad_()
    grad = torch.randn_like(x)
    candidates = {
        "floor": (floor, (x, y)),
        "pfa": (module, (x,)),
        "loop": (loop, (x,)),
    }
    for fn, inputs in candidates.values():
        time_fwd_bwd(fn, inputs, grad, device)
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, (fn, inputs) in candidates.items():
            times[name].append(time_fwd_bwd(fn, inputs, grad, device))
    ratio = {name: statistics.median(a / b for a, b in zip(times[name], times["floor"], strict=True)) for name in times}
    return {
        "floor_ms": 1e3 * statistics.median(times["floor"]),
        "pfa_over_floor": ratio["pfa"],
        "loop_over_pfa": statistics.median(a / b for a, b in zip(times["loop"], times["pfa"], strict=True)),
        "saved_x_input": saved_beyond(module, x) / (x.numel() * x.element_size()),
    }


def main():
    args = parse_bench_args(__doc__)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, medians of {args.repeats}")
    print("| T, N, C, H=W, R | floor ms | PFA ÷ floor | loop ÷ PFA | saved beyond input (× input) |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        r = bench_shape(shape, device, args.repeats)
        print(
            f"| {', '.join(map(str, shape))} | {r['floor_ms']:.1f} | {r['pfa_over_floor']:.2f} | "
            f"{r['loop_over_pfa']:.2f} | {r['saved_x_input']:.3f} |"
        )


if __name__ == "__main__":
    main()
