"""The "cpu" LIF backend (C loops compiled on first use) gives the torch backend's floats exactly, and says clearly
when it cannot be built."""

import itertools

import pytest
import torch

import pfa.lif.cpu_backend as lif_cpu
import pfa.lif.native as native
from pfa.errors import UserError
from pfa.lif.neuron import LIF

pytestmark = pytest.mark.skipif(not native.available(), reason="no working C compiler here")

RESETS = {"hard-0": 0.0, "hard-minus-0.3": -0.3, "soft": None}
SURROGATES = {"atan": {"surrogate": "atan", "alpha": 3.0},
              "rectangle": {"surrogate": "rectangle", "width": 0.4, "surrogate_center": 0.1}}


def run(backend, x, config, store_v_seq=False):
    """Two chained calls and backward through the spikes, the final membrane and (as inputs) x and the initial v."""
    lif = LIF(backend=backend, store_v_seq=store_v_seq, **config)
    x = x.clone().requires_grad_()
    g = torch.Generator().manual_seed(1)
    first = lif(x)
    v_seq = lif.v_seq
    second = lif(x.flip(0))
    loss = (first.float() * torch.randn(first.shape, generator=g)).sum() + (second.float() ** 2).sum()
    (loss + (lif.v * torch.randn(lif.v.shape, generator=g)).sum()).backward()
    return first, second, lif.v, v_seq, x.grad


@pytest.mark.parametrize(("decay_input", "reset", "detach_reset", "surrogate"), list(itertools.product(
    [True, False], RESETS, [True, False], SURROGATES)))
def test_every_setting_gives_the_torch_backends_floats(monkeypatch, decay_input, reset, detach_reset, surrogate):
    monkeypatch.setattr(native, "MIN_PER_THREAD", 100)  # several threads and blocks even for this small tensor
    torch.manual_seed(0)
    x = torch.randn(7, 3, 6, 11, 13) * 1.5 + 0.5
    config = {"tau": 2.0 if decay_input else 4 / 3, "v_threshold": 1.0, "v_reset": RESETS[reset],
              "detach_reset": detach_reset, "decay_input": decay_input, **SURROGATES[surrogate]}
    ours, theirs = run("cpu", x, config, store_v_seq=True), run("torch", x, config, store_v_seq=True)
    for name, a, b in zip(("spikes", "spikes of the 2nd call", "v", "v_seq", "dL/dx"), ours, theirs, strict=True):
        assert torch.equal(a, b), name
    assert 0.05 < ours[0].mean() < 0.95 and ours[-1].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_channels_last_and_half_precision_inputs_keep_their_layout_and_dtype(dtype):
    torch.manual_seed(0)
    x = (torch.randn(4, 5, 8, 6, 6) + 0.8).to(dtype).contiguous(memory_format=torch.channels_last_3d)
    ours, theirs = run("cpu", x, {}), run("torch", x, {})
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True) if a is not None)
    spikes, grad = ours[0], ours[-1]
    assert spikes.dtype == grad.dtype == dtype and ours[2].dtype == torch.float32
    assert spikes.is_contiguous(memory_format=torch.channels_last_3d)


def test_float64_is_refused_in_one_line():
    with pytest.raises(UserError, match="backend='cpu' needs CPU tensors with a float32 state, got torch.float64"):
        LIF(backend="cpu")(torch.randn(3, 2, 4, dtype=torch.float64))


def test_the_library_is_built_once_into_the_cache(fresh_build):
    assert native.available()
    built = list(fresh_build.glob("pfa_native-*"))
    assert len(built) == 1 and built[0].stat().st_size > 1000
    native.library.cache_clear()
    mtime = built[0].stat().st_mtime_ns
    native.library()
    assert built[0].stat().st_mtime_ns == mtime  # loaded, not rebuilt


def test_a_compiler_that_refuses_march_native_builds_without_it(fresh_build, monkeypatch):
    compiler = fresh_build / "cc-without-native"
    compiler.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -march=native ] && exit 1; done\n'
                        f'echo "$@" >> {fresh_build}/calls\nexec {" ".join(native._compiler())} "$@"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    x = torch.randn(4, 3, 50) + 0.8
    assert torch.equal(LIF(backend="cpu")(x), LIF(backend="torch")(x))
    [call] = (fresh_build / "calls").read_text().splitlines()
    assert "-O3" in call and "-march=native" not in call


def test_without_a_compiler_auto_warns_once_and_uses_torch_and_cpu_says_what_to_do(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-cc"))
    x = torch.randn(4, 3, 5) + 0.8
    with pytest.warns(RuntimeWarning, match="no-such-cc.*failed.*slower torch backend"):
        spikes = LIF()(x)
    assert torch.equal(spikes, LIF(backend="torch")(x))
    with pytest.raises(UserError, match=r"backend='cpu' needs a working C compiler: .*apt-get install gcc.*'torch'"):
        LIF(backend="cpu")


@pytest.mark.parametrize("channels_last", [False, True])
def test_an_input_repeated_over_time_is_read_in_place_and_its_gradient_summed(channels_last):
    """Static images enter as x.unsqueeze(0).expand(T, ...): the same spikes and membrane as the torch backend, and
    the gradient reaches x summed over T (up to the order of that sum) without a T-fold copy."""
    torch.manual_seed(0)
    base = torch.randn(3, 6, 5, 7) + 0.7
    base = base.contiguous(memory_format=torch.channels_last) if channels_last else base
    results = {}
    for backend in ("torch", "cpu"):
        x = base.clone().requires_grad_()
        lif = LIF(backend=backend, detach_reset=False)
        spikes = lif(x.unsqueeze(0).expand(4, *x.shape))
        ((spikes * torch.arange(1.0, 5.0).view(4, 1, 1, 1, 1)).sum() + lif.v.sum()).backward()
        results[backend] = spikes, lif.v, x.grad
    (spikes, v, grad), (spikes_ref, v_ref, grad_ref) = results["cpu"], results["torch"]
    assert torch.equal(spikes, spikes_ref) and torch.equal(v, v_ref) and 0.1 < spikes.mean() < 0.9
    torch.testing.assert_close(grad, grad_ref, rtol=1e-6, atol=1e-6)
    assert grad.abs().sum() > 0 and grad.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_a_sliced_expansion_is_not_taken_for_a_repeated_input():
    x = torch.randn(2, 5, 3)
    assert lif_cpu.repeated_input(x.unsqueeze(0).expand(4, *x.shape)) is x
    assert lif_cpu.repeated_input(x[:, 1:].unsqueeze(0).expand(4, 2, 4, 3)) is None  # a view of a larger tensor
    assert lif_cpu.repeated_input(x.unsqueeze(0).repeat(4, 1, 1, 1)) is None
