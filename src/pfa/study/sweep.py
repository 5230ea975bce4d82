"""A grid of training runs through an entry point, one folder each, resumable across sessions; then a report.

    python -m pfa.sweep STUDY.yaml            # run every unfinished run of the grid, then write the report
    python -m pfa.sweep STUDY.yaml --report   # only aggregate what has finished so far

STUDY.yaml::

    name: fmnist-attention          # results/<name>/
    task: fmnist                    # run as `python -m pfa.train TASK FLAGS... --out-dir results/<name>/runs/<run-id>`
    flags: {quick: true, device: cpu}
    env: {OMP_NUM_THREADS: 1}       # optional: environment of every run (also written into its command)
    notes: ["..."]                  # optional: facts about the runs that summary.md must carry
    baselines: ["none"]             # optional: the configurations the others are tested against (default: none, ma)
    grid:                           # the product of the lists, the first key varying slowest
      seed: [1, 2, 3]
      model:                        # an item that is a mapping sets several flags at once (the key only names the axis)
        - {attention: none}
        - {attention: pfa, rank: 4}

A run is finished when its metrics.json has `epoch` equal to the `epochs` of its config.yaml; finished runs are skipped
and an interrupted one continues from its checkpoint_latest.pth (`--resume`). A run's history is the engine's own
metrics.jsonl (metrics, learning rate, seconds and load average of every epoch).
"""

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from pfa.cli import guarded
from pfa.engine.runlog import HISTORY
from pfa.errors import UserError
from pfa.tasks import task_names


@dataclass
class Study:
    name: str
    task: str
    flags: dict
    grid: dict
    root: Path
    env: dict
    notes: list
    baselines: list | None = None

    @property
    def dir(self) -> Path:
        return self.root / self.name


@dataclass
class RunSpec:
    """One point of the grid: its folder name, its grid values (flag: value) and its flags (fixed + grid)."""

    id: str
    values: dict
    flags: dict

    def argv(self, study: Study) -> list[str]:
        args = [sys.executable, "-m", "pfa.train", study.task]
        for key, value in self.flags.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args + ["--out-dir", str(study.dir / "runs" / self.id)]

    def command(self, study: Study) -> str:
        """The shell command that reproduces this run (from the folder holding the results folder)."""
        return " ".join([*(f"{k}={shlex.quote(str(v))}" for k, v in study.env.items()),
                         shlex.join(["python", *self.argv(study)[1:]])])


def load_study(path: str, root: str = "results") -> Study:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read the study {path} ({type(e).__name__}); give a YAML file with name, entry, "
                        "flags and grid") from None
    if not isinstance(data, dict) or not {"name", "task", "grid"} <= set(data):
        raise UserError(f"study {path} must be a mapping with at least name, task and grid; "
                        "see python -m pfa.sweep -h")
    grid = data["grid"]
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise UserError(f"study {path}: grid must map each flag (or axis name) to a non-empty list of values")
    if data["task"] not in task_names():
        raise UserError(f"study {path}: task {data['task']!r} is not one of {', '.join(task_names())}")
    env = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
    notes = [str(n) for n in data.get("notes") or []]
    baselines = [str(b) for b in data["baselines"]] if data.get("baselines") else None
    return Study(str(data["name"]), str(data["task"]), dict(data.get("flags") or {}), grid, Path(root), env, notes,
                 baselines)


def _slug(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value).replace("/", "-").replace(" ", "")


def expand(study: Study) -> list[RunSpec]:
    """The grid's runs in order (first grid key slowest); ids like `seed-1_attention-pfa_rank-4`."""
    runs = []
    for combo in itertools.product(*study.grid.values()):
        values = {}
        for key, item in zip(study.grid, combo, strict=True):
            values.update(item if isinstance(item, dict) else {key: item})
        run_id = "_".join(f"{k.replace('_', '-')}-{_slug(v)}" for k, v in values.items())
        runs.append(RunSpec(run_id, values, {**study.flags, **values}))
    return runs


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def status(run_dir: Path) -> str:
    """'finished', 'resume' (has a checkpoint to continue from) or 'new'."""
    metrics, config = read_json(run_dir / "metrics.json"), read_json_yaml(run_dir / "config.yaml")
    if metrics and config and metrics.get("epoch") == config.get("epochs"):
        return "finished"
    return "resume" if (run_dir / "checkpoint_latest.pth").exists() else "new"


def read_json_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def train(study: Study, spec: RunSpec, log=sys.stdout) -> int:
    """Run (or continue) one run to the end; returns the entry point's exit status."""
    run_dir = study.dir / "runs" / spec.id
    argv = spec.argv(study)
    if status(run_dir) == "resume":
        argv += ["--resume", str(run_dir / "checkpoint_latest.pth")]
    else:  # a run killed before its first checkpoint starts again from scratch
        for name in ("metrics.json", HISTORY):
            (run_dir / name).unlink(missing_ok=True)
    print(f"[sweep] {shlex.join(argv)}", file=log, flush=True)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                               env={**os.environ, **study.env, "PYTHONUNBUFFERED": "1"})
    for line in process.stdout:
        log.write(line)
        log.flush()
    return process.wait()


def sweep(study: Study, log=sys.stdout) -> list[str]:
    """Bring every run of the grid to its end; returns the ids of runs that failed."""
    failed = []
    runs = expand(study)
    study.dir.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(runs, 1):
        if status(study.dir / "runs" / spec.id) == "finished":
            print(f"[sweep] {i}/{len(runs)} {spec.id}: finished, skipped", file=log, flush=True)
            continue
        print(f"[sweep] {i}/{len(runs)} {spec.id}", file=log, flush=True)
        if train(study, spec, log) != 0:
            failed.append(spec.id)
            print(f"[sweep] {spec.id} failed; the grid goes on", file=log, flush=True)
    return failed


@guarded
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pfa.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study's YAML file")
    parser.add_argument("--report", action="store_true", help="only write the report from the runs that finished")
    parser.add_argument("--results", default="results", help="folder holding <name>/ (default: results)")
    args = parser.parse_args(argv)
    study = load_study(args.study, args.results)
    failed = [] if args.report else sweep(study)
    from pfa.study.summary import write_report  # matplotlib is imported only when a report is written

    print(write_report(study, expand(study), command=shlex.join(["python", "-m", "pfa.sweep", args.study])))
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their output above, fix, and rerun "
                        "the same command (finished runs are skipped)")


if __name__ == "__main__":
    main()
