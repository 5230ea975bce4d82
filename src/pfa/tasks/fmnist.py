"""Fashion-MNIST with the reference spiking CNN: the config of `FMNIST/run.py`, its data and model, and `train`.

The defaults are the reference's full recipe; `--quick` adds the CPU recipe `pfa/recipes/fmnist/quick.yaml`.
"""

from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from pfa.attention.projected_full import FUSIONS, GATES, WEIGHTINGS
from pfa.attention.registry import attention_kinds
from pfa.data.fashion_mnist import CLASSES, load_fashion_mnist
from pfa.data.subsets import train_test_subsets
from pfa.engine.config import arg
from pfa.engine.loop import fit
from pfa.engine.run import Run
from pfa.engine.task import ClassificationTask
from pfa.errors import UserError
from pfa.models.fmnist import PFA_OPTIONS, FashionMNISTNet
from pfa.tasks import TaskSpec, recipe_folder
from pfa.tasks.outputs import write_outputs
from pfa.tasks.validation import ClassificationConfig, hold_out

TASK_NAME = "fmnist"
RECIPES = recipe_folder(TASK_NAME)


@dataclass
class FMNISTConfig(ClassificationConfig):
    """Train the reference spiking CNN with PFA on Fashion-MNIST (defaults: the reference's full recipe)."""

    quick: bool = arg(False, "the CPU recipe quick.yaml (width 32, 3 epochs, ...); flags still override it")
    time_steps: int = arg(4, "simulation time steps T")
    rank: int = arg(4, "PFA's rank R (connecting factor)")
    width: int = arg(128, "channels of both convolutions (the reference: 128)")
    attention: str = arg("pfa", "attention after the second convolution", choices=attention_kinds())
    fusion: str = arg(PFA_OPTIONS["fusion"], "PFA's output: gate(A * X) or gate(A + X)", choices=FUSIONS)
    weights: str = arg(PFA_OPTIONS["weights"], "weights of PFA's R terms: a softmax (summing to 1) or R times it "
                       "(1 each at initialisation)", choices=WEIGHTINGS)
    gate: str = arg(PFA_OPTIONS["gate"], "PFA's output gate: the ReLU; the ReLU with gradient 1 at 0; none",
                    choices=GATES)
    dropout: float = arg(0.7, "dropout probability before each fully connected layer")
    workers: int = arg(0, "data-loading worker processes (the data sit in memory)")

    TASK = TASK_NAME
    RECIPES = RECIPES
    FLAG_RECIPES = ("quick",)

    @classmethod
    def recipe_name(cls, values: dict[str, Any]) -> str | None:
        return "quick" if values.get("quick") else None

    def validate(self) -> None:
        super().validate()
        for name in ("time_steps", "rank", "width"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")


def pfa_options(cfg: FMNISTConfig) -> dict[str, str]:
    """PFA's fusion, weights and gate as configured."""
    return {name: getattr(cfg, name) for name in PFA_OPTIONS}


def describe(cfg: FMNISTConfig) -> str:
    """The architecture, for checkpoints: a checkpoint from another one is refused. PFA's options appear where they
    are not the reference's, so the strings of checkpoints written before they were options still match."""
    changed = {k: v for k, v in pfa_options(cfg).items() if v != PFA_OPTIONS[k]} if cfg.attention == "pfa" else {}
    options = "".join(f", {k}={v}" for k, v in changed.items())
    return (f"FashionMNISTNet(T={cfg.time_steps}, width={cfg.width}, rank={cfg.rank}, attention={cfg.attention}"
            f"{options})")


def build_model(cfg: FMNISTConfig) -> FashionMNISTNet:
    return FashionMNISTNet(cfg.time_steps, cfg.width, cfg.rank, cfg.attention, cfg.dropout, **pfa_options(cfg))


def rebuild(cfg: FMNISTConfig) -> tuple[FashionMNISTNet, Dataset]:
    """The network of a saved config and the test set, for tools that read checkpoints."""
    return build_model(cfg), load_fashion_mnist(cfg.data_dir, train=False)


def train(cfg: FMNISTConfig) -> dict:
    """Train (or with --eval-only evaluate) as configured; returns the last metrics record."""
    train_set, test_set = train_test_subsets(load_fashion_mnist(cfg.data_dir, train=True),
                                             load_fashion_mnist(cfg.data_dir, train=False), cfg)
    train_set, val_set, files = hold_out(cfg, train_set, test_set)
    with Run(cfg, name=TASK_NAME) as run:
        run.check_network(lambda: build_model(cfg))
        model = build_model(cfg).to(run.device)
        record = fit(run, model, ClassificationTask(cfg.loss, cfg.tet_lambda), train_set, test_set, describe(cfg),
                     files=files, val_set=val_set)
        write_outputs(run, model, test_set, CLASSES)
    return record


TASK = TaskSpec(TASK_NAME, FMNISTConfig, train, rebuild, script="FMNIST/run.py")
