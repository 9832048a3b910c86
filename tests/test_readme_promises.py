"""The promises page (docs/promises.md, the README's promises section until 0.2) names the tests that check each
promise: they must exist, so a promise cannot outlive its test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "# What facestra promises about bad input, interruption and your files"


def promise_section() -> str:
    text = (ROOT / "docs" / "promises.md").read_text(encoding="utf-8")
    assert text.startswith(SECTION + "\n") and "\n## " not in text  # the page is the one section, whole
    return text


def test_every_test_the_promises_name_exists() -> None:
    section = promise_section()
    bullets = [line for line in section.splitlines() if line.startswith("- **")]
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", section)
    assert len(bullets) >= 7 and len(cited) >= len(bullets)
    for promise in section.split("\n- **")[1:]:
        assert re.search(r"`tests/[\w/]+\.py::\w+`", promise), f"a promise without a test: {promise[:60]}"
    missing = []
    for file, name in cited:
        tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        if name not in names:
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/promises.md names tests that do not exist: {missing}"
