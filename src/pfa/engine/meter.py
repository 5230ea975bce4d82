"""Per-epoch accumulation on the device: metric sums and the first non-finite step, reduced once per epoch."""

from dataclasses import dataclass

import torch

from pfa.engine.distributed import all_reduce_min, all_reduce_sum


@dataclass
class Divergence:
    """The first step (0-based, within its epoch) whose loss or gradients were not finite, and that step's loss."""

    step: int
    loss: float


class EpochMeter:
    """Sums of batch means times batch sizes, and the finiteness flag, kept on the device until `result()` reduces
    them over processes: no host synchronisation per step."""

    def __init__(self, device: torch.device):
        self.device, self.sums, self.count = device, {}, 0
        self.ok = torch.ones((), dtype=torch.bool, device=device)  # every step so far was finite
        self.good_steps = torch.zeros((), dtype=torch.int64, device=device)  # steps before the first bad one
        self.loss_at_stop = torch.zeros((), dtype=torch.float64, device=device)  # the loss of the first bad step

    def add(self, step) -> None:
        """A `pfa.engine.task.StepResult`: its batch-mean metrics weighted by its batch size."""
        for key, value in step.metrics.items():
            value = torch.as_tensor(value, device=self.device).detach().double() * step.count
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += step.count

    def watch(self, loss: torch.Tensor, grads: list[torch.Tensor]) -> None:
        """Fold this step's finiteness (the loss and each gradient tensor's L2 norm: one fused pass, faster than
        isfinite or the max norm; a norm that overflows float32 counts as diverged too) into the device flag."""
        loss = loss.detach().double().reshape(())
        values = [loss, *(g.double() for g in torch._foreach_norm(grads))] if grads else [loss]
        finite = torch.stack(values).isfinite().all()
        self.loss_at_stop = torch.where(self.ok, loss, self.loss_at_stop)  # frozen once a bad step was folded in
        self.ok &= finite
        self.good_steps += self.ok

    def means(self) -> dict[str, float]:
        return {k: v.item() / self.count for k, v in self.sums.items()}

    def result(self) -> tuple[dict[str, float], Divergence | None]:
        """Means over all processes, and the first non-finite step of any process (None when all were finite)."""
        count = torch.tensor(self.count, device=self.device, dtype=torch.float64)
        bad_loss = torch.where(self.ok, 0.0, self.loss_at_stop)
        totals = all_reduce_sum(torch.stack([*self.sums.values(), count, (~self.ok).double(), bad_loss]))
        first = all_reduce_min(self.good_steps.clone())  # processes that stayed finite count all their steps
        *sums, count, n_bad, loss, step = torch.cat([totals, first.double().reshape(1)]).tolist()
        means = {k: s / count for k, s in zip(self.sums, sums, strict=True)}
        return means, Divergence(int(step), loss) if n_bad else None
