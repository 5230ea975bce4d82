#!/usr/bin/env python3
"""Set up this project in a local virtual environment (.venv) and run it; needs only Python >= 3.11.

    python3 run.py quick [ARGS]   # FMNIST/run.py --quick ARGS: the main job
    python3 run.py test [ARGS]    # python -m pytest -q ARGS: the test suite
    python3 run.py setup          # the setup alone

The first call creates .venv, installs the pinned torch and this project with its test extras, and installs Debian's
dataset-fashion-mnist where apt works as root (or through sudo without a password). Later calls reuse all of it until
pyproject.toml, requirements.txt or the pins below change. Standard library only, so that it runs before any install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TORCH = ("torch==2.14.1", "torchvision==0.29.1")  # the versions CI tests; installed before the project
DEBIAN_DATA = Path("/usr/share/datasets/fashion-mnist")
COMMANDS = {"quick": ["FMNIST/run.py", "--quick"], "test": ["-m", "pytest", "-q"], "setup": None}
USAGE = "usage: python3 run.py quick|test|setup [ARGS...]  (ARGS go to FMNIST/run.py --quick or to pytest)"
DATA_HINT = ("no Fashion-MNIST found: put its idx files under DIR/FashionMNIST/raw (torchvision's layout) and pass "
             "--data-dir DIR, or install Debian's package dataset-fashion-mnist")
STAMP = "pfa-setup.sha256"


def say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def python_problem(version=sys.version_info, executable: str = sys.executable) -> str | None:
    """One line when this interpreter is too old for the project, else None."""
    if tuple(version[:2]) < (3, 11):
        return (f"this project needs Python >= 3.11, but {executable} is {version[0]}.{version[1]}; "
                "run this script with a newer python3")
    return None


def venv_problem(has_venv: bool, has_ensurepip: bool, has_pip: bool, version=sys.version_info) -> str | None:
    """One line when no virtual environment with pip can be made here (Debian ships venv's ensurepip separately)."""
    package = f"python{version[0]}.{version[1]}-venv"
    if not has_venv:
        return f"this Python has no venv module; install it (Debian/Ubuntu: sudo apt-get install {package}) and rerun"
    if not has_ensurepip and not has_pip:
        return (f"this Python cannot put pip into a virtual environment (no ensurepip); "
                f"install it (Debian/Ubuntu: sudo apt-get install {package}) and rerun")
    return None


def venv_python(root: Path) -> Path:
    return root / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def fingerprint(root: Path) -> str:
    """What the installed packages depend on: the torch pins, pyproject.toml and requirements.txt."""
    digest = hashlib.sha256("\n".join(TORCH).encode())
    for name in ("pyproject.toml", "requirements.txt"):
        path = root / name
        digest.update(b"\0" + name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()


def needs_install(root: Path) -> bool:
    stamp = root / ".venv" / STAMP
    return not stamp.exists() or stamp.read_text().strip() != fingerprint(root)


def apt_prefix(euid: int | None, has_apt: bool, sudo_works) -> list[str] | None:
    """How to call apt-get: directly as root, through `sudo -n` when that needs no password, or not at all (None)."""
    if not has_apt:
        return None
    if euid == 0:
        return []
    return ["sudo", "-n"] if sudo_works() else None


def sudo_works() -> bool:
    if shutil.which("sudo") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def wants_data(args: list[str]) -> bool:
    """Whether to look for Debian's Fashion-MNIST: not when the arguments name their own --data-dir."""
    return not any(a == "--data-dir" or a.startswith("--data-dir=") for a in args)


def step(message: str, command: list[str], root: Path, env: dict | None = None) -> int:
    say(message)
    return subprocess.run(command, cwd=root, env=env).returncode


def create_venv(root: Path) -> int:
    has_ensurepip = importlib.util.find_spec("ensurepip") is not None
    problem = venv_problem(importlib.util.find_spec("venv") is not None, has_ensurepip,
                           importlib.util.find_spec("pip") is not None)
    if problem:
        say(problem)
        return 2
    base = [sys.executable, "-m", "venv", "--clear"] + ([] if has_ensurepip else ["--without-pip"])
    version = ".".join(map(str, sys.version_info[:3]))
    rc = step(f"creating .venv with Python {version} ({sys.executable})", base + [".venv"], root)
    if rc == 0 and not has_ensurepip:  # Debian without python3-venv: this Python's own pip installs pip into .venv
        rc = step("installing pip into .venv with this Python's pip (no ensurepip here)",
                  [sys.executable, "-m", "pip", "--python", str(venv_python(root)), "install", "-q", "pip"], root)
    return rc


def install(root: Path) -> int:
    python = str(venv_python(root))
    for message, command in ((f"pip install {' '.join(TORCH)} (the first time: a large download)",
                              [python, "-m", "pip", "install", *TORCH]),
                             ("pip install -e '.[test]' (this project, its dependencies, pytest, ruff, hadolint)",
                              [python, "-m", "pip", "install", "-e", ".[test]", *TORCH])):  # pins: torch stays
        rc = step(message, command, root)
        if rc:
            say(f"pip failed (exit {rc}); fix the error above and rerun")
            return rc
    (root / ".venv" / STAMP).write_text(fingerprint(root) + "\n")
    return 0


def install_data(root: Path) -> None:
    prefix = apt_prefix(os.geteuid() if hasattr(os, "geteuid") else None, shutil.which("apt-get") is not None,
                        sudo_works)
    if prefix is None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["update", "-qq"], ["install", "-y", "-qq", "dataset-fashion-mnist"]):
        command = prefix + ["apt-get", *args]
        if step(" ".join(c for c in command if c != "-qq"), command, root, env):
            return


def setup(root: Path, look_for_data: bool) -> int:
    """Make .venv current (create, install, stamp) and, on a fresh install, fetch Debian's Fashion-MNIST."""
    fresh = False
    if not venv_python(root).exists():
        rc = create_venv(root)
        if rc:
            return rc
    if needs_install(root):
        fresh = True
        rc = install(root)
        if rc:
            return rc
    else:
        say(".venv is up to date (delete .venv to reinstall)")
    if look_for_data and not DEBIAN_DATA.is_dir():
        if fresh:
            install_data(root)
        if not DEBIAN_DATA.is_dir():
            say(DATA_HINT)
    return 0


def child_command(root: Path, command: str, args: list[str]) -> list[str]:
    return [str(venv_python(root)), *COMMANDS[command], *args]


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    argv = sys.argv[1:] if argv is None else argv
    problem = python_problem()
    if problem:
        say(problem)
        return 2
    if not argv or argv[0] not in COMMANDS:
        say(f"unknown command {argv[0]!r}; {USAGE}" if argv else USAGE)
        return 2
    command, args = argv[0], argv[1:]
    rc = setup(root, wants_data(args))
    if rc or COMMANDS[command] is None:
        return rc
    child = child_command(root, command, args)
    bin_dir = str(venv_python(root).parent)  # as if .venv were activated: pytest finds ruff, hadolint, torchrun there
    env = dict(os.environ, VIRTUAL_ENV=str(root / ".venv"), PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    say("running " + " ".join(["python", *COMMANDS[command], *args]))
    if os.name != "posix":
        return subprocess.run(child, cwd=root, env=env).returncode
    os.chdir(root)
    os.execve(child[0], child, env)  # the job replaces this process: it gets the signals and sets the exit status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
