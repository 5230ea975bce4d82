"""A sweep's report: runs.csv (one row per finished run), summary.md (mean ± std over seeds) and plots.

Accuracy is compared at the best-validation epoch (`test_acc_at_best_val`) where every run held out a validation
split, else at the end of training (`final_test_acc`); never at the best test epoch, which is chosen on the test set
itself and so flatters every configuration. A configuration is compared with a baseline on the seeds both ran, in
pairs: the mean of the per-seed differences, its 95 % confidence interval (t distribution) and the paired t-test's
p-value; without two shared seeds, Welch's interval and test on the two groups. The verdict is "better" or "worse"
only where the interval excludes 0, and "no evidence either way" where it holds 0.
"""

import csv
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import stats

from pfa.engine.config import PROVENANCE
from pfa.engine.runlog import read_history
from pfa.study.sweep import RunSpec, Study, read_json, read_json_yaml, status

COLUMNS = ("run_id", "attention", "rank", "fusion", "seed", "epochs", "best_test_acc", "final_test_acc",
           "test_acc_at_best_val", "parameters", "spike_rate_mean", "sops_per_sample", "attention_ops_per_sample",
           "energy_pj_per_sample", "train_images_per_s", "wall_seconds", "mean_load1", "command")


def _rounded(value: float | None, digits: int) -> float | str:
    """A number of a run's report.json (--report), rounded; "" where the run has none."""
    return "" if value is None else round(value, digits)


def run_row(study: Study, spec: RunSpec) -> dict | None:
    """The runs.csv row of a finished run, or None."""
    run_dir = study.dir / "runs" / spec.id
    if status(run_dir) != "finished":
        return None
    config, metrics, history = read_json_yaml(run_dir / "config.yaml"), read_json(run_dir / "metrics.json"), \
        read_history(run_dir)
    info = config.get(PROVENANCE) or {}  # the task, parameter count and training-set size recorded by the run
    report = read_json(run_dir / "report.json") or {}
    tested = [r["test_acc"] for r in history if "test_acc" in r]
    seconds = [r["seconds"] for r in history if "seconds" in r]
    uses_pfa = config.get("attention") == "pfa"
    return {
        "run_id": spec.id,
        "attention": config.get("attention", ""),
        "rank": config.get("rank", "") if "rank" in spec.values or uses_pfa else "",
        "fusion": "/".join(str(config[k]) for k in ("fusion", "weights", "gate") if k in config) if uses_pfa else "",
        "seed": config["seed"],
        "epochs": metrics["epoch"],
        # a run with a validation set monitors val_acc: its best test epoch is read from the history
        "best_test_acc": metrics.get("best_test_acc", max(tested, default="")),
        "final_test_acc": metrics.get("test_acc", ""),
        "test_acc_at_best_val": metrics.get("test_acc_at_best_val", ""),
        "parameters": info.get("parameters", ""),
        "spike_rate_mean": _rounded(report.get("spike_rate_mean"), 5),
        "sops_per_sample": _rounded(report.get("sops_per_sample"), 0),
        "attention_ops_per_sample": _rounded(report.get("attention_ops_per_sample"), 0),
        "energy_pj_per_sample": _rounded(report.get("energy", {}).get("estimate_pj_per_sample"), 1),
        # epoch seconds include the epoch's evaluation of the test set: a slight underestimate of training speed
        "train_images_per_s": round(info["train_size"] * len(seconds) / sum(seconds), 1) if seconds and info else "",
        "wall_seconds": round(sum(seconds), 1) if seconds else "",
        "mean_load1": round(float(np.mean([r["load1"] for r in history if "load1" in r])), 2) if history else "",
        "command": spec.command(study),
    }


def configuration(spec: RunSpec) -> str:
    """A configuration's label: the run's grid values without the seed, e.g. 'pfa rank=4'."""
    parts = [str(v) if k == "attention" else f"{k}={v}" for k, v in spec.values.items() if k != "seed"]
    return " ".join(parts) or "all"


def _progress(run_dir) -> str:
    metrics, config = read_json(run_dir / "metrics.json"), read_json_yaml(run_dir / "config.yaml")
    if not metrics or not config:
        return "not started"
    return f"{metrics.get('epoch')} of {config.get('epochs')} epochs"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


@dataclass
class Difference:
    """a - b: its estimate, 95 % confidence interval and two-sided p-value."""

    mean: float
    low: float
    high: float
    p: float

    @property
    def verdict(self) -> str:
        return "better" if self.low > 0 else "worse" if self.high < 0 else "no evidence either way"


def _t_interval(mean: float, se: float, df: float) -> Difference:
    if se == 0:  # every pair differs by the same amount (e.g. identical runs): no spread to test against
        return Difference(mean, mean, mean, 1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.975, df)) * se
    return Difference(mean, mean - half, mean + half, float(2 * stats.t.sf(abs(mean) / se, df)))


def paired_difference(a: list[float], b: list[float]) -> Difference:
    """a - b over the pairs (a[i], b[i]), e.g. two configurations on the same seed: the paired t-test and its
    interval, with n - 1 degrees of freedom."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return _t_interval(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)), len(d) - 1)


def welch_difference(a: list[float], b: list[float]) -> Difference:
    """mean(a) - mean(b) of two independent groups: Welch's t-test and interval (Welch-Satterthwaite degrees of
    freedom)."""
    va, vb = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb else 1.0
    return _t_interval(float(np.mean(a) - np.mean(b)), math.sqrt(va + vb), df)


ACCURACY_NAMES = {"test_acc_at_best_val": "Test accuracy at the best-validation epoch",
                  "final_test_acc": "Final test accuracy"}


def compared_accuracy(rows: list[dict]) -> str:
    """The column comparisons use: test accuracy at the best-validation epoch where every run has it, else final."""
    return "test_acc_at_best_val" if rows and all(r.get("test_acc_at_best_val", "") != "" for r in rows) else \
        "final_test_acc"


def compare(rows: list[dict], base: list[dict]) -> tuple[Difference, str] | None:
    """Accuracy (`compared_accuracy`) of `rows` minus `base` and how it was tested: paired by seed where two or more
    seeds ran in both, else Welch's; None with fewer than 2 runs a side."""
    key = compared_accuracy(rows + base)
    a = {r["seed"]: r[key] for r in rows}
    b = {r["seed"]: r[key] for r in base}
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        seeds = ", ".join(map(str, shared))
        return paired_difference([a[s] for s in shared], [b[s] for s in shared]), f"paired over seeds {seeds}"
    if len(a) >= 2 and len(b) >= 2:
        return welch_difference(list(a.values()), list(b.values())), f"Welch, n = {len(a)} vs {len(b)}"
    return None


def comparisons(groups: dict[str, list[dict]], baselines: list[str]) -> list[str]:
    """One line per (configuration, baseline): the difference in accuracy, its 95 % interval, p and the verdict. A
    later baseline is itself compared with the earlier ones."""
    lines = []
    for i, base in enumerate(baselines):
        for label, rows in groups.items():
            found = None if label in baselines[:i + 1] else compare(rows, groups[base])
            if found is None:
                continue
            diff, test = found
            lines.append(f"- {label} vs {base}: {100 * diff.mean:+.2f} points (95 % CI {100 * diff.low:+.2f} to "
                         f"{100 * diff.high:+.2f}; {test}, p = {diff.p:.3f}): **{diff.verdict}**.")
    return lines


def _provenance(study: Study, rows: list[dict]) -> list[str]:
    """Where and with what the runs ran, from their own config.yaml (a resumed run counts each host and commit it
    ran on), never from the machine writing the report."""
    records = [(read_json_yaml(study.dir / "runs" / row["run_id"] / "config.yaml") or {}).get(PROVENANCE) or {}
               for row in rows]
    started = sorted(str(p["started"]) for p in records if p.get("started"))
    hosts, machines, commits, versions = Counter(), Counter(), Counter(), Counter()
    for p in records:
        legs = [p, *p.get("resumed", [])]
        hosts.update({leg["host"] for leg in legs if leg.get("host")})
        machines.update({p["machine"]} if p.get("machine") else set())
        commits.update({leg["git_commit"][:12] for leg in legs if leg.get("git_commit")})
        if p.get("versions"):
            versions[", ".join(f"{k} {v}" for k, v in p["versions"].items() if v)] += 1

    def counted(counter: Counter) -> str:
        return "; ".join(f"{key} ({n} of {len(rows)} runs)" for key, n in counter.most_common()) or "not recorded"

    return [f"- started: {started[0]} to {started[-1]}" if started else "- started: not recorded",
            f"- hosts: {counted(hosts)}", f"- machines: {counted(machines)}", f"- git commits: {counted(commits)}",
            f"- versions: {counted(versions)}"]


def _mean(runs: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in runs if r[key] != ""] or [np.nan]))


def _table(rows: list[dict], groups: dict[str, list[dict]]) -> list[str]:
    """summary.md's table: one line per configuration; the validation and cost columns where some run has them."""
    columns = [
        ("final test acc (%)", lambda runs: _pct(*_mean_std([r["final_test_acc"] for r in runs]))),
        ("test acc at best val (%)", lambda runs: _pct(*_mean_std(
            [r["test_acc_at_best_val"] for r in runs if r["test_acc_at_best_val"] != ""]))),
        ("max over test epochs (optimistic) (%)", lambda runs: _pct(*_mean_std([r["best_test_acc"] for r in runs]))),
        ("parameters", lambda runs: str(runs[0]["parameters"])),
        ("spike rate", lambda runs: f"{_mean(runs, 'spike_rate_mean'):.4f}"),
        ("SOPs per sample", lambda runs: f"{_mean(runs, 'sops_per_sample'):,.0f}"),
        ("attention ops per sample", lambda runs: f"{_mean(runs, 'attention_ops_per_sample'):,.0f}"),
        ("energy per sample (nJ, estimate)", lambda runs: f"{_mean(runs, 'energy_pj_per_sample') / 1e3:,.1f}"),
        ("train images/s", lambda runs: f"{_mean(runs, 'train_images_per_s'):.0f}"),
        ("wall s per run", lambda runs: f"{_mean(runs, 'wall_seconds'):.0f}"),
    ]
    optional = {"test acc at best val (%)": "test_acc_at_best_val", "spike rate": "spike_rate_mean",
                "SOPs per sample": "sops_per_sample", "attention ops per sample": "attention_ops_per_sample",
                "energy per sample (nJ, estimate)": "energy_pj_per_sample"}

    def has(title: str, runs: list[dict]) -> bool:
        return title not in optional or any(r[optional[title]] != "" for r in runs)

    shown = [(title, cell) for title, cell in columns if has(title, rows)]
    lines = ["| configuration | seeds | " + " | ".join(title for title, _ in shown) + " |",
             "|---|---|" + "---|" * len(shown)]
    lines += [f"| {label} | {len(runs)} | " + " | ".join(cell(runs) if has(title, runs) else "–"
                                                          for title, cell in shown) + " |"
              for label, runs in groups.items()]
    return lines


def write_summary(study: Study, specs: list[RunSpec], rows: list[dict], groups: dict[str, list[dict]],
                  command: str) -> str:
    labels = list(dict.fromkeys(configuration(s) for s in specs))
    baselines = study.baselines or [label for label in labels if label.split()[0] in ("none", "ma")]
    flags = " ".join(f"{k}={v}" for k, v in study.flags.items())
    done = {r["run_id"] for r in rows}
    pending = [f"{s.id} ({_progress(study.dir / 'runs' / s.id)})" for s in specs if s.id not in done]
    loads = [r["mean_load1"] for r in rows if r["mean_load1"] != ""]
    text = [
        f"# {study.name}",
        "",
        f"{len(rows)} of {len(specs)} runs finished ({len(groups)} of {len(labels)} configurations have at least one). "
        f"Task `{study.task}` with {flags}; grid {', '.join(study.grid)}. Every run is reproduced by its `command` "
        "in runs.csv; the whole study (continuing where it stopped) by:",
        "",
        f"    {command}",
        "",
        f"Not finished: {', '.join(pending)}." if pending else "All runs finished.",
        "",
        "Mean ± standard deviation over seeds (sample std; `nan` with one seed). Final = after the last epoch; at best "
        "val = at the epoch of best validation accuracy (runs with --val-fraction: chosen without the test set); max "
        "over test epochs = the best epoch chosen on the test set itself (optimistic). Spike rate, operations and "
        "energy come from runs made with --report (on the first test batch); the energy is an estimate from "
        "operation counts with 45 nm figures (0.9 pJ per accumulate, 4.6 pJ per multiply-accumulate), not a "
        "measurement. Train images/s counts each epoch's evaluation time too.",
        "",
        *_table(rows, groups),
        "",
        "## Does a configuration beat the baselines?",
        "",
        f"{ACCURACY_NAMES[compared_accuracy(rows)]}, configuration minus baseline, in points. Runs of the same seed "
        "are compared in pairs: "
        "the mean of the per-seed differences, its 95 % confidence interval (t distribution) and the paired t-test's "
        "p-value (Welch's test where no two seeds ran in both). **better** or **worse** only where the interval "
        "excludes 0; where it holds 0, **no evidence either way**. With 3 seeds the interval reaches 4.3 standard "
        "errors either side of the mean.",
        "",
        *(comparisons(groups, [b for b in baselines if b in groups])
          or ["- not enough finished runs for a test (it needs 2 seeds of a configuration and of a baseline), so no "
              "verdict yet: a difference between single runs is not evidence either way."]),
        "",
        "## What this study does not show",
        "",
        "- The runs train small networks for a short budget (the flags above); the paper's recipes (full width, "
        "hundreds of epochs) may rank the configurations differently.",
        "- A few seeds give wide intervals: \"no evidence either way\" is not evidence of no difference.",
        "- Each comparison is tested on its own at 95 %: among several, one may come out better or worse by chance.",
        f"- One dataset ({study.flags.get('dataset', study.task)}); nothing here speaks for other data.",
        "- Speed was measured on a shared machine (load average below); compare it between rows only roughly.",
        "",
        *(["## Notes", "", *(f"- {note}" for note in study.notes), ""] if study.notes else []),
        "## Where",
        "",
        "From the runs' config.yaml:",
        "",
        *_provenance(study, rows),
        f"- load average during the runs (mean of the 1-minute load at each epoch's end): "
        f"{np.mean(loads):.2f}" if loads else "- load average during the runs: not recorded",
        "",
        "Plots: `test_acc.png` (test accuracy per epoch, mean ± std bands), `acc_vs_rank.png` (final test accuracy "
        "against PFA's rank, baselines as bands).",
        "",
    ]
    return "\n".join(text)


def write_report(study: Study, specs: list[RunSpec], command: str) -> str:
    """Write runs.csv, summary.md and the plots under results/<name>/; returns a one-line account."""
    from pfa.study import plots

    rows, groups, histories = [], {}, {}
    for spec in specs:
        row = run_row(study, spec)
        if row is None:
            continue
        rows.append(row)
        groups.setdefault(configuration(spec), []).append(row)
        histories.setdefault(configuration(spec), []).append(read_history(study.dir / "runs" / spec.id))
    study.dir.mkdir(parents=True, exist_ok=True)
    with open(study.dir / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (study.dir / "summary.md").write_text(write_summary(study, specs, rows, groups, command))
    curves = {label: h for label, h in histories.items() if all(h)}
    if curves:
        plots.accuracy_bands(curves, study.dir / "test_acc.png", title=f"{study.name}: test accuracy per epoch, "
                             "mean ± std over seeds")
    ranked, baselines = {}, {}
    for label, runs in groups.items():
        finals = [100 * r["final_test_acc"] for r in runs]
        if runs[0]["rank"] != "":
            ranked.setdefault(int(runs[0]["rank"]), []).extend(finals)
        else:
            baselines[label] = finals
    if ranked:
        plots.accuracy_against_rank(ranked, baselines, study.dir / "acc_vs_rank.png",
                                    title=f"{study.name}: final test accuracy against rank")
    return f"{len(rows)} of {len(specs)} runs finished; wrote {study.dir / 'runs.csv'}, summary.md and plots"

