"""Measurements shared by the benchmarks."""

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
