"""pfa: Projected-full Attention for spiking neural networks."""

from pfa.attach import attach
from pfa.attention import PFA
from pfa.neuron import LIF

__all__ = ["LIF", "PFA", "attach"]
__version__ = "0.1.0"
