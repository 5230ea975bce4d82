"""Model selection without the test set: `--val-fraction F` holds out a stratified part of the training set.

The classification entries' configs derive from `ClassificationConfig`; their `train` calls `hold_out` on the training
set (after --train-samples) and hands the validation set to `pfa.engine.loop.fit`, which then evaluates it every
epoch (`val_loss`, `val_acc`), keeps `checkpoint_best.pth` on `val_acc` and records `test_acc_at_best_val`.

The held-out samples are drawn once per run, F of each class with --seed (`pfa.data.subsets.stratified_indices`), and
saved in the run directory as `validation.json`:

    {"fraction": 0.1, "seed": 2022, "train_size": 6000, "indices": [3, 17, ...]}

`indices` are positions in the training set before holding out (after --train-samples); the run trains on the others.
A resumed run and --eval-only read the file beside the --resume checkpoint: the samples are never drawn again.
Validation items are read as test items are (no training augmentation).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset, Subset

from pfa.data.subsets import dataset_labels, evaluation_view, stratified_indices
from pfa.engine.config import arg
from pfa.errors import UserError
from pfa.tasks.outputs import OutputConfig

VALIDATION_FILE = "validation.json"


@dataclass
class ClassificationConfig(OutputConfig):
    """OutputConfig plus --val-fraction, for entries whose data have class labels."""

    val_fraction: float = arg(0.0, "hold out this fraction of each training class as a validation set: the best "
                              "checkpoint is then chosen on validation accuracy, never on the test set; saved as "
                              "validation.json, reused on --resume (0: off)")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")


def _saved(path: Path, cfg: ClassificationConfig, size: int) -> list[int]:
    """The held-out indices of the run being resumed, checked against this training set."""
    try:
        saved = json.loads(path.read_text())
        indices, train_size = saved["indices"], saved["train_size"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"cannot read {path}: a run with --val-fraction keeps its validation samples there; restore "
                        "it, or start a new run") from None
    if train_size != size or saved.get("fraction") != cfg.val_fraction:
        raise UserError(f"{path} holds {saved.get('fraction')} of {train_size} training samples, this run "
                        f"{cfg.val_fraction} of {size}: it belongs to other data; start a new run")
    return indices


def hold_out(cfg: ClassificationConfig, train: Dataset, test: Dataset) -> tuple[Dataset, Dataset | None, dict]:
    """(the training set left, the validation set or None, {"validation.json": ...} for `fit`'s `files`)."""
    if not cfg.val_fraction:
        return train, None, {}
    if cfg.resume:
        held = _saved(Path(cfg.resume).parent / VALIDATION_FILE, cfg, len(train))
    else:
        held = stratified_indices(dataset_labels(train), cfg.val_fraction, cfg.seed)
    if not held:
        raise UserError(f"--val-fraction {cfg.val_fraction} holds out no sample of the {len(train)} training samples "
                        "(a class needs 2); raise it or --train-samples")
    kept = sorted(set(range(len(train))) - set(held))
    record = {"fraction": cfg.val_fraction, "seed": cfg.seed, "train_size": len(train), "indices": held}
    return Subset(train, kept), Subset(evaluation_view(train, test), held), {VALIDATION_FILE: record}
