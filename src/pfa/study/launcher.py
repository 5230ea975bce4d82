"""Where a study's runs execute: submitit jobs, as local processes N at a time or on a SLURM cluster.

A study file may say how (all keys optional)::

    launcher: {parallel: 2}                                    # local processes, two runs at a time (default 1)
    launcher: {cluster: slurm, parallel: 32, timeout_min: 720, cpus_per_task: 8, gpus_per_node: 1,
               mem_gb: 32, slurm_partition: gpu}                # one SLURM job per run, at most 32 at once

Every key but `cluster` and `parallel` goes to submitit's `AutoExecutor.update_parameters` as it stands, so the names
are submitit's (generic ones like `timeout_min`, `cpus_per_task`, `gpus_per_node`, `mem_gb`, or cluster-specific ones
prefixed with the cluster: `slurm_partition`, `slurm_account`, ...).
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from pfa.errors import UserError

CLUSTERS = ("local", "slurm")
DEFAULT_TIMEOUT_MIN = 3 * 24 * 60  # submitit's local default (2 minutes) would stop every real run


@dataclass
class Launcher:
    cluster: str = "local"
    parallel: int = 1
    parameters: dict = field(default_factory=dict)

    def executor(self, folder: Path, cluster: str | None = None) -> submitit.AutoExecutor:
        """A submitit executor writing its job files under `folder` (on `cluster`, default the launcher's own)."""
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster=cluster or self.cluster)
        except RuntimeError as error:  # e.g. no srun on this machine
            raise UserError(f"launcher: cannot submit to {self.cluster} here ({error}); run the sweep where "
                            f"{self.cluster} jobs are submitted, or drop `cluster` for local processes") from None
        try:
            executor.update_parameters(**{"timeout_min": DEFAULT_TIMEOUT_MIN, **self.parameters})
        except (NameError, ValueError, AssertionError) as error:
            first = str(error).splitlines()[0]
            raise UserError(f"launcher: submitit refused {self.parameters}: {first}; use submitit's names (e.g. "
                            "timeout_min, cpus_per_task, slurm_partition), see python -m pfa.sweep -h") from None
        return executor


def parse_launcher(value, path: str, parallel: int | None = None) -> Launcher:
    """The study file's `launcher` mapping checked (None: local, one at a time); `parallel` overrides its own."""
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise UserError(f"study {path}: launcher must be a mapping such as {{parallel: 2}} or {{cluster: slurm, "
                        f"parallel: 16, timeout_min: 600}}; got {value!r:.80}")
    settings = dict(value)
    cluster = settings.pop("cluster", "local")
    if cluster not in CLUSTERS:
        raise UserError(f"study {path}: launcher cluster must be one of {', '.join(CLUSTERS)}; got {cluster!r}")
    parallel = settings.pop("parallel", 1) if parallel is None else parallel
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise UserError(f"study {path}: launcher parallel (runs at a time) must be a whole number of at least 1; got "
                        f"{parallel!r}")
    launcher = Launcher(cluster, parallel, settings)
    with tempfile.TemporaryDirectory() as folder:  # submitit checks names and types (of every cluster) up front
        try:
            launcher.executor(Path(folder), cluster="local")
        except UserError as error:
            raise UserError(f"study {path}: {error}") from None
    return launcher
