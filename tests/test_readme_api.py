"""The Python API page (docs/api.md, the README's Python API section until 0.2) works as written: its example
block runs unchanged, and every call its table names is importable under that name."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    assert text.startswith("# Python API\n")
    return text


def test_every_call_in_the_table_exists() -> None:
    names = re.findall(r"`(facestra(?:\.\w+)+)\(", _section())
    assert len(names) >= 8
    for dotted in names:
        module_name, attribute = dotted.rsplit(".", 1)
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), dotted


@pytest.mark.slow
def test_the_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    block = re.search(r"```python\n(.*?)```", _section(), re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), str(PAGE), "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "multiply-adds per face" in printed
    assert "resnet50_stra" in printed and "\nsynth " in printed  # the table's network row and benchmark row
    embeddings = np.load(tmp_path / "test.npy")
    paths = (tmp_path / "test.paths.txt").read_text().split()
    assert embeddings.shape == (len(paths), 128) and len(paths) == 4 * 4
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert all(os.path.isfile(path) for path in paths)
