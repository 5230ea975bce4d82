"""The sample writer's files decode, through spikingjelly's own decoders, to exactly the events written."""

import numpy as np
import pytest

from pfa.data import samples
from pfa.data.event_frames import SPECS
from pfa.errors import UserError


def _converted(name, tmp_path, per_class=None):
    written = samples.write_samples(name, tmp_path, per_class=per_class, seed=3)
    (tmp_path / "events_np").mkdir()
    SPECS[name].folder_class.create_raw_from_extracted(tmp_path / "extract", tmp_path / "events_np")
    return written


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in "txyp"}


def _assert_same(got, want):
    for key in "txyp":
        np.testing.assert_array_equal(got[key].astype(np.int64), want[key], err_msg=key)


@pytest.mark.parametrize("name,relative", [
    ("cifar10dvs", lambda p: f"{p.parent.name}/{p.stem}.npz"),
    ("ncaltech101", lambda p: f"{p.parent.name}/{p.stem}.npz"),
    ("nmnist", lambda p: f"{p.parent.parent.name.lower()}/{p.parent.name}/{p.stem}.npz"),
])
def test_per_file_formats_round_trip(tmp_path, name, relative):
    written = _converted(name, tmp_path, per_class=1)
    assert len(list((tmp_path / "events_np").rglob("*.npz"))) == len(written)
    for path, events in written.items():
        _assert_same(_load(tmp_path / "events_np" / relative(path)), events)


def test_gesture_recordings_are_cut_by_their_label_files(tmp_path):
    written = _converted("dvsgesture", tmp_path, per_class=2)
    folder = tmp_path / "extract/DvsGesture"
    trials = {s: (folder / f"trials_to_{s}.txt").read_text().split() for s in ("train", "test")}
    assert len(trials["train"]) == 2 and len(trials["test"]) == 1
    for side, names in trials.items():
        for trial in names:
            stem = trial.removesuffix(".aedat")
            events = written[tmp_path / "extract/DvsGesture" / trial]
            rows = np.loadtxt(tmp_path / "extract/DvsGesture" / f"{stem}_labels.csv", delimiter=",", skiprows=1)
            assert sorted(rows[:, 0]) == list(range(1, 12))
            for label, start, end in rows.astype(np.int64):
                window = (events["t"] >= start) & (events["t"] < end)
                want = {k: v[window] for k, v in events.items()}
                _assert_same(_load(tmp_path / "events_np" / side / str(label - 1) / f"{stem}_0.npz"), want)


def test_recordings_are_nontrivial_and_class_dependent():
    """Class k's blob crosses the sensor in row band k, left or right at random (so a horizontal flip keeps it)."""
    rng = np.random.default_rng(0)
    recordings = [samples.class_events(rng, label, 4, 128, 128, 4000) for label in (0, 0, 0, 0, 3)]
    for events in recordings:
        assert np.all(np.diff(events["t"]) >= 0) and set(np.unique(events["p"])) == {0, 1}
        assert 0 <= events["x"].min() and events["x"].max() < 128 and 0 <= events["y"].min() <= events["y"].max() < 128
    rows = [np.median(events["y"]) for events in recordings]
    assert all(8 < row < 24 for row in rows[:4]) and 104 < rows[4] < 120  # band centres 16 and 112
    early = [np.median(e["x"][e["t"] < np.quantile(e["t"], 0.2)]) for e in recordings[:4]]
    assert min(early) < 40 and max(early) > 88  # both directions occur


def test_cli_writes_files_and_refuses_an_existing_root(tmp_path, capsys):
    assert samples.main(["--dataset", "cifar10dvs", "--root", str(tmp_path), "--per-class", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "extract").iterdir()) == sorted(samples.CIFAR10DVS_CLASSES)
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.aedat"))
    assert samples.main(["--dataset", "cifar10dvs", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already holds extract" in err and err.count("\n") == 1
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.aedat")) == before


def test_unknown_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'mnist'.*cifar10dvs"):
        samples.write_samples("mnist", tmp_path)
