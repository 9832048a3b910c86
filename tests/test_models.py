"""The face ResNets: shapes, gradients, the StRA stage and its switches, checkpoints (the block's equations are
in test_stra.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from facestra import models
from facestra.errors import UserError
from facestra.models.stra import StRA, StRAOptions

SMALL = {"width": 0.125, "input_size": (32, 32)}


@pytest.mark.parametrize("name", models.names())
def test_every_architecture_embeds_and_backpropagates(name: str) -> None:
    torch.manual_seed(0)
    model = models.create(name, embedding_size=64, **SMALL)
    x = torch.randn(3, 3, 32, 32)
    embedding, diversity = model.forward_with_diversity(x)
    assert embedding.shape == (3, 64)
    assert model.embedding_size == 64 and model.input_size == (32, 32) and model.record.arch == name
    assert diversity.shape == (3,)
    (embedding.square().mean() + diversity.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == (["features.weight"] if name.startswith("iresnet") else [])  # arcface_torch fixes that scale at 1
    if name.endswith("_stra"):
        assert (diversity > 0).all() and (diversity <= 3 * 7).all()  # G - 1 per block at most
    else:
        assert (diversity == 0).all()


def test_stra_replaces_exactly_the_stage4_blocks() -> None:
    model = models.create("resnet50_stra", **SMALL)
    blocks = [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
    assert [type(block).__name__ for block in blocks] == ["Bottleneck"] * 16
    assert [type(block.mid).__name__ for block in blocks] == ["Conv2d"] * 13 + ["StRA"] * 3
    assert model.layer4[0].stra.local.stride == 2 and model.layer4[1].stra.local.stride == 1


# Every tensor name and shape of resnet50_stra and iresnet50_stra (width 0.125, 32x32 inputs, 16-d
# embeddings) as facestra 0.2 saved them, captured from 0.2 with ``model.state_dict()``.
STATE_DICTS_0_2 = Path(__file__).with_name("state_dicts_0.2.txt")


def test_the_tensors_are_named_and_shaped_as_in_the_model_files_of_0_2() -> None:
    """Model files and run folders of 0.2 load strictly only while every name and shape stays."""
    expected = [line.split(" ") for line in STATE_DICTS_0_2.read_text().splitlines()]
    built = []
    for arch in ("resnet50_stra", "iresnet50_stra"):
        model = models.create(arch, width=0.125, embedding_size=16, input_size=(32, 32))
        built += [[arch, name, "x".join(map(str, tensor.shape)) or "-"] for name, tensor in model.state_dict().items()]
    assert len(expected) == 1010
    assert built == expected


def _outputs(variant: dict, reference_state: dict | None = None) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    block = StRA(32, options=StRAOptions(groups=4, **variant)).eval()
    if reference_state is not None:
        block.load_state_dict(reference_state, strict=False)
    # non-trivial BN statistics so that every branch contributes
    for module in block.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(2, 32, 6, 6, generator=torch.Generator().manual_seed(3))
    return block(x), block.state_dict()


@pytest.mark.parametrize(
    "switch",
    [{"mode_attention": False}, {"mode_interaction": False}, {"gate": "softmax"}, {"gate": "tanh"}, {"kernel_size": 5}],
)
def test_each_ablation_switch_changes_the_computation(switch: dict) -> None:
    default, state = _outputs({})
    ablated, _ = _outputs(switch, reference_state={k: v for k, v in state.items() if "logits.3" not in k and "logits.4" not in k})
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
    assert loaded.record.arch_kwargs == model.record.arch_kwargs | {"input_size": (32, 32)}


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


def test_model_files_of_the_earlier_stra_block_are_refused_in_one_line(tmp_path) -> None:
    model = models.create("resnet50_stra", **SMALL)
    path = tmp_path / "old.pt"
    models.save(model, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["layer4.0.stra.local.omega.0.weight"] = torch.zeros(16, 8, 1, 1)  # 0.1's ω branch
    torch.save(payload, path)
    with pytest.raises(UserError, match=r"old.pt: holds the StRA block of facestra 0.1, .*retrain the model"):
        models.load(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("kwargs"), "it lacks its architecture, arguments or weights"),
        (lambda p: p.pop("state_dict"), "it lacks its architecture, arguments or weights"),
        (lambda p: p["kwargs"].update(bogus=1), r"bad arguments for resnet18 \(.*bogus"),
        (lambda p: p.update(arch="resnet9000"), "unknown architecture 'resnet9000'"),
        (lambda p: p.update(input={"mean": "x"}), "unreadable input convention"),
    ],
)
def test_malformed_model_files_are_not_facestra_model_files(tmp_path, change, message) -> None:
    with pytest.raises(UserError, match=rf"m.pt: not a facestra model file: {message}"):
        models.load(_saved_then_changed(tmp_path / "m.pt", change))


def _saved_then_changed(path, change):
    """A resnet18 model file at ``path`` whose payload ``change`` edited in place, as a hand or a tool would."""
    models.save(models.create("resnet18", **SMALL), path)
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def _set_kwarg(name, value):
    return lambda payload: payload["kwargs"].update({name: value})


def _set_threshold(value):
    return lambda payload: payload.update(verification={"benchmark": "lfw", "threshold": value, "accuracy": 0.9})


def _set_tensor(rank, make):
    """Replace the first weight of ``rank`` dimensions (a convolution's 4, a linear layer's 2) by ``make(it)``
    (the names are the network's own: the test does not depend on them)."""
    def change(payload):
        state = payload["state_dict"]
        key = next(k for k, v in state.items() if k.endswith(".weight") and v.dim() == rank)
        state[key] = make(state[key])
    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set_kwarg("width", 1e9), r"not a facestra model file: bad arguments for resnet18 \(width 1000000000.0 is outside 0.125 to 8\)"),
        (_set_kwarg("width", float("nan")), r"bad arguments for resnet18 \(width nan is not a number\)"),
        (_set_kwarg("embedding_size", -3), r"bad arguments for resnet18 \(embedding_size -3 is outside 1 to 16384\)"),
        (_set_kwarg("embedding_size", "512"), r"bad arguments for resnet18 \(embedding_size '512' is not an integer\)"),
        (_set_kwarg("input_size", [0, 0]), r"bad arguments for resnet18 \(input_size \[0, 0\] is not two sides of 8 to 4096 pixels\)"),
        (_set_kwarg("input_size", [100000, 32]), r"input_size \[100000, 32\] is not two sides of 8 to 4096 pixels"),
        (_set_kwarg("dropout", 5.0), r"bad arguments for resnet18 \(dropout 5.0 is outside 0 to 1\)"),
        (_set_threshold(float("nan")), r"its recorded verification threshold nan is not a distance from 0 to 4"),
        (_set_threshold(-1.0), r"its recorded verification threshold -1.0 is not a distance from 0 to 4"),
        (_set_threshold(9.5), r"its recorded verification threshold 9.5 is not a distance from 0 to 4"),
        (_set_threshold("1.2"), r"its recorded verification threshold '1.2' is not a distance from 0 to 4"),
        (lambda payload: payload.update(verification=[1.2]), r"not a facestra model file: its verification record is a list"),
        (_set_tensor(2, lambda t: t.reshape(-1)), r"tensor '[\w.]+' has shape \(\d+,\) but resnet18 needs \(\d+, \d+\)"),
        (_set_tensor(4, lambda t: torch.empty(0)), r"tensor '[\w.]+' has shape \(0,\) but resnet18 needs \(\d+, 3, \d+, \d+\)"),
        (_set_tensor(4, lambda t: t.to(torch.int32)), r"tensor '[\w.]+' holds int32 values, but resnet18 needs floating-point weights"),
        (_set_tensor(4, lambda t: t.bool()), r"tensor '[\w.]+' holds bool values"),
        (_set_tensor(4, lambda t: t.tolist()), r"entry '[\w.]+' is a list, not a tensor"),
    ],
)
def test_model_files_with_absurd_arguments_thresholds_or_tensors_are_one_line(tmp_path, change, message) -> None:
    with pytest.raises(UserError, match=rf"m.pt: .*{message}"):
        models.load(_saved_then_changed(tmp_path / "m.pt", change))


def test_a_backbone_pth_with_integer_tensors_is_one_line(tmp_path) -> None:
    from _arcface_state import arcface_state_dict

    state = arcface_state_dict("iresnet18", embedding=64)
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"].to(torch.int8)
    torch.save(state, tmp_path / "backbone.pth")
    with pytest.raises(UserError, match=r"backbone.pth: tensor 'layer1.0.conv1.weight' holds int8 values, but iresnet18 needs floating-point"):
        models.load(tmp_path / "backbone.pth")


def test_a_model_carries_one_typed_record_of_what_it_is(tmp_path) -> None:
    """Architecture, arguments, input convention, what was measured and where the weights came from: one
    record, replaced (never changed in place), saved and read back; no separate attributes."""
    from dataclasses import FrozenInstanceError

    from facestra.models.record import ModelRecord, with_record

    model = models.create("resnet18", width=0.125, input_size=(32, 32), embedding_size=16)
    assert model.record == ModelRecord(arch="resnet18", arch_kwargs={"width": 0.125, "input_size": (32, 32), "embedding_size": 16})
    assert not any(hasattr(model, name) for name in ("arch", "arch_kwargs", "input_convention", "verification", "calibration"))
    with pytest.raises(FrozenInstanceError):
        model.record.arch = "other"  # type: ignore[misc]
    with_record(model, verification={"benchmark": "lfw", "threshold": 1.2, "accuracy": 0.9}, initialised_from={"path": "a", "sha256": "b"})
    models.save(model, tmp_path / "m.pt")
    loaded = models.load(tmp_path / "m.pt").record
    assert loaded.origin == "facestra model file" and loaded.arch == "resnet18"
    assert loaded.verification == {"benchmark": "lfw", "threshold": 1.2, "accuracy": 0.9}
    assert loaded.initialised_from == {"path": "a", "sha256": "b"} and loaded.calibration is None
    assert loaded.input_convention == model.record.input_convention
