"""Run outputs: every entry point offers --report and --save-attention alike, refuses bad values with one line before
any work, and lets a resumed run change them."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from pfa.engine.checkpoint import save_checkpoint
from pfa.engine.config import build_parser, parse_config
from pfa.errors import UserError
from pfa.tasks.cifar import CifarConfig
from pfa.tasks.fmnist import FMNISTConfig
from pfa.tasks.generation import GenerationConfig
from pfa.tasks.outputs import dataset_classes

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = {  # script, its config class, the arguments any run of it needs
    "FMNIST/run.py": (FMNISTConfig, ["--device", "cpu"]),
    "CIFAR/main.py": (CifarConfig, ["--dataset", "cifar10dvs", "--device", "cpu"]),
    "Generation/main_fsvae.py": (GenerationConfig, ["--device", "cpu"]),
}


def entry_main(script: str):
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def flag_help(cls) -> dict[str, str]:
    actions = build_parser(cls)._option_string_actions
    return {flag: actions[flag].help for flag in ("--report", "--save-attention")}


def test_the_flags_read_the_same_in_every_entry():
    helps = [flag_help(cls) for cls, _ in ENTRIES.values()]
    assert helps[0] == helps[1] == helps[2]
    assert "report.json and report.png" in helps[0]["--report"] and "attention/" in helps[0]["--save-attention"]


@pytest.mark.parametrize("script", ENTRIES)
@pytest.mark.parametrize(("argv", "expected"), [
    (["--save-attention", "-1"], "--save-attention must be 0 or more test inputs, got -1"),
    (["--attention", "none", "--save-attention", "2"],
     "--save-attention draws PFA's maps, but --attention is none; use --attention pfa, or drop --save-attention"),
])
def test_bad_values_are_one_line_before_any_work(script, argv, expected, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        entry_main(script)([*ENTRIES[script][1], *argv, "--out-dir", str(out)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {expected}\n" and not out.exists()


def test_a_resumed_run_may_change_them_and_its_own_free_fields(tmp_path):
    cfg = parse_config(GenerationConfig, ["--device", "cpu"])
    path = tmp_path / "checkpoint_latest.pth"
    save_checkpoint(path, {"arch": "a", "signature": "s", "epoch": 1, "model": {}, "config": cfg.to_dict()})
    resumed = parse_config(GenerationConfig, ["--resume", str(path), "--report", "--save-attention", "3",
                                              "--images", "8"])
    assert (resumed.report, resumed.save_attention, resumed.images) == (True, 3, 8)
    with pytest.raises(UserError, match="--rank 8 contradicts the run being resumed"):
        parse_config(GenerationConfig, ["--resume", str(path), "--rank", "8"])


def test_class_names_come_from_the_dataset_or_what_it_wraps():
    data = TensorDataset(torch.zeros(3, 1), torch.arange(3))
    assert dataset_classes(Subset(data, [0])) is None
    data.classes = ["cat", "dog", "emu"]
    assert dataset_classes(Subset(Subset(data, [0, 1]), [1])) == ("cat", "dog", "emu")
