"""Model report: parameters per layer, spike rate of every spiking neuron layer and synaptic operations on one batch.

Definitions
- spike rate of a neuron layer: the mean of its output over steps, samples and neurons (spikes per neuron per step).
- SOPs (synaptic operations) of a conv or linear layer: sum over its non-zero input elements of their fan-out, the
  number of outputs (channels x positions) each one reaches, i.e. the work an event-driven chip does for that layer.
  It is computed exactly (borders, stride and groups included) as the sum of the same convolution with all-one
  weights applied to the input's non-zero mask. Reported per sample, summed over the T steps. `binary_input` says
  whether the inputs were spikes (each operation an accumulate) or real values (e.g. the first layer of a directly
  encoded image, or spikes scaled by an attention map: each operation a multiply-accumulate). The layers inside
  attention modules work on pooled, real-valued statistics; they are counted the same way but summed apart
  (`attention_ops_per_sample`).
"""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import base, functional

from pfa.attention.registry import is_attention
from pfa.files import write_json

SYNAPTIC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
CONVOLUTIONS = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}  # by the weight's number of dimensions


def parameter_rows(model: nn.Module) -> list[dict]:
    """One row per layer owning parameters; an attention module is one row, flagged `attention`."""
    rows, inside_attention = [], ()
    for name, module in model.named_modules():
        if inside_attention and name.startswith(inside_attention):
            continue
        if is_attention(module):
            inside_attention = name + "."
            count = sum(p.numel() for p in module.parameters())
        else:
            count = sum(p.numel() for p in module.parameters(recurse=False))
        if count:
            rows.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "params": count,
                    "attention": is_attention(module),
                }
            )
    return rows


def fan_out_sum(module: nn.Module, x: torch.Tensor) -> float:
    """Sum over the non-zero elements of `x` of the number of `module` outputs each one reaches."""
    active = (x != 0).to(module.weight.dtype)
    if isinstance(module, nn.Linear):
        return float(active.sum()) * module.out_features
    convolution = CONVOLUTIONS[module.weight.dim()]
    reach = convolution(
        active, torch.ones_like(module.weight), None, module.stride, module.padding, module.dilation, module.groups
    )
    return float(reach.sum())


@torch.no_grad()
def model_report(model: nn.Module, batch: torch.Tensor) -> dict:
    """Run `model` once on `batch` (eval mode) and collect parameters, spike rates and SOPs; restores the mode."""
    samples = batch.shape[0]
    spikes, synops, hooks = [], [], []

    def record_spikes(name):
        def hook(module, inputs, output):
            spikes.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "neurons": output[0, 0].numel(),
                    "rate": float(output.float().mean()),
                }
            )

        return hook

    def record_synops(name, in_attention):
        def hook(module, inputs, output):
            x = inputs[0]
            synops.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "attention": in_attention,
                    "binary_input": bool(((x == 0) | (x == 1)).all()),
                    "input_nonzero": float((x != 0).float().mean()),
                    "sops_per_sample": fan_out_sum(module, x) / samples,
                }
            )

        return hook

    attention_prefixes = tuple(name + "." for name, m in model.named_modules() if is_attention(m))
    for name, module in model.named_modules():
        if isinstance(module, base.MemoryModule):
            hooks.append(module.register_forward_hook(record_spikes(name)))
        elif isinstance(module, SYNAPTIC_TYPES):
            hooks.append(module.register_forward_hook(record_synops(name, name.startswith(attention_prefixes))))
    training = model.training
    model.eval()
    functional.reset_net(model)
    try:
        model(batch)
    finally:
        functional.reset_net(model)
        model.train(training)
        for hook in hooks:
            hook.remove()
    parameters = parameter_rows(model)
    attention = sum(row["params"] for row in parameters if row["attention"])
    total = sum(p.numel() for p in model.parameters())
    return {
        "samples": samples,
        "parameters": {"total": total, "attention": attention, "backbone": total - attention, "layers": parameters},
        "spike_rates": spikes,
        "synops": synops,
        "sops_per_sample": sum(row["sops_per_sample"] for row in synops if not row["attention"]),
        "attention_ops_per_sample": sum(row["sops_per_sample"] for row in synops if row["attention"]),
    }


def format_report(report: dict) -> str:
    """The report as plain-text tables."""
    params = report["parameters"]
    lines = [
        f"parameters: {params['total']:,} (attention {params['attention']:,}, backbone {params['backbone']:,})",
        f"{'layer':<32} {'type':<26} {'params':>12}",
    ]
    lines += [f"{row['name']:<32} {row['type']:<26} {row['params']:>12,}" for row in params["layers"]]
    lines += ["", f"{'neuron layer':<32} {'neurons':>10} {'spike rate':>11}"]
    lines += [f"{row['name']:<32} {row['neurons']:>10,} {row['rate']:>11.4f}" for row in report["spike_rates"]]
    lines += ["", f"{'synaptic layer':<32} {'input':<7} {'nonzero':>8} {'SOPs/sample':>16}"]
    lines += [
        f"{row['name']:<32} {'spikes' if row['binary_input'] else 'real':<7} {row['input_nonzero']:>8.4f} "
        f"{row['sops_per_sample']:>16,.0f}"
        for row in report["synops"]
    ]
    lines.append(
        f"SOPs per sample: {report['sops_per_sample']:,.0f} in the backbone, "
        f"{report['attention_ops_per_sample']:,.0f} inside attention modules "
        f"(on {report['samples']} test samples)"
    )
    return "\n".join(lines)


def save_report(report: dict, path: str | Path) -> None:
    write_json(Path(path), report)
