"""The arithmetic of one optimizer step: the loss, its gradients, and the figures every process agrees on.

The loss is the paper's (classification + ``diversity_weight`` × diversity, each averaged over the readable
images of a micro-batch), and an unreadable image weighs nothing instead of stopping the run. Every figure
and every process's stop request travel in one all-reduce per step, read back once: each process then
logs the same global figures and stops at the same step, and no step waits on a device twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from facestra.train import distributed
from facestra.train.optim import Optimisation
from facestra.train.stopping import STOP_INTERRUPTED, STOP_TIME


@dataclass(frozen=True)
class Reduced:
    """One step's figures summed over all processes, and what this process saw alone."""

    figures: Tensor  # ce sum, diversity sum, correct, valid, unreadable, interrupt requests, time-budget stops
    unreadable_here: list[int]  # dataset indices of this process's unreadable images

    @property
    def unreadable(self) -> int:
        return int(self.figures[4])

    @property
    def stop(self) -> str | None:
        return STOP_INTERRUPTED if self.figures[5] > 0 else STOP_TIME if self.figures[6] > 0 else None

    def values(self, *, learning_rate: float, diversity_weight: float) -> dict[str, Any]:
        """The logged figures: means over the step's readable images."""
        images = float(self.figures[3]) or 1.0
        classification_loss = float(self.figures[0]) / images
        diversity_value = float(self.figures[1]) / images
        return {
            "loss": classification_loss + diversity_weight * diversity_value,
            "cls_loss": classification_loss,
            "diversity": diversity_value,
            "accuracy": float(self.figures[2]) / images,
            "lr": learning_rate,
            "unreadable": self.unreadable,
        }


def accumulate(
    module: nn.Module, optimisation: Optimisation, micro_batches: list, *, process: distributed.Process,
    channels_last: bool, diversity_weight: float, pending_stop: Callable[[], str | None], frozen_backbone: nn.Module | None = None,
) -> Reduced:
    """Zero the gradients, forward and backward every micro-batch (gradients synchronised on the last one),
    and all-reduce the figures with this process's stop request, asked of ``pending_stop`` once the gradients
    are in; the optimizer step is left to the caller. The BatchNorm layers of ``frozen_backbone`` normalise
    with their running statistics and leave them as they are (a backbone frozen while its head trains)."""
    device = process.device
    module.train()
    if frozen_backbone is not None:
        for layer in frozen_backbone.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()
    optimisation.zero_grad()
    # ce sum, diversity sum, correct, valid, unreadable: kept on the device, read once per step
    totals = torch.zeros(5, dtype=torch.float64, device=device)
    bad_here: list[int] = []
    for number, (images, labels, indices, ok) in enumerate(micro_batches):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        valid = ok.to(device, non_blocking=True)
        last = number == len(micro_batches) - 1
        no_sync = module.no_sync() if (process.distributed and not last) else contextlib.nullcontext()
        with no_sync:
            with optimisation.autocast():
                cross_entropy, correct, diversity = module(images, labels)
            cross_entropy = cross_entropy.float()
            weights = valid.float()
            classification = (cross_entropy * weights).sum() / weights.sum().clamp_min(1.0)
            diversity = (diversity.float() * weights).sum() / weights.sum().clamp_min(1.0)
            loss = (classification + diversity_weight * diversity) / len(micro_batches)
            optimisation.backward(loss)
        with torch.no_grad():
            correct = (correct & valid).sum()
            totals += torch.stack([
                (cross_entropy.detach() * weights).sum().double(),
                diversity.detach().double() * weights.sum().double(),
                correct.double(),
                weights.sum().double(),
                (~valid).sum().double(),
            ])
        bad_here += [int(i) for i in indices[~ok]]
    stop_here = pending_stop()
    flags = torch.tensor([float(stop_here == STOP_INTERRUPTED), float(stop_here == STOP_TIME)], dtype=torch.float64, device=device)
    return Reduced(distributed.all_reduce_sum(torch.cat([totals, flags]), process).cpu(), bad_here)
