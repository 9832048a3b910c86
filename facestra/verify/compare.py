"""Are two photos the same person? Detect, align, embed with the mirror, and decide with a threshold.

Each photo goes through the chain the benchmarks use: YuNet finds the face (the one a user most likely
means: :func:`facestra.align.detect.rank_faces`), its five landmarks warp it to the canonical crop, and the
crop and its mirror are embedded, concatenated and L2-normalised. The score is the protocol's distance,
the squared Euclidean distance of the two unit vectors (``2 - 2 cos``, in [0, 4]); "same" means
``distance < threshold``, exactly as the 10-fold protocol predicts a pair.

The threshold is, in this order: the one given; the one the model file recorded from the ``--val`` of the
run that trained it (the mean best threshold of its folds); else :data:`DEFAULT_THRESHOLD`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facestra.embed.options import InferenceOptions
from facestra.errors import UserError
from facestra.fields import documented

if TYPE_CHECKING:
    from torch import nn

#: Distance below which two faces are called the same person when the model file records no threshold:
#: cosine similarity 0.3, about where ArcFace-trained networks separate LFW's pairs. A model file that
#: recorded its own (from training's --val) is better; ``--threshold`` overrides both.
DEFAULT_THRESHOLD = 1.4


@dataclass(frozen=True)
class CompareOptions:
    """How two photos are compared, declared once for :func:`compare_images` and ``facestra compare``."""

    threshold: float | None = documented(
        None, "Distance below which the faces are the same person (default: the model file's recorded "
        f"threshold, else {DEFAULT_THRESHOLD}).", minimum=0.0, maximum=4.0,
    )
    aligned: bool = documented(False, "The photos are already aligned crops of the model's input size: skip detection.")
    min_score: float = documented(0.5, "Detector confidence a face needs (0-1).", minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class FaceFound:
    """Where the compared face was found in one photo (None fields for an aligned crop)."""

    path: str
    score: float | None
    box: list[float] | None
    faces_in_image: int | None


@dataclass(frozen=True)
class Comparison:
    """The decision and the figures behind it."""

    distance: float
    cosine: float
    threshold: float
    threshold_source: str
    same: bool
    faces: tuple[FaceFound, FaceFound]

    def as_dict(self) -> dict[str, Any]:
        return {
            "same_person": self.same, "distance": self.distance, "cosine_similarity": self.cosine,
            "threshold": self.threshold, "threshold_source": self.threshold_source,
            "images": [vars(face) for face in self.faces],
        }


def choose_threshold(model: nn.Module, given: float | None) -> tuple[float, str]:
    """The threshold to decide with and where it comes from (see the module's docstring)."""
    if given is not None:
        return float(given), "given"
    record = getattr(model, "verification", None)
    if isinstance(record, dict) and isinstance(record.get("threshold"), (int, float)):
        return float(record["threshold"]), f"model file ({record.get('benchmark', 'validation')})"
    return DEFAULT_THRESHOLD, "default"


def _aligned_crop(path: Path, model_size: tuple[int, int], options: CompareOptions, detector: Any) -> tuple[bytes, FaceFound]:
    """The photo's face as the encoded crop the network takes, and where it was found."""
    import cv2

    from facestra.align.detect import rank_faces
    from facestra.align.geometry import LandmarkError, warp_face
    from facestra.data.images import read_image

    image = read_image(path)  # a UserError naming the file when it cannot be decoded
    if options.aligned:
        if image.shape[:2] != tuple(model_size):
            raise UserError(f"{path}: is {image.shape[1]}x{image.shape[0]}, not an aligned {model_size[1]}x{model_size[0]} crop "
                            "(leave out --aligned to detect the face)")
        return cv2.imencode(".png", image)[1].tobytes(), FaceFound(str(path), None, None, None)
    faces = rank_faces(detector(image), image.shape)
    if not faces:
        raise UserError(f"{path}: no face found (confidence at least {options.min_score:g}; "
                        "if it is an aligned crop, pass --aligned)")
    face = faces[0]
    try:
        crop, _, _ = warp_face(image, face.landmarks, model_size)
    except LandmarkError as error:
        raise UserError(f"{path}: the face's landmarks cannot be aligned ({error})") from None
    found = FaceFound(str(path), round(face.score, 4), [round(float(v), 1) for v in face.box], len(faces))
    return cv2.imencode(".png", crop)[1].tobytes(), found


def compare_images(
    model: nn.Module | str | Path,
    first: str | Path,
    second: str | Path,
    options: CompareOptions = CompareOptions(),
    inference: InferenceOptions = InferenceOptions(workers=0),
    *,
    arch: str | None = None,
) -> Comparison:
    """Compare the faces of two photos with ``model`` (a loaded network, or the path of any file
    ``--checkpoint`` takes, with ``arch`` for a bare state dict); see the module's docstring. A photo that
    cannot be read or shows no face is a :class:`UserError` (exit 2) naming it."""
    from facestra.align.detect import load_detector
    from facestra.embed.inference import embed_images, load_for_inference

    if isinstance(model, (str, Path)):
        model = load_for_inference(model, inference.device, arch=arch)

    detector = None if options.aligned else load_detector("yunet", min_score=options.min_score)
    size = tuple(int(v) for v in model.input_size)
    crops, faces = zip(*(_aligned_crop(Path(p), size, options, detector) for p in (first, second)))
    try:
        embeddings = embed_images(model, list(crops), inference, names=[str(first), str(second)])
    except UserError as error:
        raise UserError(str(error), exit_code=2) from None
    cosine = float(np.clip(np.dot(embeddings[0].astype(np.float64), embeddings[1].astype(np.float64)), -1.0, 1.0))
    distance = float(np.sum(np.square(embeddings[0].astype(np.float64) - embeddings[1].astype(np.float64))))
    threshold, source = choose_threshold(model, options.threshold)
    return Comparison(distance, cosine, threshold, source, distance < threshold, (faces[0], faces[1]))
