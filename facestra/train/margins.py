"""The margin specification of the classifier heads, in a module without torch: the losses and their
defaults are part of the training configuration, which the command line reads to build ``--help``."""

from __future__ import annotations

import math
from dataclasses import dataclass

LOSSES = ("softmax", "cosface", "arcface", "combined")
# (scale, margin) when not given: the paper's (appendix D); softmax has neither; combined has arcface_torch's
# scale (train_v2.py builds CombinedMarginLoss(64, *margin_list)) and its margins in ``combined``.
_DEFAULTS = {"softmax": (1.0, 0.0), "cosface": (20.0, 0.2), "arcface": (20.0, 0.15), "combined": (64.0, 0.0)}
NO_MARGINS = (1.0, 0.0, 0.0)


@dataclass(frozen=True)
class MarginSpec:
    """How a classifier turns embeddings into logits, shared by the replicated and the sharded head.

    Softmax is a linear layer with a bias. CosFace and ArcFace score the cosines between L2-normalised
    embeddings and class weights, scaled by ``scale``, with a margin on the true class; both are cases of
    arcface_torch's combined margin ``s · (cos(m1·θ_y + m2) − m3)`` (:attr:`margins`): ArcFace is
    ``(1, m, 0)``, CosFace ``(1, 0, m)``; loss ``combined`` takes any ``combined`` triple (m1 > 1: a
    SphereFace-style multiplicative margin). :meth:`of` fills the defaults; the constructor checks.
    """

    loss: str
    scale: float
    margin: float
    combined: tuple[float, float, float] = NO_MARGINS  # (m1, m2, m3) of loss "combined"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be positive, got {self.scale}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"margin must not be negative, got {self.margin}")
        if not self.normalised and (self.scale, self.margin) != _DEFAULTS[self.loss]:
            raise ValueError("scale and margin apply to cosface and arcface; plain softmax has neither")
        if self.loss != "combined" and self.combined != NO_MARGINS:
            raise ValueError("margins (m1, m2, m3) apply to the combined loss only")
        if self.loss == "combined":
            m1, m2, m3 = self.combined
            if self.margin != 0.0:
                raise ValueError("the combined loss takes its margins as (m1, m2, m3), not one margin")
            if not all(math.isfinite(m) for m in self.combined) or m1 < 1.0 or m2 < 0.0 or m3 < 0.0:
                raise ValueError(f"combined margins need m1 >= 1, m2 >= 0 and m3 >= 0, got {self.combined}")

    @classmethod
    def of(cls, loss: str, *, scale: float | None = None, margin: float | None = None,
           margins: tuple[float, float, float] | None = None) -> MarginSpec:
        """The specification of ``loss`` with the paper's scale and margin (arcface_torch's scale 64 for
        ``combined``) where they are not given; ``margins`` is the combined loss's (m1, m2, m3)."""
        default_scale, default_margin = _DEFAULTS.get(loss, (1.0, 0.0))
        combined = NO_MARGINS if margins is None else tuple(float(m) for m in margins)
        if loss == "combined" and (margins is None or len(combined) != 3):
            raise ValueError("the combined loss needs its margins m1, m2, m3")
        return cls(loss, float(default_scale if scale is None else scale), float(default_margin if margin is None else margin),
                   combined)  # type: ignore[arg-type]

    @property
    def normalised(self) -> bool:
        """Whether the logits are scaled cosines (CosFace, ArcFace) rather than a linear layer's (softmax)."""
        return self.loss != "softmax"

    @property
    def angular(self) -> bool:
        """Whether the margin acts on the angle θ, which needs cosines clamped to [-1, 1] (ArcFace, and a
        combined margin with m1 or m2)."""
        m1, m2, _ = self.margins
        return self.loss == "arcface" or (self.loss == "combined" and (m1 != 1.0 or m2 != 0.0))

    @property
    def margins(self) -> tuple[float, float, float]:
        """``(m1, m2, m3)`` of the combined margin ``cos(m1·θ_y + m2) − m3``."""
        if self.loss == "arcface":
            return 1.0, self.margin, 0.0
        if self.loss == "cosface":
            return 1.0, 0.0, self.margin
        return self.combined
