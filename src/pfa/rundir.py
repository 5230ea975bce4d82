"""Run folders: a unique default name, an exclusive claim (run.lock), cleanup of interrupted writes, provenance.

The claim is a file naming the host, pid and process start time of the run that holds the folder. A second run into
the same folder is refused while that process lives; a claim whose process is gone (same host, pid absent or started
at another time) is stale and taken over; a claim from another host cannot be checked and is refused with a line
saying how to clear it.
"""

import importlib.metadata
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pfa.errors import UserError

LOCK = "run.lock"


def default_name() -> str:
    """Time of start plus the pid: unique even for runs started in the same second on one host."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name before ")" may hold spaces


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_start_time(pid)
    return started is None or now is None or now == started  # another start time: the pid was reused


def _holder(lock: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) and {"host", "pid"} <= set(holder) else None
    except (OSError, ValueError):
        return None  # unreadable: its writer died before finishing it


def claim(folder: Path) -> Path:
    """Create folder/run.lock for this process, taking over a stale one; UserError while another run holds it."""
    lock = folder / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start_time(os.getpid())}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if holder is not None and holder["host"] != me["host"]:
                raise UserError(f"{folder} is claimed by pid {holder['pid']} on host {holder['host']}, which this "
                                f"host cannot check; if that run has ended, delete {lock} and start again") from None
            if holder is not None and _alive(int(holder["pid"]), holder.get("started")):
                raise UserError(f"{folder} is in use by a running process (pid {holder['pid']}); wait for it to end "
                                "or choose another --out-dir") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return lock
    raise UserError(f"could not claim {folder}: other processes keep taking {lock}; choose another --out-dir")


def release(lock: Path) -> None:
    holder = _holder(lock)
    if holder is not None and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname():
        lock.unlink(missing_ok=True)


def clean_temporaries(folder: Path) -> None:
    """Remove the temporaries of writes a killed run left half done (never renamed, so never read)."""
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def provenance() -> dict[str, Any]:
    """What config.yaml records beside the settings: how the run was started, where, with which code."""
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                     "spikingjelly": _version("spikingjelly"),
                     "cupy": _version("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x")},
    }
