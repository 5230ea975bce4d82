"""Matplotlib figures of studies: a sweep's accuracy bands and rank curve, a report's spike rates and SOPs; and the
command that draws a run's curves or a report's chart again:

    python -m pfa.plots curves RUN_DIR [-o curves.png]          # loss and accuracy per epoch of one run
    python -m pfa.plots report report.json [-o report.png]      # spike rate and SOPs per layer (--report's JSON)

A run's per-epoch history is its `metrics.jsonl`, one record per line.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a Figure without pyplot needs no display and keeps no global state
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pfa.cli import guarded
from pfa.engine.curves import save_figure, training_curves
from pfa.engine.runlog import HISTORY, read_history
from pfa.errors import UserError


def accuracy_bands(groups: dict[str, list[list[dict]]], path: Path, key: str = "test_acc", title: str = "") -> Path:
    """Mean +- std over seeds of `key` per epoch, one line and band per configuration (label -> histories)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for label, histories in groups.items():
        length = min(len(h) for h in histories)
        values = np.array([[r[key] for r in h[:length]] for h in histories]) * 100
        epochs = [r["epoch"] for r in histories[0][:length]]
        mean, std = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(length)
        (line,) = ax.plot(epochs, mean, "-o", label=f"{label} (n={len(values)})")
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{key.replace('_', ' ')} (%)")
    ax.set_title(title or f"{key.replace('_', ' ')} per epoch: mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def accuracy_against_rank(ranked: dict[float, list[float]], baselines: dict[str, list[float]], path: Path,
                          ylabel: str = "final test accuracy (%)", title: str = "") -> Path:
    """Accuracy (mean +- std, every seed a dot) against rank R, with the rank-free configurations as bands."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    for i, (label, values) in enumerate(baselines.items()):
        mean, std = np.mean(values), np.std(values, ddof=1) if len(values) > 1 else 0.0
        colour = f"C{i + 1}"
        ax.axhline(mean, color=colour, ls="--", label=f"{label} (n={len(values)})")
        ax.axhspan(mean - std, mean + std, color=colour, alpha=0.15)
    ranks = sorted(ranked)
    if ranks:
        means = [np.mean(ranked[r]) for r in ranks]
        stds = [np.std(ranked[r], ddof=1) if len(ranked[r]) > 1 else 0.0 for r in ranks]
        ax.errorbar(ranks, means, yerr=stds, fmt="-o", color="C0", capsize=4, label="PFA, mean ± std")
        for r in ranks:
            ax.plot([r] * len(ranked[r]), ranked[r], ".", color="C0", alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_xlabel("rank R")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "accuracy against PFA's rank (bands: mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def report_chart(report: dict, path: Path, title: str = "") -> Path:
    """Spike rate per neuron layer and SOPs per sample per synaptic layer (a `pfa.study.report` dict), side by side."""
    rates, synops = report["spike_rates"], report["synops"]
    fig = Figure(figsize=(12, 1 + 0.3 * max(len(rates), len(synops), 4)), layout="constrained")
    axes = fig.subplots(1, 2)
    ax = axes[0]
    bars = ax.barh(range(len(rates)), [r["rate"] for r in rates], color="C0")
    ax.bar_label(bars, [f"{r['rate']:.4f}" for r in rates], padding=2, fontsize=7)
    ax.set_yticks(range(len(rates)), [r["name"] for r in rates], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("spike rate (spikes per neuron per step)")
    ax.set_title("spike rate per neuron layer")
    ax.grid(axis="x", alpha=0.3)
    ax = axes[1]
    colours = ["C2" if s["attention"] else ("C0" if s["binary_input"] else "C1") for s in synops]
    ax.barh(range(len(synops)), [s["sops_per_sample"] for s in synops], color=colours)
    ax.set_yticks(range(len(synops)), [s["name"] for s in synops], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("synaptic operations per sample (log scale)")
    ax.set_title(f"SOPs per layer: {report['sops_per_sample']:,.0f} backbone in all")
    handles = [Patch(color=c, label=t) for c, t in (("C0", "spike input (AC)"), ("C1", "real input (MAC)"),
                                                    ("C2", "inside attention"))]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars
    ax.grid(axis="x", alpha=0.3)
    estimate = report.get("energy", {}).get("estimate_pj_per_sample")
    cost = f"; estimated {estimate / 1e3:,.1f} nJ per sample (45 nm figures, not a measurement)" if estimate else ""
    fig.suptitle(title or f"model report on {report['samples']} samples, "
                 f"{report['parameters']['total']:,} parameters{cost}")
    return save_figure(fig, path)


@guarded
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pfa.plots",
                                     description="Draw a run's training curves, or the chart of a --report, again.")
    sub = parser.add_subparsers(dest="what", required=True)
    curves = sub.add_parser("curves", help="loss and accuracy per epoch of one run")
    curves.add_argument("run_dir")
    curves.add_argument("-o", "--output", help="PNG to write (default RUN_DIR/curves.png)")
    report = sub.add_parser("report", help="spike rate and SOPs per layer from a report.json")
    report.add_argument("json")
    report.add_argument("-o", "--output", help="PNG to write (default: beside the JSON, .png)")
    args = parser.parse_args(argv)
    if args.what == "curves":
        history = read_history(Path(args.run_dir))
        if not history:
            raise UserError(f"{args.run_dir} holds no {HISTORY}; give the folder of a run that finished an epoch")
        out = training_curves(history, Path(args.output or Path(args.run_dir) / "curves.png"), Path(args.run_dir).name)
    else:
        try:
            data = json.loads(Path(args.json).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read {args.json} ({type(e).__name__}); give the report.json of --report") from None
        out = report_chart(data, Path(args.output or Path(args.json).with_suffix(".png")))
    print(out)


if __name__ == "__main__":
    main()
