"""pfa: Projected-full Attention for spiking neural networks."""

from pfa.attention import PFA
from pfa.neuron import LIF

__all__ = ["LIF", "PFA"]
__version__ = "0.1.0"
