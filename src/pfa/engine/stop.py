"""Stopping a run between steps: while `StopSignals` is active, SIGINT and SIGTERM set a flag instead of acting.

The training loop reads the flag after every step (`requested`, agreed by all processes under torchrun, so that every
rank stops at the same step) and stops there. Data-loading workers ignore SIGINT (`ignore_interrupts`): a Ctrl-C in a
terminal reaches the whole process group, and the main process ends the workers itself.
"""

import signal
import threading
from collections.abc import Callable

from pfa.engine.distributed import max_over_processes

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """A context manager (effective in the main thread) recording the first SIGINT or SIGTERM; repeats are ignored.
    `on_signal`, when set, is also called with every signal received (e.g. to pass it on to a child process)."""

    def __init__(self):
        self.signum = 0
        self.on_signal: Callable[[int], None] | None = None
        self._previous = {}

    def _record(self, signum, frame) -> None:
        self.signum = self.signum or signum
        if self.on_signal is not None:
            self.on_signal(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._record) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)

    def requested(self) -> int:
        """The signal that asked this run to stop (from any process of it), 0 while none has."""
        return max_over_processes(self.signum)


def ignore_interrupts(worker_id: int) -> None:
    """A DataLoader `worker_init_fn`: the worker leaves SIGINT to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
