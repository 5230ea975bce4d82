"""Projected-full Attention (PFA).

LPST projects a spike tensor X [T, N, C, H, W] onto rank-R temporal, channel and spatial factors; AMC composes them
into a full attention map A[t, n, c, h, w] = sum_r lambda_r * Tf[n, r, t] * Cf[n, r, c] * S[n, r, h, w]; the output is
gate(A * X) ("mul") or gate(A + X) ("add"), the gate being the reference's ReLU or one that lets the gradient through
where the input is 0 (see `PFA`).

A is never kept for backward: `_ProjectedFullAttention` recomputes it from the two means of X it saves ([T, N, H, W]
and [T, N, C]), so the module's saved state beyond its input is a small fraction of the input's size.
"""

import torch
import torch.nn as nn

FUSIONS = ("mul", "add")
GATES = ("relu", "pass", "identity")
WEIGHTINGS = ("softmax", "sum")
LAYOUTS = ("TNCHW", "NCHWT")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"PFA: {name} must be a positive integer, got {value!r}")
    return value


@torch.autocast("cuda", enabled=False)
@torch.autocast("cpu", enabled=False)
def compose(u: torch.Tensor, s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """AMC: u [T, N, C, R] (lambda*Tf*Cf) @ s [N, R, H*W] -> A shaped, typed and laid out like `like` [T, N, C, H, W].

    One batched product per time step writes straight into A (a single broadcast matmul would first copy s T times,
    R/C of the input's size); for a channels-last `like` the transposed products s^T u^T write A channels-last."""
    u, s = u.to(like.dtype), s.to(like.dtype)
    channels_last = like.stride(2) == 1 and like.shape[2] > 1
    if channels_last:
        a = u.new_empty(*u.shape[:2], s.shape[2], u.shape[2])
        for u_t, a_t in zip(u.unbind(), a.unbind(), strict=True):
            torch.bmm(s.mT, u_t.mT, out=a_t)
        a = a.mT
    else:
        a = u.new_empty(*u.shape[:3], s.shape[2])
        for u_t, a_t in zip(u.unbind(), a.unbind(), strict=True):
            torch.bmm(u_t, s, out=a_t)
    return a.unflatten(3, like.shape[3:])


@torch.autocast("cuda", enabled=False)
@torch.autocast("cpu", enabled=False)
def compose_grads(u: torch.Tensor, s: torch.Tensor, grad_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `compose` with respect to u and s, given dL/dA [T, N, C, H*W]; returned in u's and s's dtypes.

    dL/ds sums over T inside the products (accumulated per step), never forming a [T, N, R, H*W] intermediate."""
    u_a, s_t = u.to(grad_a.dtype), s.to(grad_a.dtype).mT
    grad_u = torch.empty_like(u_a)
    grad_s = s_t.new_zeros(s.shape)
    for u_t, g_t, gu_t in zip(u_a.unbind(), grad_a.unbind(), grad_u.unbind(), strict=True):
        torch.bmm(g_t, s_t, out=gu_t)
        grad_s.baddbmm_(u_t.mT, g_t)
    return grad_u.to(u.dtype), grad_s.to(s.dtype)


def _autocast_state(device_type: str) -> dict:
    if device_type == "meta":  # shapes only (pfa.engine.capacity): no autocast there
        return {"device_type": device_type, "enabled": False, "dtype": torch.float32}
    return {
        "device_type": device_type,
        "enabled": torch.is_autocast_enabled(device_type),
        "dtype": torch.get_autocast_dtype(device_type),
    }


def _gate_backward(grad_y: torch.Tensor, z: torch.Tensor, gate: str) -> torch.Tensor:
    """dL/dZ of the gate given dL/dY; `z` has the sign of the gate's input Z (Z itself or, for "mul", X)."""
    if gate == "identity":
        return grad_y
    if gate == "relu":
        return torch.ops.aten.threshold_backward(grad_y, z, 0)
    return grad_y.masked_fill(z < 0, 0)


class _ProjectedFullAttention(torch.autograd.Function):
    """gate(A (*|+) X) whose backward recomputes A instead of storing it."""

    @staticmethod
    def forward(ctx, x, module, *params):
        channel_mean, pooled = x.mean(2), x.mean((3, 4))
        u, s = module.project(channel_mean, pooled)
        y = compose(u, s, x)
        y = y.mul_(x) if module.fusion == "mul" else y.add_(x)
        ctx.module, ctx.autocast = module, _autocast_state(x.device.type)
        ctx.save_for_backward(x, channel_mean, pooled)
        return y if module.gate == "identity" else y.relu_()

    @staticmethod
    def backward(ctx, grad_y):
        x, channel_mean, pooled = ctx.saved_tensors
        module = ctx.module
        params = list(module.parameters())
        with torch.enable_grad(), torch.autocast(**ctx.autocast):
            channel_mean = channel_mean.detach().requires_grad_()
            pooled = pooled.detach().requires_grad_()
            u, s = module.project(channel_mean, pooled)
        needs_a = module.fusion == "mul" or module.gate != "identity"
        a = compose(u.detach(), s.detach(), x) if needs_a else None
        if module.fusion == "mul":
            # A > 0 everywhere (products of sigmoids and softmax weights), so A*X has the sign of X.
            grad_z = _gate_backward(grad_y, x, module.gate)
            grad_a = grad_z * x
        else:
            grad_a = grad_z = _gate_backward(grad_y, x if module.gate == "identity" else a.add_(x), module.gate)
        grad_u, grad_s = compose_grads(u.detach(), s.detach(), grad_a.flatten(3))
        wanted = [channel_mean, pooled] + [p for p, need in zip(params, ctx.needs_input_grad[2:], strict=True) if need]
        grads = iter(torch.autograd.grad((u, s), wanted, (grad_u, grad_s), allow_unused=True))
        grad_mean, grad_pooled = next(grads), next(grads)
        # dX = dZ * (A or 1) + the two means' broadcast gradients, accumulated in buffers we own.
        from_mean = grad_mean.unsqueeze(2).to(x.dtype) / x.shape[2]
        if module.fusion == "mul":
            grad_x = torch.addcmul(from_mean, a, grad_z, out=a)
        else:
            grad_x = grad_z + from_mean if grad_z is grad_y else grad_z.add_(from_mean)
        grad_x.add_(grad_pooled[..., None, None].to(x.dtype), alpha=1 / (x.shape[3] * x.shape[4]))
        grad_params = [next(grads) if need else None for need in ctx.needs_input_grad[2:]]
        return grad_x, None, *grad_params


class PFA(nn.Module):
    """Projected-full Attention for multi-step spike tensors.

    Args:
        T: time steps; C: channels; rank: R, the number of rank-1 terms ("connecting factor").
        kernel_size: odd size of the spatial projection's convolution (3 in the paper).
        fusion: "mul" -> gate(A * X) (default), "add" -> gate(A + X).
        gate: the output's non-linearity; A > 0, so on non-negative input (spikes) all three give the same values:
            "relu" (default) -> ReLU, as the reference; its derivative is 0 at 0, so with "mul" no gradient passes
                where X == 0, and none at all through a position where nothing fired;
            "pass" -> ReLU whose derivative at 0 is 1: the same values on any input, and the gradient passes where
                X == 0 (a spike can only rise from 0, so the right-hand derivative is the one that matters);
            "identity" -> no non-linearity: the same values and gradients as "pass" on non-negative input, but
                negative values (signed input, e.g. after batch norm) pass through instead of becoming 0.
        weights: how the R rank-1 terms are weighted, both learnable from theta = ones:
            "softmax" -> lambda = softmax(theta), 1/R at initialisation (the reference's CIFAR copy);
            "sum" -> lambda = R * softmax(theta), 1 at initialisation (its unweighted FMNIST and FSVAE copies).
        layout: "TNCHW" (spikingjelly's multi-step layout) or "NCHWT" (time last, as in FSVAE).
    """

    def __init__(self, T: int, C: int, rank: int, kernel_size: int = 3, fusion: str = "mul", weights: str = "softmax",
                 layout: str = "TNCHW", gate: str = "relu"):
        super().__init__()
        self.T, self.C, self.rank = _positive_int("T", T), _positive_int("C", C), _positive_int("rank", rank)
        if _positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"PFA: kernel_size must be odd to keep H and W, got {kernel_size}")
        if fusion not in FUSIONS:
            raise ValueError(f"PFA: fusion must be one of {FUSIONS}, got {fusion!r}")
        if weights not in WEIGHTINGS:
            raise ValueError(f"PFA: weights must be one of {WEIGHTINGS}, got {weights!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"PFA: layout must be one of {LAYOUTS}, got {layout!r}")
        if gate not in GATES:
            raise ValueError(f"PFA: gate must be one of {GATES}, got {gate!r}")
        self.kernel_size, self.fusion, self.weights, self.layout, self.gate = kernel_size, fusion, weights, layout, gate
        self.spatial = nn.Conv2d(T, rank, kernel_size, padding=kernel_size // 2)
        self.temporal = nn.Linear(C, rank)
        self.channel = nn.Linear(T, rank)
        self.rank_logits = nn.Parameter(torch.ones(rank))

    def extra_repr(self) -> str:
        return (f"T={self.T}, C={self.C}, rank={self.rank}, fusion={self.fusion!r}, weights={self.weights!r}, "
                f"layout={self.layout!r}, gate={self.gate!r}")

    @property
    def stops_gradient_where_silent(self) -> bool:
        """Whether no gradient crosses the module where its input is 0: the ReLU gate with fusion "mul"."""
        return self.gate == "relu" and self.fusion == "mul"

    def rank_weights(self) -> torch.Tensor:
        """lambda = softmax(theta), times R for weights="sum"."""
        weights = torch.softmax(self.rank_logits, 0)
        return weights * self.rank if self.weights == "sum" else weights

    def lpst(self, channel_mean: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """LPST: channel_mean [T,N,H,W], pooled [T,N,C] -> Tf [T, N, R], Cf [N, C, R], S [N, R, H, W], sigmoids."""
        temporal = torch.sigmoid(self.temporal(pooled))
        channel = torch.sigmoid(self.channel(pooled.permute(1, 2, 0)))
        spatial = torch.sigmoid(self.spatial(channel_mean.transpose(0, 1).contiguous()))
        return temporal, channel, spatial

    def project(self, channel_mean: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The factors ready for AMC: u = lambda*Tf*Cf [T, N, C, R] and S [N, R, H*W]."""
        temporal, channel, spatial = self.lpst(channel_mean, pooled)
        u = temporal.unsqueeze(2) * (channel * self.rank_weights()).unsqueeze(0)
        return u, spatial.flatten(2)

    def factors(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The learned factors for `x`, for inspection: temporal [N, R, T], channel [N, R, C], spatial [N, R, H, W]."""
        x = self._time_first(x)
        temporal, channel, spatial = self.lpst(x.mean(2), x.mean((3, 4)))
        return {
            "temporal": temporal.permute(1, 2, 0),
            "channel": channel.mT,
            "spatial": spatial,
            "weights": self.rank_weights(),
        }

    @torch.no_grad()
    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The composed attention map A for `x`, in the module's layout (for inspection: no gradient)."""
        x = self._time_first(x)
        u, s = self.project(x.mean(2), x.mean((3, 4)))
        return self._restore_layout(compose(u, s, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._time_first(x)
        return self._restore_layout(_ProjectedFullAttention.apply(x, self, *self.parameters()))

    def _time_first(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.T, "N", self.C, "H", "W") if self.layout == "TNCHW" else ("N", self.C, "H", "W", self.T)
        if x.dim() == 5:
            x_t = x if self.layout == "TNCHW" else x.permute(4, 0, 1, 2, 3)
            if x_t.shape[0] == self.T and x_t.shape[2] == self.C:
                return x_t
        layout = "[" + ", ".join(map(str, expected)) + "]"
        raise ValueError(f"PFA(T={self.T}, C={self.C}) expects a {self.layout} tensor {layout}, got {list(x.shape)}")

    def _restore_layout(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.layout == "TNCHW" else y.permute(1, 2, 3, 4, 0)
