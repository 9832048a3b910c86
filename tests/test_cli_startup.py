"""`facestra --help` lists every command without importing them, and its listing says what each says."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from facestra.cli.main import COMMANDS, SHORT_HELP, main


def test_the_help_listing_is_each_commands_own_first_sentence() -> None:
    context = click.Context(main)
    assert list(SHORT_HELP) == list(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(context, name)
        assert SHORT_HELP[name] == command.get_short_help_str(limit=10**6), name


def test_facestra_help_imports_no_torch() -> None:
    probe = ("import sys\nfrom facestra.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "False"
    assert all(name in result.stdout for name in COMMANDS)
    assert "Calibrate the operating points" in result.stdout


def test_compare_with_an_onnx_model_needs_neither_torch_nor_onnx_and_gives_the_torch_figures(tmp_path) -> None:
    import cv2
    import numpy as np
    import pytest
    import torch

    pytest.importorskip("onnxruntime")
    from facestra import models
    from facestra.models.onnx import export_onnx, load_onnx
    from facestra.verify.compare import CompareOptions, compare_images

    torch.manual_seed(0)
    model = models.create("resnet18", width=0.25, embedding_size=32, input_size=(32, 32)).eval()
    export_onnx(model, tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    torch_path = compare_images(load_onnx(tmp_path / "model.onnx"), tmp_path / "a.png", tmp_path / "b.png",
                                CompareOptions(aligned=True))
    probe = (
        "import json, sys\n"
        "from facestra.verify.compare import CompareOptions, compare_images\n"
        f"result = compare_images({str(tmp_path / 'model.onnx')!r}, {str(tmp_path / 'a.png')!r}, {str(tmp_path / 'b.png')!r}, "
        "CompareOptions(aligned=True))\n"
        "print(json.dumps([result.cosine, result.distance, 'torch' in sys.modules, 'onnx' in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    import json

    cosine, distance, torch_loaded, onnx_loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert not torch_loaded and not onnx_loaded
    assert cosine == pytest.approx(torch_path.cosine, abs=1e-6) and distance == pytest.approx(torch_path.distance, abs=1e-6)


def test_library_errors_name_settings_and_the_program_renders_them_as_flags(tmp_path) -> None:
    """The library says `overwrite` and `save_model`; the program says --overwrite and --save-model."""
    import pytest
    from click.testing import CliRunner

    from facestra.cli.messages import as_flags
    from facestra.errors import UserError
    from facestra.io import refuse_output_over_inputs

    existing = tmp_path / "out.json"
    existing.write_text("{}")
    with pytest.raises(UserError) as raised:
        refuse_output_over_inputs(existing, [], overwrite=False)
    assert str(raised.value) == f"{existing}: already exists (pass `overwrite` to replace it)"
    assert as_flags(str(raised.value)) == f"{existing}: already exists (pass --overwrite to replace it)"
    assert as_flags("choose `json_path`", {"json_path": "--json"}) == "choose --json"
    assert as_flags("run `facestra verify --data DIR`") == "run `facestra verify --data DIR`"  # not a setting name
    result = CliRunner().invoke(main, ["pack", "lfw", str(tmp_path / "missing.bin"), "--out", str(existing)])
    assert "`" not in result.output


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_every_verbs_help_imports_no_torch(verb: str) -> None:
    probe = (f"import sys\nfrom facestra.cli.main import main\ntry:\n    main([{verb!r}, '--help'])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Usage:" in result.stdout and result.stdout.strip().splitlines()[-1] == "False", result.stdout[-300:]
