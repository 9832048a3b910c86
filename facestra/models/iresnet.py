"""IResNet, the backbone of insightface's arcface_torch, with the same parameter names.

The layout is arcface_torch's ``backbones/iresnet.py``, so that the ``backbone.pth`` its ``train_v2.py``
saves (``torch.save(backbone.module.state_dict())``) loads strictly: a stem ``conv1``/``bn1``/``prelu``; four
stages of pre-activation basic blocks (``bn1`` conv ``bn2`` PReLU conv ``bn3``, the second convolution
strided) whose first block halves the resolution; and the output layer ``bn2`` → dropout → ``fc`` →
``features`` (a BatchNorm1d whose scale is fixed at one, as arcface_torch freezes it). Every BatchNorm keeps
PyTorch's eps of 1e-5, as there.

Two things are facestra's own and change nothing at width 1 and 112×112: a width multiplier (for small
test networks) and inputs other than 112×112 (the ``fc`` takes the last map at input/16). StRA enters as the
block type of stage 4 (:class:`IStRABlock`, in place of the second 3×3 convolution), as in
:mod:`facestra.models.resnet`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from facestra.models.resnet import halve_four_times, round_channels, run_blocks
from facestra.models.stra import StRA, diversity_loss


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """arcface_torch's block: BN, 3×3 conv, BN, PReLU, 3×3 conv (strided), BN, plus the shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.prelu(self.bn2(self.conv1(self.bn1(x))))
        return self.bn3(self.conv2(out)) + identity


class IStRABlock(nn.Module):
    """An :class:`IBasicBlock` whose second (strided) 3×3 convolution is an :class:`StRA` unit.

    ``forward`` returns the features only; :meth:`forward_with_diversity` also returns the per-sample
    diversity loss of its mode masks (zeros when mode attention is switched off).
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 8,
        kernel_size: int = 3,
        mode_attention: bool = True,
        mode_interaction: bool = True,
        gate: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        self.stra = StRA(
            planes, stride=stride, groups=groups, kernel_size=kernel_size,
            mode_attention=mode_attention, mode_interaction=mode_interaction, gate=gate,
        )
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.prelu(self.bn2(self.conv1(self.bn1(x))))
        out, masks = self.stra(out)
        diversity = x.new_zeros(x.shape[0]) if masks is None else diversity_loss(masks)
        return self.bn3(out) + identity, diversity

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_diversity(x)[0]


class IResNet(nn.Module):
    """arcface_torch's IResNet producing an ``embedding_size`` vector (its ``num_features``).

    ``stage_blocks`` gives the block type of each of the four stages, so that StRA enters as the block
    type of stage 4.
    """

    def __init__(
        self,
        stage_blocks: Sequence[type[nn.Module]],
        layers: Sequence[int],
        *,
        width: float = 1.0,
        embedding_size: int = 512,
        input_size: tuple[int, int] = (112, 112),
        dropout: float = 0.0,
        block_kwargs: Sequence[dict] | None = None,
    ) -> None:
        super().__init__()
        if len(stage_blocks) != 4 or len(layers) != 4:
            raise ValueError("an IResNet has four stages")
        block_kwargs = block_kwargs or [{}] * 4
        self.embedding_size = embedding_size
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.inplanes = round_channels(64 * width)
        self.conv1 = _conv3x3(3, self.inplanes)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(stage_blocks[0], round_channels(64 * width), layers[0], block_kwargs[0])
        self.layer2 = self._make_layer(stage_blocks[1], round_channels(128 * width), layers[1], block_kwargs[1])
        self.layer3 = self._make_layer(stage_blocks[2], round_channels(256 * width), layers[2], block_kwargs[2])
        self.layer4 = self._make_layer(stage_blocks[3], round_channels(512 * width), layers[3], block_kwargs[3])
        out_h, out_w = (halve_four_times(side) for side in self.input_size)
        self.bn2 = nn.BatchNorm2d(self.inplanes)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.inplanes * out_h * out_w, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)
        self._init_weights()

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, kwargs: dict) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, 1, stride=2, bias=False), nn.BatchNorm2d(planes)
        )
        modules = [block(self.inplanes, planes, stride=2, downsample=downsample, **kwargs)]
        self.inplanes = planes
        modules += [block(self.inplanes, planes, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
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

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings (B, embedding_size)."""
        return self._head(self._trunk(x)[0])

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings and each sample's diversity loss L_d summed over the StRA blocks, shape (B,)."""
        features, diversity = self._trunk(x)
        return self._head(features), diversity

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        blocks = [block for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for block in stage]
        return run_blocks(blocks, self.prelu(self.bn1(self.conv1(x))))

    def _head(self, x: Tensor) -> Tensor:
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))


# Blocks per stage of arcface_torch's iresnet18 ... iresnet200, by name.
IRESNET_LAYERS: dict[str, list[int]] = {
    "iresnet18": [2, 2, 2, 2],
    "iresnet34": [3, 4, 6, 3],
    "iresnet50": [3, 4, 14, 3],
    "iresnet100": [3, 13, 30, 3],
    "iresnet200": [6, 26, 60, 6],
}
