"""IResNet against arcface_torch's file layout: a backbone.pth written from the layout as arcface_torch names
it (spelled out here, independently of facestra's module), read by facestra and checked against a forward
pass written with torch.nn.functional on the same tensors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from _arcface_state import arcface_inference_input, arcface_state_dict, functional_forward
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.errors import UserError


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        image = cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(folder / f"{i}.png"), image)
        paths.append(folder / f"{i}.png")
    return paths


def test_backbone_pth_loads_strictly_and_gives_arcface_torch_features(tmp_path, faces) -> None:
    state = arcface_state_dict("iresnet18")
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    images = [cv2.imread(str(p)) for p in faces]
    expected = functional_forward(state, "iresnet18", arcface_inference_input(images)).numpy()

    model = models.load(path, arch="iresnet18")
    assert set(model.state_dict()) == set(state)
    with torch.no_grad():
        direct = model(arcface_inference_input(images)).numpy()
    np.testing.assert_allclose(direct, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())

    out = tmp_path / "emb.npy"
    result = CliRunner().invoke(main, ["embed", str(faces[0].parent), "--checkpoint", str(path), "--arch", "iresnet18",
                                       "--flip", "none", "--no-normalize", "--workers", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [p.rsplit("/", 1)[-1] for p in out.with_name("emb.paths.txt").read_text().splitlines()] == ["0.png", "1.png", "2.png"]
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_the_architecture_of_a_backbone_pth_is_read_from_its_tensors(tmp_path) -> None:
    state = arcface_state_dict("iresnet50", embedding=256)
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # as saved from a DDP wrapper
    model = models.load(path)
    assert model.record.arch == "iresnet50" and model.embedding_size == 256
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), functional_forward(state, "iresnet50", x).numpy(), rtol=1e-3, atol=1e-3)
    # arcface_torch's own parameter count for iresnet50 with a 256-D embedding: every tensor but the BN statistics
    expected_params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert models.complexity(model).params == expected_params


def test_a_wrong_or_missing_tensor_is_refused_in_one_line_naming_it(tmp_path, faces) -> None:
    state = arcface_state_dict("iresnet18")
    wrong = dict(state, **{"layer2.1.conv1.weight": torch.zeros(128, 128, 1, 1)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(
        UserError, match=r"wrong.pth: tensor 'layer2.1.conv1.weight' has shape \(128, 128, 1, 1\) but iresnet18 needs \(128, 128, 3, 3\)"
    ):
        models.load(tmp_path / "wrong.pth", arch="iresnet18")
    missing = {k: v for k, v in state.items() if k != "layer3.0.bn2.running_var"}
    torch.save(missing, tmp_path / "missing.pth")
    result = CliRunner().invoke(
        main,
        [
            "embed",
            str(faces[0].parent),
            "--checkpoint",
            str(tmp_path / "missing.pth"),
            "--arch",
            "iresnet18",
            "--workers",
            "0",
            "--out",
            str(tmp_path / "e.npy"),
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'missing.pth'}: has no tensor 'layer3.0.bn2.running_var', which iresnet18 needs (is it a state dict of another network?)"
    ]
    assert not (tmp_path / "e.npy").exists()
    # the wrong network named by --arch is refused, not half loaded
    torch.save(state, tmp_path / "r18.pth")
    with pytest.raises(UserError, match=r"r18.pth: has no tensor 'layer1.2.bn1.weight', which iresnet34 needs"):
        models.load(tmp_path / "r18.pth", arch="iresnet34")


def test_model_files_record_their_input_convention(tmp_path) -> None:
    state = arcface_state_dict("iresnet18")
    torch.save(state, tmp_path / "backbone.pth")
    arcface = models.load(tmp_path / "backbone.pth")
    models.save(arcface, tmp_path / "converted.pt")
    payload = torch.load(tmp_path / "converted.pt", weights_only=True)
    assert payload["input"] == {"colour": "RGB", "mean": 127.5, "std": 127.5}
    assert models.load(tmp_path / "converted.pt").record.input_convention == arcface.record.input_convention
    own = models.create("iresnet18", width=0.125)
    models.save(own, tmp_path / "own.pt")
    assert torch.load(tmp_path / "own.pt", weights_only=True)["input"] == {"colour": "RGB", "mean": 127.5, "std": 128.0}


def test_stra_enters_stage4_in_place_of_the_second_convolution_and_info_costs_it(tmp_path) -> None:
    model = models.create("iresnet50_stra", width=0.25)
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    assert [type(b).__name__ for b in blocks] == ["IBasicBlock"] * 24
    assert [type(b.mid).__name__ for b in blocks] == ["Conv2d"] * 21 + ["StRA"] * 3
    assert not hasattr(model.layer4[0], "conv2") and model.layer4[0].stra.local.stride == 2
    out = tmp_path / "info.json"
    result = CliRunner().invoke(main, ["info", "--arch", "iresnet50", "--arch", "iresnet50_stra", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["models"]
    plain, stra = report["iresnet50"], report["iresnet50_stra"]
    assert plain["params"] == 43_590_848  # arcface_torch's iresnet50 (43.6 M, 6.3 GFLOPs)
    assert abs(plain["macs"] / 1e9 - 6.31) < 0.01
    # only stage 4 differs: three StRA units instead of the three 512 -> 512 3x3 convolutions
    assert {k: v for k, v in stra["stages"].items() if k != "layer4"} == {k: v for k, v in plain["stages"].items() if k != "layer4"}
    assert plain["stages"]["layer4"]["params"] - stra["stages"]["layer4"]["params"] == 3 * 512 * 512 * 9 - sum(stra["stra_block_params"])
    assert "iresnet50_stra: 3 StRA blocks" in result.output


def test_iresnet_stra_trains_and_its_model_file_records_the_validation_threshold(tmp_path) -> None:
    from _train_shapes import SMALL, make_training_set

    from facestra.protocols import write_bin
    from facestra.train import TrainConfig, train

    data, images, same = make_training_set(tmp_path, range(8), 4, range(8, 12), 40)
    write_bin(tmp_path / "heldout.bin", images, same)
    run = tmp_path / "run"
    config = TrainConfig(**{**SMALL, "arch": "iresnet50_stra"}, data=str(data), out=str(run), batch_size=16, epochs=1,
                         val=(str(tmp_path / "heldout.bin"),))
    train(config)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    assert steps and all(0 < r["diversity"] <= 3 * 7 for r in steps)  # three StRA units in stage 4
    val = [r for r in rows if r["kind"] == "val"][-1]
    model = models.load(run / "model.pt")
    assert model.record.arch == "iresnet50_stra" and model.record.input_convention.std == 128.0
    assert model.record.verification["benchmark"] == "heldout" and 0 <= model.record.verification["threshold"] < 4
    assert model.record.verification["accuracy"] == pytest.approx(val["heldout_accuracy"])
