"""Run configuration: one dataclass per entry point, filled in one order, each layer overriding the one before:

    dataclass defaults < the experiment's recipe (RECIPES/<name>.yaml) < --config FILE.yaml < command-line flags

Each field becomes a flag (`batch_size` -> `--batch-size`) whose help text is the field's `help` metadata; `choices`
metadata restricts the values. A subclass adds its own fields; it may name a folder of recipes (`RECIPES`) and say
which one applies by overriding `recipe_name` (CIFAR: `--dataset cifar10dvs` reads `CIFAR/configs/cifar10dvs.yaml`;
FMNIST: `--quick` reads `FMNIST/configs/quick.yaml`). Example::

    @dataclass
    class MyConfig(TrainConfig):
        width: int = arg(64, "channels of the first convolution")

    cfg = parse_config(MyConfig, argv)      # raises UserError with one line on any bad input
"""

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import yaml

from pfa.errors import UserError
from pfa.losses import LOSSES


def arg(default: Any, help: str, choices: tuple | None = None, default_factory=None):
    """A config field with its help text (and allowed values)."""
    metadata = {"help": help, "choices": choices}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TrainConfig:
    """Fields every entry point shares (DESIGN.md's common flags)."""

    config: str | None = arg(None, "YAML file of field: value pairs, read first; flags given here override it")
    data_dir: str | None = arg(None, "dataset root directory")
    out_dir: str | None = arg(None, "run directory: config, logs, checkpoints, metrics (default runs/<name>/<time>)")
    epochs: int = arg(200, "number of training epochs")
    batch_size: int = arg(128, "batch size per process")
    device: str = arg(None, "torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)",
                      default_factory=default_device)
    seed: int = arg(2022, "random seed; the same seed gives the same run")
    resume: str | None = arg(None, "checkpoint to continue from (or to evaluate with --eval-only)")
    eval_only: bool = arg(False, "only evaluate the --resume checkpoint on the test set and write metrics.json")
    train_samples: int | None = arg(None, "use a fixed subset of this many training samples (quick runs)")
    test_samples: int | None = arg(None, "use a fixed subset of this many test samples (quick runs)")
    optimizer: str = arg("adam", "optimiser", choices=("adam", "adamw", "sgd"))
    lr: float = arg(1e-3, "learning rate")
    momentum: float = arg(0.9, "SGD momentum")
    weight_decay: float = arg(0.0, "weight decay")
    scheduler: str = arg("cosine", "learning-rate schedule, stepped once per epoch", choices=("cosine", "step", "none"))
    t_max: int = arg(64, "cosine schedule: epochs of one half-period (T_max)")
    step_size: int = arg(32, "step schedule: epochs between decays")
    gamma: float = arg(0.1, "step schedule: decay factor")
    loss: str = arg("mse", "mse: firing rate vs one-hot; ce: cross-entropy of the rate; tet: per-step CE (TET)",
                    choices=LOSSES)
    tet_lambda: float = arg(0.0, "TET: weight of the MSE regulariser pulling every step's output towards 1")
    amp: str = arg("none", "mixed precision on CUDA (ignored on CPU)", choices=("none", "bf16", "fp16"))
    workers: int = arg(2, "data-loading worker processes")

    RECIPES: ClassVar[Path | None] = None

    @classmethod
    def recipe_name(cls, values: dict[str, Any]) -> str | None:
        """The recipe for these --config and flag values (a file stem in RECIPES), or None for the defaults alone."""
        return None

    def validate(self) -> None:
        """Raise UserError for values no run can use; subclasses extend it."""
        for name in ("epochs", "batch_size"):
            _require(getattr(self, name) > 0, name, getattr(self, name), "a positive integer")
        for name in ("train_samples", "test_samples"):
            value = getattr(self, name)
            _require(value is None or value > 0, name, value, "a positive integer")
        _require(self.lr > 0, "lr", self.lr, "a positive number")
        _require(self.workers >= 0, "workers", self.workers, "0 or more")
        _require(self.t_max > 0 and self.step_size > 0, "t_max/step_size", (self.t_max, self.step_size), "positive")
        _require(0 <= self.tet_lambda <= 1, "tet_lambda", self.tet_lambda, "a number in [0, 1]")
        if self.eval_only and not self.resume:
            raise UserError("--eval-only needs the checkpoint to evaluate: add --resume PATH")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise UserError(f"--device expects cpu, cuda or cuda:N, got {self.device!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {self.device} asked for CUDA but this torch sees no GPU; use --device cpu")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


C = TypeVar("C", bound=TrainConfig)


def _require(ok: bool, name: str, value, expected: str) -> None:
    if not ok:
        raise UserError(f"--{name.replace('_', '-')} must be {expected}, got {value}")


def _base_type(tp) -> type:
    """int | None -> int; bool -> bool."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return next(t for t in typing.get_args(tp) if t is not type(None))
    return tp


def _convert(name: str, tp: type, value):
    """A YAML value checked against the field's type (YAML already parses numbers and booleans)."""
    if value is None:
        return None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif tp is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise UserError(f"config key {name!r} expects a {tp.__name__}, got {value!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage and exit; we want one line through UserError
        raise UserError(f"{message} (see --help)")


def build_parser(cls: type[TrainConfig], prog: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=(cls.__doc__ or "").strip().splitlines()[0])
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        text = f.metadata.get("help", "") + ("" if default is None else f" [default: {default}]")
        text = text.replace("%", "%%")
        kwargs = {"dest": f.name, "help": text, "default": argparse.SUPPRESS}
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, type=tp, choices=choices, metavar=None if choices else f.name.upper(), **kwargs)
    return parser


def load_yaml(path: str | Path, label: str = "--config") -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UserError(f"cannot read {label} {path}: {e.strerror}; give an existing YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{label} {path} is not valid YAML{where}; expected lines of 'key: value'") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{label} {path} must be a mapping of 'key: value' lines, got a {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _yaml_values(cls: type[TrainConfig], path: str | Path, label: str) -> dict[str, Any]:
    """A YAML file's values, each checked against its field's type and choices."""
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    from_yaml = load_yaml(path, label)
    unknown = sorted(set(from_yaml) - set(names) - {"config"})
    if unknown:
        raise UserError(f"{label} {path}: unknown key(s) {', '.join(unknown)}; "
                        f"valid keys are the flag names, e.g. {', '.join(list(names)[1:6])}")
    values = {}
    for name, value in from_yaml.items():
        if name == "config":
            continue
        value = _convert(name, _base_type(hints[name]), value)
        choices = names[name].metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"config key {name!r} must be one of {', '.join(choices)}, got {value!r}")
        values[name] = value
    return values


def recipe_values(cls: type[TrainConfig], name: str) -> dict[str, Any]:
    """The values of recipe `name`, the file RECIPES/<name>.yaml."""
    path = cls.RECIPES / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"recipe {path} is missing; run from a checkout of this repository, or give every value "
                        "with --config FILE.yaml")
    return _yaml_values(cls, path, "recipe")


def parse_config(cls: type[C], argv: list[str] | None = None, prog: str | None = None) -> C:
    """Defaults < recipe < --config YAML < flags; validated; UserError on anything wrong."""
    argv = sys.argv[1:] if argv is None else argv
    flags = vars(build_parser(cls, prog).parse_args(argv))
    values = _yaml_values(cls, flags["config"], "--config") if flags.get("config") else {}
    values.update(flags)
    recipe = cls.recipe_name(values) if issubclass(cls, TrainConfig) else None
    merged = recipe_values(cls, recipe) if recipe else {}
    merged.update(values)
    cfg = cls(**merged)
    cfg.validate()
    return cfg


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
