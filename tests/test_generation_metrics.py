"""Autoencoder-FID on real Fashion-MNIST, the Frechet distance against scipy's sqrtm, the optional Inception metrics."""

import numpy as np
import pytest
import torch
from scipy import linalg
from torch.utils.data import DataLoader

from pfa.data.images import load_generation_data
from pfa.data.subsets import fixed_subset
from pfa.errors import UserError
from pfa.tasks.generation_metrics import (
    INCEPTION_WEIGHTS_NAME,
    AutoencoderFID,
    feature_statistics,
    find_inception_weights,
    frechet_distance,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_frechet_distance_matches_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.5
    (m1, s1), (m2, s2) = feature_statistics(a), feature_statistics(b)
    expected = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_with_singular_covariances():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(size=(50, 3)), np.zeros((50, 2))], 1)  # two dead features
    mean, cov = feature_statistics(a)
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(mean, cov, mean + 1, cov) == pytest.approx(5, rel=1e-9)


@pytest.fixture(scope="module")
def fashion_subsets():
    train, test = load_generation_data("fashion", None, 32)
    return fixed_subset(train, 512, "--train-samples"), fixed_subset(test, 256, "--test-samples")


def batches_of(dataset, size=64):
    return [images for images, _ in DataLoader(dataset, batch_size=size)]


def test_autoencoder_fid_is_zero_for_the_test_set_and_large_for_noise(fashion_subsets, tmp_path):
    train, test = fashion_subsets
    torch.manual_seed(0)
    path = tmp_path / "fid_autoencoder.pth"
    fid = AutoencoderFID.load_or_train(path, 1, 32, DataLoader(train, batch_size=64, shuffle=True),
                                       DataLoader(test, batch_size=64), epochs=2, device=torch.device("cpu"))
    assert path.is_file()
    same = fid(batches_of(test))
    real = fid(batches_of(train))
    noise = fid([torch.rand(64, 1, 32, 32) * 2 - 1 for _ in range(4)])
    assert abs(same) < 1e-6 * max(1.0, real)
    assert noise > 10 * real > 0

    logged = []
    reused = AutoencoderFID.load_or_train(path, 1, 32, None, None, epochs=2, device=torch.device("cpu"),
                                          log=logged.append)
    assert "reusing" in logged[0]
    assert reused(batches_of(train)) == pytest.approx(real, rel=1e-9)
    with pytest.raises(UserError, match=r"made for images \[1, 32, 32\], this run has \[3, 32, 32\]"):
        AutoencoderFID.load_or_train(path, 3, 32, None, None, epochs=1, device=torch.device("cpu"))
    state = torch.load(path, weights_only=True)
    state["mean"][0] += 1.0  # one changed number, the checksum left as it was
    torch.save(state, path)
    with pytest.raises(UserError, match="is damaged: its contents do not match the checksum"):
        AutoencoderFID.load_or_train(path, 1, 32, None, None, epochs=1, device=torch.device("cpu"))


def test_inception_metrics_without_weights_give_one_line_on_how_to_enable_them(tmp_path):
    weights, message = find_inception_weights(str(tmp_path / "missing.pth"))
    assert weights is None
    assert "\n" not in message and INCEPTION_WEIGHTS_NAME in message and "--inception-weights" in message
    assert "pip install torchmetrics torch-fidelity" in message
