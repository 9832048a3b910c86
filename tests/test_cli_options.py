"""Generated command-line options parse to the library's defaults: one place to change a default."""

from __future__ import annotations

import dataclasses

import click
import pytest

from facestra.align import AlignOptions
from facestra.cli.align import align
from facestra.cli.demo import demo
from facestra.cli.embed import embed
from facestra.cli.synth import synth
from facestra.cli.train import train
from facestra.cli.verify import verify
from facestra.demo import DemoConfig
from facestra.embed import InferenceOptions
from facestra.synth import SynthSettings
from facestra.train import TrainConfig

GENERATED = [
    (align, AlignOptions), (demo, DemoConfig), (embed, InferenceOptions), (verify, InferenceOptions),
    (synth, SynthSettings), (train, TrainConfig),
]


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


@pytest.mark.parametrize("command, options", GENERATED, ids=lambda x: getattr(x, "name", None) or x.__name__)
def test_each_option_default_parses_to_the_dataclass_default(command: click.Command, options: type) -> None:
    params = {p.name: p for p in command.params}
    ctx = click.Context(command)
    checked = 0
    for field in dataclasses.fields(options):
        param = params.get(field.name)
        if param is None or param.required:
            continue
        parsed = param.type_cast_value(ctx, param.get_default(ctx))
        expected = _default(field)
        if isinstance(expected, tuple) or isinstance(parsed, tuple):
            parsed, expected = tuple(parsed or ()), tuple(expected or ())
        assert parsed == expected, f"--{field.name}: the option parses to {parsed!r}, the dataclass says {expected!r}"
        checked += 1
    assert checked >= 3


def test_a_size_default_shows_as_hxw_and_a_list_default_as_commas() -> None:
    params = {p.name: p for p in train.params}
    assert params["input_size"].default == "112x112"
    assert params["lr_steps"].default == ",".join(str(e) for e in TrainConfig.lr_steps) == "8,12"
    assert not params["val"].show_default, "an empty list has no default worth showing"


@pytest.mark.parametrize("option, value, rule", [
    ("--width", "0", "0.125<=x<=8.0"), ("--width", "1000", "0.125<=x<=8.0"), ("--embedding-size", "0", "1<=x<=16384"),
    ("--embedding-size", "100000000", "1<=x<=16384"), ("--scale", "-1", "0<x<=1024.0"), ("--scale", "1e30", "0<x<=1024.0"),
    ("--margin", "-0.1", "0.0<=x<=1.0"), ("--margin", "10", "0.0<=x<=1.0"), ("--threads", "100000", "1<=x<=1024"),
    ("--kernel-size", "999", "1<=x<=15"), ("--groups", "0", "x>=1"),
    ("--lr", "0", "x>0"), ("--lr-factor", "0", "x>0"), ("--momentum", "1.5", "0.0<=x<=1.0"),
    ("--dropout", "2", "0.0<=x<=1.0"), ("--max-minutes", "0", "x>0"),
    ("--input-size", "100000", "each side 8 to 4096 pixels"), ("--input-size", "4", "each side 8 to 4096 pixels"),
])
def test_meaningless_training_numbers_are_option_errors(option: str, value: str, rule: str, tmp_path) -> None:
    from click.testing import CliRunner

    from facestra.cli.main import main

    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), option, value])
    assert result.exit_code == 2 and f"Invalid value for '{option}': " in result.output and rule in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, said", [
    ("width", 0.0, "--width must be at least 0.125"), ("width", 9.0, "--width must be at most 8.0"),
    ("lr", -1.0, "--lr must be positive"), ("scale", 2000.0, "--scale must be at most 1024.0"),
    ("momentum", 1.5, "--momentum must be at most 1.0"), ("embedding_size", 0, "--embedding-size must be at least 1"),
    ("margin", -0.1, "--margin must not be negative"), ("threads", 5000, "--threads must be at most 1024"),
    ("input_size", (112, 5000), "--input-size 112x5000: each side must be 8 to 4096 pixels"),
    ("margin", 0.3, "--margin applies to --loss cosface and arcface; plain softmax has neither"),
])
def test_the_library_enforces_the_same_limits(field: str, value: float, said: str) -> None:
    """The library names the setting as Python callers know it (`embedding_size`); the program renders
    the same message with the flags the user typed (--embedding-size)."""
    import re

    from facestra.cli.messages import as_flags
    from facestra.errors import UserError
    from facestra.train.config import check_config

    with pytest.raises(UserError) as raised:
        check_config(TrainConfig(data="d", out="o", **{field: value}))
    library = re.sub(r"--([a-z-]+)", lambda m: "`" + m.group(1).replace("-", "_") + "`", said)
    assert str(raised.value) == library
    assert as_flags(str(raised.value)) == said


def test_a_required_generated_option_is_required(tmp_path) -> None:
    from click.testing import CliRunner

    from facestra.cli.main import main

    result = CliRunner().invoke(main, ["synth", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Missing option '--identities'" in result.output
    assert not (tmp_path / "out").exists()


def test_options_a_mode_does_not_use_are_refused_not_ignored(tmp_path) -> None:
    from click.testing import CliRunner

    from facestra.cli.main import main

    info = CliRunner().invoke(main, ["info", "--arch", "resnet18", "--kernel-size", "7"])
    assert info.exit_code == 2 and "--kernel-size: only used with a *_stra --arch" in info.output
    assert CliRunner().invoke(main, ["info", "--arch", "resnet18", "--arch", "resnet50_stra", "--kernel-size", "7"]).exit_code == 0
    (tmp_path / "in").mkdir()
    (tmp_path / "marks.csv").write_text("path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\n")
    align = CliRunner().invoke(main, ["align", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                                      "--landmarks", str(tmp_path / "marks.csv"), "--min-score", "0.9"])
    assert align.exit_code == 2 and "--min-score: only used with a detector (--detector)" in align.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "marks.csv"]


def test_an_existing_json_is_replaced_only_with_overwrite(tmp_path) -> None:
    from click.testing import CliRunner

    from facestra.cli.main import main

    report = tmp_path / "info.json"
    report.write_text("mine\n")
    refused = CliRunner().invoke(main, ["info", "--arch", "resnet18", "--json", str(report)])
    assert refused.exit_code == 2 and refused.output.strip() == f"error: --json {report}: already exists (pass --overwrite to replace it)"
    assert report.read_text() == "mine\n"
    replaced = CliRunner().invoke(main, ["info", "--arch", "resnet18", "--json", str(report), "--overwrite"])
    assert replaced.exit_code == 0 and '"resnet18"' in report.read_text()
