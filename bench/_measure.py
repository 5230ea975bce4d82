"""Measurements shared by the benchmarks."""

import argparse

import torch


def saved_beyond(fn, x: torch.Tensor) -> int:
    """Bytes that autograd saves for backward while running fn(x), not counting x's own storage."""
    sizes = []

    def pack(t):
        if t.untyped_storage().data_ptr() != x.untyped_storage().data_ptr():
            sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(sizes)


def parse_bench_args(doc: str):
    """--device, --repeats and --threads, shared by the operator benchmarks; applies the thread count."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (torch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
