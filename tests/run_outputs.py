"""The files --report and --save-attention (and every training run's curves.png) leave in a run directory."""

import json
from pathlib import Path

from PIL import Image

FLAGS = ["--report", "--save-attention", "2"]


def check_png(path: Path, min_colours: int = 20) -> None:
    """A real PNG with drawn content: decodable, and more colours than a blank canvas."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000, path
    with Image.open(path) as image:
        image.load()
        assert len(image.convert("RGB").getcolors(maxcolors=100_000) or range(100_000)) > min_colours, path


def check_outputs(out: Path, pictures: int = 2, curves: bool = True) -> dict:
    """report.json (spike rates in [0, 1] for every neuron layer), report.png, `pictures` attention PNGs and, after
    training, curves.png; returns the report."""
    report = json.loads((out / "report.json").read_text())
    rates = report["spike_rates"]
    assert rates and all(0 <= r["rate"] <= 1 and r["neurons"] > 0 for r in rates)
    names = [f"test{i:05d}.png" for i in range(pictures)]
    assert sorted(p.name for p in (out / "attention").iterdir()) == names
    assert (out / "curves.png").exists() == curves
    for path in [out / "report.png", *(out / "attention" / n for n in names), *[out / "curves.png"][:curves]]:
        check_png(path)
    return report
