"""Operator mistakes and damaged inputs at the entry points: one line, exit status 2, nothing created."""

import gzip
import shutil

import numpy as np
import pytest
import torch
from test_fmnist import SMALL, assert_one_line_error

from pfa.data import event_frames as ef
from pfa.data import neuromorphic as nm
from pfa.data import samples
from pfa.data.fashion_mnist import DEBIAN_DIR
from pfa.errors import UserError

needs_fmnist = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()


def _fashion_files(folder, images=None, labels=None):
    """A Fashion-MNIST folder: Debian's files, with the test images/labels replaced by these bytes if given."""
    folder.mkdir()
    for packed in DEBIAN_DIR.glob("*.gz"):
        shutil.copy(packed, folder)
    for name, data in (("t10k-images-idx3-ubyte.gz", images), ("t10k-labels-idx1-ubyte.gz", labels)):
        if data is not None:
            (folder / name).write_bytes(data)


@needs_fmnist
@pytest.mark.parametrize(("images", "labels", "expected"), [
    (b"\x1f\x8b\x08\x00garbage" * 20, None, "t10k-images-idx3-ubyte.gz ("),
    (gzip.compress(b"\x00\x00\x08\x03\x00\x00"), None, "is not a uint8 idx file (6 bytes)"),
    (None, gzip.compress(_idx(np.full(10000, 10))), "label 10 is not a Fashion-MNIST class (0 to 9)"),
    (gzip.compress(_idx(np.zeros((10000, 32, 32)))), None, "expected [N, 28, 28] images and N labels"),
])
def test_damaged_fashion_mnist_files(tmp_path, capsys, images, labels, expected):
    _fashion_files(tmp_path / "data", images, labels)
    argv = [*SMALL, "--epochs", "1", "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / "out")]
    assert_one_line_error(capsys, argv, expected)
    assert not (tmp_path / "out").exists()


@needs_fmnist
@pytest.mark.parametrize(("argv", "expected"), [
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--scheduler", "step", "--gamma", "inf"], "--gamma must be a finite number, got inf"),
    (["--gamma", "-1"], "--gamma must be a positive factor"),
    (["--seed", "-1"], "--seed must be an integer in [0, 2**32)"),
    (["--device", "meta"], "--device expects cpu, cuda or cuda:N, got 'meta'"),
    (["--amp", "fp16"], "--amp fp16 is for CUDA devices"),
    (["--out-dir", "{tmp}/file"], "is a file; give a folder path"),
])
def test_bad_flags_at_the_entry_point(tmp_path, capsys, argv, expected):
    (tmp_path / "file").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert_one_line_error(capsys, [*SMALL, "--epochs", "1", "--out-dir", str(tmp_path / "out"), *argv], expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", [lambda data: b"", lambda data: data[:data.index(b"DVS128\r\n") + 8]],
                         ids=["zero bytes", "header only"])
def test_event_recordings_without_events_are_named(tmp_path, damage):
    samples.write_samples("cifar10dvs", tmp_path, per_class=1)
    path = tmp_path / "extract/cat/cifar10_cat_0.aedat"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=f"event recording {path} holds no events"):
        nm.build_neuromorphic("cifar10dvs", tmp_path, 4, progress=False)
    assert not (tmp_path / "events_np").exists() and not (tmp_path / "events_np.building").exists()


def test_a_build_lock_from_another_host_is_refused_not_waited_for(tmp_path):
    samples.write_samples("cifar10dvs", tmp_path, per_class=1)
    (tmp_path / ef.LOCK_NAME).write_text('{"host": "otherhost", "pid": 1}')
    with pytest.raises(UserError, match="being prepared by pid 1 on host otherhost, which this host cannot check"):
        nm.build_neuromorphic("cifar10dvs", tmp_path, 4, progress=False, wait=True)


def test_generation_refuses_flags_it_does_not_use_and_a_folder_as_autoencoder(tmp_path):
    from pfa.engine.config import parse_config
    from pfa.tasks.generation import GenerationConfig

    for argv, expected in ((["--loss", "ce"], "unrecognized arguments: --loss ce"),
                           (["--tet-lambda", "0.5"], "unrecognized arguments: --tet-lambda"),
                           (["--fid-autoencoder", str(tmp_path)], f"--fid-autoencoder {tmp_path} is a folder")):
        with pytest.raises(UserError, match=expected):
            parse_config(GenerationConfig, ["--device", "cpu", *argv])
    assert "loss" not in parse_config(GenerationConfig, ["--device", "cpu"]).to_dict()


def test_lif_refuses_a_threshold_at_the_reset():
    from pfa.lif.neuron import LIF

    with pytest.raises(ValueError, match="v_threshold must be above v_reset"):
        LIF(v_threshold=0.0)
    assert torch.isnan(LIF(backend="torch")(torch.full((2, 3), torch.nan))[-1]).all()
