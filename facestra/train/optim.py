"""The optimisation of a run (the paper's SGD, appendix D, or arcface_torch's recipes) as one object the
step loop drives.

The optimizer (SGD or AdamW, the head and the backbone in two parameter groups so that pretrained layers
can move slower), its schedule, gradient clipping and the fp16 loss scaler change together at every step
and are saved and restored together: keeping them in one place is what lets a resumed run take the step
the uninterrupted run would have taken (same learning rate, same momentum or Adam moments, same loss scale).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from facestra.train.config import TrainConfig
from facestra.train.partial_fc import AdamWSettings, ShardedClassifierHead
from facestra.train.schedules import lr_factor_function, paper_lr_factor

__all__ = ["AUTOCAST_DTYPES", "Optimisation", "paper_lr_factor"]

AUTOCAST_DTYPES: Mapping[str, torch.dtype] = MappingProxyType({"bf16": torch.bfloat16, "fp16": torch.float16})


def build_optimizer(head: list[nn.Parameter], backbone: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay added to the gradient) or AdamW (torch's betas, decoupled weight decay)
    over the backbone's parameters at ``lr × backbone_lr_factor`` and the head's at ``lr`` (the last group,
    empty when a sharded head steps itself). The backbone comes first, as in the single group of earlier
    runs, so that their optimizer state keeps its parameter numbers (:func:`split_single_group`)."""
    groups = [{"params": backbone, "lr": config.lr * config.backbone_lr_factor}, {"params": head, "lr": config.lr}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


class Optimisation:
    """The optimizer of :func:`build_optimizer`, the ``--schedule`` multiplier, clipping and the AMP scaler/autocast."""

    def __init__(self, backbone: nn.Module, head: nn.Module, config: TrainConfig, *, steps_per_epoch: int, device: torch.device) -> None:
        self.sharded_head = head if isinstance(head, ShardedClassifierHead) else None  # stepped with the head's rate, row by row
        self.momentum, self.weight_decay = config.momentum, config.weight_decay
        self.clip_grad_norm = config.clip_grad_norm
        self.backbone_parameters = list(backbone.parameters())
        self.optimizer = build_optimizer(list(head.parameters()), self.backbone_parameters, config)
        schedule = lr_factor_function(
            config.schedule, steps_per_epoch=steps_per_epoch, epochs=config.epochs, warmup_epochs=config.warmup_epochs,
            lr_steps=tuple(config.lr_steps), lr_factor=config.lr_factor,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16")
        self.autocast_dtype = AUTOCAST_DTYPES.get(config.amp)
        self.device_type = device.type

    @property
    def learning_rate(self) -> float:
        """The head's rate in the next :meth:`step` (the backbone's is ``backbone_lr_factor`` times it)."""
        return self.optimizer.param_groups[-1]["lr"]

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.sharded_head is not None:
            self.sharded_head.zero_grad()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision (a no-op with ``--amp none``)."""
        return torch.autocast(self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, *, freeze_backbone: bool = False) -> None:
        """Apply the accumulated gradients and move the schedule on by one optimizer step.

        ``freeze_backbone`` drops the backbone's gradients first: the optimizer then skips those parameters
        altogether (no weight decay, no momentum or moments), so they stay bit-identical. Clipping, as in
        arcface_torch's train_v2.py, bounds the backbone's gradient norm, after undoing the fp16 loss scale.
        """
        if freeze_backbone:
            for parameter in self.backbone_parameters:
                parameter.grad = None
        learning_rate, scale = self.learning_rate, self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for p in self.backbone_parameters if p.grad is not None], self.clip_grad_norm)
        if any(p.grad is not None for group in self.optimizer.param_groups for p in group["params"]):
            self.scaler.step(self.optimizer)  # (the scaler refuses an optimizer without gradients: a frozen
            self.scaler.update()              # backbone beside a sharded head, which checks its own)
        # the scaler lowers its scale exactly when it skipped the step for non-finite gradients
        skipped = self.scaler.is_enabled() and self.scaler.get_scale() < scale
        if self.sharded_head is not None and not skipped:
            group = self.optimizer.param_groups[-1]  # the shard steps with the backbone optimizer's constants (every group has the same)
            adamw = AdamWSettings(betas=tuple(group["betas"]), eps=group["eps"]) if "betas" in group else AdamWSettings()
            self.sharded_head.step(lr=learning_rate, momentum=self.momentum, weight_decay=self.weight_decay, grad_scale=scale, adamw=adamw)
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        optimizer, scheduler = state["optimizer"], state["scheduler"]
        if len(optimizer["param_groups"]) == 1:  # a run saved before the backbone had a group of its own
            optimizer, scheduler = split_single_group(optimizer, scheduler, len(self.backbone_parameters))
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(scheduler)
        self.scaler.load_state_dict(state["scaler"])


def split_single_group(optimizer: dict[str, Any], scheduler: dict[str, Any], backbone_count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The optimizer and LambdaLR states of a run whose network was one parameter group (backbone, then
    head), as the two groups of :func:`build_optimizer` with the same settings and rates."""
    (group,) = optimizer["param_groups"]
    backbone = {**group, "params": group["params"][:backbone_count]}
    head = {**group, "params": group["params"][backbone_count:]}
    scheduler = {**scheduler, **{key: list(scheduler[key]) * 2 for key in ("base_lrs", "_last_lr", "lr_lambdas") if key in scheduler}}
    return {**optimizer, "param_groups": [backbone, head]}, scheduler
