"""IResNet, the backbone of insightface's arcface_torch, with the same parameter names.

The layout is arcface_torch's ``backbones/iresnet.py``, so that the ``backbone.pth`` its ``train_v2.py``
saves (``torch.save(backbone.module.state_dict())``) loads strictly: a stem ``conv1``/``bn1``/``prelu``; four
stages of pre-activation basic blocks (``bn1`` conv ``bn2`` PReLU conv ``bn3``, the second convolution
strided) whose first block halves the resolution; and the output layer ``bn2`` → dropout → ``fc`` →
``features`` (a BatchNorm1d whose scale is fixed at one, as arcface_torch freezes it). Every BatchNorm keeps
PyTorch's eps of 1e-5, as there.

Two things are facestra's own and change nothing at width 1 and 112×112: a width multiplier (for small
test networks) and inputs other than 112×112 (the ``fc`` takes the last map at input/16). StRA enters as the
middle layer of the stage-4 blocks, in place of their second (strided) 3×3 convolution, as in
:mod:`facestra.models.resnet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import Tensor, nn

from facestra.models.stages import CONV3X3, FaceNetwork, MidLayer, ResidualBlock, conv3x3, with_diversity


class IBasicBlock(ResidualBlock):
    """arcface_torch's block: BN, 3×3 conv, BN, PReLU, the middle layer (a strided 3×3 conv, or StRA), BN,
    plus the shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 mid_layer: MidLayer = CONV3X3) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        self.add_mid_layer(mid_layer, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out, diversity = with_diversity(self.mid, self.prelu(self.bn2(self.conv1(self.bn1(x)))))
        return self.bn3(out) + identity, diversity

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class IResNet(FaceNetwork):
    """arcface_torch's IResNet producing an ``embedding_size`` vector (its ``num_features``; see
    :class:`FaceNetwork` for the arguments). Its residual branches start from their initial weights, as
    arcface_torch's (``zero_init_residual=False``)."""

    def make_stem(self, channels: int) -> None:
        self.conv1 = conv3x3(3, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels)

    def make_head(self, channels: int, spatial: tuple[int, int], dropout: float) -> None:
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * spatial[0] * spatial[1], self.embedding_size)
        self.features = nn.BatchNorm1d(self.embedding_size)

    def init_weights(self) -> None:
        # arcface_torch's initialisation: N(0, 0.1) convolutions, unit BatchNorms, and the embedding BN's
        # scale fixed at one (it is a buffer-like parameter there too, so the state dict keeps its name).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad = False

    def stage_modules(self) -> dict[str, list[nn.Module]]:
        """The stages :func:`facestra.models.complexity` reports, named as for the face ResNets."""
        return {
            "stem": [self.conv1, self.bn1, self.prelu],
            "layer1": [self.layer1], "layer2": [self.layer2], "layer3": [self.layer3], "layer4": [self.layer4],
            "head": [self.bn2, self.dropout, self.fc, self.features],
        }

    def run_stem(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn1(self.conv1(x)))

    def run_head(self, features: Tensor) -> Tensor:
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(features), 1))))


# Blocks per stage of arcface_torch's iresnet18 ... iresnet200, by name.
IRESNET_LAYERS: Mapping[str, tuple[int, int, int, int]] = MappingProxyType({
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
})
