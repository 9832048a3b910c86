"""Learning-rate schedules as pure functions of the optimizer step: the multiplier of the base rate.

``step`` is the paper's (appendix D: × 0.1 at epochs 8 and 12, with an optional linear warm-up);
``poly`` is arcface_torch's PolynomialLRWarmup (lr_scheduler.py) in its closed form, power 2, per step;
``cosine`` decays along half a cosine after the same warm-up. All three are functions of the step alone,
so a resumed run recomputes the rate the uninterrupted run had, and tests can compare them with their
formulas at every step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

#: arcface_torch's power of the polynomial decay (train_v2.py: PolynomialLRWarmup(..., power=2)).
POLY_POWER = 2.0


def paper_lr_factor(step: int, *, steps_per_epoch: int, lr_steps: tuple[int, ...], lr_factor: float, warmup_epochs: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step``: × ``lr_factor`` at each step epoch,
    with an optional linear warm-up over the first ``warmup_epochs``."""
    factor = lr_factor ** sum(step >= milestone * steps_per_epoch for milestone in lr_steps)
    warmup_steps = warmup_epochs * steps_per_epoch
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def poly_lr_factor(step: int, *, total_steps: int, warmup_steps: int, power: float = POLY_POWER) -> float:
    """PolynomialLRWarmup's closed form at scheduler step ``step`` (optimizer steps taken so far):
    ``step / warmup`` up to the warm-up's end, then ``(1 - (min(step, total) - warmup) / (total - warmup))^power``.

    arcface_torch's recursive ``get_lr`` returns the optimizer's initial rate at step 0; the closed form
    gives 0 there when there is a warm-up (one step at rate 0), which is what facestra follows.
    """
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    return (1.0 - (min(step, total_steps) - warmup_steps) / max(total_steps - warmup_steps, 1)) ** power


def cosine_lr_factor(step: int, *, total_steps: int, warmup_steps: int) -> float:
    """The same warm-up, then ``(1 + cos(π · progress)) / 2`` down to 0 at ``total_steps``."""
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    progress = (min(step, total_steps) - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_factor_function(schedule: str, *, steps_per_epoch: int, epochs: int, warmup_epochs: float, lr_steps: tuple[int, ...],
                       lr_factor: float) -> Callable[[int], float]:
    """The multiplier of ``schedule`` as a function of the step. The decays end at ``epochs`` × steps per
    epoch (arcface_torch's ``total_step``), not at ``--max-steps``: a run cut short follows the schedule
    of the whole run. arcface_torch's warm-up is ``num_image // total_batch * warmup_epoch`` steps, the
    same count here."""
    warmup_steps = int(steps_per_epoch * warmup_epochs)
    if schedule == "poly":
        return functools.partial(poly_lr_factor, total_steps=steps_per_epoch * epochs, warmup_steps=warmup_steps)
    if schedule == "cosine":
        return functools.partial(cosine_lr_factor, total_steps=steps_per_epoch * epochs, warmup_steps=warmup_steps)
    return functools.partial(paper_lr_factor, steps_per_epoch=steps_per_epoch, lr_steps=tuple(lr_steps), lr_factor=lr_factor,
                             warmup_epochs=warmup_epochs)
