"""What training needs from ``torch.distributed``: the process's place in a torchrun job, and synced BN.

``torchrun`` tells each process its rank through environment variables; :func:`describe` reads them and :func:`start` opens
the process group (NCCL on GPUs, gloo on CPUs). A plain ``facestra train`` is a world of one and never
touches ``torch.distributed``.

PyTorch's ``SyncBatchNorm`` refuses CPU tensors, so :class:`DistributedBatchNorm` computes batch statistics
over all processes with autograd-aware all-reduces; it is what ``--sync-bn`` uses on the CPU (and it is
what lets a 2-process CPU run reproduce a 1-process run with the same global batch).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class Process:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def describe(device: str = "auto") -> Process:
    """This process's rank and device from torchrun's environment; opens nothing (see :func:`start`)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device("cuda", local_rank) if device == "cuda" else torch.device(device)
    return Process(rank, world_size, local_rank, torch_device)


def start(process: Process) -> None:
    """Select the GPU and open the process group (NCCL on GPUs, gloo on CPUs) when the world is > 1.

    Opening the group waits for every process, which is why callers check their inputs before: no process
    writes anything until all of them have read the run folder as it was.
    """
    if process.device.type == "cuda":
        torch.cuda.set_device(process.device)
    if process.distributed and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if process.device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=30),
        )


def teardown(process: Process) -> None:
    """Close the process group opened by :func:`start`."""
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: Tensor, process: Process) -> Tensor:
    """Sum ``values`` over all processes (identity in a world of one)."""
    if process.distributed:
        values = values.clone()
        dist.all_reduce(values)
    return values


def gather_objects(value, process: Process) -> list:
    """``value`` from every process, in rank order (``[value]`` in a world of one)."""
    if not process.distributed:
        return [value]
    gathered: list = [None] * process.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose backward is the all-reduce of the gradients: every process's loss depends on
    every process's input through the shared statistics."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_over_processes(tensor: Tensor) -> Tensor:
    """Differentiable sum of ``tensor`` over all processes of the group."""
    return _SumOverProcesses.apply(tensor)


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation whose training statistics are those of the global batch over all processes.

    Two all-reduces per call: the per-channel sums (for the mean), then the centred squares (for the
    variance), both differentiable so that gradients flow across processes too.
    Outside a process group it behaves exactly like ``nn.BatchNorm1d``/``2d``.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected a 2D to 5D input, got {input.dim()}D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        all_reduce = sum_over_processes
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor(float(input.numel() // input.shape[1]), device=input.device)
        dist.all_reduce(count)
        mean = all_reduce(input.sum(dim=dims)) / count
        centred = input - mean.view(shape)
        var = all_reduce((centred * centred).sum(dim=dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (count / (count - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm in ``module`` synced over processes: PyTorch's on GPUs, ours on the CPU.

    Parameters and buffers keep their names, so the backbone's state dict (and ``facestra.models.save``)
    is unchanged.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _replace_batchnorm(module)


def _replace_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, DistributedBatchNorm):
        synced = DistributedBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        with torch.no_grad():
            if module.affine:
                synced.weight = module.weight
                synced.bias = module.bias
            if module.track_running_stats:
                synced.running_mean = module.running_mean
                synced.running_var = module.running_var
                synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, _replace_batchnorm(child))
    return module

