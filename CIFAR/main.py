"""Spiking VGG / ResNet with PFA on CIFAR10-DVS, N-Caltech101, DVS128 Gesture, CIFAR10 and CIFAR100:
`python -m pfa.train cifar` (pfa.tasks.cifar).

    python CIFAR/main.py --dataset cifar10dvs --data-dir data/CIFAR10DVS       # recipe: pfa/recipes/cifar/*.yaml
    python CIFAR/main.py --dataset dvsgesture --data-dir data/DVSGesture --attention ma
    torchrun --standalone --nproc_per_node 4 CIFAR/main.py --dataset cifar10 --data-dir data/cifar
    python CIFAR/main.py --dataset cifar10dvs --data-dir data/CIFAR10DVS --eval-only --report \\
        --resume runs/cifar10dvs/RUN/checkpoint_best.pth
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable from a checkout without installing

from pfa.train import task_command  # noqa: E402

main = task_command("cifar", prog="CIFAR/main.py")

if __name__ == "__main__":
    main()
