"""Option fields that carry their own documentation.

Every option bundle (StRA switches, training config, inference options) is one dataclass; the command line
is generated from it (``facestra.cli.options.dataclass_options``), so a field's default, help text and
allowed values are written once, here in the library, next to the code that uses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

# Smallest and largest side, in pixels, of every image size an option takes (crops, network inputs,
# rendered photos): a typo of one digit too many is refused instead of allocating gigabytes.
IMAGE_SIDES: tuple[int, int] = (8, 4096)
# Most processes any --workers option starts: beyond a few hundred a typo is a fork bomb, not a speed-up.
MAX_WORKERS = 256


def documented(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    flag: str | None = None,
    metavar: str | None = None,
    path: str | None = None,
    required: bool = False,
) -> Any:
    """A dataclass field with the metadata the command-line generator reads.

    ``flag`` renames the option (``--no-flip`` style names come from bool defaults on their own);
    ``minimum``/``maximum`` become an int/float range the parser enforces (``positive``: above 0, for scales
    and rates where 0 means nothing); ``choices`` a fixed set of values;
    ``path`` ("file" or "folder") says what a :class:`~pathlib.Path` field may name; ``required`` makes
    the option mandatory on the command line (a field without a default need not be: ``--resume`` fills
    ``data`` and ``out`` of a training run).
    """
    metadata = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "positive": positive,
        "flag": flag,
        "metavar": metavar,
        "path": path,
        "required": required,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
