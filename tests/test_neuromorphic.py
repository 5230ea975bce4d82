"""Event datasets end to end: sample recordings → spikingjelly's loaders → frames, splits, and every user mistake."""

import json
import os
import shutil
import socket
import threading

import numpy as np
import pytest
import torch

from pfa.data import event_frames as ef
from pfa.data import neuromorphic as nm
from pfa.data import samples
from pfa.errors import UserError
from pfa.files import FolderLock

T = 4


def _expected_by_file(name, root, written):
    """``relative frame file -> (class folder, events)`` computed from what the writer wrote."""
    if name != "dvsgesture":
        out = {}
        for path, events in written.items():
            side = {"Train": "train/", "Test": "test/"}.get(path.parent.parent.name, "")
            out[f"{side}{path.parent.name}/{path.stem}.npz"] = (path.parent.name, events)
        return out
    out, folder = {}, root / "extract/DvsGesture"
    for side in ("train", "test"):
        for trial in (folder / f"trials_to_{side}.txt").read_text().split():
            stem, events = trial.removesuffix(".aedat"), written[folder / trial]
            rows = np.loadtxt(folder / f"{stem}_labels.csv", delimiter=",", skiprows=1).astype(np.int64)
            for label, start, end in rows:
                window = (events["t"] >= start) & (events["t"] < end)
                out[f"{side}/{label - 1}/{stem}_0.npz"] = (str(label - 1), {k: v[window] for k, v in events.items()})
    return out


def _histogram(events, height, width):
    """Events per (polarity, y, x), counted independently of spikingjelly."""
    counts = np.zeros((2, height, width))
    np.add.at(counts, (events["p"], events["y"], events["x"]), 1)
    return counts


@pytest.mark.parametrize("name", samples.WRITERS)  # the downloaded datasets
def test_sample_files_become_frames_with_the_right_shape_counts_and_labels(tmp_path, name):
    written = samples.write_samples(name, tmp_path, per_class=2, seed=1)
    data = nm.build_neuromorphic(name, tmp_path, T, progress=False, workers=2)
    height, width = nm.frame_size(name)
    assert data.frame_shape == (T, 2, height, width)
    expected = _expected_by_file(name, tmp_path, written)
    assert sorted(data.split["train"] + data.split["test"]) == sorted(expected)
    for dataset, side in ((data.train, "train"), (data.test, "test")):
        assert [f for f, _ in dataset.samples] == data.split[side]
        for index, (relative, _) in enumerate(dataset.samples):
            frames, label = dataset[index]
            class_folder, events = expected[relative]
            assert frames.dtype == torch.float32 and frames.shape == data.frame_shape
            assert data.classes[label] == class_folder
            counts = frames.numpy()
            assert np.array_equal(counts.sum(0), _histogram(events, height, width))
            assert counts.reshape(T, -1).sum(1).min() > 0  # split_by='number': every frame gets events
    if name in ("dvsgesture", "nmnist"):
        assert all(f.startswith("train/") for f in data.split["train"])
        assert all(f.startswith("test/") for f in data.split["test"])
        assert data.split["kind"] == "official"


@pytest.fixture
def cifar10dvs(tmp_path):
    samples.write_samples("cifar10dvs", tmp_path, per_class=3, seed=0)
    return tmp_path


def test_split_is_seeded_disjoint_and_reusable(cifar10dvs, tmp_path):
    first = nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, seed=5, progress=False)
    again = nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, seed=5, progress=False)
    other = nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, seed=6, progress=False)
    assert first.split == again.split and first.split["test"] != other.split["test"]
    assert not set(first.split["train"]) & set(first.split["test"])
    assert len(first.split["train"]) == 20 and len(first.split["test"]) == 10  # 3 a class: 2 train, 1 test
    nm.save_split(first.split, tmp_path / "split.json")
    resumed = nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, seed=99, split=nm.load_split(tmp_path / "split.json"),
                                    progress=False)
    assert resumed.train.samples == first.train.samples and resumed.test.samples == first.test.samples


def test_split_per_class_sizes_and_determinism():
    files = {"a": [f"a/{i}" for i in range(1000)], "b": [f"b/{i}" for i in range(31)], "c": ["c/0", "c/1"],
             "d": ["d/0"]}
    split = nm.split_per_class(files, 0.1, seed=1)
    test = {c: sum(f.startswith(f"{c}/") for f in split["test"]) for c in files}
    assert test == {"a": 100, "b": 3, "c": 1, "d": 0}
    assert sorted(split["train"] + split["test"]) == sorted(f for v in files.values() for f in v)
    shuffled = {c: list(reversed(v)) for c, v in files.items()}
    assert nm.split_per_class(shuffled, 0.1, seed=1) == split  # file order on disk does not matter
    assert nm.split_per_class(files, 0.1, seed=2) != split


def test_a_split_from_other_data_is_refused(cifar10dvs):
    split = nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False).split
    with pytest.raises(UserError, match="absent from .*it belongs to other data"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, split={**split, "test": split["test"] + ["cat/x.npz"]},
                              progress=False)
    with pytest.raises(UserError, match="made for 'cifar10dvs', not 'ncaltech101'"):
        nm._check_split(split, "ncaltech101", set(), cifar10dvs)
    with pytest.raises(UserError, match="both sides"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, split={**split, "test": split["train"][:1]},
                              progress=False)


def test_load_split_rejects_a_damaged_file(tmp_path):
    (tmp_path / "split.json").write_text('{"train": [')
    with pytest.raises(UserError, match="cannot read the split file"):
        nm.load_split(tmp_path / "split.json")


@pytest.mark.parametrize("name", samples.WRITERS)  # the downloaded datasets
def test_missing_raw_data_says_what_to_download_from_where_to_where(tmp_path, name):
    with pytest.raises(UserError) as error:
        nm.build_neuromorphic(name, tmp_path, T, progress=False)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "download") in message and ef.SPECS[name].page in message
    assert all(archive in message for archive in ef.SPECS[name].archives)
    assert f"pfa.data.samples --dataset {name}" in message
    assert not (tmp_path / "events_np").exists() and not (tmp_path / "events_np.building").exists()


def test_partial_downloads_list_only_what_is_missing(tmp_path):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "airplane.zip").write_bytes(b"")
    with pytest.raises(UserError) as error:
        nm.build_neuromorphic("cifar10dvs", tmp_path, T, progress=False)
    assert "airplane.zip" not in str(error.value) and "truck.zip (https://" in str(error.value)


def test_a_wrong_download_is_reported_and_kept(tmp_path):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "DvsGesture.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(UserError, match="DvsGesture.tar.gz does not match its md5"):
        nm.build_neuromorphic("dvsgesture", tmp_path, T, progress=False)
    assert (tmp_path / "download" / "DvsGesture.tar.gz").exists()


def test_partial_extraction_names_what_is_missing(cifar10dvs):
    shutil.rmtree(cifar10dvs / "extract" / "frog")
    with pytest.raises(UserError, match=r"extract is incomplete \(missing frog\)"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False)


@pytest.mark.parametrize("name,pattern,damage", [
    ("cifar10dvs", "extract/cat/cifar10_cat_0.aedat", lambda data: data + b"\0\0\0\1"),
    ("ncaltech101", "extract/Caltech101/ant/image_0001.bin", lambda data: data[:-3]),
    ("dvsgesture", "extract/DvsGesture/user01_*.aedat", lambda data: data[:-13]),
])
def test_a_corrupt_event_file_is_named_and_nothing_half_built_stays(tmp_path, name, pattern, damage):
    samples.write_samples(name, tmp_path, per_class=1)
    (path,) = tmp_path.glob(pattern)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=f"corrupt event file {path}"):
        nm.build_neuromorphic(name, tmp_path, T, progress=False)
    assert not (tmp_path / "events_np").exists() and not (tmp_path / "events_np.building").exists()
    assert not (tmp_path / ef.LOCK_NAME).exists()


def test_a_corrupt_frame_file_is_named(cifar10dvs):
    data = nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False)
    path = data.train.folder / data.train.samples[0][0]
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match=f"cannot read frame file {path}"):
        data.train[0]


def test_a_corrupt_decoded_events_file_is_named_when_building_frames(cifar10dvs):
    nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False)
    path = cifar10dvs / "events_np/bird/cifar10_bird_2.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match=f"cannot turn {path} into frames .*delete the events_np folder"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, 6, progress=False)
    assert not (cifar10dvs / "frames_number_6_split_by_number").exists()
    assert (cifar10dvs / "frames_number_4_split_by_number").is_dir()


def test_empty_time_bins_with_split_by_time_are_explained(cifar10dvs):
    burst = {"t": np.full(50, 7), "x": np.arange(50), "y": np.arange(50), "p": np.arange(50) % 2}
    path = cifar10dvs / "extract/dog/cifar10_dog_0.aedat"
    samples.write_aedat2(path, burst)
    with pytest.raises(UserError, match="split_by='time' with T=4 leaves an empty time bin in .*cifar10_dog_0.npz"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, split_by="time", progress=False)
    assert not (cifar10dvs / "frames_number_4_split_by_time").exists()
    assert not (cifar10dvs / "frames_number_4_split_by_time.building").exists()
    assert nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False).frame_shape[0] == T


def test_another_T_builds_its_own_folder_and_a_mislabelled_folder_is_refused(cifar10dvs):
    nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False)
    data = nm.build_neuromorphic("cifar10dvs", cifar10dvs, 6, progress=False)
    assert data.train[0][0].shape[0] == 6 and (cifar10dvs / "frames_number_4_split_by_number").is_dir()
    (cifar10dvs / "frames_number_4_split_by_number").rename(cifar10dvs / "frames_number_5_split_by_number")
    with pytest.raises(UserError, match=r"holds frames of shape \(4, 2, 128, 128\), not the \(T=5"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, 5, progress=False)


def test_a_foreign_stale_marker_is_explained_not_deleted(cifar10dvs):
    (cifar10dvs / "events_np").mkdir()
    (cifar10dvs / "events_np.building").touch()
    with pytest.raises(UserError, match="interrupted while writing .*events_np; if no other process .*delete"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False)
    assert (cifar10dvs / "events_np.building").exists()


def _dead_pid():
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_a_marker_left_by_a_dead_pfa_build_is_cleaned_up(cifar10dvs):
    nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False)
    folder = cifar10dvs / "frames_number_6_split_by_number"
    folder.mkdir()
    (folder / "half_written.npz").write_bytes(b"")
    folder.with_name(folder.name + ".building").touch()
    (cifar10dvs / ef.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    data = nm.build_neuromorphic("cifar10dvs", cifar10dvs, 6, progress=False)
    assert len(data.train) + len(data.test) == 30 and not (folder / "half_written.npz").exists()
    assert not folder.with_name(folder.name + ".building").exists() and not (cifar10dvs / ef.LOCK_NAME).exists()


def test_a_live_build_is_not_disturbed(cifar10dvs):
    (cifar10dvs / ef.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    with pytest.raises(UserError, match=rf"being prepared by a running process \(pid {os.getppid()}\)"):
        nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False, wait=False)
    assert (cifar10dvs / ef.LOCK_NAME).exists() and not (cifar10dvs / "events_np").exists()


def test_a_second_process_waits_for_the_builder_then_uses_its_frames(cifar10dvs, monkeypatch, capsys):
    monkeypatch.setattr(FolderLock, "POLL_S", 0.05)
    (cifar10dvs / ef.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    builder = threading.Timer(0.3, (cifar10dvs / ef.LOCK_NAME).unlink)  # the other process finishes
    builder.start()
    data = nm.build_neuromorphic("cifar10dvs", cifar10dvs, T, progress=False)
    builder.join()
    assert len(data.train) == 20 and f"waiting for pid {os.getppid()}" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "dvs"}, "unknown event dataset 'dvs'"),
    ({"T": 0}, "positive integer, got 0"),
    ({"split_by": "count"}, "split_by must be 'number' or 'time'"),
])
def test_bad_arguments(cifar10dvs, kwargs, match):
    args = {"name": "cifar10dvs", "root": cifar10dvs, "T": T, **kwargs}
    with pytest.raises(UserError, match=match):
        nm.build_neuromorphic(args.pop("name"), args.pop("root"), args.pop("T"), progress=False, **args)


def test_workers_reach_spikingjelly_and_are_restored():
    from spikingjelly import configure

    before = configure.max_threads_number_for_datasets_preprocess
    with ef._workers(3):
        assert configure.max_threads_number_for_datasets_preprocess == 3
    assert configure.max_threads_number_for_datasets_preprocess == before
