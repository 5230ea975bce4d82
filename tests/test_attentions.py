"""The attention zoo: `ma` and `ta` are spikingjelly's modules, `tcja` follows its paper's equations, and every
registered kind builds and trains inside every model of the repository."""

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer

from pfa.attention.registry import attention_kinds, is_attention, make_attention, temporal_reduction
from pfa.attention.tcja import TCJA
from pfa.engine.losses import mse_rate_loss
from pfa.models.fmnist import FashionMNISTNet
from pfa.models.fsvae import FSVAE
from pfa.models.resnet import SpikingResNet
from pfa.models.vgg import SpikingVGG
from pfa.study.report import parameter_rows


def spikes(*shape, seed=0) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_zoo_kinds_are_registered_and_recognised():
    assert set(attention_kinds()) >= {"none", "pfa", "ma", "ta", "tcja"}
    for kind in attention_kinds():
        assert is_attention(make_attention(kind, 4, 8)) == (kind != "none")


@pytest.mark.parametrize("T, C", [(4, 8), (12, 32), (2, 2)])
def test_ma_is_spikingjellys_multidimensional_attention(T, C):
    ours = make_attention("ma", T, C)
    theirs = layer.MultiDimensionalAttention(T, C, reduction_t=min(4, T), reduction_c=min(16, C))
    theirs.load_state_dict(ours.state_dict())
    x = spikes(T, 3, C, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize("T", [2, 4, 12])
def test_ta_is_spikingjellys_temporal_wise_attention(T):
    ours = make_attention("ta", T, 8)
    theirs = layer.TemporalWiseAttention(T, reduction=min(4, T), dimension=4)
    theirs.load_state_dict(ours.state_dict())
    x = spikes(T, 3, 8, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    hidden = T // temporal_reduction(T)
    assert sum(p.numel() for p in ours.parameters()) == 2 * T * hidden  # two bias-free layers T -> T/r -> T


def tcja_by_loops(x: torch.Tensor, w_t: torch.Tensor, w_c: torch.Tensor) -> torch.Tensor:
    """TCJA written out from the paper: Z = spatial mean; TLA(t, c) = sum over channels c' and taps m of
    w_t[c, c', m] Z[t + m - pad_t, c']; CLA(t, c) = sum over steps t' and taps m of w_c[t, t', m] Z[t', c + m - pad_c];
    A = sigmoid(TLA * CLA); Y = A * X. "same" padding puts (k - 1) // 2 zeros before, the rest after."""
    T, N, C = x.shape[:3]
    kt, kc = w_t.shape[2], w_c.shape[2]
    pad_t, pad_c = (kt - 1) // 2, (kc - 1) // 2
    y = torch.empty_like(x)
    for n in range(N):
        z = [[float(x[t, n, c].mean()) for c in range(C)] for t in range(T)]
        for t in range(T):
            for c in range(C):
                tla = sum(float(w_t[c, c2, m]) * z[t + m - pad_t][c2]
                          for c2 in range(C) for m in range(kt) if 0 <= t + m - pad_t < T)
                cla = sum(float(w_c[t, t2, m]) * z[t2][c + m - pad_c]
                          for t2 in range(T) for m in range(kc) if 0 <= c + m - pad_c < C)
                a = 1 / (1 + torch.exp(torch.tensor(-tla * cla, dtype=torch.float64)))
                y[t, n, c] = x[t, n, c] * a
    return y


@pytest.mark.parametrize("kt, kc", [(2, 2), (3, 1), (1, 4)])
def test_tcja_follows_its_equations(kt, kc):
    T, C = 5, 6
    module = make_attention("tcja", T, C, kernel_size_t=kt, kernel_size_c=kc).double()
    with torch.no_grad():  # weights large enough that the sigmoid is far from 0.5 and the taps matter
        for p in module.parameters():
            p.uniform_(-2, 2)
    x = torch.rand(T, 2, C, 3, 4, dtype=torch.float64)
    expected = tcja_by_loops(x, module.temporal.weight.detach(), module.channel.weight.detach())
    torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T, C, kt, kc", [(4, 128, 2, 2), (20, 128, 4, 4), (12, 2, 3, 1)])
def test_tcja_parameter_count(T, C, kt, kc):
    module = TCJA(T, C, kt, kc)
    assert sum(p.numel() for p in module.parameters()) == kt * C * C + kc * T * T


def test_tcja_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"\[T, N, C, H, W\] = \[4, N, 8, H, W\]"):
        TCJA(4, 8)(torch.zeros(4, 2, 6, 3, 3))


def test_report_counts_each_kind_as_one_attention_row():
    for kind in attention_kinds():
        model = SpikingVGG(num_classes=10, T=4, input_pool=32, attention=kind, rank=2, width=1 / 32)
        rows = [row for row in parameter_rows(model) if row["attention"]]
        attention = [m for m in model.modules() if is_attention(m)]
        assert len(rows) == len(attention) == (0 if kind == "none" else 5)
        assert sum(r["params"] for r in rows) == sum(p.numel() for m in attention for p in m.parameters())


def vgg(kind):
    model = SpikingVGG(num_classes=10, T=2, input_pool=16, attention=kind, rank=2, width=1 / 32)
    return model, (spikes(2, 2, 2, 20, 20),)


def resnet(kind):
    model = SpikingResNet("resnet19", num_classes=10, T=2, attention=kind, rank=2, width=1 / 32)
    return model, (torch.randn(2, 3, 16, 16),)


def fmnist(kind):
    return FashionMNISTNet(T=2, width=4, rank=2, attention=kind, dropout=0.0), (torch.randn(2, 1, 28, 28),)


def fsvae(kind):
    model = FSVAE(1, latent_dim=4, T=2, k=3, hidden_dims=(2, 2, 2, 2), attention=kind, rank=2)
    return model, (torch.rand(2, 1, 32, 32) * 2 - 1,)


def loss_of(model: nn.Module, inputs) -> torch.Tensor:
    if isinstance(model, FSVAE):
        return model(*inputs)[1]["loss"]
    return mse_rate_loss(model(*inputs), torch.tensor([0, 1]))


@pytest.mark.parametrize("build", [vgg, resnet, fmnist, fsvae])
@pytest.mark.parametrize("kind", attention_kinds())
def test_every_kind_trains_a_step_in_every_model(kind, build):
    torch.manual_seed(0)
    model, inputs = build(kind)
    parameters = [p for m in model.modules() if is_attention(m) for p in m.parameters()]
    assert bool(parameters) == (kind != "none")
    before = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = loss_of(model, inputs)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    functional.reset_net(model)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
    assert not parameters or any(not torch.equal(b, p) for b, p in zip(before, parameters, strict=True))
