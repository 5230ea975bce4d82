"""Run folders: exclusive claims, stale ones recovered, unique names, leftovers cleaned, bad --out-dir refused."""

import json
import os
import socket
import subprocess
import sys

import pytest
from test_engine import config, train

from pfa.engine import rundir
from pfa.engine.run import Run
from pfa.errors import UserError
from pfa.files import process_start_time


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _lock(folder, **holder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / rundir.LOCK).write_text(json.dumps(holder))


def test_a_live_claim_is_refused_and_nothing_is_touched(tmp_path):
    me = {"host": socket.gethostname(), "pid": os.getppid(), "started": process_start_time(os.getppid())}
    _lock(tmp_path / "run", **me)
    with pytest.raises(UserError, match=rf"run is in use by a running process \(pid {os.getppid()}\); wait for it"):
        train(config(tmp_path))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [rundir.LOCK]


@pytest.mark.parametrize("stale", ["dead pid", "reused pid", "unreadable"])
def test_a_stale_claim_is_recovered(tmp_path, stale):
    if stale == "dead pid":
        _lock(tmp_path / "run", host=socket.gethostname(), pid=_dead_pid(), started="1")
    elif stale == "reused pid":  # a live pid, but not the process that wrote the claim
        _lock(tmp_path / "run", host=socket.gethostname(), pid=os.getppid(), started="-1")
    else:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / rundir.LOCK).write_text("{")
    train(config(tmp_path, epochs=1))
    assert (tmp_path / "run/checkpoint_latest.pth").exists() and not (tmp_path / "run" / rundir.LOCK).exists()


def test_a_claim_from_another_host_says_how_to_clear_it(tmp_path):
    _lock(tmp_path / "run", host="elsewhere", pid=os.getpid(), started=None)
    with pytest.raises(UserError, match=r"in use by pid \d+ on host elsewhere, which this host cannot check; if that "
                                        r"has ended, delete .*run.lock and start again"):
        train(config(tmp_path))


def test_default_names_differ_for_runs_started_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = "from pfa.engine import rundir; print(rundir.default_name())"
    names = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
             for _ in range(2)]
    assert names[0] != names[1]
    cfg = config(tmp_path, out_dir=None)
    Run(cfg, "demo")
    assert cfg.out_dir.startswith("runs/demo/") and cfg.out_dir.endswith(f"-{os.getpid()}")


def test_temporaries_of_a_killed_write_are_cleaned(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".checkpoint_latest.pth.123.tmp").write_bytes(b"half")
    (folder / "config.yaml").write_text("epochs: 3\n")  # a first run killed before its first checkpoint
    train(config(tmp_path, epochs=1))
    assert not list(folder.glob(".*.tmp")) and (folder / "checkpoint_latest.pth").exists()


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(UserError, match=r"--out-dir .*run is a file; give a folder path"):
        train(config(tmp_path))


def test_out_dir_that_cannot_be_created(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr("pathlib.Path.mkdir", read_only)
    with pytest.raises(UserError, match=r"cannot create --out-dir .*run: Read-only file system; choose another"):
        train(config(tmp_path))
