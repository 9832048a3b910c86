"""ResNet backbones for aligned faces, with StRA as the middle layer of the stage-4 blocks.

The layout follows ArcFace's ResNets for 112×112 crops: a 3×3 stride-1 stem with BN and PReLU, no max-pool,
four stages that each halve the resolution (112 → 56 → 28 → 14 → 7), and the BN–Dropout–FC–BN embedding
head (paper appendix B.2) in place of global average pooling, so that the embedding keeps where on the
face each feature was seen.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from facestra.models.stages import (
    CONV3X3, Block, FaceNetwork, MidLayer, conv1x1, conv3x3, halve_four_times, make_stages, round_channels, with_diversity,
)


class BasicBlock(nn.Module):
    """3×3 conv (strided), BN, ReLU, the middle layer (a 3×3 conv), BN, plus the shortcut, ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 mid_layer: MidLayer = CONV3X3) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.mid_name = mid_layer.name
        self.add_module(mid_layer.name, mid_layer.factory(planes, stride=1))
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out, diversity = with_diversity(getattr(self, self.mid_name), out)
        out = self.bn2(out)
        return self.relu(out + identity), diversity

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_diversity(x)[0]

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(nn.Module):
    """1×1 conv, BN, ReLU, the middle layer (a strided 3×3 conv, or StRA: paper §3.3), BN, ReLU, 1×1 conv
    expanding ×4, BN, plus the shortcut, ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 mid_layer: MidLayer = CONV3X3) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.mid_name = mid_layer.name
        self.add_module(mid_layer.name, mid_layer.factory(planes, stride=stride))
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out, diversity = with_diversity(getattr(self, self.mid_name), out)
        out = self.relu(self.bn2(out))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity), diversity

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_diversity(x)[0]

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class FaceResNet(FaceNetwork):
    """A ResNet for aligned faces producing an ``embedding_size`` vector.

    ``mid_layers`` fills the middle slot of each stage's blocks (a 3×3 convolution by default), so that StRA
    enters as the middle layer of stage 4 rather than as a block type of its own.
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
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.input_size = (int(input_size[0]), int(input_size[1]))
        stem_channels = round_channels(64 * width)
        self.stem = nn.Sequential(conv3x3(3, stem_channels), nn.BatchNorm2d(stem_channels), nn.PReLU(stem_channels))
        stages, channels = make_stages(block, layers, width=width, mid_layers=mid_layers)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        out_h, out_w = (halve_four_times(side) for side in self.input_size)
        self.head = EmbeddingHead(channels, (out_h, out_w), embedding_size, dropout)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_last:  # every residual branch starts at zero, so deep models train from scratch at lr 0.1
            self.zero_init_residuals()

    def run_stem(self, x: Tensor) -> Tensor:
        return self.stem(x)

    def run_head(self, features: Tensor) -> Tensor:
        return self.head(features)


class EmbeddingHead(nn.Module):
    """BN – Dropout – FC – BN on the flattened last feature map (ArcFace's output layer "E")."""

    def __init__(self, channels: int, spatial: tuple[int, int], embedding_size: int, dropout: float) -> None:
        super().__init__()
        self.bn_features = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * spatial[0] * spatial[1], embedding_size)
        self.bn_embedding = nn.BatchNorm1d(embedding_size)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(self.bn_features(x)).flatten(1)
        return self.bn_embedding(self.fc(x))
