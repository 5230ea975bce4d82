"""Refusing a run far beyond the machine's memory before anything is created, from shapes alone (the meta device).

`check_network` builds the network on the meta device (no memory) and compares its parameters, times the copies
training keeps (weights, gradients, optimiser state), with the memory free on the run's device. `check_step` runs one
training step on a shape-only copy of the network (its LIF neurons skip their loop over the time steps) and adds up
the inputs and outputs of its modules, the activations that backpropagation keeps: about the least the step needs, so
a refusal means the step could not run.
The trace stops as soon as that sum passes the free memory, or after TRACE_SECONDS of CPU time (meta operations are
slow: other loops over thousands of time steps take long), with what it has counted. Networks or steps that cannot be
traced on the meta device are not checked. Free memory: CUDA's, or MemAvailable of /proc/meminfo.
"""

import contextlib
import copy
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import Dataset, default_collate

from pfa.engine.state import rng_state, set_rng_state
from pfa.errors import UserError
from pfa.lif.neuron import LIF

GIB = 2**30
TRACE_SECONDS = 10.0
OPTIMIZER_COPIES = {"adam": 2, "adamw": 2, "sgd": 1}  # tensors of state per parameter beyond weights and gradient


def available_memory(device: torch.device) -> int | None:
    """Bytes free on `device` (None where the system does not say)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        found = re.search(r"^MemAvailable:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


@contextlib.contextmanager
def _rng_untouched() -> Iterator[None]:
    """Whatever the traced code draws, the run's random numbers stay as they were."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _gib(size: int) -> str:
    return f"{size / GIB:.3g} GiB"


def check_network(build: Callable[[], nn.Module], device: torch.device, copies: int) -> None:
    """Refuse the network `build` returns if `copies` times its parameters and buffers exceed the memory free on
    `device`; `build` runs on the meta device."""
    free = available_memory(device)
    if free is None:
        return
    try:
        with _rng_untouched(), torch.device("meta"):
            network = build()
    except UserError:
        raise
    except Exception:  # not buildable on the meta device: the real build reports its own errors
        return
    weights = sum(t.numel() * t.element_size() for t in itertools.chain(network.parameters(), network.buffers()))
    if weights * copies > free:
        count = sum(p.numel() for p in network.parameters())
        use = "evaluate" if copies == 1 else f"train ({copies} copies: weights, gradients, optimiser state)"
        raise UserError(f"the network has {count:,} parameters, {_gib(weights * copies)} to {use}, but {device} has "
                        f"{_gib(free)} free; lower its size (e.g. --width)")


def _spikes_shaped(neuron: LIF) -> Callable[[torch.Tensor], torch.Tensor]:
    """A LIF's multi-step forward as shapes only: without its loop over the time steps."""

    def forward(x_seq: torch.Tensor) -> torch.Tensor:
        neuron.v = torch.empty(x_seq.shape[1:], dtype=torch.promote_types(x_seq.dtype, torch.float32), device="meta")
        return torch.empty_like(x_seq)

    return forward


def _meta_twin(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters and buffers live on the meta device (nothing of the model is copied), its
    LIF neurons giving spikes of the right shape at once."""
    memo: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    twin = copy.deepcopy(model, memo)
    for module in twin.modules():
        if isinstance(module, LIF):
            module.multi_step_forward = _spikes_shaped(module)
    return twin


def _meta_batch(value: Any, batch_size: int) -> Any:
    """A collated batch of one sample, as shapes of `batch_size` samples on the meta device."""
    if isinstance(value, torch.Tensor):
        return torch.empty((batch_size, *value.shape[1:]), dtype=value.dtype, device="meta")
    if isinstance(value, list | tuple):
        return type(value)(_meta_batch(v, batch_size) for v in value)
    if isinstance(value, dict):
        return {k: _meta_batch(v, batch_size) for k, v in value.items()}
    return value


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class _Enough(Exception):
    """The trace has counted enough: past the limit, or out of time."""


class _Deadline(TorchDispatchMode):
    """Ends a trace (_Enough) at its first operation after `seconds`."""

    def __init__(self, seconds: float):
        super().__init__()
        self.end = time.process_time() + seconds  # CPU time: a loaded machine does not cut the trace short

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if time.process_time() > self.end:
            raise _Enough
        return func(*args, **(kwargs or {}))


def step_activations(model: nn.Module, train_step: Callable[[nn.Module, Any], Any], dataset: Dataset,
                     batch_size: int, limit: float = float("inf"), half: bool = False,
                     seconds: float = TRACE_SECONDS) -> int | None:
    """Bytes of the modules' inputs and outputs in `train_step(model, batch)` for a batch of `batch_size` samples shaped
    like dataset[0], traced on the meta device, each tensor once (a view as its base); counting stops once past `limit`
    or after `seconds`; None when the step cannot be traced. `half`: floating-point activations take 2 bytes (mixed
    precision)."""
    seen: dict[int, torch.Tensor] = {}  # the tensors counted (a view by its base), kept so that their ids stay theirs
    total = 0

    def count(tensors: Iterator[torch.Tensor]) -> None:
        nonlocal total
        for t in tensors:
            t = t if t._base is None else t._base
            if id(t) not in seen:
                seen[id(t)] = t
                total += t.numel() * (2 if half and t.is_floating_point() else t.element_size())
        if total > limit:
            raise _Enough

    with _rng_untouched():
        try:
            batch = _meta_batch(default_collate([dataset[0]]), batch_size)
            twin = _meta_twin(model)
            for module in twin.modules():
                module.register_forward_pre_hook(lambda m, inputs: count(_tensors(inputs)))
                module.register_forward_hook(lambda m, inputs, output: count(_tensors(output)))
            with _Deadline(seconds):
                train_step(twin, batch)
        except _Enough:
            pass
        except Exception:  # an operation without a meta implementation: no estimate
            return None
    return total


def check_step(model: nn.Module, train_step: Callable[[nn.Module, Any], Any], dataset: Dataset, batch_size: int,
               device: torch.device, reserved: int, half: bool = False) -> None:
    """Refuse a training step whose activations plus `reserved` bytes (gradients, optimiser state) exceed the memory
    free on `device`, the network being there already."""
    free = available_memory(device)
    if free is None:
        return
    activations = step_activations(model, train_step, dataset, batch_size, free - reserved, half)
    if activations is not None and activations + reserved > free:
        raise UserError(f"one training step of batch size {batch_size} needs at least "
                        f"{_gib(activations + reserved)} ({_gib(activations)} of activations), but {device} has "
                        f"{_gib(free)} free; lower --batch-size or the network's size (e.g. --width, time steps)")
