"""Whole-network fidelity: our Fashion-MNIST network against a transcription of the reference's (FMNIST/run.py CupyNet).

The reference: static conv 1->w (no bias) + BN on the image, repeated over T; LIF -> maxpool -> conv w->w + BN -> PFA
-> LIF -> maxpool -> flatten -> dropout -> FC 49w->16w (no bias) -> LIF -> dropout -> FC 16w->10 (no bias) -> LIF.
Its neurons are the old `MultiStepLIFNode(tau=2, ATan)`, whose reset is NOT detached; its PFA is the FMNIST copy: a
per-rank loop summing the R terms unweighted, fused by addition. Width 8 instead of 128 keeps the test fast.
"""

import torch
import torch.nn.functional as F
from reference_snn import Weights, assert_close, batch_norm, dropout, multistep_lif, per_rank_pfa

from pfa.models.fmnist import FashionMNISTNet


def reference_fmnist(images, w: Weights, T, width, rank, p):
    """images [N, 1, 28, 28] -> output spikes [T, N, 10]."""
    static = batch_norm(F.conv2d(images, w.take(width, 1, 3, 3), padding=1), w.take(width), w.take(width))
    x = multistep_lif(static.unsqueeze(0).repeat(T, 1, 1, 1, 1), detach_reset=False)
    conv_weight, gamma, beta = w.take(width, width, 3, 3), w.take(width), w.take(width)
    z = batch_norm(F.conv2d(F.max_pool2d(x.flatten(0, 1), 2), conv_weight, padding=1), gamma, beta)
    z = per_rank_pfa(z.unflatten(0, (T, -1)).transpose(0, 1), w.pfa(T, width, rank), "add", 1.0).transpose(0, 1)
    x = F.max_pool2d(multistep_lif(z, detach_reset=False).flatten(0, 1), 2).unflatten(0, (T, -1)).flatten(2)
    hidden = F.linear(dropout(x, p), w.take(16 * width, 49 * width))
    x = multistep_lif(hidden, detach_reset=False)
    return multistep_lif(F.linear(dropout(x, p), w.take(10, 16 * width)), detach_reset=False)


def test_fmnist_network_equals_the_reference_forward_and_gradients():
    T, N, width, rank, dropout = 4, 8, 8, 4, 0.7
    torch.manual_seed(0)
    model = FashionMNISTNet(T, width, rank, dropout=dropout).double()
    for fc in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        fc.weight.data.mul_(10)  # so that the untrained network's FC neurons fire
    images = torch.rand(N, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(T, N, 10, dtype=torch.float64)

    torch.manual_seed(1)  # the same dropout masks on both sides
    ours = model(images)
    (ours * probe).sum().backward()

    w = Weights(model)
    images_ref = images.detach().clone().requires_grad_()
    torch.manual_seed(1)
    reference = reference_fmnist(images_ref, w, T, width, rank, dropout)
    (reference * probe).sum().backward()

    assert ours.sum() > 0, "no output spike: the comparison would be weak"
    assert torch.equal(ours, reference)
    assert_close(images.grad, images_ref.grad, "input gradient")
    for name, grad, grad_ref in w.grads():
        assert_close(grad, grad_ref, name)
