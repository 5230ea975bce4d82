"""Pictures of what PFA attends to, one PNG per test image, for papers and sanity checks.

Layout (tile = 112 px, gap = 8 px, a 14 px caption above each panel), both rows left-aligned:

    row 1:  input | A averaged over H, W (T x C, 2 tiles wide) | A averaged over C at t = 1..T (one tile each)
    row 2:  temporal factors (R x T) | channel factors (R x C, 2 tiles wide) | spatial factors r = 1..R (one tile each)

Every panel is scaled to its own min..max and coloured low = dark blue, high = yellow.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw
from spikingjelly.activation_based import functional
from torch.utils.data import Dataset

from pfa.attention import PFA

TILE, GAP, CAPTION = 112, 8, 14
_COLOURS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def colourise(values: np.ndarray) -> np.ndarray:
    """A 2-D array -> RGB uint8, min..max mapped along a viridis-like ramp."""
    span = values.max() - values.min()
    scaled = (values - values.min()) / span if span > 0 else np.zeros_like(values, dtype=np.float64)
    position = scaled * (len(_COLOURS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_COLOURS) - 2)
    frac = (position - low)[..., None]
    return ((1 - frac) * _COLOURS[low] + frac * _COLOURS[low + 1]).round().astype(np.uint8)


def _panel(values: torch.Tensor, width: int) -> Image.Image:
    image = Image.fromarray(colourise(values.detach().float().cpu().numpy()))
    return image.resize((width, TILE), Image.NEAREST)


def compose_figure(rows: list[list[tuple[str, Image.Image]]]) -> Image.Image:
    """Rows of (caption, panel) laid out with gaps, on white."""
    row_widths = [GAP + sum(panel.width + GAP for _, panel in row) for row in rows]
    figure = Image.new("RGB", (max(row_widths), GAP + len(rows) * (CAPTION + TILE + GAP)), "white")
    draw = ImageDraw.Draw(figure)
    for r, row in enumerate(rows):
        x, y = GAP, GAP + r * (CAPTION + TILE + GAP)
        for caption, panel in row:
            draw.text((x, y), caption, fill="black")
            figure.paste(panel, (x, y + CAPTION))
            x += panel.width + GAP
    return figure


def attention_figure(pfa: PFA, spikes: torch.Tensor, image: torch.Tensor, title: str) -> Image.Image:
    """The figure for one sample: `spikes` is PFA's input [T, 1, C, H, W], `image` the network's input [C0, H0, W0]."""
    factors = pfa.factors(spikes)
    attention = pfa.attention_map(spikes)[:, 0]  # [T, C, H, W]
    rows = [
        [(title, _panel(image.mean(0), TILE)), ("A: time x channel", _panel(attention.mean((2, 3)), 2 * TILE))]
        + [(f"A: space, t={t + 1}", _panel(attention[t].mean(0), TILE)) for t in range(pfa.T)],
        [("temporal (R x T)", _panel(factors["temporal"][0], TILE)),
         ("channel (R x C)", _panel(factors["channel"][0], 2 * TILE))]
        + [(f"spatial, r={r + 1}", _panel(factors["spatial"][0, r], TILE)) for r in range(pfa.rank)],
    ]
    return compose_figure(rows)


def find_pfa(model: nn.Module) -> PFA:
    found = [m for m in model.modules() if isinstance(m, PFA)]
    if not found:
        raise ValueError("the model has no PFA module to draw")
    return found[0]


@torch.no_grad()
def save_attention_figures(model: nn.Module, dataset: Dataset, count: int, out_dir: Path,
                           class_names: tuple[str, ...] | None = None) -> list[Path]:
    """Run the first `count` samples of `dataset` through `model` and write one PNG each into `out_dir`."""
    pfa = find_pfa(model)
    captured = {}
    hook = pfa.register_forward_pre_hook(lambda module, args: captured.update(spikes=args[0]))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for index in range(min(count, len(dataset))):
            image, label = dataset[index]
            model(image.unsqueeze(0).to(device))
            functional.reset_net(model)
            name = class_names[label] if class_names else str(label)
            figure = attention_figure(pfa, captured["spikes"], image, f"input: {name}")
            paths.append(out_dir / f"test{index:05d}.png")
            figure.save(paths[-1])
    finally:
        hook.remove()
        model.train(was_training)
    return paths
