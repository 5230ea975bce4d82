"""pfa: Projected-full Attention for spiking neural networks."""

from pfa.attention import PFA, TCJA, attach, attention_kinds, make_attention
from pfa.lif import LIF

__all__ = ["LIF", "PFA", "TCJA", "attach", "attention_kinds", "make_attention"]
__version__ = "0.1.0"
