"""Generation data: torchvision layouts read offline, resized and scaled to [-1, 1] as FSVAE expects."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pfa.data.images import load_generation_data
from pfa.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_in_torchvision_layout_is_resized_and_scaled(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.zeros((3, 28, 28), np.uint8)
    images[1] = 255
    images[2, :, 14:] = 255
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(3))
    train, test = load_generation_data("mnist", str(tmp_path), 32)
    assert len(train) == len(test) == 3
    black, white, half = (train[i][0] for i in range(3))
    assert black.shape == (1, 32, 32)
    assert black.min() == black.max() == -1 and white.min() == white.max() == 1
    assert half[0, :, :15].max() == -1 and half[0, :, 17:].min() == 1


def test_fashion_from_debian_is_32px_in_signed_range():
    train, test = load_generation_data("fashion", None, 32)
    assert (len(train), len(test)) == (60000, 10000)
    image, label = test[0]
    assert image.shape == (1, 32, 32) and 0 <= label < 10
    assert image.min() >= -1 and image.max() <= 1 and image.min() < -0.9 < 0.5 < image.max()


def test_missing_celeba_names_the_expected_layout(tmp_path):
    with pytest.raises(UserError, match=r"celeba not found in --data-dir .*img_align_celeba"):
        load_generation_data("celeba", str(tmp_path), 64)


def test_help_lists_the_generation_flags():
    out = subprocess.run([sys.executable, str(ROOT / "Generation/main_fsvae.py"), "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0
    for flag in ("--model", "--attention", "--fid-samples", "--inception-weights", "--resume", "--train-samples"):
        assert flag in out.stdout
