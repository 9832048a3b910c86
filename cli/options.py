"""Option types shared by several commands."""

from __future__ import annotations

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
