"""How a model is run over images (flip, batch, workers, device, resize): one dataclass for every command
that runs a model, in a module without torch so that the command line builds its options (and ``--help``)
without importing it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from facestra.fields import MAX_WORKERS, documented

FlipMode = Literal["concat", "sum", "none"]
FLIP_MODES: tuple[str, ...] = ("concat", "sum", "none")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def default_workers() -> int:
    """Decoding processes by default: one per spare core, at most 4 (more do not speed up a GPU's feed)."""
    return min(4, max(1, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class InferenceOptions:
    """How a model is run over images, declared once for embed, verify, training validation and the
    commands after them; their command-line options are generated from these fields."""

    flip: FlipMode = documented(
        "concat", "Combine each image with its mirror: concatenate (the protocol), add, or no mirror.", choices=FLIP_MODES
    )
    batch_size: int = documented(128, "Images per forward pass.", minimum=1)
    workers: int = documented(
        factory=default_workers, help="Image-decoding processes (0: decode in the main process).", minimum=0, maximum=MAX_WORKERS
    )
    device: str = documented("auto", "Where to run the model (auto: cuda when available).", choices=DEVICES)
    resize: bool = documented(
        False, "Fit images that are not the model's input size as training does (shorter-edge resize and centre "
        "crop) instead of refusing them."
    )

    def __post_init__(self) -> None:
        if self.flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {self.flip!r}")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError("batch_size must be at least 1 and workers not negative")
