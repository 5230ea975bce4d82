"""What differs between entry points, as `fit` sees it: a `Task` turns a batch into a loss and metrics
(`StepResult`) and says which metric chooses the best checkpoint; `ClassificationTask` serves every classifier."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from pfa.engine.losses import classification_loss, firing_rate

if TYPE_CHECKING:
    from pfa.engine.run import Run


@dataclass
class StepResult:
    """One batch's outcome: the loss to back-propagate, batch-mean metrics to log, and the batch size weighting them."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float]
    count: int


class Task:
    """What differs between entry points. Subclass and override; every hook but `train_step` has a default.

    `monitor` names the record entry that decides `checkpoint_best.pth` (`maximize` says which way is better). With a
    validation set, `fit` monitors its counterpart instead ("val_acc" for "test_acc") and records the monitored test
    value of the best validation epoch ("test_acc_at_best_val").
    """

    monitor = "test_acc"
    maximize = True

    def train_step(self, model: nn.Module, batch: Any) -> StepResult:
        raise NotImplementedError

    def eval_step(self, model: nn.Module, batch: Any) -> StepResult:
        """Runs under torch.no_grad() with the model in eval mode; defaults to the training computation."""
        return self.train_step(model, batch)

    def after_optimizer_step(self, model: nn.Module) -> None:
        """After every optimiser step, e.g. clipping weights (`model` is unwrapped from DDP)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before the epoch's first batch, e.g. to update a schedule that depends on the epoch."""

    def on_epoch_end(self, epoch: int, model: nn.Module, run: "Run") -> dict[str, Any] | None:
        """After evaluation, on every process (write files only `if run.is_main`); may return extra record entries."""
        return None

    def record(self, epochs_done: int, train: dict[str, float], test: dict[str, float]) -> dict[str, Any]:
        """The epoch's metrics.json entry; by default {"epoch", "train_<metric>"..., "test_<metric>"...}."""
        return {"epoch": epochs_done, **{f"train_{k}": v for k, v in train.items()},
                **{f"test_{k}": v for k, v in test.items()}}


class ClassificationTask(Task):
    """Batches of (input, label); the model returns per-step outputs [T, N, classes]; metrics loss and acc."""

    def __init__(self, loss: str = "mse", tet_lambda: float = 0.0):
        self.loss_fn = classification_loss(loss, tet_lambda)

    def train_step(self, model: nn.Module, batch: Any) -> StepResult:
        inputs, labels = batch
        out = model(inputs)
        loss = self.loss_fn(out, labels)
        accuracy = (firing_rate(out).argmax(1) == labels).double().mean()
        return StepResult(loss, {"loss": loss.detach(), "acc": accuracy}, labels.shape[0])
