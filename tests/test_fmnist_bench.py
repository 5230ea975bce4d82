"""bench/train_step.py: its reference-algorithm baseline computes what pfa.PFA computes, and the benchmark runs;
bench/bench_lif_pool.py runs and sees the fused layer save only H."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from pfa import PFA


def load_bench(name="train_step"):
    path = Path(__file__).resolve().parents[1] / f"bench/{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_step = load_bench()


@pytest.mark.parametrize("fusion", ["add", "mul"])
def test_loop_baseline_matches_pfa_at_initialisation(fusion):
    torch.manual_seed(0)
    ours = PFA(4, 6, 3, fusion=fusion, weights="sum" if fusion == "add" else "softmax").double()
    loop = train_step.LoopPFA(4, 6, 3, fusion=fusion).double()
    loop.load_state_dict({k: v for k, v in ours.state_dict().items() if k != "rank_logits"})
    x = torch.randn(4, 2, 6, 5, 7, dtype=torch.float64)
    x_ours, x_loop = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_loop = ours(x_ours), loop(x_loop)
    torch.testing.assert_close(y_ours, y_loop)
    weights = torch.randn_like(y_ours)
    (y_ours * weights).sum().backward()
    (y_loop * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_loop.grad)
    torch.testing.assert_close(ours.spatial.weight.grad, loop.spatial.weight.grad)


def test_benchmark_reports_both_rates_and_their_ratio(capsys):
    [result] = train_step.main(["--config", "fmnist-quick", "--batch-size", "4", "--steps", "1", "--rounds", "1",
                                "--warmup", "0", "--device", "cpu"])
    assert result["ours"] > 0 and result["baseline"] > 0
    assert math.isclose(result["ratio"], result["ours"] / result["baseline"])
    assert "| fmnist-quick | 4 |" in capsys.readouterr().out


def test_benchmark_runs_under_bf16_autocast(capsys):
    [result] = train_step.main(["--config", "fmnist-quick", "--batch-size", "2", "--steps", "1", "--rounds", "1",
                                "--warmup", "0", "--device", "cpu", "--amp", "bf16"])
    assert result["ours"] > 0 and result["baseline"] > 0 and result["compile_s"] is None
    assert "amp bf16" in capsys.readouterr().out


def test_baseline_differs_only_in_implementations_with_the_networks_options():
    """The reference-equivalent network: LIFNodes that do not detach the reset either, torch's pooling and dropout
    with the same settings, the same parameters; torch's default Adam against the engine's fused one."""
    config, cpu = train_step.CONFIGS["fmnist-quick"], torch.device("cpu")
    ours, our_optimizer = train_step.VARIANTS["ours"].build(config, cpu)
    theirs, their_optimizer = train_step.VARIANTS["baseline"].build(config, cpu)
    our_neurons = [m for m in ours.modules() if hasattr(m, "params")]
    their_neurons = [m for m in theirs.modules() if hasattr(m, "detach_reset")]
    assert len(our_neurons) == len(their_neurons) == 4
    assert all(not m.params.detach_reset for m in our_neurons) and all(not m.detach_reset for m in their_neurons)
    for kind in (nn.MaxPool2d, nn.Dropout):
        mine, reference = [[m for m in net.modules() if isinstance(m, kind)] for net in (ours, theirs)]
        assert len(mine) == len(reference) == 2 and all(type(m) is kind for m in reference)
        assert [repr(m) for m in mine] == [repr(m) for m in reference] and all(type(m) is not kind for m in mine)
    outside_attention = [{k for k in net.state_dict() if not k.startswith("features.2.")} for net in (ours, theirs)]
    assert outside_attention[0] == outside_attention[1]
    assert our_optimizer.defaults["fused"] and not their_optimizer.defaults["fused"]


def test_profile_lists_the_lif_and_the_convolutions():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from profile_step import main as profile_main

    table = profile_main(["--batch-size", "2", "--steps", "1", "--rows", "60"])
    assert "CpuMultiStepLIF" in table and "convolution" in table


def test_lif_pool_bench_times_the_three_pairs_and_the_fused_one_saves_only_h():
    rows = load_bench("bench_lif_pool").bench_shape((2, 2, 4, 6, 6), repeats=1)
    ratio = {name: over_fused for name, _, over_fused, _ in rows}
    saved = {name: memory for name, _, _, memory in rows}
    assert list(ratio) == ["fused", "unfused", "sj"] and ratio["fused"] == 1.0
    assert saved["fused"] == 1.0 and saved["unfused"] > 2  # H only, against H, the spikes and the pooling's indices
