"""Whole-network fidelity: our event VGG against a transcription of the reference's (CIFAR/VGG.py's behaviour).

The reference: [N, T, 2, H, W] frames -> time first -> (CIFAR10-DVS / N-Caltech101: adaptive average pool to 48) ->
PFA -> conv64 -> conv128 -> avgpool -> PFA -> conv256 x2 -> avgpool -> PFA -> conv512 x2 -> avgpool -> PFA ->
conv512 x2 -> avgpool -> PFA -> FC -> LIF. Every conv: 3x3, no bias, BN, multi-step LIF (tau 2, ATan, detached reset).
Its PFA is the CIFAR copy: a per-rank loop whose terms are weighted by softmax(ones) = 1/R, fused by multiplication.
DVS128 Gesture's copy is the same network without the pooling, its last PFA at rank 64 and the others at 32.
Channel counts are scaled down (our `width`) to keep the test fast; the structure is the reference's.
"""

import pytest
import torch
import torch.nn.functional as F
from reference_snn import Weights, assert_close, batch_norm, multistep_lif, per_rank_pfa

from pfa.models.vgg import SpikingVGG

STAGES = ((64, 128), (256, 256), (512, 512), (512, 512))


def reference_vgg(frames, w: Weights, T, ranks, width, classes, pool):
    """frames [N, T, 2, H, W] -> output spikes [T, N, classes]."""
    x = frames.transpose(0, 1)
    if pool:
        x = torch.stack([F.adaptive_avg_pool2d(step, pool) for step in x])
    channels = x.shape[2]

    def attention(x, rank):
        pfa = w.pfa(T, x.shape[2], rank)
        return per_rank_pfa(x.transpose(0, 1), pfa, "mul", 1 / rank).transpose(0, 1)

    def per_step(op, x):
        return torch.stack([op(step) for step in x])

    for index, stage in enumerate(STAGES):
        if index > 0:
            x = per_step(lambda s: F.avg_pool2d(s, 2), x)
        x = attention(x, ranks[index])
        for out in stage:
            out = round(out * width)
            weight, gamma, beta = w.take(out, channels, 3, 3), w.take(out), w.take(out)
            z = F.conv2d(x.flatten(0, 1), weight, padding=1)
            x = multistep_lif(batch_norm(z, gamma, beta).unflatten(0, x.shape[:2]), detach_reset=True)
            channels = out
    x = attention(per_step(lambda s: F.avg_pool2d(s, 2), x), ranks[4])
    features = x.flatten(2)
    fc_weight, fc_bias = w.take(classes, features.shape[-1]), w.take(classes)
    return multistep_lif(F.linear(features, fc_weight, fc_bias), detach_reset=True)


@pytest.mark.parametrize("layout", [
    # CIFAR10-DVS / N-Caltech101 copy: frames pooled to 48x48, R = 8 everywhere
    dict(side=64, pool=48, ranks=(8,) * 5, rank=8, classes=10),
    # DVS128 Gesture copy: no pooling (a small frame here), ranks 32, 32, 32, 32, 64 scaled down to 4, ..., 8
    dict(side=32, pool=None, ranks=(4, 4, 4, 4, 8), rank=(4, 4, 4, 4, 8), classes=11),
])
def test_event_vgg_equals_the_reference_forward_and_gradients(layout):
    torch.manual_seed(0)
    T, N, width = 4, 2, 0.125
    model = SpikingVGG(layout["classes"], T, image_size=None if layout["pool"] else layout["side"],
                       input_pool=layout["pool"], rank=layout["rank"], width=width).double()
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    fc.weight.data.mul_(100)  # so that the untrained network's output neurons fire
    frames = torch.randint(0, 4, (N, T, 2, layout["side"], layout["side"])).double().requires_grad_()
    probe = torch.randn(T, N, layout["classes"], dtype=torch.float64)

    ours = model(frames)
    (ours * probe).sum().backward()

    w = Weights(model)
    frames_ref = frames.detach().clone().requires_grad_()
    reference = reference_vgg(frames_ref, w, T, layout["ranks"], width, layout["classes"], layout["pool"])
    (reference * probe).sum().backward()

    assert ours.sum() > 0, "no output spike: the comparison would be weak"
    assert torch.equal(ours, reference)
    assert_close(frames.grad, frames_ref.grad, "input gradient")
    for name, grad, grad_ref in w.grads():
        assert_close(grad, grad_ref, name)
