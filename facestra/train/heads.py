"""Classification heads that turn embeddings into identity logits: softmax, CosFace and ArcFace.

The margin heads work on cosines between L2-normalised embeddings and L2-normalised class weights, so the
network is rewarded for angular separation, which is exactly what verification measures. The margin is
applied to the true class only, during training; :meth:`ClassifierHead.forward` also returns the logits
without margin, which are what "training accuracy" means.

Defaults follow the paper (appendix D): CosFace s=20, m=0.2; ArcFace s=20, m=0.15.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSSES = ("softmax", "cosface", "arcface")
DEFAULT_SCALE = {"softmax": 1.0, "cosface": 20.0, "arcface": 20.0}
DEFAULT_MARGIN = {"softmax": 0.0, "cosface": 0.2, "arcface": 0.15}


def cosface_logits(cosine: Tensor, labels: Tensor, *, scale: float, margin: float) -> Tensor:
    """``s · (cos θ_j − m·[j = y])``: CosFace's large-margin cosine logits."""
    one_hot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
    return scale * (cosine - margin * one_hot)


def arcface_logits(cosine: Tensor, labels: Tensor, *, scale: float, margin: float) -> Tensor:
    """``s · cos(θ_y + m)`` for the true class, ``s · cos θ_j`` elsewhere (ArcFace).

    ``cos(θ + m)`` stops decreasing once θ + m passes π, which would reward pushing a sample *away* from its
    class; there the usual fallback ``cos θ − m·sin m`` keeps the target logit monotonic in θ.
    """
    cosine = cosine.clamp(-1.0, 1.0)
    one_hot = F.one_hot(labels, cosine.shape[1]).bool()
    return scale * torch.where(one_hot, arcface_target(cosine, margin), cosine)


def arcface_target(cosine: Tensor, margin: float) -> Tensor:
    """ArcFace's true-class cosine ``cos(θ + m)``, with its monotonic fallback past θ + m = π (see
    :func:`arcface_logits`); shared with the sharded head, which applies it to its own shard's columns."""
    cosine = cosine.clamp(-1.0, 1.0)
    sine = torch.sqrt((1.0 - cosine * cosine).clamp_min(0.0))
    with_margin = cosine * math.cos(margin) - sine * math.sin(margin)
    threshold = math.cos(math.pi - margin)  # cos θ > threshold  <=>  θ + m < π
    return torch.where(cosine > threshold, with_margin, cosine - margin * math.sin(margin))


class ClassifierHead(nn.Module):
    """One weight vector per identity; ``loss`` picks softmax (linear + bias), CosFace or ArcFace."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        loss: str = "arcface",
        scale: float | None = None,
        margin: float | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        self.loss = loss
        self.scale = float(DEFAULT_SCALE[loss] if scale is None else scale)
        self.margin = float(DEFAULT_MARGIN[loss] if margin is None else margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if loss == "softmax" else None

    def cosine(self, embeddings: Tensor) -> Tensor:
        """Cosine between each embedding and each class weight (float32 even under autocast)."""
        return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(training logits with the margin on the true class, plain logits for predictions)."""
        if self.loss == "softmax":
            logits = F.linear(embeddings.float(), self.weight.float(), self.bias.float())
            return logits, logits
        cosine = self.cosine(embeddings)
        plain = self.scale * cosine
        if self.loss == "cosface":
            return cosface_logits(cosine, labels, scale=self.scale, margin=self.margin), plain
        return arcface_logits(cosine, labels, scale=self.scale, margin=self.margin), plain

    def loss_and_correct(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Each sample's cross-entropy (with the margin) and whether its plain logits pick its class: what a
        training step needs, in the form the sharded head (:mod:`facestra.train.partial_fc`) also gives."""
        logits, plain = self(embeddings, labels)
        with torch.autocast(embeddings.device.type, enabled=False):  # the loss in float32 under any --amp
            return F.cross_entropy(logits.float(), labels, reduction="none"), plain.argmax(dim=1) == labels

    def extra_repr(self) -> str:
        classes, size = self.weight.shape
        return f"loss={self.loss}, embedding_size={size}, num_classes={classes}, scale={self.scale}, margin={self.margin}"
