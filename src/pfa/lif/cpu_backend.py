"""The "cpu" LIF backend: the fused C loops of `csrc/lif_cpu.c` (built and threaded by `pfa.lif.native`).

The state is float32 (inputs may be half precision); the torch backend serves float64 and other devices.
"""

from __future__ import annotations

import ctypes
import functools
import math

import torch

from pfa.lif.native import address, library, parallel
from pfa.lif.params import LIFParams
from pfa.lif.torch_backend import _step_order, _unpermute, finish_forward


class _Constants(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ("decay_input", "hard_reset", "detach_reset", "rectangle")] + [
        (name, ctypes.c_float) for name in ("tau", "v_threshold", "v_reset", "minus_threshold", "k2", "center",
                                            "width", "through", "minus_scale", "input_scale", "decay")]


def supports(x_seq: torch.Tensor, v0: torch.Tensor) -> bool:
    """CPU tensors with a float32 state: float32 inputs, or half-precision ones (converted, as the torch backend's
    arithmetic does)."""
    return x_seq.device.type == "cpu" and v0.dtype == torch.float32


@functools.cache
def constants(p: LIFParams) -> _Constants:
    """The neuron's scalars as the torch backend rounds them to float32 (once per setting)."""
    k = math.pi / 2 * p.alpha
    scale = p.alpha / 2 if p.surrogate == "atan" else 1 / (2 * p.width)
    g = 1 / p.tau if p.decay_input else 1.0
    return _Constants(
        decay_input=p.decay_input, hard_reset=p.v_reset is not None, detach_reset=p.detach_reset,
        rectangle=p.surrogate == "rectangle", tau=p.tau, v_threshold=p.v_threshold, v_reset=p.v_reset or 0.0,
        minus_threshold=-p.v_threshold, k2=k * k, center=p.center, width=p.width,
        through=-p.v_threshold * scale, minus_scale=-scale, input_scale=scale * g, decay=1 - 1 / p.tau,
    )


def repeated_input(x_seq: torch.Tensor) -> torch.Tensor | None:
    """The tensor [N, ...] of which x_seq [T, N, ...] is a repetition over T (`x.unsqueeze(0).expand(T, ...)`, as
    static images enter an SNN), or None. The C loops read it T times and sum its gradient over T as they go, instead
    of a copy T times its size and a sum over T in autograd's expand."""
    base = x_seq._base
    if x_seq.stride(0) != 0 or base is None or base.shape != x_seq.shape[1:] or base.stride() != x_seq.stride()[1:]:
        return None
    return base if base.storage_offset() == x_seq.storage_offset() else None


def call_input(x_seq: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """The Functions' input for x_seq: (its one step, T) when x_seq repeats it over T, else (x_seq, None)."""
    repeated = repeated_input(x_seq)
    return (x_seq, None) if repeated is None else (repeated, len(x_seq))


def _memory_order_inputs(x, v0, repeat):
    """x (or, with `repeat`, its one step) and a float32 copy of v0, permuted to memory order; the order; T."""
    x_seq = x.unsqueeze(0).expand(repeat, *x.shape) if repeat else x
    order = _step_order(x_seq)
    x_p = x.detach().permute(order if repeat else (0, *(d + 1 for d in order))).to(torch.float32).contiguous()
    v = v0.detach().permute(order).reshape(-1).to(dtype=torch.float32, copy=True)
    return x_p, v, order, x_seq.shape[0]


def _carried_gradient(grad_v, order, p: LIFParams) -> torch.Tensor:
    """dL/dV_T times dX/dH's factor g, in memory order: what the backward loops carry from step to step."""
    return grad_v.detach().permute(order).reshape(-1).to(torch.float32).mul(1 / p.tau if p.decay_input else 1.0)


def _grad_v0(c: torch.Tensor, shape, order, p: LIFParams) -> torch.Tensor:
    """dL/dV_0 from what the loops carried back to step 0, in the input's dimension order."""
    return _unpermute(c.div_(1 / p.tau if p.decay_input else 1.0), shape, order)


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError("pfa's C loops could not allocate their scratch memory")


class CpuMultiStepLIF(torch.autograd.Function):
    """Same contract as pfa.lif.torch_backend._MultiStepLIF, for CPU tensors with a float32 state; with `repeat` = T,
    x is one step [N, ...] that every one of the T steps receives (see `repeated_input`)."""

    @staticmethod
    def forward(ctx, x, v0, params: LIFParams, store_v_seq: bool, repeat: int | None = None):
        x_p, v, order, steps = _memory_order_inputs(x, v0, repeat)
        count = v.numel()
        shape_p = (steps, *(x_p.shape if repeat else x_p.shape[1:]))
        needs_grad = any(ctx.needs_input_grad[:2])
        spikes = x_p.new_empty(shape_p)
        h_seq = x_p.new_empty(shape_p) if needs_grad else None
        v_seq = x_p.new_empty(shape_p) if store_v_seq else None
        c = constants(params)
        lib = library()
        x_step = 0 if repeat else count

        def run(a: int, b: int) -> None:
            lib.lif_forward(address(x_p, a), x_step, address(v, a), address(spikes, a), address(h_seq, a),
                            address(v_seq, a), count, b - a, steps, ctypes.addressof(c))

        parallel(run, count)
        ctx.repeat, ctx.dtype = repeat, x.dtype
        return finish_forward(ctx, params, order, shape_p, spikes, v, h_seq, v_seq, x.dtype)

    @staticmethod
    def backward(ctx, grad_spikes, grad_v, _grad_v_seq):
        h_seq, spikes = ctx.saved_tensors
        p, order, repeat = ctx.params, ctx.order, ctx.repeat
        gs = grad_spikes.permute(0, *(d + 1 for d in order)).contiguous().to(torch.float32)
        grad_x = torch.zeros_like(spikes[0]) if repeat else torch.empty_like(spikes)
        c = _carried_gradient(grad_v, order, p)
        steps, count = spikes.shape[0], c.numel()
        k = constants(p)
        lib = library()
        grad_x_step = 0 if repeat else count

        def run(a: int, b: int) -> None:
            lib.lif_backward(address(h_seq, a), address(spikes, a), address(gs, a), address(grad_x, a),
                             grad_x_step, address(c, a), count, b - a, steps, ctypes.addressof(k))

        parallel(run, count)
        grad_x = _unpermute(grad_x.to(ctx.dtype), grad_x.shape, order)
        return grad_x, _grad_v0(c, spikes.shape[1:], order, p), None, None, None


CHANNELS_LAST = [0, 2, 3, 1]  # the memory order of a channels-last step [N, C, H, W]


def poolable(x_seq: torch.Tensor, v0: torch.Tensor) -> bool:
    """Whether CpuMultiStepLIFPool takes this input: CPU, float32 state, steps [N, C, H, W] channels-last, H even."""
    return (supports(x_seq, v0) and x_seq.dim() == 5 and x_seq.shape[3] % 2 == 0 and x_seq.shape[4] >= 2
            and _step_order(x_seq) == CHANNELS_LAST)


class CpuMultiStepLIFPool(torch.autograd.Function):
    """The LIF of CpuMultiStepLIF followed by 2x2 max pooling of its spikes, in one pass of the C loops:
    (x [T, N, C, H, W] with channels-last steps, or one step with `repeat` = T; v0 [N, C, H, W]) -> (pooled spikes
    [T, N, C, H/2, W/2] channels-last in x's dtype, v). The full spikes are never stored: backward finds them again
    from H, so it saves H only and reads and writes a quarter of the unfused pair's spike-sized tensors."""

    @staticmethod
    def forward(ctx, x, v0, params: LIFParams, repeat: int | None = None):
        x_p, v, order, steps = _memory_order_inputs(x, v0, repeat)
        n, height, width, channels = x_p.shape[-4:]
        count, pair, out_line = v.numel(), 2 * width * channels, width // 2 * channels
        pooled = x_p.new_empty(steps, n, height // 2, width // 2, channels)
        h_seq = x_p.new_empty(steps, n, height, width, channels) if any(ctx.needs_input_grad[:2]) else None
        c = constants(params)
        lib = library()

        def run(a: int, b: int) -> None:
            _check(lib.lif_pool_forward(address(x_p, a * pair), 0 if repeat else count, address(v, a * pair),
                                        address(pooled, a * out_line), address(h_seq, a * pair), count,
                                        pooled[0].numel(), b - a, width, channels, steps, ctypes.addressof(c)))

        parallel(run, n * (height // 2), pair)
        ctx.params, ctx.order, ctx.repeat, ctx.dtype = params, order, repeat, x.dtype
        if h_seq is not None:
            ctx.save_for_backward(h_seq)
        return _unpermute(pooled.to(x.dtype), pooled.shape, order), _unpermute(v, (n, height, width, channels), order)

    @staticmethod
    def backward(ctx, grad_pooled, grad_v):
        (h_seq,) = ctx.saved_tensors
        p, order, repeat = ctx.params, ctx.order, ctx.repeat
        steps, n, height, width, channels = h_seq.shape
        gp = grad_pooled.permute(0, *(d + 1 for d in order)).contiguous().to(torch.float32)
        grad_x = h_seq.new_zeros(h_seq.shape[1:]) if repeat else torch.empty_like(h_seq)
        c = _carried_gradient(grad_v, order, p)
        count, pair, out_line = c.numel(), 2 * width * channels, width // 2 * channels
        k = constants(p)
        lib = library()

        def run(a: int, b: int) -> None:
            _check(lib.lif_pool_backward(address(h_seq, a * pair), address(gp, a * out_line),
                                         address(grad_x, a * pair), 0 if repeat else count, address(c, a * pair),
                                         count, gp[0].numel(), b - a, width, channels, steps, ctypes.addressof(k)))

        parallel(run, n * (height // 2), pair)
        grad_x = _unpermute(grad_x.to(ctx.dtype), grad_x.shape, order)
        return grad_x, _grad_v0(c, h_seq.shape[1:], order, p), None, None
