"""The classification heads against the formulas of CosFace and ArcFace, computed independently in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facestra.train.heads import ClassifierHead, MarginSpec, margin_logits


def _numpy_cosines(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    w = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    return e @ w.T


def _head(loss: str, **kwargs) -> tuple[ClassifierHead, np.ndarray, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    head = ClassifierHead(8, 5, loss=loss, **kwargs)
    with torch.no_grad():
        head.weight.normal_()
    embeddings = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0])
    return head, embeddings, labels, head.weight.detach().numpy().astype(np.float64)


def test_paper_defaults_and_overrides():
    assert (ClassifierHead(4, 3, loss="cosface").spec.scale, ClassifierHead(4, 3, loss="cosface").spec.margin) == (20.0, 0.2)
    assert (ClassifierHead(4, 3, loss="arcface").spec.scale, ClassifierHead(4, 3, loss="arcface").spec.margin) == (20.0, 0.15)
    head = ClassifierHead(4, 3, loss="arcface", scale=64, margin=0.5)
    assert (head.spec.scale, head.spec.margin) == (64.0, 0.5)
    with pytest.raises(ValueError, match="unknown loss"):
        ClassifierHead(4, 3, loss="sphereface")


def test_cosface_matches_formula():
    head, embeddings, labels, weights = _head("cosface", scale=30.0, margin=0.35)
    logits, plain = head(torch.from_numpy(embeddings), torch.from_numpy(labels))
    cos = _numpy_cosines(embeddings.astype(np.float64), weights)
    expected = 30.0 * cos
    expected[np.arange(len(labels)), labels] = 30.0 * (cos[np.arange(len(labels)), labels] - 0.35)
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plain.detach().numpy(), 30.0 * cos, rtol=1e-5, atol=1e-5)


def test_arcface_matches_formula():
    head, embeddings, labels, weights = _head("arcface", scale=20.0, margin=0.15)
    logits, _ = head(torch.from_numpy(embeddings), torch.from_numpy(labels))
    cos = _numpy_cosines(embeddings.astype(np.float64), weights)
    theta = np.arccos(np.clip(cos, -1, 1))
    rows = np.arange(len(labels))
    assert np.all(theta[rows, labels] + 0.15 < math.pi), "random data stays out of the fallback region"
    expected = 20.0 * cos
    expected[rows, labels] = 20.0 * np.cos(theta[rows, labels] + 0.15)
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-5, atol=1e-4)


def test_arcface_fallback_beyond_pi():
    margin, scale = 0.5, 10.0
    angles = np.array([0.1, 1.0, math.pi - 0.6, math.pi - 0.4, math.pi - 0.05])
    cosine = torch.tensor(np.cos(angles), dtype=torch.float64).unsqueeze(1).repeat(1, 2)
    labels = torch.zeros(len(angles), dtype=torch.long)
    arcface = MarginSpec("arcface", scale, margin)
    target = margin_logits(cosine, labels, arcface)[:, 0].numpy()
    expected = np.where(angles + margin <= math.pi, np.cos(angles + margin), np.cos(angles) - margin * math.sin(margin))
    np.testing.assert_allclose(target, scale * expected, rtol=1e-9, atol=1e-9)
    # The non-target column is untouched, and the target logit keeps falling as the angle grows.
    np.testing.assert_allclose(margin_logits(cosine, labels, arcface)[:, 1].numpy(), scale * np.cos(angles))
    grid = torch.tensor(np.cos(np.linspace(0, math.pi, 2001)), dtype=torch.float64).unsqueeze(1)
    curve = margin_logits(grid, torch.zeros(len(grid), dtype=torch.long), MarginSpec("arcface", 1.0, margin))[:, 0].numpy()
    assert np.all(np.diff(curve) <= 1e-12)


def test_cosface_function_only_touches_target():
    cosine = torch.tensor([[0.5, 0.2, -0.1]])
    out = margin_logits(cosine, torch.tensor([2]), MarginSpec("cosface", 2.0, 0.3))
    np.testing.assert_allclose(out.numpy(), [[1.0, 0.4, -0.8]], atol=1e-6)


def test_softmax_head_is_linear_and_loss_is_cross_entropy():
    head, embeddings, labels, weights = _head("softmax")
    with torch.no_grad():
        head.bias.copy_(torch.arange(5.0))
    logits, plain = head(torch.from_numpy(embeddings), torch.from_numpy(labels))
    expected = embeddings.astype(np.float64) @ weights.T + np.arange(5.0)
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(logits, plain)
    loss = F.cross_entropy(logits, torch.from_numpy(labels)).item()
    shifted = expected - expected.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-log_probs[np.arange(len(labels)), labels].mean(), rel=1e-5)


def test_margin_heads_are_scale_invariant_in_the_embedding():
    head, embeddings, labels, _ = _head("arcface")
    x = torch.from_numpy(embeddings)
    a, _ = head(x, torch.from_numpy(labels))
    b, _ = head(7.5 * x, torch.from_numpy(labels))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["cosface", "arcface"])
def test_a_label_of_minus_one_leaves_its_row_without_margin(loss: str) -> None:
    """arcface_torch's convention, which the sharded head relies on: -1 = the class is in another shard."""
    cosine = torch.tensor([[0.3, 0.8, -0.2], [0.6, 0.1, 0.9], [1.0000001, 0.2, 0.4]], dtype=torch.float64)
    spec = MarginSpec.of(loss)
    out = margin_logits(cosine, torch.tensor([1, -1, 0]), spec).numpy()
    c = np.clip(cosine.numpy(), -1, 1) if loss == "arcface" else cosine.numpy()
    target = np.cos(np.arccos(c[0, 1]) + 0.15) if loss == "arcface" else c[0, 1] - 0.2
    edge = np.cos(np.arccos(c[2, 0]) + 0.15) if loss == "arcface" else c[2, 0] - 0.2
    expected = 20.0 * np.array([[c[0, 0], target, c[0, 2]], c[1], [edge, c[2, 1], c[2, 2]]])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_margin_specifications_are_arcface_torchs_combined_margins_and_check_themselves() -> None:
    assert MarginSpec.of("arcface", margin=0.5).margins == (1.0, 0.5, 0.0)
    assert MarginSpec.of("cosface", margin=0.35).margins == (1.0, 0.0, 0.35)
    assert MarginSpec.of("softmax") == MarginSpec("softmax", 1.0, 0.0)
    with pytest.raises(ValueError, match="plain softmax has neither"):
        MarginSpec.of("softmax", scale=30.0)
    with pytest.raises(ValueError, match="scale must be positive, got 0.0"):
        MarginSpec.of("cosface", scale=0.0)
    with pytest.raises(ValueError, match="margin must not be negative, got -0.1"):
        MarginSpec.of("arcface", margin=-0.1)
    with pytest.raises(ValueError, match="unknown loss 'sphereface'"):
        MarginSpec.of("sphereface")


@pytest.mark.parametrize("margins", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.35), (1.35, 0.0, 0.0), (1.0, 0.3, 0.2)])
def test_margin_logits_gradients_match_finite_differences(margins: tuple[float, float, float]) -> None:
    """The backward of the margin written into one column per row (a row of label -1 among them) against
    central differences in float64, cosines kept away from the clamp at ±1 and the fallbacks' kinks."""
    spec = MarginSpec.of("combined", margins=margins)
    cosine = torch.tensor([[0.3, 0.8, -0.2, 0.1], [0.6, 0.1, 0.5, -0.4], [0.2, -0.3, 0.4, 0.7]],
                          dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, -1, 3])
    assert torch.autograd.gradcheck(lambda c: margin_logits(c, labels, spec), (cosine,))
    upstream = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(margin_logits(cosine, labels, spec), cosine, upstream)
    # every column but the true class passes s times the upstream gradient through, and so does a -1 row
    expected = spec.scale * upstream
    np.testing.assert_allclose(np.delete(grad[0].numpy(), 1), np.delete(expected[0].numpy(), 1), rtol=1e-12)
    np.testing.assert_allclose(grad[1].numpy(), expected[1].numpy(), rtol=1e-12)
