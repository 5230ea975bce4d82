"""Write a few tiny recordings in an event dataset's real raw format, where spikingjelly 2 expects its extracted files.

``python -m pfa.data.samples --dataset cifar10dvs --root DIR`` lets a user smoke-test the whole pipeline (spikingjelly's
own decoders, frame integration, training) before downloading gigabytes. Each recording is a blob of events crossing the
sensor in its class's row band, so a network can learn the labels (horizontal flips and small rotations keep them).
Layouts written (as unpacked from the official archives):

- cifar10dvs:  ``extract/<class>/cifar10_<class>_<i>.aedat``  jAER AEDAT 2.0: big-endian uint32 (address, time) pairs
- dvsgesture:  ``extract/DvsGesture/userNN_<light>.aedat`` (AEDAT 3.1 polarity packets) + ``..._labels.csv``
  + ``trials_to_train.txt`` / ``trials_to_test.txt``
- ncaltech101: ``extract/Caltech101/<class>/image_NNNN.bin``  ATIS, 5 bytes an event
- nmnist:      ``extract/{Train,Test}/<digit>/NNNNN.bin``     ATIS, 5 bytes an event
"""

import argparse
import struct
import sys
from pathlib import Path

import numpy as np

from pfa.errors import UserError

CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NCALTECH101_CLASSES = (
    "BACKGROUND_Google", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor", "ant", "barrel",
    "bass", "beaver", "binocular", "bonsai", "brain", "brontosaurus", "buddha", "butterfly", "camera", "cannon",
    "car_side", "ceiling_fan", "cellphone", "chair", "chandelier", "cougar_body", "cougar_face", "crab", "crayfish",
    "crocodile", "crocodile_head", "cup", "dalmatian", "dollar_bill", "dolphin", "dragonfly", "electric_guitar",
    "elephant", "emu", "euphonium", "ewer", "ferry", "flamingo", "flamingo_head", "garfield", "gerenuk", "gramophone",
    "grand_piano", "hawksbill", "headphone", "hedgehog", "helicopter", "ibis", "inline_skate", "joshua_tree",
    "kangaroo", "ketch", "lamp", "laptop", "llama", "lobster", "lotus", "mandolin", "mayfly", "menorah", "metronome",
    "minaret", "nautilus", "octopus", "okapi", "pagoda", "panda", "pigeon", "pizza", "platypus", "pyramid", "revolver",
    "rhino", "rooster", "saxophone", "schooner", "scissors", "scorpion", "sea_horse", "snoopy", "soccer_ball",
    "stapler", "starfish", "stegosaurus", "stop_sign", "strawberry", "sunflower", "tick", "trilobite", "umbrella",
    "watch", "water_lilly", "wheelchair", "wild_cat", "windsor_chair", "wrench", "yin_yang",
)
GESTURE_CLASSES = 11
GESTURE_LIGHTING = ("fluorescent", "led", "natural")

DURATION_US = 200_000
# Events per recording (per gesture for DVS128 Gesture): about one per pixel for CIFAR10-DVS, so T = 4 frames pooled
# to 48x48 drive the first layers well above threshold; the others are kept small to keep the test suite fast.
# (Real recordings hold 10 to 100 times more.)
EVENTS = {"cifar10dvs": 16_000, "dvsgesture": 8_000, "ncaltech101": 4_000, "nmnist": 1_500}


def class_events(rng: np.random.Generator, label: int, num_classes: int, height: int, width: int, n_events: int,
                 t0: int = 0, duration: int = DURATION_US) -> dict:
    """Events of a blob crossing the sensor horizontally in the row band of class ``label`` (band k of num_classes).

    The class is where the blob is, not where it goes: its direction (left or right) is random, so the label survives
    the reference augmentation's horizontal flips. ON events lead, OFF events trail; 10 % are uniform noise.
    Returns ``{"t", "x", "y", "p"}`` int64 arrays sorted by t.
    """
    t = np.sort(rng.integers(t0, t0 + duration, n_events))
    band = height / num_classes
    spread = max(1.0, band / 4)
    centre_y = (label + 0.5) * band + rng.normal(0, spread / 4)
    start, end = (0.15 * width, 0.85 * width) if rng.random() < 0.5 else (0.85 * width, 0.15 * width)
    offset = rng.normal(0, spread, size=(2, n_events))
    x = start + (end - start) * (t - t0) / duration + offset[0]
    y = centre_y + offset[1]
    p = (offset[0] * np.sign(end - start) > 0).astype(np.int64)
    noise = rng.random(n_events) < 0.1
    x[noise] = rng.integers(0, width, noise.sum())
    y[noise] = rng.integers(0, height, noise.sum())
    x = np.clip(np.rint(x), 0, width - 1).astype(np.int64)
    y = np.clip(np.rint(y), 0, height - 1).astype(np.int64)
    return {"t": t.astype(np.int64), "x": x, "y": y, "p": p}


def write_aedat2(path: Path, events: dict) -> None:
    """jAER AEDAT 2.0 as CIFAR10-DVS stores it; spikingjelly decodes x = 127 - ya, y = 127 - xa, p = 1 - pa."""
    xa, ya, pa = 127 - events["y"], 127 - events["x"], 1 - events["p"]
    address = (ya << 8) | (xa << 1) | pa
    payload = np.stack([address, events["t"]], axis=1).astype(">u4")
    header = b"#!AER-DAT2.0\r\n# This is a raw AE data file written by pfa.data.samples\r\n# Sensor: DVS128\r\n"
    path.write_bytes(header + payload.tobytes())


def write_aedat31(path: Path, events: dict, packet_size: int = 512) -> None:
    """AEDAT 3.1: text header, then polarity packets (28-byte header, 8-byte little-endian events)."""
    parts = [b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"]
    data = (events["x"] << 17) | (events["y"] << 2) | (events["p"] << 1) | 1  # bit 0: valid
    words = np.stack([data, events["t"]], axis=1).astype("<u4")
    for start in range(0, len(words), packet_size):
        chunk = words[start:start + packet_size]
        n = len(chunk)
        # type 1 (polarity), source 1, event size 8, timestamp offset 4, overflow 0, capacity, number, valid
        parts.append(struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, n, n, n) + chunk.tobytes())
    path.write_bytes(b"".join(parts))


def write_atis_bin(path: Path, events: dict) -> None:
    """ATIS .bin (N-MNIST, N-Caltech101): x, y, then polarity bit + 23-bit timestamp, big-endian."""
    t = events["t"]
    if t.max(initial=0) >= 1 << 23:
        raise ValueError("ATIS timestamps must be below 2**23 µs")
    packed = np.stack([events["x"], events["y"], (events["p"] << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    path.write_bytes(packed.astype(np.uint8).tobytes())


def _per_class(root: Path, classes, height, width, per_class, rng, folder, name_of, writer, n_events) -> dict:
    written = {}
    for label, name in enumerate(classes):
        (root / folder / name).mkdir(parents=True)
        for i in range(per_class):
            path = root / folder / name / name_of(name, i)
            events = class_events(rng, label, len(classes), height, width, n_events)
            writer(path, events)
            written[path] = events
    return written


def _cifar10dvs(root: Path, per_class: int, rng) -> dict:
    return _per_class(root, CIFAR10DVS_CLASSES, 128, 128, per_class, rng, "extract",
                      lambda name, i: f"cifar10_{name}_{i}.aedat", write_aedat2, EVENTS["cifar10dvs"])


def _ncaltech101(root: Path, per_class: int, rng) -> dict:
    return _per_class(root, NCALTECH101_CLASSES, 180, 240, per_class, rng, "extract/Caltech101",
                      lambda name, i: f"image_{i + 1:04d}.bin", write_atis_bin, EVENTS["ncaltech101"])


def _nmnist(root: Path, per_class: int, rng) -> dict:
    digits = [str(d) for d in range(10)]
    written = {}
    for split, count in (("Train", per_class), ("Test", max(1, per_class // 2))):
        written |= _per_class(root, digits, 34, 34, count, rng, f"extract/{split}",
                              lambda name, i: f"{i:05d}.bin", write_atis_bin, EVENTS["nmnist"])
    return written


def _dvsgesture(root: Path, per_class: int, rng) -> dict:
    """``per_class`` training recordings (users 1..n) and one test recording, each holding all 11 gestures."""
    folder = root / "extract" / "DvsGesture"
    folder.mkdir(parents=True)
    users = {"train": range(1, per_class + 1), "test": range(24, 25)}
    written = {}
    for split, ids in users.items():
        trials = []
        for user in ids:
            stem = f"user{user:02d}_{GESTURE_LIGHTING[user % len(GESTURE_LIGHTING)]}"
            pieces, rows = [], ["class,startTime_usec,endTime_usec"]
            start = 1_000_000
            for label in range(GESTURE_CLASSES):
                pieces.append(class_events(rng, label, GESTURE_CLASSES, 128, 128, EVENTS["dvsgesture"], t0=start))
                rows.append(f"{label + 1},{start},{start + DURATION_US}")
                start += DURATION_US + 50_000
            events = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
            write_aedat31(folder / f"{stem}.aedat", events)
            (folder / f"{stem}_labels.csv").write_text("\n".join(rows) + "\n")
            written[folder / f"{stem}.aedat"] = events
            trials.append(f"{stem}.aedat")
        (folder / f"trials_to_{split}.txt").write_text("\n".join(trials) + "\n")
    return written


WRITERS = {"cifar10dvs": _cifar10dvs, "dvsgesture": _dvsgesture, "ncaltech101": _ncaltech101, "nmnist": _nmnist}
# CIFAR10-DVS: enough recordings that the README's short demo learns and its 10 % test side holds 20 of them.
DEFAULT_PER_CLASS = {"cifar10dvs": 20, "dvsgesture": 2, "ncaltech101": 2, "nmnist": 4}


def write_samples(dataset: str, root, per_class: int | None = None, seed: int = 0) -> dict:
    """Write sample recordings of ``dataset`` under ``root/extract``; return ``{raw file: events written}``.

    ``per_class``: recordings per class (DVS128 Gesture: training recordings, each with all 11 gestures; one test
    recording is added). Refuses to touch a root that already holds ``extract``, ``download`` or ``events_np``.
    """
    if dataset not in WRITERS:
        raise UserError(f"unknown dataset {dataset!r}: expected one of {', '.join(WRITERS)}")
    root = Path(root)
    existing = [name for name in ("extract", "download", "events_np") if (root / name).exists()]
    if existing:
        raise UserError(f"{root} already holds {', '.join(existing)}: give an empty or new --root for sample data")
    per_class = DEFAULT_PER_CLASS[dataset] if per_class is None else per_class
    if per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {per_class}")
    return WRITERS[dataset](root, per_class, np.random.default_rng(seed))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(WRITERS),
                        help="whose raw format to write (nmnist serves the tests of the readers; no task trains it)")
    parser.add_argument("--root", required=True, help="dataset root, later passed as --data-dir")
    parser.add_argument("--per-class", type=int, default=None, help="recordings per class (default depends on dataset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        written = write_samples(args.dataset, args.root, args.per_class, args.seed)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} {args.dataset} recordings under {Path(args.root) / 'extract'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
