"""Measurements shared by the benchmarks."""

import argparse

import torch


def saved_beyond(fn, x: torch.Tensor) -> int:
    """Bytes that autograd saves for backward while running fn(x), not counting x's own storage; a tensor that two
    layers save (a neuron's spikes, saved by it and by the pooling after it) counts once."""
    sizes = {}

    def pack(t):
        storage = t.untyped_storage().data_ptr()
        if storage != x.untyped_storage().data_ptr():
            sizes[storage] = max(sizes.get(storage, 0), t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(sizes.values())


def parse_bench_args(doc: str):
    """--device, --repeats and --threads, shared by the operator benchmarks; applies the thread count."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (torch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
