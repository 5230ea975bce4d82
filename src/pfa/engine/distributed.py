"""torch.distributed plumbing for runs launched by torchrun (nccl on CUDA, gloo on CPU); a no-op otherwise."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

_control: dist.ProcessGroup | None = None  # gloo: small host-side values, whatever the default group's backend


@dataclass(frozen=True)
class Process:
    """This process's place in the run: rank 0 of world size 1 when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_process(device: str) -> tuple[Process, torch.device]:
    """Join the process group if torchrun started us; returns the process and the device it should use."""
    device = torch.device(device)
    if not launched_by_torchrun():
        return Process(), device
    process = Process(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        device = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda"
                                else None)
    global _control
    if _control is None:
        _control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return process, device


def shutdown() -> None:
    global _control
    _control = None
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes, in place (identity when not distributed)."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    """Minimum over processes, in place (identity when not distributed)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def max_over_processes(value: int) -> int:
    """The largest of every process's `value`, exchanged on the host (itself when not distributed)."""
    if not dist.is_initialized():
        return value
    box = torch.tensor([value])
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=_control)
    return int(box)


def broadcast_object(obj):
    """Rank 0's `obj` on every process (itself when not distributed)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ShardSampler(Sampler[int]):
    """Every rank-th index from `rank`: each sample is seen by exactly one process, with no padding (for evaluation)."""

    def __init__(self, length: int, process: Process):
        self.indices = range(process.rank, length, process.world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
