"""The work done for one image, split in the two halves that can overlap: reading, decoding and finding the
face(s) (:func:`prepare_image`), then fitting, warping, encoding and writing the crops (:func:`finish_image`).
Kept free of scheduling, so that one process, a writer thread or a spawned worker all run the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from facestra.align.detect import YuNetDetector, rank_faces
from facestra.align.geometry import LandmarkError, fit_face, outside_image_problem, warp_to_crop
from facestra.align.plan import output_name
from facestra.align.records import (
    BAD_LANDMARKS,
    NO_FACE,
    OCCUPIED,
    OK,
    UNREADABLE,
    AlignSettings,
    AlignTask,
    FaceRecord,
)
from facestra.data.images import decode_image
from facestra.errors import UserError
from facestra.io import read_file, write_bytes_atomic


def occupied_detail(output: str) -> str:
    """Why an image got no crop: its output name is taken by a file this run's journal does not list."""
    return f"{output} already exists and was not written by facestra align; left as it is (move it away)"


@dataclass(frozen=True)
class CropPlan:
    """Everything a worker needs besides the task: picklable, no open handles."""

    out: str
    settings: AlignSettings
    detector: YuNetDetector | None
    check_existing: bool = True  # False when the output folder was empty: saves a stat per image
    # resuming: an existing output without a journal line is the killed run's if it holds the very bytes
    # this run would write; any other file is the user's
    adopt_existing: bool = False


def align_one(task: AlignTask, plan: CropPlan) -> list[FaceRecord]:
    """Decode one image once, find its face(s), write each aligned crop; never raises for bad input."""
    return finish_image(prepare_image(task, plan), plan)


class PendingCrop(NamedTuple):
    """A face located but not yet fitted, warped and written (its report line is made then): the decoded
    image and what the line needs. A plain tuple: the thread that decodes makes one per image."""

    path: str
    output: str
    face: int | None
    score: float | None
    image: np.ndarray
    landmarks: np.ndarray
    line: int  # of the landmarks file, 0 for a detector's landmarks


def prepare_image(task: AlignTask, plan: CropPlan) -> list[FaceRecord | PendingCrop]:
    """Read and decode the image once and find its face(s); bad input becomes a record."""
    settings = plan.settings
    if plan.check_existing and not plan.adopt_existing and not settings.all_faces:
        output = output_name(task.path, settings)
        if os.path.lexists(os.path.join(plan.out, output)):
            return [FaceRecord(task.path, OCCUPIED, detail=occupied_detail(output))]
    try:
        data = read_file(task.source)  # type: ignore[arg-type]
    except OSError as error:
        return [FaceRecord(task.path, UNREADABLE, detail=f"cannot read ({error.strerror or error})")]
    try:
        image = decode_image(data, task.path)
    except UserError as error:
        return [FaceRecord(task.path, UNREADABLE, detail=str(error).split(": ", 1)[-1])]

    if plan.detector is None:
        return [PendingCrop(task.path, output_name(task.path, settings), None, None, image, task.points, task.line)]
    faces = rank_faces(plan.detector(image), image.shape)
    if not faces:
        return [FaceRecord(task.path, NO_FACE, detail=f"{plan.detector.name} found no face")]
    if not settings.all_faces:
        faces = faces[:1]
    items: list[FaceRecord | PendingCrop] = []
    for index, face in enumerate(faces):
        number = index if settings.all_faces else None
        items.append(PendingCrop(task.path, output_name(task.path, settings, number), number, float(face.score),
                                 image, face.landmarks, 0))
    return items


def finish_image(items: list[FaceRecord | PendingCrop], plan: CropPlan) -> list[FaceRecord]:
    """Check the landmarks, fit, warp, encode and atomically write the crops of one image; never replaces an
    existing file (``--overwrite`` removes the earlier run's crops before any is written)."""
    import cv2

    settings = plan.settings
    if settings.image_format == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, settings.quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    records = []
    for item in items:
        if isinstance(item, FaceRecord):
            records.append(item)
            continue
        landmarks = tuple(np.asarray(item.landmarks, dtype=np.float64).reshape(-1).tolist())
        try:
            matrix, residual = fit_face(item.landmarks, settings.size)
            outside = outside_image_problem(item.landmarks, item.image.shape[1], item.image.shape[0])
            if outside is not None:
                raise LandmarkError(outside)
        except LandmarkError as error:
            detail = f"line {item.line}: {error}" if item.line else str(error)
            records.append(FaceRecord(item.path, BAD_LANDMARKS, face=item.face, score=item.score,
                                      landmarks=None if item.line else landmarks, detail=detail))
            continue
        target = os.path.join(plan.out, item.output)
        ok, encoded = cv2.imencode("." + settings.image_format, warp_to_crop(item.image, matrix, settings.size), params)
        if not ok:
            raise UserError(f"{target}: OpenCV could not encode the crop")
        detail = ""
        try:
            write_bytes_atomic(target, encoded, overwrite=False)
        except UserError:  # the target exists
            if not (plan.adopt_existing and _holds(target, encoded)):
                records.append(FaceRecord(item.path, OCCUPIED, face=item.face, score=item.score,
                                          detail=occupied_detail(item.output)))
                continue
            detail = "written by the interrupted run"  # before it could journal it
        except OSError as error:
            raise UserError(f"{target}: cannot write ({error.strerror or error})") from None
        records.append(FaceRecord(item.path, OK, face=item.face, output=item.output, score=item.score,
                                  residual=residual, landmarks=landmarks, detail=detail))
    return records


def _holds(path: str, data: np.ndarray) -> bool:
    """Whether the regular file ``path`` holds exactly ``data``: encoding is deterministic, so a crop the
    killed run wrote is byte for byte what this run makes, and a user's file is not."""
    try:
        return os.path.isfile(path) and not os.path.islink(path) and read_file(path) == np.asarray(data).tobytes()
    except OSError:
        return False
