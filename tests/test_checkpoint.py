import errno
import math
import os

import pytest
import torch
import torch.nn as nn

from pfa.engine.checkpoint import load_checkpoint, model_signature, non_finite, save_checkpoint
from pfa.errors import UserError


def state_for(model: nn.Module, arch: str) -> dict:
    return {"arch": arch, "signature": model_signature(model), "epoch": 3, "model": model.state_dict()}


def test_round_trip_with_weights_only_loading(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    path = tmp_path / "checkpoint_latest.pth"
    save_checkpoint(path, {**state_for(model, "net(a)"), "rng": torch.get_rng_state(), "python": (3, (1, 2), None)})
    state = load_checkpoint(path, nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), "net(a)")
    assert state["epoch"] == 3 and state["python"] == (3, (1, 2), None)
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pth"]


def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint_latest.pth"
    save_checkpoint(path, state_for(nn.Linear(2, 2), "net"))
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises, the old file must survive
        save_checkpoint(path, {"model": lambda: None})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pth"]


def test_missing(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")


def test_truncated(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(path, state_for(nn.Linear(30, 30), "net"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="is truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"hello, not a checkpoint\n", b"", bytes(range(256)) * 10])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "c.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match="is not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_torch_file_from_elsewhere(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(UserError, match="not a checkpoint of this repository"):
        load_checkpoint(path)


def test_pickled_objects_are_refused_by_weights_only(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"format": "pfa-checkpoint-1", "model": nn.Linear(2, 2)}, path)
    with pytest.raises(UserError, match="c.pth"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_names_both(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(path, state_for(nn.Linear(8, 2), "Net(width=8)"))
    with pytest.raises(UserError, match=r"written for Net\(width=8\), but this run builds Net\(width=4\)"):
        load_checkpoint(path, nn.Linear(4, 2), "Net(width=4)")


def test_signature_depends_on_names_and_shapes_not_values():
    assert model_signature(nn.Linear(4, 2)) == model_signature(nn.Linear(4, 2))
    assert model_signature(nn.Linear(4, 2)) != model_signature(nn.Linear(4, 3))
    assert model_signature(nn.Linear(4, 2)) != model_signature(nn.Sequential(nn.Linear(4, 2)))


@pytest.mark.parametrize("drop", ["model", "signature", "epoch"])
def test_a_checkpoint_missing_entries_is_named(tmp_path, drop):
    state = state_for(nn.Linear(2, 2), "net")
    del state[drop]
    save_checkpoint(tmp_path / "c.pth", state)
    with pytest.raises(UserError, match=f"c.pth lacks {drop}; it was not written by a training run"):
        load_checkpoint(tmp_path / "c.pth", nn.Linear(2, 2), "net")


def test_a_training_resume_needs_the_training_state(tmp_path):
    save_checkpoint(tmp_path / "c.pth", state_for(nn.Linear(2, 2), "net"))
    with pytest.raises(UserError, match="c.pth lacks optimizer, rng"):
        load_checkpoint(tmp_path / "c.pth", nn.Linear(2, 2), "net", needs=("optimizer", "rng"))


def test_a_reshaped_tensor_is_refused(tmp_path):
    state = state_for(nn.Linear(3, 4), "net")
    state["model"]["weight"] = state["model"]["weight"].reshape(2, 6)
    save_checkpoint(tmp_path / "c.pth", state)
    with pytest.raises(UserError, match=r"c.pth does not fit net: weight is \(2, 6\) there, \(4, 3\) here"):
        load_checkpoint(tmp_path / "c.pth", nn.Linear(3, 4), "net")


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_latest.pth"
    save_checkpoint(path, state_for(nn.Linear(2, 2), "net"))
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=r"cannot write .*checkpoint_latest.pth: No space left on device; the previous"):
        save_checkpoint(path, state_for(nn.Linear(2, 2), "net"))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pth"]


def test_non_finite_names_the_tensors():
    assert non_finite({"a": torch.ones(2), "b": torch.tensor([1.0, math.nan]), "c": torch.tensor([math.inf]),
                       "n": torch.tensor([3])}) == ["b", "c"]
