"""Checkpoints: written atomically, read with `weights_only=True`, and checked to belong to the model being built.

A checkpoint is a plain dict: {"format", "arch", "signature", "epoch", "model", ...}; `arch` is a readable description
given by the entry point (e.g. "FashionMNISTNet(width=32, T=4, rank=4, attention=pfa)") and `signature` a hash of the
model's parameter names and shapes, so loading one into another network fails with one clear line.
"""

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn

from pfa.errors import UserError

FORMAT = "pfa-checkpoint-1"


def model_signature(model: nn.Module) -> str:
    """A short hash of the state dict's names and shapes: equal exactly when the weights are interchangeable."""
    layout = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return hashlib.sha1(layout.encode()).hexdigest()[:16]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside `path`, then rename it: readers and crashes never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, **state}, f)


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, arch: str | None = None) -> dict[str, Any]:
    """Read a checkpoint safely; with `model`, check it was written for the same architecture."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; give the path of a checkpoint_*.pth from a run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # garbage makes torch.load raise anything from KeyError to UnpicklingError
        reason = "is truncated or corrupt" if _looks_like_torch_file(path) else "is not a PyTorch checkpoint"
        raise UserError(f"checkpoint {path} {reason} ({type(e).__name__}); give a checkpoint_*.pth written by this "
                        "repository") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is a PyTorch file but not a checkpoint of this repository (no {FORMAT!r} tag); "
                        "give a checkpoint_*.pth from a run directory")
    if model is not None and state["signature"] != model_signature(model):
        raise UserError(f"checkpoint {path} was written for {state['arch']}, but this run builds {arch}; "
                        "pass the same model flags as that run, or another checkpoint")
    return state


def _looks_like_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"
