"""What a loaded model is, as one typed record: its architecture and arguments, the pixels it takes, what
was measured with it (training's --val, a calibration), and where its weights came from.

Every model facestra builds or loads carries one as ``model.record`` (a facestra network, an
arcface_torch state dict, an ONNX graph alike), so a reader asks one place instead of probing attributes;
the record changes by replacement (:func:`with_record`), never in place. torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from facestra.data.images import FACESTRA_INPUT, InputConvention


@dataclass(frozen=True)
class ModelRecord:
    """One model's identity card; ``verification``, ``calibration`` and ``initialised_from`` are what the
    model file stores under those names (plain JSON-like values)."""

    arch: str
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_convention: InputConvention = FACESTRA_INPUT
    verification: Mapping[str, Any] | None = None
    calibration: Mapping[str, Any] | None = None
    initialised_from: Mapping[str, Any] | None = None
    origin: str = "built"  # built, facestra model file, state dict, onnx

    #: The entries a facestra model file stores beside the weights, under these names.
    STORED = ("verification", "calibration", "initialised_from")


def record_of(model: Any) -> ModelRecord:
    """``model``'s record; a module facestra did not build (a test's stand-in, a user's network) reads as
    an unnamed network taking facestra's convention."""
    record = getattr(model, "record", None)
    return record if isinstance(record, ModelRecord) else ModelRecord(arch=type(model).__name__)


def with_record(model: Any, **changes: Any) -> Any:
    """Give ``model`` its record with ``changes`` (a new record: records are never changed in place)."""
    model.record = replace(record_of(model), **changes)
    return model
