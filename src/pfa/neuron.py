"""`from pfa.neuron import LIF`: the multi-step LIF neuron's public home (implemented in `pfa.lif`)."""

from pfa.lif.neuron import LIF

__all__ = ["LIF"]
