"""PyTorch's BatchNorm2d and PReLU turned into facestra's faster CPU-training subclasses, for a network that
is about to train on the CPU.

The networks facestra builds, loads and exports hold PyTorch's own layers, which every tool that inspects a
model knows: ``torch.fx`` traces them as leaves, ``torch.func`` transforms them. Only the training loop, on the
CPU, swaps in :class:`~facestra.models.batch_norm.BatchNorm2d` and :class:`~facestra.models.prelu.PReLU`:
subclasses that hold no state of their own, so each layer keeps its parameters, buffers and state-dict keys.
"""

from __future__ import annotations

from torch import nn

from facestra.models.batch_norm import BatchNorm2d
from facestra.models.prelu import PReLU

_FASTER = {nn.BatchNorm2d: BatchNorm2d, nn.PReLU: PReLU}


def use_faster_cpu_layers(module: nn.Module) -> nn.Module:
    """``module``, every layer of exactly PyTorch's BatchNorm2d or PReLU class in it now facestra's subclass (in
    place: the same layer objects, tensors and state dict); other subclasses, synced BatchNorms among them, are
    left as they are."""
    for layer in module.modules():
        faster = _FASTER.get(type(layer))
        if faster is not None:
            layer.__class__ = faster
    return module
