"""The network a run trains: how it is built, seeded and laid out on its device, and how replicas compare.

Building and seeding come first and in a fixed order, because the initial weights are the first draws
of the seeded generators: a run and its resumption (and every process of a torchrun job) must start
from the same draws. Placement is separate from building because a resumed run loads its saved weights
between the two steps that place a network: moving it to the device and wrapping it for several processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import random

import numpy as np
import torch
from torch import Tensor, nn

from facestra import models
from facestra.errors import UserError
from facestra.models.cpu_layers import use_faster_cpu_layers
from facestra.models.memory import activation_bytes, check_fits, device_memory_limit
from facestra.train import distributed
from facestra.train.config import TrainConfig
from facestra.train.heads import ClassifierHead
from facestra.train.partial_fc import ShardedClassifierHead

Head = ClassifierHead | ShardedClassifierHead


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_backbone(config: TrainConfig, process: distributed.Process | None = None) -> nn.Module:
    """The network of ``config`` from :func:`facestra.models.create` (options errors become user errors).

    It is first built on the ``meta`` device and refused when its weights, gradients, momentum and one
    micro-batch's activations cannot fit on ``process``'s device: a 2048x2048 input is one line, not a
    machine swapping until the kernel kills the run.
    """
    process = process or distributed.Process()
    switches = {} if config.stra_options is None else dataclasses.asdict(config.stra_options)
    kwargs = dict(
        width=config.width, embedding_size=config.embedding_size, input_size=tuple(config.input_size),
        dropout=config.dropout, **switches,
    )
    try:
        with torch.device("meta"):
            probe = models.create(config.arch, **kwargs).train()
        micro_batch = max(1, config.batch_size // (process.world_size * config.grad_accum))
        activations = activation_bytes(probe, micro_batch, tuple(config.input_size), bytes_per_value=2 if config.amp != "none" else 4)
        processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        check_fits(probe, f"`arch` {config.arch}", copies=3, activations=activations,
                   limit=device_memory_limit(process.device, processes_here))
        return models.create(config.arch, memory_copies=0, **kwargs)
    except (ValueError, TypeError) as error:
        raise UserError(f"`arch` {config.arch}: {error}") from None


class TrainingNetwork(nn.Module):
    """Backbone and head as one module, so that DistributedDataParallel averages the gradients of both
    (a replicated head; a sharded one stays outside DistributedDataParallel, see :func:`wrap`)."""

    def __init__(self, backbone: nn.Module, head: Head) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(each image's cross-entropy, whether it was classified right, its diversity loss)."""
        embeddings, diversity = self.backbone.forward_with_diversity(images)
        cross_entropy, correct = self.head.loss_and_correct(embeddings, labels)
        return cross_entropy, correct, diversity


class _WithDiversity(nn.Module):
    """The backbone with ``forward_with_diversity`` as its forward: what DistributedDataParallel calls."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.backbone.forward_with_diversity(images)


class _ShardedTrainingNetwork(nn.Module):
    """A DistributedDataParallel backbone feeding a sharded head: the head's rows differ on every process,
    so DistributedDataParallel must neither broadcast nor average them."""

    def __init__(self, backbone: nn.Module, head: ShardedClassifierHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def no_sync(self) -> contextlib.AbstractContextManager:
        """The backbone's gradients stay local (the head's are always local)."""
        return self.backbone.no_sync()

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        embeddings, diversity = self.backbone(images)
        cross_entropy, correct = self.head.loss_and_correct(embeddings, labels)
        return cross_entropy, correct, diversity


def uses_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """``--channels-last`` as given, else on GPUs only.

    Not on the CPU by default, though it trains 1.3-1.6x faster there (bench/model_speed.py --nchw): this
    torch build's CPU backward of a 1x1 stride-2 convolution segfaults on channels-last tensors for some
    shapes (8 -> 32 channels at 112x112: resnet50 at width 0.125).
    """
    return config.channels_last if config.channels_last is not None else device.type == "cuda"


def place(backbone: nn.Module, head: Head, config: TrainConfig, process: distributed.Process) -> TrainingNetwork:
    """Backbone (batch norm synced over processes with ``--sync-bn``; on the CPU, BatchNorm and PReLU layers
    that train faster there) and head on the process's device."""
    device = process.device
    if config.sync_bn and process.distributed:
        backbone = distributed.convert_sync_batchnorm(backbone, device)
    if device.type == "cpu":
        backbone = use_faster_cpu_layers(backbone)
    memory_format = torch.channels_last if uses_channels_last(config, device) else torch.preserve_format
    return TrainingNetwork(backbone.to(device, memory_format=memory_format), head.to(device))


def wrap(network: TrainingNetwork, config: TrainConfig, process: distributed.Process) -> nn.Module:
    """The module the steps call: DistributedDataParallel over several processes, compiled with ``--compile``.

    Checkpoints keep coming from ``network.backbone`` and ``network.head``, so their keys do not change.
    A sharded head stays outside DistributedDataParallel (and ``torch.compile``): its rows are this process's
    own, and its collectives run in its forward and backward.
    """
    if isinstance(network.head, ShardedClassifierHead):
        backbone: nn.Module = _WithDiversity(network.backbone)
        if process.distributed:
            backbone = _ddp(backbone, process)
        if config.compile:
            backbone = torch.compile(backbone)
        return _ShardedTrainingNetwork(backbone, network.head)
    module: nn.Module = network
    if process.distributed:
        module = _ddp(module, process)
    if config.compile:
        # Fuses StRA's per-neighbour elementwise work, which eager mode runs as many small kernels.
        module = torch.compile(module)
    return module


def _ddp(module: nn.Module, process: distributed.Process) -> nn.Module:
    device = process.device
    return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def replicated(network: TrainingNetwork) -> nn.Module:
    """What every process holds the same copy of: the whole network, or the backbone beside a sharded head."""
    return network.backbone if isinstance(network.head, ShardedClassifierHead) else network


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, to compare replicas (``--check-replicas``)."""
    digest = hashlib.sha256()
    for tensor in list(module.parameters()) + list(module.buffers()):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
