"""The LIF neuron's settings as its backends receive them (shared by pfa.lif.neuron and the torch and CuPy backends)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class LIFParams:
    """Everything a backend needs to know about the neuron; `center` is the rectangle surrogate's resolved centre."""

    tau: float
    v_threshold: float
    v_reset: float | None
    detach_reset: bool
    decay_input: bool
    surrogate: str
    alpha: float
    width: float
    center: float
