"""Fashion-MNIST seen by a simulated event camera, recorded as N-MNIST was: real images made into event data.

``python -m pfa.data.fmnist_events --root DIR`` converts all 70,000 images (about four minutes on 2 cores) into
N-MNIST's layout, ``DIR/extract/{Train,Test}/<label>-<class>/<index>.bin``, keeping the official 60,000 / 10,000
split; ``CIFAR/main.py --dataset fmnist-events --data-dir DIR`` then decodes and frames them with spikingjelly
(``events_np/``, ``frames_number_{T}_split_by_{number|time}/``) like a downloaded event dataset. ``DIR/manifest.json``
records the settings, the seed, the converter's version and the event counts.

How a recording is made (``Settings`` holds every number):

- Motion: the 28x28 image, on black, centred on a 32x32 sensor, moves through three linear saccades of 100 ms each
  along a closed triangle of offsets (x, y) (-2, -2) -> (2, 2) -> (-2, 2) -> (-2, -2) px: diagonal, horizontal, then
  vertical, so edges of every orientation move. Every image takes the same path, as in N-MNIST.
- Pixels: the sensor samples the moving image every 2 ms (50 samples a saccade; bilinear interpolation); a pixel sees
  the log intensity ``log(I + eps)``, ``I`` = pixel value / 255, ``eps`` = 0.1 (black to white: ln 11 = 2.4).
- Events: a pixel remembers the log intensity of its last event (at first, what it sees at t = 0). When the current
  one differs from it by the pixel's ON (rising) or OFF (falling) threshold or more, the pixel emits one event per
  threshold crossed, each at the time (in µs) the linearly interpolated log intensity crosses that level, and its
  memory moves by as many thresholds.
- Threshold mismatch: every pixel's ON and OFF thresholds are drawn once, for the whole sensor, from a normal
  distribution of mean 0.3 and standard deviation 0.03, clipped below at 0.05.
- Refractory period: a pixel drops crossings less than 1 ms after its previous event (its memory still moves, so they
  are lost, not delayed).
- Noise: background-activity events at 0.5 Hz a pixel (a Poisson count; pixel, time and polarity uniform), added to
  the signal: about 150 a recording beside some 5,900 signal events, half of them ON.

Randomness comes from ``--seed`` alone: the thresholds from (seed), each image's noise from (seed, split, index), so a
recording does not depend on ``--workers`` or on which other images are converted: the same seed writes
byte-identical files. Files are ATIS ``.bin``, N-MNIST's format: 5 bytes an event (x, y, polarity bit + 23-bit
timestamp in µs), sorted by time, read by spikingjelly's NMNIST loader (``load_ATIS_bin``).
"""

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pfa.data.event_frames import BUSY_HINT, LOCK_NAME, FashionMNISTEvents
from pfa.data.fashion_mnist import CLASSES, load_fashion_mnist
from pfa.data.samples import write_atis_bin
from pfa.errors import UserError
from pfa.files import FolderLock, write_json

VERSION = 1
IMAGE = 28
SIDE = FashionMNISTEvents.get_H_W()[0]
FOLDERS = tuple(f"{i}-{re.sub('[^a-z]+', '-', name.lower())}" for i, name in enumerate(CLASSES))  # 0-t-shirt-top, ...
PARTS = {"train": ("Train", 1), "test": ("Test", 2)}  # split -> (extract folder, seed key)
BATCH = 64  # images simulated together


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that shapes a recording except the seed (see the module's docstring); written to manifest.json."""

    saccade_ms: float = 100.0
    path_px: tuple[tuple[float, float], ...] = ((-2, -2), (2, 2), (-2, 2))  # offsets (x, y) from the centre, closed
    samples_per_saccade: int = 50
    eps: float = 0.1
    threshold: float = 0.3
    threshold_sigma: float = 0.03
    threshold_min: float = 0.05
    refractory_us: float = 1000.0
    noise_hz: float = 0.5

    @property
    def duration_us(self) -> int:
        return round(len(self.path_px) * self.saccade_ms * 1000)

    def check(self) -> None:
        """Refuse settings that make no sense (or move the image off the sensor)."""
        if any(abs(v) > (SIDE - IMAGE) / 2 for point in self.path_px for v in point):
            raise UserError(f"saccade offsets {self.path_px} move the image off the {SIDE}x{SIDE} sensor: keep them "
                            f"within ±{(SIDE - IMAGE) // 2} px")
        if self.threshold <= 0:
            raise UserError(f"--threshold must be a positive step of log intensity (e.g. 0.3), got {self.threshold}")
        if self.noise_hz < 0 or self.refractory_us < 0:
            raise UserError(f"--noise-hz and --refractory-us must be 0 or more, got {self.noise_hz} and "
                            f"{self.refractory_us}")


def thresholds(settings: Settings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sensor's ON and OFF thresholds, one per pixel (flat, float32), drawn once from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    drawn = rng.normal(settings.threshold, settings.threshold_sigma, (2, SIDE * SIDE))
    on, off = np.maximum(drawn, settings.threshold_min).astype(np.float32)
    return on, off


def offsets(settings: Settings) -> np.ndarray:
    """The image's top-left corner on the sensor (x, y) at every sample, [K + 1, 2]: linear saccades along the path."""
    vertices = np.array([*settings.path_px, settings.path_px[0]], dtype=np.float64) + (SIDE - IMAGE) / 2
    steps = settings.samples_per_saccade
    fraction = (np.arange(steps) / steps)[:, None]
    moves = [a + (b - a) * fraction for a, b in zip(vertices[:-1], vertices[1:], strict=True)]
    return np.concatenate([*moves, vertices[-1:]])


def log_intensity(images: np.ndarray, settings: Settings) -> np.ndarray:
    """What each pixel sees at every sample: log(I + eps) of the shifted images, [K + 1, B * SIDE * SIDE] float32."""
    pad = SIDE - IMAGE + 2
    padded = np.pad(images.astype(np.float32) / 255, ((0, 0), (pad, pad), (pad, pad)))
    corner = offsets(settings)
    # sensor pixel r sees image coordinate r - corner: padded rows (columns) from r + base on, mixed by frac
    base = np.floor(-corner).astype(np.int64) + pad
    frac = (-corner - np.floor(-corner)).astype(np.float32)
    seen = np.empty((len(corner), len(images), SIDE, SIDE), np.float32)
    for out, (x, y), (fx, fy) in zip(seen, base, frac, strict=True):  # one translation a sample, for every image
        rows = padded[:, y:y + SIDE] * (1 - fy) + padded[:, y + 1:y + 1 + SIDE] * fy
        np.add(rows[:, :, x:x + SIDE] * (1 - fx), rows[:, :, x + 1:x + 1 + SIDE] * fx, out=out)
    seen += np.float32(settings.eps)
    return np.log(seen, out=seen).reshape(len(corner), -1)


def signal_events(level: np.ndarray, on: np.ndarray, off: np.ndarray, settings: Settings):
    """The events of log intensities ``level`` [K + 1, N]: (pixel index in N, time in µs, polarity) arrays.

    Time runs sample by sample (the state is sequential); every step is vectorised over all pixels of all images.
    """
    on, below = np.tile(on, level.shape[1] // on.size), -np.tile(off, level.shape[1] // off.size)
    dt = settings.saccade_ms * 1000 / settings.samples_per_saccade
    reference = level[0].copy()
    last = np.full(level.shape[1], -np.inf)
    found = []
    for k in range(1, len(level)):
        change = level[k] - reference
        fired = np.flatnonzero((change >= on) | (change <= below))
        if fired.size == 0:
            continue
        rising = change[fired] > 0
        step = np.where(rising, on[fired], below[fired])
        crossings = np.floor(change[fired] / step).astype(np.int64)
        start, before = reference[fired], level[k - 1, fired]
        slope = level[k, fired] - before
        reference[fired] = start + crossings * step
        for j in range(1, crossings.max() + 1):
            now = crossings >= j
            pixels = fired[now]
            fraction = np.clip((start[now] + j * step[now] - before[now]) / slope[now], 0, 1)
            t = (k - 1 + fraction.astype(np.float64)) * dt
            kept = t - last[pixels] >= settings.refractory_us
            last[pixels[kept]] = t[kept]
            found.append((pixels[kept], np.floor(t[kept]).astype(np.int64), rising[now][kept].astype(np.int64)))
    if not found:
        return tuple(np.zeros(0, np.int64) for _ in range(3))
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


def noise_events(rng: np.random.Generator, settings: Settings):
    """Background activity of one recording: (pixel, time in µs, polarity), Poisson in count, uniform otherwise."""
    count = rng.poisson(settings.noise_hz * SIDE * SIDE * settings.duration_us * 1e-6)
    return rng.integers(0, SIDE * SIDE, count), rng.integers(0, settings.duration_us, count), rng.integers(0, 2, count)


def record(images: np.ndarray, keys: list[tuple[int, int]], settings: Settings, seed: int) -> list[dict]:
    """Event recordings ``{"t", "x", "y", "p"}`` (int64, sorted by time) of uint8 images [B, 28, 28].

    ``keys``: (split key, index) of each image, which seeds its noise.
    """
    on, off = thresholds(settings, seed)
    pixels, times, polarities = signal_events(log_intensity(images, settings), on, off, settings)
    noise = [noise_events(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key)), settings) for key in keys]
    owners = np.repeat(np.arange(len(keys)), [len(n[0]) for n in noise])
    pixel = np.concatenate([pixels, owners * SIDE * SIDE + np.concatenate([n[0] for n in noise])])
    t = np.concatenate([times, *(n[1] for n in noise)])
    p = np.concatenate([polarities, *(n[2] for n in noise)])
    owner, pixel = np.divmod(pixel, SIDE * SIDE)
    # one int64 key per event, (image, t, y, x, p) from high bits to low: sorting the keys sorts the events
    fields = {"t": t, "y": pixel // SIDE, "x": pixel % SIDE, "p": p}
    widths = {"t": settings.duration_us.bit_length(), "y": (SIDE - 1).bit_length(), "x": (SIDE - 1).bit_length(),
              "p": 1}
    key = owner
    for name, value in fields.items():
        key = key << widths[name] | value
    key.sort()
    events = {}
    for name in reversed(fields):
        key, events[name] = np.divmod(key, 1 << widths[name])
    bounds = np.searchsorted(key, np.arange(len(keys) + 1))
    return [{k: events[k][a:b] for k in ("t", "x", "y", "p")} for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _convert_batch(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                   settings: Settings, seed: int) -> dict:
    """Record and write one batch; return its counts."""
    name, key = PARTS[split]
    recordings = record(images, [(key, int(i)) for i in indices], settings, seed)
    events = []
    for events_of, label, index in zip(recordings, labels, indices, strict=True):
        write_atis_bin(folder / name / FOLDERS[label] / f"{index:05d}.bin", events_of)
        events.append((len(events_of["t"]), int(events_of["p"].sum())))
    counts = np.array(events).reshape(-1, 2)
    return {"events": counts[:, 0].tolist(), "on": int(counts[:, 1].sum())}


def _selection(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices converted: all, or the first ``per_class`` of each class."""
    if per_class is None:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASSES))]))


def _existing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name in ("extract", "events_np") or p.name.startswith("frames_"))


def convert(root, seed: int = 0, settings: Settings | None = None, per_class: int | None = None,
            workers: int | None = None, source: str | None = None, progress: bool = True) -> dict:
    """Write the recordings of Fashion-MNIST (``source``: see ``pfa.data.fashion_mnist``) under ``root``; return the
    manifest. A root already converted with the same seed and settings is left as it is."""
    settings = settings or Settings()
    settings.check()
    if per_class is not None and per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {per_class}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    root = Path(root)
    wanted = json.loads(json.dumps({"converter": "pfa.data.fmnist_events", "version": VERSION, "seed": seed,
                                    "per_class": per_class, "settings": dataclasses.asdict(settings)}))
    root.mkdir(parents=True, exist_ok=True)
    with FolderLock(root, LOCK_NAME, "being prepared", BUSY_HINT, wait=True):
        manifest = _read_manifest(root)
        if (root / "extract").is_dir() and manifest and all(manifest.get(k) == v for k, v in wanted.items()):
            print(f"{root} already holds this conversion (same seed and settings); nothing to do", file=sys.stderr)
            return manifest
        existing = _existing(root)
        if existing:
            raise UserError(f"{root} already holds {', '.join(existing)} from another conversion or dataset: choose a "
                            f"new --root, or delete them to convert again")
        partial = root / "extract.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            counts = _write_all(partial, seed, settings, per_class, workers or os.cpu_count() or 1, source, progress)
        except OSError as error:
            raise UserError(f"cannot write {partial}: {error.strerror or error}; free space or choose another --root "
                            "(the partial output is removed on the next run)") from None
        partial.rename(root / "extract")
        manifest = {**wanted, "sensor": [SIDE, SIDE], "duration_us": settings.duration_us, "classes": FOLDERS,
                    "counts": counts}
        write_json(root / "manifest.json", manifest)
    return manifest


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _write_all(folder: Path, seed: int, settings: Settings, per_class: int | None, workers: int, source: str | None,
               progress: bool) -> dict:
    """Record every chosen image into ``folder`` in batches of BATCH, spread over ``workers`` processes."""
    jobs = []
    for split in PARTS:
        data = load_fashion_mnist(source, train=split == "train")
        images, labels = data.images.numpy(), data.labels.numpy()
        chosen = _selection(labels, per_class)
        for label in FOLDERS:
            (folder / PARTS[split][0] / label).mkdir(parents=True)
        batches = np.split(chosen, range(BATCH, len(chosen), BATCH))
        jobs += [(split, images[part], labels[part], part) for part in batches]
    bar = tqdm(total=sum(len(job[3]) for job in jobs), desc="Fashion-MNIST -> events", unit="image",
               disable=not progress, file=sys.stderr)
    results = {split: [] for split in PARTS}
    record_batch = partial(_convert_batch, folder, settings=settings, seed=seed)
    with ProcessPoolExecutor(workers) as pool:
        for job, counts in zip(jobs, (pool.map if workers > 1 else map)(record_batch, *zip(*jobs, strict=True)),
                               strict=True):
            results[job[0]].append(counts)
            bar.update(len(job[3]))
    bar.close()
    return {split: _summary(parts) for split, parts in results.items()}


def _summary(parts: list[dict]) -> dict:
    events = np.array([n for part in parts for n in part["events"]])
    total = int(events.sum())
    return {"recordings": len(events), "events": total, "events_per_recording": {
        "mean": round(float(events.mean()), 1), "min": int(events.min()), "max": int(events.max())},
        "on_fraction": round(sum(part["on"] for part in parts) / max(total, 1), 4)}


def main(argv=None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="output folder, later passed to CIFAR/main.py as --data-dir")
    parser.add_argument("--seed", type=int, default=0, help="seeds thresholds and noise (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--per-class", type=int, default=None, help="convert only the first N images of each class "
                        "in each split (default: all 70,000)")
    parser.add_argument("--source", default=None, help="folder of Fashion-MNIST's idx files (default: "
                        "Debian's dataset-fashion-mnist, else ./data)")
    parser.add_argument("--threshold", type=float, default=defaults.threshold, help="mean contrast threshold, in log "
                        f"intensity (default {defaults.threshold})")
    parser.add_argument("--noise-hz", type=float, default=defaults.noise_hz, help="background events a pixel a "
                        f"second (default {defaults.noise_hz})")
    parser.add_argument("--refractory-us", type=float, default=defaults.refractory_us, help="refractory period in "
                        f"µs (default {defaults.refractory_us:g})")
    args = parser.parse_args(argv)
    settings = dataclasses.replace(defaults, threshold=args.threshold, noise_hz=args.noise_hz,
                                   refractory_us=args.refractory_us)
    began = time.perf_counter()
    try:
        manifest = convert(args.root, args.seed, settings, args.per_class, args.workers, args.source)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{c['recordings']} {split} recordings ({c['events_per_recording']['mean']:.0f} events each)"
                       for split, c in manifest["counts"].items())
    print(f"{counts} under {Path(args.root) / 'extract'} in {time.perf_counter() - began:.0f} s; next: "
          f"python CIFAR/main.py --dataset fmnist-events --data-dir {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
