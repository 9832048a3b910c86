"""ResNet backbones for aligned faces, with StRA as the middle layer of the stage-4 blocks.

The layout follows ArcFace's ResNets for 112×112 crops: a 3×3 stride-1 stem with BN and PReLU, no max-pool,
four stages that each halve the resolution (112 → 56 → 28 → 14 → 7), and the BN–Dropout–FC–BN embedding
head (paper appendix B.2) in place of global average pooling, so that the embedding keeps where on the
face each feature was seen.
"""

from __future__ import annotations

from torch import Tensor, nn

from facestra.models.stages import CONV3X3, FaceNetwork, MidLayer, ResidualBlock, conv1x1, conv3x3, with_diversity


class BasicBlock(ResidualBlock):
    """3×3 conv (strided), BN, ReLU, the middle layer (a 3×3 conv), BN, plus the shortcut, ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 mid_layer: MidLayer = CONV3X3) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.add_mid_layer(mid_layer, planes, stride=1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out, diversity = with_diversity(self.mid, self.relu(self.bn1(self.conv1(x))))
        return self.relu(self.bn2(out) + identity), diversity

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(ResidualBlock):
    """1×1 conv, BN, ReLU, the middle layer (a strided 3×3 conv, or StRA: paper §3.3), BN, ReLU, 1×1 conv
    expanding ×4, BN, plus the shortcut, ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 mid_layer: MidLayer = CONV3X3) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.add_mid_layer(mid_layer, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out, diversity = with_diversity(self.mid, self.relu(self.bn1(self.conv1(x))))
        out = self.bn3(self.conv3(self.relu(self.bn2(out))))
        return self.relu(out + identity), diversity

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class FaceResNet(FaceNetwork):
    """A ResNet for aligned faces producing an ``embedding_size`` vector (see :class:`FaceNetwork` for the
    arguments); every residual branch starts at zero, so deep models train from scratch at lr 0.1."""

    zero_init_residuals = True

    def make_stem(self, channels: int) -> None:
        self.stem = nn.Sequential(conv3x3(3, channels), nn.BatchNorm2d(channels), nn.PReLU(channels))

    def make_head(self, channels: int, spatial: tuple[int, int], dropout: float) -> None:
        self.head = EmbeddingHead(channels, spatial, self.embedding_size, dropout)

    def init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

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
