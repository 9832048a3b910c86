"""Face ResNets and ResNet-StRA: build by name, save and load self-describing checkpoints, count cost.

Names are imported on first use: the networks need torch, and a module of this package that does not (the
ONNX runtime path, :mod:`facestra.models.onnx_graph`, the fingerprint) must not pay for it.
"""

from __future__ import annotations

from facestra.lazy import lazy_package

__all__, __getattr__ = lazy_package(
    __name__,
    {
        ".cost": "Complexity complexity",
        ".masks": "mode_masks",
        ".registry": "create load names save",
        ".iresnet": "IBasicBlock IResNet",
        ".resnet": "BasicBlock Bottleneck EmbeddingHead FaceResNet",
        ".stages": "CONV3X3 MidLayer",
        ".stra": "StRA LocalAttention ModeAttention ModeMasks StRAOptions diversity_loss stra_mid_layer",
    },
)
