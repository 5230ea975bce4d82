"""The model report on a tiny network whose spikes and synaptic operations are counted by hand."""

import json

import pytest
import torch
import torch.nn as nn
from PIL import Image
from spikingjelly.activation_based import layer, neuron

from pfa import PFA
from pfa.models.fsvae import FSVAE
from pfa.models.layers import spiking_neuron
from pfa.study.plots import report_chart
from pfa.study.report import PJ_PER_AC, PJ_PER_MAC, energy, format_report, model_report, save_report


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


def test_attention_arithmetic_and_energy_by_hand():
    report = model_report(TinyNet(), frames())
    # PFA's input: every position fires at t=0, rows 0-1 at t=1, in both channels; E = T*C*H*W = 36 per sample.
    # Its layers: channel_mean is 0 or 1 (spikes: AC), the spatial conv 2->1 (3x3, pad 1) reaches 49 outputs from
    # the 9 positions of t=0 and 35 from the 6 of t=1; the two linear layers read the real-valued pooled means (MAC):
    # 4 non-zero values, 1 output each.
    inside = {row["name"]: (row["operation"], row["sops_per_sample"]) for row in report["synops"] if row["attention"]}
    assert inside == {"attention.spatial": ("AC", 84), "attention.temporal": ("MAC", 4),
                      "attention.channel": ("MAC", 4)}
    # its own arithmetic (fusion "mul"): 2E AC for the means; T*C*R + C*R + E*R + E MAC = 4 + 2 + 36 + 36.
    (own,) = report["attention_modules"]
    assert (own["name"], own["calls"], own["ac_per_sample"], own["mac_per_sample"]) == ("attention", 1, 72, 78)
    assert report["attention_ops_per_sample"] == 84 + 8 + 72 + 78
    ops = report["operations"]
    assert (ops["backbone"]["ac_per_sample"], ops["backbone"]["mac_per_sample"]) == (38, 120)
    assert (ops["total"]["ac_per_sample"], ops["total"]["mac_per_sample"]) == (38 + 84 + 72, 120 + 8 + 78)
    assert ops["total"]["energy_pj_per_sample"] == pytest.approx(0.9 * 194 + 4.6 * 206)
    assert report["energy"]["estimate_pj_per_sample"] == pytest.approx(1122.2)
    assert (PJ_PER_AC, PJ_PER_MAC) == (0.9, 4.6) and energy(10, 1) == pytest.approx(13.6)
    assert "not a measurement" in report["energy"]["note"] and "Horowitz" in report["energy"]["source"]
    assert "not a measurement" in format_report(report)
    assert report["spike_rate_mean"] == pytest.approx(30 / 36)


class Upsampler(nn.Module):
    """A real-valued image through a 1x1 conv (weights 2) and an IF neuron, then a transposed conv called twice."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(1, 2, 1, bias=False)
        nn.init.constant_(self.first.weight, 2.0)
        self.fire = neuron.IFNode(v_threshold=1.0)
        self.up = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        spikes = self.fire(self.first(x))
        return self.up(spikes) + self.up(spikes)


def test_transposed_convolution_real_input_and_repeated_calls_by_hand():
    x = torch.tensor([[0.5, 0.0], [2.0, 1.0]]).expand(3, 1, 2, 2)
    report = model_report(Upsampler(), x)
    first, up = report["synops"]
    # 3 non-zero pixels, each reaching the 2 channels of the 1x1 conv: real input, 6 MAC.
    assert (first["operation"], first["sops_per_sample"], first["calls"]) == ("MAC", 6, 1)
    # 2x = 1, 0, 4, 2 fire where x != 0: 3 positions in 2 channels. Stride 2, padding 1, output padding 1 on 2x2 ->
    # 4x4: input row (column) 0 reaches outputs -1..1, 2 of them inside; row 1 reaches 1..3, all 3. Positions
    # (0,0) 2x2, (1,0) 3x2, (1,1) 3x3 outputs, in 2 channels, once per call.
    assert (up["type"], up["operation"], up["calls"]) == ("ConvTranspose2d", "AC", 2)
    assert up["sops_per_sample"] == 2 * 2 * (4 + 6 + 9)
    assert report["sops_per_sample"] == 6 + 76
    assert report["energy"]["estimate_pj_per_sample"] == pytest.approx(0.9 * 76 + 4.6 * 6)
    (fire,) = report["spike_rates"]
    assert fire["rate"] == pytest.approx(6 / 8)


def test_fsvae_counts_its_decoder_and_lists_each_module_once(tmp_path):
    torch.manual_seed(0)
    model = FSVAE(1, latent_dim=6, T=4, k=5, attention="pfa", rank=3)
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    for module in model.modules():  # batch norm's running statistics of one pass, so that eval mode spikes
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    with torch.no_grad():
        model(images)
    report = model_report(model, images)
    names = [row["name"] for row in report["synops"]]
    assert len(names) == len(set(names))
    decoder = [row for row in report["synops"] if row["type"] == "ConvTranspose2d"]
    assert len(decoder) == 5 and all(row["sops_per_sample"] > 0 for row in decoder)  # 4 blocks and to_image
    posterior = [row for row in report["synops"] if row["name"].startswith("posterior.")]
    assert [row["calls"] for row in posterior] == [4, 4, 4]  # T - 1 growing prefixes, then the whole sequence
    rates = [row["name"] for row in report["spike_rates"]]
    assert len(rates) == len(set(rates))
    with Image.open(report_chart(report, tmp_path / "report.png")) as chart:
        assert chart.size[1] < 1000  # one bar per module: 21 synaptic layers
