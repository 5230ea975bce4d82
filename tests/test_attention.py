"""PFA against a slow per-rank reference written from the paper's equations, gradients, shapes and errors."""

import pytest
import torch

from pfa import PFA


def reference_pfa(module: PFA, x: torch.Tensor) -> torch.Tensor:
    """The paper's equations step by step, one full [N, T, C, H, W] tensor per rank, as the reference code does."""
    T, N, C, H, W = x.shape
    x_ntchw = x.permute(1, 0, 2, 3, 4)
    spatial = torch.sigmoid(module.spatial(x_ntchw.mean(2))).reshape(N, module.rank, H * W)
    pooled = x_ntchw.mean((3, 4))
    temporal = torch.sigmoid(module.temporal(pooled)).permute(0, 2, 1)
    channel = torch.sigmoid(module.channel(pooled.permute(0, 2, 1))).permute(0, 2, 1)
    weights = torch.softmax(module.rank_logits, 0)
    attention = torch.zeros(N, T, C, H, W, dtype=x.dtype)
    for r in range(module.rank):
        weight = weights[r] * (module.rank if module.weights == "sum" else 1)
        outer = temporal[:, r, :, None, None] * channel[:, r, None, :, None] * spatial[:, r, None, None, :]
        attention += weight * outer.reshape(N, T, C, H, W)
    attention = attention.permute(1, 0, 2, 3, 4)
    return torch.relu(attention * x) if module.fusion == "mul" else torch.relu(attention + x)


@pytest.mark.parametrize("fusion", ["mul", "add"])
@pytest.mark.parametrize("weights", ["softmax", "sum"])
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (12, 12)])
def test_matches_reference_at_initialisation(fusion, weights, hw):
    torch.manual_seed(0)
    module = PFA(T=4, C=6, rank=3, fusion=fusion, weights=weights)
    x = (torch.rand(4, 2, 6, *hw) < 0.3).float()
    torch.testing.assert_close(module(x), reference_pfa(module, x), atol=1e-5, rtol=0)


def test_sum_weighting_is_the_unweighted_sum_and_learns():
    module = PFA(T=3, C=4, rank=5, weights="sum")
    torch.testing.assert_close(module.rank_weights(), torch.ones(5))
    softmax = PFA(T=3, C=4, rank=5)
    softmax.load_state_dict(module.state_dict())
    x = torch.rand(3, 2, 4, 6, 6)
    torch.testing.assert_close(module.attention_map(x), 5 * softmax.attention_map(x))
    (module(x) * torch.randn_like(x)).sum().backward()
    assert module.rank_logits.grad.abs().sum() > 0


def test_rank_weights_start_uniform_and_are_trained():
    module = PFA(T=3, C=4, rank=5)
    torch.testing.assert_close(module.rank_weights(), torch.full((5,), 0.2))
    x = torch.rand(3, 2, 4, 6, 6)
    (module(x) * torch.randn_like(x)).sum().backward()
    assert module.rank_logits.grad is not None and module.rank_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("fusion,weights", [("mul", "softmax"), ("add", "sum"), ("mul", "sum")])
@pytest.mark.parametrize("layout", ["TNCHW", "NCHWT"])
def test_gradcheck_through_every_parameter(fusion, weights, layout):
    torch.manual_seed(1)
    module = PFA(T=3, C=3, rank=2, fusion=fusion, weights=weights, layout=layout).double()
    with torch.no_grad():
        module.rank_logits.add_(torch.randn(2, dtype=torch.float64))
    shape = (3, 2, 3, 2, 3) if layout == "TNCHW" else (2, 3, 2, 3, 3)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    params = tuple(module.parameters())
    assert len(params) == 7
    assert torch.autograd.gradcheck(lambda x, *_: module(x), (x, *params))


def test_gradients_match_plain_autograd_reference():
    torch.manual_seed(2)
    module = PFA(T=5, C=8, rank=4)
    x = torch.randn(5, 3, 8, 9, 9, requires_grad=True)
    grad_out = torch.randn_like(x)
    ours = torch.autograd.grad((module(x) * grad_out).sum(), (x, *module.parameters()))
    theirs = torch.autograd.grad((reference_pfa(module, x) * grad_out).sum(), (x, *module.parameters()))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_time_last_layout_is_the_same_module():
    torch.manual_seed(3)
    time_first = PFA(T=4, C=3, rank=2)
    time_last = PFA(T=4, C=3, rank=2, layout="NCHWT")
    time_last.load_state_dict(time_first.state_dict())
    x = torch.rand(4, 2, 3, 6, 5)
    y = time_last(x.permute(1, 2, 3, 4, 0))
    assert y.shape == (2, 3, 6, 5, 4)
    torch.testing.assert_close(y.permute(4, 0, 1, 2, 3), time_first(x))


@pytest.mark.parametrize("T,C,R,k", [(4, 2, 8, 3), (12, 128, 8, 3), (20, 512, 32, 5)])
def test_parameter_count_is_linear_in_t_c_r(T, C, R, k):
    count = sum(p.numel() for p in PFA(T, C, R, kernel_size=k).parameters())
    assert count == k * k * T * R + R + C * R + R + T * R + R + R


def test_attention_map_and_factors_agree_with_forward():
    torch.manual_seed(4)
    module = PFA(T=3, C=4, rank=2)
    x = torch.rand(3, 2, 4, 5, 5)
    torch.testing.assert_close(module(x), torch.relu(module.attention_map(x) * x))
    factors = module.factors(x)
    assert factors["temporal"].shape == (2, 2, 3)
    assert factors["channel"].shape == (2, 2, 4)
    assert factors["spatial"].shape == (2, 2, 5, 5)


def test_nothing_input_sized_is_saved_for_backward():
    module = PFA(T=4, C=8, rank=4)
    x = torch.rand(4, 2, 8, 16, 16, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        module(x)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert all(t.data_ptr() == x.data_ptr() for t in big), [tuple(t.shape) for t in big]


@pytest.mark.parametrize(
    "shape",
    [(4, 2, 6, 5), (3, 2, 6, 5, 5), (4, 2, 5, 5, 5), (4, 2, 6, 5, 5, 1)],
    ids=["4d", "wrong-T", "wrong-C", "6d"],
)
def test_bad_shapes_name_the_layout_and_the_shape(shape):
    module = PFA(T=4, C=6, rank=2)
    expected = r"expects a TNCHW tensor \[4, N, 6, H, W\], got \[" + ", ".join(map(str, shape))
    with pytest.raises(ValueError, match=expected):
        module(torch.rand(shape))


def test_bad_time_last_shape():
    with pytest.raises(ValueError, match=r"NCHWT tensor \[N, 6, H, W, 4\]"):
        PFA(T=4, C=6, rank=2, layout="NCHWT")(torch.rand(2, 6, 5, 5, 3))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"rank": 0}, "rank must be a positive integer"),
        ({"rank": 2.5}, "rank must be a positive integer"),
        ({"T": -1}, "T must be a positive integer"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"fusion": "concat"}, "fusion must be one of"),
        ({"layout": "NTCHW"}, "layout must be one of"),
        ({"weights": "mean"}, "weights must be one of"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PFA(**{"T": 4, "C": 6, "rank": 2, **kwargs})


def test_autocast_bfloat16_follows_the_input_dtype_and_stays_close():
    torch.manual_seed(5)
    module = PFA(T=4, C=6, rank=3)
    x = torch.rand(4, 2, 6, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x.bfloat16())
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    torch.testing.assert_close(y.float(), module(x), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("fusion", ["mul", "add"])
def test_channels_last_input_gives_the_same_output_and_gradients_in_its_layout(fusion):
    torch.manual_seed(3)
    module = PFA(T=3, C=5, rank=4, fusion=fusion).double()
    x = torch.rand(3, 2, 5, 4, 6, dtype=torch.float64)
    x_cl = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (3, 2))
    grad = torch.randn_like(x)
    results = []
    for inp in (x, x_cl):
        inp = inp.clone().requires_grad_()
        y = module(inp)
        y.backward(grad)
        results.append((y, inp.grad, [p.grad.clone() for p in module.parameters()]))
        module.zero_grad()
    (y, gx, gp), (y_cl, gx_cl, gp_cl) = results
    assert y_cl.stride() == x_cl.stride() and gx_cl.stride() == x_cl.stride()
    torch.testing.assert_close(y_cl, y)
    torch.testing.assert_close(gx_cl, gx)
    for a, b in zip(gp_cl, gp, strict=True):
        torch.testing.assert_close(a, b)
