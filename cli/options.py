"""Option types shared by several commands."""

from __future__ import annotations

import dataclasses
from typing import Callable

import click


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
        if len(sizes) != 2 or min(sizes) < 8:
            self.fail(f"{value!r} is not a size like 112 or 224x192 (each side at least 8)", param, ctx)
        return sizes[0], sizes[1]


SIZE = SizeType()


_STRA_HELP = {
    "groups": "StRA: number of modes G (default {}).",
    "kernel_size": "StRA: local-attention window K, odd (default {}).",
    "mode_attention": "StRA: the mode-attention unit; off = local attention only (default {}).",
    "mode_interaction": "StRA: mode interaction, Eq. 6 (default {}).",
    "gate": "StRA: gate of the attention coefficients, Eq. 5 (default {}).",
}


def stra_options(command: Callable) -> Callable:
    """Add one option per field of :class:`facestra.models.StRAOptions`, typed and documented from it.

    The options default to None ("not given") so that plain ResNets accept a command line without them;
    the defaults shown are the dataclass's.
    """
    from facestra.models.stra import GATES, StRAOptions

    for field in reversed(dataclasses.fields(StRAOptions)):
        flag = field.name.replace("_", "-")
        help_text = _STRA_HELP[field.name].format(field.default)
        if field.type in (bool, "bool"):
            option = click.option(f"--{flag}/--no-{flag}", field.name, default=None, help=help_text)
        elif field.name == "gate":
            option = click.option(f"--{flag}", field.name, type=click.Choice(GATES), help=help_text)
        else:
            option = click.option(f"--{flag}", field.name, type=click.IntRange(min=1), help=help_text)
        command = option(command)
    return command
