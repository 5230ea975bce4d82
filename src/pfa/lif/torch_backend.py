"""The "torch" LIF backend: one autograd.Function that runs all T steps, for any device.

On CPU the neurons are processed in cache-sized chunks (all T steps of one chunk before the next), each operation
split over ATen's threads: each per-step operation then works on data already in cache, which brings a chain of
small elementwise operations close to the `relu(x * y)` floor. On other devices a chunk is the whole tensor.

Backward needs only the charged potentials H [T, ...] (state dtype) and the spikes (the output), and recomputes the
surrogate gradient from H.
"""

from __future__ import annotations

import math

import torch

from pfa.lif.params import LIFParams

CPU_CHUNK = 1 << 16  # neurons per chunk and CPU thread: each per-step operation works in cache


def _chunk_size(numel: int, device: torch.device) -> int:
    """Neurons per chunk: cache-sized on CPU, whose operations ATen still splits over its threads (faster than a Python
    thread pool, which serialises on the GIL); the whole tensor in one piece elsewhere."""
    return CPU_CHUNK * torch.get_num_threads() if device.type == "cpu" else max(numel, 1)


def _charge(x_t, v, h, tmp, tau, p: LIFParams):
    """h = V + (X - (V - v_reset)) / tau, or V - (V - v_reset) / tau + X; the same operation order as spikingjelly."""
    leak = v if not p.v_reset else torch.sub(v, p.v_reset, out=tmp)
    if p.decay_input:
        torch.addcdiv(v, torch.sub(x_t, leak, out=tmp), tau, out=h)
    else:
        torch.addcdiv(v, leak, tau, value=-1, out=h).add_(x_t)


def _fire_and_reset(h, s_t, v, p: LIFParams):
    """s = [h >= v_threshold]; v = v_reset where s else h (hard), or h - s * v_threshold (soft)."""
    torch.ge(h, p.v_threshold, out=s_t)
    if p.v_reset is None:
        torch.add(h, s_t, alpha=-p.v_threshold, out=v)
    else:
        torch.addcmul(h, h, s_t, value=-1, out=v)  # exactly 0 or h, since s is 0 or 1
        if p.v_reset:
            v.add_(s_t, alpha=p.v_reset)


def _surrogate_factor(h, out, one, p: LIFParams):
    """Writes a factor f of the surrogate gradient sg into out; returns (scale, combine) such that
    combine(a, b, f, value=scale * c) = a + c * b * sg: atan f = 1 + (pi / 2 * alpha * (h - v_threshold))^2 and
    sg = scale / f (torch.addcdiv); rectangle f = 1[|h - center| < width] and sg = scale * f (torch.addcmul)."""
    if p.surrogate == "atan":
        k = math.pi / 2 * p.alpha
        torch.sub(h, p.v_threshold, out=out)
        torch.addcmul(one, out, out, value=k * k, out=out)
        return p.alpha / 2, torch.addcdiv
    torch.sub(h, p.center, out=out).abs_()
    torch.lt(out, p.width, out=out)
    return 1 / (2 * p.width), torch.addcmul


def _through_reset(c, h, s_t, f, scale, combine, tmp, p: LIFParams):
    """c <- c * dV/dH: the gradient that reaches H from the membrane passed on to the next step."""
    if p.v_reset is None:
        if not p.detach_reset:  # V = H - S * v_threshold
            combine(c, c, f, value=-p.v_threshold * scale, out=c)
        return
    if not p.detach_reset:  # V = H * (1 - S) + v_reset * S, with dS/dH = sg
        if p.v_reset:
            torch.sub(h, p.v_reset, out=tmp).mul_(c)
        else:
            torch.mul(h, c, out=tmp)
    torch.addcmul(c, c, s_t, value=-1, out=c)
    if not p.detach_reset:
        combine(c, tmp, f, value=-scale, out=c)


def propagate_non_finite(spikes: torch.Tensor, v: torch.Tensor) -> None:
    """spikes[-1] += 0 * v: NaN where the final membrane is NaN or infinite, unchanged elsewhere. A non-finite charge
    leaves the membrane non-finite for all later steps, so the final one tells; a diverged network then shows in its
    loss instead of going silent (no spike)."""
    spikes[-1].add_(v.view(spikes.shape[1:]), alpha=0)


def _step_order(x_seq: torch.Tensor) -> list[int]:
    """The dimensions of one step [N, ...] by decreasing stride: permuting a channels-last (or any dense) input by
    them makes it contiguous, so the neurons are read in memory order without a copy and the outputs keep the layout."""
    return sorted(range(x_seq.dim() - 1), key=lambda d: -x_seq.stride(d + 1))


def _inverse(order: list[int]) -> list[int]:
    return sorted(range(len(order)), key=order.__getitem__)


def _unpermute(flat: torch.Tensor, shape: torch.Size, order: list[int]) -> torch.Tensor:
    """A flat buffer in permuted memory order, viewed with the original dimension order (and the same strides)."""
    inverse = _inverse(order)
    if len(shape) == len(order):
        return flat.view(shape).permute(inverse)
    return flat.view(shape).permute(0, *(d + 1 for d in inverse))


def finish_forward(ctx, params: LIFParams, order: list[int], shape: torch.Size, spikes: torch.Tensor, v: torch.Tensor,
                   h_seq: torch.Tensor | None, v_seq: torch.Tensor | None, dtype: torch.dtype):
    """The common end of a forward over neurons in permuted memory order (shape [T, ...] permuted): a non-finite
    membrane shows in the spikes, backward gets H and the spikes (h_seq is None when no gradient is needed), and the
    outputs (spikes in `dtype`, v, v_seq or an empty tensor) take the input's dimension order."""
    propagate_non_finite(spikes, v)
    ctx.params, ctx.order = params, order
    if h_seq is not None:
        ctx.save_for_backward(h_seq, spikes)
    v_seq_out = _unpermute(v_seq, shape, order) if v_seq is not None else v.new_empty(0)
    ctx.mark_non_differentiable(v_seq_out)
    return _unpermute(spikes.to(dtype), shape, order), _unpermute(v, shape[1:], order), v_seq_out


class _MultiStepLIF(torch.autograd.Function):
    """(x_seq [T, N, ...], v0 [N, ...]) -> (spikes [T, N, ...] in x's dtype, v [N, ...], v_seq or an empty tensor)."""

    @staticmethod
    def forward(ctx, x_seq, v0, params: LIFParams, store_v_seq: bool):
        order = _step_order(x_seq)
        x_p = x_seq.detach().permute(0, *(d + 1 for d in order)).contiguous()
        x = x_p.view(x_seq.shape[0], v0.numel())
        numel = x.shape[1]
        state_dtype = v0.dtype
        needs_grad = any(ctx.needs_input_grad[:2])
        spikes = torch.empty_like(x)
        h_seq = torch.empty_like(x, dtype=state_dtype) if needs_grad else None
        v_seq = torch.empty_like(x, dtype=state_dtype) if store_v_seq else None
        v = v0.detach().permute(order).reshape(-1).to(dtype=state_dtype, copy=True)
        tau = torch.tensor(params.tau, dtype=state_dtype, device=x.device)
        chunk = _chunk_size(numel, x.device)
        tmp = torch.empty(min(chunk, numel), dtype=state_dtype, device=x.device)
        scratch = None if needs_grad else torch.empty_like(tmp)
        for a in range(0, numel, chunk):
            b = min(a + chunk, numel)
            v_c, tmp_c = v[a:b], tmp[: b - a]
            hs = h_seq[:, a:b].unbind() if needs_grad else [scratch[: b - a]] * len(x)
            for t, (x_t, s_t, h) in enumerate(zip(x[:, a:b].unbind(), spikes[:, a:b].unbind(), hs, strict=True)):
                _charge(x_t, v_c, h, tmp_c, tau, params)
                _fire_and_reset(h, s_t, v_c, params)
                if v_seq is not None:
                    v_seq[t, a:b].copy_(v_c)

        return finish_forward(ctx, params, order, x_p.shape, spikes, v, h_seq, v_seq, spikes.dtype)

    @staticmethod
    def backward(ctx, grad_spikes, grad_v, _grad_v_seq):
        """Runs the recurrence on c = dL/dV * g with g = 1/tau (decay_input) or 1, so that dL/dX_t = c_t * dV/dH +
        g * dL/dS_t * sg comes out of one fused operation, and c_{t-1} = dL/dX_t * (1 - 1/tau)."""
        h_seq, spikes = ctx.saved_tensors
        p = ctx.params
        numel = h_seq.shape[1]
        order = ctx.order
        gs_p = grad_spikes.permute(0, *(d + 1 for d in order))
        gs = gs_p.reshape(h_seq.shape)
        grad_x = torch.empty_like(spikes)
        g = 1 / p.tau if p.decay_input else 1.0
        c = grad_v.detach().permute(order).reshape(-1).to(h_seq.dtype).mul(g)
        one = torch.ones((), dtype=h_seq.dtype, device=h_seq.device)
        same_dtype = grad_x.dtype == h_seq.dtype

        chunk = _chunk_size(numel, h_seq.device)
        f = torch.empty(min(chunk, numel), dtype=h_seq.dtype, device=h_seq.device)
        tmp, gh = torch.empty_like(f), torch.empty_like(f)
        for a in range(0, numel, chunk):
            b = min(a + chunk, numel)
            c_c, f_c, tmp_c = c[a:b], f[: b - a], tmp[: b - a]
            gh_c = None if same_dtype else gh[: b - a]
            steps = zip(*(seq[:, a:b].unbind() for seq in (h_seq, spikes, gs, grad_x)), strict=True)
            for h, s_t, gs_t, gx_t in reversed(list(steps)):
                scale, combine = _surrogate_factor(h, f_c, one, p)
                _through_reset(c_c, h, s_t, f_c, scale, combine, tmp_c, p)
                out = gx_t if same_dtype else gh_c
                combine(c_c, gs_t, f_c, value=scale * g, out=out)
                torch.mul(out, 1 - 1 / p.tau, out=c_c)
                if not same_dtype:
                    gx_t.copy_(out)

        return (_unpermute(grad_x, gs_p.shape, order), _unpermute(c.div_(g), gs_p.shape[1:], order), None, None)
