"""Static CIFAR from a tiny dataset written in torchvision's on-disk pickle format."""

import pickle

import numpy as np
import pytest
import torch

from pfa.data.cifar import SPECS, build_cifar, cifar_files
from pfa.errors import UserError

PER_FILE = 3


def _write_cifar(root, name, seed=0):
    """Batches as the official tarballs hold them: uint8 rows of 3072 (R, G, B planes), labels, a meta file."""
    rng = np.random.default_rng(seed)
    label_key, classes = ("labels", 10) if name == "cifar10" else ("fine_labels", 100)
    images = {}
    for relative in cifar_files(name)[:-1]:
        data = rng.integers(0, 256, (PER_FILE, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, PER_FILE).tolist()
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        with open(root / relative, "wb") as f:
            pickle.dump({"batch_label": relative, label_key: labels, "data": data}, f, protocol=2)
        images[relative] = (data.reshape(-1, 3, 32, 32), labels)
    meta_key = SPECS[name].folder_class.meta["key"]
    with open(root / cifar_files(name)[-1], "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(classes)]}, f, protocol=2)
    return images


def _normalised(image, name):
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (SPECS[name].mean, SPECS[name].std))
    return (torch.from_numpy(image).float() / 255 - mean) / std


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_test_images_are_the_files_pixels_normalised(tmp_path, name):
    images = _write_cifar(tmp_path, name)
    data = build_cifar(name, tmp_path)
    test_file = cifar_files(name)[-2]
    assert len(data.test) == PER_FILE and len(data.train) == PER_FILE * (len(images) - 1)
    assert len(data.classes) == (10 if name == "cifar10" else 100) and data.image_shape == (3, 32, 32)
    for i in range(PER_FILE):
        x, label = data.test[i]
        assert x.dtype == torch.float32 and label == images[test_file][1][i]
        torch.testing.assert_close(x, _normalised(images[test_file][0][i], name))


def test_training_images_are_padded_crops_maybe_flipped(tmp_path):
    images = _write_cifar(tmp_path, "cifar10")
    data = build_cifar("cifar10", tmp_path)
    first = images[cifar_files("cifar10")[0]][0][0]
    padded = torch.nn.functional.pad(torch.from_numpy(first).float(), (4, 4, 4, 4))
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (SPECS["cifar10"].mean, SPECS["cifar10"].std))
    crops = {(dy, dx, flip): padded[:, dy:dy + 32, dx:dx + 32].flip(-1) if flip else padded[:, dy:dy + 32, dx:dx + 32]
             for dy in range(9) for dx in range(9) for flip in (False, True)}
    moved = 0
    for _ in range(10):
        x, _ = data.train[0]
        pixels = torch.round((x * std + mean) * 255)
        matches = [key for key, crop in crops.items() if torch.equal(pixels, crop)]
        assert matches
        moved += (4, 4, False) not in matches
    assert moved >= 5
    plain = build_cifar("cifar10", tmp_path, augment=False)
    torch.testing.assert_close(plain.train[0][0], _normalised(first, "cifar10"))


def test_missing_files_say_what_to_download_and_where(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserError) as error:
        build_cifar("cifar10", tmp_path)
    message = str(error.value)
    assert "missing cifar-10-batches-py/data_batch_3)" in message and SPECS["cifar10"].url in message
    assert f"-C {tmp_path}" in message and "\n" not in message


def test_an_unreadable_file_is_a_user_error(tmp_path):
    _write_cifar(tmp_path, "cifar100")
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cannot read CIFAR-100 from .*cifar-100-python"):
        build_cifar("cifar100", tmp_path)


def test_unknown_name(tmp_path):
    with pytest.raises(UserError, match="unknown static dataset 'cifar1000'"):
        build_cifar("cifar1000", tmp_path)
