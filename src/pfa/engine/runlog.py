"""What a run writes as it goes (rank 0 only): TensorBoard, metrics.json and metrics.jsonl, progress bars, a summary.

TensorBoard tags are the same in every entry point: each record entry `<split>_<metric>` becomes `<split>/<metric>`
(train/loss, test/acc, ...), other scalars `run/<name>` (run/lr, run/seconds), the loss of every training step
`train/step_loss` (indexed by global step, written once per epoch from one device tensor), and at the end of a run its
settings with the final record (`add_hparams`, metrics under `final/`).
"""

import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from pfa.errors import UserError
from pfa.files import atomic_write, write_json

HISTORY = "metrics.jsonl"
TIMING = ("lr", "seconds", "load1")  # what a metrics.jsonl line adds to the epoch's metrics (not in metrics.json)


def metrics_of(line: dict) -> dict:
    """A metrics.jsonl line without its timing: the epoch's metrics, as metrics.json holds them."""
    return {k: v for k, v in line.items() if k not in TIMING}


def read_history(run_dir: Path) -> list[dict]:
    """A run's records in epoch order, from its metrics.jsonl ([] when it has none); a resumed epoch's last line."""
    path = Path(run_dir) / HISTORY
    if not path.exists():
        return []
    by_epoch = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def progress(iterable: Iterable, desc: str, enabled: bool) -> tqdm:
    """A tqdm bar on a terminal; silent in logs, pipes and on ranks other than 0."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=not (enabled and sys.stderr.isatty()))


class Throttle:
    """Calling it returns True at most once every `seconds` (the first call included)."""

    def __init__(self, seconds: float):
        self.seconds, self.last = seconds, -float("inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _scalar(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RunLog:
    """TensorBoard events under `<run>/tensorboard`; `<run>/metrics.json` (the last epoch) rewritten and
    `<run>/metrics.jsonl` (one line per epoch) appended every epoch; a summary line on stdout.

    A resumed run passes the checkpoint's `history`: both files are rewritten from it, so they hold exactly the
    epochs the checkpoint has, whatever a crash left behind.
    """

    def __init__(self, run_dir: Path, enabled: bool, first_epoch: int = 0, history: list[dict] | None = None):
        self.run_dir, self.enabled, self.writer, self.steps_done = run_dir, enabled, None, 0
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow and rank 0 alone needs it

        purge_step = first_epoch + 1 if first_epoch else None  # drop events a resumed run is about to rewrite
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)
        if history:
            with atomic_write(run_dir / HISTORY, "w") as f:
                f.writelines(json.dumps(record) + "\n" for record in history)
            write_json(run_dir / "metrics.json", metrics_of(history[-1]))

    def steps(self, epoch: int, losses: torch.Tensor) -> None:
        """The loss of each of the epoch's training steps, read from the device once."""
        if not self.enabled or not len(losses):
            return
        first = epoch * len(losses)
        for i, value in enumerate(losses.tolist()):
            self.writer.add_scalar("train/step_loss", value, first + i)

    def epoch(self, record: dict, timing: dict | None = None) -> None:
        """Log one epoch's record ({"epoch": e, "train_loss": ..., ...}) and its `timing` (lr, seconds, load1):
        TensorBoard and metrics.jsonl get both, metrics.json the record."""
        if not self.enabled:
            return
        step = record["epoch"]
        line = {**record, **(timing or {})}
        for key, value in line.items():
            if key != "epoch" and _scalar(value):
                self.writer.add_scalar(key.replace("_", "/", 1) if "_" in key else f"run/{key}", value, step)
        self.writer.flush()
        try:
            with open(self.run_dir / HISTORY, "a") as f:
                f.write(json.dumps(line) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise UserError(f"cannot write {self.run_dir / HISTORY}: {e.strerror}; the checkpoint of epoch "
                            f"{record['epoch']} is saved: free space, then resume") from None
        write_json(self.run_dir / "metrics.json", record)
        print(" ".join(f"{k}={_format(v)}" for k, v in line.items()), flush=True)

    def hparams(self, settings: dict, final: dict) -> None:
        """The run's settings beside its final metrics, for TensorBoard's HPARAMS tab."""
        if not self.enabled or not final:
            return
        from torch.utils.tensorboard.summary import hparams

        values = {k: v if _scalar(v) or isinstance(v, str | bool) else str(v) for k, v in settings.items()}
        metrics = {f"final/{k}": v for k, v in final.items() if k != "epoch" and _scalar(v)}
        # what SummaryWriter.add_hparams writes, but into this run's event file rather than a second one
        for summary in hparams(values, metrics):
            self.writer._get_file_writer().add_summary(summary)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, final["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def images(self, epoch: int, grids: dict) -> None:
        """Pictures [C, H, W] in [0, 1]: `<name>.png` (latest), `images/epoch_NNNN_<name>.png` and TensorBoard."""
        if not self.enabled:
            return
        from torchvision.utils import save_image

        (self.run_dir / "images").mkdir(exist_ok=True)
        for name, grid in grids.items():
            save_image(grid, self.run_dir / f"{name}.png")
            save_image(grid, self.run_dir / "images" / f"epoch_{epoch:04d}_{name}.png")
            self.writer.add_image(f"images/{name}", grid, epoch)
        self.writer.flush()
