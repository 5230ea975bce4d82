"""Loaded by the child processes of the fault tests (this folder on PYTHONPATH): PFA_TEST_KILL_AT=NAME:N kills the
process (SIGKILL) at its N-th atomic replacement of a file named NAME, after the temporary is written and before the
rename, as a power cut or an OOM kill would."""

import os
import signal

_target, _, _count = os.environ.get("PFA_TEST_KILL_AT", "").rpartition(":")
if _target:
    _replace, _seen = os.replace, {"n": 0}

    def _replace_or_die(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == _target:
            _seen["n"] += 1
            if _seen["n"] == int(_count):
                os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _replace_or_die
