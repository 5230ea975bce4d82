"""Spiking VGG / ResNet with PFA on CIFAR10-DVS, N-Caltech101, DVS128 Gesture, CIFAR10 and CIFAR100 (pfa.tasks.cifar).

    python CIFAR/main.py --dataset cifar10dvs --data-dir data/CIFAR10DVS            # recipe: CIFAR/configs/*.yaml
    python CIFAR/main.py --dataset dvsgesture --data-dir data/DVSGesture --attention ma
    torchrun --standalone --nproc_per_node 4 CIFAR/main.py --dataset cifar10 --data-dir data/cifar
    python CIFAR/main.py --dataset cifar10dvs --data-dir data/CIFAR10DVS --eval-only --report \\
        --resume runs/cifar10dvs/RUN/checkpoint_best.pth
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable from a checkout without installing

from pfa.cli import guarded  # noqa: E402
from pfa.config import parse_config  # noqa: E402
from pfa.tasks.cifar import CifarConfig, train  # noqa: E402


@guarded
def main(argv: list[str] | None = None) -> dict:
    return train(parse_config(CifarConfig, argv, prog="CIFAR/main.py"))


if __name__ == "__main__":
    main()
