"""The training engine every entry point uses: DDP under torchrun, AMP, checkpoints, exact resume, logs.

An entry point parses its config, builds its data and model, and hands them to `fit` with a `Task`::

    from pfa.cli import guarded
    from pfa.config import parse_config
    from pfa.engine import ClassificationTask, Run, fit

    @guarded                                           # UserError -> one line on stderr, exit status 2
    def main(argv=None):
        cfg = parse_config(MyConfig, argv)
        train_set, test_set = load_my_data(cfg)        # datasets of (input, label) or whatever the task expects
        with Run(cfg, name="mine") as run:             # joins torchrun's process group, seeds, picks the run directory
            model = build_my_model(cfg).to(run.device)
            fit(run, model, ClassificationTask(cfg.loss, cfg.tet_lambda), train_set, test_set, arch=repr_of(cfg))

`fit` then, per epoch: `task.on_epoch_start(epoch)`; for each training batch (moved to the device): forward and loss by
`task.train_step` under autocast, a finiteness check (NaN/inf stops the run, naming the step, leaving the last good
checkpoint), backward through a GradScaler, `optimizer.step()`, `task.after_optimizer_step(model)`,
`spikingjelly.activation_based.functional.reset_net`; `scheduler.step()`; evaluation with `task.eval_step`; the
record `task.record(...)` plus whatever `task.on_epoch_end(...)` returns; TensorBoard, `metrics.json`,
`checkpoint_latest.pth` and, when `task.monitor` improved, `checkpoint_best.pth` (rank 0 only). Step metrics are batch
means weighted by `StepResult.count`, summed over all processes. Hooks get `epoch`, the 0-based index of the epoch being
run; a record's "epoch" is the number of epochs completed.

Resuming restores the model, optimiser, scheduler, grad scaler, every RNG and the best metric, and shuffles each epoch
with `seed + epoch`, so a CPU run interrupted at an epoch boundary and resumed ends bit-identical to an uninterrupted
one.
"""

import contextlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pfa.checkpoint import load_checkpoint, model_signature, save_checkpoint
from pfa.config import TrainConfig, save_config
from pfa.distributed import ShardSampler, all_reduce_sum, init_process, shutdown
from pfa.errors import UserError
from pfa.losses import classification_loss, firing_rate
from pfa.runlog import RunLog, progress, write_json


@dataclass
class StepResult:
    """One batch's outcome: the loss to back-propagate, batch-mean metrics to log, and the batch size weighting them."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float]
    count: int


class Task:
    """What differs between entry points. Subclass and override; every hook but `train_step` has a default.

    `monitor` names the record entry that decides `checkpoint_best.pth` (`maximize` says which way is better).
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


class Run:
    """One process's view of a run: its rank and device, the seeded RNGs and the run directory (created by `fit`)."""

    def __init__(self, cfg: TrainConfig, name: str):
        self.cfg = cfg
        self.process, self.device = init_process(cfg.device)
        if cfg.out_dir is None:
            cfg.out_dir = str(Path("runs") / name / time.strftime("%Y%m%d-%H%M%S"))
        self.dir = Path(cfg.out_dir)
        seed_everything(cfg.seed)

    @property
    def is_main(self) -> bool:
        return self.process.is_main

    def prepare_dir(self, files: dict[str, dict] | None = None) -> None:
        """Create the run directory, save config.yaml and `files` (JSON); refuses to overwrite another run's results."""
        taken = [n for n in ("checkpoint_latest.pth", "metrics.json") if (self.dir / n).exists()]
        resume = self.cfg.resume
        continuing = resume and not self.cfg.eval_only and Path(resume).resolve().parent == self.dir.resolve()
        if taken and not continuing:
            raise UserError(f"--out-dir {self.dir} already holds a run ({taken[0]}); choose another --out-dir, or "
                            f"continue it with --resume {self.dir / 'checkpoint_latest.pth'}")
        if self.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.dir / "config.yaml")
            for name, data in (files or {}).items():
                write_json(self.dir / name, data)
            print(f"run directory: {self.dir}", flush=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision as configured, on CUDA only."""
        if self.device.type != "cuda" or self.cfg.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        shutdown()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in types `torch.load(weights_only=True)` accepts."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.t_max)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return None


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class _Meter:
    """Sums of batch means times batch sizes, kept on the device; `result()` reduces them over processes."""

    def __init__(self, device: torch.device):
        self.device, self.sums, self.count = device, {}, 0

    def add(self, step: StepResult) -> None:
        for key, value in step.metrics.items():
            value = torch.as_tensor(value, device=self.device).detach().double() * step.count
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += step.count

    def means(self) -> dict[str, float]:
        return {k: v.item() / self.count for k, v in self.sums.items()}

    def result(self) -> dict[str, float]:
        totals = torch.stack([*self.sums.values(), torch.tensor(self.count, device=self.device, dtype=torch.float64)])
        *sums, count = all_reduce_sum(totals).tolist()
        return {k: s / count for k, s in zip(self.sums, sums, strict=True)}


def _loaders(run: Run, train_set: Dataset, test_set: Dataset) -> tuple[DataLoader, DataLoader]:
    cfg, process = run.cfg, run.process
    # Shuffling comes from seed + epoch (set_epoch), not from a running RNG, so resuming reshuffles identically.
    train_sampler = DistributedSampler(train_set, num_replicas=process.world_size, rank=process.rank, shuffle=True,
                                       seed=cfg.seed)
    common = {"batch_size": cfg.batch_size, "num_workers": cfg.workers, "pin_memory": run.device.type == "cuda"}
    return (DataLoader(train_set, sampler=train_sampler, **common),
            DataLoader(test_set, sampler=ShardSampler(len(test_set), process), **common))


def _stop_if_not_finite(loss: torch.Tensor, epoch: int, step: int, run: Run) -> None:
    value = all_reduce_sum(loss.detach().float().reshape(1).clone())  # every process stops together
    if not torch.isfinite(value).item():
        latest = run.dir / "checkpoint_latest.pth"
        kept = f"the last good checkpoint is {latest}" if latest.exists() else "no epoch had finished, nothing saved"
        raise UserError(f"the training loss became {value.item()} at epoch {epoch + 1}, step {step + 1}; stopped, "
                        f"{kept}; lower --lr or turn off --amp")


def train_epoch(run: Run, net: nn.Module, model: nn.Module, task: Task, loader: DataLoader, optimizer, scaler,
                epoch: int) -> dict[str, float]:
    net.train()
    meter = _Meter(run.device)
    bar = progress(loader, f"epoch {epoch + 1}/{run.cfg.epochs}", run.is_main)
    for step, batch in enumerate(bar):
        with run.autocast():
            result = task.train_step(net, to_device(batch, run.device))
        _stop_if_not_finite(result.loss, epoch, step, run)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(result.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        task.after_optimizer_step(model)
        functional.reset_net(net)
        meter.add(result)
        if not bar.disable:
            bar.set_postfix({k: f"{v:.4f}" for k, v in meter.means().items()})
    return meter.result()


@torch.no_grad()
def evaluate(run: Run, net: nn.Module, task: Task, loader: DataLoader) -> dict[str, float]:
    net.eval()
    meter = _Meter(run.device)
    for batch in progress(loader, "test", run.is_main):
        with run.autocast():
            meter.add(task.eval_step(net, to_device(batch, run.device)))
        functional.reset_net(net)
    return meter.result()


def _better(task: Task, value: float, best: float | None) -> bool:
    return best is None or (value > best if task.maximize else value < best)


def fit(run: Run, model: nn.Module, task: Task, train_set: Dataset, test_set: Dataset, arch: str,
        files: dict[str, dict] | None = None) -> dict[str, Any]:
    """Train (or, with cfg.eval_only, evaluate) `model` on the run's device; returns the last metrics record.

    `arch` describes the model for checkpoints ("FashionMNISTNet(width=32, ...)"); a checkpoint from another
    architecture is refused with a message quoting both. `files` are JSON files written into the run directory when
    it is created (e.g. a dataset split).
    """
    cfg = run.cfg
    checkpoint = load_checkpoint(cfg.resume, model, arch) if cfg.resume else None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    net = model
    if run.process.distributed:
        net = DistributedDataParallel(model, device_ids=[run.device] if run.device.type == "cuda" else None)
    train_loader, test_loader = _loaders(run, train_set, test_set)
    if cfg.eval_only:
        run.prepare_dir(files)
        test = evaluate(run, net, task, test_loader)
        record = task.record(checkpoint["epoch"], {}, test)
        log = RunLog(run.dir, run.is_main)
        log.epoch(record)
        log.close()
        return record

    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = build_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.device.type == "cuda" and cfg.amp == "fp16")
    start, best = 0, None
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start, best = checkpoint["epoch"], checkpoint["best"]
        if start >= cfg.epochs:
            raise UserError(f"{cfg.resume} has already trained {start} epochs; to go on, give --epochs above {start}")
        set_rng_state(checkpoint["rng"])
    run.prepare_dir(files)
    log = RunLog(run.dir, run.is_main, first_epoch=start)
    record = {}
    try:
        for epoch in range(start, cfg.epochs):
            started = time.perf_counter()
            task.on_epoch_start(epoch)
            train_loader.sampler.set_epoch(epoch)
            train = train_epoch(run, net, model, task, train_loader, optimizer, scaler, epoch)
            if scheduler is not None:
                scheduler.step()
            record = task.record(epoch + 1, train, evaluate(run, net, task, test_loader))
            record.update(task.on_epoch_end(epoch, model, run) or {})
            improved = _better(task, record[task.monitor], best)
            best = record[task.monitor] if improved else best
            record[f"best_{task.monitor}"] = best
            log.epoch(record, {"lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started})
            if run.is_main:
                state = {
                    "arch": arch, "signature": model_signature(model), "epoch": epoch + 1, "best": best,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(), "rng": rng_state(), "config": cfg.to_dict(),
                }
                save_checkpoint(run.dir / "checkpoint_latest.pth", state)
                if improved:
                    save_checkpoint(run.dir / "checkpoint_best.pth", state)
    finally:
        log.close()
    return record

