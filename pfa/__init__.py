"""pfa: Projected-full Attention for spiking neural networks."""

from pfa.attention import PFA

__all__ = ["PFA"]
__version__ = "0.1.0"
