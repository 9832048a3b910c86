"""How StRA is computed for training (grouped 1×1 convolutions as matrix products, the local attention on a
phase grid or as a dense window matrix (each test that builds a block runs with both) and the mode
attention's contractions, each with its backward written out, tanh through a sigmoid) against a
straightforward autograd computation of the same function, forward and gradients.

The reference below is written from the equations with different operations than the block uses: the
convolutions are ``F.conv2d``, the BatchNorms ``F.batch_norm`` on copies of the running statistics, the
windows ``F.unfold`` with zero padding, the contractions ``einsum``, and autograd differentiates it all.
The block's state-dict names are the only thing the two share.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facestra.models import stra_kernels
from facestra.models.stra import StRA, StRAOptions, diversity_loss
from facestra.models.stra_options import GATES, MAX_KERNEL_SIZE

KERNEL_SIZES = tuple(range(1, MAX_KERNEL_SIZE + 1, 2))
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: bench/cuda_check.sh runs it there")
SWITCHES = list(itertools.product((True, False), (True, False), GATES))  # mode_attention, mode_interaction, gate


@pytest.fixture(params=["grid", "matrix"])
def local_form(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each written-out form of the local attention on every map (the phase grid, or the dense window matrix
    that :func:`~facestra.models.stra_kernels.local_attention` otherwise picks on small maps only)."""
    monkeypatch.setattr(stra_kernels, "matrix_form_pays", lambda nodes, kernel_size: request.param == "matrix")
    return request.param


def _conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    return F.conv2d(x, conv.weight, groups=conv.groups)


def _norm(x: Tensor, bn: nn.BatchNorm2d, stats: dict[str, Tensor], name: str, training: bool) -> Tensor:
    mean, var = stats.setdefault(f"{name}.mean", bn.running_mean.clone()), stats.setdefault(f"{name}.var", bn.running_var.clone())
    return F.batch_norm(x, mean, var, bn.weight, bn.bias, training=training, momentum=bn.momentum, eps=bn.eps)


def _mlp(x: Tensor, layers: nn.Sequential, stats: dict, name: str, training: bool) -> Tensor:
    conv1, bn1, _, conv2, bn2 = layers
    hidden = torch.tanh(_norm(_conv(x, conv1), bn1, stats, f"{name}.1", training))
    return _norm(_conv(hidden, conv2), bn2, stats, f"{name}.4", training)


def reference_local(block: StRA, x: Tensor, stats: dict, training: bool) -> Tensor:
    """Eq. 3 with unfold: every window's K² neighbours (zero outside the map) of ν and of the values."""
    local = block.local
    b, c, h, w = x.shape
    g, k, s = local.groups, local.kernel_size, local.stride
    h_out, w_out = (h - 1) // s + 1, (w - 1) // s + 1
    logits = _mlp(x, local.logits, stats, "local.logits", training).reshape(b, g, 1 + k * k, h, w)
    nu = F.unfold(logits[:, :, 0].reshape(b * g, 1, h, w), k, padding=k // 2, stride=s).reshape(b, g, k * k, h_out, w_out)
    weights = (logits[:, :, 1:, ::s, ::s] + nu).softmax(dim=2)
    values = F.unfold(_conv(x, local.value), k, padding=k // 2, stride=s).reshape(b, g, c // g, k * k, h_out, w_out)
    return torch.einsum("bgckyx,bgkyx->bgcyx", values, weights).reshape(b, c, h_out, w_out)


def reference_mode(block: StRA, s: Tensor, stats: dict, training: bool) -> tuple[Tensor, Tensor]:
    mode = block.mode
    b, c, h, w = s.shape
    g = mode.groups
    masks = _mlp(s, mode.masks.logits, stats, "mode.masks.logits", training).reshape(b, g, h * w).softmax(dim=2)
    nodes = s.reshape(b, g, c // g, h * w)
    modal = torch.einsum("bgcn,bgn->bgc", nodes, masks)

    def gate(scores: Tensor) -> Tensor:
        return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "softmax": lambda v: v.softmax(dim=1)}[mode.gate](scores)

    def add_context(features: Tensor, vectors: Tensor, bn: nn.BatchNorm2d, name: str) -> Tensor:
        scores = _norm(torch.einsum("bgcn,bgc->bgn", features, vectors).reshape(b, g, h, w), bn, stats, name, training)
        return features + torch.einsum("bgn,bgc->bgcn", gate(scores).reshape(b, g, h * w), vectors)

    out = add_context(nodes, modal, mode.gate_norm, "mode.gate_norm")
    if mode.interaction:
        gram = torch.einsum("bgc,bjc->bgj", modal, modal)
        routing = (math.sqrt(g) * gram / gram.norm(dim=2, keepdim=True).clamp_min(1e-12)).softmax(dim=2)
        out = add_context(out, torch.einsum("bgj,bjc->bgc", routing, modal), mode.interaction_gate_norm, "mode.interaction_gate_norm")
    return out.reshape(b, c, h, w), masks.reshape(b, g, h, w)


def reference(block: StRA, x: Tensor, training: bool) -> tuple[Tensor, Tensor, dict]:
    stats: dict[str, Tensor] = {}
    s = reference_local(block, x, stats, training)
    if block.mode is None:
        return s, x.new_zeros(x.shape[0]), stats
    out, masks = reference_mode(block, s, stats, training)
    return out, diversity_loss(masks), stats


def _block(channels: int, groups: int, kernel_size: int, stride: int, switches: tuple) -> StRA:
    mode_attention, mode_interaction, gate = switches
    torch.manual_seed(kernel_size * 10 + stride)
    options = StRAOptions(groups=groups, kernel_size=kernel_size, mode_attention=mode_attention, mode_interaction=mode_interaction, gate=gate)
    block = StRA(channels, stride=stride, options=options).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BatchNorm affines and statistics, conv weights of either sign
        for module in block.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator, dtype=torch.float64) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator, dtype=torch.float64) * 0.3)
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator, dtype=torch.float64) * 0.3)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator, dtype=torch.float64) + 0.5)
    return block


def _gradients(block: StRA, x: Tensor, out: Tensor, diversity: Tensor, seed: int) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # the same draws in any precision and on any device
    out_weights = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(out)
    diversity_weights = torch.randn(diversity.shape, generator=generator, dtype=torch.float64).to(out)
    loss = (out * out_weights).sum() + (diversity * diversity_weights).sum()
    names = ["x", *(name for name, _ in block.named_parameters())]
    grads = torch.autograd.grad(loss, [x, *block.parameters()], allow_unused=True)
    return {name: torch.zeros(()) if grad is None else grad for name, grad in zip(names, grads)}


@pytest.mark.parametrize("stride, size", [(1, (7, 6)), (2, (9, 7))], ids=["stride1", "stride2"])
@pytest.mark.parametrize("switches", SWITCHES, ids=["-".join(map(str, s)) for s in SWITCHES])
def test_training_forward_and_gradients_equal_the_autograd_reference(stride: int, size: tuple, switches: tuple, local_form: str) -> None:
    for kernel_size, groups in itertools.product(KERNEL_SIZES, (1, 4)):
        block = _block(8, groups, kernel_size, stride, switches).train()
        x = torch.randn(3, 8, *size, generator=torch.Generator().manual_seed(kernel_size), dtype=torch.float64, requires_grad=True)
        expected, expected_diversity, stats = reference(block, x, training=True)
        out, diversity = block.forward_with_diversity(x)
        case = f"K={kernel_size}, G={groups}"
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12, msg=lambda m, case=case: f"{case}: {m}")
        torch.testing.assert_close(diversity, expected_diversity, rtol=0, atol=1e-12, msg=lambda m, case=case: f"{case}: {m}")
        ours, theirs = _gradients(block, x, out, diversity, seed=kernel_size), _gradients(block, x, expected, expected_diversity, seed=kernel_size)
        assert ours.keys() == theirs.keys()
        for name in ours:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-9, atol=1e-11, msg=lambda m, name=name, case=case: f"{case}, {name}: {m}")
        assert ours["x"].abs().max() > 0 and ours["local.value.weight"].abs().max() > 0
        for name, module in block.named_modules():  # each BatchNorm ran once, with the batch's statistics
            if isinstance(module, nn.BatchNorm2d):
                torch.testing.assert_close(module.running_mean, stats[f"{name}.mean"], rtol=0, atol=1e-12, msg=f"{case}: {name}")


@pytest.mark.parametrize("stride", [1, 2])
def test_inference_and_channels_last_inputs_give_the_same_features(stride: int, local_form: str) -> None:
    block = _block(16, 4, 3, stride, (True, True, "sigmoid"))
    x = torch.randn(2, 16, 9, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected, _, _ = reference(block.eval(), x, training=False)
    with torch.no_grad():  # the plain operations an exporter traces
        plain = block(x)
    torch.testing.assert_close(plain, expected, rtol=0, atol=1e-12)
    trained_path = block(x.requires_grad_())  # the written-out functions, grouped convolutions as matrix products
    torch.testing.assert_close(trained_path, expected, rtol=0, atol=1e-12)
    channels_last = block(x.detach().contiguous(memory_format=torch.channels_last))  # oneDNN's grouped convolutions
    torch.testing.assert_close(channels_last, expected, rtol=0, atol=1e-12)


def test_float32_training_matches_the_float64_reference(local_form: str) -> None:
    block = _block(16, 4, 3, 2, (True, True, "sigmoid")).train()
    single = copy.deepcopy(block).float()
    x = torch.randn(4, 16, 14, 14, generator=torch.Generator().manual_seed(5), dtype=torch.float64, requires_grad=True)
    expected, expected_diversity, _ = reference(block, x, training=True)
    x32 = x.detach().float().requires_grad_()
    out, diversity = single.forward_with_diversity(x32)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-5)
    ours, theirs = _gradients(single, x32, out, diversity, seed=0), _gradients(block, x, expected, expected_diversity, seed=0)
    for name in ours:
        scale = theirs[name].abs().max().item()
        torch.testing.assert_close(ours[name].double(), theirs[name], rtol=0, atol=1e-4 * max(scale, 1.0), msg=lambda m, name=name: f"{name}: {m}")


CUDA_SWITCHES = {"full": (True, True, "sigmoid"), "no-interaction": (True, False, "softmax"), "local-only": (False, True, "tanh")}


@CUDA
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("switches", list(CUDA_SWITCHES.values()), ids=list(CUDA_SWITCHES))
def test_cuda_training_forward_and_gradients_equal_the_autograd_reference(stride: int, switches: tuple, local_form: str) -> None:
    """The written-out functions on a GPU (where the grouped 1×1 convolutions and tanh stay torch's own), in
    float64 against the CPU reference: the same sums, so the same tolerance as on the CPU."""
    for kernel_size in (3, 5):
        block = _block(16, 4, kernel_size, stride, switches).train()
        x = torch.randn(3, 16, 9, 7, generator=torch.Generator().manual_seed(kernel_size), dtype=torch.float64, requires_grad=True)
        expected, expected_diversity, stats = reference(block, x, training=True)
        gpu = copy.deepcopy(block).cuda()
        x_gpu = x.detach().cuda().requires_grad_()
        out, diversity = gpu.forward_with_diversity(x_gpu)
        torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(diversity.cpu(), expected_diversity, rtol=0, atol=1e-12)
        ours = _gradients(gpu, x_gpu, out, diversity, seed=kernel_size)
        theirs = _gradients(block, x, expected, expected_diversity, seed=kernel_size)
        for name in theirs:
            message = f"K={kernel_size}, {name}"
            torch.testing.assert_close(ours[name].cpu(), theirs[name], rtol=1e-9, atol=1e-11, msg=lambda m, message=message: f"{message}: {m}")
        for name, module in gpu.named_modules():
            if isinstance(module, nn.BatchNorm2d):
                torch.testing.assert_close(module.running_mean.cpu(), stats[f"{name}.mean"], rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("device, dtype", [
    ("cpu", torch.bfloat16),
    pytest.param("cuda", torch.bfloat16, marks=CUDA),
    pytest.param("cuda", torch.float16, marks=CUDA),
])
def test_an_autocast_step_on_channels_last_inputs_follows_the_float32_one(device: str, dtype: torch.dtype, local_form: str) -> None:
    """The GPU recipe's paths: channels-last maps (grouped convolutions stay convolutions) and autocast
    (values in half precision, the softmasks and their gradients in float32), forward and backward."""
    block = copy.deepcopy(_block(16, 4, 3, 2, (True, True, "sigmoid"))).float().train().to(device)
    x = torch.randn(4, 16, 14, 14, generator=torch.Generator().manual_seed(6)).to(device).contiguous(memory_format=torch.channels_last)
    x32 = x.clone().requires_grad_()
    out32, diversity32 = block.forward_with_diversity(x32)
    expected = _gradients(block, x32, out32, diversity32, seed=1)
    x16 = x.clone().requires_grad_()
    with torch.autocast(device, dtype=dtype):
        out16, diversity16 = block.forward_with_diversity(x16)
    ours = _gradients(block, x16, out16.float(), diversity16.float(), seed=1)
    assert ours["x"].dtype == torch.float32 and torch.isfinite(ours["x"]).all()
    torch.testing.assert_close(out16.float(), out32, rtol=0, atol=0.05 * out32.abs().max().item())
    for name in ("x", "local.value.weight", "local.logits.0.weight", "mode.masks.logits.0.weight"):
        scale = expected[name].abs().max().item()
        torch.testing.assert_close(ours[name].float(), expected[name], rtol=0, atol=0.1 * scale, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kernel_size, stride, size, form", [
    (3, 1, (7, 7), "WindowMatrix"), (3, 1, (8, 9), "WindowMatrix"), (3, 1, (9, 9), "LocalAttention"),
    (3, 2, (14, 14), "LocalAttention"), (5, 1, (10, 10), "WindowMatrix"), (5, 1, (14, 14), "LocalAttention"),
    (1, 1, (7, 7), "LocalAttention"),
])
def test_the_local_attention_takes_the_matrix_form_on_small_maps(kernel_size: int, stride: int, size: tuple, form: str) -> None:
    values = torch.randn(2, 4, 3, *size, requires_grad=True)
    logits = torch.randn(2, 4, 1 + kernel_size**2, *size)
    out = stra_kernels.local_attention(values, logits, kernel_size, stride)
    assert type(out.grad_fn).__name__ == f"{form}FunctionBackward"


def _both_forms(values: Tensor, logits: Tensor, kernel_size: int, stride: int) -> dict[str, tuple[Tensor, ...]]:
    """Each written-out form's output and gradients of the values and logits, for one fixed upstream gradient."""
    results = {}
    for name, function in (("grid", stra_kernels.LocalAttentionFunction), ("matrix", stra_kernels.WindowMatrixFunction)):
        v, lg = values.detach().requires_grad_(), logits.detach().requires_grad_()
        out = function.apply(v, lg, kernel_size, stride)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
        results[name] = (out, *torch.autograd.grad(out, (v, lg), upstream))
    return results


def test_the_matrix_form_under_autocast_computes_in_float32_as_the_grid_does() -> None:
    """Half-precision values (autocast's) and float32 logits: both forms multiply in float32, so they differ only
    in the order of their sums, far below bfloat16's rounding (which products in bfloat16 would show)."""
    generator = torch.Generator().manual_seed(7)
    values = torch.randn(2, 4, 8, 7, 5, generator=generator).bfloat16()
    logits = torch.randn(2, 4, 10, 7, 5, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        forms = _both_forms(values, logits, 3, 1)
    for name, grid, matrix in zip(("out", "values", "logits"), forms["grid"], forms["matrix"]):
        assert grid.dtype == matrix.dtype, name
        scale = grid.float().abs().max().item()
        torch.testing.assert_close(matrix.float(), grid.float(), rtol=0, atol=1e-5 * scale, msg=name)


def test_both_forms_take_values_and_logits_of_different_dtypes() -> None:
    generator = torch.Generator().manual_seed(8)
    values = torch.randn(2, 3, 4, 5, 6, generator=generator, dtype=torch.float64)
    logits = torch.randn(2, 3, 10, 5, 6, generator=generator)
    forms = _both_forms(values, logits, 3, 2)
    for name, grid, matrix in zip(("out", "values", "logits"), forms["grid"], forms["matrix"]):
        assert grid.dtype == matrix.dtype, name
        torch.testing.assert_close(matrix, grid, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("form", ["LocalAttentionFunction", "WindowMatrixFunction"])
def test_a_second_derivative_through_the_written_out_backward_is_refused(form: str) -> None:
    """The softmasks are computed inside the function, out of autograd's sight: its backward is not itself
    differentiable, and asking for that raises instead of giving a wrong second derivative."""
    values = torch.randn(1, 2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(1, 2, 10, 5, 5, dtype=torch.float64, requires_grad=True)
    out = getattr(stra_kernels, form).apply(values, logits, 3, 1)
    (grad,) = torch.autograd.grad(out.square().sum(), logits, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice a function that was marked with @once_differentiable"):
        grad.square().sum().backward()
