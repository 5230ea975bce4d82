"""Run folders: a unique default name, an exclusive claim (run.lock), cleanup of interrupted writes, provenance.

The claim is a file naming the host, pid and process start time of the run that holds the folder. A second run into
the same folder is refused while that process lives; a claim whose process is gone (same host, pid absent or started
at another time) is stale and taken over; a claim from another host cannot be checked and is refused with a line
saying how to clear it.
"""

import importlib.metadata
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

from pfa.files import FolderLock

LOCK = "run.lock"


def default_name() -> str:
    """Time of start plus the pid: unique even for runs started in the same second on one host."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def claim(folder: Path) -> FolderLock:
    """Claim folder/run.lock for this process, taking over a stale one; UserError while another run holds it."""
    return FolderLock(folder, LOCK, "in use", "wait for it to end or choose another --out-dir").acquire()


def holder(folder: Path) -> dict | None:
    """The process that holds folder/run.lock now ({"host", "pid", ...}), None when no live process does."""
    return FolderLock(folder, LOCK, "in use", "").live_holder()


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


def machine() -> str:
    """This machine in words: CPU model, logical CPUs, operating system."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return f"{model or platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def provenance() -> dict[str, Any]:
    """What config.yaml records beside the settings: how the run was started, where, with which code."""
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                     "spikingjelly": _version("spikingjelly"),
                     "cupy": _version("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x")},
    }
