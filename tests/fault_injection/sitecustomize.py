"""Loaded by the child processes of the fault tests (this folder on PYTHONPATH): PFA_TEST_KILL_AT=NAME:N kills the
process (SIGKILL) at its N-th write of a file named NAME, as a power cut or an OOM kill would: for an atomic
replacement after the temporary is written and before the rename, for an append (metrics.jsonl) once it is synced."""

import os
import signal

_target, _, _count = os.environ.get("PFA_TEST_KILL_AT", "").rpartition(":")
if _target:
    _replace, _fsync, _seen = os.replace, os.fsync, {"n": 0}

    def _count_or_die() -> None:
        _seen["n"] += 1
        if _seen["n"] == int(_count):
            os.kill(os.getpid(), signal.SIGKILL)

    def _replace_or_die(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == _target:
            _count_or_die()
        return _replace(src, dst, *args, **kwargs)

    def _fsync_or_die(fd):
        _fsync(fd)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == _target:
            _count_or_die()

    os.replace, os.fsync = _replace_or_die, _fsync_or_die
