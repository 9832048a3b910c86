"""Face ResNets and ResNet-StRA: build by name, save and load self-describing checkpoints, count cost.

Names are imported on first use: the networks need torch, and a module of this package that does not (the
ONNX runtime path, :mod:`facestra.models.onnx_graph`, the fingerprint) must not pay for it.
"""

from __future__ import annotations

from facestra.lazy import lazy_attributes

_LAZY = {
    "Complexity": "facestra.models.cost",
    "complexity": "facestra.models.cost",
    "mode_masks": "facestra.models.masks",
    "create": "facestra.models.registry",
    "load": "facestra.models.registry",
    "names": "facestra.models.registry",
    "save": "facestra.models.registry",
    "IBasicBlock": "facestra.models.iresnet",
    "IResNet": "facestra.models.iresnet",
    "BasicBlock": "facestra.models.resnet",
    "Bottleneck": "facestra.models.resnet",
    "EmbeddingHead": "facestra.models.resnet",
    "FaceResNet": "facestra.models.resnet",
    "CONV3X3": "facestra.models.stages",
    "MidLayer": "facestra.models.stages",
    "StRA": "facestra.models.stra",
    "LocalAttention": "facestra.models.stra",
    "ModeAttention": "facestra.models.stra",
    "ModeMasks": "facestra.models.stra",
    "StRAOptions": "facestra.models.stra",
    "diversity_loss": "facestra.models.stra",
    "stra_mid_layer": "facestra.models.stra",
}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)
