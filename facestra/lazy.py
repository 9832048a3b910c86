"""Package attributes imported on first use: most of facestra's packages name things that need torch, and
the command line (``--help``, a compare with an ONNX model) must not pay for what it does not run."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_package(package: str, exports: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module-level ``__getattr__`` for ``package``.

    ``exports`` maps each module of the package (``".loop"``) to the names it exports, separated by spaces;
    a module is imported when one of its names is first asked for.
    """
    home = {name: module for module, names in exports.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home[name], package), name)

    return list(home), __getattr__
