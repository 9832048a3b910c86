"""What a facestra model file records about itself, checked before it is believed.

A model file carries the arguments its network was built with and, after a validated training run, the
threshold it verified at. A file edited by hand, written by another tool or corrupted can hold anything
there; an absurd width or input size would allocate gigabytes or fail deep inside PyTorch, and a NaN or
negative threshold would make ``compare`` call every pair different (or the same). Each value is held to
the limits the command line enforces for the same option, so a bad file is one line naming the value.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from facestra.errors import UserError
from facestra.fields import IMAGE_SIDES

#: The distance range of L2-normalised embeddings, where any verification threshold lies.
THRESHOLD_RANGE: tuple[float, float] = (0.0, 4.0)


def _limits() -> dict[str, tuple[type, float | None, float | None, tuple[str, ...] | None]]:
    """name -> (type, minimum, maximum, choices), read from the option dataclasses that declare them."""
    from facestra.models.stra import StRAOptions
    from facestra.train.config import TrainConfig

    wanted = {"width", "embedding_size", "dropout"}
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name in wanted] + list(dataclasses.fields(StRAOptions))
    limits = {}
    for field in fields:
        kind = type(field.default)
        limits[field.name] = (kind, field.metadata.get("minimum"), field.metadata.get("maximum"), field.metadata.get("choices"))
    return limits


def check_recorded_arguments(kwargs: dict[str, Any]) -> str | None:
    """Why the recorded network arguments ``kwargs`` cannot be believed, or None."""
    limits = _limits()
    for name, value in kwargs.items():
        if name == "input_size":
            low, high = IMAGE_SIDES
            if not (isinstance(value, (list, tuple)) and len(value) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value)):
                return f"input_size {value!r} is not two sides of {low} to {high} pixels"
            continue
        if name not in limits:
            return f"unknown argument {name!r}"
        kind, low, high, choices = limits[name]
        if kind is bool:
            if not isinstance(value, bool):
                return f"{name} {value!r} is not true or false"
            continue
        if kind is str:
            if not isinstance(value, str) or (choices and value not in choices):
                return f"{name} {value!r} is not one of {', '.join(choices or ())}"
            continue
        number_types = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types) or not math.isfinite(value):
            return f"{name} {value!r} is not a{'n integer' if kind is int else ' number'}"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{name} {value!r} is outside {low:g} to {high:g}" if high is not None else f"{name} {value!r} is below {low:g}"
    return None


def create_recorded(arch: str, kwargs: dict[str, Any], path: Path) -> Any:
    """The network a model file records, built only when its arguments are within the options' limits."""
    from facestra.models.registry import create

    problem = check_recorded_arguments(kwargs)
    if problem is None:
        try:
            return create(arch, **kwargs)
        except (TypeError, ValueError, RuntimeError, OverflowError, UserError) as error:
            problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise UserError(f"{path}: not a facestra model file: bad arguments for {arch} ({problem})")


def check_recorded_verification(entry: Any, path: Path) -> dict[str, Any]:
    """The ``verification`` record of a model file, whose threshold (if any) is a finite distance in
    [0, 4]; anything else is a UserError naming the value."""
    if not isinstance(entry, dict):
        raise UserError(f"{path}: not a facestra model file: its verification record is a {type(entry).__name__}, not a mapping")
    threshold = entry.get("threshold")
    low, high = THRESHOLD_RANGE
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
        or not low <= threshold <= high
    ):
        raise UserError(f"{path}: its recorded verification threshold {threshold!r} is not a distance from {low:g} to {high:g}; "
                        "the file is damaged (retrain, or give the threshold yourself)")
    return entry
