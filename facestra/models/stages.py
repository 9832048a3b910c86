"""What the face ResNets and the IResNets share: the middle slot of their blocks, the stage builder, and the
trunk that runs the blocks and sums the diversity loss of the StRA units among them.

A block's middle layer (the 3×3 convolution of a bottleneck, the strided second convolution of an IResNet
block) is a slot, as timm's blocks take an attention-layer factory: a :class:`MidLayer` builds the module
that fills it, and StRA enters a network as the mid layer of its stage-4 blocks instead of as a block class
of its own. The slot's module is kept under the mid layer's ``name``: a state-dict name, which is why the
convolution is ``conv2`` (torchvision's and arcface_torch's name) and StRA ``stra`` (every facestra model
file's), so files written by earlier versions load unchanged.

The diversity loss L_d reaches training by one path: a module that contributes to it has a
``forward_with_diversity(x) -> (output, per-sample L_d)`` beside its ``forward`` (StRA, every block, every
network); :func:`with_diversity` calls it, or the plain ``forward`` with zeros for a module without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class MidLayer:
    """What fills a block's middle slot: ``factory(channels, stride=s)`` builds a module mapping
    (B, C, H, W) to (B, C, H/s, W/s), which the block keeps as its attribute ``name``."""

    name: str
    factory: Callable[..., nn.Module]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _square_conv3x3(channels: int, *, stride: int = 1) -> nn.Conv2d:
    return conv3x3(channels, channels, stride)


#: The plain blocks' middle layer: a 3×3 convolution.
CONV3X3 = MidLayer("conv2", _square_conv3x3)


def with_diversity(module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``module``'s output and each sample's diversity loss: its own ``forward_with_diversity`` where it has
    one, else its ``forward`` and zeros."""
    forward = getattr(module, "forward_with_diversity", None)
    if forward is not None:
        return forward(x)
    return module(x), x.new_zeros(x.shape[0])


def run_blocks(blocks: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    """Apply ``blocks`` in turn; return the features and each sample's L_d summed over the blocks."""
    diversity = x.new_zeros(x.shape[0])
    for block in blocks:
        x, block_diversity = with_diversity(block, x)
        diversity = diversity + block_diversity
    return x, diversity


class ResidualBlock(nn.Module):
    """A residual block with a middle slot: the subclasses build their layers (placing the slot's with
    :meth:`add_mid_layer`) and define :meth:`forward_with_diversity` and ``zero_init_last`` (zero the last
    BatchNorm, so that the block starts as its shortcut); ``forward`` returns the features alone."""

    expansion: int = 1
    mid_name: str

    def add_mid_layer(self, mid_layer: MidLayer, channels: int, stride: int) -> None:
        self.mid_name = mid_layer.name
        self.add_module(mid_layer.name, mid_layer.factory(channels, stride=stride))

    @property
    def mid(self) -> nn.Module:
        """The module in the middle slot (``conv2`` or ``stra``)."""
        return getattr(self, self.mid_name)

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_diversity(x)[0]

    def zero_init_last(self) -> None:
        raise NotImplementedError


Block = type[ResidualBlock]


def make_stage(block: Block, inplanes: int, planes: int, depth: int, *, mid_layer: MidLayer = CONV3X3) -> nn.Sequential:
    """``depth`` blocks of which the first halves the resolution (its shortcut a strided 1×1 convolution and
    a BatchNorm) and takes ``inplanes`` channels; every block's middle slot holds ``mid_layer``."""
    out_channels = planes * block.expansion
    downsample = nn.Sequential(conv1x1(inplanes, out_channels, 2), nn.BatchNorm2d(out_channels))
    blocks = [block(inplanes, planes, stride=2, downsample=downsample, mid_layer=mid_layer)]
    blocks += [block(out_channels, planes, mid_layer=mid_layer) for _ in range(1, depth)]
    return nn.Sequential(*blocks)


#: Stage widths at width 1 (stage 1 has as many channels as the stem).
STAGE_PLANES = (64, 128, 256, 512)


def round_channels(channels: float, divisor: int = 8) -> int:
    """Scale-and-round used by the width multiplier: a multiple of ``divisor`` (the number of modes)."""
    return max(divisor, int(round(channels / divisor)) * divisor)


def make_stages(block: Block, layers: Sequence[int], *, width: float,
                mid_layers: Sequence[MidLayer]) -> tuple[list[nn.Sequential], int]:
    """The four stages (``layers[i]`` blocks each, ``mid_layers[i]`` in their middle slots) after a stem of
    ``round_channels(64 * width)`` channels, each halving the resolution; and their output channels."""
    if len(layers) != 4 or len(mid_layers) != 4:
        raise ValueError("a face network has four stages")
    stages, inplanes = [], round_channels(STAGE_PLANES[0] * width)
    for planes, depth, mid_layer in zip((round_channels(p * width) for p in STAGE_PLANES), layers, mid_layers):
        stages.append(make_stage(block, inplanes, planes, depth, mid_layer=mid_layer))
        inplanes = planes * block.expansion
    return stages, inplanes


def halve_four_times(side: int) -> int:
    for _ in range(4):
        side = (side - 1) // 2 + 1
    return side


class FaceNetwork(nn.Module):
    """A stem, four stages ``layer1`` … ``layer4`` of ``block`` and an embedding head of ``embedding_size``.

    The subclasses build and run the stem and the head (their attribute names are state-dict names) and
    initialise the weights; ``mid_layers`` fills the middle slot of each stage's blocks (a 3×3 convolution
    by default), so that StRA enters as the middle layer of stage 4 rather than as a block of its own.
    ``forward`` returns the embeddings (B, embedding_size); :meth:`forward_with_diversity` also each
    sample's diversity loss L_d summed over the StRA units, the one path by which training sees L_d (zeros
    for networks without StRA). Under DistributedDataParallel call it through a wrapper module's
    ``forward``, as facestra's training does, so that DDP sees the call.
    """

    #: Whether every residual branch starts at zero (each block's ``zero_init_last``).
    zero_init_residuals = False

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
    ) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.make_stem(round_channels(STAGE_PLANES[0] * width))
        stages, channels = make_stages(block, layers, width=width, mid_layers=mid_layers)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.make_head(channels, (halve_four_times(self.input_size[0]), halve_four_times(self.input_size[1])), dropout)
        self.init_weights()
        if self.zero_init_residuals:
            for module in self.modules():
                if isinstance(module, ResidualBlock):
                    module.zero_init_last()

    def make_stem(self, channels: int) -> None:
        raise NotImplementedError

    def make_head(self, channels: int, spatial: tuple[int, int], dropout: float) -> None:
        raise NotImplementedError

    def init_weights(self) -> None:
        raise NotImplementedError

    def run_stem(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def run_head(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings (B, embedding_size)."""
        return self.run_head(self._trunk(x)[0])

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings and each sample's diversity loss L_d summed over the StRA units, shape (B,)."""
        features, diversity = self._trunk(x)
        return self.run_head(features), diversity

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        blocks = [block for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for block in stage]
        return run_blocks(blocks, self.run_stem(x))
