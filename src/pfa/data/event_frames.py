"""Event-camera recordings through spikingjelly 2: raw files → ``events_np`` → frames, with errors a user can act on.

On-disk layout under ``root`` (spikingjelly's): ``download/`` (the official archives) → ``extract/`` → ``events_np/`` →
``frames_number_{T}_split_by_{number|time}/``; Fashion-MNIST events have no archives: ``pfa.data.fmnist_events`` writes
their ``extract/``. A new ``T`` or ``split_by`` builds a new frame folder next to the cached ones; nothing is
overwritten. Samples are float32 tensors ``[T, 2, H, W]`` (polarity channels; H×W = 128×128 for CIFAR10-DVS and DVS128
Gesture, 180×240 for N-Caltech101, 34×34 for N-MNIST, 32×32 for Fashion-MNIST events); pooling to 48×48 is the
model's job.
Train/test splits and the datasets built on these frames live in ``pfa.data.neuromorphic``.
"""

import os
import shutil
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from spikingjelly import configure
from spikingjelly.datasets import utils as sj_utils
from spikingjelly.datasets.cifar10_dvs import CIFAR10DVS
from spikingjelly.datasets.dvs128_gesture import DVS128Gesture
from spikingjelly.datasets.n_caltech101 import NCaltech101
from spikingjelly.datasets.n_mnist import NMNIST
from torchvision.datasets.utils import check_integrity, extract_archive
from tqdm import tqdm

from pfa.errors import UserError
from pfa.files import FolderLock

SPLITS = ("seeded", "reference")  # for datasets without an official split; see build_neuromorphic
LOCK_NAME = ".pfa-build.lock"
BUSY_HINT = "wait for it to finish, or delete the lock if that process is gone"


class FashionMNISTEvents(NMNIST):
    """Fashion-MNIST recorded by ``pfa.data.fmnist_events``: N-MNIST's layout and ATIS files on a 32x32 sensor."""

    @classmethod
    def get_H_W(cls) -> tuple[int, int]:
        return 32, 32

    @classmethod
    def resource_url_md5(cls) -> list:
        return []


@dataclass(frozen=True)
class _Spec:
    """What pfa needs to know about one spikingjelly dataset class."""

    title: str
    folder_class: type
    official_split: bool
    archives: tuple[str, ...]  # files under download/ that hold the recordings
    page: str  # where a user gets them when the archive has no direct link
    converter: str | None = None  # the module that writes extract/ for data made here rather than downloaded

    def resources(self) -> dict:
        return {name: (url, md5) for name, url, md5 in self.folder_class.resource_url_md5() if name in self.archives}


SPECS = {
    "cifar10dvs": _Spec("CIFAR10-DVS", CIFAR10DVS, False, tuple(f"{c}.zip" for c in (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
        "figshare, linked from the paper https://doi.org/10.3389/fnins.2017.00309"),
    "dvsgesture": _Spec("DVS128 Gesture", DVS128Gesture, True, ("DvsGesture.tar.gz",),
                        "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794"),
    "ncaltech101": _Spec("N-Caltech101", NCaltech101, False, ("Caltech101.zip",),
                         "https://www.garrickorchard.com/datasets/n-caltech101"),
    "nmnist": _Spec("N-MNIST", NMNIST, True, ("Train.zip", "Test.zip"), "https://www.garrickorchard.com/datasets/n-mnist"),
    "fmnist-events": _Spec("Fashion-MNIST events", FashionMNISTEvents, True, (), "", "pfa.data.fmnist_events"),
}
DATASETS = tuple(SPECS)


def _spec(name: str) -> _Spec:
    if name not in SPECS:
        raise UserError(f"unknown event dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return SPECS[name]


def frame_size(name: str) -> tuple[int, int]:
    """(H, W) of the frames of dataset ``name``."""
    return tuple(_spec(name).folder_class.get_H_W())


# ---------------------------------------------------------------- raw files: which exist, which are missing


def _sources(name: str, extract: Path) -> list[tuple[Path, str]]:
    """Every raw recording under ``extract`` with the glob (relative to events_np) its converted output matches."""
    def files(folder: Path, out: str) -> list[tuple[Path, str]]:
        prefix = f"{out}/" if out else ""
        return [(f, f"{prefix}{f.parent.name}/{f.stem}.npz") for f in sorted(folder.glob("*/*")) if f.is_file()]

    if name == "cifar10dvs":
        return files(extract, "")
    if name == "ncaltech101":
        return files(extract / "Caltech101", "")
    if name in ("nmnist", "fmnist-events"):
        return files(extract / "Train", "train") + files(extract / "Test", "test")
    folder = extract / "DvsGesture"
    trials = [line.strip() for split in ("train", "test") for line in _lines(folder / f"trials_to_{split}.txt")]
    return [(folder / t, f"*/*/{Path(t).stem}_[0-9]*.npz") for t in trials if t]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _missing_extracted(name: str, extract: Path) -> list[str]:
    """Paths (relative to ``extract``) that a complete extraction has and this one lacks."""
    if name == "cifar10dvs":
        expected = [a.removesuffix(".zip") for a in SPECS[name].archives]
    elif name == "ncaltech101":
        expected = ["Caltech101"]
    elif name in ("nmnist", "fmnist-events"):
        expected = ["Train", "Test"]
    else:
        folder = extract / "DvsGesture"
        lists = [f"trials_to_{split}.txt" for split in ("train", "test")]
        trials = [t.strip() for lst in lists for t in _lines(folder / lst) if t.strip()]
        expected = [f"DvsGesture/{n}" for t in trials for n in (t, f"{Path(t).stem}_labels.csv")] + [
            f"DvsGesture/{lst}" for lst in lists]
        return [e for e in expected if not (extract / e).is_file()]
    return [e for e in expected if not (extract / e).is_dir() or not any((extract / e).iterdir())]


def _check_raw_sizes(name: str, extract: Path) -> None:
    """ATIS recordings are 5-byte records; spikingjelly silently mis-decodes a truncated one, so catch it here."""
    if name in ("ncaltech101", "nmnist", "fmnist-events"):
        for path, _ in _sources(name, extract):
            if path.stat().st_size % 5:
                raise UserError(f"corrupt event file {path}: an ATIS .bin holds 5-byte events but it has "
                                f"{path.stat().st_size} bytes; replace it from the original archive")


def _missing_download_message(name: str, root: Path, missing: list[str]) -> str:
    spec = SPECS[name]
    if spec.converter:
        return f"{spec.title} not found in {root}: make them first with `python -m {spec.converter} --root {root}`"
    links = ", ".join(f"{n} ({spec.resources()[n][0]})" if spec.folder_class.downloadable() else n for n in missing)
    return (f"{spec.title} raw data not found in {root}: download {links} from {spec.page} and put them in "
            f"{root / 'download'}/ (for a tiny smoke-test copy run "
            f"`python -m pfa.data.samples --dataset {name} --root {root}`)")


def _extract_downloads(name: str, root: Path) -> None:
    """Verify the archives in download/ (md5, without deleting anything) and unpack them into extract/."""
    spec, download = SPECS[name], root / "download"
    missing = [a for a in spec.archives if not (download / a).is_file()]
    if missing or spec.converter:
        raise UserError(_missing_download_message(name, root, missing))
    for archive, (url, md5) in spec.resources().items():
        if not check_integrity(str(download / archive), md5):
            source = url if spec.folder_class.downloadable() else spec.page
            raise UserError(f"{download / archive} does not match its md5 {md5} (incomplete or wrong file): download "
                            f"it again from {source}, or if you trust it, unpack it yourself into {root / 'extract'}")
    partial = root / "extract.partial"
    shutil.rmtree(partial, ignore_errors=True)
    # spikingjelly's own extract step unpacks every file in download/ (READMEs too), so unpack only the archives.
    for archive in spec.archives:
        try:
            extract_archive(str(download / archive), str(partial))
        except Exception as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise UserError(f"cannot unpack {download / archive} ({error}): download it again") from error
    partial.rename(root / "extract")


# ---------------------------------------------------------------- building: lock, markers, progress, workers


def _clear_marker(folder: Path, lock: FolderLock) -> None:
    """Remove a spikingjelly ``.building`` marker and its partial folder if our dead predecessor left them."""
    marker = folder.with_name(f"{folder.name}.building")
    if not marker.exists():
        return
    if not lock.took_over:
        raise UserError(f"found {marker}: an earlier spikingjelly run was interrupted while writing {folder}; if no "
                        f"other process is preparing this dataset, delete {folder} and {marker} and run again")
    print(f"removing {folder} and {marker} left by an interrupted build", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    marker.unlink()


@contextmanager
def _progress(desc: str, folder: Path, total: int, enabled: bool):
    """A tqdm bar that follows the number of ``.npz`` files appearing under ``folder`` while the body runs."""
    bar = tqdm(total=total, desc=desc, unit="file", disable=not enabled, file=sys.stderr)
    stop = threading.Event()

    def count() -> int:
        return sum(name.endswith(".npz") for _, _, names in os.walk(folder) for name in names)

    def poll():
        while not stop.wait(0.5):
            bar.n = count()
            bar.refresh()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join()
        bar.n = count()
        bar.close()


@contextmanager
def _workers(n: int):
    """spikingjelly reads its preprocessing thread count from ``configure`` when each pool starts."""
    old = configure.max_threads_number_for_datasets_preprocess
    configure.max_threads_number_for_datasets_preprocess = n
    try:
        yield
    finally:
        configure.max_threads_number_for_datasets_preprocess = old


def _convert_events(name: str, root: Path, workers: int, progress: bool) -> None:
    """extract/ → events_np/ with spikingjelly's decoder; on failure remove the partial output and name the file."""
    spec, extract, events_np = SPECS[name], root / "extract", root / "events_np"
    if not extract.exists():
        _extract_downloads(name, root)
    missing = _missing_extracted(name, extract)
    if missing:
        raise UserError(f"{extract} is incomplete (missing {', '.join(missing[:5])}"
                        f"{' …' if len(missing) > 5 else ''}): delete it to unpack {root / 'download'} again, or "
                        f"restore those files")
    _check_raw_sizes(name, extract)
    sources = _sources(name, extract)
    marker = events_np.with_name("events_np.building")
    marker.touch()
    events_np.mkdir()
    try:
        with _workers(workers), _progress(f"{spec.title}: decoding events", events_np, _expected_outputs(name, extract),
                                          progress):
            spec.folder_class.create_raw_from_extracted(extract, events_np)
    except Exception as error:
        failed = [src for src, out in sources if not any(events_np.glob(out))]
        shutil.rmtree(events_np, ignore_errors=True)
        marker.unlink()
        culprit = failed[0] if failed else extract
        raise UserError(f"corrupt event file {culprit}: spikingjelly cannot decode it ({type(error).__name__}: "
                        f"{error}); replace it from the original archive") from error
    try:
        _check_not_empty(events_np, sources)
    except UserError:
        shutil.rmtree(events_np, ignore_errors=True)
        marker.unlink()
        raise
    marker.unlink()


def _check_not_empty(events_np: Path, sources: list[tuple[Path, str]]) -> None:
    """A recording without events (an empty or header-only file) would train as all-zero frames: name it instead."""
    for path in sorted(events_np.rglob("*.npz")):
        with np.load(path) as events:
            if events["t"].size:
                continue
        raw = next((src for src, out in sources if path in set(events_np.glob(out))), path)
        raise UserError(f"event recording {raw} holds no events (an empty or header-only file); replace it from the "
                        "original archive, or remove it")


def _expected_outputs(name: str, extract: Path) -> int:
    if name != "dvsgesture":
        return len(_sources(name, extract))
    return sum(max(len(_lines(src.with_name(f"{src.stem}_labels.csv"))) - 1, 0) for src, _ in _sources(name, extract))


def _frames_folder(root: Path, T: int, split_by: str) -> Path:
    return root / f"frames_number_{T}_split_by_{split_by}"


def _build_frames(name: str, root: Path, T: int, split_by: str, workers: int, progress: bool) -> None:
    """events_np/ → frames folder through the dataset class itself; a failing file is named, partial output removed."""
    spec, folder = SPECS[name], _frames_folder(root, T, split_by)
    events = sorted(root.joinpath("events_np").rglob("*.npz"))
    cached = sorted(p.name for p in root.glob("frames_number_*") if p.is_dir() and p != folder)
    desc = f"{spec.title}: {folder.name}" + (f" (also cached: {', '.join(cached)})" if cached else "")
    kwargs = {"train": True} if spec.official_split else {}
    try:
        with _workers(workers), _progress(desc, folder, len(events), progress):
            spec.folder_class(str(root), data_type="frame", frames_number=T, split_by=split_by, **kwargs)
    except Exception as error:
        failed = [e for e in events if not (folder / e.relative_to(root / "events_np")).exists()]
        shutil.rmtree(folder, ignore_errors=True)
        folder.with_name(f"{folder.name}.building").unlink(missing_ok=True)
        raise _frame_error(failed[0] if failed else root / "events_np", T, split_by, error) from error


def _frame_error(path: Path, T: int, split_by: str, error: Exception) -> UserError:
    if split_by == "time" and path.is_file():
        try:
            with np.load(path) as events:
                sj_utils.cal_fixed_frames_number_segment_index(events["t"], "time", T)
        except IndexError:
            return UserError(f"split_by='time' with T={T} leaves an empty time bin in {path} (its events are not "
                             f"spread over time): use split_by='number' or a smaller T")
        except Exception:
            pass
    return UserError(f"cannot turn {path} into frames ({type(error).__name__}: {error}): the file is corrupt; "
                     f"delete the events_np folder next to it to decode the raw recordings again")


def _check_cached(folder: Path, T: int, shape: tuple[int, int]) -> None:
    """A cached frame folder must hold [T, 2, H, W] frames; one file is read to check."""
    first = next(folder.rglob("*.npz"), None)
    if first is None:
        raise UserError(f"{folder} holds no frame files: delete it to build it again")
    try:
        got = sj_utils.load_npz_frames(first).shape
    except Exception as error:
        raise UserError(f"cannot read frame file {first} ({error}): delete {folder} to build it again") from error
    if tuple(got) != (T, 2, *shape):
        raise UserError(f"{folder} holds frames of shape {tuple(got)}, not the (T={T}, 2, {shape[0]}, {shape[1]}) its "
                        f"name promises: it was written by other code; delete it to build it again")


def prepare_frames(name: str, root, T: int, split_by: str = "number", workers: int | None = None,
                   progress: bool = True, wait: bool = True) -> Path:
    """Make sure ``root`` holds the frame folder for (T, split_by), building what is missing; return that folder.

    Missing raw data, a corrupt file, an interrupted earlier build or an empty time bin raise ``UserError``.
    ``workers``: spikingjelly's preprocessing threads (default: all CPUs). ``wait``: while another live process is
    building in ``root``, wait for it and then use its result (else raise ``UserError``).
    """
    spec, root = _spec(name), Path(root)
    if not isinstance(T, int) or T <= 0:
        raise UserError(f"the number of frames T must be a positive integer, got {T!r}")
    if split_by not in ("number", "time"):
        raise UserError(f"split_by must be 'number' or 'time', got {split_by!r}")
    if not root.is_dir():
        raise UserError(_missing_download_message(name, root, list(spec.archives)) + " (the folder does not exist)")
    folder, events_np = _frames_folder(root, T, split_by), root / "events_np"
    markers = [p.with_name(f"{p.name}.building") for p in (events_np, folder)]
    if not folder.exists() or any(m.exists() for m in markers):
        workers = workers or os.cpu_count() or 1
        with FolderLock(root, LOCK_NAME, "being prepared", BUSY_HINT, wait) as lock:
            _clear_marker(events_np, lock)
            _clear_marker(folder, lock)
            if not folder.exists():
                if not events_np.exists():
                    _convert_events(name, root, workers, progress)
                _build_frames(name, root, T, split_by, workers, progress)
    _check_cached(folder, T, frame_size(name))
    return folder
