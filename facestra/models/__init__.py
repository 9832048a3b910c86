"""Face ResNets and ResNet-StRA: build by name, save and load self-describing checkpoints, count cost."""

from facestra.models.complexity import Complexity, complexity
from facestra.models.masks import mode_masks
from facestra.models.registry import create, load, names, save
from facestra.models.resnet import BasicBlock, Bottleneck, EmbeddingHead, FaceResNet, StRABottleneck
from facestra.models.stra import StRA, LocalAttention, ModeAttention, ModeMasks, StRAOptions, diversity_loss

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "Complexity",
    "EmbeddingHead",
    "FaceResNet",
    "LocalAttention",
    "ModeAttention",
    "ModeMasks",
    "StRA",
    "StRABottleneck",
    "StRAOptions",
    "complexity",
    "create",
    "diversity_loss",
    "load",
    "mode_masks",
    "names",
    "save",
]
