"""facestra's BatchNorm2d against PyTorch's nn.BatchNorm2d: the same outputs, gradients and running
statistics where its faster statistics apply, PyTorch's own computation everywhere else."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facestra.models.batch_norm import MIN_VALUES, BatchNorm2d, batch_statistics


def _pair(channels: int, dtype: torch.dtype, **kwargs) -> tuple[nn.BatchNorm2d, BatchNorm2d]:
    reference = nn.BatchNorm2d(channels, **kwargs).to(dtype)
    if reference.affine:
        with torch.no_grad():
            reference.weight.uniform_(0.5, 1.5)
            reference.bias.uniform_(-1.0, 1.0)
    ours = BatchNorm2d(channels, **kwargs).to(dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _train_both(reference: nn.Module, ours: BatchNorm2d, shape: tuple[int, ...], dtype: torch.dtype, steps: int = 3) -> list[tuple]:
    """Run both layers ``steps`` times on the same inputs and output gradients; every pair to compare."""
    generator = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(steps):
        x = (torch.randn(shape, generator=generator, dtype=dtype) * 3 + 2).requires_grad_()
        x_ours = x.detach().clone().requires_grad_()
        assert ours._faster_statistics_apply(x_ours) == ours.training
        grad = torch.randn(shape, generator=generator, dtype=dtype)
        out, out_ours = reference(x), ours(x_ours)
        out.backward(grad)
        out_ours.backward(grad)
        pairs += [(out, out_ours), (x.grad, x_ours.grad)]
    ours_by_name = dict([*ours.named_parameters(), *ours.named_buffers()])
    for name, tensor in [*reference.named_parameters(), *reference.named_buffers()]:
        other = ours_by_name[name]
        pairs.append((tensor.grad if tensor.grad is not None else tensor, other.grad if other.grad is not None else other))
    return pairs


@pytest.mark.parametrize("kwargs", [{}, {"momentum": None}, {"affine": False}, {"momentum": 0.3, "eps": 1e-3}])
def test_float64_training_matches_pytorch(kwargs):
    reference, ours = _pair(16, torch.float64, **kwargs)
    for expected, actual in _train_both(reference, ours, (4, 16, 32, 32), torch.float64):
        torch.testing.assert_close(actual.detach(), expected.detach(), rtol=1e-12, atol=1e-10)
    assert int(ours.num_batches_tracked) == 3


def test_float32_training_matches_pytorch_with_a_frozen_weight():
    reference, ours = _pair(32, torch.float32)
    for layer in (reference, ours):
        layer.weight.requires_grad_(False)
    for expected, actual in _train_both(reference, ours, (8, 32, 28, 28), torch.float32):
        torch.testing.assert_close(actual.detach(), expected.detach(), rtol=1e-4, atol=1e-4)
    assert ours.weight.grad is None and ours.bias.grad is not None


def test_variance_of_a_channel_whose_mean_dwarfs_its_spread():
    # float32, mean 1e4 and spread 1: E[x²] - E[x]² would lose every digit of the variance
    generator = torch.Generator().manual_seed(1)
    x = 1e4 + torch.randn(8, 4, 64, 64, generator=generator)
    mean, var = batch_statistics(x)
    exact_var, exact_mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean.double(), exact_mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(var.double(), exact_var, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    "case", ["evaluation", "channels-last", "small map", "bfloat16", "autocast"],
)
def test_elsewhere_it_is_pytorchs_own_computation(case):
    reference, ours = _pair(16, torch.float32)
    shape = (2, 16, 8, 8) if case == "small map" else (4, 16, 32, 32)
    x = torch.randn(shape) * 3 + 2
    if case == "evaluation":
        reference.eval(), ours.eval()
    if case == "channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    if case == "bfloat16":
        x = x.bfloat16()
    assert not ours._faster_statistics_apply(x) or case == "autocast"
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        assert not ours._faster_statistics_apply(x)
        assert torch.equal(ours(x), reference(x))
    assert torch.equal(ours.running_var, reference.running_var)


def test_one_value_per_channel_is_refused_as_pytorch_refuses_it():
    assert MIN_VALUES <= 65536
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(65536)(torch.randn(1, 65536, 1, 1))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(65536)(torch.randn(1, 65536, 1, 1))


def test_where_pytorch_would_fail_or_skip_its_statistics_it_is_pytorchs_own_computation():
    x = torch.randn(4, 16, 32, 32)
    for make in (nn.BatchNorm2d, BatchNorm2d):  # running statistics removed: batch statistics, nothing to update
        layer = make(16)
        layer.running_mean = layer.running_var = None
        assert torch.equal(layer(x), nn.functional.batch_norm(x, None, None, layer.weight, layer.bias, True, 0.1, 1e-5))
    errors = []
    for make in (nn.BatchNorm2d, BatchNorm2d):  # a map of the wrong channel count or dtype: PyTorch's own errors
        for wrong in (torch.randn(4, 17, 32, 32), x.double()):
            with pytest.raises(RuntimeError) as error:
                make(16, affine=False)(wrong)
            errors.append(str(error.value))
    assert errors[:2] == errors[2:]
