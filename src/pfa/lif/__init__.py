"""The multi-step LIF neuron (`LIF`), its backends (torch, C loops, CuPy) and the layers fused with it."""

from pfa.lif.layers import Dropout, MaxPool2d, SpikingMaxPool2d
from pfa.lif.neuron import LIF

__all__ = ["LIF", "Dropout", "MaxPool2d", "SpikingMaxPool2d"]
