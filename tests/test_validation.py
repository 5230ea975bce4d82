"""--val-fraction: a stratified, seeded part of the training set, saved and reused, chooses the best checkpoint."""

import json
from collections import Counter
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import layer, neuron, surrogate
from test_cifar_entry import write_tiny_cifar
from torch.utils.data import Dataset, Subset, TensorDataset

from pfa.data.cifar import build_cifar
from pfa.data.fashion_mnist import DEBIAN_DIR, FashionMNIST, load_fashion_mnist
from pfa.data.neuromorphic import FrameDataset
from pfa.data.samples import write_samples
from pfa.data.subsets import dataset_labels, evaluation_view, fixed_subset, stratified_indices
from pfa.engine import loop
from pfa.engine.config import parse_config
from pfa.engine.loop import fit
from pfa.engine.run import Run
from pfa.engine.task import ClassificationTask
from pfa.errors import UserError
from pfa.tasks.cifar import CifarConfig, load_data
from pfa.tasks.fmnist import FMNISTConfig
from pfa.tasks.fmnist import train as train_fmnist
from pfa.tasks.validation import ClassificationConfig, hold_out

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Config(ClassificationConfig):
    attention: str = "none"


def config(tmp_path, name="run", **overrides) -> Config:
    values = {"out_dir": str(tmp_path / name), "epochs": 2, "batch_size": 16, "device": "cpu", "workers": 0,
              "lr": 1e-2, "t_max": 3, "val_fraction": 0.25}
    return Config(**{**values, **overrides})


def blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    centres = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)) * 2
    return TensorDataset(centres[labels] + torch.randn(n, 8, generator=g), labels)


class Net(nn.Module):
    """8 features -> 3 LIF over T=2 steps."""

    def __init__(self):
        super().__init__()
        self.fc = layer.SeqToANNContainer(nn.Linear(8, 3))
        self.lif = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")

    def forward(self, x):
        return self.lif(self.fc(x.unsqueeze(0).repeat(2, 1, 1)))


def train(cfg, train_set=None) -> dict:
    train_set, val_set, files = hold_out(cfg, train_set or blobs(96, 1), blobs(40, 2))
    with Run(cfg, "test") as run:
        return fit(run, Net(), ClassificationTask(cfg.loss), train_set, blobs(40, 2), "Net", files=files,
                   val_set=val_set)


def test_stratified_by_class_and_deterministic_by_seed():
    labels = [0] * 10 + [1] * 20 + [2] * 5 + [3]
    held = stratified_indices(labels, 0.2, seed=1)
    assert Counter(labels[i] for i in held) == {0: 2, 1: 4, 2: 1}  # round(n * 0.2), at least 1, none of a lone class
    assert held == sorted(held) == stratified_indices(labels, 0.2, seed=1)
    assert held != stratified_indices(labels, 0.2, seed=2)
    pairs = [0, 0, 1, 1]
    assert Counter(pairs[i] for i in stratified_indices(pairs, 0.9, seed=1)) == {0: 1, 1: 1}  # n - 1 at most


class Frames(Dataset):
    """Items that must not be loaded to learn the labels, and a transform like the training side's augmentation."""

    def __init__(self):
        self.targets, self.transform = [2, 0, 1, 2], "augment"

    def __len__(self):
        return 4

    def __getitem__(self, index):
        raise AssertionError("labels are read without loading an item")


def test_labels_without_loading_inputs_and_validation_read_as_test_items():
    frames = Frames()
    assert dataset_labels(Subset(frames, [3, 1])) == [2, 0]
    images = FashionMNIST(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([4, 5, 6]))
    assert dataset_labels(images) == [4, 5, 6] and dataset_labels(blobs(5, 1)) == blobs(5, 1).tensors[1].tolist()
    test = Frames()
    test.transform = None
    view = evaluation_view(Subset(frames, [3, 1]), Subset(test, [0]))
    assert view.dataset.transform is None and frames.transform == "augment" and view.indices == [3, 1]
    assert evaluation_view(images, test) is images  # no transform: the same items


def test_split_saved_disjoint_and_reused_on_resume(tmp_path):
    cfg = config(tmp_path, epochs=1)
    rest, val, files = hold_out(cfg, blobs(96, 1), blobs(40, 2))
    held = files["validation.json"]["indices"]
    assert sorted(rest.indices + val.indices) == list(range(96)) and val.indices == held
    assert files["validation.json"] == {"fraction": 0.25, "seed": cfg.seed, "train_size": 96, "indices": held}

    record = train(cfg)
    out = tmp_path / "run"
    assert json.loads((out / "validation.json").read_text()) == files["validation.json"]
    assert {"val_loss", "val_acc", "best_val_acc", "test_acc", "test_acc_at_best_val"} <= set(record)
    assert "best_test_acc" not in record

    # A resumed run takes the saved samples, whatever a new draw would give: here, another valid choice.
    saved = {**files["validation.json"], "indices": [i for i in range(96) if i not in held][:24]}
    (out / "validation.json").write_text(json.dumps(saved))
    resumed = parse_config(Config, ["--resume", str(out / "checkpoint_latest.pth"), "--epochs", "2"])
    assert resumed.val_fraction == 0.25
    rest, val, _ = hold_out(resumed, blobs(96, 1), blobs(40, 2))
    assert val.indices == saved["indices"] and not set(rest.indices) & set(val.indices)
    train(resumed)
    assert json.loads((out / "validation.json").read_text()) == saved

    evaluated = parse_config(Config, ["--resume", str(out / "checkpoint_best.pth"), "--eval-only", "--out-dir",
                                      str(tmp_path / "eval")])
    record = train(evaluated)
    assert json.loads((tmp_path / "eval" / "validation.json").read_text()) == saved and "val_acc" in record

    (out / "validation.json").unlink()
    with pytest.raises(UserError, match="keeps its validation samples there"):
        hold_out(resumed, blobs(96, 1), blobs(40, 2))
    (out / "validation.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="belongs to other data"):
        hold_out(resumed, blobs(80, 1), blobs(40, 2))


def test_checkpoint_best_follows_validation_not_test(tmp_path, monkeypatch):
    # Scripted accuracies: validation peaks at epoch 2, the test set at epoch 3.
    scripted = {"validation": iter([0.5, 0.8, 0.6, 0.7]), "test": iter([0.5, 0.6, 0.9, 0.7])}
    monkeypatch.setattr(loop, "evaluate", lambda run, net, task, loader, what="test": {
        "loss": 1.0, "acc": next(scripted[what])})
    record = train(config(tmp_path, epochs=4))
    assert (record["best_val_acc"], record["test_acc"], record["test_acc_at_best_val"]) == (0.8, 0.7, 0.6)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_acc_at_best_val"] for r in history] == [0.5, 0.6, 0.6, 0.6]
    best = torch.load(tmp_path / "run" / "checkpoint_best.pth", weights_only=True)
    assert (best["epoch"], best["best"]) == (2, 0.8)


def test_bad_fractions_are_one_line(tmp_path):
    for value in ("-0.1", "1"):
        with pytest.raises(UserError, match=r"--val-fraction must be in \[0, 1\)"):
            parse_config(Config, ["--val-fraction", value])
    with pytest.raises(UserError, match="holds out no sample"):
        hold_out(config(tmp_path), fixed_subset(blobs(96, 1), 1, "--train-samples"), blobs(4, 2))


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")
def test_fashion_mnist_entry_holds_out_per_class(tmp_path):
    out = tmp_path / "fmnist"
    cfg = parse_config(FMNISTConfig, ["--device", "cpu", "--width", "4", "--dropout", "0", "--epochs", "1",
                                      "--train-samples", "200", "--test-samples", "50", "--val-fraction", "0.1",
                                      "--out-dir", str(out)])
    record = train_fmnist(cfg)
    held = json.loads((out / "validation.json").read_text())["indices"]
    labels = dataset_labels(fixed_subset(load_fashion_mnist(None, train=True), 200, "--train-samples"))
    assert held == stratified_indices(labels, 0.1, cfg.seed) and "test_acc_at_best_val" in record
    provenance = (out / "config.yaml").read_text()
    assert f"train_size: {200 - len(held)}" in provenance and "val_fraction: 0.1" in provenance


def test_cifar_validation_images_are_read_without_augmentation(tmp_path):
    write_tiny_cifar(tmp_path / "data", "cifar10")  # 20 training images, 5 of each of 4 classes
    cfg = parse_config(CifarConfig, ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--device", "cpu",
                                     "--val-fraction", "0.2", "--out-dir", str(tmp_path / "run")])
    data = load_data(cfg)
    rest, val, files = hold_out(cfg, data.train, data.test)
    assert len(val) == 4 and len(rest) == 16 and sorted(dataset_labels(val)) == [0, 1, 2, 3]
    plain = build_cifar("cifar10", tmp_path / "data", augment=False).train
    assert all(torch.equal(val[i][0], plain[index][0]) for i, index in enumerate(val.indices))
    assert data.train.transform is not plain.transform  # the training side keeps its augmentation


def test_event_frames_labels_come_from_the_file_list(tmp_path, monkeypatch):
    write_samples("cifar10dvs", tmp_path / "data", per_class=4)  # 3 training recordings of each of 10 classes
    cfg = parse_config(CifarConfig, ["--dataset", "cifar10dvs", "--data-dir", str(tmp_path / "data"), "--T", "4",
                                     "--device", "cpu", "--val-fraction", "0.3", "--out-dir", str(tmp_path / "run")])
    data = load_data(cfg, progress=False)
    monkeypatch.setattr(FrameDataset, "__getitem__", lambda self, index: pytest.fail("a frame file was loaded"))
    rest, val, _ = hold_out(cfg, data.train, data.test)
    assert len(rest) == 20 and sorted(dataset_labels(val)) == list(range(10))
    assert data.train.transform is not None and val.dataset.transform is None  # validation: no augmentation
