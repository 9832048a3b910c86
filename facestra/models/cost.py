"""Parameters and multiply-accumulates (MACs) of a network, per stage, counted by the project.

MACs are counted for one image by hooks on the layers that do them: convolutions (``out × in/groups × k²``),
linear layers (``out × in``) and the StRA operations that are not layers (their ``extra_macs``: the weighted
K×K aggregation of local attention, the modal vectors, coefficients and context of mode attention).
Normalisations, activations and additions are not counted, as in the usual FLOPs tables (paper Table 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from facestra.models.stra import StRA


@dataclass
class Complexity:
    """Totals and a per-stage breakdown (stem, layer1..4, head)."""

    params: int
    macs: int
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    stra_block_params: list[int] = field(default_factory=list)  # one entry per StRA unit, in order

    def as_dict(self) -> dict:
        figures = {"params": self.params, "macs": self.macs, "stages": self.stages}
        if self.stra_block_params:
            figures["stra_block_params"] = self.stra_block_params
        return figures


def _layer_macs(module: nn.Module, inputs: tuple, output) -> int:
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return output[0].numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    extra = getattr(module, "extra_macs", None)
    return int(extra(output)) if extra is not None else 0


def _stages(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Stage name -> its modules: the model's own grouping (``stage_modules``, so that an IResNet, whose
    stem and head are loose layers as in arcface_torch, reports the same stages), else its children."""
    grouping = getattr(model, "stage_modules", None)
    if grouping is not None:
        return grouping()
    return {name: [child] for name, child in model.named_children()}


def complexity(model: nn.Module, input_size: tuple[int, int] | None = None) -> Complexity:
    """Count parameters and per-image MACs of ``model`` on a 3×H×W input (default: ``model.input_size``)."""
    height, width = input_size or model.input_size
    stage_parts = _stages(model)
    stage_macs: dict[str, int] = {}
    handles = []
    for stage_name, parts in stage_parts.items():
        stage_macs[stage_name] = 0
        for module in (m for part in parts for m in part.modules()):

            def hook(module, inputs, output, stage_name=stage_name):
                stage_macs[stage_name] += _layer_macs(module, inputs, output)

            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    stages = {
        name: {"params": sum(p.numel() for part in parts for p in part.parameters()), "macs": stage_macs[name]}
        for name, parts in stage_parts.items()
    }
    return Complexity(
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(stage_macs.values()),
        stages=stages,
        stra_block_params=[sum(p.numel() for p in m.parameters()) for m in model.modules() if isinstance(m, StRA)],
    )
