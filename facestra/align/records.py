"""The types every step of an alignment run hands to the next, kept apart so that the planner, the journal,
the per-image code and the worker processes can share them without importing one another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facestra.errors import UserError

OK = "ok"
#: A file facestra did not write already has the crop's name: it is left alone, and the image gets no crop.
OCCUPIED = "occupied"
NO_FACE = "no_face"
UNREADABLE = "unreadable"
BAD_LANDMARKS = "bad_landmarks"
NO_LANDMARKS = "no_landmarks"
MISSING_IMAGE = "missing_image"
NAME_CLASH = "name_clash"
#: Every status a report line can carry; all but ``ok`` count as problems (``--strict``).
STATUSES = (OK, OCCUPIED, NO_FACE, UNREADABLE, BAD_LANDMARKS, NO_LANDMARKS, MISSING_IMAGE, NAME_CLASH)
FINE_STATUSES = frozenset({OK})


@dataclass(frozen=True)
class FaceRecord:
    """One line of the report: an aligned face, or why an image gave none."""

    path: str
    status: str
    face: int | None = None
    output: str = ""
    score: float | None = None
    residual: float | None = None
    landmarks: tuple[float, ...] | None = None
    detail: str = ""

    def to_json(self) -> dict:
        return {"path": self.path, "status": self.status, "face": self.face, "output": self.output,
                "score": self.score, "residual": self.residual,
                "landmarks": None if self.landmarks is None else list(self.landmarks), "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict) -> FaceRecord:
        landmarks = data.get("landmarks")
        return cls(**{**data, "landmarks": tuple(landmarks) if landmarks is not None else None})


@dataclass(frozen=True)
class AlignSettings:
    """What decides the content of an output file; a rerun into the same folder must use the same."""

    size: tuple[int, int]
    image_format: str
    quality: int
    all_faces: bool
    source: str  # "landmarks" or the detector name

    def to_json(self) -> dict:
        return {**asdict(self), "size": list(self.size)}


@dataclass(frozen=True)
class AlignTask:
    """One image to process: where it is, and its landmarks or the reason it has none."""

    path: str  # relative to the input root, POSIX separators
    source: str | None  # absolute path of the image
    points: np.ndarray | None = None
    status: str | None = None  # set when the image is settled before decoding
    detail: str = ""
    line: int = 0  # the landmarks file's line the points come from


@dataclass(frozen=True)
class AlignSummary:
    """What a run did: one record per face or failed image, where the report is, how long it took."""

    records: tuple[FaceRecord, ...]
    report_path: Path
    images: int
    resumed: int
    seconds: float
    processed: int = 0
    workers: int = 1
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def problems(self) -> int:
        """Records whose status is a problem (anything but ok)."""
        return sum(n for status, n in self.counts.items() if status not in FINE_STATUSES)

    def to_json(self) -> dict:
        """The summary without the per-face records (those are in the CSV report)."""
        return {
            "images": self.images,
            "processed": self.processed,
            "workers": self.workers,
            "resumed": self.resumed,
            "counts": dict(self.counts),
            "warnings": self.problems,
            "seconds": round(self.seconds, 3),
            "report": str(self.report_path),
        }

    @property
    def faces_written(self) -> int:
        return self.counts.get(OK, 0)

    def line(self) -> str:
        """The one-line summary the CLI prints at the end."""
        parts = ", ".join(f"{status} {self.counts[status]}" for status in STATUSES if self.counts.get(status))
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        resumed = f"; {self.resumed} done by an earlier run" if self.resumed else ""
        return (
            f"aligned {self.images} images: {parts or 'nothing to do'}{resumed}; "
            f"{self.problems} warnings; {rate:.1f} images/s; report {self.report_path}"
        )


class AlignProblems(UserError):
    """Raised under ``strict=True`` after the report is written, when any image had a problem (exit 1)."""

    def __init__(self, summary: AlignSummary) -> None:
        super().__init__(f"strict: {summary.problems} problems -- {summary.line()}", exit_code=1)
        self.summary = summary
