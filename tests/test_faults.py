"""Fault injection: FMNIST/run.py killed (SIGKILL) at chosen points recovers by the README's rule, losing nothing.

The rule: if the folder holds checkpoint_latest.pth, resume it; otherwise start the same command again. Either way
the finished run must equal an uninterrupted one: the same metrics history and the same final weights.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pfa.data.fashion_mnist import DEBIAN_DIR
from pfa.engine.runlog import metrics_of

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--workers", "0", "--train-samples", "256", "--test-samples", "128", "--width", "4",
        "--batch-size", "64", "--epochs", "3"]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")]


def command(*argv: str) -> list[str]:
    return [sys.executable, str(ROOT / "FMNIST/run.py"), *TINY, *argv]


def environment(kill_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(Path(__file__).parent / "fault_injection")])}
    env.pop("PFA_TEST_KILL_AT", None)
    return env | ({"PFA_TEST_KILL_AT": kill_at} if kill_at else {})


def recover(out: Path) -> None:
    latest = out / "checkpoint_latest.pth"
    argv = ["--resume", str(latest)] if latest.exists() else ["--out-dir", str(out)]
    done = subprocess.run(command(*argv), env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def history(out: Path) -> list[dict]:
    """The metrics of each epoch (metrics.jsonl without its timing, which no two runs share)."""
    return [metrics_of(json.loads(line)) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint_latest.pth", weights_only=True)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "whole"
    subprocess.run(command("--out-dir", str(out)), env=environment(), check=True, capture_output=True, timeout=600)
    return out


def assert_same_run(out: Path, reference: Path) -> None:
    assert history(out) == history(reference) and [r["epoch"] for r in history(out)] == [1, 2, 3]
    assert json.loads((out / "metrics.json").read_text()) == history(reference)[-1]
    a, b = weights(out), weights(reference)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert not list(out.glob(".*.tmp")) and not (out / "run.lock").exists()


@pytest.mark.parametrize("kill_at", ["checkpoint_latest.pth:1", "metrics.json:1", "checkpoint_latest.pth:2",
                                     "checkpoint_best.pth:1", "metrics.json:3"])
def test_killed_while_writing(tmp_path, uninterrupted, kill_at):
    out = tmp_path / "run"
    killed = subprocess.run(command("--out-dir", str(out)), env=environment(kill_at), capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    assert list(out.glob(".*.tmp")) or kill_at.startswith("metrics")  # the temporary a kill leaves behind
    recover(out)
    assert_same_run(out, uninterrupted)


def test_killed_mid_epoch(tmp_path, uninterrupted):
    out = tmp_path / "run"
    process = subprocess.Popen(command("--out-dir", str(out)), env=environment(), stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("epoch=1 "):  # epoch 2 has begun
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=600)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    recover(out)
    assert_same_run(out, uninterrupted)
