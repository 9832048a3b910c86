"""``nn.PReLU`` whose backward pass is computed faster on the CPU, for the networks facestra trains there
(:mod:`facestra.models.cpu_layers`): the same layer and state dict, the same outputs and input gradients
(for finite values), the slope's gradient equal within float rounding.

On the CPU, PyTorch's PReLU backward ran at 4-5 ns a value with one thread (31 ms on a 32×64×56×56 map,
against 1.3 ms for its forward): it selects between the gradient and its product with the slope value by
value, as ``torch.where`` does, which this build runs unvectorised (3.0 ms for 800,000 values, against
0.07 ms for a multiplication). ResNet's stem and every IResNet block hold a PReLU. Written with ReLU's
vectorised backward (``threshold_backward``), a subtraction and multiply-adds, the same gradients take a
fraction of that; ``bench/cpu_layers_speed.py`` measures both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def _per_channel(weight: Tensor, dims: int) -> Tensor:
    return weight.view(1, -1, *([1] * (dims - 2)))


class _PReLUFunction(torch.autograd.Function):
    """``F.prelu`` with one slope per channel, its backward written out."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        positive = torch.ops.aten.threshold_backward(grad, x, 0)  # the gradient where x > 0, else 0
        negative = grad - positive  # where x <= 0, else 0
        grad_x = torch.addcmul(positive, negative, _per_channel(weight, x.dim())) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:  # Σ over samples and positions of grad · x where x <= 0
            b, c = x.shape[:2]
            grad_weight = torch.linalg.vecdot(negative.view(b, c, -1), x.view(b, c, -1), dim=2).sum(dim=0)
        return grad_x, grad_weight


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same arguments, parameter and ``isinstance``) whose backward in training on contiguous
    float32/float64 CPU maps, one slope per channel, is computed as above; everywhere else PyTorch's own.
    That backward cannot itself be differentiated (``create_graph=True`` raises), which no training
    facestra runs asks for."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._written_out_backward_applies(x):
            return super().forward(x)
        return _PReLUFunction.apply(x, self.weight)

    def _written_out_backward_applies(self, x: Tensor) -> bool:
        return (  # tracing first: touching x's shape under the tracer names x in the traced graph
            not torch.jit.is_tracing()
            and self.training
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and self.weight.dtype == x.dtype
            and x.dim() >= 2
            and self.weight.numel() == x.shape[1] > 1
            and x.is_contiguous()
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
        )
