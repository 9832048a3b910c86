"""The documentation site builds, and every command or program it shows either runs or says it is illustrative.

Convention, on the line before each fenced ``bash`` or ``python`` block of README.md, CHANGELOG.md and docs/:

- ``<!-- runs -->``: this test runs it, one line at a time, in an empty folder; a ``text`` block right after it
  marked ``<!-- output -->`` must appear, line for line, in what it printed;
- ``<!-- runs in .ci/run -->``: the README's set-up block, which .ci/run runs (a copy elsewhere must equal it);
- ``<!-- runs in tests/FILE.py -->``: that test file reads the block from this page and runs it;
- ``<!-- illustrative -->``: needs data, a GPU or hours, and is not run; its flags are still held against the
  commands' options, as are those of every `facestra VERB ...` span in the prose.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_LANGUAGES = {"bash", "sh", "shell", "console", "python", "py", "pycon"}
RUNS, CI, ILLUSTRATIVE, OUTPUT = "<!-- runs -->", "<!-- runs in .ci/run -->", "<!-- illustrative -->", "<!-- output -->"
RUNS_IN_TEST = re.compile(r"<!-- runs in (tests/\w+\.py) -->")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    language: str
    marker: str  # the line before the fence
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks, start = [], None
    for number, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if start is None:
            start = number
        else:
            marker = lines[start - 1].strip() if start else ""
            blocks.append(Block(page, start + 1, lines[start][3:].strip(), marker, "\n".join(lines[start + 1 : number])))
            start = None
    assert start is None, f"{page.name}: a fence opened at line {start + 1} is never closed"
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in fenced_blocks(page)]


def ci_block() -> Block:
    return next(block for block in fenced_blocks(ROOT / "README.md") if block.language == "bash")


def test_every_code_block_runs_or_says_it_is_illustrative() -> None:
    code = [block for block in ALL_BLOCKS if block.language in CODE_LANGUAGES]
    assert len(code) >= 20
    for block in ALL_BLOCKS:
        assert block.language, f"{block.where}: a fence without a language (write ```text for output)"
        if block.language not in CODE_LANGUAGES:
            continue
        assert block.language in ("bash", "python"), f"{block.where}: write ```bash or ```python"
        test_file = RUNS_IN_TEST.fullmatch(block.marker)
        if test_file:
            source = (ROOT / test_file.group(1)).read_text(encoding="utf-8")
            page = block.page.relative_to(ROOT)
            assert f'"{page.parent.name}" / "{page.name}"' in source or str(page) in source, \
                f"{block.where}: {test_file.group(1)} does not read {page}"
        elif block.marker == CI:
            assert block.text == ci_block().text, f"{block.where}: not the README's set-up block that .ci/run runs"
        else:
            assert block.marker in (RUNS, ILLUSTRATIVE), f"{block.where}: mark it {RUNS} or {ILLUSTRATIVE} (see tests/test_docs.py)"
            if block.marker == RUNS:
                assert block.language == "bash", f"{block.where}: a python block that runs names the test that runs it"


def test_the_readme_starts_with_the_block_ci_runs() -> None:
    first = fenced_blocks(ROOT / "README.md")[0]
    assert first.marker == CI and first.language == "bash" and len(first.text.splitlines()) == 2
    assert "facestra demo" in first.text and ".[dev,detect,docs]" in first.text  # the docs extra: CI builds the site


def test_outputs_follow_a_block_that_runs() -> None:
    for page in PAGES:
        blocks = fenced_blocks(page)
        for before, block in zip([None, *blocks], blocks):
            if block.marker == OUTPUT:
                assert block.language == "text" and before is not None and before.marker == RUNS, block.where


def _runnable() -> list[tuple[Block, Block | None]]:
    """Each distinct block marked to run (the README's tour is also the getting-started page's), with its output block."""
    seen, runnable = set(), []
    for page in PAGES:
        blocks = fenced_blocks(page)
        for block, after in zip(blocks, [*blocks[1:], None]):
            if block.marker == RUNS and block.text not in seen:
                seen.add(block.text)
                runnable.append((block, after if after is not None and after.marker == OUTPUT else None))
    return runnable


@pytest.mark.parametrize(("block", "output"), _runnable(), ids=lambda value: value.where if isinstance(value, Block) else "")
def test_the_blocks_that_run_run_and_print_what_the_page_shows(block: Block, output: Block | None, tmp_path: Path) -> None:
    """Each line is one `facestra` command, run as `python -m facestra` of the interpreter under test."""
    printed = []
    for line in block.text.splitlines():
        assert line.startswith("facestra"), f"{block.where}: only facestra commands run here: {line}"
        command = f'facestra() {{ "$FACESTRA_PYTHON" -m facestra "$@"; }}\n{line}'
        environment = {**os.environ, "FACESTRA_PYTHON": sys.executable}
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=environment, capture_output=True, text=True)
        decisions = (0, 1) if line.startswith("facestra compare") else (0,)  # compare exits 1 for "different people"
        assert result.returncode in decisions, f"{block.where}: `{line}` exited {result.returncode}:\n{result.stderr[-2000:]}"
        printed.extend(result.stdout.splitlines())
    if output is not None:
        missing = [line for line in output.text.splitlines() if line not in printed]
        assert not missing, f"{output.where}: the page shows lines the command no longer prints: {missing}"


def test_the_tour_leaves_what_it_says() -> None:
    """The README's tour is the getting-started page's, and names each verb of the issue: align to embed."""
    tours = [block for block in ALL_BLOCKS if block.marker == RUNS and "facestra synth" in block.text]
    assert {block.page.name for block in tours} == {"README.md", "getting-started.md"}
    assert len({block.text for block in tours}) == 1
    verbs = [line.split()[1] for line in tours[0].text.splitlines()]
    assert verbs == ["synth", "align", "train", "verify", "compare", "embed"]


def _missing_docs_tools() -> list[str]:
    return [name for name in ("mkdocs", "material", "mkdocs_click") if importlib.util.find_spec(name) is None]


@pytest.mark.skipif(bool(_missing_docs_tools()), reason="the docs extra is not installed (pip install -e '.[docs]'): "
                    "mkdocs, mkdocs-material and mkdocs-click are needed to build the site")
def test_the_site_builds_strictly_and_its_reference_is_every_commands_help(tmp_path: Path) -> None:
    import click

    from facestra.cli.main import COMMANDS, main

    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    for page in (ROOT / "docs").glob("*.md"):
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"
    assert (site / "report.png").read_bytes() == (ROOT / "docs" / "report.png").read_bytes()
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Changes in 0.2" in changelog  # CHANGELOG.md itself, included
    reference = (site / "cli" / "index.html").read_text(encoding="utf-8")
    context = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(context, name)
        assert f'id="facestra-{name}"' in reference, name
        for parameter in command.params:
            for flag in parameter.opts:
                if flag.startswith("-"):
                    assert flag in reference, f"the reference lacks {name} {flag}"


def test_every_flag_a_command_line_shows_is_an_option_of_that_command() -> None:
    """Illustrative blocks are not run, so their flags are held against the commands (0.2's README showed a
    `facestra verify --val` that verify never had)."""
    import click

    from facestra.cli.main import COMMANDS, main

    context = click.Context(main)
    options = {name: {flag for parameter in main.get_command(context, name).get_params(context)
                      for flag in (*parameter.opts, *parameter.secondary_opts)} for name in COMMANDS}
    shown = [(block.where, line) for block in ALL_BLOCKS if block.language == "bash"
             for line in block.text.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#")]
    for page in PAGES:
        prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        shown += [(page.name, span) for span in re.findall(r"`(facestra [a-z]\w*[^`]*)`", prose)]
    checked, unknown = 0, []
    for where, line in shown:
        command = re.search(r"(?:^|-m |&& )facestra ([a-z]\w*)(.*)", line.split(" # ")[0])
        if command is None:
            continue
        verb, rest = command.groups()
        checked += 1
        if verb not in options:
            unknown.append(f"{where}: no command {verb}")
            continue
        unknown += [f"{where}: facestra {verb} has no {flag}" for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)
                    if flag not in options[verb]]
    assert checked >= 40 and not unknown, unknown
