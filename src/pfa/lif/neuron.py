"""Multi-step leaky integrate-and-fire neuron with fused backends, a drop-in for spikingjelly 2's `LIFNode`.

For each step t, with the membrane V carried over from the previous step (and from the previous call, until
`spikingjelly.activation_based.functional.reset_net` resets it):

    charge   H = V + (X - (V - v_reset)) / tau          (decay_input=True)
             H = V - (V - v_reset) / tau + X            (decay_input=False)
    fire     S = heaviside(H - v_threshold)              (1 where H >= v_threshold)
    reset    V = H * (1 - S) + v_reset * S               (hard; S detached when detach_reset)
             V = H - S * v_threshold                     (v_reset=None: soft)

Backward replaces dS/dH by a surrogate: "atan", alpha / 2 / (1 + (pi / 2 * alpha * (H - v_threshold))^2) as in
spikingjelly's `ATan`, or "rectangle", 1[|H - c| < width] / (2 * width) with c = surrogate_center (default v_threshold).
FSVAE's neuron is `LIF(tau=4/3, v_threshold=0.2, decay_input=False, detach_reset=False, surrogate="rectangle",
surrogate_center=0.0)`. The state is computed in float32 (float64 for float64 inputs); spikes have the input's dtype.
A membrane that becomes NaN or infinite (diverged weights) makes the last step's spikes NaN, so the loss shows it
instead of the neuron falling silent.
"""

from __future__ import annotations

import functools
import math

import torch
from spikingjelly.activation_based import base

from pfa.errors import UserError
from pfa.lif import cpu_backend as _lif_cpu
from pfa.lif import native as _native
from pfa.lif.params import LIFParams
from pfa.lif.torch_backend import _MultiStepLIF

BACKENDS = ("auto", "torch", "cupy", "cpu")
SURROGATES = ("atan", "rectangle")


@functools.cache
def cupy_available() -> bool:
    """Whether CuPy imports and torch sees a CUDA device (imports CuPy, so call it only when CUDA is in play)."""
    if not torch.cuda.is_available():
        return False
    try:
        import cupy  # noqa: F401
    except Exception:  # a missing package, or one built for another CUDA major, fails in several ways
        return False
    return True


class LIFError(UserError, ValueError):
    """An impossible LIF setting: a UserError (one line at the command line) and a ValueError (for library users)."""


def _number(name: str, value, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or (
            low is not None and not value > low):
        bound = "" if low is None else f" greater than {low:g}"
        raise LIFError(f"LIF: {name} must be a finite number{bound}, got {value!r}")
    return float(value)


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise LIFError(f"LIF: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


class LIF(base.MemoryModule):
    """Multi-step LIF: [T, N, ...] in, spikes of the same shape and dtype out; the final membrane is kept in `v`.

    backend: "torch" (any device), "cupy" (fused CUDA kernels, needs CuPy), "cpu" (fused C loops for CPU tensors up
    to float32, compiled on first use with the system's C compiler) or "auto" (CuPy for CUDA inputs when it imports,
    the C loops for CPU inputs up to float32 when they build, otherwise torch). All give the same floats.
    With store_v_seq=True the membrane after every step is kept in `v_seq` (not differentiable; for monitoring).
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = True,
        decay_input: bool = True,
        surrogate: str = "atan",
        alpha: float = 2.0,
        width: float = 0.5,
        surrogate_center: float | None = None,
        backend: str = "auto",
        store_v_seq: bool = False,
    ):
        super().__init__()
        v_threshold = _number("v_threshold", v_threshold)
        if v_reset is not None and not v_threshold > _number("v_reset", v_reset):
            raise LIFError(f"LIF: v_threshold must be above v_reset, got {v_threshold} <= {v_reset}: the neuron would "
                           "fire at every step or never")
        self.params = LIFParams(
            tau=_number("tau", tau, low=1.0),
            v_threshold=v_threshold,
            v_reset=None if v_reset is None else _number("v_reset", v_reset),
            detach_reset=bool(detach_reset),
            decay_input=bool(decay_input),
            surrogate=_choice("surrogate", surrogate, SURROGATES),
            alpha=_number("alpha", alpha, low=0.0),
            width=_number("width", width, low=0.0),
            center=v_threshold if surrogate_center is None else _number("surrogate_center", surrogate_center),
        )
        self.backend = _choice("backend", backend, BACKENDS)
        if backend == "cpu" and _native.build_error() is not None:
            raise UserError(f"LIF: backend='cpu' needs a working C compiler: {_native.build_error()}")
        if backend == "cupy" and not cupy_available():
            raise UserError(
                "LIF: backend='cupy' needs CuPy (pip install cupy-cuda12x or cupy-cuda13x, matching torch's CUDA) "
                "and a CUDA device; use backend='auto' or 'torch' otherwise"
            )
        self.store_v_seq = store_v_seq
        self.v_seq = None
        self.register_memory("v", 0.0 if v_reset is None else float(v_reset))
        self.step_mode = "m"

    def extra_repr(self) -> str:
        p = self.params
        shape = f"alpha={p.alpha}" if p.surrogate == "atan" else f"width={p.width}, center={p.center}"
        return (
            f"tau={p.tau}, v_threshold={p.v_threshold}, v_reset={p.v_reset}, detach_reset={p.detach_reset}, "
            f"decay_input={p.decay_input}, surrogate={p.surrogate}, {shape}, backend={self.backend}, "
            f"{super().extra_repr()}"
        )

    def reset(self):
        super().reset()
        self.v_seq = None

    def _initial_state(self, x_seq: torch.Tensor) -> torch.Tensor:
        state_dtype = torch.promote_types(x_seq.dtype, torch.float32)
        v = self.v
        if not isinstance(v, torch.Tensor):
            return torch.full(x_seq.shape[1:], v, dtype=state_dtype, device=x_seq.device)
        if v.shape != x_seq.shape[1:]:
            raise ValueError(
                f"LIF: the membrane v has shape {list(v.shape)} but one step of the input has {list(x_seq.shape[1:])}; "
                "call spikingjelly.activation_based.functional.reset_net(net) between batches"
            )
        return v.to(device=x_seq.device, dtype=state_dtype)

    def _function(self, x_seq: torch.Tensor, v0: torch.Tensor) -> type[torch.autograd.Function]:
        """The autograd Function of the backend that serves this input."""
        if self.backend == "cpu" or (self.backend == "auto" and _lif_cpu.supports(x_seq, v0) and _native.available()):
            if not _lif_cpu.supports(x_seq, v0):
                raise UserError(f"LIF: backend='cpu' needs CPU tensors with a float32 state, got {x_seq.dtype} on "
                                f"{x_seq.device}; use backend='auto'")
            return _lif_cpu.CpuMultiStepLIF
        if self.backend == "cupy" or (self.backend == "auto" and x_seq.is_cuda and cupy_available()):
            if not x_seq.is_cuda:
                raise UserError(f"LIF: backend='cupy' needs CUDA tensors, got one on {x_seq.device}; "
                                "use backend='auto'")
            from pfa.lif.cupy_backend import CupyMultiStepLIF

            return CupyMultiStepLIF
        return _MultiStepLIF

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2 or not x_seq.is_floating_point():
            raise ValueError(
                f"LIF: expected a floating-point input [T, N, ...] with at least 2 dimensions, "
                f"got shape {list(x_seq.shape)} and dtype {x_seq.dtype}"
            )
        if x_seq.shape[0] == 0:
            raise LIFError(f"LIF: the input [T, N, ...] has T = 0 time steps (shape {list(x_seq.shape)}); give at "
                           "least one step")
        v0 = self._initial_state(x_seq)
        function = self._function(x_seq, v0)
        if function is _lif_cpu.CpuMultiStepLIF:
            x, repeat = _lif_cpu.call_input(x_seq)
            spikes, v, v_seq = function.apply(x, v0, self.params, self.store_v_seq, repeat)
        else:
            spikes, v, v_seq = function.apply(x_seq, v0, self.params, self.store_v_seq)
        self.v = v
        self.v_seq = v_seq if self.store_v_seq else None
        return spikes

    def max_pooled_forward(self, x_seq: torch.Tensor) -> torch.Tensor | None:
        """2x2 max pooling of the spikes, [T, N, C, H, W] -> [T, N, C, H/2, W/2], computed with them in one pass of
        the C loops (the full spikes are never stored), or None where those do not serve this input: they need the
        "cpu" backend's inputs with channels-last steps and an even H, no stored v_seq and no hook watching the
        neuron's output (the caller then pools `self(x_seq)`, with the same numbers)."""
        watched = self._forward_hooks or self._forward_pre_hooks
        if self.step_mode != "m" or self.store_v_seq or watched or x_seq.dim() != 5:
            return None
        v0 = self._initial_state(x_seq)
        if self._function(x_seq, v0) is not _lif_cpu.CpuMultiStepLIF or not _lif_cpu.poolable(x_seq, v0):
            return None
        x, repeat = _lif_cpu.call_input(x_seq)
        pooled, self.v = _lif_cpu.CpuMultiStepLIFPool.apply(x, v0, self.params, repeat)
        self.v_seq = None
        return pooled

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_step_forward(x.unsqueeze(0)).squeeze(0)
