"""Attention modules for multi-step spike tensors: PFA, TCJA, the registry of every kind, `attach` and pictures."""

from pfa.attention.attach import attach
from pfa.attention.projected_full import PFA
from pfa.attention.registry import attention_kinds, is_attention, make_attention
from pfa.attention.tcja import TCJA

__all__ = ["PFA", "TCJA", "attach", "attention_kinds", "is_attention", "make_attention"]
