"""Model report: parameters per layer, spike rate of every spiking neuron layer, operations and an energy estimate,
on one batch.

Definitions
- spike rate of a neuron layer: the mean of its output over steps, samples and neurons (spikes per neuron per step).
- SOPs (synaptic operations) of a conv, transposed conv or linear layer: sum over its non-zero input elements of their
  fan-out, the number of outputs (channels x positions) each one reaches, i.e. the work an event-driven chip does for
  that layer (zeros are skipped). It is computed exactly (borders, stride and groups included) as the sum of the same
  convolution with all-one weights applied to the input's non-zero mask. Reported per sample, summed over the T steps
  and over every call of the layer in one forward pass (`calls`; FSVAE's posterior re-runs growing prefixes).
  `binary_input` says whether the inputs were spikes, each operation then an accumulate (AC), or real values (e.g. the
  first layer of a directly encoded image, or spikes scaled by an attention map), each a multiply-accumulate (MAC).
- attention modules: their conv and linear layers work on pooled, real-valued statistics and are counted as above;
  their own arithmetic is counted densely, as implemented, per sample with E elements of input (all steps): PFA 2E AC
  for its two means and T*C*R + C*R + E*R MAC to compose its map A (R MAC per element), plus E for the fusion (MAC for
  "mul", AC for "add"); TCJA E AC (mean) and T*C + E MAC; TA 2E AC (mean and max pooling) and E MAC; MA the same per
  enabled axis. Sigmoids, softmax, gates and the scalings of means are not counted. All of it is summed apart from the
  backbone (`attention_ops_per_sample`).
- energy: 0.9 pJ per AC and 4.6 pJ per MAC, the 45 nm 32-bit floating-point figures SNN papers commonly use
  (ENERGY_SOURCE). An estimate from operation counts, not a measurement: memory access, neuron updates and the chip
  itself are left out.
"""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import base, functional, layer

from pfa.attention.projected_full import PFA
from pfa.attention.registry import is_attention
from pfa.attention.tcja import TCJA
from pfa.files import write_json

SYNAPTIC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                  nn.Linear)
CONVOLUTIONS = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}  # by the weight's number of dimensions
TRANSPOSED = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}
PJ_PER_AC, PJ_PER_MAC = 0.9, 4.6
ENERGY_SOURCE = ("Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014: 45 nm, 32-bit "
                 "float add 0.9 pJ, multiply 3.7 pJ")
ENERGY_NOTE = ("an estimate from operation counts (0.9 pJ per AC, 4.6 pJ per MAC), not a measurement: memory access "
               "and neuron updates are left out")


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
    ones = torch.ones_like(module.weight)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        reach = TRANSPOSED[module.weight.dim()](active, ones, None, module.stride, module.padding,
                                                module.output_padding, module.groups, module.dilation)
    else:
        reach = CONVOLUTIONS[module.weight.dim()](active, ones, None, module.stride, module.padding, module.dilation,
                                                  module.groups)
    return float(reach.sum())


def attention_operations(module: nn.Module, elements: float) -> tuple[float, float] | None:
    """(ACs, MACs) of an attention module's own arithmetic on an input of `elements` values, beside its conv and
    linear layers (see the module docstring); None for a kind not modelled here."""
    if isinstance(module, PFA):
        T, C, R = module.T, module.C, module.rank
        fusion_ac = elements if module.fusion == "add" else 0.0
        return 2 * elements + fusion_ac, T * C * R + C * R + elements * R + elements - fusion_ac
    if isinstance(module, TCJA):
        return elements, module.T * module.C + elements
    if isinstance(module, layer.TemporalWiseAttention):
        return 2 * elements, elements
    if isinstance(module, layer.MultiDimensionalAttention):
        axes = sum(part is not None for part in (module.ta, module.ca, module.sa))
        return 2 * elements * axes, elements * axes
    return None


def _add(rows: dict, name: str, row: dict, sums: tuple[str, ...]) -> None:
    """Aggregate the calls of one module into one row: `sums` add up, the rest keep the first call's value."""
    if name not in rows:
        rows[name] = {**row, "calls": 1}
        return
    kept = rows[name]
    kept["calls"] += 1
    for key in sums:
        kept[key] += row[key]


def energy(ac: float, mac: float) -> float:
    """Estimated picojoules of `ac` accumulates and `mac` multiply-accumulates (45 nm figures)."""
    return PJ_PER_AC * ac + PJ_PER_MAC * mac


@torch.no_grad()
def model_report(model: nn.Module, batch: torch.Tensor) -> dict:
    """Run `model` once on `batch` (eval mode) and collect parameters, spike rates, operations and the energy
    estimate; restores the mode. A module called several times is one row, its calls aggregated."""
    samples = batch.shape[0]
    spikes, synops, attention, hooks = {}, {}, {}, []

    def record_spikes(name):
        def hook(module, inputs, output):
            row = {"name": name, "type": type(module).__name__, "neurons": output[0, 0].numel(),
                   "spikes": float(output.float().sum()), "elements": output.numel()}
            _add(spikes, name, row, ("spikes", "elements"))

        return hook

    def record_synops(name, in_attention):
        def hook(module, inputs, output):
            x = inputs[0]
            row = {"name": name, "type": type(module).__name__, "attention": in_attention,
                   "binary_input": bool(((x == 0) | (x == 1)).all()), "nonzero": float((x != 0).sum()),
                   "elements": x.numel(), "sops_per_sample": fan_out_sum(module, x) / samples}
            _add(synops, name, row, ("nonzero", "elements", "sops_per_sample"))
            synops[name]["binary_input"] &= row["binary_input"]

        return hook

    def record_attention(name):
        def hook(module, inputs, output):
            counted = attention_operations(module, inputs[0].numel() / samples)
            ac, mac = counted or (0.0, 0.0)
            row = {"name": name, "type": type(module).__name__, "counted": counted is not None,
                   "ac_per_sample": ac, "mac_per_sample": mac}
            _add(attention, name, row, ("ac_per_sample", "mac_per_sample"))

        return hook

    attention_prefixes = tuple(name + "." for name, m in model.named_modules() if is_attention(m))
    for name, module in model.named_modules():
        if isinstance(module, base.MemoryModule):
            hooks.append(module.register_forward_hook(record_spikes(name)))
        elif isinstance(module, SYNAPTIC_TYPES):
            hooks.append(module.register_forward_hook(record_synops(name, name.startswith(attention_prefixes))))
        if is_attention(module):
            hooks.append(module.register_forward_hook(record_attention(name)))
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
    rates = [{"name": r["name"], "type": r["type"], "neurons": r["neurons"], "calls": r["calls"],
              "rate": r["spikes"] / r["elements"]} for r in spikes.values()]
    layers = [{"name": r["name"], "type": r["type"], "attention": r["attention"], "calls": r["calls"],
               "binary_input": r["binary_input"], "operation": "AC" if r["binary_input"] else "MAC",
               "input_nonzero": r["nonzero"] / r["elements"], "sops_per_sample": r["sops_per_sample"]}
              for r in synops.values()]
    parameters = parameter_rows(model)
    in_attention = sum(row["params"] for row in parameters if row["attention"])
    total = sum(p.numel() for p in model.parameters())

    def operations(rows: list[dict], own: list[dict]) -> dict:
        ac = sum(r["sops_per_sample"] for r in rows if r["binary_input"]) + sum(r["ac_per_sample"] for r in own)
        mac = sum(r["sops_per_sample"] for r in rows if not r["binary_input"]) + sum(r["mac_per_sample"] for r in own)
        return {"ac_per_sample": ac, "mac_per_sample": mac, "energy_pj_per_sample": energy(ac, mac)}

    backbone = operations([r for r in layers if not r["attention"]], [])
    attending = operations([r for r in layers if r["attention"]], list(attention.values()))
    everything = {k: backbone[k] + attending[k] for k in backbone}
    neuron_steps = sum(r["elements"] for r in spikes.values())
    return {
        "samples": samples,
        "parameters": {"total": total, "attention": in_attention, "backbone": total - in_attention,
                       "layers": parameters},
        "spike_rates": rates,
        "spike_rate_mean": sum(r["spikes"] for r in spikes.values()) / neuron_steps if neuron_steps else 0.0,
        "synops": layers,
        "attention_modules": list(attention.values()),
        "sops_per_sample": backbone["ac_per_sample"] + backbone["mac_per_sample"],
        "attention_ops_per_sample": attending["ac_per_sample"] + attending["mac_per_sample"],
        "operations": {"backbone": backbone, "attention": attending, "total": everything},
        "energy": {"estimate_pj_per_sample": everything["energy_pj_per_sample"], "pj_per_ac": PJ_PER_AC,
                   "pj_per_mac": PJ_PER_MAC, "source": ENERGY_SOURCE, "note": ENERGY_NOTE},
    }


def format_report(report: dict) -> str:
    """The report as plain-text tables."""
    params = report["parameters"]
    lines = [
        f"parameters: {params['total']:,} (attention {params['attention']:,}, backbone {params['backbone']:,})",
        f"{'layer':<32} {'type':<26} {'params':>12}",
    ]
    lines += [f"{row['name']:<32} {row['type']:<26} {row['params']:>12,}" for row in params["layers"]]
    lines += ["", f"{'neuron layer':<32} {'neurons':>10} {'calls':>6} {'spike rate':>11}"]
    lines += [f"{row['name']:<32} {row['neurons']:>10,} {row['calls']:>6} {row['rate']:>11.4f}"
              for row in report["spike_rates"]]
    lines.append(f"mean spike rate over all neurons and steps: {report['spike_rate_mean']:.4f}")
    lines += ["", f"{'synaptic layer':<32} {'input':<7} {'op':<4} {'calls':>6} {'nonzero':>8} {'SOPs/sample':>16}"]
    lines += [
        f"{row['name']:<32} {'spikes' if row['binary_input'] else 'real':<7} {row['operation']:<4} {row['calls']:>6} "
        f"{row['input_nonzero']:>8.4f} {row['sops_per_sample']:>16,.0f}"
        for row in report["synops"]
    ]
    if report["attention_modules"]:
        lines += ["", f"{'attention module (own arithmetic)':<40} {'AC/sample':>16} {'MAC/sample':>16}"]
        lines += [f"{row['name'] + ('' if row['counted'] else ' (not modelled)'):<40} {row['ac_per_sample']:>16,.0f} "
                  f"{row['mac_per_sample']:>16,.0f}" for row in report["attention_modules"]]
    ops = report["operations"]
    lines += [
        "",
        f"SOPs per sample: {report['sops_per_sample']:,.0f} in the backbone, "
        f"{report['attention_ops_per_sample']:,.0f} inside attention modules "
        f"(on {report['samples']} test samples)",
        f"{'per sample':<12} {'AC':>16} {'MAC':>16} {'energy (nJ)':>12}",
        *(f"{part:<12} {ops[part]['ac_per_sample']:>16,.0f} {ops[part]['mac_per_sample']:>16,.0f} "
          f"{ops[part]['energy_pj_per_sample'] / 1e3:>12,.2f}" for part in ("backbone", "attention", "total")),
        f"energy: {report['energy']['note']}; figures from {report['energy']['source']}",
    ]
    return "\n".join(lines)


def save_report(report: dict, path: str | Path) -> None:
    write_json(Path(path), report)
