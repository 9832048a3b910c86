"""Reading out the spatial masks of the StRA modes (paper Fig. 4): which part of the face each mode watches."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facestra.models.stra import ModeMasks


def mode_masks(model: nn.Module, images: Tensor) -> list[Tensor]:
    """Run ``model`` on ``images`` in eval mode and return each StRA block's masks, (B, G, h, w) each."""
    captured: list[Tensor] = []
    handles = [
        module.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
        for module in model.modules()
        if isinstance(module, ModeMasks)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return captured
