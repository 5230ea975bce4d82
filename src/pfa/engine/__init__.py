"""The training engine: configs, the fit loop, run folders, checkpoints, logs, distributed helpers."""
