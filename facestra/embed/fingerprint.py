"""What a stored embedding depends on, as one digest: a resumable or reusable result is continued or reused
only by a job with the same digest, so a changed image or another model never gets stale features.

An image is identified by its path, size and modification time (reading every image's bytes would cost as
much as embedding it), a model by the sha256 of its weights (of its file, for ONNX models, which hold no
torch parameters) with its architecture, input size and input convention, and the job by its options.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from facestra.models.record import record_of

if TYPE_CHECKING:
    from torch import nn


def model_digest(model: nn.Module) -> str:
    """sha256 of what decides ``model``'s outputs: its weights (:func:`facestra.models.fingerprint.weights_sha256`,
    an ONNX model's file) and how it is fed (architecture, input size, input convention)."""
    from facestra.models.fingerprint import weights_sha256

    convention = record_of(model).input_convention
    described = {
        "arch": record_of(model).arch,
        "input_size": [int(v) for v in getattr(model, "input_size", ())],
        "input": convention.as_dict(),
        "weights": weights_sha256(model),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def job_fingerprint(model: nn.Module, images: Iterable[str | os.PathLike], options: dict[str, Any]) -> str:
    """The digest of a job that embeds ``images`` (path, size and modification time of each) with
    ``model`` under ``options`` (a JSON-ready dict)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([options, model_digest(model)], sort_keys=True).encode())
    for image in images:
        name = os.fspath(image)
        try:
            status = os.stat(name)
            stamp = f"{status.st_size}:{status.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0" + stamp.encode() + b"\0")
    return digest.hexdigest()
