"""Train any registered task: `python -m pfa.train TASK [flags]` (`--help` after the task lists its flags).

    python -m pfa.train fmnist --quick
    python -m pfa.train cifar --dataset cifar10dvs --data-dir data/CIFAR10DVS
    python -m pfa.train generation --dataset fashion

`FMNIST/run.py`, `CIFAR/main.py` and `Generation/main_fsvae.py` are the same commands with the task fixed.
"""

import sys
from collections.abc import Callable

from pfa.cli import guarded
from pfa.engine.config import parse_config
from pfa.errors import UserError
from pfa.tasks import get_task, task_names

USAGE = f"usage: python -m pfa.train TASK [flags]; TASK is one of {', '.join(task_names())} (TASK --help: its flags)"


def run_task(name: str, argv: list[str], prog: str | None = None) -> dict:
    """Parse `argv` as the flags of task `name` and train it; returns the last metrics record."""
    task = get_task(name)
    return task.train(parse_config(task.config, argv, prog=prog or f"python -m pfa.train {name}"))


def task_command(name: str, prog: str) -> Callable[[list[str] | None], dict]:
    """The `main` of an alias script: task `name`'s command under the name `prog` (e.g. FMNIST/run.py)."""

    @guarded
    def main(argv: list[str] | None = None) -> dict:
        return run_task(name, sys.argv[1:] if argv is None else argv, prog)

    return main


@guarded
def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return None
    if argv[0] not in task_names():
        raise UserError(f"unknown task {argv[0]!r}; {USAGE}")
    return run_task(argv[0], argv[1:])


if __name__ == "__main__":
    main()
