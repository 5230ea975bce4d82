"""FMNIST/run.py under `torchrun --standalone --nproc_per_node 2` on CPU (gloo), checked against one process."""

import json
import os
import subprocess
import sys

import pytest
import torch
from test_fmnist import ROOT, run_py

from pfa.data.fashion_mnist import DEBIAN_DIR

pytestmark = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")


def test_two_gloo_processes_shard_the_data_reduce_the_metrics_and_write_once(tmp_path):
    out = tmp_path / "ddp"
    args = ["--device", "cpu", "--width", "8", "--dropout", "0", "--test-samples", "101", "--batch-size", "32"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "FMNIST/run.py"), *args, "--train-samples", "256", "--epochs", "2", "--out-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epoch"] == 2
    correct = metrics["test_acc"] * 101
    assert correct == pytest.approx(round(correct), abs=1e-6)  # every one of the 101 test images counted exactly once
    assert done.stdout.count("epoch=2 ") == 1  # only rank 0 reports
    assert len(list((out / "tensorboard").iterdir())) == 1
    state = torch.load(out / "checkpoint_latest.pth", weights_only=True)
    steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {2 * 4}  # 256 images split over 2 ranks, batches of 32: 4 steps an epoch, not 8

    alone = run_py.main([*args, "--eval-only", "--resume", str(out / "checkpoint_latest.pth"),
                         "--out-dir", str(tmp_path / "alone")])
    assert alone["test_acc"] == pytest.approx(metrics["test_acc"], abs=1e-12)
    assert alone["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)
