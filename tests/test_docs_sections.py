"""Nothing a user could do with facestra 0.2 is lost from its documentation.

tests/readme_0.2.md is the README of 0.2 (946 lines, commit 21acb46), kept as it was. WHERE_EACH_SECTION_WENT is
the checklist of its sections: every heading, and the page and heading that now hold its text. The tests check
that the checklist covers every heading, that each destination exists, and that every option, command, library
call and bench script the 0.2 README named is still named somewhere in README.md, CHANGELOG.md or docs/.
"""

from __future__ import annotations

import re
from pathlib import Path

from facestra.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
README_0_2 = ROOT / "tests" / "readme_0.2.md"

# 0.2 heading -> [(file, heading now)]; the first destination holds the section's text, the others its figures or a part.
WHERE_EACH_SECTION_WENT: dict[str, list[tuple[str, str]]] = {
    "# facestra": [("README.md", "# facestra"), ("docs/index.md", "# facestra")],
    "## Python API": [("docs/api.md", "# Python API")],
    "## Alignment": [("docs/alignment.md", "# Alignment"), ("docs/performance.md", "## Alignment")],
    "## Verification and embeddings": [("docs/verification.md", "# Verification"), ("docs/embedding.md", "# Embedding")],
    "### IJB-B and IJB-C (templates, 1:1 and 1:N)": [
        ("docs/verification.md", "## IJB-B and IJB-C (templates, 1:1 and 1:N)"), ("docs/performance.md", "## IJB scoring")],
    "## Verification report": [("docs/verification.md", "## Verification report")],
    "## The models and files you already have": [
        ("docs/models.md", "# The models and files you already have"), ("docs/compare-calibrate.md", "## Comparing two photos"),
        ("docs/performance.md", "## Start-up")],
    "## Deciding at a known error rate: calibrate, then compare": [
        ("docs/compare-calibrate.md", "## Deciding at a known error rate: calibrate, then compare"),
        ("docs/performance.md", "## Calibration")],
    "## The network": [("docs/stra.md", "## The network"), ("docs/performance.md", "## The networks")],
    "### The ablations, seed-averaged": [("docs/stra.md", "## The ablations, seed-averaged")],
    "## Training": [("docs/training.md", "# Training")],
    "### Millions of identities: Partial FC (`--sample-rate`)": [
        ("docs/training.md", "## Millions of identities: Partial FC (`--sample-rate`)"), ("docs/performance.md", "## Partial FC")],
    "### Fine-tuning the models you already have (`--init`)": [
        ("docs/training.md", "## Fine-tuning the models you already have (`--init`)")],
    "### arcface_torch's recipes (`--preset ms1mv3_r50`, `--loss combined`, `--optimizer`, `--schedule`)": [
        ("docs/training.md", "## arcface_torch's recipes (`--preset ms1mv3_r50`, `--loss combined`, `--optimizer`, `--schedule`)")],
    "### Training speed: `--data synthetic` and `bench/train_speed.py`": [
        ("docs/training.md", "## Training speed: `--data synthetic` and `bench/train_speed.py`"), ("docs/performance.md", "## Training")],
    "## The demo and the synthetic faces": [
        ("docs/getting-started.md", "## The demo and the synthetic faces"), ("docs/performance.md", "## Synthetic faces")],
    "## What facestra promises about bad input, interruption and your files": [
        ("docs/promises.md", "# What facestra promises about bad input, interruption and your files"),
        ("docs/performance.md", "## Reliability")],
    "## Changes in 0.2": [("CHANGELOG.md", "## Changes in 0.2")],
}

# What the 0.2 README named and the documentation deliberately no longer does, each with the reason.
GONE_SINCE_0_2: dict[str, str] = {}


def headings(text: str) -> list[str]:
    """The `#`, `##` and `###` headings outside fenced blocks (a `# comment` in a shell block is no heading)."""
    found, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and re.match(r"#{1,3} ", line):
            found.append(line)
    return found


def current_text() -> str:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def test_the_checklist_lists_every_section_of_the_0_2_readme() -> None:
    old = headings(README_0_2.read_text(encoding="utf-8"))
    assert len(old) == 18 and old[0] == "# facestra" and old[-1] == "## Changes in 0.2"
    assert list(WHERE_EACH_SECTION_WENT) == old


def test_every_destination_heading_exists() -> None:
    missing = []
    for section, destinations in WHERE_EACH_SECTION_WENT.items():
        for file, heading in destinations:
            if heading not in headings((ROOT / file).read_text(encoding="utf-8")):
                missing.append(f"{section!r} -> {file}: {heading!r}")
    assert not missing, missing


def test_every_option_command_call_and_script_of_0_2_is_still_documented() -> None:
    old = README_0_2.read_text(encoding="utf-8")
    verbs = {f"facestra {verb}" for verb in re.findall(r"facestra (\w+)", old) if verb in COMMANDS}
    named = (set(re.findall(r"--[a-z][a-z0-9-]+", old)) | set(re.findall(r"facestra(?:\.\w+)+", old)) | verbs
             | set(re.findall(r"bench/\w+\.(?:py|sh)", old)))
    assert verbs == {f"facestra {verb}" for verb in COMMANDS}
    assert len(named) > 150 and {"--sample-rate", "facestra.verify.calibrate", "bench/ablate.py"} <= named
    now = current_text()
    lost = sorted(name for name in named - set(GONE_SINCE_0_2) if name not in now)
    assert not lost, f"named in the 0.2 README, nowhere in the documentation now: {lost}"
