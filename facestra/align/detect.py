"""Face detection for alignment: the YuNet model of libfacedetection via the ``yuface`` package.

``yuface`` ships the network compiled with its weights, so detection needs no download. It is an optional
extra (``pip install 'facestra[detect]'``); :func:`load_detector` says so when it is missing.

YuNet's five landmarks come in the template's order (image-left eye first, image-left mouth corner first)
and its scores are integers 0..100; here they are floats 0..1.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facestra.errors import UserError

DETECTORS = ("yunet",)
#: YuNet works on images up to this side; larger ones are shrunk for detection only (the crop is always
#: taken from the full-resolution image).
MAX_DETECTION_SIDE = 960


@dataclass(frozen=True)
class Face:
    """A detected face: score in [0, 1], box (x, y, w, h) and 5x2 landmarks, all in image pixels."""

    score: float
    box: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class YuNetDetector:
    """YuNet through ``yuface.detect``; picklable, so each worker process builds its own call."""

    min_score: float = 0.5
    name: str = "yunet"

    def __call__(self, image: np.ndarray) -> list[Face]:
        detect = _yuface_detect()
        height, width = image.shape[:2]
        scale = min(1.0, MAX_DETECTION_SIDE / max(height, width))
        if scale < 1.0:
            import cv2

            small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
        else:
            small = image
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores, boxes, points = detect(np.ascontiguousarray(small), self.min_score)
        factor = 1.0 / scale
        return [
            Face(
                score=float(score) / 100.0,
                box=np.asarray(box, dtype=np.float64) * factor,
                landmarks=np.asarray(landmark, dtype=np.float64).reshape(5, 2) * factor,
            )
            for score, box, landmark in zip(scores, boxes, points)
        ]


def _yuface_detect() -> Callable:
    try:
        import yuface
    except ImportError:
        raise UserError(
            "the yunet detector needs the yuface package: pip install 'facestra[detect]' (or pip install yuface)"
        ) from None
    return yuface.detect


def load_detector(name: str, *, min_score: float = 0.5) -> YuNetDetector:
    """The detector called ``name``; a :class:`UserError` if it is unknown or its package is missing."""
    if name != "yunet":
        raise UserError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}")
    _yuface_detect()
    return YuNetDetector(min_score=min_score)


def rank_faces(faces: list[Face], image_shape: tuple[int, ...]) -> list[Face]:
    """Faces ordered by how likely a user means them: large boxes near the image centre first.

    The preference is box area minus twice the squared distance of the box centre from the image centre,
    so a large face slightly off-centre still beats a small one in the middle, while a large face at the
    edge of a group photo loses to the one the photo is centred on.
    """
    height, width = image_shape[:2]
    centre = np.array([width / 2.0, height / 2.0])

    def preference(face: Face) -> float:
        x, y, w, h = face.box
        offset = np.array([x + w / 2.0, y + h / 2.0]) - centre
        return float(w * h - 2.0 * (offset @ offset))

    return sorted(faces, key=preference, reverse=True)
