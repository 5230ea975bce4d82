"""The reference's recipes where they are a choice: its split (spikingjelly's, compared with spikingjelly itself), its
per-position ranks, and the *-reference.yaml configs (schedule, epochs, batch, split, augmentation)."""

from pathlib import Path

import numpy as np
import pytest
from spikingjelly.datasets import split_to_train_test_set
from torchvision.datasets import DatasetFolder

from pfa.attention.projected_full import PFA
from pfa.data import neuromorphic as nm
from pfa.data import samples
from pfa.engine.config import parse_config
from pfa.errors import UserError
from pfa.tasks import recipe_folder
from pfa.tasks.cifar import CifarConfig, Data, build_model

CONFIGS = recipe_folder("cifar")


def spikingjelly_split(folder: Path) -> dict:
    """The reference's call: split_to_train_test_set(0.9, dataset, classes, random_split=False) on spikingjelly's
    DatasetFolder of frame files, as class/file names."""
    dataset = DatasetFolder(str(folder), loader=np.load, extensions=(".npz",))
    train, test = split_to_train_test_set(0.9, dataset, len(dataset.classes), random_split=False)
    name = lambda i: str(Path(dataset.samples[i][0]).relative_to(folder))  # noqa: E731
    return {"train": [name(i) for i in train.indices], "test": [name(i) for i in test.indices]}


def test_reference_split_equals_spikingjellys_on_a_file_listing(tmp_path):
    sizes = {"airplane": 10, "bird": 11, "cat": 7, "dog": 1, "truck": 23}  # ceil(0.9 n) at and between integers
    for cls, n in sizes.items():
        (tmp_path / cls).mkdir()
        for i in range(n):  # names whose sorted order is not numeric order: cat_1, cat_10, cat_2, ...
            np.savez(tmp_path / cls / f"{cls}_{i}.npz", frames=np.zeros(1))
    by_class = {cls: [f"{cls}/{f.name}" for f in (tmp_path / cls).iterdir()] for cls in sizes}
    ours = nm.split_first_per_class(by_class, 0.1)
    assert ours == spikingjelly_split(tmp_path)
    assert [sum(f.startswith(f"{c}/") for f in ours["test"]) for c in sizes] == [1, 1, 0, 0, 2]


def test_build_neuromorphic_takes_the_reference_split_of_real_frames(tmp_path):
    samples.write_samples("cifar10dvs", tmp_path, per_class=10, seed=0)
    data = nm.build_neuromorphic("cifar10dvs", tmp_path, 4, split_method="reference", progress=False)
    folder = tmp_path / "frames_number_4_split_by_number"
    assert {k: data.split[k] for k in ("train", "test")} == spikingjelly_split(folder)
    assert len(data.test) == 10 and "file order" in data.split["kind"]
    with pytest.raises(UserError, match="split_method must be one of seeded, reference, got 'first'"):
        nm.build_neuromorphic("cifar10dvs", tmp_path, 4, split_method="first", progress=False)


@pytest.mark.parametrize("dataset,T,ranks,split,augment", [
    ("cifar10dvs", 12, (8,) * 5, "reference", "reference"),
    ("ncaltech101", 14, (8,) * 5, "reference", "reference"),
    ("dvsgesture", 20, (32, 32, 32, 32, 64), "seeded", "none"),  # official split; the reference does not augment it
])
def test_reference_configs_reproduce_the_reference_recipe(dataset, T, ranks, split, augment):
    cfg = parse_config(CifarConfig, ["--config", str(CONFIGS / f"{dataset}-reference.yaml")])
    recipe = (cfg.scheduler, cfg.step_size, cfg.gamma, cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr, cfg.loss)
    assert recipe == ("step", 30, 0.1, 200, 32, "adam", 1e-4, "mse")
    assert (cfg.dataset, cfg.T, cfg.split, cfg.augment, cfg.seed) == (dataset, T, split, augment, 2022)
    side = 128 if dataset == "dvsgesture" else 48
    data = Data(None, None, 11, 2, (side, side), images=False)
    model, _ = build_model(cfg, data)
    assert tuple(m.rank for m in model.modules() if isinstance(m, PFA)) == ranks


@pytest.mark.parametrize("argv,message", [
    (["--rank", "32,32"], "--rank 32,32 gives 2 ranks for 5 attention slots (0,1,2,3,4): give one rank, or one per"),
    (["--rank", "32,x"], "--rank expects a positive integer, or one per attention slot separated by commas"),
    (["--rank", "32,0,32,32,32"], "--rank must be a positive integer, got 32,0,32,32,32"),
    (["--attention-at", "1,4", "--rank", "8,16,32"], "gives 3 ranks for 2 attention slots (1,4)"),
])
def test_bad_per_position_ranks_are_one_line(argv, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(CifarConfig, ["--dataset", "dvsgesture", *argv]).validate()


def test_per_position_ranks_reach_the_slots_in_use():
    cfg = parse_config(CifarConfig, ["--dataset", "cifar10dvs", "--attention-at", "1,4", "--rank", "8,16"])
    model, description = build_model(cfg, Data(None, None, 10, 2, (48, 48), images=False))
    assert [m.rank for m in model.modules() if isinstance(m, PFA)] == [8, 16] and "rank=(8, 16)" in description
