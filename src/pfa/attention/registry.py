"""The one attention registry: every model, `attach`, the report and every `--attention` flag build modules here.

    make_attention("pfa", T=12, C=128, rank=8)      # PFA (options kernel_size, fusion, weights, gate)
    make_attention("ma", T=12, C=128)               # MA-SNN, spikingjelly's MultiDimensionalAttention
    make_attention("ta", T=12, C=128)               # TA-SNN, spikingjelly's TemporalWiseAttention
    make_attention("tcja", T=12, C=128)             # TCJA-SNN (pfa.attention.tcja)
    make_attention("none", T=12, C=128)             # nn.Identity

Each kind is a builder `(T, C, **options) -> nn.Module` registered with `@register(kind, *module_types)`; options a
kind does not take (e.g. `rank` for "ma") are ignored, so one call site serves every kind. The module types let the
report recognise attention modules inside any network.
"""

import inspect
from collections.abc import Callable

import torch.nn as nn
from spikingjelly.activation_based import layer

from pfa.attention.projected_full import PFA
from pfa.attention.tcja import TCJA

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}
_TYPES: list[type] = []


def register(kind: str, *module_types: type) -> Callable[[Builder], Builder]:
    """Add a builder under `kind`; `module_types` are the classes it returns (for `is_attention`)."""

    def add(builder: Builder) -> Builder:
        if kind in _BUILDERS:
            raise ValueError(f"attention kind {kind!r} is registered already")
        _BUILDERS[kind] = builder
        _TYPES.extend(t for t in module_types if t not in _TYPES)
        return builder

    return add


def attention_kinds() -> tuple[str, ...]:
    """The registered kinds, in registration order ("none" first)."""
    return tuple(_BUILDERS)


def make_attention(kind: str, T: int, C: int, **options) -> nn.Module:
    """The attention module of `kind` for multi-step tensors [T, N, C, H, W]; unknown kinds raise ValueError."""
    if kind not in _BUILDERS:
        raise ValueError(f"attention must be one of {', '.join(_BUILDERS)}, got {kind!r}")
    builder = _BUILDERS[kind]
    accepted = inspect.signature(builder).parameters
    return builder(T, C, **{k: v for k, v in options.items() if k in accepted})


def is_attention(module: nn.Module) -> bool:
    """Whether `module` is one of the registered attention modules."""
    return isinstance(module, tuple(_TYPES))


@register("none")
def _none(T: int, C: int) -> nn.Module:
    return nn.Identity()


@register("pfa", PFA)
def _pfa(T: int, C: int, rank: int = 8, kernel_size: int = 3, fusion: str = "mul", weights: str = "softmax",
         gate: str = "relu") -> PFA:
    return PFA(T, C, rank, kernel_size=kernel_size, fusion=fusion, weights=weights, gate=gate)


def temporal_reduction(T: int) -> int:
    """The reduction ratio of a squeeze-excitation MLP over T steps (MA-SNN's and TA-SNN's), capped at T.

    spikingjelly's MultiDimensionalAttention and TemporalWiseAttention assert T >= reduction; their default 16 fails
    for T < 16.
    """
    return min(4, T)


def ma_reductions(T: int, C: int) -> tuple[int, int]:
    """MA-SNN's temporal and channel reduction ratios, capped so that T >= reduction_t and C >= reduction_c
    (the channel default 16 fails for the 2-channel event input)."""
    return temporal_reduction(T), min(16, C)


@register("ma", layer.MultiDimensionalAttention)
def _ma(T: int, C: int) -> nn.Module:
    reduction_t, reduction_c = ma_reductions(T, C)
    return layer.MultiDimensionalAttention(T, C, reduction_t=reduction_t, reduction_c=reduction_c)


@register("ta", layer.TemporalWiseAttention)
def _ta(T: int, C: int) -> nn.Module:
    return layer.TemporalWiseAttention(T, reduction=temporal_reduction(T), dimension=4)


@register("tcja", TCJA)
def _tcja(T: int, C: int, kernel_size_t: int = 2, kernel_size_c: int = 2) -> TCJA:
    return TCJA(T, C, kernel_size_t=kernel_size_t, kernel_size_c=kernel_size_c)
