"""The task registry: a task's name -> what training, rank advice, reports and sweeps need of it.

    from pfa.tasks import get_task, task_names
    task = get_task("fmnist")
    cfg = parse_config(task.config, ["--quick"])
    task.train(cfg)

Each module here (`fmnist`, `cifar`, `generation`) defines `TASK`, a `TaskSpec`. Checkpoints and `config.yaml`
record the name, so every tool that rebuilds a model from a checkpoint goes through `get_task`.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn
from torch.utils.data import Dataset

from pfa.errors import UserError

MODULES = {"fmnist": "pfa.tasks.fmnist", "cifar": "pfa.tasks.cifar", "generation": "pfa.tasks.generation"}


@dataclass(frozen=True)
class TaskSpec:
    """One task: its config class, its training function and how to rebuild its network from a saved config."""

    name: str
    config: type  # a TrainConfig subclass: the task's flags and recipes
    train: Callable[[Any], dict]  # cfg -> the last metrics record
    rebuild: Callable[[Any], tuple[nn.Module, Dataset]]  # a saved cfg -> (network, test set), for rank and reports
    script: str  # the alias users know, e.g. FMNIST/run.py


def recipe_folder(task: str) -> Path:
    """The folder of a task's YAML recipes, shipped inside the package (pfa/recipes/TASK)."""
    return Path(__file__).resolve().parents[1] / "recipes" / task


def task_names() -> tuple[str, ...]:
    return tuple(MODULES)


def get_task(name: str) -> TaskSpec:
    """The registered task `name`; UserError naming the known ones otherwise."""
    if name not in MODULES:
        raise UserError(f"unknown task {name!r}; the tasks are {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name]).TASK
