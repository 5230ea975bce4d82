"""`python -m pfa.rank --checkpoint CKPT`: rank advice for the network of a checkpoint of any task (pfa.tasks).

    python -m pfa.rank --checkpoint runs/fmnist/RUN/checkpoint_best.pth --samples 32 --max-rank 8 --out rank.json

The task recorded in the checkpoint rebuilds the network from its saved config and gives its test set; the advice
itself is `pfa.study.rank.rank_advice`. Writes rank.json and the plot beside it.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Subset

from pfa.cli import guarded
from pfa.engine.checkpoint import checkpoint_task, load_checkpoint
from pfa.engine.config import ConfigRules, arg, default_device, parse_config
from pfa.errors import UserError
from pfa.files import atomic_write
from pfa.study.rank import check_settings, rank_advice, save_plot
from pfa.tasks import get_task


def saved_config(cls: type, config: dict):
    """A task's config as saved in its checkpoint (keys the class does not know are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in config.items() if k in names})


def model_from_checkpoint(path: str, data_dir: str | None) -> tuple[nn.Module, Dataset]:
    """The network of a checkpoint of any task, rebuilt from its saved config and loaded, and its test set."""
    state = load_checkpoint(path)
    name = checkpoint_task(state)
    if name is None:
        raise UserError(f"rank: checkpoint {path} holds {state.get('arch') or 'an unknown model'} of no known task; "
                        "for other models call pfa.study.rank.rank_advice from Python")
    task = get_task(name)
    cfg = saved_config(task.config, state.get("config") or {})
    cfg.data_dir, cfg.resume = data_dir or cfg.data_dir, str(path)  # resume: reuse a split.json beside it
    cfg.train_samples = cfg.test_samples = None
    model, test_set = task.rebuild(cfg)
    load_checkpoint(path, model, state["arch"])  # the rebuilt network must match the saved weights
    model.load_state_dict(state["model"])
    return model, test_set


@dataclass
class RankConfig(ConfigRules):
    """Rank advice: CP fits of the spike tensors at each attention position of a trained network."""

    checkpoint: str | None = arg(None, "checkpoint_*.pth of any task (fmnist, cifar, generation)")
    data_dir: str | None = arg(None, "dataset root (default: the one saved in the checkpoint's config)")
    samples: int = arg(32, "test inputs to record (the first ones of the test set)")
    max_rank: int = arg(8, "fit CP ranks 1 .. MAX_RANK")
    target_fit: float = arg(0.9, "recommend the smallest rank whose mean fit (1 - relative error) reaches this")
    positions: str | None = arg(None, "comma-separated module names to examine (default: every attention module, "
                                "or every spiking neuron without attention)")
    out: str = arg("rank.json", "JSON file to write; the plot goes beside it with the suffix .png")
    batch_size: int = arg(32, "inputs per forward pass")
    device: str = arg(None, "torch device (default: cuda if available, else cpu)", default_factory=default_device)

    def validate(self) -> None:
        if self.checkpoint is None:
            raise UserError("rank: --checkpoint is required (a checkpoint_*.pth of any task)")
        check_settings(self.samples, self.max_rank, self.target_fit)
        if self.batch_size < 1:
            raise UserError(f"rank: --batch-size must be a positive integer, got {self.batch_size}")
        if not Path(self.out).resolve().parent.is_dir():
            raise UserError(f"rank: the folder of --out {self.out} does not exist; create it or choose another path")


@guarded
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(RankConfig, argv, prog="python -m pfa.rank")
    model, test_set = model_from_checkpoint(cfg.checkpoint, cfg.data_dir)
    subset = Subset(test_set, range(min(cfg.samples, len(test_set))))
    positions = cfg.positions.split(",") if cfg.positions else None
    advice = rank_advice(model.to(cfg.device), DataLoader(subset, batch_size=cfg.batch_size), cfg.samples,
                         cfg.max_rank, cfg.target_fit, positions)
    out = Path(cfg.out)
    advice["checkpoint"], advice["plot"] = str(cfg.checkpoint), str(out.with_suffix(".png"))
    with atomic_write(out, "w") as f:
        json.dump(advice, f, indent=2)
    save_plot(advice, out.with_suffix(".png"))
    for position in advice["positions"]:
        errors = ", ".join(f"R={r}: {e:.3f}" for r, e in position["errors"].items() if e is not None)
        errors = errors or f"none (all {position['silent']} samples silent)"
        print(f"{position['name']} {position['shape']}: recommended rank {position['recommended_rank']} "
              f"(target fit {cfg.target_fit}); errors {errors}")
    print(f"wrote {out} and {advice['plot']}")
    return advice


if __name__ == "__main__":
    main()
