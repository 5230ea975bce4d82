"""The training engine every entry point uses: DDP under torchrun, AMP, checkpoints, exact resume, logs.

An entry point parses its config, builds its data and model, and hands them to `fit` with a `Task`::

    from pfa.cli import guarded
    from pfa.engine.config import parse_config
    from pfa.engine.loop import fit
    from pfa.engine.run import Run
    from pfa.engine.task import ClassificationTask

    @guarded                                           # UserError -> one line on stderr, exit status 2
    def main(argv=None):
        cfg = parse_config(MyConfig, argv)
        train_set, test_set = load_my_data(cfg)        # datasets of (input, label) or whatever the task expects
        with Run(cfg, name="mine") as run:             # joins torchrun's process group, seeds, picks the run directory
            model = build_my_model(cfg).to(run.device)
            fit(run, model, ClassificationTask(cfg.loss, cfg.tet_lambda), train_set, test_set, arch=repr_of(cfg))

`fit` then, per epoch: `task.on_epoch_start(epoch)`; for each training batch (moved to the device): forward and loss by
`task.train_step` under autocast, backward through a GradScaler, a device-side finiteness check of the loss and the
gradients, `optimizer.step()`, `task.after_optimizer_step(model)`,
`spikingjelly.activation_based.functional.reset_net`; `scheduler.step()`; evaluation with `task.eval_step`; the
record `task.record(...)` plus whatever `task.on_epoch_end(...)` returns (metrics.jsonl adds the learning rate,
the epoch's seconds and the load average: `lr`, `seconds`, `load1`); `checkpoint_best.pth` when `task.monitor`
improved, then `checkpoint_latest.pth`, TensorBoard, `metrics.jsonl` and `metrics.json` (rank 0 only);
after the last epoch `curves.png` (pfa.engine.curves.training_curves of the whole history).
Step metrics are batch means weighted by `StepResult.count`, summed over all processes. Hooks get `epoch`, the 0-based
index of the epoch being run; a record's "epoch" is the number of epochs completed.

Divergence: nothing synchronises with the host during an epoch. A flag on the device records the first step whose loss
or gradients are not finite; it is read with the epoch's metrics (under DDP in the same reduction), and the weights are
checked before every save. A diverged run stops with one line naming the epoch and step, and keeps its last good
checkpoint: a non-finite checkpoint is never written, nor evaluated or resumed.

Resuming restores the model, optimiser, scheduler, grad scaler, every RNG, the best metric and the metrics history, and
shuffles each epoch with `seed + epoch`, so a CPU run interrupted anywhere and resumed from its last checkpoint ends
bit-identical to an uninterrupted one. Schedule settings changed on resume (pfa.engine.config.SCHEDULE) take effect from
the resumed epoch: the learning rate follows the new schedule as if it had applied from the start.

What a run promises:

- Interrupts: SIGINT (Ctrl-C) or SIGTERM stops a run after its current training step, every process of a torchrun run
  at the same step, with one line saying where it stopped, which epoch checkpoint_latest.pth holds and the `--resume`
  command that continues it; exit status 130 (SIGINT) or 143 (SIGTERM). The unfinished epoch is not saved: it runs
  again on resume, so the run ends bit-identical to an uninterrupted one. A signal during evaluation or saving stops
  the run once that epoch is saved; after the last epoch's training the run finishes.
- Crashes: every file is replaced atomically (temporary, fsync, rename), checkpoint_best.pth before
  checkpoint_latest.pth before the metrics. A run killed at any instant resumes from its checkpoint_latest.pth (or,
  without one, starts again) to the same end as an uninterrupted run, its checkpoint_best.pth holding the best epoch
  that metrics.json names (a resume restores it from the resumed checkpoint where an older version lost it).
- Disk: a write the file system refuses (full disk, read-only or removed folder) stops the run with one line and exit
  status 2, keeping the last good checkpoint and removing run.lock.
- Checksums: every checkpoint holds a sha256 of its contents, checked whenever it is read (--resume, --eval-only,
  pfa.rank): a changed byte or a truncated file is refused in one line, never trained on or evaluated.
- Sizes: an empty training or test set, and a network or batch far beyond the device's memory (estimated on the meta
  device, pfa.engine.capacity), are refused in one line before the run directory is created.
"""

import contextlib
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pfa.engine import capacity
from pfa.engine.checkpoint import load_checkpoint, model_signature, non_finite, save_checkpoint
from pfa.engine.config import default_device
from pfa.engine.curves import training_curves
from pfa.engine.distributed import ShardSampler
from pfa.engine.meter import Divergence, EpochMeter
from pfa.engine.run import Run
from pfa.engine.runlog import RunLog, Throttle, metrics_of, progress
from pfa.engine.state import (
    build_optimizer,
    build_scheduler,
    restore_training,
    rng_state,
    set_rng_state,
)
from pfa.engine.stop import StopSignals, ignore_interrupts
from pfa.engine.task import Task
from pfa.errors import Interrupted, UserError
from pfa.files import atomic_write

TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "best", "config")


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _loader_options(run: Run, dataset: Dataset) -> dict[str, Any]:
    """A batch larger than the data is all of it; workers leave Ctrl-C to the main process (pfa.engine.stop)."""
    return {"batch_size": min(run.cfg.batch_size, max(len(dataset), 1)), "num_workers": run.cfg.workers,
            "pin_memory": run.device.type == "cuda", "worker_init_fn": ignore_interrupts}


def _loaders(run: Run, train_set: Dataset, test_set: Dataset) -> tuple[DataLoader, DataLoader]:
    cfg, process = run.cfg, run.process
    # Shuffling comes from seed + epoch (set_epoch), not from a running RNG, so resuming reshuffles identically.
    train_sampler = DistributedSampler(train_set, num_replicas=process.world_size, rank=process.rank, shuffle=True,
                                       seed=cfg.seed)
    return (DataLoader(train_set, sampler=train_sampler, **_loader_options(run, train_set)),
            _evaluation_loader(run, test_set))


def _evaluation_loader(run: Run, dataset: Dataset) -> DataLoader:
    return DataLoader(dataset, sampler=ShardSampler(len(dataset), run.process), **_loader_options(run, dataset))


def _stopped(run: Run, what: str) -> UserError:
    latest = run.dir / "checkpoint_latest.pth"
    kept = f"the last good checkpoint is {latest}" if latest.exists() else "no epoch had finished, nothing saved"
    return UserError(f"{what}; stopped, {kept}; lower --lr (resume with --lr to change it) or turn off --amp")


def _diverged(run: Run, epoch: int, divergence: Divergence) -> UserError:
    where = f"at epoch {epoch + 1}, step {divergence.step + 1}"
    if not math.isfinite(divergence.loss):
        return _stopped(run, f"the training loss became {divergence.loss} {where}")
    return _stopped(run, f"the gradients became non-finite {where} (loss {divergence.loss:.4g})")


def _check_weights(run: Run, model: nn.Module, epoch: int) -> None:
    """Before a save: a checkpoint with a NaN or an infinity is never written."""
    bad = non_finite(model.state_dict())
    if bad:
        raise _stopped(run, f"the weights became non-finite during epoch {epoch + 1} ({len(bad)} of "
                            f"{len(model.state_dict())} tensors, e.g. {bad[0]})")


def _interrupted(run: Run, signum: int, epochs_done: int, steps: tuple[int, int] | None = None) -> Interrupted:
    """The line a stopped run ends with: where it stopped, what is saved, the command that continues it. `steps`:
    (steps done, steps) of the epoch it left unfinished."""
    cfg, name = run.cfg, signal.Signals(signum).name
    where = (f"in epoch {epochs_done + 1} of {cfg.epochs}, after step {steps[0]} of {steps[1]}" if steps
             else f"after epoch {epochs_done} of {cfg.epochs}")
    if epochs_done == 0:
        return Interrupted(signum, f"{name} {where}; no epoch had finished, so nothing is saved: run the same command "
                                   "again to start over")
    latest = run.dir / "checkpoint_latest.pth"
    launcher = f"torchrun --nproc_per_node {run.process.world_size}" if run.process.distributed else "python"
    command = f"{launcher} -m pfa.train {cfg.TASK}" if cfg.TASK else "the same command with"
    device = f" --device {cfg.device}" if cfg.device != default_device() else ""
    again = f" (epoch {epochs_done + 1} starts over)" if steps else ""
    return Interrupted(signum, f"{name} {where}; {latest} holds epoch {epochs_done}{again}; continue with: {command}"
                               f"{device} --resume {shlex.quote(str(latest))}")


def train_epoch(run: Run, net: nn.Module, model: nn.Module, task: Task, loader: DataLoader, optimizer, scaler,
                epoch: int, stop: StopSignals | None = None
                ) -> tuple[dict[str, float], Divergence | None, torch.Tensor]:
    """One epoch; returns the metrics, the first non-finite step (or None) and the loss of every step. After each step
    a stop `stop` asked for ends the epoch unsaved (Interrupted)."""
    net.train()
    meter = EpochMeter(run.device)
    bar = progress(loader, f"epoch {epoch + 1}/{run.cfg.epochs}", run.is_main)
    refresh = Throttle(seconds=2.0)
    params = [p for p in model.parameters() if p.requires_grad]
    losses = []
    for step, batch in enumerate(bar):
        with run.autocast():
            result = task.train_step(net, to_device(batch, run.device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(result.loss).backward()
        # under fp16 loss scaling, infinite gradients are expected now and then: the scaler skips those steps
        meter.watch(result.loss, [] if scaler.is_enabled() else [p.grad for p in params if p.grad is not None])
        scaler.step(optimizer)
        scaler.update()
        task.after_optimizer_step(model)
        functional.reset_net(net)
        meter.add(result)
        losses.append(result.loss.detach().float().reshape(()))
        if not bar.disable and refresh():  # a terminal's progress bar reads the device every few seconds only
            bar.set_postfix({k: f"{v:.4f}" for k, v in meter.means().items()})
        signum = stop.requested() if stop is not None else 0
        if signum:
            bar.close()
            raise _interrupted(run, signum, epoch, (step + 1, len(loader)))
    train, divergence = meter.result()
    return train, divergence, torch.stack(losses) if losses else torch.zeros(0)


@torch.no_grad()
def evaluate(run: Run, net: nn.Module, task: Task, loader: DataLoader, what: str = "test") -> dict[str, float]:
    net.eval()
    meter = EpochMeter(run.device)
    for batch in progress(loader, what, run.is_main):
        with run.autocast():
            meter.add(task.eval_step(net, to_device(batch, run.device)))
        functional.reset_net(net)
    return meter.result()[0]


def _better(task: Task, value: float, best: float | None) -> bool:
    return best is None or (value > best if task.maximize else value < best)


def _check_sizes(run: Run, model: nn.Module, task: Task, train_set: Dataset, test_set: Dataset) -> None:
    """Before the run directory exists: refuse empty data, and a training step far beyond the device's memory."""
    cfg = run.cfg
    for name, data in (("test", test_set), ("training", train_set))[:1 if cfg.eval_only else 2]:
        if len(data) == 0:
            raise UserError(f"the {name} set has no samples; check the dataset files (--data-dir {cfg.data_dir}), "
                            "they may be empty or cut short")
    if cfg.eval_only:
        return
    batch = min(cfg.batch_size, math.ceil(len(train_set) / run.process.world_size))
    reserved = sum(p.numel() * p.element_size() for p in model.parameters()) * (
        1 + capacity.OPTIMIZER_COPIES[cfg.optimizer])  # gradients and optimiser state, beside the weights in place
    capacity.check_step(model, task.train_step, train_set, batch, run.device, reserved,
                        half=run.device.type == "cuda" and cfg.amp != "none")


def _saved_epoch(path: Path) -> int | None:
    """The epoch of an intact checkpoint at `path`, None if it is missing or damaged."""
    try:
        return load_checkpoint(path)["epoch"] if path.exists() else None
    except UserError:
        return None


def _restore_best(run: Run, task: Task, monitor: str, checkpoint: dict[str, Any]) -> None:
    """On resume: make checkpoint_best.pth hold the best epoch of the record resumed. Best is written before latest, so
    only a crash under an older version, or a deleted file, leaves it behind; when that epoch is the one resumed from,
    its checkpoint is copied, otherwise a warning says so (the next improvement rewrites it)."""
    best, wanted = None, None
    for record in checkpoint.get("history", []):
        if monitor in record and _better(task, record[monitor], best):
            best, wanted = record[monitor], record["epoch"]
    path, epoch = run.dir / "checkpoint_best.pth", checkpoint["epoch"]
    saved = _saved_epoch(path) if run.is_main and wanted is not None else wanted
    if saved == wanted or (saved is not None and saved > epoch):  # a newer one: its epoch runs again and rewrites it
        return
    if wanted == epoch:
        with atomic_write(path) as f:
            f.write(Path(run.cfg.resume).read_bytes())
        print(f"restored {path} (epoch {epoch}, the best so far) from {run.cfg.resume}", flush=True)
    else:
        print(f"warning: {path} does not hold epoch {wanted}, the best so far: a crash lost it; the next improvement "
              "rewrites it", file=sys.stderr, flush=True)


def _metrics_epoch(folder: Path) -> int | None:
    """The epoch metrics.json describes (None if it is missing or unreadable)."""
    try:
        return json.loads((folder / "metrics.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fit(run: Run, model: nn.Module, task: Task, train_set: Dataset, test_set: Dataset, arch: str,
        files: dict[str, dict] | None = None, val_set: Dataset | None = None) -> dict[str, Any]:
    """Train (or, with cfg.eval_only, evaluate) `model` on the run's device; returns the last metrics record.

    `arch` describes the model for checkpoints ("FashionMNISTNet(width=32, ...)"); a checkpoint from another
    architecture is refused with a message quoting both. `files` are JSON files written into the run directory when
    it is created (e.g. a dataset split). `val_set`, held out of the training data, is evaluated every epoch
    ("val_<metric>") and decides `checkpoint_best.pth` (see `Task`).
    """
    cfg = run.cfg
    checkpoint = None
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume, model, arch, needs=() if cfg.eval_only else TRAINING_STATE)
        bad = non_finite(checkpoint["model"])
        if bad:
            raise UserError(f"checkpoint {cfg.resume} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}); "
                            "it cannot be evaluated or resumed: give an earlier checkpoint")
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    net = model
    if run.process.distributed:
        net = DistributedDataParallel(model, device_ids=[run.device] if run.device.type == "cuda" else None)
    train_loader, test_loader = _loaders(run, train_set, test_set)
    val_loader = _evaluation_loader(run, val_set) if val_set is not None else None
    monitor = task.monitor if val_loader is None else "val_" + task.monitor.removeprefix("test_")

    def validation() -> dict[str, float]:
        if val_loader is None:
            return {}
        return {f"val_{k}": v for k, v in evaluate(run, net, task, val_loader, "validation").items()}

    facts = {"task": cfg.TASK, "parameters": sum(p.numel() for p in model.parameters()), "train_size": len(train_set)}
    _check_sizes(run, model, task, train_set, test_set)
    if cfg.eval_only:
        run.prepare_dir(files=files, facts=facts)
        test = evaluate(run, net, task, test_loader)
        record = {**task.record(checkpoint["epoch"], {}, test), **validation()}
        log = RunLog(run.dir, run.is_main)
        log.epoch(record)
        log.close()
        return record

    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = build_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.device.type == "cuda" and cfg.amp == "fp16")
    start, best, history, changes = 0, None, [], None
    if checkpoint is not None:
        start, best, history = checkpoint["epoch"], checkpoint["best"], checkpoint.get("history", [])
        if start >= cfg.epochs:
            if history and _metrics_epoch(run.dir) != start:  # killed after its last checkpoint, before its metrics
                run.prepare_dir({}, resumed_at=start)
                _restore_best(run, task, monitor, checkpoint)
                RunLog(run.dir, run.is_main, first_epoch=start, history=history).close()
                _write_curves(run, history)
                return metrics_of(history[-1])
            raise UserError(f"{cfg.resume} has already trained {start} epochs; to go on, give --epochs above {start}")
        changes = restore_training(cfg, checkpoint, optimizer, scheduler, scaler)
        set_rng_state(checkpoint["rng"])
    run.prepare_dir(changes, resumed_at=start if checkpoint is not None else None, files=files, facts=facts)
    if checkpoint is not None:
        _restore_best(run, task, monitor, checkpoint)
    log = run.log = RunLog(run.dir, run.is_main, first_epoch=start, history=history)
    record = metrics_of(history[-1]) if history else {}
    with StopSignals() as stop, contextlib.closing(log):
        for epoch in range(start, cfg.epochs):
            started = time.perf_counter()
            task.on_epoch_start(epoch)
            train_loader.sampler.set_epoch(epoch)
            train, divergence, step_losses = train_epoch(run, net, model, task, train_loader, optimizer, scaler, epoch,
                                                         stop)
            if divergence is not None:
                raise _diverged(run, epoch, divergence)
            if scheduler is not None:
                scheduler.step()
            record = {**task.record(epoch + 1, train, evaluate(run, net, task, test_loader)), **validation()}
            record.update(task.on_epoch_end(epoch, model, run) or {})
            improved = _better(task, record[monitor], best)
            best = record[monitor] if improved else best
            record[f"best_{monitor}"] = best
            if val_loader is not None:  # the test value of the epoch that validation chose
                at_best = f"{task.monitor}_at_best_val"
                record[at_best] = record[task.monitor] if improved else history[-1][at_best]
            timing = {"lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - started, 3),
                      "load1": os.getloadavg()[0]}
            history.append(json.loads(json.dumps({**record, **timing})))  # plain types, as weights_only loading wants
            _check_weights(run, model, epoch)
            if run.is_main:  # the checkpoint first: metrics never describe an epoch that a crash could lose
                state = {
                    "task": cfg.TASK, "arch": arch, "signature": model_signature(model), "epoch": epoch + 1,
                    "best": best,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(), "rng": rng_state(), "config": cfg.to_dict(), "history": history,
                }
                if improved:  # best before latest: a crash between them leaves the epoch to redo, nothing lost
                    save_checkpoint(run.dir / "checkpoint_best.pth", state)
                save_checkpoint(run.dir / "checkpoint_latest.pth", state)
            log.steps(epoch, step_losses)
            log.epoch(record, timing)
            signum = stop.requested() if epoch + 1 < cfg.epochs else 0
            if signum:
                raise _interrupted(run, signum, epoch + 1)
        log.hparams(cfg.to_dict(), record)
    _write_curves(run, history)
    return record


def _write_curves(run: Run, history: list[dict]) -> None:
    """curves.png: the run's metrics per epoch, every epoch so far (the main process draws it)."""
    if run.is_main and history:
        training_curves(history, run.dir / "curves.png", run.dir.name)

