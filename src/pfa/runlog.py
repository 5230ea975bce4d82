"""What a run writes as it goes (rank 0 only): TensorBoard scalars, metrics.json, progress bars, a line per epoch."""

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from pfa.checkpoint import atomic_write


def write_json(path: Path, data: dict) -> None:
    """Atomic: readers of metrics.json never see half a file."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def progress(iterable: Iterable, desc: str, enabled: bool) -> tqdm:
    """A tqdm bar on a terminal; silent in logs, pipes and on ranks other than 0."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=not (enabled and sys.stderr.isatty()))


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class RunLog:
    """TensorBoard events under `<run>/tensorboard`, `<run>/metrics.json` rewritten every epoch, a summary on stdout."""

    def __init__(self, run_dir: Path, enabled: bool, first_epoch: int = 0):
        self.run_dir, self.enabled, self.writer = run_dir, enabled, None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow and rank 0 alone needs it

            purge_step = first_epoch + 1 if first_epoch else None  # drop events a resumed run is about to rewrite
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def epoch(self, record: dict, extra_scalars: dict | None = None) -> None:
        """Log one epoch's record ({"epoch": e, "train_loss": ..., ...}) everywhere."""
        if not self.enabled:
            return
        step = record["epoch"]
        for key, value in {**record, **(extra_scalars or {})}.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key.replace("_", "/", 1) if "_" in key else f"run/{key}", value, step)
        self.writer.flush()
        write_json(self.run_dir / "metrics.json", record)
        print(" ".join(f"{k}={_format(v)}" for k, v in {**record, **(extra_scalars or {})}.items()), flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
