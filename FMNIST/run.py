"""Fashion-MNIST with the reference spiking CNN and PFA.

    python FMNIST/run.py --quick                              # CPU profile: minutes, >= 88 % on the full test set
    python FMNIST/run.py --device cuda                        # the reference recipe: width 128, 200 epochs
    torchrun --standalone --nproc_per_node 2 FMNIST/run.py    # the same, data-parallel
    python FMNIST/run.py --eval-only --resume RUN/checkpoint_best.pth
"""

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable from a checkout without installing

from pfa.attentions import attention_kinds  # noqa: E402
from pfa.cli import guarded  # noqa: E402
from pfa.config import TrainConfig, arg, parse_config  # noqa: E402
from pfa.data.fashion_mnist import CLASSES, load_fashion_mnist  # noqa: E402
from pfa.engine import ClassificationTask, Run, fit  # noqa: E402
from pfa.errors import UserError  # noqa: E402
from pfa.models.fmnist import FashionMNISTNet  # noqa: E402
from pfa.visualize import save_attention_figures  # noqa: E402

QUICK = {"width": 32, "epochs": 3, "batch_size": 64, "lr": 2e-3, "t_max": None, "dropout": 0.3}  # t_max: --epochs


@dataclass
class FMNISTConfig(TrainConfig):
    """Train the reference spiking CNN with PFA on Fashion-MNIST (defaults: the reference's full recipe)."""

    quick: bool = arg(False, "CPU profile: " + ", ".join(f"{k}={v}" for k, v in QUICK.items())
                      + "; flags still override it")
    time_steps: int = arg(4, "simulation time steps T")
    rank: int = arg(4, "PFA's rank R (connecting factor)")
    width: int = arg(128, "channels of both convolutions (the reference: 128)")
    attention: str = arg("pfa", "attention after the second convolution", choices=attention_kinds())
    dropout: float = arg(0.7, "dropout probability before each fully connected layer")
    save_attention: int = arg(0, "after training, write PNGs of PFA's factors and maps for this many test images")
    workers: int = arg(0, "data-loading worker processes (the data sit in memory)")

    PROFILES = {"quick": QUICK}
    RESUME_FREE = ("save_attention",)

    def validate(self) -> None:
        super().validate()
        for name in ("time_steps", "rank", "width"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.save_attention < 0:
            raise UserError(f"--save-attention must be 0 or more images, got {self.save_attention}")
        if self.save_attention and self.attention != "pfa":
            raise UserError(f"--save-attention draws PFA's maps, but --attention is {self.attention}; "
                            "use --attention pfa")


def describe(cfg: FMNISTConfig) -> str:
    return f"FashionMNISTNet(T={cfg.time_steps}, width={cfg.width}, rank={cfg.rank}, attention={cfg.attention})"


@guarded
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(FMNISTConfig, argv, prog="FMNIST/run.py")
    train_set = load_fashion_mnist(cfg.data_dir, train=True)
    test_set = load_fashion_mnist(cfg.data_dir, train=False)
    with Run(cfg, name="fmnist") as run:
        model = FashionMNISTNet(cfg.time_steps, cfg.width, cfg.rank, cfg.attention, cfg.dropout).to(run.device)
        record = fit(run, model, ClassificationTask(cfg.loss, cfg.tet_lambda), train_set, test_set, describe(cfg))
        if cfg.save_attention and run.is_main:
            save_attention_figures(model, test_set, cfg.save_attention, run.dir / "attention", CLASSES)
    return record


if __name__ == "__main__":
    main()
