"""Pictures of what PFA attends to, one PNG per test image, for papers and sanity checks (matplotlib).

Two rows of heat maps, each with its colour bar:

    row 1:  the input (input_picture) | A averaged over H, W (T x C) | A averaged over C at t = 1..T
            (the T maps wrap into rows of at most STEPS_PER_ROW)
    row 2:  temporal factors (R x T) | channel factors (R x C) | spatial factors r = 1..R (at most MAX_SPATIAL)

Panels that are compared with each other (the T spatial maps of A; the R spatial factors) share one colour scale.
Works for any network holding a PFA module (the Fashion-MNIST CNN, the VGG and ResNets, FSVAE): the module drawn is
the `index`-th PFA in `model.modules()` order, and its input is captured by a forward pre-hook.
"""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from spikingjelly.activation_based import functional
from torch.utils.data import Dataset

from pfa.attention.projected_full import PFA

MAX_SPATIAL = 8
STEPS_PER_ROW = 8
CMAP = "viridis"


def _show(fig: Figure, ax, values, title: str, vmin=None, vmax=None, colourbar: bool = True, xlabel: str = "",
          ylabel: str = "", aspect: str = "equal"):
    image = ax.imshow(np.asarray(values, dtype=np.float64), cmap=CMAP, vmin=vmin, vmax=vmax, aspect=aspect,
                      interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if colourbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, format=ScalarFormatter(useOffset=False))
    return image


def _matrix(fig: Figure, ax, values: np.ndarray, title: str, xlabel: str, ylabel: str) -> None:
    """A small matrix heat map with 1-based integer ticks (at most 8 per axis)."""
    _show(fig, ax, values, title, xlabel=xlabel, ylabel=ylabel, aspect="auto")
    for axis, size in ((ax.xaxis, values.shape[1]), (ax.yaxis, values.shape[0])):
        ticks = np.unique(np.linspace(0, size - 1, min(size, 8)).round().astype(int))
        axis.set_ticks(ticks, [str(t + 1) for t in ticks])


def _shared_row(fig: Figure, axes, maps: list[np.ndarray], titles: list[str]) -> None:
    """Heat maps on one colour scale with a single colour bar beside the last."""
    low, high = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    image = None
    for ax, values, title in zip(axes, maps, titles, strict=False):
        image = _show(fig, ax, values, title, low, high, colourbar=False)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes[:len(maps)]), fraction=0.046 / len(maps), pad=0.02,
                 format=ScalarFormatter(useOffset=False))


def input_picture(image: torch.Tensor) -> tuple[np.ndarray, str]:
    """What to draw of a network input, and how to read it: event frames [T, C, H, W] as events per pixel (summed over
    steps and polarities), an RGB image [3, H, W] in colour (rescaled to [0, 1]), else the channel mean."""
    image = image.detach().float().cpu()
    if image.dim() == 4:
        return image.sum((0, 1)).numpy(), f"events per pixel ({image.shape[0]} frames, {image.shape[1]} channels)"
    if image.dim() == 3 and image.shape[0] == 3:
        low, high = image.min(), image.max()
        return ((image - low) / (high - low).clamp_min(1e-12)).permute(1, 2, 0).numpy(), "RGB, rescaled to [0, 1]"
    return image.reshape(-1, *image.shape[-2:]).mean(0).numpy(), "pixel value"


def label_name(label, class_names: tuple[str, ...] | None) -> str | None:
    """A class label as its name (or index); None for labels that are no class index (e.g. CelebA's attributes)."""
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        label = int(label)
    if not isinstance(label, int):
        return None
    return class_names[label] if class_names and 0 <= label < len(class_names) else str(label)


def attention_figure(pfa: PFA, spikes: torch.Tensor, image: torch.Tensor, title: str) -> Figure:
    """The figure for one sample: `spikes` is PFA's input (one sample), `image` the network's input ([C, H, W] images
    or [T, C, H, W] event frames, drawn by `input_picture`)."""
    factors = {k: v.detach().float().cpu().numpy() for k, v in pfa.factors(spikes).items()}
    attention = pfa.attention_map(spikes)
    attention = (attention[:, 0] if pfa.layout == "TNCHW" else attention[0].permute(3, 0, 1, 2)).float().cpu().numpy()
    T, R = pfa.T, pfa.rank
    spatial, per_row = min(R, MAX_SPATIAL), min(T, STEPS_PER_ROW)
    step_rows = math.ceil(T / per_row)
    fig = Figure(figsize=(2.1 * (2 + max(per_row, spatial)), 2.4 * (step_rows + 1)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[step_rows, 1])  # each lays out its own panels and colour bars
    grid = top.add_gridspec(step_rows, 2 + per_row, width_ratios=[1.3, 1.3] + [1] * per_row)
    first = [top.add_subplot(grid[:, 0]), top.add_subplot(grid[:, 1])]
    first += [top.add_subplot(grid[t // per_row, 2 + t % per_row]) for t in range(T)]
    second = bottom.subplots(1, 2 + spatial, gridspec_kw={"width_ratios": [1.3, 1.3] + [1] * spatial})
    picture, label = input_picture(image)
    _show(top, first[0], picture, title, colourbar=picture.ndim == 2, xlabel=label)
    first[0].set_xticks([])
    first[0].set_yticks([])
    _matrix(top, first[1], attention.mean((2, 3)), "A averaged over H, W", "channel", "time step")
    _shared_row(top, first[2:], [attention[t].mean(0) for t in range(T)], [f"A over C, t={t + 1}" for t in range(T)])
    _matrix(bottom, second[0], factors["temporal"][0], "temporal factors", "time step", "r")
    _matrix(bottom, second[1], factors["channel"][0], "channel factors", "channel", "r")
    more = f" (first {spatial} of {R})" if spatial < R else ""
    _shared_row(bottom, second[2:], [factors["spatial"][0, r] for r in range(spatial)],
                [f"spatial r={r + 1}{more if r == 0 else ''}" for r in range(spatial)])
    return fig


def find_pfa(model: nn.Module, index: int = 0) -> PFA:
    found = [m for m in model.modules() if isinstance(m, PFA)]
    if not found:
        raise ValueError("the model has no PFA module to draw")
    if not 0 <= index < len(found):
        raise ValueError(f"the model has {len(found)} PFA modules; index {index} is out of range")
    return found[index]


@torch.no_grad()
def save_attention_figures(model: nn.Module, dataset: Dataset, count: int, out_dir: Path,
                           class_names: tuple[str, ...] | None = None, index: int = 0) -> list[Path]:
    """Run the first `count` samples of `dataset` through `model` and write one PNG each into `out_dir`."""
    pfa = find_pfa(model, index)
    captured = {}
    hook = pfa.register_forward_pre_hook(lambda module, args: captured.update(spikes=args[0]))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for position in range(min(count, len(dataset))):
            image, label = dataset[position]
            model(image.unsqueeze(0).to(device))
            functional.reset_net(model)
            name = label_name(label, class_names)
            figure = attention_figure(pfa, captured["spikes"], image, "input" if name is None else f"input: {name}")
            paths.append(out_dir / f"test{position:05d}.png")
            figure.savefig(paths[-1], dpi=100)
    finally:
        hook.remove()
        model.train(was_training)
    return paths
