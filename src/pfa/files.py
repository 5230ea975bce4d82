"""Writing files safely: atomic replacement (`atomic_write`, `write_json`) and an exclusive folder lock
(`FolderLock`), shared by run folders and dataset preparation."""

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pfa.errors import UserError

# Refusals of the file system rather than mistakes of the program: entry points report them in one line.
STORAGE_ERRORS = {errno.ENOSPC: "free space and try again", errno.EDQUOT: "free space and try again",
                  errno.EROFS: "choose a writable folder", errno.EACCES: "choose a folder you can write to",
                  errno.EPERM: "choose a folder you can write to", errno.ENOENT: "its folder was removed"}


def storage_error(path: str | os.PathLike | None, error: OSError, kept: str = "", verb: str = "write") -> UserError:
    """One line for a write the file system refused: what, why, and what to do (`kept`: what survived it)."""
    hint = STORAGE_ERRORS.get(error.errno, "check the folder")
    return UserError(f"cannot {verb} {path or error.filename}: {error.strerror or error}{kept}; {hint}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some systems cannot open a directory; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside `path`, fsync it, rename it over `path` and fsync the folder: readers and
    crashes see the old file or the whole new one. A failed write (full disk, read-only folder) is a UserError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        raise storage_error(path, e, "; the previous version, if any, is kept") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """Atomic: readers of metrics.json never see half a file."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def clean_temporaries(folder: Path) -> None:
    """Remove the temporaries of writes a killed process left half done (never renamed, so never read)."""
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)


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


class FolderLock:
    """An exclusive lock file `folder/name` naming the host, pid and start time of the process that holds it.

    A lock whose process is gone (same host; pid absent, or reused by a process started at another time) is stale and
    taken over (`took_over` says so). While a live process of this host holds it, `acquire` waits (`wait=True`) or
    raises UserError; a lock from another host cannot be checked and is refused with a line saying how to clear it.
    `what` says what the folder is for, in messages ("in use by a run", "being prepared").
    """

    POLL_S = 1.0

    def __init__(self, folder: Path, name: str, what: str, hint: str, wait: bool = False):
        self.folder, self.path, self.what, self.hint, self.wait = Path(folder), Path(folder) / name, what, hint, wait
        self.took_over = False

    def holder(self) -> dict[str, Any] | None:
        """The holder recorded in the lock file, or None when it is missing or unreadable."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # its writer died before finishing it
        return holder if isinstance(holder, dict) and {"host", "pid"} <= set(holder) else None

    def live_holder(self) -> dict[str, Any] | None:
        """The holder while it holds the lock: a live process of this host, or any process of another host."""
        holder = self.holder()
        if holder is None or holder["host"] != socket.gethostname():
            return holder
        return holder if _alive(int(holder["pid"]), holder.get("started")) else None

    def acquire(self) -> "FolderLock":
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start_time(os.getpid())}
        announced = False
        for _ in range(1000):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and holder["host"] != me["host"]:
                    raise UserError(f"{self.folder} is {self.what} by pid {holder['pid']} on host {holder['host']}, "
                                    f"which this host cannot check; if that has ended, delete {self.path} and start "
                                    "again") from None
                if holder is None or not _alive(int(holder["pid"]), holder.get("started")):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    self.took_over = True
                    continue
                if not self.wait:
                    raise UserError(f"{self.folder} is {self.what} by a running process (pid {holder['pid']}); "
                                    f"{self.hint}") from None
                if not announced:
                    print(f"waiting for pid {holder['pid']}: {self.folder} is {self.what}", file=sys.stderr)
                    announced = True
                time.sleep(self.POLL_S)
                continue
            except OSError as e:
                raise storage_error(self.path, e) from None
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except OSError as e:
                self.path.unlink(missing_ok=True)
                raise storage_error(self.path, e) from None
            return self
        raise UserError(f"could not lock {self.folder}: other processes keep taking {self.path}")

    def release(self) -> None:
        holder = self.holder()
        if holder is not None and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
