"""A run's training curves (curves.png): each metric per epoch, train, validation (when held out) and test."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a Figure without pyplot needs no display and keeps no global state
from matplotlib.ticker import MaxNLocator


def save_figure(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def curve_metrics(history: list[dict]) -> list[str]:
    """The metrics with a test value per epoch, loss first: loss and acc of a classifier; loss, recon_loss, ... of
    a generative model (whose training metrics carry no "train_" prefix)."""
    names = dict.fromkeys(k[len("test_"):] for r in history for k in r if k.startswith("test_"))
    return sorted(names, key=lambda name: name != "loss")


def _flat_limits(ax, values: list[float], accuracy: bool) -> None:
    """Y limits for a panel of one epoch, or of values all equal, where matplotlib would zoom in to a few per cent of
    them: accuracy on 0 to 1, anything else from 0 (or its minimum, if negative) to 10 % above its maximum."""
    if accuracy:
        ax.set_ylim(0, 1.05)
        ax.set_yticks(np.linspace(0, 1, 6))
        return
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0
    ax.set_ylim(low - 0.1 * span * (low < 0), high + 0.1 * span)


def training_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """One panel per metric of `curve_metrics` (loss, accuracy, ...) against epoch, train, validation and test."""
    epochs = [r["epoch"] for r in history]
    metrics = curve_metrics(history)
    fig = Figure(figsize=(5 * len(metrics), 3.8), layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics, strict=True):
        train_key = f"train_{metric}" if any(f"train_{metric}" in r for r in history) else metric
        drawn = []
        for key, label, style in ((train_key, "train", "-o"), (f"val_{metric}", "validation", "-^"),
                                  (f"test_{metric}", "test", "-s")):
            if any(key in r for r in history):
                values = [r.get(key, np.nan) for r in history]
                ax.plot(epochs, values, style, label=label)
                drawn += values
        finite = [v for v in drawn if v is not None and np.isfinite(v)]
        if finite and (len(history) == 1 or max(finite) == min(finite)):
            _flat_limits(ax, finite, metric == "acc")
        name = "accuracy" if metric == "acc" else metric.replace("_", " ")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
