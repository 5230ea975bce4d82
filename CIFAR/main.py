"""Spiking VGG / ResNet with PFA on CIFAR10-DVS, N-Caltech101, DVS128 Gesture, CIFAR10 and CIFAR100.

    python CIFAR/main.py --dataset cifar10dvs --data-dir data/CIFAR10DVS            # defaults: CIFAR/README.md
    python CIFAR/main.py --config CIFAR/configs/dvsgesture.yaml --data-dir data/DVSGesture --attention ma
    torchrun --standalone --nproc_per_node 4 CIFAR/main.py --dataset cifar10 --data-dir data/cifar
    python CIFAR/main.py --dataset cifar10dvs --data-dir data/CIFAR10DVS --eval-only --report \
        --resume runs/cifar10dvs/RUN/checkpoint_best.pth
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable from a checkout without installing

from pfa.cli import guarded  # noqa: E402
from pfa.config import parse_config  # noqa: E402
from pfa.engine import ClassificationTask, Run, fit  # noqa: E402
from pfa.tasks.cifar import CifarConfig, build_model, load_data, write_report  # noqa: E402


@guarded
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(CifarConfig, argv, prog="CIFAR/main.py")
    with Run(cfg, name=cfg.dataset) as run:
        data = load_data(cfg, run)
        model, arch = build_model(cfg, data)
        task = ClassificationTask(cfg.loss, cfg.tet_lambda)
        record = fit(run, model.to(run.device), task, data.train, data.test, arch)
        if cfg.report and run.is_main:
            write_report(model, data.test, cfg, run)
    return record


if __name__ == "__main__":
    main()
