"""pfa.study.plots: figures from a run's history and from a --report JSON, through the command line."""

import json

import pytest

from pfa.engine import curves
from pfa.engine.runlog import read_history
from pfa.study import plots


def _png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_from_a_history_with_a_resumed_epoch(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.1 / e, "train_acc": 0.5 + e / 10,
                "test_acc": 0.4 + e / 10} for e in (1, 2, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [r["epoch"] for r in read_history(run)] == [1, 2, 3]
    plots.main(["curves", str(run)])
    assert capsys.readouterr().out.strip() == str(run / "curves.png") and _png(run / "curves.png")


def test_curves_of_a_generative_run_have_a_panel_per_tested_metric(tmp_path):
    history = [{"epoch": e, "loss": 1 / e, "recon_loss": 0.5 / e, "test_loss": 1.2 / e, "test_recon_loss": 0.6 / e,
                "best_test_loss": 1.2 / e, "autoencoder_fid": 30.0} for e in (1, 2)]
    assert curves.curve_metrics(history) == ["loss", "recon_loss"]
    assert curves.curve_metrics([{"epoch": 1, "test_acc": 0.5, "test_loss": 1.0}]) == ["loss", "acc"]
    curves.training_curves(history, tmp_path / "curves.png")
    assert _png(tmp_path / "curves.png")


def test_one_epoch_gets_whole_axes_and_validation_its_own_line(monkeypatch):
    drawn = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, path: drawn.append(fig))
    curves.training_curves([{"epoch": 1, "train_loss": 0.5, "test_loss": 0.5, "train_acc": 1.0, "val_acc": 1.0,
                             "test_acc": 1.0}], "unused.png")
    loss, accuracy = drawn[0].axes
    assert accuracy.get_ylim() == (0, 1.05) and list(accuracy.get_yticks()) == pytest.approx([0, .2, .4, .6, .8, 1])
    assert loss.get_ylim() == pytest.approx((0, 0.55))
    assert [line.get_label() for line in accuracy.lines] == ["train", "validation", "test"]
    two = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1 / e, "train_acc": 0.8 + e / 100, "test_acc": 0.8}
           for e in (1, 2)]
    curves.training_curves(two, "unused.png")
    assert drawn[1].axes[1].get_ylim()[0] > 0.7  # epochs that differ keep matplotlib's zoom


def test_report_chart(tmp_path):
    report = {
        "samples": 4, "parameters": {"total": 1234}, "sops_per_sample": 5e4,
        "spike_rates": [{"name": "features.3", "rate": 0.12}, {"name": "classifier.1", "rate": 0.0}],
        "synops": [{"name": "features.1.spatial", "attention": True, "binary_input": False, "sops_per_sample": 10.0},
                   {"name": "features.4.0", "attention": False, "binary_input": True, "sops_per_sample": 5e4}],
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    plots.main(["report", str(tmp_path / "report.json")])
    assert _png(tmp_path / "report.png")


def test_missing_inputs_are_one_line(tmp_path, capsys):
    for argv, expected in ((["curves", str(tmp_path)], "holds no metrics.jsonl"),
                           (["report", str(tmp_path / "none.json")], "cannot read")):
        with pytest.raises(SystemExit) as exit_info:
            plots.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1
