"""Rank advice: how many CP components (PFA's rank R) the spike tensors at each attention position need.

    advice = rank_advice(model, loader, samples=32, max_rank=8)     # any model, from Python

(`python -m pfa.rank --checkpoint CKPT` does the same for a checkpoint of any task, see `pfa.rank`.)

PFA builds its attention map as a rank-R CP (Kruskal) tensor over [T, C, H*W]. For each position (the input of every
attention module; for a model without any, the output of every spiking neuron `attach` would use) the tool records
the [T, C, H, W] tensor of `samples` test inputs, fits CP decompositions of each sample's [T, C, H*W] tensor with
R = 1 .. max_rank components (tensorly's `parafac`: ALS from an SVD start) and averages the relative error
||X - X_R|| / ||X||. The advice is the smallest R whose mean fit, 1 - error, reaches `target_fit`. All-zero samples (a
silent layer) have no structure to fit; they are skipped and counted as "silent".
"""

import warnings
from pathlib import Path

import numpy as np
import tensorly as tl
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from spikingjelly.activation_based import functional
from tensorly.decomposition import parafac

from pfa.attention.attach import is_spiking_neuron
from pfa.attention.registry import is_attention
from pfa.errors import UserError
from pfa.files import atomic_write

ALS_ITERATIONS, ALS_TOLERANCE = 100, 1e-6  # an exact rank-3 tensor: error ~1e-4 at R = 3


def default_positions(model: nn.Module) -> list[str]:
    """The attention modules of `model`; without any, its spiking neurons."""
    attention = [name for name, m in model.named_modules() if is_attention(m)]
    return attention or [name for name, m in model.named_modules() if is_spiking_neuron(m)]


@torch.no_grad()
def record_positions(model: nn.Module, loader, samples: int, positions: list[str] | None = None) -> dict:
    """Name -> [S, T, C, H, W] CPU tensor entering each position, for the first S = `samples` inputs of `loader`.

    A position is an attention module (its input is recorded) or any other module (its output: what an attention
    put after it by `pfa.attention.attach` would see). Without `positions`, default positions whose tensor is not
    [T, N, C, H, W] are left out; named ones must be.
    """
    explicit = positions is not None
    positions = list(positions) if explicit else default_positions(model)
    modules = dict(model.named_modules())
    missing = [name for name in positions if name not in modules]
    if missing:
        raise UserError(f"rank: the model has no module named {missing[0]!r}; positions are names of "
                        "model.named_modules()")
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name in positions}
    shapes: dict[str, list[int]] = {}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0] if is_attention(module) else output
            shapes.setdefault(name, list(x.shape))
            if x.dim() == 5:
                recorded[name].append(x.transpose(0, 1).float().cpu())

        return record

    hooks = [modules[name].register_forward_hook(hook(name)) for name in positions]
    device = next(model.parameters()).device
    training, seen = model.training, 0
    model.eval()
    try:
        for batch in loader:
            inputs = batch[0] if isinstance(batch, list | tuple) else batch
            functional.reset_net(model)
            model(inputs.to(device))
            seen += inputs.shape[0]
            if seen >= samples:
                break
    finally:
        functional.reset_net(model)
        model.train(training)
        for h in hooks:
            h.remove()
    if seen == 0:
        raise UserError("rank: the data loader gave no inputs")
    result = {}
    for name in positions:
        if shapes.get(name) is None or not recorded[name]:
            if explicit:
                raise UserError(f"rank: position {name!r} must carry [T, N, C, H, W] tensors, got "
                                f"{shapes.get(name, 'nothing (not called)')}")
            continue
        result[name] = torch.cat(recorded[name])[:samples]
    if not result:
        raise UserError("rank: no attention module and no spiking neuron with [T, N, C, H, W] output in this model; "
                        "name positions explicitly")
    return result


def cp_errors(tensor: np.ndarray, max_rank: int) -> list[float]:
    """Relative errors ||X - X_R|| / ||X|| of CP fits with R = 1 .. max_rank components of a 3-way array.

    A rank-R CP tensor can repeat the best rank-(R-1) fit plus a zero component, so each error is at most the
    previous one; that also covers ALS landing in a worse local optimum, or failing on a singular system (a sparse
    sample whose factors degenerate), at a higher R. Zero components fit nothing: the error starts from 1.
    """
    norm, best, errors = float(np.linalg.norm(tensor)), 1.0, []
    with warnings.catch_warnings():
        # ranks above a dimension make tensorly warn that its SVD start has fewer vectors (it fills in random ones)
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
        for rank in range(1, max_rank + 1):
            init = "svd" if rank <= min(tensor.shape) else "random"  # an SVD start fails on a mode of size 1
            try:
                cp = parafac(tl.tensor(tensor), rank, n_iter_max=ALS_ITERATIONS, tol=ALS_TOLERANCE, init=init,
                             random_state=0)
                best = min(best, float(np.linalg.norm(tensor - tl.cp_to_tensor(cp))) / norm)
            except np.linalg.LinAlgError:
                pass
            errors.append(best)
    return errors


def recommend(errors: dict[str, float], target_fit: float) -> int | None:
    """The smallest rank whose fit 1 - error reaches target_fit, or None."""
    return next((int(r) for r, e in errors.items() if e is not None and 1 - e >= target_fit), None)


def position_advice(name: str, spikes: torch.Tensor, max_rank: int, target_fit: float) -> dict:
    """Mean CP errors over the samples of one position [S, T, C, H, W] and the rank they recommend."""
    S, T, C, H, W = spikes.shape
    flat = spikes.reshape(S, T, C, H * W).double().numpy()
    fits = [cp_errors(x, max_rank) for x in flat if np.any(x)]
    mean = np.mean(fits, axis=0).tolist() if fits else [None] * max_rank  # None: every sample silent
    errors = {str(r): e for r, e in enumerate(mean, start=1)}
    return {"name": name, "shape": [T, C, H, W], "samples": len(fits), "silent": S - len(fits),
            "errors": errors, "recommended_rank": recommend(errors, target_fit)}


def rank_advice(model: nn.Module, loader, samples: int = 32, max_rank: int = 8, target_fit: float = 0.9,
                positions: list[str] | None = None) -> dict:
    """Record every position over `samples` inputs of `loader` and fit CP decompositions of rank 1 .. max_rank."""
    check_settings(samples, max_rank, target_fit)
    recorded = record_positions(model, loader, samples, positions)
    return {
        "positions": [position_advice(name, x, max_rank, target_fit) for name, x in recorded.items()],
        "samples": min(samples, len(next(iter(recorded.values())))),
        "max_rank": max_rank,
        "target_fit": target_fit,
        "error": "mean over samples of ||X - CP_R(X)||_F / ||X||_F, X = one sample's [T, C, H*W] tensor",
        "method": f"tensorly {tl.__version__} parafac, ALS from an SVD start, <= {ALS_ITERATIONS} iterations",
    }


def check_settings(samples: int, max_rank: int, target_fit: float) -> None:
    if samples < 1:
        raise UserError(f"rank: --samples must be a positive integer, got {samples}")
    if max_rank < 1:
        raise UserError(f"rank: --max-rank must be a positive integer, got {max_rank}")
    if not 0 < target_fit <= 1:
        raise UserError(f"rank: --target-fit must be in (0, 1] (fit = 1 - relative error), got {target_fit}")


def save_plot(advice: dict, path: Path) -> None:
    """Error against rank, one line per position, with the target as a dashed line (no pyplot: no global state)."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for position in advice["positions"]:
        if not position["samples"]:
            continue
        ranks = [int(r) for r in position["errors"]]
        advice_text = f"R={position['recommended_rank']}" if position["recommended_rank"] else f"R>{ranks[-1]}"
        axes.plot(ranks, list(position["errors"].values()), marker="o",
                  label=f"{position['name']} {position['shape']}: {advice_text}")
    axes.axhline(1 - advice["target_fit"], linestyle="--", color="grey", label=f"target fit {advice['target_fit']}")
    axes.set(xlabel="CP rank R", ylabel="relative reconstruction error", ylim=(0, None),
             title=f"CP fit of the attention inputs ({advice['samples']} samples)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=120)
