"""CIFAR/main.py end to end: sample recordings in each event dataset's raw format, a tiny CIFAR in torchvision's
layout, per-dataset defaults and YAML configs, split.json on resume, --report and --save-attention, and bad inputs."""

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from run_outputs import FLAGS, check_outputs

from pfa.attention.registry import attention_kinds
from pfa.data import neuromorphic
from pfa.data.samples import WRITERS, write_samples
from pfa.engine.config import parse_config
from pfa.errors import UserError
from pfa.tasks import recipe_folder
from pfa.tasks.cifar import DATASETS, EVENT_DATASETS, CifarConfig, Data, model_arguments

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """A script of the repository (not a package module) imported from its path."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cifar_main = load_script("CIFAR/main.py")

# A few samples through a 1/16-width network: the pipeline, not the accuracy, is under test.
TINY = ["--T", 4, "--width", 0.0625, "--epochs", 1, "--batch-size", 4, "--workers", 0, "--device", "cpu",
        "--train-samples", 8, "--test-samples", 4]


@pytest.fixture(scope="module")
def event_root(tmp_path_factory):
    """Sample recordings of each event dataset, written once per module (frames get cached beside them)."""
    roots = {}

    def get(dataset: str) -> Path:
        if dataset not in roots:
            roots[dataset] = tmp_path_factory.mktemp(dataset)
            write_samples(dataset, roots[dataset], per_class=2)  # the smallest set with a test side per class
        return roots[dataset]

    return get


def write_tiny_cifar(root: Path, name: str, train: int = 24, test: int = 8) -> None:
    """CIFAR10/100 in torchvision's pickled layout, random images, labels cycling over the classes."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, classes, key, label_key = root / "cifar-10-batches-py", 10, "label_names", "labels"
        batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = "batches.meta"
    else:
        folder, classes, key, label_key = root / "cifar-100-python", 100, "fine_label_names", "fine_labels"
        batches, meta = ["train", "test"], "meta"
    folder.mkdir(parents=True)
    for batch in batches:
        n = test if "test" in batch else max(1, train // (len(batches) - 1))
        images = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        (folder / batch).write_bytes(pickle.dumps({"data": images, label_key: [i % classes for i in range(n)]}))
    (folder / meta).write_bytes(pickle.dumps({key: [f"class{i}" for i in range(classes)]}))


def run(argv: list[str]) -> dict:
    return cifar_main.main([str(a) for a in argv])


def fails_with(argv: list[str], capsys) -> str:
    """The one line a user error prints (and checks the exit status)."""
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err


def check_run_dir(out: Path, record: dict) -> dict:
    for name in ("config.yaml", "checkpoint_latest.pth", "checkpoint_best.pth", "metrics.json", "tensorboard"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == record and metrics["epoch"] == 1
    for key in ("train_acc", "test_acc", "best_test_acc"):
        assert 0 <= metrics[key] <= 1
    return metrics


@pytest.mark.parametrize("dataset", [d for d in EVENT_DATASETS if d in WRITERS])  # fmnist-events: test_fmnist_events
def test_one_epoch_on_sample_recordings(dataset, event_root, tmp_path):
    root, out = event_root(dataset), tmp_path / "run"
    record = run(["--dataset", dataset, "--data-dir", root, "--out-dir", out, *TINY, *FLAGS])
    check_run_dir(out, record)
    check_outputs(out)
    split = json.loads((out / "split.json").read_text())
    files = sorted(p.stem for p in (root / "extract").rglob("*") if p.suffix in (".aedat", ".bin"))
    assert not set(split["train"]) & set(split["test"]) and split["test"]
    sides = {side: {Path(f).parts[0] for f in split[side]} for side in ("train", "test")}
    if dataset == "dvsgesture":  # one frame file per gesture trial; the test recording's trials are the test side
        assert sides == {"train": {"train"}, "test": {"test"}}
    else:  # one frame file per recording, 1 in 10 of each class on the test side (2 or 4 recordings: 1 each)
        assert sorted(Path(f).stem for f in split["train"] + split["test"]) == files
        assert sorted(Path(f).parts[0] for f in split["test"]) == sorted(sides["train"])


def test_resume_reuses_the_saved_split_and_eval_only_reports(event_root, tmp_path, capsys):
    root, out = event_root("cifar10dvs"), tmp_path / "run"
    run(["--dataset", "cifar10dvs", "--data-dir", root, "--out-dir", out, "--seed", 1, *TINY])
    first = json.loads((out / "split.json").read_text())
    files = {}
    for f in first["train"] + first["test"]:
        files.setdefault(f.split("/")[0], []).append(f)
    assert neuromorphic.split_per_class(files, seed=2)["test"] != first["test"]  # seed 2 alone would split otherwise

    resume = ["--resume", out / "checkpoint_latest.pth", "--epochs", 2]
    with pytest.raises(SystemExit):  # a resumed run keeps its seed (and so its split)
        run(["--dataset", "cifar10dvs", "--data-dir", root, "--seed", 2, *TINY, *resume])
    assert "--seed 2 contradicts the run being resumed (seed: 1 in" in capsys.readouterr().err
    run(["--dataset", "cifar10dvs", "--data-dir", root, *TINY, *resume])
    assert json.loads((out / "split.json").read_text()) == first
    assert json.loads((out / "metrics.json").read_text())["epoch"] == 2

    evaluated = tmp_path / "eval"
    capsys.readouterr()
    evaluate = ["--eval-only", "--resume", out / "checkpoint_best.pth", *FLAGS]
    run(["--dataset", "cifar10dvs", "--data-dir", root, "--out-dir", evaluated, *TINY, *evaluate])
    assert json.loads((evaluated / "split.json").read_text()) == first
    report = check_outputs(evaluated, curves=False)
    weights = torch.load(out / "checkpoint_best.pth", weights_only=True)["model"]
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert report["parameters"]["total"] == sum(v.numel() for k, v in weights.items() if not k.endswith(buffers))
    assert len(report["spike_rates"]) == 9  # 8 conv layers + the output layer
    assert report["samples"] == 4  # the first batch of --test-samples 4
    assert "SOPs per sample" in capsys.readouterr().out


@pytest.mark.parametrize("dataset, arch", [("cifar10", "resnet19"), ("cifar100", "vgg")])
def test_one_epoch_on_tiny_cifar(dataset, arch, tmp_path):
    write_tiny_cifar(tmp_path / "data", dataset)
    out = tmp_path / "run"
    data = ["--dataset", dataset, "--data-dir", tmp_path / "data", "--out-dir", out]
    record = run([*data, "--arch", arch, *FLAGS, *TINY, "--T", 2])
    check_run_dir(out, record)
    assert not (out / "split.json").exists()  # torchvision's own train/test files
    report = check_outputs(out)
    first_conv = report["synops"][0]
    assert not first_conv["binary_input"] and first_conv["input_nonzero"] > 0.99  # direct encoding: real pixels


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset_picks_its_recipe_file(dataset):
    recipe = yaml.safe_load((recipe_folder("cifar") / f"{dataset}.yaml").read_text())
    cfg = parse_config(CifarConfig, ["--dataset", dataset]).to_dict()
    recipe.pop("amp")  # a recipe's mixed precision applies on CUDA only; on this CPU it resolves to "none"
    assert {k: cfg[k] for k in recipe} == recipe and cfg["amp"] == "none"
    from_file = parse_config(CifarConfig, ["--config", str(recipe_folder("cifar") / f"{dataset}.yaml")])
    assert {**from_file.to_dict(), "config": None} == cfg


def test_flags_override_the_dataset_defaults():
    cfg = parse_config(CifarConfig, ["--dataset", "dvsgesture", "--lr", "0.01", "--T", "8"])
    assert (cfg.lr, cfg.T, cfg.rank, cfg.pool, cfg.batch_size, cfg.loss) == (0.01, 8, 32, 0, 32, "mse")
    assert [parse_config(CifarConfig, ["--dataset", d]).T for d in EVENT_DATASETS] == [12, 14, 20, 8]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "cifar11"], "invalid choice: 'cifar11'"),
        (["--dataset", "cifar10dvs", "--rank", "0"], "--rank must be a positive integer, got 0"),
        (["--dataset", "cifar10dvs", "--rank", "-3"], "--rank must be a positive integer, got -3"),
        (["--dataset", "cifar10dvs", "--T", "0"], "--T must be a positive integer, got 0"),
        (["--dataset", "cifar10dvs", "--attention", "se"], "invalid choice: 'se'"),
        (["--dataset", "cifar10dvs", "--attention-at", "1;2"], "--attention-at expects slot numbers"),
        (["--rank", "4"], "--dataset is required"),
        (["--dataset", "cifar10dvs", "--data-dir", "/nonexistent/pfa"], "download"),
    ],
)
def test_bad_inputs_give_one_line(argv, message, capsys):
    assert message in fails_with(argv, capsys)


@pytest.mark.parametrize(
    "argv, slots",
    [
        (["--dataset", "cifar10", "--arch", "vgg", "--attention-at", "0,1"], "1, 2, 3, 4"),
        (["--dataset", "cifar10dvs", "--attention-at", "5"], "0, 1, 2, 3, 4"),
        (["--dataset", "cifar10dvs", "--arch", "resnet19", "--attention-at", "4"], "0, 1, 2, 3"),
    ],
)
def test_attention_slots_the_network_lacks_are_refused_before_any_work(argv, slots, tmp_path, capsys):
    err = fails_with([*argv, "--data-dir", tmp_path / "absent", "--out-dir", tmp_path / "run"], capsys)
    assert f"has attention slots {slots}" in err and not (tmp_path / "run").exists()


def test_vgg_refuses_frames_it_cannot_pool():
    cfg = parse_config(CifarConfig, ["--dataset", "ncaltech101", "--pool", "0"])
    with pytest.raises(UserError, match="--pool 48"):
        model_arguments(cfg, Data(None, None, 101, 2, (180, 240), images=False))


def test_unknown_dataset_exits_non_zero_from_the_shell():
    command = [sys.executable, "CIFAR/main.py", "--dataset", "mnist"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "cifar10dvs" in result.stderr


def test_step_benchmark_runs_every_variant(capsys):
    bench = load_script("bench/bench_cifar_step.py")
    tiny = ["--width", "0.0625", "--batch-size", "1", "--rounds", "1", "--warmup", "0", "--device", "cpu"]
    results = bench.main(tiny)
    assert set(results) == set(attention_kinds()) and all(r["images_per_s"] > 0 for r in results.values())
    assert results["none"]["saved_mib"] < results["pfa"]["saved_mib"]  # PFA keeps its inputs' statistics for backward
    assert capsys.readouterr().out.count("\n| ") == 1 + len(attention_kinds())  # header + one row a kind
