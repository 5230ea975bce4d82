"""Fashion-MNIST with the reference spiking CNN and PFA: `python -m pfa.train fmnist` (pfa.tasks.fmnist).

    python FMNIST/run.py --quick                              # CPU recipe: minutes, about 90 % on the full test set
    python FMNIST/run.py --device cuda                        # the reference recipe: width 128, 200 epochs
    torchrun --standalone --nproc_per_node 2 FMNIST/run.py    # the same, data-parallel
    python FMNIST/run.py --eval-only --resume RUN/checkpoint_best.pth
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable from a checkout without installing

from pfa.train import task_command  # noqa: E402

main = task_command("fmnist", prog="FMNIST/run.py")

if __name__ == "__main__":
    main()
