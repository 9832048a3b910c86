"""Parameter/MAC counts against hand counts, `facestra info`, and ONNX / TorchScript export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from facestra import models
from facestra.cli.main import main
from facestra.models.stra import StRA, StRAOptions


class _Tiny(nn.Module):
    input_size = (10, 10)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Conv2d(8, 16, 1, stride=2, groups=4, bias=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 5))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def test_complexity_matches_a_hand_count() -> None:
    result = models.complexity(_Tiny())
    stem = 8 * 10 * 10 * 3 * 3 * 3  # out elements x in-channels x k²
    body = 16 * 5 * 5 * (8 // 4) * 1
    head = 5 * 400
    assert result.stages["stem"]["macs"] == stem
    assert result.stages["body"]["macs"] == body
    assert result.stages["head"]["macs"] == head
    assert result.macs == stem + body + head
    assert result.params == (3 * 9 * 8 + 8) + 16 + (16 * 2) + (400 * 5 + 5)


def test_stra_block_macs_match_a_hand_count() -> None:
    class Holder(nn.Module):
        input_size = (6, 6)

        def __init__(self):
            super().__init__()
            self.stra = nn.Sequential(nn.Conv2d(3, 32, 1, bias=False), StRA(32, options=StRAOptions(groups=4, kernel_size=3)))

        def forward(self, x):
            return self.stra(x)

    c, g, k, n = 32, 4, 3, 36  # C', modes, window, nodes (6x6)
    per_mode = c // g
    hidden = c // 4  # the shared ν/ω trunk: C' -> C'/4 -> G(1 + K²), grouped
    value = n * c * per_mode
    logits = n * hidden * per_mode + n * g * (1 + k * k) * (hidden // g)
    aggregation = k * k * c * n
    masks = n * 8 * g * per_mode + n * g * 8  # C' -> 8G -> G, grouped
    mode = 5 * c * n + 2 * g * c  # modal vectors, two score and two context passes, Gram and routing
    expected = 3 * 32 * n + value + logits + aggregation + masks + mode
    assert models.complexity(Holder()).macs == expected


def test_stra_lowers_macs_and_info_reports_both(tmp_path) -> None:
    out = tmp_path / "info.json"
    result = CliRunner().invoke(main, ["info", "--width", "0.25", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["models"]
    plain, stra = report["resnet50"], report["resnet50_stra"]
    assert stra["macs"] < plain["macs"]
    assert stra["stages"]["layer3"] == plain["stages"]["layer3"]  # only stage 4 differs
    assert f"{stra['macs'] / plain['macs']:.3f}" in result.output


def test_info_rejects_unknown_arch_in_one_line() -> None:
    result = CliRunner().invoke(main, ["info", "--arch", "vgg"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown architecture 'vgg'; choose one of " + ", ".join(models.names())
    ]


@pytest.fixture(scope="module")
def small_stra() -> nn.Module:
    torch.manual_seed(0)
    model = models.create("resnet50_stra", width=0.125, input_size=(32, 32), embedding_size=64)
    model.train()
    model(torch.randn(8, 3, 32, 32))
    return model.eval()


def test_torchscript_export_runs_to_the_same_output(small_stra, tmp_path) -> None:
    x = torch.randn(2, 3, 32, 32)
    traced = torch.jit.trace(small_stra, x)
    path = tmp_path / "model.ts"
    traced.save(str(path))
    reloaded = torch.jit.load(str(path))
    other = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(reloaded(other), small_stra(other), rtol=1e-4, atol=1e-4)


def test_onnx_export_runs_to_the_same_output(small_stra, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(
        small_stra, (x,), str(path), opset_version=17, input_names=["images"], output_names=["embeddings"],
        dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = torch.randn(3, 3, 32, 32)
    (onnx_out,) = session.run(None, {"images": other.numpy()})
    np.testing.assert_allclose(onnx_out, small_stra(other).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_info_costs_an_ablation_row_and_refuses_a_bad_switch(tmp_path) -> None:
    out = tmp_path / "info.json"
    result = CliRunner().invoke(main, ["info", "--arch", "resnet50_stra", "--kernel-size", "7", "--json", str(out)])
    assert result.exit_code == 0, result.output
    # K=3's 46,992 with the trunk's last conv and BN at G(1+K²) = 400 outputs instead of 80 (16 inputs each)
    per_block = 46_992 + (400 - 80) * 16 + (400 - 80) * 2
    assert f"resnet50_stra: 3 StRA blocks of {per_block:,}, {per_block:,}, {per_block:,} parameters" in result.output
    assert json.loads(out.read_text())["models"]["resnet50_stra"]["stra_block_params"] == [per_block] * 3
    bad = CliRunner().invoke(main, ["info", "--arch", "resnet50_stra", "--kernel-size", "4"])
    assert bad.exit_code == 2
    assert "--arch resnet50_stra: kernel_size must be odd, 1 to 15, got 4" in bad.output
