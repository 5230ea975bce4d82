"""pfa.study.rank: CP rank advice recovers known ranks, records the right positions, and its CLI reads FMNIST and CIFAR
checkpoints, writes rank.json and the plot, and refuses bad input with one line."""

import json

import numpy as np
import pytest
import torch
from test_cifar_entry import TINY, write_tiny_cifar
from test_cifar_entry import run as cifar_run
from test_fmnist import run_py
from test_generation_entry import TINY as GENERATION_TINY
from test_generation_entry import main as generation_run
from torch.utils.data import DataLoader, TensorDataset

from pfa import rank
from pfa.data.fashion_mnist import DEBIAN_DIR
from pfa.errors import UserError
from pfa.models.fmnist import FashionMNISTNet
from pfa.study import rank as advice_tools

needs_fmnist = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")


def kruskal(rank_: int, T=4, C=6, H=5, W=7, seed=0) -> torch.Tensor:
    """A nonnegative [T, C, H, W] tensor of exact CP rank `rank_` (sum of rank_ outer products)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.random((T, rank_)), rng.random((C, rank_)), rng.random((H * W, rank_))
    return torch.from_numpy(np.einsum("tr,cr,pr->tcp", a, b, c).reshape(T, C, H, W))


@pytest.mark.parametrize("true_rank", [1, 3])
def test_recovers_the_rank_of_a_known_kruskal_tensor(true_rank):
    samples = torch.stack([kruskal(true_rank, seed=s) for s in range(2)] + [torch.zeros(4, 6, 5, 7)])
    advice = advice_tools.position_advice("x", samples, max_rank=5, target_fit=0.99)
    assert advice["recommended_rank"] == true_rank
    assert advice["shape"] == [4, 6, 5, 7] and advice["samples"] == 2 and advice["silent"] == 1
    assert advice["errors"][str(true_rank)] < 1e-3
    if true_rank > 1:
        assert advice["errors"][str(true_rank - 1)] > 0.01


def test_cp_errors_are_relative_frobenius_errors():
    x = kruskal(2).reshape(4, 6, 35).numpy()
    noisy = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape)
    errors = advice_tools.cp_errors(noisy, 3)
    assert errors[0] > errors[1] and 0 < errors[1] < 1
    # rank 2 leaves roughly the noise: its norm over the tensor's
    assert errors[1] == pytest.approx(np.linalg.norm(noisy - x) / np.linalg.norm(noisy), rel=0.1)


def loader(n=5, batch=2):
    images = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 3
    return DataLoader(TensorDataset(images, torch.zeros(n, dtype=torch.long)), batch_size=batch)


def test_positions_are_the_attention_inputs_or_else_the_neurons_attach_would_use():
    torch.manual_seed(0)
    model = FashionMNISTNet(T=3, width=4, rank=2, attention="pfa", dropout=0.0)
    recorded = advice_tools.record_positions(model, loader(), samples=3)
    assert list(recorded) == ["features.2"] and recorded["features.2"].shape == (3, 3, 4, 14, 14)
    seen = []
    model.features[2].register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].transpose(0, 1)))
    recorded = advice_tools.record_positions(model, loader(), samples=3)
    torch.testing.assert_close(recorded["features.2"], torch.cat(seen)[:3])

    plain = FashionMNISTNet(T=3, width=4, attention="none", dropout=0.0)
    advice = advice_tools.rank_advice(plain, loader(), samples=4, max_rank=2)
    assert [p["name"] for p in advice["positions"]] == ["features.0.neuron", "features.3.neuron"]  # not the FC ones
    assert [p["shape"] for p in advice["positions"]] == [[3, 4, 28, 28], [3, 4, 14, 14]]
    assert advice["samples"] == 4 and set(advice["positions"][0]["errors"]) == {"1", "2"}


def test_bad_positions_and_settings():
    model = FashionMNISTNet(T=2, width=4, attention="none", dropout=0.0)
    with pytest.raises(UserError, match="no module named 'features.9'"):
        advice_tools.rank_advice(model, loader(), samples=2, max_rank=1, positions=["features.9"])
    with pytest.raises(UserError, match=r"'classifier.2' must carry \[T, N, C, H, W\] tensors, got \[2, 2, 64\]"):
        advice_tools.rank_advice(model, loader(), samples=2, max_rank=1, positions=["classifier.2"])
    with pytest.raises(UserError, match="--target-fit must be in"):
        advice_tools.rank_advice(model, loader(), target_fit=0)


def check_outputs(out, advice, positions):
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(advice))
    assert [p["name"] for p in written["positions"]] == positions and written["samples"] == 4
    for p in written["positions"]:
        assert set(p["errors"]) == {"1", "2", "3"} and p["samples"] + p["silent"] == 4
        assert all(0 <= e <= 1 for e in p["errors"].values()) if p["samples"] else p["recommended_rank"] is None
        assert p["recommended_rank"] in (None, 1, 2, 3)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_fmnist
def test_cli_on_a_tiny_fmnist_checkpoint(tmp_path, capsys):
    run_py.main(["--device", "cpu", "--train-samples", "128", "--test-samples", "64", "--epochs", "1",
                 "--width", "4", "--batch-size", "32", "--out-dir", str(tmp_path / "run")])
    out = tmp_path / "rank.json"
    advice = rank.main(["--checkpoint", str(tmp_path / "run/checkpoint_best.pth"), "--samples", "4",
                        "--max-rank", "3", "--target-fit", "0.5", "--out", str(out), "--device", "cpu"])
    check_outputs(out, advice, ["features.2"])
    assert advice["positions"][0]["shape"] == [4, 4, 14, 14] and advice["positions"][0]["samples"] > 0
    assert "features.2 [4, 4, 14, 14]: recommended rank" in capsys.readouterr().out


def test_cli_on_a_tiny_cifar_checkpoint(tmp_path):
    write_tiny_cifar(tmp_path / "data", "cifar10")
    cifar_run(["--dataset", "cifar10", "--data-dir", tmp_path / "data", "--out-dir", tmp_path / "run", *TINY,
               "--T", 2, "--attention-at", "1,2"])
    out = tmp_path / "rank.json"
    advice = rank.main(["--checkpoint", str(tmp_path / "run/checkpoint_latest.pth"), "--samples", "4",
                        "--max-rank", "3", "--out", str(out), "--device", "cpu"])
    check_outputs(out, advice, ["features.5", "features.9"])  # attention after stages 1 and 2 of the ResNet-19


@pytest.mark.parametrize("argv, message", [
    ([], "--checkpoint is required"),
    (["--checkpoint", "nowhere.pth"], "nowhere.pth does not exist"),
    (["--checkpoint", "x.pth", "--samples", "0"], "--samples must be a positive integer"),
    (["--checkpoint", "x.pth", "--target-fit", "1.5"], "--target-fit must be in (0, 1]"),
    (["--checkpoint", "x.pth", "--out", "missing/dir/rank.json"], "folder of --out"),
    (["--checkpoint", "x.pth", "--max-rank", "two"], "invalid int value"),
])
def test_bad_inputs_give_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        rank.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_checkpoint_of_no_known_task_is_refused(tmp_path, capsys):
    from pfa.engine.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "net.pth", {"arch": "MyNet()", "signature": "0", "epoch": 1, "config": {}, "model": {}})
    with pytest.raises(SystemExit):
        rank.main(["--checkpoint", str(tmp_path / "net.pth")])
    assert "holds MyNet() of no known task" in capsys.readouterr().err


@needs_fmnist
def test_cli_on_a_tiny_fsvae_checkpoint(tmp_path):
    generation_run([*GENERATION_TINY, "--epochs", "1", "--train-samples", "32", "--test-samples", "16",
                    "--fid-every", "0", "--out-dir", str(tmp_path / "run")])
    out = tmp_path / "rank.json"
    advice = rank.main(["--checkpoint", str(tmp_path / "run/checkpoint_latest.pth"), "--samples", "4",
                        "--max-rank", "3", "--out", str(out), "--device", "cpu"])
    check_outputs(out, advice, ["attention"])  # FSVAE's PFA on its input spikes
