"""Entry-point guard: a UserError becomes one line on stderr and exit status 2, never a traceback."""

import functools
import sys
from collections.abc import Callable

from pfa.errors import UserError


def guarded(main: Callable) -> Callable:
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
