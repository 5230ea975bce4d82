"""Fashion-MNIST events: the simulated camera on known inputs, determinism, the ATIS files through spikingjelly's reader
and the frame pipeline, and `CIFAR/main.py --dataset fmnist-events` with every attention kind."""

import dataclasses
import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spikingjelly.datasets.utils import load_ATIS_bin

from pfa.attention.registry import attention_kinds
from pfa.data import fmnist_events as fe
from pfa.data import neuromorphic as nm
from pfa.data.fashion_mnist import DEBIAN_DIR
from pfa.engine.config import parse_config
from pfa.errors import UserError
from pfa.tasks.cifar import CifarConfig, Data, model_arguments

REPO = Path(__file__).resolve().parents[1]
QUIET = dataclasses.replace(fe.Settings(), noise_hz=0.0)
_spec = importlib.util.spec_from_file_location("cifar_main", REPO / "CIFAR/main.py")
cifar_main = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cifar_main)


def square_image(left: int = 10, top: int = 10, size: int = 8) -> np.ndarray:
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, top:top + size, left:left + size] = 255
    return image


def write_idx(folder: Path, per_class: int = 2, seed: int = 0) -> None:
    """Fashion-MNIST's four idx files with ``per_class`` made-up images of each class per split (a bright rectangle
    whose width and height depend on the class, with some texture), labels cycling over the classes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for prefix, n in (("train", 10 * per_class), ("t10k", 10 * per_class)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = np.zeros((n, 28, 28), np.uint8)
        for image, label in zip(images, labels, strict=True):
            height, width = 8 + 2 * (label % 5), 6 + 3 * (label // 5) + label % 3
            top, left = rng.integers(2, 26 - height), rng.integers(2, 26 - width)
            image[top:top + height, left:left + width] = rng.integers(120, 256, (height, width))
        for kind, array, code in (("images", images, 3), ("labels", labels, 1)):
            header = bytes([0, 0, 8, code]) + np.array(array.shape, ">u4").tobytes()
            with gzip.open(folder / f"{prefix}-{kind}-idx{code}-ubyte.gz", "wb") as f:
                f.write(header + array.tobytes())


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fashion") / "idx"
    write_idx(folder)
    return folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory, source) -> Path:
    """A tiny conversion (2 images a class per split), shared by the pipeline tests (frames get cached beside it)."""
    root = tmp_path_factory.mktemp("events")
    fe.convert(root, seed=3, workers=1, source=str(source), progress=False)
    return root


def signal(images: np.ndarray, settings: fe.Settings, seed: int = 0) -> dict:
    (events,) = fe.record(images, [(1, 0)], settings, seed)
    return events


def test_a_square_moving_right_fires_on_at_its_leading_edge_and_off_at_its_trailing_edge():
    settings = dataclasses.replace(QUIET, path_px=((-2, 0), (2, 0)), refractory_us=0)  # right 4 px in 100 ms, back
    events = signal(square_image(), settings)
    first = events["t"] < 100_000
    on, off = first & (events["p"] == 1), first & (events["p"] == 0)
    # columns 10..17 are bright at offset 0, 14..21 at offset 4: 18..21 brighten, 10..13 darken; rows 12..19 (offset 2)
    assert set(events["x"][on]) == {18, 19, 20, 21} and set(events["x"][off]) == {10, 11, 12, 13}
    assert set(events["y"]) == set(range(12, 20))
    # each pixel rises (falls) by ln(1.1 / 0.1) once: floor(that / its threshold) events
    thresholds_on, thresholds_off = fe.thresholds(settings, 0)
    span = np.log(1.1) - np.log(0.1)
    rows = range(12, 20)
    assert on.sum() == sum(int(span // thresholds_on[y * 32 + x]) for x in range(18, 22) for y in rows)
    assert off.sum() == sum(int(span // thresholds_off[y * 32 + x]) for x in range(10, 14) for y in rows)
    assert 0.45 < events["p"].mean() < 0.55  # over the closed path, about as many ON as OFF events
    assert np.all(np.diff(events["t"]) >= 0) and events["t"].max() <= settings.duration_us


def shortest_gap(recordings: list[dict]) -> int:
    """The shortest time between two events of one pixel, in µs."""
    gaps = []
    for events in recordings:
        order = np.lexsort((events["t"], events["x"], events["y"]))
        pixel = (events["y"] * 32 + events["x"])[order]
        gaps.append(np.diff(events["t"][order])[pixel[1:] == pixel[:-1]])
    return int(np.concatenate(gaps).min())


def test_a_pixel_stays_silent_for_its_refractory_period():
    images = np.stack([square_image(left=6 + i, top=4, size=12 + i)[0] for i in range(4)])
    gap = {refractory: shortest_gap(fe.record(images, [(1, i) for i in range(4)],
                                              dataclasses.replace(QUIET, refractory_us=refractory), 0))
           for refractory in (0.0, 1000.0, 3000.0)}
    assert gap[0.0] < 1000 and gap[1000.0] >= 999 and gap[3000.0] >= 2999  # timestamps are floored to whole µs


def test_a_still_image_gives_only_background_noise():
    still = dataclasses.replace(fe.Settings(), path_px=((0, 0), (0, 0), (0, 0)))
    images = np.repeat(square_image(), 64, axis=0)
    assert signal(images[:1], dataclasses.replace(still, noise_hz=0.0))["t"].size == 0
    recordings = fe.record(images, [(1, i) for i in range(64)], still, 0)
    counts = np.array([len(r["t"]) for r in recordings])
    expected = still.noise_hz * 32 * 32 * still.duration_us * 1e-6  # 153.6 a recording
    assert abs(counts.mean() - expected) < 4 * np.sqrt(expected / 64)
    polarity = np.concatenate([r["p"] for r in recordings])
    assert abs(polarity.mean() - 0.5) < 0.02 and len({tuple(r["x"][:5]) for r in recordings}) == 64


def test_a_recording_depends_on_its_seed_and_image_only():
    images = np.stack([square_image(left=4 + i, top=3 + 2 * i)[0] for i in range(6)])
    keys = [(1, 10 + i) for i in range(6)]
    alone = fe.record(images[2:3], keys[2:3], fe.Settings(), 7)[0]
    together = fe.record(images, keys, fe.Settings(), 7)[2]
    assert all(np.array_equal(alone[k], together[k]) for k in "txyp")
    other_seed = fe.record(images[2:3], keys[2:3], fe.Settings(), 8)[0]
    assert len(other_seed["t"]) != len(alone["t"]) or not np.array_equal(other_seed["x"], alone["x"])


def test_same_seed_writes_byte_identical_files_whatever_the_workers(tmp_path, source, converted):
    again = tmp_path / "again"
    fe.convert(again, seed=3, workers=2, source=str(source), progress=False)
    files = sorted(p.relative_to(converted / "extract") for p in (converted / "extract").rglob("*.bin"))
    assert len(files) == 40 and files == sorted(p.relative_to(again / "extract") for p in again.rglob("*.bin"))
    assert all((converted / "extract" / f).read_bytes() == (again / "extract" / f).read_bytes() for f in files)
    assert (converted / "manifest.json").read_bytes() == (again / "manifest.json").read_bytes()
    other = tmp_path / "other"
    fe.convert(other, seed=4, workers=1, source=str(source), progress=False)
    assert all((converted / "extract" / f).read_bytes() != (other / "extract" / f).read_bytes() for f in files)


def test_the_manifest_records_settings_and_counts_and_guards_the_root(converted, source, capsys):
    manifest = json.loads((converted / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["settings"]["threshold"] == fe.Settings().threshold
    assert manifest["sensor"] == [32, 32] and manifest["classes"][0] == "0-t-shirt-top"
    for split, folder in (("train", "Train"), ("test", "Test")):
        counts, files = manifest["counts"][split], sorted((converted / "extract" / folder).rglob("*.bin"))
        assert counts["recordings"] == len(files) == 20
        assert counts["events"] == sum(f.stat().st_size for f in files) // 5
        assert 0.4 < counts["on_fraction"] < 0.6
    assert fe.convert(converted, seed=3, source=str(source), progress=False) == manifest  # done already: kept
    assert "already holds this conversion" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"already holds .*extract.* from another conversion"):
        fe.convert(converted, seed=5, source=str(source), progress=False)


def test_files_round_trip_through_spikingjelly_and_become_frames(tmp_path, source, converted):
    images = gzip.decompress((source / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    first = np.frombuffer(images, np.uint8)[:28 * 28].reshape(1, 28, 28)
    (expected,) = fe.record(first, [(2, 0)], fe.Settings(), 3)
    read = load_ATIS_bin(converted / "extract/Test/0-t-shirt-top/00000.bin")
    assert all(np.array_equal(read[k], expected[k]) for k in "txyp")

    data = nm.build_neuromorphic("fmnist-events", converted, 4, workers=1, progress=False)
    assert data.frame_shape == (4, 2, 32, 32) and data.split["kind"] == "official"
    assert data.classes == list(fe.FOLDERS) and (len(data.train), len(data.test)) == (20, 20)
    assert all(f.startswith("train/") for f in data.split["train"])
    frames, label = data.test[data.split["test"].index("test/0-t-shirt-top/00000.npz")]
    counts = np.zeros((2, 32, 32))
    np.add.at(counts, (expected["p"], expected["y"], expected["x"]), 1)
    assert label == 0 and frames.dtype == torch.float32 and np.array_equal(frames.sum(0).numpy(), counts)


def test_a_missing_conversion_says_what_to_run(tmp_path):
    for root in (tmp_path / "absent", tmp_path):
        with pytest.raises(UserError) as error:
            nm.build_neuromorphic("fmnist-events", root, 4, progress=False)
        message = str(error.value)
        assert "\n" not in message and f"python -m pfa.data.fmnist_events --root {root}`" in message
    assert not (tmp_path / "extract").exists() and not (tmp_path / "events_np").exists()


def test_bad_flags_give_one_line(tmp_path, capsys):
    for flags, message in ((["--threshold", "0"], "--threshold must be a positive"),
                           (["--per-class", "0"], "--per-class must be at least 1"),
                           (["--noise-hz", "-1"], "--noise-hz and --refractory-us must be 0 or more")):
        assert fe.main(["--root", str(tmp_path / "out"), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.splitlines() == [err] and message in err


def test_the_recipe_fits_the_vgg_without_pooling():
    cfg = parse_config(CifarConfig, ["--dataset", "fmnist-events"])
    assert (cfg.arch, cfg.pool, cfg.T, cfg.width) == ("vgg", 0, 8, 0.125)
    arguments = model_arguments(cfg, Data(None, None, 10, 2, (32, 32), images=False))
    assert arguments["image_size"] == 32 and arguments["input_pool"] is None


@pytest.mark.parametrize("attention", attention_kinds())
def test_cifar_main_trains_every_attention_kind_on_converted_events(converted, attention, tmp_path):
    out = tmp_path / "run"
    argv = ["--dataset", "fmnist-events", "--data-dir", converted, "--out-dir", out, "--attention", attention, "--T", 4,
            "--width", 0.0625, "--epochs", 1, "--batch-size", 4, "--workers", 0, "--device", "cpu",
            "--train-samples", 8, "--test-samples", 4]
    record = cifar_main.main([str(a) for a in argv])
    assert record["epoch"] == 1 and 0 <= record["test_acc"] <= 1
    assert json.loads((out / "split.json").read_text())["kind"] == "official"


def test_cifar_main_without_a_conversion_names_the_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cifar_main.main(["--dataset", "fmnist-events", "--data-dir", str(tmp_path), "--device", "cpu",
                         "--out-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.splitlines() == [err]
    assert f"python -m pfa.data.fmnist_events --root {tmp_path}`" in err


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")
def test_real_fashion_mnist_gives_n_mnist_like_recordings(tmp_path):
    manifest = fe.convert(tmp_path, per_class=1, workers=1, progress=False)
    for counts in manifest["counts"].values():
        assert counts["recordings"] == 10 and 0.45 < counts["on_fraction"] < 0.55
        assert 2_000 < counts["events_per_recording"]["mean"] < 12_000
