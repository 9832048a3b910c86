"""``nn.BatchNorm2d`` whose training statistics are computed faster on the CPU: the same layer, state dict
and results (within float rounding), for the networks facestra trains on the CPU
(:mod:`facestra.models.cpu_layers`).

On the CPU, PyTorch's training-mode batch normalisation spends most of its time collecting the batch's
mean and variance: 8.6 of the 9.9 ms of a forward pass over a 32×64×56×56 map with one thread, 1.35 ns a
value, while the normalisation itself (its evaluation mode) took 1.1 ms. Summing each sample's rows first
(a contiguous reduction, which vectorises) and combining them per channel takes a fraction of that, and
the backward pass stays PyTorch's own kernel, given the statistics. ``bench/cpu_layers_speed.py`` measures
both, the layer alone and inside a training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

#: Below this many values the few extra operations of the statistics cost more than they save (a
#: 32×32×7×7 map ran 10% slower, a 32×64×7×7 one 15% faster, forward and backward).
MIN_VALUES = 65536


def batch_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """The per-channel mean and biased variance of ``x`` (B, C, …), as training-mode BatchNorm uses them.

    Each (sample, channel) row is centred on its own mean before squaring, and the rows are combined
    exactly (total variance = mean of the rows' variances + variance of their means): no sum of squares
    minus a squared mean, which in float32 keeps no digit of the variance of a channel whose mean is 10^4
    times its spread. This keeps about five there (PyTorch's Welford updates keep six or seven).
    """
    b, c = x.shape[:2]
    rows = x.reshape(b, c, -1)
    n = rows.shape[2]
    row_mean = rows.sum(dim=2).div_(n)
    row_squares = torch.linalg.vector_norm(rows - row_mean.unsqueeze(2), dim=2).square_()
    mean = row_mean.mean(dim=0)
    between_rows = (row_mean - mean).square_().sum(dim=0)
    var = row_squares.sum(dim=0).add_(between_rows, alpha=n).div_(b * n)
    return mean, var


class _NormaliseWithBatchStatistics(torch.autograd.Function):
    """Training-mode batch normalisation given the statistics' computation above: the normalisation is
    evaluation mode's kernel with the batch's statistics, the backward ``native_batch_norm_backward``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        mean, var = batch_statistics(x)
        out = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, (var + eps).rsqrt_())
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _mean: Tensor, _var: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, weight, mean, invstd = ctx.saved_tensors
        needs = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps, needs
        )
        return grad_x, grad_weight, grad_bias, None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same arguments, parameters, buffers and ``isinstance``), training on contiguous
    float32/float64 CPU maps of at least :data:`MIN_VALUES` values through the faster statistics above;
    everywhere else (evaluation, GPUs, channels-last, autocast, tracing or compiling) PyTorch's own. On the
    faster path the backward cannot itself be differentiated (``create_graph=True`` raises), which no
    training facestra runs asks for."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._faster_statistics_apply(x):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        out, mean, var = _NormaliseWithBatchStatistics.apply(x, self.weight, self.bias, self.eps)
        count = x.numel() // x.shape[1]
        with torch.no_grad():  # the running variance is unbiased, as PyTorch keeps it
            self.running_mean.lerp_(mean, factor)
            self.running_var.lerp_(var * (count / (count - 1)), factor)
        return out

    def _faster_statistics_apply(self, x: Tensor) -> bool:
        return (  # tracing first: touching x's shape under the tracer names x in the traced graph
            not torch.jit.is_tracing()
            and self.training
            and self.track_running_stats
            and self.running_mean is not None
            and self.running_var is not None
            and self.num_batches_tracked is not None
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.dtype == self.running_mean.dtype
            and x.dim() == 4
            and x.shape[1] == self.num_features  # otherwise PyTorch's own error
            and x.numel() >= MIN_VALUES
            and x.numel() > x.shape[1]  # PyTorch's own refuses one value per channel
            and x.is_contiguous()
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
        )
