"""`python -m pfa.sweep STUDY.yaml`: run a study's grid of training runs, then write its report (runs.csv, summary.md,
plots). The runner is `pfa.study.sweep`, the report `pfa.study.summary`."""

import argparse
import shlex

from pfa.cli import guarded
from pfa.errors import UserError
from pfa.study import sweep as runner


@guarded
def main(argv: list[str] | None = None) -> None:
    summary, _, details = runner.__doc__.partition("\n")
    parser = argparse.ArgumentParser(prog="python -m pfa.sweep", description=summary, epilog=details.strip("\n"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # the study file's format
    parser.add_argument("study", help="the study's YAML file")
    parser.add_argument("--report", action="store_true", help="only write the report from the runs that finished")
    parser.add_argument("--results", default="results", help="folder holding <name>/ (default: results)")
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="runs at a time (default: the study's launcher, else 1)")
    args = parser.parse_args(argv)
    study = runner.load_study(args.study, args.results, args.parallel)
    failed = [] if args.report else runner.sweep(study)
    from pfa.study.summary import write_report  # matplotlib is imported only when a report is written

    results = ["--results", args.results] if args.results != "results" else []
    parallel = ["--parallel", str(args.parallel)] if args.parallel else []
    command = ["python", "-m", "pfa.sweep", args.study, *results, *parallel]
    print(write_report(study, runner.expand(study), command=shlex.join(command)))
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their output above, fix, and rerun "
                        "the same command (finished runs are skipped)")


if __name__ == "__main__":
    main()
