"""The network a run trains: how it is built, seeded and laid out on its device, and how replicas compare.

Building and seeding come first and in a fixed order, because the initial weights are the first draws
of the seeded generators: a run and its resumption (and every process of a torchrun job) must start
from the same draws. Placement is separate from building because a resumed run loads its saved weights
between the two steps that place a network: moving it to the device and wrapping it for several processes.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from facestra.errors import UserError
from facestra.train import distributed
from facestra.train.config import TrainConfig
from facestra.train.heads import ClassifierHead


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_backbone(config: TrainConfig) -> nn.Module:
    """The network of ``config`` from :func:`facestra.models.create` (options errors become user errors)."""
    from facestra import models

    kwargs = dict(
        width=config.width,
        embedding_size=config.embedding_size,
        input_size=tuple(config.input_size),
        dropout=config.dropout,
        **config.stra_options,
    )
    try:
        return models.create(config.arch, **kwargs)
    except (ValueError, TypeError) as error:
        raise UserError(f"--arch {config.arch}: {error}") from None


class TrainingNetwork(nn.Module):
    """Backbone and head as one module, so that DistributedDataParallel averages the gradients of both."""

    def __init__(self, backbone: nn.Module, head: ClassifierHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        embeddings, diversity = self.backbone.forward_with_diversity(images)
        logits, plain_logits = self.head(embeddings, labels)
        return logits, plain_logits, diversity


def uses_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """``--channels-last`` as given, else on GPUs only.

    Not on the CPU by default, though it trains 1.3-1.6x faster there (bench/model_speed.py --nchw): this
    torch build's CPU backward of a 1x1 stride-2 convolution segfaults on channels-last tensors for some
    shapes (8 -> 32 channels at 112x112: resnet50 at width 0.125).
    """
    return config.channels_last if config.channels_last is not None else device.type == "cuda"


def place(backbone: nn.Module, head: ClassifierHead, config: TrainConfig, process: distributed.Process) -> TrainingNetwork:
    """Backbone (batch norm synced over processes with ``--sync-bn``) and head on the process's device."""
    device = process.device
    if config.sync_bn and process.distributed:
        backbone = distributed.convert_sync_batchnorm(backbone, device)
    memory_format = torch.channels_last if uses_channels_last(config, device) else torch.preserve_format
    return TrainingNetwork(backbone.to(device, memory_format=memory_format), head.to(device))


def wrap(network: TrainingNetwork, config: TrainConfig, process: distributed.Process) -> nn.Module:
    """The module the steps call: DistributedDataParallel over several processes, compiled with ``--compile``.

    Checkpoints keep coming from ``network.backbone`` and ``network.head``, so their keys do not change.
    """
    module: nn.Module = network
    if process.distributed:
        device = process.device
        module = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        # Fuses StRA's per-neighbour elementwise work, which eager mode runs as many small kernels.
        module = torch.compile(module)
    return module


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, to compare replicas (``--check-replicas``)."""
    digest = hashlib.sha256()
    for tensor in list(module.parameters()) + list(module.buffers()):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
