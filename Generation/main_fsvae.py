"""Spiking image generation: FSVAE with PFA on its input spikes, plain FSVAE, or the ANN VAE baseline.

    python Generation/main_fsvae.py --config Generation/configs/fashion.yaml             # FSVAE + PFA, 150 epochs
    python Generation/main_fsvae.py --config Generation/configs/fashion.yaml --attention none
    python Generation/main_fsvae.py --config Generation/configs/fashion.yaml --model ann-vae --attention none
    python Generation/main_fsvae.py --config Generation/configs/fashion.yaml --device cpu --epochs 2 \\
        --train-samples 2000 --test-samples 500 --batch-size 50 --fid-samples 500 --fid-autoencoder-epochs 2

Each epoch writes reconstructions.png, samples.png (and copies under images/), TensorBoard events, metrics.json and
checkpoints into --out-dir; see Generation/README.md.
"""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable from a checkout without installing

from pfa.cli import guarded  # noqa: E402
from pfa.config import parse_config  # noqa: E402
from pfa.data.images import CHANNELS, load_generation_data  # noqa: E402
from pfa.engine import Run, fit, fixed_subset  # noqa: E402
from pfa.tasks.generation import GenerationConfig, GenerationTask, SampleMetrics, build_model, describe  # noqa: E402


@guarded
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(GenerationConfig, argv, prog="Generation/main_fsvae.py")
    train_set, test_set = load_generation_data(cfg.dataset, cfg.data_dir, cfg.input_size)
    batches = math.ceil(len(fixed_subset(train_set, cfg.train_samples, "--train-samples")) / cfg.batch_size)
    with Run(cfg, name=f"generation-{cfg.dataset}") as run:
        model = build_model(cfg, batches).to(run.device)
        wanted = run.is_main and cfg.fid_every > 0 and not cfg.eval_only
        metrics = SampleMetrics(cfg, CHANNELS[cfg.dataset], train_set, test_set) if wanted else None
        task = GenerationTask(model, cfg, metrics)
        try:
            return fit(run, model, task, train_set, test_set, describe(cfg))
        finally:
            task.close()


if __name__ == "__main__":
    main()
