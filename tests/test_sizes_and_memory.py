"""Sizes and networks too large for the machine are refused in one line, before anything is allocated
(issue 16, item 7), and a failed allocation that does happen is one line too."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from facestra import models
from facestra.cli.main import main
from facestra.cli.messages import out_of_memory_message
from facestra.errors import UserError
from facestra.models.memory import activation_bytes, check_fits, tensor_bytes

sys.path.insert(0, str(Path(__file__).parent))
from _train_shapes import make_image_folder  # noqa: E402


def test_info_counts_a_network_too_large_for_the_machine_without_allocating_it(tmp_path) -> None:
    out = tmp_path / "info.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([sys.executable, "-m", "facestra", "info", "--arch", "resnet101", "--width", "8", "--input", "1024",
                             "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    peak_gib = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20
    params = json.loads(out.read_text())["models"]["resnet101"]["params"]
    assert params * 4 / 2**30 > 100  # GiB of float32 weights alone
    assert peak_gib < 4


def test_info_on_the_meta_device_gives_the_figures_of_the_real_network(tmp_path) -> None:
    out = tmp_path / "info.json"
    result = CliRunner().invoke(main, ["info", "--arch", "resnet50_stra", "--width", "0.25", "--input", "64x48", "--json", str(out)])
    assert result.exit_code == 0, result.output
    reported = json.loads(out.read_text())["models"]["resnet50_stra"]
    real = models.create("resnet50_stra", width=0.25, input_size=(64, 48))
    assert reported["params"] == sum(p.numel() for p in real.parameters())
    assert reported["macs"] == models.complexity(real, (64, 48)).macs


@pytest.mark.parametrize("args", [["--input", "100000"], ["--input", "5000x112"], ["--width", "1000"], ["--kernel-size", "999"]])
def test_info_refuses_sizes_out_of_range_as_option_errors(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["info", *args])
    assert result.exit_code == 2 and "Invalid value for" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [["synth", "OUT", "--identities", "4", "--images-per-identity", "2", "--size", "5000"],
                                     ["demo", "--crop-size", "5000"]])
def test_image_sides_above_4096_are_option_errors(command: list[str], tmp_path) -> None:
    command = [str(tmp_path / "out") if part == "OUT" else part for part in command]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2 and "5000 is not in the range" in result.output
    assert not (tmp_path / "out").exists()


def test_a_network_that_cannot_fit_is_refused_before_training_writes_anything(tmp_path) -> None:
    data = make_image_folder(tmp_path / "data", range(2), 4)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(run), "--arch", "resnet18", "--input-size", "4096",
                                       "--embedding-size", "16384", "--batch-size", "8", "--workers", "0", "--quiet"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: --arch resnet18 with these options has ")
    assert "3 copies of its weights (weights, gradients, momentum) and a batch's activations" in line
    assert "GiB of memory here; use a smaller --width, --embedding-size, input size or batch" in line
    assert not run.exists()


def test_the_memory_check_counts_every_tensor_and_refuses_one_byte_over() -> None:
    real = models.create("resnet18", width=0.125, input_size=(32, 32))
    state_bytes = sum(t.numel() * t.element_size() for t in real.state_dict().values())
    with torch.device("meta"):
        probe = models.create("resnet18", width=0.125, input_size=(32, 32))
    assert tensor_bytes(probe) == state_bytes
    check_fits(probe, "resnet18", copies=3, activations=100, limit=3 * state_bytes + 100)
    with pytest.raises(UserError, match="^resnet18 with these options has 0.00 G parameters: 3 copies"):
        check_fits(probe, "resnet18", copies=3, activations=100, limit=3 * state_bytes + 99)


def test_activation_bytes_sum_the_layer_outputs_of_a_batch() -> None:
    with torch.device("meta"):
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 5, 7))
    batch = 3
    # conv and batch norm outputs, the flattened view and the linear output; the in-place ReLU adds nothing
    expected = batch * (4 * 6 * 5 * 3 + 7) * 4
    net[1].eval()  # a frozen BatchNorm in a training network: the modes come back as they were
    modes = [layer.training for layer in net.modules()]
    assert activation_bytes(net, batch, (6, 5)) == expected
    assert activation_bytes(net, batch, (6, 5), bytes_per_value=2) == expected // 2
    assert [layer.training for layer in net.modules()] == modes == [True, True, False, True, True, True]


def test_the_size_check_leaves_the_initial_weights_as_they_were() -> None:
    torch.manual_seed(3)
    checked = models.create("resnet50_stra", width=0.125)
    torch.manual_seed(3)
    unchecked = models.create("resnet50_stra", width=0.125, memory_copies=0)
    for (name, a), b in zip(checked.state_dict().items(), unchecked.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_failed_allocation_is_one_line_naming_the_options(monkeypatch) -> None:
    with pytest.raises(RuntimeError) as torch_error:
        torch.empty(2**40)  # 4 TiB
    assert out_of_memory_message(torch_error.value) == (
        "out of memory (an allocation of 4,096.0 GiB failed): use a smaller --batch-size, input size or network")
    with pytest.raises(MemoryError) as numpy_error:
        np.empty(2**42)
    assert out_of_memory_message(numpy_error.value).startswith("out of memory (an allocation failed)")
    assert out_of_memory_message(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None

    def exhausted(*args, **kwargs):
        return torch.empty(2**40)

    monkeypatch.setattr(models, "complexity", exhausted)
    result = CliRunner().invoke(main, ["info", "--arch", "resnet18"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "error: out of memory (an allocation of 4,096.0 GiB failed): use a smaller --batch-size, input size or network")


def test_other_errors_keep_their_traceback(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(models, "complexity", broken)
    result = CliRunner().invoke(main, ["info", "--arch", "resnet18"])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_train_refuses_cuda_without_a_gpu_before_reading_anything(tmp_path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "missing"), "--out", str(run), "--device", "cuda", "--quiet"])
    assert result.exit_code == 2 and result.output.strip() == "error: --device cuda: no CUDA GPU is available"
    assert not run.exists()


@pytest.mark.parametrize("command", [["train", "--data", "D", "--out", "O"], ["align", "D", "O"], ["embed", "D", "--checkpoint", "M", "--out", "O"],
                                     ["verify", "--checkpoint", "M", "--benchmark", "lfw", "--data", "D"], ["synth", "O", "--identities", "4",
                                      "--images-per-identity", "2"]])
def test_a_worker_count_beyond_256_is_an_option_error_not_a_fork_bomb(command: list[str], tmp_path) -> None:
    (tmp_path / "D").mkdir()
    command = [str(tmp_path / part) if part in ("D", "O", "M") else part for part in command]
    result = CliRunner().invoke(main, [*command, "--workers", "100000"])
    assert result.exit_code == 2 and "Invalid value for '--workers': 100000 is not in the range" in result.output
    assert not (tmp_path / "O").exists()
