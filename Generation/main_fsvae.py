"""Spiking image generation: FSVAE with PFA on its input spikes, plain FSVAE, or the ANN VAE baseline:
`python -m pfa.train generation` (pfa.tasks.generation).

    python Generation/main_fsvae.py --dataset fashion                      # FSVAE + PFA, recipe pfa/recipes/generation
    python Generation/main_fsvae.py --dataset fashion --attention none
    python Generation/main_fsvae.py --dataset fashion --model ann-vae --attention none
    python Generation/main_fsvae.py --dataset fashion --device cpu --epochs 2 \\
        --train-samples 2000 --test-samples 500 --batch-size 50 --fid-samples 500 --fid-autoencoder-epochs 2

Each epoch writes reconstructions.png, samples.png (and copies under images/), TensorBoard events, metrics.json and
checkpoints into --out-dir; see Generation/README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable from a checkout without installing

from pfa.train import task_command  # noqa: E402

main = task_command("generation", prog="Generation/main_fsvae.py")

if __name__ == "__main__":
    main()
