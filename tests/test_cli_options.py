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
