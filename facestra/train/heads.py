"""Classification heads that turn embeddings into identity logits: softmax, CosFace, ArcFace and the combined margin.

The margin heads work on cosines between L2-normalised embeddings and L2-normalised class weights, so the
network is rewarded for angular separation, which is exactly what verification measures. The margin is
applied to the true class only, during training; :meth:`ClassifierHead.forward` also returns the logits
without margin, which are what "training accuracy" means.

:class:`MarginSpec` and :func:`margin_logits` are the one definition of the losses, which the sharded head
(:mod:`facestra.train.partial_fc`) applies to its own shard's columns. Defaults follow the paper (appendix D):
CosFace s=20, m=0.2; ArcFace s=20, m=0.15. ``combined`` is arcface_torch's CombinedMarginLoss with its
``margin_list`` (m1, m2, m3) given and its scale 64 by default.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facestra.train.margins import MarginSpec


def margin_logits(cosine: Tensor, labels: Tensor, spec: MarginSpec) -> Tensor:
    """``s · (cos(m1·θ_y + m2) − m3)`` in each row's true-class column ``y = labels[row]``, ``s · cos θ_j``
    elsewhere (for ``spec.margins``).

    As in arcface_torch, a label of -1 says that the row's class is none of these columns (another shard of
    a sharded classifier holds it): that row gets no margin here. ArcFace's ``cos(θ + m)`` stops decreasing
    once θ + m passes π, which would reward pushing a sample *away* from its class; there the usual
    fallback ``cos θ − m·sin m`` keeps the target logit monotonic in θ (arcface_torch's, for m1 = 1). With
    m1 > 1 the angle is read with arccos and past ``m1·θ + m2 = π`` the target continues as
    ``cos θ − cos θ* − 1`` (θ* where it reached π), which is continuous and keeps decreasing.
    """
    m1, m2, m3 = spec.margins
    owned = labels >= 0
    column = labels.clamp_min(0).unsqueeze(1)
    plain = cosine.gather(1, column)
    if spec.angular:  # the whole row is clamped below, as arcface_torch clamps its logits
        plain = plain.clamp(-1.0, 1.0)
    target = plain
    if spec.angular and m1 == 1.0:
        sine = torch.sqrt((1.0 - target * target).clamp_min(0.0))
        threshold = math.cos(math.pi - m2)  # cos θ > threshold  <=>  θ + m2 < π
        target = torch.where(target > threshold, target * math.cos(m2) - sine * math.sin(m2), target - m2 * math.sin(m2))
    elif spec.angular:
        turn = math.cos((math.pi - m2) / m1)  # cos θ* where m1·θ* + m2 = π
        theta = torch.acos(target.clamp(-1.0 + 1e-7, 1.0 - 1e-7))  # acos' gradient is infinite at ±1
        target = torch.where(target > turn, torch.cos(m1 * theta + m2), target - turn - 1.0)
    target = torch.where(owned.unsqueeze(1), target - m3, plain)
    dtype = torch.promote_types(cosine.dtype, target.dtype)  # float32 where autocast ran acos in it
    if spec.angular:  # hardtanh is clamp(-1, 1) with a one-pass backward (0 at exactly ±1 in every torch version)
        logits = F.hardtanh(cosine).to(dtype).mul_(spec.scale)
    else:
        logits = spec.scale * cosine.to(dtype)
    # the margin written into each row's one column: a select over the whole (rows × classes) matrix took 2.3-2.8
    # times as long forward and backward on CPU, 1.4-1.6 times with the cross-entropy (bench/margin_head.py)
    return logits.scatter_(1, column, spec.scale * target.to(dtype))


def classifier_logits(embeddings: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor,
                      spec: MarginSpec) -> tuple[Tensor, Tensor]:
    """(training logits, with the margin on each row's true class, and plain logits for predictions) of
    ``embeddings`` against the class rows ``weight`` (and ``bias``, softmax only); ``labels`` as in
    :func:`margin_logits`. The inputs are cast to float32, but under an enclosing autocast the products run
    at its precision: the replicated head is called under ``--amp``, the sharded head turns autocast off."""
    if not spec.normalised:
        logits = F.linear(embeddings.float(), weight.float(), None if bias is None else bias.float())
        return logits, logits
    cosine = F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(weight.float(), dim=1))
    return margin_logits(cosine, labels, spec), spec.scale * cosine


class ClassifierHead(nn.Module):
    """One weight vector per identity; ``loss`` picks softmax (linear + bias), CosFace, ArcFace or the
    combined margin ``margins``."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        loss: str = "arcface",
        scale: float | None = None,
        margin: float | None = None,
        margins: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        self.spec = MarginSpec.of(loss, scale=scale, margin=margin, margins=margins)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.bias = None if self.spec.normalised else nn.Parameter(torch.zeros(num_classes))

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(training logits with the margin on the true class, plain logits for predictions)."""
        return classifier_logits(embeddings, self.weight, self.bias, labels, self.spec)

    def loss_and_correct(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Each sample's cross-entropy (with the margin) and whether its plain logits pick its class: what a
        training step needs, in the form the sharded head (:mod:`facestra.train.partial_fc`) also gives."""
        logits, plain = self(embeddings, labels)
        with torch.autocast(embeddings.device.type, enabled=False):  # the loss in float32 under any --amp
            return F.cross_entropy(logits.float(), labels, reduction="none"), plain.argmax(dim=1) == labels

    def extra_repr(self) -> str:
        classes, size = self.weight.shape
        spec = self.spec
        return f"loss={spec.loss}, embedding_size={size}, num_classes={classes}, scale={spec.scale}, margins={spec.margins}"
