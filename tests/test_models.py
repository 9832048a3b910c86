"""The StRA block and the face ResNets: shapes, gradients, the paper's equations, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facestra import models
from facestra.errors import UserError
from facestra.models.stra import LocalAttention, ModeAttention, StRA, diversity_loss

SMALL = {"width": 0.125, "input_size": (32, 32)}


def _reference_local_attention(module: LocalAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 written the direct way, with F.unfold (a K²-fold copy), for comparison."""
    b, c, h, w = x.shape
    k, s, g = module.kernel_size, module.stride, module.groups
    pad = k // 2
    h_out, w_out = (h - 1) // s + 1, (w - 1) // s + 1
    omega = module.omega(x)[:, :, ::s, ::s].reshape(b, g, k * k, h_out * w_out)
    nu = module.nu(x)
    nu_neighbours = F.unfold(nu, k, padding=pad, stride=s).view(b, g, k * k, h_out * w_out)
    valid = F.unfold(torch.ones(1, 1, h, w), k, padding=pad, stride=s).view(1, 1, k * k, h_out * w_out)
    logits = (omega + nu_neighbours).masked_fill(valid == 0, float("-inf"))
    weights = logits.softmax(dim=2)
    values = F.unfold(x, k, padding=pad, stride=s).view(b, g, c // g, k * k, h_out * w_out)
    out = (values * weights.unsqueeze(2)).sum(dim=3)
    return out.view(b, c, h_out, w_out)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_local_attention_matches_direct_unfold_form(stride: int, kernel_size: int) -> None:
    torch.manual_seed(0)
    module = LocalAttention(32, groups=4, kernel_size=kernel_size, stride=stride).eval()
    x = torch.randn(2, 32, 9, 7)
    out = module(x)
    assert out.shape == (2, 32, (9 - 1) // stride + 1, (7 - 1) // stride + 1)
    torch.testing.assert_close(out, _reference_local_attention(module, x), rtol=1e-5, atol=1e-5)


def test_local_attention_softmasks_sum_to_one_over_existing_neighbours() -> None:
    torch.manual_seed(0)
    module = LocalAttention(16, groups=4, kernel_size=3).eval()
    weights = module.attention(torch.randn(2, 16, 6, 6))
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(2, 4, 6, 6))
    # the top-left output position has no neighbours above or left: they get exactly zero weight
    assert torch.all(weights[:, :, [0, 1, 2, 3, 6], 0, 0] == 0)


def test_mode_attention_masks_and_softmax_gate_sum_to_one() -> None:
    torch.manual_seed(0)
    module = ModeAttention(16, groups=4, gate="softmax").eval()
    s = torch.randn(3, 16, 5, 4)
    out, masks = module(s)
    assert out.shape == s.shape and masks.shape == (3, 4, 5, 4)
    torch.testing.assert_close(masks.flatten(2).sum(dim=2), torch.ones(3, 4))
    nodes = s.view(3, 4, 4, 20)
    modal = torch.einsum("bgcn,bgn->bgc", nodes, masks.flatten(2))
    coefficients = module._gate(torch.einsum("bgcn,bgc->bgn", nodes, modal))
    torch.testing.assert_close(coefficients.sum(dim=1), torch.ones(3, 20))


def test_mode_attention_follows_equations_5_and_6() -> None:
    """Recompute the context node by node with python loops (sigmoid gate, mode interaction)."""
    torch.manual_seed(1)
    module = ModeAttention(6, groups=2, gate="sigmoid", interaction=True).eval()
    s = torch.randn(1, 6, 2, 3)
    out, masks = module(s)
    g, c = 2, 3
    nodes = [s[0, i * c : (i + 1) * c].reshape(c, -1) for i in range(g)]  # c x N per mode
    z = [(nodes[i] * masks[0, i].reshape(1, -1)).sum(dim=1) for i in range(g)]
    z_prime = []
    for i in range(g):
        affinity = torch.softmax(torch.stack([z[i] @ z[j] for j in range(g)]), dim=0)
        z_prime.append(sum(affinity[j] * z[j] for j in range(g)))
    for i in range(g):
        r = torch.sigmoid(z[i] @ nodes[i])  # one coefficient per node
        expected = nodes[i] + z_prime[i].unsqueeze(1) * r.unsqueeze(0)
        torch.testing.assert_close(out[0, i * c : (i + 1) * c].reshape(c, -1), expected)


def test_diversity_loss_bounds() -> None:
    groups, h, w = 4, 3, 3
    one_hot = torch.zeros(1, groups, h, w)
    for g in range(groups):
        one_hot[0, g].view(-1)[2 * g] = 1.0
    assert diversity_loss(one_hot).item() == 0.0
    identical = torch.softmax(torch.randn(1, 1, h * w), dim=2).view(1, 1, h, w).repeat(1, groups, 1, 1)
    assert diversity_loss(identical).item() == pytest.approx(groups - 1)


@pytest.mark.parametrize("name", models.names())
def test_every_architecture_embeds_and_backpropagates(name: str) -> None:
    torch.manual_seed(0)
    model = models.create(name, embedding_size=64, **SMALL)
    x = torch.randn(3, 3, 32, 32)
    embedding, diversity = model(x, return_diversity=True)
    assert embedding.shape == (3, 64)
    assert model.embedding_size == 64 and model.input_size == (32, 32) and model.arch == name
    (embedding.square().mean() + diversity).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    if name.endswith("_stra"):
        assert 0 < diversity.item() <= 7  # G - 1 is the largest value
    else:
        assert diversity.item() == 0


def test_stra_replaces_exactly_the_stage4_blocks() -> None:
    model = models.create("resnet50_stra", **SMALL)
    kinds = [type(block).__name__ for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
    assert kinds == ["Bottleneck"] * 13 + ["StRABottleneck"] * 3
    assert model.layer4[0].stra.local.stride == 2 and model.layer4[1].stra.local.stride == 1


def _outputs(variant: dict, reference_state: dict | None = None) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    block = StRA(32, groups=4, **variant).eval()
    if reference_state is not None:
        block.load_state_dict(reference_state, strict=False)
    # non-trivial BN statistics so that every branch contributes
    for module in block.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(2, 32, 6, 6, generator=torch.Generator().manual_seed(3))
    return block(x)[0], block.state_dict()


@pytest.mark.parametrize(
    "switch",
    [{"mode_attention": False}, {"mode_interaction": False}, {"gate": "softmax"}, {"gate": "tanh"}, {"kernel_size": 5}],
)
def test_each_ablation_switch_changes_the_computation(switch: dict) -> None:
    default, state = _outputs({})
    ablated, _ = _outputs(switch, reference_state={k: v for k, v in state.items() if "omega.3" not in k})
    assert default.shape == ablated.shape
    assert (default - ablated).abs().max() > 1e-3


def test_number_of_modes_sets_masks_and_groups() -> None:
    model = models.create("resnet50_stra", groups=4, **SMALL)
    masks = models.mode_masks(model, torch.randn(2, 3, 32, 32))
    assert [m.shape for m in masks] == [(2, 4, 2, 2)] * 3
    with pytest.raises(ValueError, match="divisible"):
        models.create("resnet50_stra", groups=3, **SMALL)


def test_stra_options_are_refused_for_plain_resnets() -> None:
    with pytest.raises(ValueError, match="only apply"):
        models.create("resnet50", gate="tanh")


def test_eval_mode_is_deterministic() -> None:
    model = models.create("resnet50_stra", dropout=0.5, **SMALL).eval()
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(model(x), model(x))


def test_save_and_load_give_identical_embeddings(tmp_path) -> None:
    torch.manual_seed(0)
    model = models.create("resnet50_stra", gate="tanh", kernel_size=5, embedding_size=32, **SMALL)
    model.train()
    model(torch.randn(8, 3, 32, 32))  # move the BN running statistics away from their initial values
    model.eval()
    path = tmp_path / "model.pt"
    models.save(model, path)
    payload = torch.load(path, weights_only=True)
    assert payload["arch"] == "resnet50_stra" and payload["embedding_size"] == 32
    loaded = models.load(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert loaded.arch_kwargs == model.arch_kwargs | {"input_size": (32, 32)}


def test_load_rejects_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(UserError, match="no such checkpoint"):
        models.load(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt: not a readable checkpoint"):
        models.load(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(UserError, match="not a facestra model file"):
        models.load(foreign)


def test_unknown_architecture_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown architecture 'resnet51'"):
        models.create("resnet51")
