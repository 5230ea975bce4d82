"""Fault injection: FMNIST/run.py killed (SIGKILL) at chosen points recovers by the README's rule, losing nothing.

The rule: if the folder holds checkpoint_latest.pth, resume it; otherwise start the same command again. Either way
the finished run must equal an uninterrupted one: the same metrics history, the same final weights and the same best
checkpoint. Likewise a run stopped by SIGINT or SIGTERM (alone, under torchrun, or in a sweep), and runs into folders
that cannot be written (read-only as a user without root's override, a full file system).
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pfa.data.fashion_mnist import DEBIAN_DIR
from pfa.engine.runlog import HISTORY, metrics_of

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


def weights(out: Path, name: str = "checkpoint_latest.pth") -> dict[str, torch.Tensor]:
    return torch.load(out / name, weights_only=True)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "whole"
    subprocess.run(command("--out-dir", str(out)), env=environment(), check=True, capture_output=True, timeout=600)
    return out


def assert_same_run(out: Path, reference: Path) -> None:
    assert history(out) == history(reference) and [r["epoch"] for r in history(out)] == [1, 2, 3]
    assert json.loads((out / "metrics.json").read_text()) == history(reference)[-1]
    for name in ("checkpoint_latest.pth", "checkpoint_best.pth"):
        a, b = weights(out, name), weights(reference, name)
        assert all(torch.equal(a[k], b[k]) for k in b), name
    best = torch.load(out / "checkpoint_best.pth", weights_only=True)["epoch"]
    assert best == max(history(out), key=lambda r: (r["test_acc"], -r["epoch"]))["epoch"]  # what the record names
    assert not list(out.glob(".*.tmp")) and not (out / "run.lock").exists()


@pytest.mark.parametrize("kill_at", ["checkpoint_best.pth:1", "checkpoint_latest.pth:1", "metrics.jsonl:1",
                                     "metrics.json:1", "checkpoint_best.pth:2", "checkpoint_latest.pth:2",
                                     "metrics.jsonl:2", "checkpoint_latest.pth:3", "metrics.json:3"])
def test_killed_while_writing(tmp_path, uninterrupted, kill_at):
    improvements = len({r["best_test_acc"] for r in history(uninterrupted)})
    if kill_at == "checkpoint_best.pth:2" and improvements < 2:
        pytest.skip("the reference run improves only once: no second best to kill")
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_in_one_line_and_its_resume_command_ends_the_same(tmp_path, uninterrupted, signum):
    out = tmp_path / "run"
    process = subprocess.Popen(command("--out-dir", str(out)), env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("epoch=1 "):  # epoch 2 has begun
            process.send_signal(signum)
    err = process.stderr.read()
    process.wait(timeout=600)
    assert process.returncode == 128 + signum and err.count("\n") == 1 and "Traceback" not in err, err
    name = signal.Signals(signum).name
    assert err.startswith(f"stopped: {name} in epoch 2 of 3, after step ") or err.startswith(
        f"stopped: {name} after epoch 2 of 3")
    assert not (out / "run.lock").exists() and not list(out.glob(".*.tmp"))
    python, *argv = shlex.split(err.split("continue with: ")[1])
    assert python == "python" and argv[:3] == ["-m", "pfa.train", "fmnist"]
    done = subprocess.run([sys.executable, *argv], env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same_run(out, uninterrupted)


def test_every_process_of_a_torchrun_run_stops_at_the_same_step(tmp_path):
    def torchrun(*argv: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(ROOT / "FMNIST/run.py"), *TINY, *argv]

    whole, out = tmp_path / "whole", tmp_path / "run"
    subprocess.run(torchrun("--out-dir", str(whole)), env=environment(), check=True, capture_output=True, timeout=600)
    process = subprocess.Popen(torchrun("--out-dir", str(out)), env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stdout:
        if line.startswith("epoch=1 "):
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the launcher and both workers
    err = process.stderr.read()
    process.wait(timeout=600)
    stops = sorted(line for line in err.splitlines() if line.startswith("stopped: SIGINT"))
    assert len(stops) == 2 and stops[0] == stops[1], err[-3000:]  # both ranks, at the same place
    assert "--resume" in stops[0] and not (out / "run.lock").exists()
    resumed = subprocess.run(torchrun("--resume", str(out / "checkpoint_latest.pth")), env=environment(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(out, whole)


def _unprivileged() -> list[str] | None:
    """A prefix that runs a command without root's right to write anywhere (None where none is available)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") and subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                                                   "true"], capture_output=True).returncode == 0:
        return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    return None


@pytest.mark.skipif(_unprivileged() is None, reason="cannot drop root's override of file permissions here")
def test_read_only_folders_are_one_line_and_lose_nothing(tmp_path, uninterrupted):
    empty, run = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    shutil.copytree(uninterrupted, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for folder in (empty, run):
        folder.chmod(0o555)
    try:
        for argv in (["--out-dir", str(empty)], ["--epochs", "4", "--resume", str(run / "checkpoint_latest.pth")]):
            done = subprocess.run([*_unprivileged(), *command(*argv)], env=environment(), capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
            assert "run.lock: Permission denied; choose a folder you can write to" in done.stderr
    finally:
        for folder in (empty, run):
            folder.chmod(0o755)
    assert list(empty.iterdir()) == [] and not (run / "run.lock").exists()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def _can_mount_tmpfs() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs a private mount namespace for a small tmpfs")
def test_a_disk_full_mid_run_is_one_line_and_the_run_resumes_elsewhere(tmp_path, uninterrupted):
    size = (uninterrupted / "checkpoint_latest.pth").stat().st_size
    room = 2 * size + size // 2  # epoch 1's two checkpoints and the small files; not epoch 2's temporary
    script = (f"mount -t tmpfs -o size={room} tmpfs /mnt && {shlex.join(command('--out-dir', '/mnt/run'))}; "
              f"echo $? > {tmp_path}/status; cp -a /mnt/run {tmp_path}/run")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=environment(), capture_output=True, text=True,
                          timeout=600)
    out = tmp_path / "run"
    assert (tmp_path / "status").read_text().strip() == "2", done.stderr
    assert done.stderr.count("\n") == 1 and "No space left on device" in done.stderr, done.stderr
    assert torch.load(out / "checkpoint_latest.pth", weights_only=True)["epoch"] >= 1
    assert not (out / "run.lock").exists() and not list(out.glob(".*.tmp"))
    recover(out)
    assert_same_run(out, uninterrupted)


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs a private mount namespace for a small tmpfs")
def test_a_full_disk_before_the_start_is_one_line_without_a_lock(tmp_path):
    script = ("mount -t tmpfs -o size=64k tmpfs /mnt && (dd if=/dev/zero of=/mnt/fill bs=4k count=100 2>/dev/null; "
              f"true) && {shlex.join(command('--out-dir', '/mnt/run'))}; echo $? > {tmp_path}/status; "
              f"ls -A /mnt/run > {tmp_path}/left")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=environment(), capture_output=True, text=True,
                          timeout=600)
    assert (tmp_path / "status").read_text().strip() == "2", done.stderr
    assert done.stderr.count("\n") == 1 and "No space left on device; free space and try again" in done.stderr
    assert (tmp_path / "left").read_text() == ""


def _sweep(study: Path, results: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pfa.sweep", str(study), "--results", str(results)],
                            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            **popen)


STUDY = {"name": "tiny", "task": "fmnist", "flags": {"device": "cpu", "train_samples": 256, "test_samples": 128,
                                                     "width": 4, "batch_size": 64, "epochs": 2, "workers": 0},
         "grid": {"seed": [1, 2]}}


def test_a_sweep_cut_by_ctrl_c_records_the_run_as_cut_and_the_same_command_finishes_it(tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({**STUDY, "flags": {**STUDY["flags"], "epochs": 3}}))
    process = _sweep(tmp_path / "study.yaml", tmp_path / "results")
    history = tmp_path / "results/tiny/runs/seed-1" / HISTORY
    deadline = time.monotonic() + 600
    while not (history.exists() and history.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # after epoch 1, to the sweep alone: it passes the signal on to its job
    log = process.communicate(timeout=600)[0]
    assert not (history.parent / "run.lock").exists() and (history.parent / "checkpoint_latest.pth").exists()
    assert process.returncode == 130 and "seed-1 cut by SIGINT (resumable)" in log and "failed;" not in log, log
    assert "stopped: SIGINT: the sweep of tiny stopped at run 1 of 2" in log and "2/2" not in log
    again = _sweep(tmp_path / "study.yaml", tmp_path / "results")
    log = again.communicate(timeout=900)[0]
    assert again.returncode == 0 and "--resume" in log and "2 of 2 runs finished" in (
        tmp_path / "results/tiny/summary.md").read_text(), log


def test_two_sweeps_of_one_study_share_the_work_and_report_no_failure(tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY))
    first, second = (_sweep(tmp_path / "study.yaml", tmp_path / "results") for _ in range(2))
    logs = [p.communicate(timeout=900)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0, logs
    assert any("running elsewhere" in log or "finished elsewhere" in log for log in logs), logs
    assert not any("failed;" in log for log in logs)
    for seed in (1, 2):
        assert json.loads((tmp_path / f"results/tiny/runs/seed-{seed}/metrics.json").read_text())["epoch"] == 2
