"""One process's view of a training run: its device and rank, its seeded RNGs and its claimed run folder."""

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from pfa.engine import capacity, rundir
from pfa.engine.config import TrainConfig, save_config, saved_provenance
from pfa.engine.distributed import broadcast_object, init_process, shutdown
from pfa.engine.runlog import RunLog
from pfa.engine.state import seed_everything
from pfa.errors import UserError
from pfa.files import clean_temporaries, write_json


class Run:
    """One process's view of a run: its rank and device, the seeded RNGs and the run directory (created by `fit`)."""

    def __init__(self, cfg: TrainConfig, name: str):
        self.cfg = cfg
        self.process, self.device = init_process(cfg.device)
        self.log: RunLog | None = None  # the run's one writer of logs and pictures, set by `fit`
        if cfg.resume and not cfg.eval_only:  # a resumed run continues in its own folder
            own = Path(cfg.resume).parent
            if cfg.out_dir is not None and Path(cfg.out_dir).resolve() != own.resolve():
                raise UserError(f"--resume continues the run in its own folder {own}, but --out-dir is {cfg.out_dir}; "
                                "drop --out-dir (to branch off, copy the checkpoint into a new folder first)")
            cfg.out_dir = str(own)
        if cfg.out_dir is None:
            cfg.out_dir = broadcast_object(str(Path("runs") / name / rundir.default_name()))
        self.dir = Path(cfg.out_dir)
        self._prepared, self._lock = False, None
        seed_everything(cfg.seed)

    @property
    def is_main(self) -> bool:
        return self.process.is_main

    def check_network(self, build: Callable[[], nn.Module]) -> None:
        """Before building the network: refuse one whose parameters cannot fit this run's device (`build` runs on the
        meta device, which takes no memory; see pfa.engine.capacity)."""
        copies = 1 if self.cfg.eval_only else 2 + capacity.OPTIMIZER_COPIES[self.cfg.optimizer]
        capacity.check_network(build, self.device, copies)

    def prepare_dir(self, changes: dict[str, Any] | None = None, resumed_at: int | None = None,
                    files: dict[str, dict] | None = None, facts: dict[str, Any] | None = None) -> None:
        """Create and claim the run directory, clean what a killed run left half written and save config.yaml, once;
        refuses to overwrite another run's results. `changes` are the schedule settings a resume changed; `files` are
        JSON files to write beside config.yaml; `facts` (task, parameters, training-set size) go into its provenance."""
        if self._prepared:
            return
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError(f"--out-dir {self.dir} is a file; give a folder path")
        taken = [n for n in ("checkpoint_latest.pth", "metrics.json") if (self.dir / n).exists()]
        if taken and not (self.cfg.resume and not self.cfg.eval_only):
            raise UserError(f"--out-dir {self.dir} already holds a run ({taken[0]}); choose another --out-dir, or "
                            f"continue it with --resume {self.dir / 'checkpoint_latest.pth'}")
        if self.is_main:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create --out-dir {self.dir}: {e.strerror}; choose another folder") from None
            self._lock = rundir.claim(self.dir)
            clean_temporaries(self.dir)
            self._write_config(changes, resumed_at, facts or {})
            for name, data in (files or {}).items():
                write_json(self.dir / name, data)
            print(f"run directory: {self.dir}", flush=True)

    def _write_config(self, changes: dict[str, Any] | None, resumed_at: int | None, facts: dict[str, Any]) -> None:
        path = self.dir / "config.yaml"
        now = rundir.provenance()
        if resumed_at is None:
            record = {**now, **facts}
        else:
            record = saved_provenance(path) or {}
            entry = {"at_epoch": resumed_at, "command": now["command"], "host": now["host"],
                     "git_commit": now["git_commit"], "changed": changes or {}}
            record["resumed"] = [*record.get("resumed", []), entry]
        try:
            save_config(self.cfg, path, record)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror}; choose another --out-dir") from None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision as configured, on CUDA only (the config refuses --amp on CPU)."""
        if self.device.type != "cuda" or self.cfg.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()
        shutdown()
