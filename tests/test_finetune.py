"""Fine-tuning from the weights people already have (``--init``): the network and input convention are the
weights', the first step sees exactly the loaded network, a frozen backbone stays bit-identical, and a
fine-tuned run resumed after an interruption repeats the uninterrupted one bit for bit."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _train_shapes import make_image_folder
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.data.datasets import EpochBatchSampler, open_dataset
from facestra.data.images import ARCFACE_INPUT, FACESTRA_INPUT
from facestra.embed import InferenceOptions, embed_images
from facestra.errors import UserError
from facestra.train import build_config, resume_config, train
from facestra.train.heads import ClassifierHead
from facestra.train.network import build_backbone, seed_everything

TINY = dict(width=0.125, input_size=(32, 32), embedding_size=32)
RUN = dict(workers=0, log_every=1, device="cpu", threads=1)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """8 identities x 8 images of 32x32."""
    return make_image_folder(tmp_path_factory.mktemp("faces") / "train", range(8), 8)


def _iresnet_state(seed: int = 3) -> dict[str, torch.Tensor]:
    """A trained-looking tiny iresnet18: random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    network = models.create("iresnet18", **TINY)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return network.state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """The same iresnet18 as arcface_torch's backbone.pth, its checkpoint_gpu_0.pt (DDP's module. prefix) and
    a facestra model file of a resnet18 (facestra's convention)."""
    root = tmp_path_factory.mktemp("weights")
    state = _iresnet_state()
    torch.save(state, root / "backbone.pth")
    torch.save({"epoch": 3, "global_step": 99, "state_dict_backbone": {f"module.{k}": v for k, v in state.items()}},
               root / "checkpoint_gpu_0.pt")
    torch.manual_seed(5)
    models.save(models.create("resnet18", **TINY), root / "model.pt")
    return {"backbone.pth": root / "backbone.pth", "checkpoint_gpu_0.pt": root / "checkpoint_gpu_0.pt", "model.pt": root / "model.pt"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind, arch, convention", [
    ("backbone.pth", "iresnet18", ARCFACE_INPUT),
    ("checkpoint_gpu_0.pt", "iresnet18", ARCFACE_INPUT),
    ("model.pt", "resnet18", FACESTRA_INPUT),
])
def test_the_first_step_sees_the_loaded_network_on_the_weights_own_inputs(faces, weights, tmp_path, kind, arch, convention):
    init = weights[kind]
    config = build_config({"data": str(faces), "out": str(tmp_path / "run"), "init": str(init), "batch_size": 16, "epochs": 1,
                           "max_steps": 1, "freeze_backbone_epochs": 1, "loss": "arcface", **RUN})
    assert (config.arch, config.width, config.input_size, config.embedding_size) == (arch, 0.125, (32, 32), 32)
    train(config)
    logged = float((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0].split('"cls_loss": ')[1].split(",")[0])

    # the same first step computed here: the loaded network (BatchNorm on its statistics, as frozen), the
    # head drawn after the backbone from the run's seed, the epoch's first batch normalised as the weights expect
    loaded = models.load(init).eval()
    seed_everything(config.seed)
    build_backbone(config)
    head = ClassifierHead(32, 8, loss="arcface")
    dataset = open_dataset(faces, (32, 32))
    batch = next(iter(EpochBatchSampler(len(dataset), global_batch=16, seed=config.seed, epoch=0)))

    def first_loss(input_convention) -> float:
        dataset.convention = input_convention
        images, labels = zip(*[dataset[item][:2] for item in batch])
        with torch.no_grad():
            cross_entropy, _ = head.loss_and_correct(loaded(torch.stack(images)), torch.tensor(labels))
        return float(cross_entropy.mean())

    assert logged == pytest.approx(first_loss(convention), rel=1e-5)
    other = FACESTRA_INPUT if convention == ARCFACE_INPUT else ARCFACE_INPUT
    assert logged != pytest.approx(first_loss(other), rel=1e-5)  # the test tells the conventions apart


def test_a_frozen_backbone_stays_bit_identical_and_keeps_the_weights_convention_through_embed(faces, weights, tmp_path):
    init = weights["backbone.pth"]
    run = tmp_path / "run"
    config = build_config({"data": str(faces), "out": str(run), "init": str(init), "batch_size": 16, "epochs": 2,
                           "freeze_backbone_epochs": 2, "loss": "cosface", **RUN})
    result = train(config)
    assert result.global_step == 8
    saved = torch.load(run / "model.pt", weights_only=True)
    original = torch.load(init, weights_only=True)
    assert saved["state_dict"].keys() == original.keys()
    for key, value in original.items():  # BatchNorm statistics and num_batches_tracked included
        assert torch.equal(saved["state_dict"][key], value), key
    assert saved["initialised_from"] == {"path": str(init.resolve()), "sha256": _sha256(init)}
    assert saved["input"] == {"colour": "RGB", "mean": 127.5, "std": 127.5}
    # the head did learn meanwhile (its initial rows are drawn after the backbone's from the run's seed)
    seed_everything(config.seed)
    build_backbone(config)
    initial_head = ClassifierHead(32, 8, loss="cosface").weight.detach()
    trained_head = torch.load(run / "last.pt", weights_only=True)["head"]["weight"]
    assert trained_head.shape == initial_head.shape and (trained_head - initial_head).abs().max() > 1e-3
    paths = sorted(faces.rglob("*.png"))[:6]
    options = InferenceOptions(device="cpu", workers=0)
    fine_tuned = embed_images(models.load(run / "model.pt"), paths, options)
    assert torch.equal(torch.from_numpy(fine_tuned), torch.from_numpy(embed_images(models.load(init), paths, options)))


def test_init_refuses_contradicting_options_and_misfit_tensors_in_one_line(faces, weights, tmp_path):
    runner = CliRunner()
    base = ["train", "--data", str(faces), "--out", str(tmp_path / "run"), "--batch-size", "16", "--workers", "0", "--device", "cpu", "--quiet"]
    cases = [
        (["--init", str(weights["backbone.pth"]), "--input-size", "48"], "--input-size 48x48 contradicts --init"),
        (["--init", str(weights["backbone.pth"]), "--width", "0.25"], "--width 0.25 contradicts --init"),
        (["--init", str(weights["backbone.pth"]), "--embedding-size", "64"], "--embedding-size 64 contradicts --init"),
        (["--init", str(weights["backbone.pth"]), "--arch", "iresnet34"],
         "tensor 'conv1.weight' has shape (8, 3, 3, 3) but iresnet34 needs (64, 3, 3, 3)"),
        (["--init", str(weights["model.pt"]), "--arch", "resnet34"], "is a facestra model file of resnet18; leave --arch out"),
        (["--init", str(tmp_path / "missing.pth")], "no such checkpoint file"),
        (["--freeze-backbone-epochs", "1"], "--freeze-backbone-epochs applies to a run started from pretrained weights (--init)"),
        (["--backbone-lr-factor", "0.1"], "--backbone-lr-factor applies to a run started from pretrained weights"),
    ]
    state = torch.load(weights["backbone.pth"], weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "bn2.running_var"}, tmp_path / "short.pth")
    cases.append((["--init", str(tmp_path / "short.pth"), "--arch", "iresnet18"], "has no tensor 'bn2.running_var'"))
    state["fc.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad_shape.pth")
    cases.append((["--init", str(tmp_path / "bad_shape.pth")], "tensor 'fc.bias' has shape (7,)"))
    for extra, message in cases:
        result = runner.invoke(main, base + extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="`input_size` 48x48 contradicts `init`"):  # the library refuses in its own words
        train(build_config({"data": str(faces), "out": str(tmp_path / "run"), "init": str(weights["backbone.pth"]),
                            "input_size": (48, 48), "batch_size": 16, **RUN}))


def test_a_fine_tuned_run_resumed_after_an_interruption_repeats_the_uninterrupted_one(faces, weights, tmp_path):
    common = {"data": str(faces), "init": str(weights["backbone.pth"]), "batch_size": 16, "epochs": 3, "freeze_backbone_epochs": 1,
              "backbone_lr_factor": 0.1, "loss": "combined", "margins": (1.0, 0.3, 0.1), "schedule": "poly", "warmup_epochs": 1,
              "clip_grad_norm": 1.0, "dropout": 0.2, **RUN}
    straight = train(build_config({**common, "out": str(tmp_path / "straight")}))
    assert straight.global_step == 12

    def interrupt(at: int):
        def progress(event):
            if event.kind == "step" and event.global_step == at:
                os.kill(os.getpid(), signal.SIGINT)
        return progress

    broken = tmp_path / "broken"
    # stopped once in the frozen epoch (the backbone still the loaded one), once after it
    first = train(build_config({**common, "out": str(broken)}), progress=interrupt(2))
    assert first.stopped == "interrupted" and first.global_step == 3
    frozen = torch.load(broken / "last.pt", weights_only=True)
    original = torch.load(weights["backbone.pth"], weights_only=True)
    assert all(torch.equal(frozen["model"][k], v) for k, v in original.items())
    second = train(resume_config(broken), progress=interrupt(7))
    assert second.stopped == "interrupted" and second.global_step == 8
    os.replace(weights["backbone.pth"], tmp_path / "moved.pth")  # a resumed run needs the --init file no more
    try:
        last = train(resume_config(broken))
    finally:
        os.replace(tmp_path / "moved.pth", weights["backbone.pth"])
    assert last.stopped == "completed" and last.global_step == 12

    def rows(run: Path) -> list[str]:
        return [line.split('"images_per_s"')[0] for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "step"' in line]

    assert rows(broken) == rows(tmp_path / "straight")  # losses, accuracies and rates, bit for bit
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(broken / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["head"]["weight"], b["head"]["weight"])
    moved = [k for k, v in a["model"].items() if v.is_floating_point() and not torch.equal(v, original[k])]
    assert moved, "the backbone trains once unfrozen"
    backbone_group, head_group = a["optimizer"]["param_groups"]
    assert backbone_group["lr"] == pytest.approx(0.1 * head_group["lr"]) and backbone_group["initial_lr"] == pytest.approx(0.01)
    assert a["init"]["sha256"] == _sha256(weights["backbone.pth"])


def test_the_model_file_of_a_fine_tuned_run_exports_with_the_weights_convention(faces, weights, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from facestra.models.onnx import export_onnx, load_onnx

    run = tmp_path / "run"
    train(build_config({"data": str(faces), "out": str(run), "init": str(weights["backbone.pth"]), "batch_size": 16, "epochs": 1,
                        "max_steps": 2, **RUN}))
    export_onnx(models.load(run / "model.pt"), tmp_path / "model.onnx")
    exported = load_onnx(tmp_path / "model.onnx")
    assert exported.record.input_convention == ARCFACE_INPUT
    pixels = torch.randint(0, 256, (2, 3, 32, 32)).float()
    network = models.load(run / "model.pt")
    expected = F.normalize(network((pixels - 127.5) / 127.5), dim=1)
    got = F.normalize(exported((pixels - 127.5) / 127.5), dim=1)
    assert torch.allclose(got, expected, atol=1e-4)
