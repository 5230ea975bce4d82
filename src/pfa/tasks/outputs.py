"""What every entry point writes after training (or --eval-only) when asked, the same two flags everywhere:

    --report            pfa.study.report on the first test batch: printed, saved as report.json and drawn as report.png
    --save-attention N  attention/testNNNNN.png: PFA's input, maps and factors for the first N test inputs

An entry's config derives from `OutputConfig` (it declares `attention`) and its `train` calls `write_outputs` after
`fit`. Both flags may change on --resume.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from pfa.attention.pictures import save_attention_figures
from pfa.engine.config import TrainConfig, arg
from pfa.engine.run import Run
from pfa.errors import UserError
from pfa.study.plots import report_chart
from pfa.study.report import format_report, model_report, save_report


@dataclass
class OutputConfig(TrainConfig):
    """TrainConfig plus --report and --save-attention; subclasses declare the field `attention`."""

    report: bool = arg(False, "after training (or --eval-only): print parameters, spike rates, synaptic operations "
                       "(AC, MAC) per layer and an energy estimate on the first test batch; save them as report.json "
                       "and report.png")
    save_attention: int = arg(0, "after training (or --eval-only): write attention/testNNNNN.png, PFA's input, maps "
                              "and factors, for this many test inputs")

    RESUME_FREE = ("report", "save_attention")

    def validate(self) -> None:
        super().validate()
        if self.save_attention < 0:
            raise UserError(f"--save-attention must be 0 or more test inputs, got {self.save_attention}")
        if self.save_attention and self.attention != "pfa":
            raise UserError(f"--save-attention draws PFA's maps, but --attention is {self.attention}; "
                            "use --attention pfa, or drop --save-attention")


def dataset_classes(dataset: Dataset) -> tuple[str, ...] | None:
    """The class names of `dataset` or of a dataset it wraps (Subset, transforms), None where it has none."""
    while dataset is not None:
        classes = getattr(dataset, "classes", None)
        if classes:
            return tuple(classes)
        dataset = getattr(dataset, "dataset", None)
    return None


def write_report(run: Run, model: nn.Module, test_set: Dataset) -> dict:
    """`pfa.study.report` on the first test batch: printed, saved as report.json and drawn as report.png."""
    batch = next(iter(DataLoader(test_set, batch_size=run.cfg.batch_size)))
    report = model_report(model, batch[0].to(run.device))
    report["config"] = dataclasses.asdict(run.cfg)
    print(format_report(report), flush=True)
    save_report(report, run.dir / "report.json")
    report_chart(report, run.dir / "report.png")
    return report


def write_outputs(run: Run, model: nn.Module, test_set: Dataset, classes: tuple[str, ...] | None = None) -> list[Path]:
    """After `fit`, on the main process: --report and --save-attention as configured; returns the files written.
    Pictures are titled with `classes` (default: the dataset's own, else the label index)."""
    cfg, written = run.cfg, []
    if not run.is_main:
        return written
    if cfg.report:
        write_report(run, model, test_set)
        written += [run.dir / "report.json", run.dir / "report.png"]
    if cfg.save_attention:
        written += save_attention_figures(model, test_set, cfg.save_attention, run.dir / "attention",
                                          classes or dataset_classes(test_set))
    return written
