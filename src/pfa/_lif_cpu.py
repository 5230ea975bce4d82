"""The "cpu" LIF backend: the fused C loops of `_lif_cpu.c`, compiled on first use with the system's C compiler.

The library is built once per source version into the user's cache (`$PFA_CACHE_DIR`, else `$XDG_CACHE_HOME/pfa` or
`~/.cache/pfa`) and loaded with ctypes, which releases the GIL during a call: the neurons are split over
`torch.get_num_threads()` threads. The state is float32 (inputs may be half precision); the torch backend serves
float64 and other devices.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import shlex
import subprocess
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from pfa._lif_params import LIFParams
from pfa._lif_torch import _step_order, _unpermute, finish_forward

SOURCE = Path(__file__).with_name("_lif_cpu.c")
FLAGS = ("-O3", "-ffp-contract=off", "-fPIC", "-shared")  # no fused multiply-add: the same floats as the torch backend
MIN_PER_THREAD = 1 << 15  # fewer neurons per thread than this run on one thread


class _Constants(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ("decay_input", "hard_reset", "detach_reset", "rectangle")] + [
        (name, ctypes.c_float) for name in ("tau", "v_threshold", "v_reset", "minus_threshold", "k2", "center",
                                            "width", "through", "minus_scale", "input_scale", "decay")]


class BuildError(RuntimeError):
    """The C compiler is missing or failed; the message says which and how to fall back."""


def _cache_dir() -> Path:
    root = os.environ.get("PFA_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pfa"
    return Path(root)


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, then renamed: concurrent builds are safe
        partial = Path(tmp) / target.name
        command = [*_compiler(), *FLAGS, str(SOURCE), "-o", str(partial)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            raise BuildError(f"LIF backend 'cpu': `{' '.join(command)}` failed ({detail.strip()[:300]}); install a C "
                             "compiler (apt-get install gcc) or use backend='torch'") from None
        os.replace(partial, target)


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled loops, built on first use (a BuildError says why they cannot be)."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join((*_compiler(), *FLAGS)).encode()).hexdigest()[:16]
    target = _cache_dir() / f"lif_cpu-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    if not target.exists():
        _build(target)
    lib = ctypes.CDLL(str(target))
    pointer, i64 = ctypes.c_void_p, ctypes.c_int64
    constants = ctypes.POINTER(_Constants)
    lib.lif_forward.argtypes = [pointer, i64, pointer, pointer, pointer, pointer, i64, i64, i64, constants]
    lib.lif_backward.argtypes = [pointer, pointer, pointer, pointer, i64, pointer, i64, i64, i64, constants]
    lib.lif_forward.restype = lib.lif_backward.restype = None
    return lib


@functools.cache
def build_error() -> str | None:
    """Why the loops cannot be built or loaded here, or None when they can (tried once per process)."""
    try:
        library()
    except (BuildError, OSError) as e:
        return str(e)
    return None


def available() -> bool:
    """Whether the loops compile and load here; the first time they do not, a warning says why (backend 'auto' then
    uses the torch backend)."""
    error = build_error()
    if error is not None and not _warned:
        _warned.append(error)
        warnings.warn(f"{error}; the LIF neurons use the slower torch backend", RuntimeWarning, stacklevel=3)
    return error is None


_warned: list[str] = []


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


@functools.cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """Worker threads of this process (keyed by its id: a forked child does not inherit its parent's threads)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="pfa-lif")


def _parallel(call, count: int) -> None:
    """call(start, stop) over [0, count) split into one range per torch thread (at least MIN_PER_THREAD neurons each),
    the first range on this thread."""
    parts = max(1, min(torch.get_num_threads(), count // MIN_PER_THREAD))
    bounds = [count * i // parts for i in range(parts + 1)]
    spans = zip(bounds[1:-1], bounds[2:], strict=True)
    futures = [_pool(parts - 1, os.getpid()).submit(call, a, b) for a, b in spans] if parts > 1 else []
    call(bounds[0], bounds[1])
    for future in futures:
        future.result()


def _address(tensor: torch.Tensor | None, offset: int = 0) -> int | None:
    return None if tensor is None else tensor.data_ptr() + 4 * offset


def repeated_input(x_seq: torch.Tensor) -> torch.Tensor | None:
    """The tensor [N, ...] of which x_seq [T, N, ...] is a repetition over T (`x.unsqueeze(0).expand(T, ...)`, as
    static images enter an SNN), or None. The C loops read it T times and sum its gradient over T as they go, instead
    of a copy T times its size and a sum over T in autograd's expand."""
    base = x_seq._base
    if x_seq.stride(0) != 0 or base is None or base.shape != x_seq.shape[1:] or base.stride() != x_seq.stride()[1:]:
        return None
    return base if base.storage_offset() == x_seq.storage_offset() else None


class CpuMultiStepLIF(torch.autograd.Function):
    """Same contract as pfa._lif_torch._MultiStepLIF, for CPU tensors with a float32 state; with `repeat` = T, x is
    one step [N, ...] that every one of the T steps receives (see `repeated_input`)."""

    @staticmethod
    def forward(ctx, x, v0, params: LIFParams, store_v_seq: bool, repeat: int | None = None):
        x_seq = x.unsqueeze(0).expand(repeat, *x.shape) if repeat else x
        order = _step_order(x_seq)
        if repeat:
            x_p = x.detach().permute(order).to(torch.float32).contiguous()
        else:
            x_p = x.detach().permute(0, *(d + 1 for d in order)).to(torch.float32).contiguous()
        steps, count = x_seq.shape[0], v0.numel()
        shape_p = (steps, *(x_p.shape if repeat else x_p.shape[1:]))
        needs_grad = any(ctx.needs_input_grad[:2])
        spikes = x_p.new_empty(shape_p)
        h_seq = x_p.new_empty(shape_p) if needs_grad else None
        v_seq = x_p.new_empty(shape_p) if store_v_seq else None
        v = v0.detach().permute(order).reshape(-1).to(dtype=torch.float32, copy=True)
        c = constants(params)
        lib = library()
        x_step = 0 if repeat else count

        def run(a: int, b: int) -> None:
            lib.lif_forward(_address(x_p, a), x_step, _address(v, a), _address(spikes, a), _address(h_seq, a),
                            _address(v_seq, a), count, b - a, steps, ctypes.byref(c))

        _parallel(run, count)
        ctx.repeat, ctx.dtype = repeat, x.dtype
        return finish_forward(ctx, params, order, shape_p, spikes, v, h_seq, v_seq, x.dtype)

    @staticmethod
    def backward(ctx, grad_spikes, grad_v, _grad_v_seq):
        h_seq, spikes = ctx.saved_tensors
        p, order, repeat = ctx.params, ctx.order, ctx.repeat
        gs = grad_spikes.permute(0, *(d + 1 for d in order)).contiguous().to(torch.float32)
        grad_x = torch.zeros_like(spikes[0]) if repeat else torch.empty_like(spikes)
        g = 1 / p.tau if p.decay_input else 1.0
        c = grad_v.detach().permute(order).reshape(-1).to(torch.float32).mul(g)
        steps, count = spikes.shape[0], c.numel()
        k = constants(p)
        lib = library()
        grad_x_step = 0 if repeat else count

        def run(a: int, b: int) -> None:
            lib.lif_backward(_address(h_seq, a), _address(spikes, a), _address(gs, a), _address(grad_x, a),
                             grad_x_step, _address(c, a), count, b - a, steps, ctypes.byref(k))

        _parallel(run, count)
        grad_x = _unpermute(grad_x.to(ctx.dtype), grad_x.shape, order)
        return grad_x, _unpermute(c.div_(g), spikes.shape[1:], order), None, None, None
