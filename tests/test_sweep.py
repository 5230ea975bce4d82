"""The sweep on a tiny real grid: folders, resume of an interrupted run, skip of finished ones, report, reproduction."""

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pfa import sweep as sweep_command
from pfa.engine.runlog import read_history
from pfa.study import sweep
from pfa.study.summary import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "task": "fmnist",
    "flags": {"device": "cpu", "train_samples": 128, "test_samples": 64, "epochs": 2, "width": 4, "dropout": 0.0},
    "grid": {"seed": [1], "model": [{"attention": "none"}, {"attention": "pfa", "rank": 2}]},
    "env": {"OMP_NUM_THREADS": 1},
    "notes": ["a fact the summary must carry"],
    "launcher": {"parallel": 2},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Interrupt the first run after 1 of its 2 epochs, sweep, sweep again, report; keep every log."""
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        study = sweep.load_study(str(tmp / "tiny.yaml"), str(tmp / "results"))
        first = sweep.expand(study)[0]
        cut = replace(first, flags={**first.flags, "epochs": 1})  # the same folder, stopped after epoch 1
        assert sweep.train(study, cut, io.StringIO()) == 0
        config = study.dir / "runs" / first.id / "config.yaml"
        config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))  # as the 2-epoch run left it
        logs = []
        for _ in range(2):
            logs.append(io.StringIO())
            assert sweep.sweep(study, logs[-1]) == []
        sweep_command.main([str(tmp / "tiny.yaml"), "--results", str(tmp / "results"), "--report"])
    return study, [log.getvalue() for log in logs]


def test_one_folder_per_run_with_its_small_files(swept):
    study, _ = swept
    runs = sorted(p.name for p in (study.dir / "runs").iterdir())
    assert runs == ["seed-1_attention-none", "seed-1_attention-pfa_rank-2"]
    for name in runs:
        folder = study.dir / "runs" / name
        assert json.loads((folder / "metrics.json").read_text())["epoch"] == 2
        history = read_history(folder)
        assert [r["epoch"] for r in history] == [1, 2]
        assert all({"test_acc", "train_loss", "seconds", "load1"} <= set(r) for r in history)
    assert "rank: 2" in (study.dir / "runs" / runs[1] / "config.yaml").read_text()


def test_interrupted_run_resumes_and_finished_runs_are_skipped(swept):
    study, (first, second) = swept
    none_dir = study.dir / "runs" / "seed-1_attention-none"
    assert f"--resume {none_dir / 'checkpoint_latest.pth'}" in first
    assert "--resume" not in first.split("seed-1_attention-pfa_rank-2", 1)[1]
    assert second.count("finished, skipped") == 2 and "FMNIST/run.py" not in second


def test_runs_are_submitit_jobs_two_at_a_time_with_their_output_in_the_run(swept):
    study, (first, _) = swept
    assert first.count("(local), output in") == 2
    assert first.index("2/2 seed-1_attention-pfa_rank-2: job") < first.index("seed-1_attention-none finished (")
    for name in ("seed-1_attention-none", "seed-1_attention-pfa_rank-2"):
        log = (study.dir / "runs" / name / "sweep.log").read_text()
        assert "[sweep] " in log and "epoch=2 " in log
    assert any((study.dir / "jobs").glob("*_result.pkl"))


def test_report_files_and_columns(swept):
    study, _ = swept
    with open(study.dir / "runs.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    assert [(r["attention"], r["rank"], r["fusion"], r["seed"], r["epochs"]) for r in rows] == [
        ("none", "", "", "1", "2"), ("pfa", "2", "add/sum/relu", "1", "2")]
    assert int(rows[1]["parameters"]) > int(rows[0]["parameters"]) > 0
    assert all(float(r["train_images_per_s"]) > 0 and float(r["wall_seconds"]) > 0 for r in rows)
    summary = (study.dir / "summary.md").read_text()
    assert "2 of 2 runs finished" in summary and "| pfa rank=2 | 1 |" in summary and "spikingjelly" in summary
    assert "- a fact the summary must carry" in summary and "not enough finished runs" in summary
    for png in ("test_acc.png", "acc_vs_rank.png"):
        assert (study.dir / png).read_bytes()[:4] == b"\x89PNG"


def test_command_column_reproduces_the_run(swept, tmp_path):
    study, _ = swept
    with open(study.dir / "runs.csv") as f:
        row = list(csv.DictReader(f))[1]
    env, python, *args = shlex.split(row["command"])
    assert (env, python, *args[:3]) == ("OMP_NUM_THREADS=1", "python", "-m", "pfa.train", "fmnist")
    args[args.index("--out-dir") + 1] = str(tmp_path / "again")
    subprocess.run([sys.executable, *args], cwd=tmp_path, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["test_acc"] == float(row["final_test_acc"]) and again["epoch"] == 2


def test_bad_study_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("name: x\ntask: fmnist\ngrid: {seed: 1}\n")
    with pytest.raises(SystemExit) as exit_info:
        sweep_command.main([str(tmp_path / "bad.yaml")])
    assert exit_info.value.code == 2
    assert "grid must map each flag" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "results").glob("*/sweep.yaml")), ids=lambda p: p.parent.name)
def test_committed_study_files_load_and_every_run_parses(path, tmp_path):
    """A pre-registered study must not fail at its first run for a mistyped flag or value."""
    study = sweep.load_study(str(path), str(tmp_path))
    assert study.name == path.parent.name
    sweep.check_flags(study)


def test_a_mistyped_flag_fails_before_any_run_starts(tmp_path, capsys):
    study = {**TINY, "grid": {"seed": [1], "model": [{"attention": "none"}, {"attention": "pfa", "rnak": 2}]}}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    with pytest.raises(SystemExit) as exit_info:
        sweep_command.main([str(tmp_path / "typo.yaml"), "--results", str(tmp_path / "results")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "run seed-1_attention-pfa_rnak-2" in err and "--rnak" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results" / "tiny" / "runs").exists()
