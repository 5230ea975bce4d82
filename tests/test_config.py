import dataclasses
from dataclasses import dataclass

import pytest
import yaml

from pfa.config import TrainConfig, arg, build_parser, parse_config, save_config
from pfa.errors import UserError


@dataclass
class DemoConfig(TrainConfig):
    """Demo entry point."""

    fast: bool = arg(False, "a profile switch")
    width: int = arg(64, "channels")

    PROFILES = {"fast": {"width": 8, "epochs": 3}}


def write(path, text):
    path.write_text(text)
    return str(path)


def test_precedence_defaults_profile_yaml_flags(tmp_path):
    assert parse_config(DemoConfig, []).width == 64
    assert parse_config(DemoConfig, ["--fast"]).width == 8
    file = write(tmp_path / "c.yaml", "width: 16\nbatch-size: 7\nlr: 1\n")
    from_file = parse_config(DemoConfig, ["--fast", "--config", file])
    assert (from_file.width, from_file.epochs, from_file.batch_size, from_file.lr) == (16, 3, 7, 1.0)
    assert isinstance(from_file.lr, float)
    flags = parse_config(DemoConfig, ["--config", file, "--width", "32", "--fast"])
    assert (flags.width, flags.epochs) == (32, 3)


def test_profile_switched_on_by_yaml(tmp_path):
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
    assert "a profile switch" in text and "{adam,adamw,sgd}" in text


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
