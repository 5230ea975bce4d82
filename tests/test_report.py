"""The model report on a tiny network whose spikes and synaptic operations are counted by hand."""

import json

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from pfa import PFA
from pfa.models.layers import spiking_neuron
from pfa.study.report import format_report, model_report, save_report


class TinyNet(nn.Module):
    """conv 1->2 (3x3, pad 1, all weights 3) -> LIF -> PFA(T=2, C=2, R=1) -> FC 18->4, on frames [N, T, 1, 3, 3]."""

    def __init__(self):
        super().__init__()
        self.conv = layer.SeqToANNContainer(nn.Conv2d(1, 2, 3, padding=1, bias=False))
        nn.init.constant_(self.conv[0].weight, 3.0)
        self.lif = spiking_neuron()
        self.attention = PFA(T=2, C=2, rank=1)
        self.fc = layer.SeqToANNContainer(nn.Flatten(), nn.Linear(18, 4))

    def forward(self, x):
        return self.fc(self.attention(self.lif(self.conv(x.transpose(0, 1)))))


def frames(samples=2):
    """t=0: spikes at the corner (0, 0) and the centre (1, 1); t=1: a spike on the edge (0, 1)."""
    x = torch.zeros(samples, 2, 1, 3, 3)
    x[:, 0, 0, 0, 0] = x[:, 0, 0, 1, 1] = x[:, 1, 0, 0, 1] = 1
    return x


def test_report_matches_a_hand_count(tmp_path):
    report = model_report(TinyNet(), frames())

    # Parameters: conv 2*9, PFA 9TR+R + CR+R + TR+R + R with T=2, C=2, R=1 = 26, FC 18*4+4.
    assert [(row["name"], row["params"], row["attention"]) for row in report["parameters"]["layers"]] == [
        ("conv.0", 18, False),
        ("attention", 26, True),
        ("fc.1", 76, False),
    ]
    assert report["parameters"] == {**report["parameters"], "total": 120, "attention": 26, "backbone": 94}

    # Conv fan-out with padding 1: a corner reaches 4 positions, the centre 9, an edge 6; times 2 output channels.
    conv, fc = [row for row in report["synops"] if not row["attention"]]
    assert conv["name"] == "conv.0" and conv["binary_input"] and conv["sops_per_sample"] == (4 + 9 + 6) * 2

    # Weights of 3: a neuron fires (v = 3k/2 >= 1) exactly when k >= 1 input spikes are in its window.
    # t=0: the centre spike reaches all 9 positions; t=1: the edge spike reaches rows 0-1, 6 positions; 2 channels.
    (lif,) = report["spike_rates"]
    assert lif["neurons"] == 18 and lif["rate"] == pytest.approx((9 + 6) * 2 / (2 * 18))

    # PFA scales the 30 spikes by its map in (0, 1): still 30 non-zero inputs, each reaching 4 FC outputs.
    assert not fc["binary_input"] and fc["sops_per_sample"] == 30 * 4
    assert report["sops_per_sample"] == 38 + 120
    assert report["attention_ops_per_sample"] > 0

    save_report(report, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == report
    table = format_report(report)
    assert "158" in table and "attention 26" in table


def test_sops_are_per_sample_and_the_model_is_left_as_found():
    model = TinyNet().train()
    one, three = model_report(model, frames(1)), model_report(model, frames(3))
    assert one["sops_per_sample"] == three["sops_per_sample"] == 158
    assert model.training and not any(hook for m in model.modules() for hook in m._forward_hooks.values())
    assert model_report(model, frames(1)) == one  # no membrane state left over from the previous run
