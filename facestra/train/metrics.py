"""Where a run's figures go: ``metrics.jsonl``, TensorBoard, and the caller's ``progress`` callback.

The library never prints; a command line or a notebook shows progress from the :class:`TrainEvent`\\ s it
receives, and the files keep every logged figure for later. A resumed run rewrites ``metrics.jsonl`` up
to its checkpoint, so that the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestra.io import write_text_atomic
from facestra.train.checkpoint import Position
from facestra.train.run_folder import METRICS, TENSORBOARD


@dataclass(frozen=True)
class TrainEvent:
    """What the ``progress`` callback receives: after a logged step (``kind="step"``), a validation
    (``"val"``) or a saved checkpoint (``"save"``)."""

    kind: str
    epoch: int
    global_step: int
    total_steps: int
    values: dict[str, Any]


Progress = Callable[[TrainEvent], None]


class MetricsLog:
    """``metrics.jsonl`` (one JSON object a line) and TensorBoard scalars when TensorBoard is installed."""

    def __init__(self, run_dir: Path, keep_until_step: int | None) -> None:
        self.path = run_dir / METRICS
        if keep_until_step is not None and self.path.exists():
            # Lines logged after the checkpoint we resume from will be logged again: drop them.
            kept = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= keep_until_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self.file = self.path.open("a", encoding="utf-8")
        self.board = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(run_dir / TENSORBOARD))
        except ImportError:
            pass

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.board is not None:
            prefix = "val" if record.get("kind") == "val" else "train"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.board.add_scalar(f"{prefix}/{key}", value, record.get("step", 0))

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


class RunLog:
    """One process's reporting: rank 0 writes the files (``metrics`` is None elsewhere) and calls ``progress``."""

    def __init__(self, metrics: MetricsLog | None, progress: Progress | None, total_steps: int) -> None:
        self.metrics = metrics
        self.progress = progress
        self.total_steps = total_steps

    def record(self, kind: str, position: Position, values: dict[str, Any]) -> None:
        """A ``"step"`` or ``"val"`` line in the files, and the same figures to ``progress``."""
        line = {"kind": kind, "step": position.global_step, "epoch": position.epoch, **values}
        if self.metrics is not None:
            self.metrics.write(line)
        self._emit(kind, position, values)

    def saved(self, position: Position, path: Path) -> None:
        """Tell ``progress`` that ``last.pt`` now holds ``position``."""
        self._emit("save", position, {"path": str(path)})

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()

    def _emit(self, kind: str, position: Position, values: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(TrainEvent(kind, position.epoch, position.global_step, self.total_steps, values))
