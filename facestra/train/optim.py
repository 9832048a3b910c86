"""The paper's optimisation (appendix D), with mixed precision, as one object the step loop drives.

SGD, its step schedule and the fp16 loss scaler change together at every step and are saved and restored
together: keeping them in one place is what lets a resumed run take the step the uninterrupted run would
have taken (same learning rate, same momentum buffers, same loss scale).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from facestra.train.config import TrainConfig
from facestra.train.partial_fc import ShardedClassifierHead

AUTOCAST_DTYPES: Mapping[str, torch.dtype] = MappingProxyType({"bf16": torch.bfloat16, "fp16": torch.float16})


def paper_lr_factor(step: int, *, steps_per_epoch: int, lr_steps: tuple[int, ...], lr_factor: float, warmup_epochs: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step``: × ``lr_factor`` at each step epoch,
    with an optional linear warm-up over the first ``warmup_epochs``."""
    factor = lr_factor ** sum(step >= milestone * steps_per_epoch for milestone in lr_steps)
    warmup_steps = warmup_epochs * steps_per_epoch
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


class Optimisation:
    """SGD with momentum and weight decay, the :func:`paper_lr_factor` schedule and the AMP scaler/autocast."""

    def __init__(self, parameters: Iterable[nn.Parameter], config: TrainConfig, *, steps_per_epoch: int, device: torch.device,
                 sharded_head: ShardedClassifierHead | None = None) -> None:
        self.sharded_head = sharded_head  # stepped with the same rate, momentum and weight decay, row by row
        self.momentum, self.weight_decay = config.momentum, config.weight_decay
        self.optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        schedule = functools.partial(
            paper_lr_factor, steps_per_epoch=steps_per_epoch, lr_steps=tuple(config.lr_steps),
            lr_factor=config.lr_factor, warmup_epochs=config.warmup_epochs,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16")
        self.autocast_dtype = AUTOCAST_DTYPES.get(config.amp)
        self.device_type = device.type

    @property
    def learning_rate(self) -> float:
        """The rate the next :meth:`step` uses."""
        return self.optimizer.param_groups[0]["lr"]

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.sharded_head is not None:
            self.sharded_head.zero_grad()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision (a no-op with ``--amp none``)."""
        return torch.autocast(self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> None:
        """Apply the accumulated gradients and move the schedule on by one optimizer step."""
        learning_rate, scale = self.learning_rate, self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # the scaler lowers its scale exactly when it skipped the step for non-finite gradients
        skipped = self.scaler.is_enabled() and self.scaler.get_scale() < scale
        if self.sharded_head is not None and not skipped:
            self.sharded_head.step(lr=learning_rate, momentum=self.momentum, weight_decay=self.weight_decay, grad_scale=scale)
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
