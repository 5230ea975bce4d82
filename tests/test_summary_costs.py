"""A sweep's report from finished run folders made elsewhere: validation-selected accuracy, costs from report.json,
provenance from the runs' config.yaml, the command that reproduces the study, and the study format in -h."""

import csv
import json
import socket

import pytest
import yaml

from pfa import sweep as sweep_command
from pfa.study.summary import COLUMNS

STUDY = {"name": "costs", "task": "fmnist", "flags": {"epochs": 2},
         "grid": {"seed": [1, 2], "model": [{"attention": "none"}, {"attention": "pfa", "rank": 4}]}}


def write_run(folder, seed: int, attention: str, validation: bool, report: bool) -> None:
    folder.mkdir(parents=True)
    provenance = {"command": "python -m pfa.train fmnist ...", "git_commit": "0123456789abcdef", "host": "far-away",
                  "started": f"2024-05-0{seed}T10:00:00+0000", "versions": {"python": "3.11.2", "torch": "2.5.1",
                                                                           "spikingjelly": "0.0.0.0.15", "cupy": None},
                  "task": "fmnist", "parameters": 1000 + 100 * (attention == "pfa"), "train_size": 540,
                  "resumed": [{"at_epoch": 1, "host": "other-host", "git_commit": "fedcba9876543210"}] * (seed == 2)}
    config = {"seed": seed, "epochs": 2, "attention": attention, "rank": 4, "provenance": provenance}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))  # as runs write it
    tests = [0.80 + seed / 100, 0.78 + seed / 100]  # the test set peaks at epoch 1
    history = [{"epoch": e + 1, "test_acc": acc, "seconds": 2.0, "load1": 1.5} for e, acc in enumerate(tests)]
    if validation:
        for record, val in zip(history, (0.70, 0.75), strict=True):  # validation peaks at epoch 2
            record.update(val_acc=val, best_val_acc=val, test_acc_at_best_val=record["test_acc"])
    else:
        for record in history:
            record["best_test_acc"] = max(tests[:record["epoch"]])
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (folder / "metrics.json").write_text(json.dumps({k: v for k, v in history[-1].items() if k not in ("seconds",
                                                                                                          "load1")}))
    if report:
        (folder / "report.json").write_text(json.dumps({
            "spike_rate_mean": 0.125, "sops_per_sample": 2000.4, "attention_ops_per_sample": 300.0,
            "energy": {"estimate_pj_per_sample": 9000.0 + 1000 * (attention == "pfa")}}))


@pytest.fixture
def study(tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    runs = tmp_path / "elsewhere" / "costs" / "runs"
    for seed in (1, 2):
        write_run(runs / f"seed-{seed}_attention-none", seed, "none", validation=False, report=False)
        write_run(runs / f"seed-{seed}_attention-pfa_rank-4", seed, "pfa", validation=True, report=True)
    sweep_command.main([str(tmp_path / "study.yaml"), "--results", str(tmp_path / "elsewhere"), "--report"])
    return tmp_path


def test_runs_csv_has_validation_selected_accuracy_and_costs(study):
    with open(study / "elsewhere" / "costs" / "runs.csv") as f:
        reader = csv.DictReader(f)
        rows = {r["run_id"]: r for r in reader}
    assert tuple(reader.fieldnames) == COLUMNS
    plain, pfa = rows["seed-1_attention-none"], rows["seed-1_attention-pfa_rank-4"]
    assert (plain["best_test_acc"], plain["final_test_acc"], plain["test_acc_at_best_val"]) == ("0.81", "0.79", "")
    assert plain["energy_pj_per_sample"] == plain["spike_rate_mean"] == ""
    # a validation run monitors val_acc: its best test epoch comes from the history, its selected one is epoch 2
    assert (pfa["best_test_acc"], pfa["final_test_acc"], pfa["test_acc_at_best_val"]) == ("0.81", "0.79", "0.79")
    assert (pfa["spike_rate_mean"], pfa["sops_per_sample"], pfa["attention_ops_per_sample"],
            pfa["energy_pj_per_sample"]) == ("0.125", "2000.0", "300.0", "10000.0")


def test_summary_labels_provenance_and_command(study):
    summary = (study / "elsewhere" / "costs" / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| configuration"))
    assert header == ("| configuration | seeds | final test acc (%) | test acc at best val (%) | max over test epochs "
                      "(optimistic) (%) | parameters | spike rate | SOPs per sample | attention ops per sample | "
                      "energy per sample (nJ, estimate) | train images/s | wall s per run |")
    assert "| pfa rank=4 | 2 | 79.50 ± 0.71 | 79.50 ± 0.71 | 81.50 ± 0.71 | 1100 | 0.1250 | 2,000 | 300 | 10.0 |" \
        in summary
    assert "| none | 2 | 79.50 ± 0.71 | – | 81.50 ± 0.71 | 1000 | – | – | – | – |" in summary
    assert "not a measurement" in summary
    assert f"--results {study / 'elsewhere'}" in summary
    assert "- started: 2024-05-01T10:00:00+0000 to 2024-05-02T10:00:00+0000" in summary
    assert "- hosts: far-away (4 of 4 runs); other-host (2 of 4 runs)" in summary
    assert "0123456789ab (4 of 4 runs); fedcba987654 (2 of 4 runs)" in summary
    assert "- versions: python 3.11.2, torch 2.5.1, spikingjelly 0.0.0.0.15 (4 of 4 runs)" in summary
    assert socket.gethostname() not in summary and "load average now" not in summary


def test_help_shows_the_study_format(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sweep_command.main(["-h"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "STUDY.yaml::" in text and "    grid:" in text and "baselines:" in text
