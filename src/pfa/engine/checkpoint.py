"""Checkpoints: written atomically, read with `weights_only=True`, and checked to belong to the model being built.

A checkpoint is a plain dict: {"format", "checksum", "arch", "signature", "epoch", "model", ...}; `arch` is a readable
description given by the entry point (e.g. "FashionMNISTNet(width=32, T=4, rank=4, attention=pfa)") and `signature` a
hash of the model's parameter names and shapes, so loading one into another network fails with one clear line.
`checksum` is a sha256 of every other entry (each tensor's dtype, shape and bytes; other values by their repr), checked
on every load: torch does not check its archive's CRCs, so a flipped bit would otherwise load as a different weight.
Checkpoints of the previous format, "pfa-checkpoint-1", have no checksum and are still read.
"""

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from pfa.errors import UserError
from pfa.files import atomic_write

FORMAT = "pfa-checkpoint-2"
FORMATS = ("pfa-checkpoint-1", FORMAT)  # the first has no checksum


def model_signature(model: nn.Module) -> str:
    """A short hash of the state dict's names and shapes: equal exactly when the weights are interchangeable."""
    layout = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return hashlib.sha1(layout.encode()).hexdigest()[:16]


def _feed(digest, value) -> None:
    """Hash `value` unambiguously: every item is typed and sized before its contents."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(value.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(f"M{len(value)};".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(f"L{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        text = repr(value)
        digest.update(f"V{len(text)};{text}".encode())


def checksum(state: Mapping[str, Any]) -> str:
    """The sha256 of every entry of a checkpoint but "checksum" itself."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != "checksum"})
    return digest.hexdigest()


REQUIRED = ("arch", "signature", "epoch", "model")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    state = {"format": FORMAT, **{k: v for k, v in state.items() if k not in ("format", "checksum")}}
    buffer = io.BytesIO()  # serialised first, so that a failing disk raises OSError rather than torch's RuntimeError
    torch.save({**state, "checksum": checksum(state)}, buffer)
    with atomic_write(path) as f:
        f.write(buffer.getbuffer())


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A file written by `save_checkpoint`, read safely (tensors and plain values only) and checked against its
    checksum."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; give the path of a checkpoint_*.pth from a run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # garbage makes torch.load raise anything from KeyError to UnpicklingError
        reason = "is truncated or corrupt" if _looks_like_torch_file(path) else "is not a PyTorch checkpoint"
        raise UserError(f"checkpoint {path} {reason} ({type(e).__name__}); give a checkpoint_*.pth written by this "
                        "repository") from None
    if not isinstance(state, dict) or state.get("format") not in FORMATS:
        raise UserError(f"{path} is a PyTorch file but not a checkpoint of this repository (no {FORMAT!r} tag); "
                        "give a checkpoint_*.pth from a run directory")
    if state["format"] != FORMATS[0] and state.get("checksum") != checksum(state):
        raise UserError(f"checkpoint {path} is damaged: its contents do not match the checksum saved in it (a changed "
                        "byte or a partial copy); give an intact checkpoint, e.g. checkpoint_best.pth or a backup")
    return state


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, arch: str | None = None,
                    needs: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint safely, with the entries REQUIRED and `needs`; with `model`, check it was written for the
    same architecture and that every tensor has the model's shape."""
    state = read_checkpoint(path)
    missing = [k for k in (*REQUIRED, *needs) if k not in state]
    if missing or not isinstance(state["model"], dict):
        raise UserError(f"checkpoint {path} lacks {', '.join(missing) or 'a model state dict'}; it was not written "
                        "by a training run of this repository, or was edited: give a checkpoint_*.pth from a run")
    if model is None:
        return state
    if state["signature"] != model_signature(model):
        raise UserError(f"checkpoint {path} was written for {state['arch']}, but this run builds {arch}; "
                        "pass the same model flags as that run, or another checkpoint")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state["model"].items()}
    if found != expected:
        key = next(k for k in expected.keys() | found.keys() if found.get(k) != expected.get(k))
        raise UserError(f"checkpoint {path} does not fit {arch}: {key} is {found.get(key)} there, "
                        f"{expected.get(key)} here; the file was altered, give an intact checkpoint")
    return state


def _looks_like_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def checkpoint_task(state: dict[str, Any]) -> str | None:
    """The task of a checkpoint: its `task` entry, or for checkpoints written before tasks were recorded, the one
    whose network it holds."""
    if "task" in state:
        return state["task"]
    arch, config = state.get("arch", ""), state.get("config") or {}
    if arch.startswith("FashionMNISTNet("):
        return "fmnist"
    if arch.startswith(("FSVAE(", "AnnVAE(")) or "latent_dim" in config:
        return "generation"
    return "cifar" if "dataset" in config else None
