"""The StRA block against the paper's equations, written here as plain loops over nodes, modes and windows.

The reference reads only the block's weights; every convolution, BatchNorm, softmax, gate and sum is
recomputed in float64 numpy from the definitions (Eq. 3, 5, 6 and the Fig. 7 layout), so a wiring mistake
in the block (which channels feed ν, where the BatchNorms sit, how borders count) shows up as a mismatch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from facestra import models
from facestra.models.stra import StRA, StRAOptions, diversity_loss


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().numpy()


def _grouped_conv1x1(x: np.ndarray, conv: nn.Conv2d) -> np.ndarray:
    """y[:, o] = Σ_c w[o, c] · x[:, first input channel of o's group + c]."""
    weight = _array(conv.weight)[:, :, 0, 0]
    out_channels, in_per_group = weight.shape
    out_per_group = out_channels // conv.groups
    y = np.zeros((x.shape[0], out_channels, *x.shape[2:]))
    for o in range(out_channels):
        first = (o // out_per_group) * in_per_group
        for c in range(in_per_group):
            y[:, o] += weight[o, c] * x[:, first + c]
    assert conv.bias is None
    return y


def _batch_norm(x: np.ndarray, bn: nn.BatchNorm2d, training: bool) -> np.ndarray:
    if training:
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))  # biased, as BatchNorm normalises with it
    else:
        mean, var = _array(bn.running_mean), _array(bn.running_var)
    shape = (1, -1, 1, 1)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + bn.eps) * _array(bn.weight).reshape(shape) + _array(
        bn.bias
    ).reshape(shape)


def _mlp(x: np.ndarray, layers: nn.Sequential, training: bool) -> np.ndarray:
    conv1, bn1, _, conv2, bn2 = layers
    hidden = np.tanh(_batch_norm(_grouped_conv1x1(x, conv1), bn1, training))
    return _batch_norm(_grouped_conv1x1(hidden, conv2), bn2, training)


def _softmax(values: np.ndarray) -> np.ndarray:
    e = np.exp(values - values.max())
    return e / e.sum()


def _gate(values: np.ndarray, kind: str) -> np.ndarray:
    """values (B, G, N): the gate of Eq. 5, a softmax over the modes for "softmax"."""
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-values))
    if kind == "tanh":
        return np.tanh(values)
    out = np.empty_like(values)
    for b in range(values.shape[0]):
        for i in range(values.shape[2]):
            out[b, :, i] = _softmax(values[b, :, i])
    return out


def reference_local_attention(block: StRA, x: np.ndarray, training: bool) -> np.ndarray:
    """Eq. 3 node by node: s_i = Σ_{j∈N_K(i)} softmax_j(ω(x_i)_j + ν(x_j)) u(x_j), zero outside the map."""
    local = block.local
    b, c, h, w = x.shape
    g, k, s = local.groups, local.kernel_size, local.stride
    per_mode, pad = c // g, k // 2
    u = _grouped_conv1x1(x, local.value)
    logits = _mlp(x, local.logits, training)  # mode g owns channels g(1+K²) .. (g+1)(1+K²): [ν_g, ω_g]
    h_out, w_out = (h - 1) // s + 1, (w - 1) // s + 1
    out = np.zeros((b, c, h_out, w_out))
    for n in range(b):
        for mode in range(g):
            nu = logits[n, mode * (1 + k * k)]
            omega = logits[n, mode * (1 + k * k) + 1 : (mode + 1) * (1 + k * k)]
            for oy in range(h_out):
                for ox in range(w_out):
                    iy, ix = oy * s, ox * s  # the output node's place on the input map
                    scores, values = [], []
                    for dy in range(k):
                        for dx in range(k):
                            jy, jx = iy + dy - pad, ix + dx - pad
                            inside = 0 <= jy < h and 0 <= jx < w
                            scores.append(omega[dy * k + dx, iy, ix] + (nu[jy, jx] if inside else 0.0))
                            channels = slice(mode * per_mode, (mode + 1) * per_mode)
                            values.append(u[n, channels, jy, jx] if inside else np.zeros(per_mode))
                    weights = _softmax(np.array(scores))
                    out[n, mode * per_mode : (mode + 1) * per_mode, oy, ox] = sum(
                        weight * value for weight, value in zip(weights, values)
                    )
    return out


def reference_mode_attention(block: StRA, s: np.ndarray, training: bool) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 5 and 6: masks, modal vectors, y1 = s + σ(BN1(<s, z>)) z and, with interaction,
    y2 = y1 + σ(BN2(<y1, z'>)) z' with z'_g = Σ_j softmax_j(√G · A_gj / ||A_g||) z_j."""
    mode = block.mode
    b, c, h, w = s.shape
    g = mode.groups
    per_mode, n_nodes = c // g, h * w
    mask_logits = _mlp(s, mode.masks.logits, training).reshape(b, g, n_nodes)
    masks = np.stack([[_softmax(mask_logits[n, m]) for m in range(g)] for n in range(b)])
    nodes = s.reshape(b, g, per_mode, n_nodes)
    z = np.zeros((b, g, per_mode))
    for n in range(b):
        for m in range(g):
            for i in range(n_nodes):
                z[n, m] += masks[n, m, i] * nodes[n, m, :, i]

    def add_context(features: np.ndarray, modal: np.ndarray, bn: nn.BatchNorm2d) -> np.ndarray:
        scores = np.zeros((b, g, n_nodes))
        for n in range(b):
            for m in range(g):
                for i in range(n_nodes):
                    scores[n, m, i] = features[n, m, :, i] @ modal[n, m]
        normed = _batch_norm(scores.reshape(b, g, h, w), bn, training).reshape(b, g, n_nodes)
        gates = _gate(normed, mode.gate)
        out = features.copy()
        for n in range(b):
            for m in range(g):
                for i in range(n_nodes):
                    out[n, m, :, i] += gates[n, m, i] * modal[n, m]
        return out

    y = add_context(nodes, z, mode.gate_norm)
    if mode.interaction:
        routed = np.zeros_like(z)
        for n in range(b):
            gram = np.array([[z[n, a] @ z[n, j] for j in range(g)] for a in range(g)])
            for a in range(g):
                row = gram[a] / max(np.linalg.norm(gram[a]), 1e-12)
                weights = _softmax(math.sqrt(g) * row)
                routed[n, a] = sum(weights[j] * z[n, j] for j in range(g))
        y = add_context(y, routed, mode.interaction_gate_norm)
    return y.reshape(b, c, h, w), masks.reshape(b, g, h, w)


def _randomised_block(channels: int, groups: int, *, stride: int = 1, **options) -> StRA:
    """A block whose BatchNorms have non-trivial affine weights and running statistics."""
    torch.manual_seed(0)
    block = StRA(channels, stride=stride, options=StRAOptions(groups=groups, **options))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.3)
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return block


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "kernel_size, stride, size",
    [(3, 1, (9, 7)), (3, 2, (9, 7)), (5, 1, (7, 6)), (5, 2, (8, 5)), (7, 1, (5, 7)), (7, 2, (9, 6))],
)
def test_block_matches_the_equations_node_by_node(kernel_size: int, stride: int, size: tuple, training: bool) -> None:
    block = _randomised_block(16, 4, kernel_size=kernel_size, stride=stride).train(training)
    x = torch.randn(2, 16, *size, generator=torch.Generator().manual_seed(2))
    out, masks = block.forward_with_masks(x)
    s_expected = reference_local_attention(block, _array(x), training)
    y_expected, masks_expected = reference_mode_attention(block, s_expected, training)
    assert out.shape == (2, 16, (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)
    np.testing.assert_allclose(_array(block.local(x)), s_expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_array(masks), masks_expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_array(out), y_expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "options", [{"gate": "tanh"}, {"gate": "softmax"}, {"mode_interaction": False}, {"gate": "softmax", "mode_interaction": False}]
)
def test_every_gate_and_the_interaction_switch_match_the_equations(options: dict) -> None:
    block = _randomised_block(12, 3, kernel_size=3, **options).train()
    x = torch.randn(3, 12, 5, 6, generator=torch.Generator().manual_seed(4))
    out, _ = block.forward_with_masks(x)
    expected, _ = reference_mode_attention(block, reference_local_attention(block, _array(x), True), True)
    np.testing.assert_allclose(_array(out), expected, rtol=0, atol=1e-5)


def test_local_attention_only_returns_no_masks() -> None:
    block = _randomised_block(8, 2, mode_attention=False).eval()
    x = torch.randn(1, 8, 5, 5)
    out, masks = block.forward_with_masks(x)
    assert masks is None
    np.testing.assert_allclose(_array(out), reference_local_attention(block, _array(x), False), rtol=0, atol=1e-5)


def _gate_values(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Every sigmoid gate value σ(BN(<s, z>)) of every StRA block, both stages."""
    captured: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().sigmoid().flatten()))
        for name, module in model.named_modules()
        if name.endswith("gate_norm")
    ]
    try:
        model.forward_with_diversity(images)
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(captured)


def test_gates_are_spread_at_initialisation_not_saturated() -> None:
    torch.manual_seed(0)
    model = models.create("resnet50_stra", width=0.25, input_size=(64, 64)).train()
    gates = _gate_values(model, torch.randn(8, 3, 64, 64))
    assert gates.numel() == 8 * 6 * 8 * 4 * 4  # batch x (3 blocks x 2 stages) x G x 4x4 nodes
    inside = ((gates > 0.01) & (gates < 0.99)).float().mean().item()
    assert inside > 0.95, f"only {inside:.1%} of the gate values inside (0.01, 0.99)"
    assert gates.std().item() > 0.1


def test_diversity_loss_of_hand_made_masks() -> None:
    overlap = torch.tensor([[[0.5, 0.5], [0.0, 0.0]], [[0.25, 0.25], [0.25, 0.25]]]).unsqueeze(0)
    # max over the two modes: 0.5, 0.5, 0.25, 0.25 -> L_d = 2 - 1.5
    assert diversity_loss(overlap).tolist() == [0.5]
    disjoint = torch.zeros(1, 3, 2, 2)
    disjoint[0, 0, 0, 0] = disjoint[0, 1, 0, 1] = disjoint[0, 2, 1, 1] = 1.0
    same = torch.full((1, 3, 2, 2), 0.25)
    assert diversity_loss(torch.cat([disjoint, same])).tolist() == [0.0, 2.0]


def test_network_diversity_is_the_sum_over_its_stra_blocks_per_sample() -> None:
    torch.manual_seed(0)
    model = models.create("resnet50_stra", width=0.125, input_size=(48, 48)).eval()
    images = torch.randn(5, 3, 48, 48)
    masks = models.mode_masks(model, images)
    assert len(masks) == 3
    with torch.no_grad():
        _, diversity = model.forward_with_diversity(images)
    expected = sum(diversity_loss(block_masks) for block_masks in masks)
    assert diversity.shape == (5,)
    torch.testing.assert_close(diversity, expected)
    assert (diversity > 3).all()  # three blocks of nearly uniform masks at initialisation, far from 0


def test_parameters_per_block_are_the_authors() -> None:
    """47,272 in the released code at C'=512, G=8, K=3, of which 280 are conv biases that a BN cancels."""
    model = models.create("resnet50_stra")
    for block in model.layer4:
        stra = block.stra
        ours = sum(p.numel() for p in stra.parameters())
        biased_convs = [stra.local.logits[0], stra.local.logits[3], stra.mode.masks.logits[0], stra.mode.masks.logits[3]]
        assert ours == 46_992
        assert ours + sum(conv.out_channels for conv in biased_convs) == 47_272


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_kernel_size_reaches_every_block_and_the_first_keeps_stride_2(kernel_size: int) -> None:
    model = models.create("resnet50_stra", kernel_size=kernel_size, width=0.125, input_size=(48, 48))
    assert [block.stra.local.kernel_size for block in model.layer4] == [kernel_size] * 3
    assert [block.stra.local.stride for block in model.layer4] == [2, 1, 1]
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 512)


def test_forward_returns_embeddings_only() -> None:
    model = models.create("resnet50_stra", width=0.125, input_size=(48, 48), embedding_size=32).eval()
    x = torch.randn(2, 3, 48, 48)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 32)
    with torch.no_grad():
        embeddings, _ = model.forward_with_diversity(x)
    assert torch.equal(out, embeddings)
