"""A grid of training runs through an entry point, one folder each, resumable across sessions; then a report.

    python -m pfa.sweep STUDY.yaml            # run every unfinished run of the grid, then write the report
    python -m pfa.sweep STUDY.yaml --parallel 2   # two runs at a time (local processes)
    python -m pfa.sweep STUDY.yaml --report   # only aggregate what has finished so far

STUDY.yaml::

    name: fmnist-attention          # results/<name>/
    task: fmnist                    # run as `python -m pfa.train TASK FLAGS... --out-dir results/<name>/runs/<run-id>`
    flags: {quick: true, device: cpu}
    env: {OMP_NUM_THREADS: 1}       # optional: environment of every run (also written into its command)
    notes: ["..."]                  # optional: facts about the runs that summary.md must carry
    baselines: ["none"]             # optional: the configurations the others are tested against (default: none, ma)
    launcher: {parallel: 2}         # optional: submitit jobs, N at a time; on a cluster e.g. {cluster: slurm,
                                    #   parallel: 32, timeout_min: 720, gpus_per_node: 1, slurm_partition: gpu}
    grid:                           # the product of the lists, the first key varying slowest
      seed: [1, 2, 3]
      model:                        # an item that is a mapping sets several flags at once (the key only names the axis)
        - {attention: none}
        - {attention: pfa, rank: 4}

Before the first job, every run's flags are parsed as its task parses them: a mistyped flag or value fails at once.
A run is finished when its metrics.json has `epoch` equal to the `epochs` of its config.yaml; finished runs are skipped
and an interrupted one continues from its checkpoint_latest.pth (`--resume`). A run's history is the engine's own
metrics.jsonl (metrics, learning rate, seconds and load average of every epoch).

Each run is a submitit job (pfa.study.launcher: local processes here, SLURM jobs on a cluster) whose output goes to
the run's sweep.log; the sweep prints a line as each starts and ends. A run that another process holds (its run.lock,
e.g. a second sweep of the same file) is skipped as running elsewhere, not failed. SIGINT or SIGTERM is passed on to
the runs in progress, which stop after their current step; the sweep records them as cut (resumable), stops, and exits
with 130 or 143: the same command continues it.
"""

import io
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import submitit
import yaml

from pfa.engine import rundir
from pfa.engine.config import load_yaml, parse_config
from pfa.engine.runlog import HISTORY
from pfa.engine.stop import StopSignals
from pfa.errors import Interrupted, UserError
from pfa.study.launcher import Launcher, parse_launcher
from pfa.tasks import get_task, task_names

PLAIN = str | int | float | bool  # what a flag, an environment variable or a grid value may be


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
    launcher: Launcher = field(default_factory=Launcher)

    @property
    def dir(self) -> Path:
        return self.root / self.name


@dataclass
class RunSpec:
    """One point of the grid: its folder name, its grid values (flag: value) and its flags (fixed + grid)."""

    id: str
    values: dict
    flags: dict

    def flag_args(self, study: Study) -> list[str]:
        """The run's flags as its task reads them, `--out-dir` last."""
        args = []
        for key, value in self.flags.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args + ["--out-dir", str(study.dir / "runs" / self.id)]

    def argv(self, study: Study) -> list[str]:
        return [sys.executable, "-m", "pfa.train", study.task, *self.flag_args(study)]

    def command(self, study: Study) -> str:
        """The shell command that reproduces this run (from the folder holding the results folder)."""
        return " ".join([*(f"{k}={shlex.quote(str(v))}" for k, v in study.env.items()),
                         shlex.join(["python", *self.argv(study)[1:]])])


def _plain_mapping(value, what: str, path: str, empty: bool = True) -> dict:
    """`value` checked to be a mapping of names to plain values (None: {} where `empty` allows it)."""
    value = {} if value is None and empty else value
    if not isinstance(value, dict) or not (value or empty) or not all(
            isinstance(k, str) and isinstance(v, PLAIN) for k, v in value.items()):
        raise UserError(f"study {path}: {what} must be a mapping of names to plain values, e.g. {{device: cpu}}; got "
                        f"{value!r:.80}")
    return value


def load_study(path: str, root: str = "results", parallel: int | None = None) -> Study:
    """The study file checked field by field; `parallel` overrides its launcher's runs at a time."""
    data = load_yaml(path, "study")
    missing = [key for key in ("name", "task", "grid") if key not in data]
    if missing:
        raise UserError(f"study {path} lacks {', '.join(missing)}; a study is a mapping with at least name, task and "
                        "grid (see python -m pfa.sweep -h)")
    name = data["name"]
    if not isinstance(name, str | int) or isinstance(name, bool) or not str(name).strip() or "/" in str(name) or str(
            name).startswith("."):
        raise UserError(f"study {path}: name must be a folder name for {root}/<name>/ (not empty, no '/', not "
                        f"starting with '.'); got {name!r}")
    grid = data["grid"]
    if not isinstance(grid, dict) or not grid or not all(isinstance(k, str) and isinstance(v, list) and v
                                                         for k, v in grid.items()):
        raise UserError(f"study {path}: grid must map each flag (or axis name) to a non-empty list of values, e.g. "
                        f"{{seed: [1, 2]}}; got {grid!r:.80}")
    for key, items in grid.items():
        for item in items:
            if isinstance(item, dict):
                _plain_mapping(item, f"grid item of {key}", path, empty=False)
            elif not isinstance(item, PLAIN):
                raise UserError(f"study {path}: grid values of {key} must be plain values or mappings of flags; got "
                                f"{item!r:.80}")
    if not isinstance(data["task"], str) or data["task"] not in task_names():
        raise UserError(f"study {path}: task {data['task']!r} is not one of {', '.join(task_names())}")
    env = {k: str(v) for k, v in _plain_mapping(data.get("env"), "env", path).items()}
    flags = _plain_mapping(data.get("flags"), "flags", path)
    notes = data.get("notes") or []
    if not isinstance(notes, list):
        raise UserError(f"study {path}: notes must be a list of lines; got {notes!r:.80}")
    notes = [str(n) for n in notes]
    baselines = [str(b) for b in data["baselines"]] if data.get("baselines") else None
    launcher = parse_launcher(data.get("launcher"), path, parallel)
    return Study(str(name), data["task"], flags, grid, Path(root), env, notes, baselines, launcher)


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


def check_flags(study: Study) -> None:
    """Every run's flags parsed as its task will parse them, so a mistyped flag or value fails now, in one line, not
    when its run comes up hours into the sweep."""
    config = get_task(study.task).config
    for spec in expand(study):
        try:
            parse_config(config, spec.flag_args(study), prog=f"python -m pfa.train {study.task}")
        except UserError as error:
            raise UserError(f"study {study.name}, run {spec.id}: {error}; fix the study file (no run was started)") \
                from None


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


def run_argv(study: Study, spec: RunSpec) -> list[str]:
    """The run's command now: its flags, and `--resume` when it has a checkpoint to continue from."""
    run_dir = study.dir / "runs" / spec.id
    argv = spec.argv(study)
    return argv + ["--resume", str(run_dir / "checkpoint_latest.pth")] if status(run_dir) == "resume" else argv


def train(study: Study, spec: RunSpec, log=sys.stdout, stop: StopSignals | None = None) -> int:
    """Run (or continue) one run to the end in a child process; returns its exit status. Signals `stop` records while
    the run is in progress are passed on to it. The body of every launcher job (`pfa.study.launcher.RunJob`)."""
    argv = run_argv(study, spec)
    if "--resume" not in argv:  # a run killed before its first checkpoint starts again from scratch
        for name in ("metrics.json", HISTORY):
            (study.dir / "runs" / spec.id / name).unlink(missing_ok=True)
    print(f"[sweep] {shlex.join(argv)}", file=log, flush=True)
    try:  # a real file: the run writes it itself, and so outlives a killed job
        to_file = log.fileno() >= 0
    except (AttributeError, io.UnsupportedOperation):
        to_file = False
    process = subprocess.Popen(argv, stdout=log if to_file else subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1, env={**os.environ, **study.env, "PYTHONUNBUFFERED": "1"})
    if stop is not None:
        stop.on_signal = process.send_signal
        if stop.signum:  # received while the run was starting
            process.send_signal(stop.signum)
    try:
        for line in [] if to_file else process.stdout:
            log.write(line)
            log.flush()
        return process.wait()
    finally:
        if stop is not None:
            stop.on_signal = None


class RunJob:
    """The body of one submitit job: bring one run to its end (`pfa.study.sweep.train`), its output appended to the
    run's `sweep.log`. A job that its cluster preempts or times out is queued again and resumes from the run's latest
    checkpoint."""

    def __init__(self, study, spec):
        self.study, self.spec = study, spec

    def __call__(self) -> int:
        folder = self.study.dir / "runs" / self.spec.id
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "sweep.log", "a") as log, StopSignals() as stop:
            code = train(self.study, self.spec, log, stop)
        print(f"{self.spec.id}: exit status {code}", flush=True)
        return code

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(RunJob(self.study, self.spec))


def _elsewhere(run_dir: Path) -> str | None:
    """'pid N' (and host) of another process that holds the run now, None when none does."""
    holder = rundir.holder(run_dir)
    return None if holder is None else f"pid {holder['pid']} on {holder['host']}"


def _job_status(job) -> int | str:
    """A finished job's exit status, or the first line of why the job itself failed."""
    try:
        return job.result()
    except Exception as error:  # submitit's FailedJobError and UncompletedJobError carry the job's own failure
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _wait_released(run_dirs: list[Path], seconds: float = 300) -> None:
    """Wait until no process holds these runs (runs that were signalled end their current step first)."""
    deadline = time.monotonic() + seconds
    while any(rundir.holder(d) is not None for d in run_dirs) and time.monotonic() < deadline:
        time.sleep(0.5)


class _Outcomes:
    """What became of each run, written to the sweep's log as it happens."""

    def __init__(self, study: Study, log):
        self.study, self.log = study, log
        self.failed, self.elsewhere = [], []

    def say(self, text: str) -> None:
        print(f"[sweep] {text}", file=self.log, flush=True)

    def settled(self, run_dir: Path, label: str, finished: str = "finished, skipped") -> bool:
        """True, and said, when the run needs no job of ours: it has finished, or another process holds it."""
        if status(run_dir) == "finished":
            self.say(f"{label}: {finished}")
        elif (holder := _elsewhere(run_dir)) is not None:
            self.say(f"{label}: running elsewhere ({holder}), skipped")
            self.elsewhere.append(run_dir.name)
        else:
            return False
        return True

    def ended(self, spec: RunSpec, job, seconds: float) -> None:
        run_dir = self.study.dir / "runs" / spec.id
        code = _job_status(job)
        if code == 0:
            self.say(f"{spec.id} finished ({seconds / 60:.1f} min)")
        elif not self.settled(run_dir, spec.id, "finished elsewhere"):
            self.failed.append(spec.id)
            why = f"exit status {code}" if isinstance(code, int) else f"the job failed: {code}"
            self.say(f"{spec.id} failed ({why}; its output: {run_dir / 'sweep.log'}); the grid goes on")


def sweep(study: Study, log=sys.stdout) -> list[str]:
    """Bring every run of the grid to its end through the study's launcher (submitit jobs, `parallel` at a time);
    returns the ids of runs that failed. Every run's flags are checked before the first job (`check_flags`). Runs
    that another process holds are skipped; SIGINT or SIGTERM stops the runs in progress after their current step
    (resumable) and then the sweep (Interrupted)."""
    check_flags(study)
    runs = expand(study)
    study.dir.mkdir(parents=True, exist_ok=True)
    executor = study.launcher.executor(study.dir / "jobs")
    outcomes, running, i = _Outcomes(study, log), {}, 0
    with StopSignals() as stop:
        while not stop.signum and (i < len(runs) or running):
            while i < len(runs) and len(running) < study.launcher.parallel and not stop.signum:
                spec, i = runs[i], i + 1
                run_dir = study.dir / "runs" / spec.id
                where = f"{i}/{len(runs)} {spec.id}"
                if not outcomes.settled(run_dir, where):
                    job = executor.submit(RunJob(study, spec))
                    outcomes.say(f"{where}: job {job.job_id} ({study.launcher.cluster}), output in "
                                 f"{run_dir / 'sweep.log'}")
                    outcomes.say(shlex.join(run_argv(study, spec)))
                    running[spec.id] = (spec, job, time.monotonic())
            time.sleep(0.5)
            for spec, job, started in [r for r in running.values() if r[1].done()]:
                del running[spec.id]
                outcomes.ended(spec, job, time.monotonic() - started)
        if stop.signum:
            for _, job, _ in running.values():
                job.cancel(check=False)
            _wait_released([study.dir / "runs" / spec_id for spec_id in running])
            for spec_id in running:
                outcomes.say(f"{spec_id} cut by {signal.Signals(stop.signum).name} (resumable)")
    if stop.signum:
        raise Interrupted(stop.signum, f"{signal.Signals(stop.signum).name}: the sweep of {study.name} stopped at run "
                                       f"{i} of {len(runs)}; run the same command to continue it (finished runs are "
                                       "skipped, a cut one resumes)")
    if outcomes.elsewhere:
        outcomes.say(f"{len(outcomes.elsewhere)} run(s) running elsewhere were skipped: "
                     f"{', '.join(outcomes.elsewhere)}; run the same command once they end to include them in the "
                     "report")
    return outcomes.failed
