"""ResNet backbones for aligned faces, with StRA blocks as the block type of a stage.

The layout follows ArcFace's ResNets for 112×112 crops: a 3×3 stride-1 stem with BN and PReLU, no max-pool,
four stages that each halve the resolution (112 → 56 → 28 → 14 → 7), and the BN–Dropout–FC–BN embedding
head (paper appendix B.2) in place of global average pooling, so that the embedding keeps where on the
face each feature was seen.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from facestra.models.stra import StRA, diversity_loss


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class StRABottleneck(nn.Module):
    """A bottleneck whose 3×3 convolution is an :class:`StRA` unit (paper §3.3).

    ``forward`` returns the features only; :meth:`forward_with_diversity` also returns the per-sample
    diversity loss of its mode masks (zeros when mode attention is switched off).
    """

    expansion = 4

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
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.stra = StRA(
            planes,
            stride=stride,
            groups=groups,
            kernel_size=kernel_size,
            mode_attention=mode_attention,
            mode_interaction=mode_interaction,
            gate=gate,
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out, masks = self.stra(out)
        out = self.relu(self.bn2(out))
        out = self.bn3(self.conv3(out))
        diversity = x.new_zeros(x.shape[0]) if masks is None else diversity_loss(masks)
        return self.relu(out + identity), diversity

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_diversity(x)[0]


def round_channels(channels: float, divisor: int = 8) -> int:
    """Scale-and-round used by the width multiplier: a multiple of ``divisor`` (the number of modes)."""
    return max(divisor, int(round(channels / divisor)) * divisor)


class FaceResNet(nn.Module):
    """A ResNet for aligned faces producing an ``embedding_size`` vector.

    ``stage_blocks`` gives the block type of each of the four stages, so that StRA enters as the block
    type of stage 4 rather than as branches inside a bottleneck.
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
            raise ValueError("a face ResNet has four stages")
        block_kwargs = block_kwargs or [{}] * 4
        self.embedding_size = embedding_size
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.inplanes = round_channels(64 * width)
        self.stem = nn.Sequential(
            _conv3x3(3, self.inplanes), nn.BatchNorm2d(self.inplanes), nn.PReLU(self.inplanes)
        )
        self.layer1 = self._make_layer(stage_blocks[0], round_channels(64 * width), layers[0], block_kwargs[0])
        self.layer2 = self._make_layer(stage_blocks[1], round_channels(128 * width), layers[1], block_kwargs[1])
        self.layer3 = self._make_layer(stage_blocks[2], round_channels(256 * width), layers[2], block_kwargs[2])
        self.layer4 = self._make_layer(stage_blocks[3], round_channels(512 * width), layers[3], block_kwargs[3])
        out_h, out_w = (halve_four_times(side) for side in self.input_size)
        self.head = EmbeddingHead(self.inplanes, (out_h, out_w), embedding_size, dropout)
        self._init_weights()

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, kwargs: dict) -> nn.Sequential:
        expansion = block.expansion  # type: ignore[attr-defined]
        downsample = nn.Sequential(_conv1x1(self.inplanes, planes * expansion, 2), nn.BatchNorm2d(planes * expansion))
        modules = [block(self.inplanes, planes, stride=2, downsample=downsample, **kwargs)]
        self.inplanes = planes * expansion
        modules += [block(self.inplanes, planes, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Start every residual branch at zero so deep models train from scratch with SGD at lr 0.1.
        for module in self.modules():
            if isinstance(module, (Bottleneck, StRABottleneck)):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings (B, embedding_size)."""
        return self.head(self._trunk(x)[0])

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings and each sample's diversity loss L_d summed over the StRA blocks, shape (B,).

        The one path by which training sees L_d (zeros for networks without StRA blocks). Under
        DistributedDataParallel call it through a wrapper module's ``forward``, as facestra's training does,
        so that DDP sees the call.
        """
        features, diversity = self._trunk(x)
        return self.head(features), diversity

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        blocks = [block for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for block in stage]
        return run_blocks(blocks, self.stem(x))


def run_blocks(blocks: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    """Apply ``blocks`` in turn; return the features and each sample's L_d summed over the StRA blocks
    (every block with a ``forward_with_diversity``)."""
    diversity = x.new_zeros(x.shape[0])
    for block in blocks:
        if hasattr(block, "forward_with_diversity"):
            x, block_diversity = block.forward_with_diversity(x)
            diversity = diversity + block_diversity
        else:
            x = block(x)
    return x, diversity


def halve_four_times(side: int) -> int:
    for _ in range(4):
        side = (side - 1) // 2 + 1
    return side


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
