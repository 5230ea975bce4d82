"""A sweep's report: runs.csv (one row per finished run), summary.md (mean ± std over seeds) and plots.

Accuracy is compared at the end of training (`final_test_acc`): the best epoch is chosen on the test set itself and so
flatters every configuration. A configuration is "better (worse) by more than the seed-to-seed spread" than a
baseline when the difference of the means is larger than the standard deviation over seeds of either configuration;
Welch's t-test p-value is given beside it (with 3 seeds a weak test: read it as a hint, not a verdict).
"""

import csv
import datetime
import os
import platform
from pathlib import Path

import numpy as np
from scipy import stats

from pfa.study.sweep import RunSpec, Study, read_history, read_json, read_json_yaml, status

COLUMNS = ("run_id", "attention", "rank", "fusion", "seed", "epochs", "best_test_acc", "final_test_acc", "parameters",
           "train_images_per_s", "wall_seconds", "mean_load1", "command")


def _fmnist(config: dict) -> dict:
    """Parameters, training-set size and PFA's fusion of a Fashion-MNIST run, from its config.yaml."""
    from pfa.models.fmnist import PFA_OPTIONS, FashionMNISTNet

    model = FashionMNISTNet(config["time_steps"], config["width"], config["rank"], config["attention"],
                            config["dropout"])
    return {"parameters": sum(p.numel() for p in model.parameters()), "train_size": config["train_samples"] or 60000,
            "fusion": f"{PFA_OPTIONS['fusion']}/{PFA_OPTIONS['weights']}"}


ENTRIES = {"FMNIST/run.py": _fmnist}  # what the report cannot read from a run folder, per entry point


def run_row(study: Study, spec: RunSpec) -> dict | None:
    """The runs.csv row of a finished run, or None."""
    run_dir = study.dir / "runs" / spec.id
    if status(run_dir) != "finished":
        return None
    config, metrics, history = read_json_yaml(run_dir / "config.yaml"), read_json(run_dir / "metrics.json"), \
        read_history(run_dir)
    info = ENTRIES[study.entry](config) if study.entry in ENTRIES else {}
    seconds = [r["seconds"] for r in history if "seconds" in r]
    uses_pfa = config.get("attention") == "pfa"
    return {
        "run_id": spec.id,
        "attention": config.get("attention", ""),
        "rank": config.get("rank", "") if "rank" in spec.values or uses_pfa else "",
        "fusion": config.get("fusion", info.get("fusion", "")) if uses_pfa else "",
        "seed": config["seed"],
        "epochs": metrics["epoch"],
        "best_test_acc": metrics.get("best_test_acc", ""),
        "final_test_acc": metrics.get("test_acc", ""),
        "parameters": info.get("parameters", ""),
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


def comparisons(groups: dict[str, list[dict]], baselines: list[str]) -> list[str]:
    """One line per (configuration, baseline): gain in final accuracy, spreads, Welch's p, and the verdict."""
    lines = []
    for base in baselines:
        b = [r["final_test_acc"] for r in groups[base]]
        for label, rows in groups.items():
            if label in baselines or len(rows) < 2 or len(b) < 2:
                continue
            a = [r["final_test_acc"] for r in rows]
            gain = np.mean(a) - np.mean(b)
            spread = max(np.std(a, ddof=1), np.std(b, ddof=1))
            p = stats.ttest_ind(a, b, equal_var=False).pvalue
            verdict = ("better by more than" if gain > spread else "worse by more than" if gain < -spread
                       else "within")
            lines.append(f"- {label} vs {base}: {100 * gain:+.2f} points; the larger seed std is {100 * spread:.2f} "
                         f"points, so {label} is **{verdict}** the seed-to-seed spread (Welch p = {p:.2f}, "
                         f"n = {len(a)} vs {len(b)}).")
    return lines


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{model or platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def _versions() -> str:
    import spikingjelly
    import torch

    sj = getattr(spikingjelly, "__version__", None)
    if sj is None:
        from importlib.metadata import version

        sj = version("spikingjelly")
    return f"python {platform.python_version()}, torch {torch.__version__}, spikingjelly {sj}"


def write_summary(study: Study, specs: list[RunSpec], rows: list[dict], groups: dict[str, list[dict]],
                  command: str) -> str:
    header = ("| configuration | seeds | final test acc (%) | best test acc (%) | parameters | train images/s |"
              " wall s per run |\n|---|---|---|---|---|---|---|")
    table = []
    for label, runs in groups.items():
        final, best = _mean_std([r["final_test_acc"] for r in runs]), _mean_std([r["best_test_acc"] for r in runs])
        speed = np.mean([r["train_images_per_s"] for r in runs if r["train_images_per_s"] != ""] or [np.nan])
        wall = np.mean([r["wall_seconds"] for r in runs if r["wall_seconds"] != ""] or [np.nan])
        table.append(f"| {label} | {len(runs)} | {_pct(*final)} | {_pct(*best)} | {runs[0]['parameters']} | "
                     f"{speed:.0f} | {wall:.0f} |")
    labels = list(dict.fromkeys(configuration(s) for s in specs))
    baselines = [label for label in labels if label.split()[0] in ("none", "ma")]
    flags = " ".join(f"{k}={v}" for k, v in study.flags.items())
    done = {r["run_id"] for r in rows}
    pending = [f"{s.id} ({_progress(study.dir / 'runs' / s.id)})" for s in specs if s.id not in done]
    loads = [r["mean_load1"] for r in rows if r["mean_load1"] != ""]
    text = [
        f"# {study.name}",
        "",
        f"{len(rows)} of {len(specs)} runs finished ({len(groups)} of {len(labels)} configurations have at least one). "
        f"Entry `{study.entry}` with {flags}; grid {', '.join(study.grid)}. Every run is reproduced by its `command` "
        "in runs.csv; the whole study (continuing where it stopped) by:",
        "",
        f"    {command}",
        "",
        f"Not finished: {', '.join(pending)}." if pending else "All runs finished.",
        "",
        "Mean ± standard deviation over seeds (sample std; `nan` with one seed). Final = after the last epoch; best = "
        "the best epoch, chosen on the test set itself (optimistic). Train images/s counts each epoch's evaluation "
        "time too.",
        "",
        header,
        *table,
        "",
        "## Does a configuration beat the baselines by more than the seed-to-seed spread?",
        "",
        "Final test accuracy; the gain is the difference of the means over seeds.",
        "",
        *(comparisons(groups, [b for b in baselines if b in groups])
          or ["- not enough finished runs to estimate the seed-to-seed spread (it needs 2 seeds of a configuration and "
              "of a baseline), so no verdict yet: a difference between single runs is not evidence either way."]),
        "",
        "## What this study does not show",
        "",
        "- The quick profile trains a narrow network for a few epochs; the reference recipe (width 128, 200 epochs) "
        "may rank the configurations differently.",
        "- A few seeds measure the spread only roughly; a difference smaller than it is not evidence either way.",
        "- One dataset; nothing here speaks for event data or larger images.",
        "- Speed was measured on a shared machine (load average below); compare it between rows only roughly.",
        "",
        *(["## Notes", "", *(f"- {note}" for note in study.notes), ""] if study.notes else []),
        "## Where",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {_machine()}",
        f"- load average during the runs (mean of the 1-minute load at each epoch's end): "
        f"{np.mean(loads):.2f}" if loads else "- load average during the runs: not recorded",
        f"- load average now (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- versions: {_versions()}",
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

