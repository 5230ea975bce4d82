"""Run configuration: one dataclass per entry point, filled in one order, each layer overriding the one before:

    dataclass defaults < the experiment's recipe (RECIPES/<name>.yaml) < --config FILE.yaml < command-line flags

Each field becomes a flag (`batch_size` -> `--batch-size`) whose help text is the field's `help` metadata; `choices`
metadata restricts the values. A subclass adds its own fields; it may name a folder of recipes (`RECIPES`) and say
which one applies by overriding `recipe_name` (CIFAR: `--dataset cifar10dvs` reads `pfa/recipes/cifar/cifar10dvs.yaml`;
FMNIST: `--quick` reads `pfa/recipes/fmnist/quick.yaml`). Example::

    @dataclass
    class MyConfig(TrainConfig):
        width: int = arg(64, "channels of the first convolution")

    cfg = parse_config(MyConfig, argv)      # raises UserError with one line on any bad input
"""

import argparse
import dataclasses
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import yaml

from pfa.engine.losses import LOSSES
from pfa.errors import UserError


def arg(default: Any, help: str, choices: tuple | None = None, default_factory=None):
    """A config field with its help text (and allowed values)."""
    metadata = {"help": help, "choices": choices}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ConfigRules:
    """What `parse_config` asks of a config dataclass beyond its fields; the defaults suit a plain command."""

    # The task's name in pfa.tasks, recorded in checkpoints and config.yaml (None: not a training task).
    TASK: ClassVar[str | None] = None
    # A folder of recipes (<name>.yaml) and, through `recipe_name`, the one that applies.
    RECIPES: ClassVar[Path | None] = None
    # Fields an entry point does not use: no flag, refused in YAML, left out of config.yaml.
    UNUSED: ClassVar[tuple[str, ...]] = ()
    # Fields a resumed run may change freely (beyond RESUME_FREE below and the SCHEDULE settings); each class of the
    # hierarchy names its own, and they add up.
    RESUME_FREE: ClassVar[tuple[str, ...]] = ()
    # The recipes that `recipe_name` can pick from flags alone; --help shows where each differs from the default.
    FLAG_RECIPES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def recipe_name(cls, values: dict[str, Any]) -> str | None:
        """The recipe for these --config and flag values (a file stem in RECIPES), or None for the defaults alone."""
        return None

    @classmethod
    def recipe_optional(cls) -> bool:
        """Whether a run may use no recipe at all (then --help shows the class defaults beside the recipes')."""
        return True


@dataclass
class TrainConfig(ConfigRules):
    """Fields every entry point shares: the common flags of every task."""

    config: str | None = arg(None, "YAML file of field: value pairs, or the name of a recipe shipped with the task "
                             "(see the list below); read first, flags given here override it")
    data_dir: str | None = arg(None, "dataset root directory")
    out_dir: str | None = arg(None, "run directory: config, logs, checkpoints, metrics (default runs/<name>/<time>)")
    epochs: int = arg(200, "number of training epochs")
    batch_size: int = arg(128, "batch size per process")
    device: str = arg(None, "torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)",
                      default_factory=default_device)
    seed: int = arg(2022, "random seed; the same seed gives the same run")
    resume: str | None = arg(None, "checkpoint to continue from: the run keeps the checkpoint's settings (schedule "
                             "flags may change) and continues in its folder; with --eval-only, the one to evaluate")
    eval_only: bool = arg(False, "only evaluate the --resume checkpoint on the test set and write metrics.json")
    train_samples: int | None = arg(None, "use a fixed subset of this many training samples (quick runs)")
    test_samples: int | None = arg(None, "use a fixed subset of this many test samples (quick runs)")
    optimizer: str = arg("adam", "optimiser", choices=("adam", "adamw", "sgd"))
    lr: float = arg(1e-3, "learning rate")
    momentum: float = arg(0.9, "SGD momentum")
    weight_decay: float = arg(0.0, "weight decay")
    scheduler: str = arg("cosine", "learning-rate schedule, stepped once per epoch", choices=("cosine", "step", "none"))
    t_max: int | None = arg(64, "cosine schedule: epochs of one half-period (T_max); null: follows --epochs")
    step_size: int = arg(32, "step schedule: epochs between decays")
    gamma: float = arg(0.1, "step schedule: decay factor")
    loss: str = arg("mse", "mse: firing rate vs one-hot; ce: cross-entropy of the rate; tet: per-step CE (TET)",
                    choices=LOSSES)
    tet_lambda: float = arg(0.0, "TET: weight of the MSE regulariser pulling every step's output towards 1")
    amp: str = arg("none", "mixed precision (CUDA only; refused on CPU)", choices=("none", "bf16", "fp16"))
    workers: int = arg(2, "data-loading worker processes")

    def validate(self) -> None:
        """Raise UserError for values no run can use; subclasses extend it."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in self.UNUSED and isinstance(value, float):
                _require(math.isfinite(value), f.name, value, "a finite number")
        for name in ("epochs", "batch_size"):
            _require(getattr(self, name) > 0, name, getattr(self, name), "a positive integer")
        _require(self.batch_size <= MAX_BATCH, "batch_size", self.batch_size, f"at most {MAX_BATCH} (a batch larger "
                 "than the data set is all of it)")
        for name in ("train_samples", "test_samples"):
            value = getattr(self, name)
            _require(value is None or value > 0, name, value, "a positive integer")
        _require(0 <= self.seed < 2**32, "seed", self.seed, "an integer in [0, 2**32)")
        _require(self.lr > 0, "lr", self.lr, "a positive number")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "0 or more")
        _require(self.gamma > 0, "gamma", self.gamma, "a positive factor")
        _require(0 <= self.workers <= MAX_WORKERS, "workers", self.workers, f"0 to {MAX_WORKERS} (4 per CPU here; each "
                 "worker is a process holding batches in memory)")
        _require(self.t_max is None or self.t_max > 0, "t_max", self.t_max, "a positive integer (or null: --epochs)")
        _require(self.step_size > 0, "step_size", self.step_size, "a positive integer")
        _require(0 <= self.tet_lambda <= 1, "tet_lambda", self.tet_lambda, "a number in [0, 1]")
        if self.eval_only and not self.resume:
            raise UserError("--eval-only needs the checkpoint to evaluate: add --resume PATH")
        self._validate_device()

    def _validate_device(self) -> None:
        try:
            device = torch.device(self.device)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
            raise UserError(f"--device expects cpu, cuda or cuda:N, got {self.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {self.device} asked for CUDA but this torch sees no GPU; use --device cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {self.device}: this machine has {torch.cuda.device_count()} GPU(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if device.type == "cpu" and self.amp != "none":
            raise UserError(f"--amp {self.amp} is for CUDA devices; on CPU use --amp none")

    @property
    def cosine_t_max(self) -> int:
        """The cosine schedule's T_max: t_max, or the number of epochs when t_max is null."""
        return self.t_max if self.t_max is not None else self.epochs

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.UNUSED}


C = TypeVar("C", bound=ConfigRules)

MAX_BATCH = 2**31 - 1  # beyond any data set; larger ints overflow the data loaders
MAX_WORKERS = 4 * (os.cpu_count() or 1)  # more loader processes than that only crowd the CPUs and memory

# The resume rule: a resumed run takes every setting from its checkpoint. Flags may change RESUME_FREE fields, and the
# SCHEDULE settings, which take effect from the resumed epoch (recorded in config.yaml); any other differing flag is
# refused. Fields in NOT_INHERITED come from this command line only.
RESUME_FREE = ("config", "data_dir", "out_dir", "epochs", "device", "resume", "eval_only", "workers", "amp")
SCHEDULE = ("lr", "momentum", "weight_decay", "scheduler", "t_max", "step_size", "gamma")
NOT_INHERITED = ("config", "out_dir", "device", "resume", "eval_only")


def _require(ok: bool, name: str, value, expected: str) -> None:
    if not ok:
        raise UserError(f"--{name.replace('_', '-')} must be {expected}, got {value}")


def _base_type(tp) -> type:
    """int | None -> int; bool -> bool."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return next(t for t in typing.get_args(tp) if t is not type(None))
    return tp


def _convert(name: str, tp: type, value, optional: bool):
    """A YAML value checked against the field's type (YAML already parses numbers and booleans)."""
    if value is None:
        if optional:
            return None
        raise UserError(f"config key {name!r} expects a {tp.__name__}, got null (an empty value); give a value or "
                        "remove the line")
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
        raise UserError(f"{message} (see {self.prog} --help)")


def _default_text(default: Any, by_recipe: dict[str, Any], every_recipe_sets_it: bool) -> str:
    """' [default: 128; recipe cifar10dvs: 32, ...]' for --help, or '' when there is nothing to say; the class default
    is left out where every recipe a flag can pick sets its own."""
    parts = [] if default is None or every_recipe_sets_it else [f"default: {default}"]
    if by_recipe:
        parts.append("recipe " + ", ".join(f"{name}: {value}" for name, value in by_recipe.items()))
    return f" [{'; '.join(parts)}]" if parts else ""


def _flag_recipes(cls: type[ConfigRules]) -> dict[str, dict[str, Any]]:
    """The values of each recipe that flags can pick (a missing file is reported when it is picked, not here)."""
    recipes = {}
    for name in cls.FLAG_RECIPES:
        try:
            recipes[name] = recipe_values(cls, name)
        except UserError:
            continue
    return recipes


def _recipe_list(cls: type[ConfigRules]) -> str | None:
    """--help's closing line: the recipes shipped with the task that --config NAME reads."""
    names = sorted(p.stem for p in cls.RECIPES.glob("*.yaml")) if cls.RECIPES is not None else []
    return f"recipes for --config NAME: {', '.join(names)}" if names else None


def _config_file(cls: type[ConfigRules], given: str) -> Path:
    """--config's file: the path given, or else the shipped recipe of that name."""
    if Path(given).exists() or cls.RECIPES is None or not (cls.RECIPES / f"{given}.yaml").is_file():
        return Path(given)
    return cls.RECIPES / f"{given}.yaml"


def build_parser(cls: type[ConfigRules], prog: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=(cls.__doc__ or "").strip().splitlines()[0], epilog=_recipe_list(cls))
    hints = typing.get_type_hints(cls)
    recipes = _flag_recipes(cls)
    for f in dataclasses.fields(cls):
        if f.name in cls.UNUSED:
            continue
        tp = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = None if f.default is dataclasses.MISSING else f.default  # a computed default is told in the help
        every = bool(recipes) and all(f.name in values for values in recipes.values()) and not cls.recipe_optional()
        by_recipe = {name: values[f.name] for name, values in recipes.items()  # not the field that picks the recipe
                     if values.get(f.name, default) != name and (every or values.get(f.name, default) != default)}
        text = (f.metadata.get("help", "") + _default_text(default, by_recipe, every)).replace("%", "%%")
        kwargs = {"dest": f.name, "help": text, "default": argparse.SUPPRESS}
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, type=tp, choices=choices, metavar=None if choices else f.name.upper(), **kwargs)
    return parser


def load_yaml(path: str | Path, label: str = "--config") -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read {label} {path}: {e.strerror}; give an existing YAML file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{label} {path} is not UTF-8 text (byte {e.start}); give a YAML file") from None
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
    return {str(k).replace("-", "_"): v for k, v in data.items() if k != PROVENANCE}


def _optional(tp) -> bool:
    return type(None) in typing.get_args(tp)


def _inherit(cls: type[ConfigRules], given: dict[str, Any], path: str) -> dict[str, Any]:
    """The resume rule applied to the explicitly given values `given` (see RESUME_FREE above)."""
    from pfa.engine.checkpoint import checkpoint_task, load_checkpoint  # torch.load; only when resuming

    state = load_checkpoint(path, needs=("config",))
    task = checkpoint_task(state)
    if cls.TASK is not None and task is not None and task != cls.TASK:
        raise UserError(f"{path} is a checkpoint of the task {task} ({state['arch']}), not of {cls.TASK}; resume it "
                        f"with python -m pfa.train {task} --resume {path}")
    saved = state["config"]
    names = {f.name for f in dataclasses.fields(cls)} - set(cls.UNUSED)
    own = {name for k in cls.__mro__ for name in vars(k).get("RESUME_FREE", ())}
    free = set(RESUME_FREE) | own | (set(SCHEDULE) if not given.get("eval_only") else set())
    for name, value in given.items():
        if name in saved and name not in free and value != saved[name]:
            raise UserError(f"--{name.replace('_', '-')} {value} contradicts the run being resumed ({name}: "
                            f"{saved[name]} in {path}); a resumed run keeps its settings: drop the flag, or start a "
                            "new run")
    inherited = {k: v for k, v in saved.items() if k in names and k not in NOT_INHERITED}
    return {**inherited, **given}


def _yaml_values(cls: type[ConfigRules], path: str | Path, label: str) -> dict[str, Any]:
    """A YAML file's values, each checked against its field's type and choices."""
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    from_yaml = load_yaml(path, label)
    unknown = sorted((set(from_yaml) - set(names) - {"config"}) | (set(from_yaml) & set(cls.UNUSED)))
    if unknown:
        raise UserError(f"{label} {path}: unknown key(s) {', '.join(unknown)}; "
                        f"valid keys are the flag names, e.g. {', '.join(list(names)[1:6])}")
    values = {}
    for name, value in from_yaml.items():
        if name == "config":
            continue
        value = _convert(name, _base_type(hints[name]), value, _optional(hints[name]))
        choices = names[name].metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"config key {name!r} must be one of {', '.join(choices)}, got {value!r}")
        values[name] = value
    return values


def recipe_values(cls: type[ConfigRules], name: str) -> dict[str, Any]:
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
    values = _yaml_values(cls, _config_file(cls, flags["config"]), "--config") if flags.get("config") else {}
    values.update(flags)
    if values.get("resume"):
        values = _inherit(cls, values, values["resume"])
    recipe = cls.recipe_name(values)
    merged = recipe_values(cls, recipe) if recipe else {}
    merged.update(values)
    cfg = cls(**merged)
    has_amp = any(f.name == "amp" for f in dataclasses.fields(cls))
    if has_amp and "amp" not in flags and not str(cfg.device).startswith("cuda"):
        cfg.amp = "none"  # a recipe's mixed precision (YAML, profile, checkpoint) applies on CUDA; a flag is refused
    cfg.validate()
    return cfg


PROVENANCE = "provenance"  # config.yaml's record of how the run was started and resumed; ignored when read back


def save_config(cfg: TrainConfig, path: Path, provenance: dict[str, Any] | None = None) -> None:
    data = cfg.to_dict() | ({PROVENANCE: provenance} if provenance else {})
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def saved_provenance(path: Path) -> dict[str, Any]:
    """The provenance section of an existing config.yaml ({} when absent or unreadable)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data.get(PROVENANCE) or {} if isinstance(data, dict) else {}
