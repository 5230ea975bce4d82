"""Put attention modules into an existing multi-step spiking network, in place.

    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model import spiking_resnet
    import pfa

    net = spiking_resnet.spiking_resnet18(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.ATan(),
                                          detach_reset=True, num_classes=10)
    functional.set_step_mode(net, "m")
    names = pfa.attach(net, torch.rand(4, 1, 3, 32, 32), kind="pfa", rank=4)   # example: [T, N, C, H, W]

Each chosen module M (by default every spiking neuron whose output is [T, N, C, H, W]) is replaced by
`Attached(M, attention)`, a two-module Sequential whose children are named `module` and `attention`, so the state dict
reads `<name>.module.*` and `<name>.attention.*` and `functional.reset_net` still finds the neuron.

PFA goes in with gate="pass" unless told otherwise: with the reference's ReLU gate (and fusion "mul") a position where
nothing fires passes no gradient, so nothing below it learns; the pass gate gives the same forward values on spikes.
The dry run measures each position's firing rate, and `attach` warns about each silent position whose module stops
the gradient.
"""

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron import BaseNode

from pfa.attention.registry import make_attention
from pfa.errors import UserError
from pfa.lif.neuron import LIF

NEURON_TYPES = (BaseNode, LIF)
Selector = Sequence[str] | Callable[[str, nn.Module], bool] | None


class SilentPositionWarning(UserWarning):
    """A position fired nothing on the example, and the attention put after it passes no gradient there."""


class Attached(nn.Sequential):
    """A module followed by the attention module `attach` put after it."""

    def __init__(self, module: nn.Module, attention: nn.Module):
        super().__init__(OrderedDict(module=module, attention=attention))


def is_spiking_neuron(module: nn.Module) -> bool:
    """spikingjelly's neurons (the BaseNode family) and pfa.lif.neuron.LIF."""
    return isinstance(module, NEURON_TYPES)


def dry_run(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, list[torch.Size]], dict[str, float]]:
    """The output shape of every call of every named module in one run on `example`, and the firing rate of each
    module with a 5-D output (the fraction of its outputs, over all calls, that are not 0).

    The run takes no gradient and keeps the network's mode, so a fresh network's batch norm uses the batch's
    statistics, as training will; the network is reset before and after, and its buffers (batch norm's running
    statistics) and the random state are restored."""
    if not isinstance(example, torch.Tensor) or example.dim() < 3:
        shape = list(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__
        raise UserError(f"attach: example must be a time-first input batch [T, N, ...], got {shape}")
    shapes: dict[str, list[torch.Size]] = {}
    active: dict[str, list[int]] = {}

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.setdefault(name, []).append(output.shape)
                if output.dim() == 5:
                    counts = active.setdefault(name, [0, 0])
                    counts[0] += int(output.count_nonzero())
                    counts[1] += output.numel()

        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    buffers = [b.clone() for b in model.buffers()]
    functional.reset_net(model)
    try:
        with torch.no_grad(), torch.random.fork_rng([example.device] if example.device.type == "cuda" else []):
            model(example)
    except Exception as e:
        raise UserError(f"attach: the model failed on the example {list(example.shape)} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); give one batch as the model takes it, "
                        "time-first [T, N, C, H, W] for a multi-step network") from None
    finally:
        functional.reset_net(model)
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        for hook in hooks:
            hook.remove()
    return shapes, {name: fired / max(total, 1) for name, (fired, total) in active.items()}


def time_first_shape(calls: list[torch.Size]) -> torch.Size | None:
    """The [T, N, C, H, W] shape a module outputs on every call, or None (not 5-D, or T or C change between calls)."""
    if not calls or any(len(s) != 5 or (s[0], s[2]) != (calls[0][0], calls[0][2]) for s in calls):
        return None
    return calls[0]


def choose(model: nn.Module, shapes: dict[str, list[torch.Size]], after: Selector) -> dict[str, torch.Size]:
    """Name -> output shape of the modules to follow with attention."""
    modules = dict(model.named_modules())
    taken = {f"{name}.module" for name, m in modules.items() if isinstance(m, Attached)}
    if after is None or callable(after):
        candidates = {name: time_first_shape(shapes.get(name, [])) for name, m in modules.items()
                      if is_spiking_neuron(m) and (after is None or after(name, m))}
        candidates = {name: shape for name, shape in candidates.items() if shape is not None}
        chosen = {name: shape for name, shape in candidates.items() if name not in taken}
        if not chosen and candidates:
            raise UserError("attach: the network is already attached: every spiking neuron that outputs "
                            "[T, N, C, H, W]" + (" and that the predicate accepts" if after else "") +
                            " has attention after it")
        if not chosen:
            which = "spiking neuron" if after is None else "spiking neuron accepted by the predicate"
            raise UserError(f"attach: no {which} outputs [T, N, C, H, W] on this example; put the network in "
                            "multi-step mode (functional.set_step_mode(net, 'm')) or name modules with after=[...]")
        return chosen
    if isinstance(after, str) or not after:
        raise UserError(f"attach: after= expects a list of module names or a predicate (name, module) -> bool, "
                        f"got {after!r}")
    chosen = {}
    for name in after:
        if name not in modules or not name:
            close = [n for n in modules if n and n.split(".")[-1] == name.split(".")[-1]][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"attach: the model has no module named {name!r}{hint}; names are those of "
                            "model.named_modules()")
        if isinstance(modules[name], Attached) or name in taken:
            raise UserError(f"attach: {name!r} already has attention after it (attach was called on this network "
                            "before)")
        shape = time_first_shape(shapes.get(name, []))
        if shape is None:
            seen = [list(s) for s in shapes.get(name, [])] or "nothing (not called)"
            raise UserError(f"attach: module {name!r} must output [T, N, C, H, W] to take attention after it, "
                            f"but it output {seen}")
        chosen[name] = shape
    nested = [(outer, inner) for outer in chosen for inner in chosen if inner.startswith(outer + ".")]
    if nested:
        outer, inner = nested[0]
        raise UserError(f"attach: {inner!r} lies inside {outer!r}; attention after both would rename the inner one, "
                        "name one of them")
    return chosen


def attach(model: nn.Module, example: torch.Tensor, *, kind: str = "pfa", after: Selector = None, gate: str = "pass",
           **options) -> list[str]:
    """Insert `make_attention(kind, T, C, gate=gate, **options)` after modules of `model`, in place; returns the
    qualified names of the inserted attention modules.

    after: None = every spiking neuron (spikingjelly's BaseNode family, pfa.lif.neuron.LIF) whose output is
        [T, N, C, H, W]; a predicate (name, module) -> bool picks among those neurons; a list of names of
        `model.named_modules()` picks any modules, each of which must output [T, N, C, H, W].
    example: one input batch as the model takes it (time-first [T, N, ...] for spikingjelly's multi-step models);
        a dry run on it gives every position's T and C, and its firing rate.
    gate: PFA's output gate (ignored by other kinds). "pass" by default, not the reference's "relu": with the ReLU
        gate (and fusion "mul") a silent position blocks all gradient below it; the pass gate gives identical forward
        values on spikes. Each position that fires nothing on the example while its module stops the gradient there
        gets a SilentPositionWarning.
    """
    shapes, rates = dry_run(model, example)
    chosen = choose(model, shapes, after)
    reference = next(iter(model.parameters()), example)
    inserted = []
    for name, shape in chosen.items():
        T, _, C = shape[:3]
        attention = make_attention(kind, T, C, gate=gate, **options).to(device=reference.device)
        if reference.is_floating_point():
            attention = attention.to(dtype=reference.dtype)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, Attached(getattr(parent, child), attention))
        inserted.append(f"{name}.attention")
        if rates.get(name) == 0 and getattr(attention, "stops_gradient_where_silent", False):
            warnings.warn(f"attach: {name!r} fired nothing on the example, and {type(attention).__name__} with "
                          f"gate={gate!r} passes no gradient where its input is 0, so no gradient crosses this "
                          "position; pass gate='pass' or feed an example that makes it fire",
                          SilentPositionWarning, stacklevel=2)
    return inserted
