"""Entry-point guard: a UserError becomes one line on stderr and exit status 2, never a traceback.

Likewise a write the file system refuses (full disk, read-only or removed folder; exit 2), a memory allocation far
beyond the machine (exit 2), and a stop by SIGINT or SIGTERM (exit 130 or 143, 128 + the signal): SIGTERM unwinds
like Ctrl-C, so locks are released and half-written files removed.
"""

import functools
import re
import signal
import sys
import threading
from collections.abc import Callable

from pfa.errors import Interrupted, UserError
from pfa.files import STORAGE_ERRORS, storage_error


def _terminate(signum, frame):
    raise Interrupted(signum)


def _out_of_memory(error: RuntimeError) -> str | None:
    """The line for an allocation the device refused, None for any other RuntimeError."""
    text = str(error)
    if type(error).__name__ != "OutOfMemoryError" and "can't allocate memory" not in text:
        return None
    size = re.search(r"allocate (\d+) bytes", text)
    asked = f" ({int(size.group(1)) / 2**30:.3g} GiB asked)" if size else ""
    return f"out of memory{asked}: lower --batch-size or the network's size"


def guarded(main: Callable) -> Callable:
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except (Interrupted, KeyboardInterrupt) as e:
            first = e
            while isinstance(first.__context__, Interrupted):  # a second signal while stopping: report the first
                first = first.__context__
            stop = first if isinstance(first, Interrupted) else Interrupted(signal.SIGINT)
            print(f"stopped: {stop}", file=sys.stderr)
            sys.exit(128 + stop.signum)
        except OSError as e:
            if e.errno not in STORAGE_ERRORS:
                raise
            print(f"error: {storage_error(e.filename, e, verb='use')}", file=sys.stderr)
            sys.exit(2)
        except RuntimeError as e:
            line = _out_of_memory(e)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

    return wrapper
