"""facestra's PReLU against PyTorch's nn.PReLU: the same outputs and gradients where its written-out backward
applies, PyTorch's own computation everywhere else."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facestra.models.prelu import PReLU


def _pair(channels: int, dtype: torch.dtype) -> tuple[nn.PReLU, PReLU]:
    reference = nn.PReLU(channels).to(dtype)
    with torch.no_grad():
        reference.weight.uniform_(-0.5, 0.5)  # slopes of either sign
    ours = PReLU(channels).to(dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(4, 8, 9, 9), (6, 5), (3, 4, 5, 6, 2)])
@pytest.mark.parametrize("frozen", [False, True])
def test_gradients_match_pytorch(dtype, shape, frozen):
    reference, ours = _pair(shape[1], dtype)
    for layer in (reference, ours):
        layer.weight.requires_grad_(not frozen)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    x.view(-1)[::7] = 0.0  # the kink: PyTorch gives such values the slope's gradient
    grad = torch.randn(shape, generator=generator, dtype=dtype)
    x_reference, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert ours._written_out_backward_applies(x_ours)
    out_reference, out_ours = reference(x_reference), ours(x_ours)
    out_reference.backward(grad)
    out_ours.backward(grad)
    tolerance = {"rtol": 0, "atol": 0} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(out_ours, out_reference, rtol=0, atol=0)
    torch.testing.assert_close(x_ours.grad, x_reference.grad, rtol=0, atol=0)
    if frozen:
        assert ours.weight.grad is None
    else:
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad, **tolerance)


@pytest.mark.parametrize("case", ["no grad", "evaluation", "channels-last", "one slope", "bfloat16", "autocast"])
def test_elsewhere_it_is_pytorchs_own_computation(case):
    reference, ours = (nn.PReLU(), PReLU()) if case == "one slope" else _pair(8, torch.float32)
    x = torch.randn(4, 8, 9, 9)
    if case == "evaluation":
        reference.eval(), ours.eval()
    if case == "channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    if case == "bfloat16":
        x = x.bfloat16()
        reference, ours = reference.bfloat16(), ours.bfloat16()
    with torch.set_grad_enabled(case != "no grad"), torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        assert not ours._written_out_backward_applies(x)
        assert torch.equal(ours(x), reference(x))
