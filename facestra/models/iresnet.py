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
from typing import Sequence

import torch
from torch import Tensor, nn

from facestra.models.stages import (
    CONV3X3, Block, FaceNetwork, MidLayer, conv3x3, halve_four_times, make_stages, round_channels, with_diversity,
)


class IBasicBlock(nn.Module):
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
        self.mid_name = mid_layer.name
        self.add_module(mid_layer.name, mid_layer.factory(planes, stride=stride))
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.prelu(self.bn2(self.conv1(self.bn1(x))))
        out, diversity = with_diversity(getattr(self, self.mid_name), out)
        return self.bn3(out) + identity, diversity

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_diversity(x)[0]

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class IResNet(FaceNetwork):
    """arcface_torch's IResNet producing an ``embedding_size`` vector (its ``num_features``).

    ``mid_layers`` fills the middle slot of each stage's blocks (the strided 3×3 convolution by default), so
    that StRA enters as the middle layer of stage 4. arcface_torch starts its residual branches at their
    initial values (``zero_init_residual=False``), and so does ``zero_init_last`` by default.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        mid_layers: Sequence[MidLayer] = (CONV3X3,) * 4,
        width: float = 1.0,
        embedding_size: int = 512,
        input_size: tuple[int, int] = (112, 112),
        dropout: float = 0.0,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.input_size = (int(input_size[0]), int(input_size[1]))
        stem_channels = round_channels(64 * width)
        self.conv1 = conv3x3(3, stem_channels)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.prelu = nn.PReLU(stem_channels)
        stages, channels = make_stages(block, layers, width=width, mid_layers=mid_layers)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        out_h, out_w = (halve_four_times(side) for side in self.input_size)
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * out_h * out_w, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
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
        if zero_init_last:
            self.zero_init_residuals()

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
