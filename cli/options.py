"""Command-line options generated from the library's option dataclasses, and the option types they use.

An option bundle is declared once, as a dataclass whose fields carry their help, choices and limits
(:func:`facestra.fields.documented`); :func:`dataclass_options` turns its fields into click options, so a
default changes in one place and ``--help`` always shows the value the library uses.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from facestra.fields import IMAGE_SIDES


class SizeType(click.ParamType):
    """``112`` or ``112x96`` (height x width) -> (height, width)."""

    name = "SIZE"

    def convert(self, value, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        text = str(value).lower().strip()
        parts = text.split("x")
        try:
            sizes = [int(part) for part in parts]
        except ValueError:
            self.fail(f"{value!r} is not a size like 112 or 224x192", param, ctx)
        if len(sizes) == 1:
            sizes = sizes * 2
        low, high = IMAGE_SIDES
        if len(sizes) != 2 or not all(low <= side <= high for side in sizes):
            self.fail(f"{value!r} is not a size like 112 or 224x192 (each side {low} to {high} pixels)", param, ctx)
        return sizes[0], sizes[1]


class CommaList(click.ParamType):
    """``8,12`` -> (8, 12); ``lfw.bin,cfp_fp.bin`` -> ("lfw.bin", "cfp_fp.bin")."""

    def __init__(self, item: type, name: str) -> None:
        self.item = item
        self.name = name

    def convert(self, value, param, ctx) -> tuple:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(self.item(v.strip()) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.name.lower()} like 8,12", param, ctx)


SIZE = SizeType()


def dataclass_options(
    cls: type, *, exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None, only_given: bool = False
) -> Callable[[Callable], Callable]:
    """A decorator adding one option per documented field of dataclass ``cls`` (in field order), or per
    field named in ``only``.

    ``only_given=True`` makes every option default to None ("not on the command line") and shows the
    dataclass default in the help instead: for switches that only some architectures take (StRA), or that
    must layer over a preset.
    """
    hints = typing.get_type_hints(cls)
    chosen = [f for f in dataclasses.fields(cls)
              if f.name not in exclude and (only is None or f.name in only) and f.metadata.get("help")]

    def decorate(command: Callable) -> Callable:
        for field in reversed(chosen):
            command = _field_option(field, hints[field.name], only_given)(command)
        return command

    return decorate


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1:
            return arguments[0]
    return annotation


def _shown(value: Any, kind: click.ParamType | None) -> str:
    """``value`` in the form a user types for an option of type ``kind`` (112x112 for a size, 8,12 for a
    list), so that click parses the default exactly as it parses a typed value."""
    if isinstance(value, tuple):
        if isinstance(kind, SizeType):
            return f"{value[0]}x{value[1]}"
        return ",".join(str(v) for v in value)
    return str(value)


def _param_type(annotation: Any, meta: dict[str, Any]) -> click.ParamType:
    if meta.get("choices"):
        return click.Choice(meta["choices"])
    if typing.get_origin(annotation) is tuple:
        arguments = typing.get_args(annotation)
        if arguments == (int, int):
            return SIZE
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return CommaList(arguments[0], {int: "EPOCHS", float: "NUMBERS"}.get(arguments[0], "FILES"))
    bounds = {"min": meta.get("minimum"), "max": meta.get("maximum")}
    if meta.get("positive"):
        bounds.update(min=0, min_open=True)
    bounded = any(v is not None for v in bounds.values())
    if annotation is int:
        return click.IntRange(**bounds) if bounded else click.INT
    if annotation is float:
        return click.FloatRange(**bounds) if bounded else click.FLOAT
    if annotation is Path:
        return click.Path(path_type=Path, file_okay=meta.get("path") != "folder", dir_okay=meta.get("path") != "file")
    if annotation is str:
        return click.STRING
    raise TypeError(f"no command-line type for {annotation!r}")


def _field_option(field: dataclasses.Field, annotation: Any, only_given: bool) -> Callable[[Callable], Callable]:
    meta = dict(field.metadata)
    flag = meta.get("flag") or field.name.replace("_", "-")
    default = _field_default(field)
    annotation = _without_none(annotation)
    help_text = meta["help"]
    kind = None if annotation is bool else _param_type(annotation, meta)
    if only_given and default not in (None, ()):
        help_text = f"{help_text} (default {_shown(default, kind)})"
    if only_given:
        default = None
    show = default not in (None, ())
    if annotation is bool:
        if default is False:
            return click.option(f"--{flag}", field.name, is_flag=True, default=False, help=help_text)
        return click.option(f"--{flag}/--no-{flag}", field.name, default=default, show_default=show, help=help_text)
    if isinstance(default, tuple):
        default = _shown(default, kind)
    if meta.get("required"):
        # no default at all: click 8.3 takes an explicit default=None as a value that satisfies `required`
        return click.option(f"--{flag}", field.name, type=kind, metavar=meta.get("metavar"), required=True, help=help_text)
    return click.option(
        f"--{flag}", field.name, type=kind, default=default, show_default=show, metavar=meta.get("metavar"), help=help_text,
    )


def stra_options(command: Callable) -> Callable:
    """One option per :class:`facestra.models.StRAOptions` switch, given-only so plain ResNets accept a
    command line without them."""
    from facestra.models.stra_options import StRAOptions

    return dataclass_options(StRAOptions, only_given=True)(command)


def inference_options(command: Callable) -> Callable:
    """The :class:`facestra.embed.InferenceOptions` fields (--flip, --batch-size, --workers, --device, --resize)
    and the model file they run, for every command that runs a model on images."""
    from facestra.embed.options import InferenceOptions

    command = dataclass_options(InferenceOptions)(command)
    return model_options(command)


def model_options(command: Callable) -> Callable:
    """``--checkpoint`` and, for a bare state dict, ``--arch``: the model a command runs."""
    command = click.option(
        "--arch", default=None, metavar="NAME",
        help="Network of a bare state dict such as arcface_torch's backbone.pth (iresnet50, iresnet100, ...); "
        "read from the tensors when left out. facestra model files and ONNX models name their own.",
    )(command)
    return click.option(
        "--checkpoint", required=True, type=click.Path(path_type=Path),
        help="Model: a facestra model file, an arcface_torch backbone.pth, or an ONNX recognition model (.onnx).",
    )(command)


def command_line() -> str:
    """The command as the user typed it, for the facts of a report."""
    import shlex
    import sys

    return shlex.join(["facestra", *sys.argv[1:]])


def progress_bar(total: int, description: str):
    """A tqdm bar on stderr counting images, with images/s."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", unit_scale=False, dynamic_ncols=True, leave=False)


def refuse_unused_options(names: tuple[str, ...], reason: str) -> None:
    """Refuse any of the options ``names`` (parameter names) that the user gave on the command line: one
    this mode does not use would otherwise be ignored without a word. ``reason`` says why (``"needs
    --benchmark ijbb or ijbc"``)."""
    context = click.get_current_context()
    for parameter in context.command.params:
        if parameter.name not in names:
            continue
        source = context.get_parameter_source(parameter.name)
        if source not in (None, click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP):
            given = next((opt for opt in parameter.opts + parameter.secondary_opts if opt.startswith("--")), parameter.name)
            raise click.UsageError(f"{'/'.join(parameter.opts + parameter.secondary_opts) or given}: {reason}")


def check_command_outputs(outputs: Sequence[tuple[str, Path | None]], inputs: Iterable[str | os.PathLike | bytes], *,
                          overwrite: bool) -> None:
    """Every ``(flag, path)`` output of a command through the one shared check
    (:func:`facestra.io.refuse_output_over_inputs`: never an input, an existing file only with --overwrite),
    its folder proven writable: before the model loads, so a bad output costs no work."""
    from facestra.io import check_writable_folder, refuse_output_over_inputs

    inputs = list(inputs)
    for flag, path in outputs:
        if path is not None:
            refuse_output_over_inputs(path, inputs, overwrite=overwrite, role=flag)
            check_writable_folder(Path(path).parent)
