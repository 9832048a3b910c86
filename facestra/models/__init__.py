"""Face ResNets and ResNet-StRA: build by name, save and load self-describing checkpoints, count cost."""

from facestra.models.complexity import Complexity, complexity
from facestra.models.masks import mode_masks
from facestra.models.registry import create, load, names, save
from facestra.models.iresnet import IBasicBlock, IResNet
from facestra.models.resnet import BasicBlock, Bottleneck, EmbeddingHead, FaceResNet
from facestra.models.stages import CONV3X3, MidLayer
from facestra.models.stra import StRA, LocalAttention, ModeAttention, ModeMasks, StRAOptions, diversity_loss, stra_mid_layer

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CONV3X3",
    "Complexity",
    "EmbeddingHead",
    "FaceResNet",
    "IBasicBlock",
    "IResNet",
    "LocalAttention",
    "MidLayer",
    "ModeAttention",
    "ModeMasks",
    "StRA",
    "StRAOptions",
    "complexity",
    "create",
    "diversity_loss",
    "load",
    "mode_masks",
    "names",
    "save",
    "stra_mid_layer",
]
