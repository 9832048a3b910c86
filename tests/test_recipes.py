"""arcface_torch's recipes against independent computations: the polynomial schedule at every step, the
combined margin's logits, AdamW and clipping by their formulas, the presets against the config files, and
the synthetic dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facestra.cli.main import main
from facestra.data.datasets import open_dataset
from facestra.errors import UserError
from facestra.train import TrainConfig, build_config, train
from facestra.train.config import PRESETS
from facestra.train.heads import ClassifierHead, MarginSpec, margin_logits
from facestra.train.optim import Optimisation
from facestra.train.partial_fc import ShardedClassifierHead

SMALL = dict(arch="resnet18", width=0.125, input_size=(32, 32), embedding_size=32, workers=0, log_every=1, device="cpu", threads=1)


def _steps(run: Path) -> list[dict]:
    return [row for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if row["kind"] == "step"]


def arcface_torch_poly_closed_form(base_lr: float, last_epoch: int, warmup_iters: int, total_iters: int, power: float) -> float:
    """PolynomialLRWarmup._get_closed_form_lr (arcface_torch lr_scheduler.py), written out again; its 0/0 at
    step 0 without warm-up is the rate the optimizer starts with."""
    if last_epoch <= warmup_iters:
        return base_lr if warmup_iters == 0 else base_lr * last_epoch / warmup_iters
    return base_lr * (1.0 - (min(total_iters, last_epoch) - warmup_iters) / (total_iters - warmup_iters)) ** power


@pytest.mark.parametrize("warmup_epochs", [0, 1])
def test_the_poly_schedule_is_polynomial_lr_warmup_at_every_step(tmp_path, warmup_epochs):
    run = tmp_path / "run"
    # 64 images / batch 16: 4 steps per epoch, 3 epochs; the rate logged with each step is the one it used
    train(TrainConfig(data="synthetic:8:64", out=str(run), batch_size=16, epochs=3, lr=0.2, schedule="poly",
                      warmup_epochs=warmup_epochs, **SMALL))
    logged = [row["lr"] for row in _steps(run)]
    expected = [arcface_torch_poly_closed_form(0.2, step, 4 * warmup_epochs, 12, 2.0) for step in range(12)]
    assert len(logged) == 12
    assert logged == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_the_cosine_schedule_follows_its_formula(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(data="synthetic:8:64", out=str(run), batch_size=16, epochs=2, lr=0.1, schedule="cosine", warmup_epochs=0.5, **SMALL))
    expected = [0.1 * s / 2 if s <= 2 else 0.05 * (1 + math.cos(math.pi * (s - 2) / 6)) for s in range(8)]
    assert [row["lr"] for row in _steps(run)] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def _cosines(rows: int = 6, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    cosine = torch.rand(rows, classes, generator=generator, dtype=torch.float64) * 2 - 1
    cosine[0, 1] = -0.99  # θ + m past π: ArcFace's fallback
    labels = torch.tensor([1, 0, 4, 2, -1, 3])  # -1: another shard's class, no margin
    return cosine, labels


def _direct(cosine: torch.Tensor, labels: torch.Tensor, s: float, m1: float, m2: float, m3: float) -> torch.Tensor:
    """s·(cos(m1·θ_y + m2) − m3) on each true class, written element by element with math."""
    out = s * cosine.clone()
    for row, label in enumerate(labels.tolist()):
        if label < 0:
            continue
        c = float(cosine[row, label])
        theta = math.acos(c)
        if m1 * theta + m2 < math.pi:
            target = math.cos(m1 * theta + m2)
        else:  # arcface_torch: cos θ − sin(π − m)·m
            target = c - math.sin(math.pi - m2) * m2
        out[row, label] = s * (target - m3)
    return out


@pytest.mark.parametrize("margins, equivalent", [((1.0, 0.5, 0.0), ("arcface", 0.5)), ((1.0, 0.0, 0.35), ("cosface", 0.35))])
def test_the_combined_margin_is_its_formula_and_the_arcface_and_cosface_heads(margins, equivalent):
    cosine, labels = _cosines()
    combined = margin_logits(cosine, labels, MarginSpec.of("combined", scale=64.0, margins=margins))
    assert torch.allclose(combined, _direct(cosine, labels, 64.0, *margins), rtol=0, atol=1e-12)
    loss, margin = equivalent
    assert torch.equal(combined, margin_logits(cosine, labels, MarginSpec.of(loss, scale=64.0, margin=margin)))


def test_a_multiplicative_margin_is_cos_of_m1_theta_where_defined():
    cosine, labels = _cosines(seed=1)
    cosine[0, 1] = 0.9
    out = margin_logits(cosine, labels, MarginSpec.of("combined", scale=2.0, margins=(2.0, 0.0, 0.1)))
    theta = math.acos(0.9)
    assert float(out[0, 1]) == pytest.approx(2.0 * (math.cos(2 * theta) - 0.1), abs=1e-6)
    # continuous and decreasing in θ across m1·θ = π
    grid = torch.linspace(-1, 1, 2001, dtype=torch.float64).unsqueeze(1)
    curve = margin_logits(grid, torch.zeros(len(grid), dtype=torch.long), MarginSpec.of("combined", scale=1.0, margins=(2.0, 0.0, 0.0)))[:, 0]
    assert bool((curve[1:] >= curve[:-1] - 1e-9).all()) and float((curve[1:] - curve[:-1]).abs().max()) < 0.05


@pytest.mark.parametrize("margins", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4)])
def test_the_partial_fc_head_gives_the_replicated_heads_losses_with_the_combined_margin(margins):
    generator = torch.Generator().manual_seed(7)
    embeddings = torch.randn(12, 16, generator=generator)
    labels = torch.randint(0, 10, (12,), generator=generator)
    replicated = ClassifierHead(16, 10, loss="combined", margins=margins, scale=64.0)
    sharded = ShardedClassifierHead(16, 10, loss="combined", margins=margins, scale=64.0, sample_rate=1.0)
    with torch.no_grad():
        replicated.weight.copy_(sharded.weight)
    ours, _ = sharded.loss_and_correct(embeddings, labels)
    theirs, _ = replicated.loss_and_correct(embeddings, labels)
    assert torch.allclose(ours, theirs, rtol=1e-5)
    # and both the cross-entropy of the direct formula
    cosine = torch.nn.functional.normalize(embeddings.double(), dim=1) @ torch.nn.functional.normalize(replicated.weight.detach().double(), dim=1).T
    direct = torch.nn.functional.cross_entropy(_direct(cosine, labels, 64.0, *margins), labels, reduction="none")
    assert torch.allclose(ours.double(), direct, rtol=1e-4)


def _tiny_network(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 4)), torch.nn.Linear(4, 3)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_the_optimizer_and_clipping_match_their_formulas_and_torch(optimizer):
    config = TrainConfig(data="d", out="o", optimizer=optimizer, lr=0.01, weight_decay=0.05, momentum=0.9, clip_grad_norm=0.5,
                         backbone_lr_factor=0.25, init="weights.pt")
    backbone, head = _tiny_network(0)
    optimisation = Optimisation(backbone, head, config, steps_per_epoch=10, device=torch.device("cpu"))
    # references: numpy by the formulas, and torch's own optimizer and clip_grad_norm_ on a copy
    reference = {name: p.detach().double().numpy().copy() for name, p in [*backbone.named_parameters(prefix="b"), *head.named_parameters(prefix="h")]}
    state = {name: (np.zeros_like(v), np.zeros_like(v)) for name, v in reference.items()}
    torch_backbone, torch_head = _tiny_network(0)
    torch_optimizer = (torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD)(
        [{"params": torch_backbone.parameters(), "lr": 0.0025}, {"params": torch_head.parameters(), "lr": 0.01}],
        weight_decay=0.05, **({"momentum": 0.9} if optimizer == "sgd" else {}),
    )
    generator = torch.Generator().manual_seed(1)
    for step in range(1, 4):
        grads = {name: torch.randn(v.shape, generator=generator, dtype=torch.float64) * 3 for name, v in reference.items()}
        for model, prefix in ((backbone, "b"), (head, "h"), (torch_backbone, "b"), (torch_head, "h")):
            for name, p in model.named_parameters(prefix=prefix):
                p.grad = grads[name].float().clone()
        optimisation.step()
        torch.nn.utils.clip_grad_norm_(torch_backbone.parameters(), 0.5)
        torch_optimizer.step()

        backbone_norm = math.sqrt(sum(float(grads[n].float().double().pow(2).sum()) for n in reference if n.startswith("b")))
        clip = min(1.0, 0.5 / (backbone_norm + 1e-6))
        for name, value in reference.items():
            grad = grads[name].float().double().numpy() * (clip if name.startswith("b") else 1.0)
            lr = 0.0025 if name.startswith("b") else 0.01
            first, second = state[name]
            if optimizer == "adamw":
                value *= 1 - lr * 0.05
                first[:] = 0.9 * first + 0.1 * grad
                second[:] = 0.999 * second + 0.001 * grad * grad
                value -= lr * (first / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
            else:
                grad = grad + 0.05 * value
                first[:] = grad if step == 1 else 0.9 * first + grad
                value -= lr * first
    ours = {name: p.detach() for name, p in [*backbone.named_parameters(prefix="b"), *head.named_parameters(prefix="h")]}
    theirs = dict([*torch_backbone.named_parameters(prefix="b"), *torch_head.named_parameters(prefix="h")])
    for name, value in reference.items():
        assert np.allclose(ours[name].double().numpy(), value, rtol=1e-5, atol=1e-6), name
        assert torch.equal(ours[name], theirs[name].detach()), name


# Written from deepinsight/insightface recognition/arcface_torch/configs at the commits named in
# facestra/train/config.py (ms1mv3_r50.py 5ef9804, ms1mv3_r100.py fe116a4, glint360k_r50.py d9cb10e; the
# optimizer from base.py 4f227ba), as those files spell them; train_v2.py adds s = 64 and clip 5.
ARCFACE_TORCH_CONFIGS = {
    "ms1mv3_r50": dict(margin_list=(1.0, 0.5, 0.0), network="r50", embedding_size=512, sample_rate=1.0, fp16=True, momentum=0.9,
                       weight_decay=5e-4, batch_size=128, lr=0.2, num_epoch=25, warmup_epoch=2, optimizer="sgd"),
    "ms1mv3_r100": dict(margin_list=(1.0, 0.5, 0.0), network="r100", embedding_size=512, sample_rate=1.0, fp16=True, momentum=0.9,
                        weight_decay=5e-4, batch_size=128, lr=0.2, num_epoch=25, warmup_epoch=0, optimizer="sgd"),
    "glint360k_r50": dict(margin_list=(1.0, 0.0, 0.4), network="r50", embedding_size=512, sample_rate=1.0, fp16=True, momentum=0.9,
                          weight_decay=1e-4, batch_size=128, lr=0.1, num_epoch=20, warmup_epoch=0, optimizer="sgd"),
}


@pytest.mark.parametrize("name", sorted(ARCFACE_TORCH_CONFIGS))
def test_each_arcface_torch_preset_is_its_config_file(name):
    published = ARCFACE_TORCH_CONFIGS[name]
    config = build_config({"data": "train.rec", "out": "run"}, name)
    assert config.arch == {"r50": "iresnet50", "r100": "iresnet100"}[published["network"]]
    assert (config.width, config.input_size) == (1.0, (112, 112))
    assert config.loss == "combined" and tuple(config.margins) == published["margin_list"] and config.scale == 64.0
    assert config.embedding_size == published["embedding_size"] and config.sample_rate == published["sample_rate"]
    assert config.amp == ("fp16" if published["fp16"] else "none")
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == (
        published["optimizer"], published["lr"], published["momentum"], published["weight_decay"])
    assert config.batch_size == published["batch_size"] * 8  # arcface_torch's batch_size is per GPU, on 8 GPUs
    assert (config.epochs, config.warmup_epochs, config.schedule, config.clip_grad_norm) == (
        published["num_epoch"], published["warmup_epoch"], "poly", 5.0)
    # explicit options still win, and the paper's presets are still there
    assert build_config({"data": "d", "out": "o", "lr": 0.05, "amp": "bf16"}, name).lr == 0.05
    assert {"paper-medium", "paper-vggface2"} <= set(PRESETS)


def test_the_synthetic_dataset_is_one_image_under_every_index_and_refuses_bad_names(tmp_path):
    dataset = open_dataset("synthetic:5:20", (32, 32))
    assert (len(dataset), dataset.num_classes) == (20, 5)
    first, label, _, ok = dataset[(3, False)]
    again, _, _, _ = dataset[(17, False)]
    mirrored, _, _, _ = dataset[(3, True)]
    assert ok and label == 3 and torch.equal(first, again) and torch.equal(mirrored, first.flip(2)) and first.shape == (3, 32, 32)
    assert len(open_dataset("synthetic", (32, 32))) == 1_000_000
    for bad in ("synthetic:x", "synthetic:1", "synthetic:4:5:6"):
        with pytest.raises(UserError, match="the synthetic dataset is"):
            open_dataset(bad, (32, 32))


def test_train_runs_and_resumes_on_synthetic_data_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    runner = CliRunner()
    common = ["--arch", "resnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "32", "--workers", "0",
              "--device", "cpu", "--threads", "1", "--quiet", "--batch-size", "8", "--log-every", "1"]
    result = runner.invoke(main, ["train", "--data", "synthetic:4:64", "--out", str(run), "--epochs", "2", "--max-steps", "3",
                                  "--loss", "combined", "--margins", "1,0.5,0", "--optimizer", "adamw", "--lr", "0.001",
                                  "--clip-grad-norm", "5", "--amp", "bf16", *common])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["data"] == "synthetic:4:64"
    resumed = runner.invoke(main, ["train", "--resume", str(run), "--max-steps", "5", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert [row["step"] for row in _steps(run)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("extra, message", [
    (["--margins", "1,0.5,0"], "--margins applies to --loss combined, not --loss softmax"),
    (["--loss", "combined"], "--loss combined needs --margins m1,m2,m3"),
    (["--loss", "combined", "--margins", "1,0.5"], "--loss combined needs --margins m1,m2,m3"),
    (["--loss", "combined", "--margins", "0.5,0,0"], "--margins 0.5,0,0: needs m1 >= 1"),
    (["--loss", "combined", "--margins", "1,0.5,0", "--margin", "0.3"], "--loss combined takes its margins as --margins"),
    (["--preset", "ms1mv3_r50"], "--amp fp16 needs a GPU"),
])
def test_recipe_options_are_refused_in_one_line(tmp_path, extra, message):
    result = CliRunner().invoke(main, ["train", "--data", "synthetic:4:64", "--out", str(tmp_path / "run"), "--device", "cpu",
                                       "--batch-size", "8", "--quiet", *extra])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_run_saved_with_one_parameter_group_resumes_into_the_backbone_and_head_groups():
    config = TrainConfig(data="d", out="o", lr=0.1, schedule="step", lr_steps=(1,))
    backbone, head = _tiny_network(0)
    ours = Optimisation(backbone, head, config, steps_per_epoch=2, device=torch.device("cpu"))
    # what facestra 0.2 saved: SGD and LambdaLR over the network's parameters (backbone, then head) in one group
    old_backbone, old_head = _tiny_network(0)
    old = torch.optim.SGD([*old_backbone.parameters(), *old_head.parameters()], lr=0.1, momentum=0.9, weight_decay=5e-4)
    old_schedule = torch.optim.lr_scheduler.LambdaLR(old, lambda step: 0.1 ** (step >= 2))
    for step in range(3):
        for p in [*old_backbone.parameters(), *old_head.parameters()]:
            p.grad = torch.full_like(p, 0.1 * (step + 1))
        old.step()
        old_schedule.step()
    ours.load_state_dict({"optimizer": old.state_dict(), "scheduler": old_schedule.state_dict(), "scaler": ours.scaler.state_dict()})
    assert [group["lr"] for group in ours.optimizer.param_groups] == pytest.approx([0.01, 0.01])
    momenta = [ours.optimizer.state[p]["momentum_buffer"] for group in ours.optimizer.param_groups for p in group["params"]]
    expected = [old.state[p]["momentum_buffer"] for p in [*old_backbone.parameters(), *old_head.parameters()]]
    assert all(torch.equal(a, b) for a, b in zip(momenta, expected)) and len(momenta) == len(expected)
    assert ours.scheduler.last_epoch == 3
