import dataclasses
from dataclasses import dataclass

import pytest
import yaml

from pfa.engine.checkpoint import save_checkpoint
from pfa.engine.config import TrainConfig, arg, build_parser, parse_config, save_config
from pfa.errors import UserError


@dataclass
class DemoConfig(TrainConfig):
    """Demo entry point."""

    fast: bool = arg(False, "a recipe switch")
    width: int = arg(64, "channels")

    @classmethod
    def recipe_name(cls, values):
        return "fast" if values.get("fast") else None


@pytest.fixture(autouse=True)
def recipes(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "fast.yaml").write_text("width: 8\nepochs: 3\n")
    monkeypatch.setattr(DemoConfig, "RECIPES", folder)


def write(path, text):
    path.write_text(text)
    return str(path)


def test_precedence_defaults_recipe_yaml_flags(tmp_path):
    assert parse_config(DemoConfig, []).width == 64
    assert parse_config(DemoConfig, ["--fast"]).width == 8
    file = write(tmp_path / "c.yaml", "width: 16\nbatch-size: 7\nlr: 1\n")
    from_file = parse_config(DemoConfig, ["--fast", "--config", file])
    assert (from_file.width, from_file.epochs, from_file.batch_size, from_file.lr) == (16, 3, 7, 1.0)
    assert isinstance(from_file.lr, float)
    flags = parse_config(DemoConfig, ["--config", file, "--width", "32", "--fast"])
    assert (flags.width, flags.epochs) == (32, 3)


def test_recipe_switched_on_by_yaml(tmp_path):
    assert parse_config(DemoConfig, ["--config", write(tmp_path / "c.yaml", "fast: true\n")]).width == 8


def test_saved_config_reloads_to_the_same_config(tmp_path):
    cfg = parse_config(DemoConfig, ["--width", "5", "--optimizer", "sgd", "--train-samples", "100", "--fast"])
    save_config(cfg, tmp_path / "config.yaml", {"command": "demo --width 5", "host": "h"})
    reloaded = parse_config(DemoConfig, ["--config", str(tmp_path / "config.yaml")])
    assert dataclasses.replace(reloaded, config=None) == cfg


def test_help_lists_every_field_with_its_help():
    text = build_parser(DemoConfig).format_help()
    for flag in ("--data-dir", "--out-dir", "--batch-size", "--train-samples", "--eval-only", "--no-eval-only",
                 "--width", "--config", "--resume"):
        assert flag in text
    assert "a recipe switch" in text and "{adam,adamw,sgd}" in text


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("widht: 3\n", "unknown key(s) widht"),
        ("width: [3\n", "not valid YAML"),
        ("- width\n", "must be a mapping"),
        ("width: three\n", "'width' expects a int"),
        ("eval_only: 1\n", "'eval_only' expects a bool"),
        ("optimizer: rmsprop\n", "must be one of adam, adamw, sgd"),
    ],
)
def test_bad_yaml_is_one_clear_line(tmp_path, yaml_text, expected):
    with pytest.raises(UserError) as e:
        parse_config(DemoConfig, ["--config", write(tmp_path / "c.yaml", yaml_text)])
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(UserError, match="cannot read --config"):
        parse_config(DemoConfig, ["--config", str(tmp_path / "absent.yaml")])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--epochs", "x"], "invalid int value: 'x'"),
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--loss", "hinge"], "invalid choice: 'hinge'"),
        (["--train-samples", "-5"], "--train-samples must be a positive integer"),
        (["--eval-only"], "--eval-only needs the checkpoint"),
        (["--device", "tpu:x"], "--device expects cpu, cuda or cuda:N"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_are_one_clear_line(argv, expected):
    with pytest.raises(UserError) as e:
        parse_config(DemoConfig, argv)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_yaml_numbers_and_nulls(tmp_path):
    cfg = parse_config(DemoConfig, ["--config", write(tmp_path / "c.yaml", yaml.safe_dump({"lr": 3, "out_dir": None}))])
    assert cfg.lr == 3.0 and cfg.out_dir is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--device", "meta"], "--device expects cpu, cuda or cuda:N, got 'meta'"),
        (["--device", "mps"], "--device expects cpu, cuda or cuda:N, got 'mps'"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**32), got -1"),
        (["--weight-decay", "-0.1"], "--weight-decay must be 0 or more, got -0.1"),
        (["--momentum", "-0.5"], "--momentum must be in [0, 1), got -0.5"),
        (["--gamma", "-1"], "--gamma must be a positive factor, got -1.0"),
        (["--gamma", "inf"], "--gamma must be a finite number, got inf"),
        (["--lr", "inf"], "--lr must be a finite number, got inf"),
        (["--lr", "nan"], "--lr must be a finite number, got nan"),
        (["--t-max", "0"], "--t-max must be a positive integer (or null: --epochs), got 0"),
        (["--device", "cpu", "--amp", "fp16"], "--amp fp16 is for CUDA devices; on CPU use --amp none"),
        (["--device", "cpu", "--amp", "bf16"], "--amp bf16 is for CUDA devices"),
    ],
)
def test_bad_values_are_one_clear_line(argv, expected):
    with pytest.raises(UserError) as e:
        parse_config(DemoConfig, argv)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_yaml_null_for_a_required_value_and_non_utf8_bytes(tmp_path):
    with pytest.raises(UserError, match="config key 'epochs' expects a int, got null"):
        parse_config(DemoConfig, ["--config", write(tmp_path / "c.yaml", "epochs:\n")])
    (tmp_path / "b.yaml").write_bytes(b"epochs: 3\nwidth: \xff\xfe\n")
    with pytest.raises(UserError, match=r"b.yaml is not UTF-8 text \(byte 17\)"):
        parse_config(DemoConfig, ["--config", str(tmp_path / "b.yaml")])


def test_a_recipes_mixed_precision_is_dropped_on_cpu(tmp_path):
    cfg = parse_config(DemoConfig, ["--config", write(tmp_path / "c.yaml", "amp: fp16\n"), "--device", "cpu"])
    assert cfg.amp == "none"


def test_t_max_null_follows_epochs(tmp_path):
    cfg = parse_config(DemoConfig, ["--config", write(tmp_path / "c.yaml", "t_max: null\n"), "--epochs", "5"])
    assert cfg.t_max is None and cfg.cosine_t_max == 5
    assert parse_config(DemoConfig, ["--epochs", "5"]).cosine_t_max == 64


@dataclass
class NoLossConfig(TrainConfig):
    """An entry point whose model brings its own loss."""

    UNUSED = ("loss", "tet_lambda")


def test_fields_an_entry_does_not_use_are_not_accepted(tmp_path):
    with pytest.raises(UserError, match="unrecognized arguments: --loss ce"):
        parse_config(NoLossConfig, ["--loss", "ce"])
    with pytest.raises(UserError, match="unknown key"):
        parse_config(NoLossConfig, ["--config", write(tmp_path / "c.yaml", "tet_lambda: 0.5\n")])
    assert "loss" not in parse_config(NoLossConfig, []).to_dict()
    assert "--tet-lambda" not in build_parser(NoLossConfig).format_help()


@pytest.fixture
def checkpoint_of(tmp_path):
    """A checkpoint whose saved config is DemoConfig's --fast profile with width 8, adam, lr 1e-3."""
    cfg = parse_config(DemoConfig, ["--fast", "--out-dir", str(tmp_path / "run")])
    path = tmp_path / "run" / "checkpoint_latest.pth"
    path.parent.mkdir()
    save_checkpoint(path, {"arch": "a", "signature": "s", "epoch": 2, "model": {}, "config": cfg.to_dict()})
    return str(path)


def test_resume_takes_every_setting_from_the_checkpoint(checkpoint_of):
    cfg = parse_config(DemoConfig, ["--resume", checkpoint_of, "--epochs", "5", "--lr", "1e-4", "--width", "8"])
    assert (cfg.width, cfg.fast, cfg.epochs, cfg.lr, cfg.out_dir) == (8, True, 5, 1e-4, None)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--width", "16"], r"--width 16 contradicts the run being resumed \(width: 8 in .*checkpoint_latest.pth\); a "
                        "resumed run keeps its settings: drop the flag, or start a new run"),
    (["--optimizer", "sgd"], r"--optimizer sgd contradicts the run being resumed \(optimizer: adam in"),
    (["--seed", "1"], "--seed 1 contradicts"),
])
def test_resume_refuses_contradicting_flags(checkpoint_of, argv, expected):
    with pytest.raises(UserError, match=expected):
        parse_config(DemoConfig, ["--resume", checkpoint_of, *argv])


def test_a_config_without_mixed_precision_gets_no_amp_attribute():
    from pfa.rank import RankConfig

    cfg = parse_config(RankConfig, ["--checkpoint", "run/checkpoint_best.pth", "--device", "cpu"])
    assert not hasattr(cfg, "amp") and cfg.checkpoint == "run/checkpoint_best.pth"


def test_help_shows_what_each_recipe_sets_beside_the_default():
    from pfa.tasks.cifar import CifarConfig
    from pfa.tasks.fmnist import FMNISTConfig

    def line(cls, flag):
        text = " ".join(build_parser(cls).format_help().split())
        start = text.index(f"{flag} {flag[2:].upper().replace('-', '_')} ")
        return text[start:text.index(" --", start + 1)]

    assert "[default: 128; recipe quick: 32]" in line(FMNISTConfig, "--width")
    batch = line(CifarConfig, "--batch-size")
    # every dataset has a recipe that sets it: the class default, which no run uses, is left out
    assert "[recipe cifar10dvs: 32, ncaltech101: 32, dvsgesture: 32, fmnist-events: 64, cifar10: 128, cifar100: " \
           "128]" in batch and "default: 128" not in batch
    assert "default:" not in line(CifarConfig, "--epochs") and "cifar10dvs: 200" in line(CifarConfig, "--epochs")


def test_config_reads_a_shipped_recipe_by_name_and_help_lists_them(tmp_path):
    from pfa.tasks.cifar import CifarConfig

    cfg = parse_config(CifarConfig, ["--config", "dvsgesture-reference-main", "--device", "cpu"])
    assert (cfg.dataset, cfg.T, cfg.rank) == ("dvsgesture", 12, "8,8,8,8,64")
    assert "recipesfor--configNAME:cifar10,cifar100,cifar10dvs,cifar10dvs-reference," in "".join(
        build_parser(CifarConfig).format_help().split())
