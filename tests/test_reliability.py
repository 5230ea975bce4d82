"""What a run promises when things go wrong: interrupts, crashes between writes, refusing file systems, damaged
checkpoints, absurd sizes and study files; each case one line, nothing lost, nothing half made."""

import errno
import gzip
import io
import json
import os
import shutil
import signal
import socket
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from test_engine import TinySpikingNet, blobs, config, read, train
from torch.utils.data import TensorDataset

from pfa.cli import guarded
from pfa.data.fashion_mnist import DEBIAN_DIR
from pfa.engine import capacity, checkpoint
from pfa.engine.checkpoint import load_checkpoint, model_signature, save_checkpoint
from pfa.engine.loop import fit
from pfa.engine.run import Run
from pfa.engine.stop import StopSignals
from pfa.engine.task import ClassificationTask
from pfa.errors import Interrupted, UserError
from pfa.files import process_start_time
from pfa.lif.neuron import LIF
from pfa.study import sweep

needs_fmnist = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")


def one_line_exit(capsys, main, *args) -> tuple[int, str]:
    """Run a guarded `main`: its exit status and its one line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        guarded(main)(*args)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return exit_info.value.code, err


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class SignalAt(ClassificationTask):
    """Sends itself `signum` in training step `step` of epoch `epoch` (or, with step None, in its evaluation)."""

    def __init__(self, signum, epoch, step=None):
        super().__init__()
        self.signum, self.at, self.step = signum, (epoch, step), None

    def on_epoch_start(self, epoch):
        self.epoch, self.step = epoch, 0

    def train_step(self, model, batch):
        if (self.epoch, self.step) == self.at:
            os.kill(os.getpid(), self.signum)
        self.step += 1
        return super().train_step(model, batch)

    def eval_step(self, model, batch):
        if (self.epoch, None) == self.at:
            os.kill(os.getpid(), self.signum)
        return super().train_step(model, batch)


# Interrupts


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_and_the_resumed_run_is_bit_identical(tmp_path, capsys, signum):
    whole, whole_model = train(config(tmp_path, "whole"))
    code, err = one_line_exit(capsys, train, config(tmp_path), SignalAt(signum, epoch=1, step=2))
    name = signal.Signals(signum).name
    latest = tmp_path / "run/checkpoint_latest.pth"
    assert code == 128 + signum
    assert f"stopped: {name} in epoch 2 of 3, after step 3 of 6; {latest} holds epoch 1 (epoch 2 starts over)" in err
    assert err.strip().endswith(f"--resume {latest}")
    assert torch.load(latest, weights_only=True)["epoch"] == 1 and read(tmp_path / "run/metrics.json")["epoch"] == 1
    assert not (tmp_path / "run/run.lock").exists() and not list((tmp_path / "run").glob(".*.tmp"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back
    resumed, model = train(config(tmp_path, resume=str(latest)))
    assert resumed == whole and same_weights(model.state_dict(), whole_model.state_dict())


def test_a_signal_in_the_first_epoch_saves_nothing_and_the_same_command_starts_over(tmp_path, capsys):
    code, err = one_line_exit(capsys, train, config(tmp_path), SignalAt(signal.SIGINT, epoch=0, step=0))
    assert code == 130 and "no epoch had finished, so nothing is saved: run the same command again" in err
    assert not (tmp_path / "run/checkpoint_latest.pth").exists()
    assert train(config(tmp_path))[0]["epoch"] == 3


def test_a_signal_during_evaluation_stops_once_the_epoch_is_saved_and_not_in_the_last(tmp_path, capsys):
    code, err = one_line_exit(capsys, train, config(tmp_path), SignalAt(signal.SIGTERM, epoch=1))
    assert code == 143 and "SIGTERM after epoch 2 of 3; " in err and "holds epoch 2; continue with" in err
    assert read(tmp_path / "run/metrics.json")["epoch"] == 2
    record, _ = train(config(tmp_path, resume=str(tmp_path / "run/checkpoint_latest.pth")),
                      SignalAt(signal.SIGTERM, epoch=2))
    assert record["epoch"] == 3


def test_sigterm_and_ctrl_c_outside_training_are_one_line(capsys):
    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)

    def interrupted():
        raise KeyboardInterrupt

    def terminated_while_stopping():
        try:
            raise Interrupted(signal.SIGINT, "SIGINT in epoch 2 of 3")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # e.g. torchrun's launcher ending its workers

    assert one_line_exit(capsys, terminated) == (143, "stopped: SIGTERM received\n")
    assert one_line_exit(capsys, interrupted) == (130, "stopped: SIGINT received\n")
    assert one_line_exit(capsys, terminated_while_stopping) == (130, "stopped: SIGINT in epoch 2 of 3\n")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# Crashes between the checkpoint writes


class LossMonitored(ClassificationTask):
    """The test loss decides the best checkpoint: here it improves every epoch."""

    monitor, maximize = "test_loss", False


class CrashAt(LossMonitored):
    """A stand-in for a kill: saving `name` for the `n`-th time raises instead."""

    def __init__(self, monkeypatch, name, n):
        super().__init__()
        import pfa.engine.loop as loop

        saves = {"n": 0}

        def save(path, state):
            if path.name == name:
                saves["n"] += 1
                if saves["n"] == n:
                    raise RuntimeError("killed")
            save_checkpoint(path, state)

        monkeypatch.setattr(loop, "save_checkpoint", save)


@pytest.mark.parametrize("crash", [("checkpoint_best.pth", 2), ("checkpoint_latest.pth", 2),
                                   ("checkpoint_latest.pth", 3)])
def test_a_crash_between_the_checkpoints_loses_no_best(tmp_path, monkeypatch, crash):
    train(config(tmp_path, "whole"), LossMonitored())
    lines = [json.loads(line) for line in (tmp_path / "whole/metrics.jsonl").read_text().splitlines()]
    assert all(r["best_test_loss"] == r["test_loss"] for r in lines)  # a new best every epoch
    with pytest.raises(RuntimeError, match="killed"):
        train(config(tmp_path), CrashAt(monkeypatch, *crash))
    monkeypatch.undo()
    train(config(tmp_path, resume=str(tmp_path / "run/checkpoint_latest.pth")), LossMonitored())
    for name in ("checkpoint_best.pth", "checkpoint_latest.pth"):
        ours, whole = torch.load(tmp_path / "run" / name, weights_only=True), torch.load(tmp_path / "whole" / name,
                                                                                           weights_only=True)
        assert ours["epoch"] == whole["epoch"] and same_weights(ours["model"], whole["model"])
    assert read(tmp_path / "run/metrics.json") == read(tmp_path / "whole/metrics.json")


def test_a_resume_restores_a_best_checkpoint_an_older_version_lost(tmp_path, capsys):
    train(config(tmp_path, epochs=1))
    (tmp_path / "run/checkpoint_best.pth").unlink()  # what writing latest first and dying before best left
    record, _ = train(config(tmp_path, epochs=2, lr=1e-9, resume=str(tmp_path / "run/checkpoint_latest.pth")))
    assert "restored " in capsys.readouterr().out
    best = torch.load(tmp_path / "run/checkpoint_best.pth", weights_only=True)
    history = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    best_epoch = max(history, key=lambda r: (r["test_acc"], -r["epoch"]))["epoch"]
    assert best["epoch"] == best_epoch and record["best_test_acc"] == best["history"][-1]["best_test_acc"]


def test_a_lost_best_that_cannot_be_restored_is_named(tmp_path, capsys):
    train(config(tmp_path, epochs=2, lr=1e-9))  # the accuracy stays put: epoch 1 is the best
    (tmp_path / "run/checkpoint_best.pth").unlink()
    train(config(tmp_path, epochs=3, lr=1e-9, resume=str(tmp_path / "run/checkpoint_latest.pth")))
    assert "does not hold epoch 1, the best so far: a crash lost it" in capsys.readouterr().err


# Places that cannot be written


def test_a_folder_that_cannot_be_claimed_is_one_line_without_a_lock(tmp_path, capsys, monkeypatch):
    real_open = os.open

    def refused(path, *args, **kwargs):
        if str(path).endswith("run.lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refused)
    code, err = one_line_exit(capsys, train, config(tmp_path))
    assert code == 2 and "cannot write" in err and "run.lock: Permission denied; choose a folder you can write" in err
    assert not (tmp_path / "run/run.lock").exists()


def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_removes_the_lock(tmp_path, capsys, monkeypatch):
    class FullAtEpoch2(ClassificationTask):
        def on_epoch_end(self, epoch, model, run):
            if epoch == 1:
                def full(fd):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                monkeypatch.setattr(os, "fsync", full)

    code, err = one_line_exit(capsys, train, config(tmp_path), FullAtEpoch2())
    monkeypatch.undo()
    assert code == 2 and "No space left on device; the previous version, if any, is kept; free space" in err
    run = tmp_path / "run"
    assert load_checkpoint(run / "checkpoint_latest.pth")["epoch"] == 1
    assert not (run / "run.lock").exists() and not list(run.glob(".*.tmp"))


def test_a_run_folder_removed_mid_run_is_one_line(tmp_path, capsys):
    class RemoveFolder(ClassificationTask):
        def on_epoch_end(self, epoch, model, run):
            if epoch == 1:
                shutil.rmtree(run.dir)

    code, err = one_line_exit(capsys, train, config(tmp_path), RemoveFolder())
    assert code == 2 and "No such file or directory" in err and "its folder was removed" in err


@pytest.mark.parametrize(("error", "expected"), [
    (OSError(errno.EROFS, "Read-only file system", "/x/events.out"), "cannot use /x/events.out: Read-only file system"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                  "to allocate 3600000000000000 bytes. Error code 12"), "out of memory (3.35e+06 GiB asked)"),
])
def test_storage_and_allocation_failures_anywhere_are_one_line(capsys, error, expected):
    def fails():
        raise error

    code, err = one_line_exit(capsys, fails)
    assert code == 2 and expected in err


# Damaged checkpoints


def small_checkpoint(path) -> dict:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    state = {"arch": "net", "signature": model_signature(model), "epoch": 2, "model": model.state_dict(),
             "history": [{"epoch": 1, "test_acc": 0.5}], "rng": torch.get_rng_state()}
    save_checkpoint(path, state)
    return state


def test_every_changed_byte_is_refused_or_changes_nothing(tmp_path):
    path = tmp_path / "c.pth"
    state = small_checkpoint(path)
    data = path.read_bytes()
    refused = 0
    for position in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path.write_bytes(damaged)
        try:
            loaded = load_checkpoint(path)
        except UserError:
            refused += 1
            continue
        # bytes torch does not read (zip CRCs, padding, timestamps): the same contents
        assert checkpoint.checksum(loaded) == checkpoint.checksum({"format": checkpoint.FORMAT, **state})
    assert refused > len(data) // 14


def test_a_flipped_bit_in_a_weight_is_refused_in_one_line(tmp_path):
    path = tmp_path / "c.pth"
    state = small_checkpoint(path)
    data = bytearray(path.read_bytes())
    raw = state["model"]["0.weight"].numpy().tobytes()
    data[data.index(raw) + 5] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(UserError, match=r"c.pth is damaged: its contents do not match the checksum saved in it"):
        load_checkpoint(path)


def test_checkpoints_without_a_checksum_still_load_and_an_edited_one_is_refused(tmp_path):
    state = small_checkpoint(tmp_path / "c.pth")
    torch.save({"format": "pfa-checkpoint-1", **state}, tmp_path / "old.pth")
    assert load_checkpoint(tmp_path / "old.pth")["epoch"] == 2
    edited = torch.load(tmp_path / "c.pth", weights_only=True)
    edited["epoch"] = 3
    torch.save(edited, tmp_path / "c.pth")
    with pytest.raises(UserError, match="is damaged"):
        load_checkpoint(tmp_path / "c.pth")


def test_eval_only_and_resume_refuse_a_damaged_checkpoint(tmp_path):
    train(config(tmp_path, epochs=1))
    path = tmp_path / "run/checkpoint_latest.pth"
    data = bytearray(path.read_bytes())
    tensor = next(v for v in weights(path).values() if v.numel() >= 16)
    data[data.index(tensor.numpy().tobytes())] ^= 0x40
    path.write_bytes(data)
    for cfg in (config(tmp_path, "eval", eval_only=True, resume=str(path)),
                config(tmp_path, epochs=2, resume=str(path))):
        with pytest.raises(UserError, match="is damaged"):
            train(cfg)
    assert not (tmp_path / "eval").exists()


def test_rank_refuses_a_damaged_checkpoint(tmp_path, capsys):
    from pfa import rank
    from pfa.tasks.fmnist import FMNISTConfig, build_model, describe

    cfg = FMNISTConfig(device="cpu", width=4)
    model, path = build_model(cfg), tmp_path / "checkpoint_best.pth"
    save_checkpoint(path, {"task": "fmnist", "arch": describe(cfg), "signature": model_signature(model), "epoch": 1,
                           "model": model.state_dict(), "config": cfg.to_dict()})
    data = bytearray(path.read_bytes())
    data[data.index(model.state_dict()["classifier.1.0.weight"].numpy().tobytes()[:64]) + 3] ^= 0x08
    path.write_bytes(data)
    code, err = one_line_exit(capsys, rank.main, ["--checkpoint", str(path), "--device", "cpu"])
    assert code == 2 and "is damaged: its contents do not match the checksum" in err


def test_a_checkpoint_of_another_task_is_named_as_such(tmp_path, capsys):
    from pfa import train as train_cli
    from pfa.tasks.fmnist import FMNISTConfig

    path = tmp_path / "checkpoint_latest.pth"
    save_checkpoint(path, {"task": "fmnist", "arch": "FashionMNISTNet(T=4, width=8)", "signature": "x", "epoch": 1,
                           "model": {}, "config": FMNISTConfig(device="cpu", train_samples=4096).to_dict()})
    code, err = one_line_exit(capsys, train_cli.main, ["cifar", "--dataset", "cifar10dvs", "--resume", str(path)])
    assert code == 2 and f"{path} is a checkpoint of the task fmnist (FashionMNISTNet(T=4, width=8)), not of " \
        "cifar" in err
    assert "python -m pfa.train fmnist --resume" in err and "train-samples" not in err


# Absurd sizes and empty data


def test_empty_data_is_refused_before_anything_is_created(tmp_path):
    empty = TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    for train_set, test_set, name in ((empty, blobs(8, 2), "training"), (blobs(8, 1), empty, "test")):
        with Run(config(tmp_path), "test") as run, pytest.raises(UserError, match=f"the {name} set has no samples"):
            fit(run, TinySpikingNet(), ClassificationTask(), train_set, test_set, arch="Tiny")
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_the_data_is_all_of_it(tmp_path):
    record, _ = train(config(tmp_path, batch_size=2**31 - 1, epochs=1))
    state = torch.load(tmp_path / "run/checkpoint_latest.pth", weights_only=True)
    assert record["epoch"] == 1 and {int(s["step"]) for s in state["optimizer"]["state"].values()} == {1}


def test_memory_far_beyond_the_device_is_refused_before_anything_is_created(tmp_path, monkeypatch):
    monkeypatch.setattr(capacity, "available_memory", lambda device: 4 * 2**10)
    with Run(config(tmp_path), "test") as run:
        with pytest.raises(UserError, match=r"the network has 16,640 parameters, .* GiB to train \(4 copies"):
            run.check_network(lambda: nn.Linear(64, 256))
        run.check_network(TinySpikingNet)  # 195 parameters, 3 kB with gradients and Adam's moments, fit
        with pytest.raises(UserError, match=r"one training step of batch size 16 needs at least .* GiB \(.* of "
                                            r"activations\), but cpu has 3.81e-06 GiB free; lower --batch-size"):
            fit(run, TinySpikingNet(), ClassificationTask(), blobs(96, 1), blobs(40, 2), arch="Tiny")
    assert not (tmp_path / "run").exists()


def test_the_estimates_draw_no_random_numbers_and_count_the_activations():
    model, data = TinySpikingNet(), blobs(4, 1)
    before = torch.get_rng_state()
    with torch.device("meta"):
        TinySpikingNet()
    sizes = [capacity.step_activations(model, ClassificationTask().train_step, data, n) for n in (100, 1000)]
    assert torch.equal(torch.get_rng_state(), before)
    # floats per sample: the input (8), and at each of the 4 steps the repeated input 8, linear 16, dropout 16, LIF 16,
    # linear 3, LIF 3
    assert sizes[1] == 10 * sizes[0] == 1000 * (8 + 4 * (8 + 16 + 16 + 16 + 3 + 3)) * 4


@needs_fmnist
@pytest.mark.parametrize(("argv", "expected"), [
    (["--batch-size", "100000000000000000000"], "--batch-size must be at most 2147483647"),
    (["--width", "10000000"], "the network has 79,300,001,770,000,176 parameters"),
    (["--time-steps", "200000"], "one training step of batch size 64 needs at least"),
    (["--workers", "100000"], "--workers must be 0 to"),
])
def test_absurd_sizes_at_the_entry_point(tmp_path, capsys, monkeypatch, argv, expected):
    from test_fmnist import run_py

    monkeypatch.setattr(capacity, "available_memory", lambda device: 2 * capacity.GIB)  # the trace passes it in time

    argv = ["--device", "cpu", "--width", "8", "--epochs", "1", "--train-samples", "256", "--test-samples", "128",
            "--batch-size", "64", "--out-dir", str(tmp_path / "out"), *argv]
    code, err = one_line_exit(capsys, run_py.main, argv)
    assert code == 2 and expected in err
    assert not (tmp_path / "out").exists()


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()


@needs_fmnist
@pytest.mark.parametrize("split", ["train", "t10k"])
def test_fashion_mnist_files_without_images_are_refused(tmp_path, capsys, split):
    from test_fmnist import run_py

    folder = tmp_path / "data"
    folder.mkdir()
    for packed in DEBIAN_DIR.glob("*.gz"):
        shutil.copy(packed, folder)
    (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros((0, 28, 28)))))
    (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(0))))
    argv = ["--device", "cpu", "--width", "8", "--epochs", "1", "--data-dir", str(folder), "--out-dir",
            str(tmp_path / "out")]
    code, err = one_line_exit(capsys, run_py.main, argv)
    assert code == 2 and f"the {'training' if split == 'train' else 'test'} set has no samples; check the" in err
    assert not (tmp_path / "out").exists()


def test_lif_names_zero_time_steps():
    with pytest.raises(ValueError, match=r"LIF: the input \[T, N, ...\] has T = 0 time steps \(shape \[0, 2, 3\]\)"):
        LIF()(torch.rand(0, 2, 3))


# Study files and sweeps


STUDY = {"name": "s", "task": "fmnist", "flags": {"device": "cpu"}, "grid": {"seed": [1]}}


@pytest.mark.parametrize(("change", "expected"), [
    ({"grid": {}}, "grid must map each flag (or axis name) to a non-empty list of values"),
    ({"grid": {"model": [{}]}}, "grid item of model must be a mapping of names to plain values"),
    ({"grid": {"seed": [[1]]}}, "grid values of seed must be plain values or mappings"),
    ({"flags": [1, 2]}, "flags must be a mapping of names to plain values"),
    ({"env": [1, 2]}, "env must be a mapping of names to plain values"),
    ({"notes": "a fact"}, "notes must be a list of lines"),
    ({"name": None}, "name must be a folder name for"),
    ({"name": "../elsewhere"}, "name must be a folder name for"),
    ({"task": ["fmnist"]}, "is not one of fmnist"),
])
def test_bad_study_files_are_one_line(tmp_path, capsys, change, expected):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **change}))
    code, err = one_line_exit(capsys, sweep.load_study, str(path), str(tmp_path / "results"))
    assert code == 2 and expected in err
    assert not (tmp_path / "results").exists()


def test_a_study_file_of_random_bytes_is_one_line(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    code, err = one_line_exit(capsys, sweep.load_study, str(path))
    assert code == 2 and f"study {path} is not UTF-8 text" in err


def test_a_run_held_by_another_process_is_skipped_as_running_elsewhere(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "grid": {"seed": [1, 2]}}))
    study = sweep.load_study(str(path), str(tmp_path / "results"))
    for spec in sweep.expand(study):
        folder = study.dir / "runs" / spec.id
        folder.mkdir(parents=True)
        (folder / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                     "started": process_start_time(os.getpid())}))
    log = io.StringIO()
    assert sweep.sweep(study, log) == []
    assert log.getvalue().count("running elsewhere (pid") == 2 and "2 run(s) running elsewhere were skipped" in \
        log.getvalue()


def test_a_signal_to_a_run_job_is_passed_on_to_its_run(tmp_path, monkeypatch):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    study = sweep.load_study(str(path), str(tmp_path / "results"))
    child = ("import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(130)); "
             "print('started', flush=True); time.sleep(60)")
    monkeypatch.setattr(sweep.RunSpec, "argv", lambda spec, study: [sys.executable, "-c", child])

    class CtrlC(io.StringIO):
        def write(self, text):
            if text.startswith("started"):
                os.kill(os.getpid(), signal.SIGINT)  # the job's own signal: it must reach the run
            return super().write(text)

    with StopSignals() as stop:
        assert sweep.train(study, sweep.expand(study)[0], CtrlC(), stop) == 130
    assert stop.signum == signal.SIGINT


@pytest.mark.parametrize(("launcher", "expected"), [
    ({"cluster": "pbs"}, "launcher cluster must be one of local, slurm"),
    ({"parallel": 0}, "launcher parallel (runs at a time) must be a whole number of at least 1"),
    ({"slurm_partitoin": "gpu"}, "submitit refused {'slurm_partitoin': 'gpu'}: Unknown argument 'partitoin'"),
    ({"timeout_min": "1h"}, 'Parameter "timeout_min" expected type'),
])
def test_bad_launchers_are_one_line(tmp_path, capsys, launcher, expected):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "launcher": launcher}))
    code, err = one_line_exit(capsys, sweep.load_study, str(path), str(tmp_path / "results"))
    assert code == 2 and expected in err and f"study {path}" in err
    assert not (tmp_path / "results").exists()


def test_a_slurm_study_off_a_cluster_is_one_line(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "launcher": {"cluster": "slurm", "parallel": 8, "timeout_min": 600,
                                                          "gpus_per_node": 1, "slurm_partition": "gpu"}}))
    study = sweep.load_study(str(path), str(tmp_path / "results"))
    assert (study.launcher.cluster, study.launcher.parallel) == ("slurm", 8)
    code, err = one_line_exit(capsys, sweep.sweep, study, io.StringIO())
    assert code == 2 and "cannot submit to slurm here" in err
