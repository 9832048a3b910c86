"""Are two photos the same person? Detect, align, embed with the mirror, and decide with a threshold.

Each photo goes through the chain the benchmarks use: YuNet finds the face (the one a user most likely
means: :func:`facestra.align.detect.rank_faces`), its five landmarks warp it to the canonical crop, and the
crop and its mirror are embedded, concatenated and L2-normalised. The score is the protocol's distance,
the squared Euclidean distance of the two unit vectors (``2 - 2 cos``, in [0, 4]); "same" means
``distance < threshold``, exactly as the 10-fold protocol predicts a pair.

The operating point is, in this order: the threshold given; a calibration (a file from ``facestra
calibrate``, or the one the model file carries) at the chosen false accept rate, which decides
``cosine >= threshold`` and gives P(same); the threshold the model file recorded from the ``--val`` of the
run that trained it (the mean best threshold of its folds, an operating point that assumes half of all
comparisons are genuine); else :data:`DEFAULT_THRESHOLD`. The last two are uncalibrated, and the result
says so. Many pairs are compared in one run by :func:`compare_pairs`: each photo detected and embedded once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facestra.embed.options import InferenceOptions
from facestra.errors import UserError
from facestra.fields import documented
from facestra.models.record import record_of

if TYPE_CHECKING:
    from torch import nn

    from facestra.models.onnx_runtime import OnnxRuntimeModel
    from facestra.verify.calibration_job import StoredCalibration

#: Distance below which two faces are called the same person when the model file records no threshold:
#: cosine similarity 0.3, about where ArcFace-trained networks separate LFW's pairs. A model file that
#: recorded its own (from training's --val) is better; ``--threshold`` overrides both.
DEFAULT_THRESHOLD = 1.4
#: The false accept rate a calibrated compare decides at when none is chosen: 1 in 1,000.
DEFAULT_FAR = 1e-3


@dataclass(frozen=True)
class CompareOptions:
    """How two photos are compared, declared once for :func:`compare_images` and ``facestra compare``."""

    threshold: float | None = documented(
        None, "Distance below which the faces are the same person (default: the model file's recorded "
        f"threshold, else {DEFAULT_THRESHOLD}).", minimum=0.0, maximum=4.0,
    )
    far: float | None = documented(
        None, f"False accept rate to decide at, from the calibration (default {DEFAULT_FAR:g}).", positive=True, maximum=1.0,
    )
    prior: float | None = documented(
        None, "Prior probability that a comparison is genuine, for P(same) (default: the calibration's).", minimum=0.0, maximum=1.0,
    )
    force: bool = documented(False, "Use a calibration measured with other weights or another flip mode.")
    aligned: bool = documented(False, "The photos are already aligned crops of the model's input size: skip detection.")
    min_score: float = documented(0.5, "Detector confidence a face needs (0-1).", minimum=0.0, maximum=1.0)

    def __post_init__(self) -> None:
        if self.far is not None and not 0.0 < self.far < 1.0:
            raise ValueError(f"far {self.far:g} is outside (0, 1)")
        if self.prior is not None and not 0.0 < self.prior < 1.0:
            raise ValueError(f"prior {self.prior:g} is outside (0, 1)")
        if self.threshold is not None and self.far is not None:
            raise ValueError("far and threshold both choose the operating point: give one")


@dataclass(frozen=True)
class OperatingRule:
    """How a score becomes a decision: a calibrated cosine threshold at a FAR (with P(same)), or an
    uncalibrated distance threshold."""

    threshold: float  # squared distance of unit vectors
    source: str
    cosine_threshold: float | None = None  # calibrated: same when cosine >= this
    far: float | None = None
    tar: float | None = None
    calibration: StoredCalibration | None = None
    prior: float | None = None

    @property
    def calibrated(self) -> bool:
        return self.cosine_threshold is not None

    def same(self, cosine: float, distance: float) -> bool:
        return cosine >= self.cosine_threshold if self.calibrated else distance < self.threshold

    def probability(self, cosine: float) -> float | None:
        if self.calibration is None:
            return None
        return float(self.calibration.probability.probability(cosine, self.prior))


@dataclass(frozen=True)
class FaceFound:
    """Where the compared face was found in one photo (None fields for an aligned crop)."""

    path: str
    score: float | None
    box: list[float] | None
    faces_in_image: int | None


@dataclass(frozen=True)
class Comparison:
    """The decision, the figures behind it, and the operating rule that made it (its threshold, source, FAR
    and prior are the rule's)."""

    distance: float
    cosine: float
    same: bool
    faces: tuple[FaceFound, FaceFound]
    rule: OperatingRule = field(repr=False)  # with the calibration it read, which a repr need not print
    probability: float | None = None

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    @property
    def threshold_source(self) -> str:
        return self.rule.source

    @property
    def cosine_threshold(self) -> float | None:
        return self.rule.cosine_threshold

    @property
    def far(self) -> float | None:
        return self.rule.far

    @property
    def prior(self) -> float | None:
        return self.rule.prior

    @property
    def calibrated(self) -> bool:
        return self.rule.calibrated

    def as_dict(self) -> dict[str, Any]:
        return {
            "same_person": self.same, "distance": self.distance, "cosine_similarity": self.cosine,
            "threshold": self.threshold, "threshold_source": self.threshold_source, "calibrated": self.calibrated,
            "threshold_cosine": self.cosine_threshold, "far": self.far, "p_same": self.probability, "prior": self.prior,
            "images": [vars(face) for face in self.faces],
        }


def choose_threshold(model: nn.Module, given: float | None) -> tuple[float, str]:
    """The uncalibrated threshold and where it comes from: given, recorded by training's --val, or the default."""
    if given is not None:
        return float(given), "given"
    record = record_of(model).verification
    if isinstance(record, dict) and isinstance(record.get("threshold"), (int, float)):
        return float(record["threshold"]), f"model file ({record.get('benchmark', 'validation')})"
    return DEFAULT_THRESHOLD, "default"


def choose_rule(model: nn.Module, options: CompareOptions, flip: str,
                calibration: StoredCalibration | str | Path | None = None) -> OperatingRule:
    """The operating point to decide with (see the module's docstring). A calibration of other weights or
    another flip mode is refused unless ``options.force``; ``far`` or ``prior`` without any calibration
    are refused rather than ignored."""
    from facestra.verify.calibration_job import carried_calibration, load_calibration

    if options.threshold is not None:
        if options.prior is not None:
            raise UserError("`prior`: P(same) needs a calibration, and a given `threshold` decides without one")
        return OperatingRule(float(options.threshold), "given")
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration)
    if calibration is None:
        calibration = carried_calibration(model)
    if calibration is None:
        if options.far is not None or options.prior is not None:
            raise UserError(f"`{'far' if options.far is not None else 'prior'}`: needs a `calibration` (a file from "
                            "facestra calibrate, or a model file that carries one)")
        return OperatingRule(*choose_threshold(model, None))
    calibration.check_model(model, flip, force=options.force)
    far = DEFAULT_FAR if options.far is None else options.far
    cosine, tar = calibration.threshold_at(far)
    prior = calibration.probability.prior if options.prior is None else options.prior
    return OperatingRule(2.0 - 2.0 * cosine, f"FAR {far:g} from {calibration.origin}", cosine, far, tar, calibration, prior)


def decide(rule: OperatingRule, first: np.ndarray, second: np.ndarray, faces: tuple[FaceFound, FaceFound]) -> Comparison:
    """The comparison of two unit embeddings under ``rule``, its figures in float64."""
    a, b = first.astype(np.float64), second.astype(np.float64)
    cosine = float(np.clip(np.dot(a, b), -1.0, 1.0))
    distance = float(np.sum(np.square(a - b)))
    return Comparison(distance, cosine, rule.same(cosine, distance), faces, rule, rule.probability(cosine))


class PhotoError(UserError):
    """A photo that gives no face to compare; ``status`` names why, as a row of ``compare --pairs`` shows it
    (``unreadable``, ``no_face``, ``bad_landmarks``, ``not_aligned``)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message, exit_code=2)
        self.status = status


def _aligned_crop(path: Path, model_size: tuple[int, int], options: CompareOptions, detector: Any) -> tuple[bytes, FaceFound]:
    """The photo's face as the encoded crop the network takes, and where it was found."""
    import cv2

    from facestra.align.detect import rank_faces
    from facestra.align.geometry import LandmarkError, warp_face
    from facestra.data.images import read_image

    try:
        image = read_image(path)  # a UserError naming the file when it cannot be decoded
    except UserError as error:
        raise PhotoError(str(error), "unreadable") from None
    if options.aligned:
        if image.shape[:2] != tuple(model_size):
            raise PhotoError(f"{path}: is {image.shape[1]}x{image.shape[0]}, not an aligned {model_size[1]}x{model_size[0]} crop "
                             "(leave out --aligned to detect the face)", "not_aligned")
        return cv2.imencode(".png", image)[1].tobytes(), FaceFound(str(path), None, None, None)
    faces = rank_faces(detector(image), image.shape)
    if not faces:
        raise PhotoError(f"{path}: no face found (confidence at least {options.min_score:g}; "
                         "if it is an aligned crop, pass --aligned)", "no_face")
    face = faces[0]
    try:
        crop, _, _ = warp_face(image, face.landmarks, model_size)
    except LandmarkError as error:
        raise PhotoError(f"{path}: the face's landmarks cannot be aligned ({error})", "bad_landmarks") from None
    found = FaceFound(str(path), round(face.score, 4), [round(float(v), 1) for v in face.box], len(faces))
    return cv2.imencode(".png", crop)[1].tobytes(), found


def load_comparison_model(checkpoint: str | Path, device: str = "auto", *, arch: str | None = None) -> Any:
    """The model compare runs: an ONNX model through onnxruntime alone (no torch to import, so a two-photo
    compare answers in under a second), any other file through :func:`facestra.embed.inference.load_for_inference`."""
    if Path(checkpoint).suffix.lower() == ".onnx":
        from facestra.models.onnx_runtime import open_onnx

        if arch is not None:
            raise UserError(f"`arch` {arch}: {checkpoint} is an ONNX model, which holds its own network; leave `arch` out")
        return open_onnx(checkpoint, device=device)
    from facestra.embed.inference import load_for_inference

    return load_for_inference(checkpoint, device, arch=arch)


def _embed(model: Any, crops: list[bytes], inference: InferenceOptions, names: list[str]) -> np.ndarray:
    """Embeddings of aligned crops: numpy and onnxruntime for an ONNX model loaded without torch, else torch."""
    from facestra.models.onnx_runtime import OnnxRuntimeModel

    try:
        if isinstance(model, OnnxRuntimeModel):
            from facestra.embed.runtime import embed_with_runtime

            return embed_with_runtime(model, crops, flip=inference.flip, names=names, batch_size=inference.batch_size)
        from facestra.embed.inference import embed_images

        return embed_images(model, crops, inference, names=names)
    except UserError as error:
        raise UserError(str(error), exit_code=2) from None


def _prepare(model: Any, options: CompareOptions, inference: InferenceOptions, arch: str | None,
             calibration: StoredCalibration | str | Path | None) -> tuple[Any, OperatingRule, Callable[[Path], tuple[bytes, FaceFound]]]:
    """What every comparison of a run shares: the model (loaded once), its operating point, and the one way
    a photo becomes its aligned crop (the detector built once)."""
    from facestra.align.detect import load_detector

    if isinstance(model, (str, Path)):
        model = load_comparison_model(model, inference.device, arch=arch)
    rule = choose_rule(model, options, inference.flip, calibration)
    detector = None if options.aligned else load_detector("yunet", min_score=options.min_score)
    size = tuple(int(v) for v in model.input_size)
    return model, rule, lambda path: _aligned_crop(path, size, options, detector)


def compare_images(
    model: nn.Module | OnnxRuntimeModel | str | Path,
    first: str | Path,
    second: str | Path,
    options: CompareOptions = CompareOptions(),
    inference: InferenceOptions = InferenceOptions(workers=0),
    *,
    arch: str | None = None,
    calibration: StoredCalibration | str | Path | None = None,
) -> Comparison:
    """Compare the faces of two photos with ``model`` (a loaded network, or the path of any file
    ``--checkpoint`` takes, with ``arch`` for a bare state dict) at the operating point of
    :func:`choose_rule` (``calibration``: a calibration file or one already loaded). A photo that cannot be
    read or shows no face is a :class:`UserError` (exit 2) naming it."""
    model, rule, crop = _prepare(model, options, inference, arch, calibration)
    crops, faces = zip(*(crop(Path(p)) for p in (first, second)))
    embeddings = _embed(model, list(crops), inference, [str(first), str(second)])
    return decide(rule, embeddings[0], embeddings[1], (faces[0], faces[1]))


@dataclass(frozen=True)
class PairOutcome:
    """One row of :func:`compare_pairs`: the comparison, or why a photo of the pair gave none."""

    first: str
    second: str
    status: str  # "ok", or the PhotoError status of the first photo that failed
    comparison: Comparison | None = None
    message: str | None = None


def compare_pairs(
    model: nn.Module | OnnxRuntimeModel | str | Path,
    pairs: Sequence[tuple[str | Path, str | Path]],
    options: CompareOptions = CompareOptions(),
    inference: InferenceOptions = InferenceOptions(workers=0),
    *,
    arch: str | None = None,
    calibration: StoredCalibration | str | Path | None = None,
    progress: Any = None,
) -> list[PairOutcome]:
    """Compare many pairs in one run: the model loaded once, each distinct photo detected, aligned and
    embedded once. A photo that is unreadable or shows no face makes its pairs' rows carry that status;
    the other pairs go on."""
    model, rule, crop = _prepare(model, options, inference, arch, calibration)
    photos = list(dict.fromkeys(str(path) for pair in pairs for path in pair))
    crops: dict[str, tuple[bytes, FaceFound]] = {}
    failed: dict[str, PhotoError] = {}
    for photo in photos:
        try:
            crops[photo] = crop(Path(photo))
        except PhotoError as error:
            failed[photo] = error
        if progress is not None:
            progress(1)
    names = list(crops)
    embedded = _embed(model, [crops[name][0] for name in names], inference, names)
    row_of = {name: index for index, name in enumerate(names)}
    outcomes = []
    for first, second in pairs:
        first, second = str(first), str(second)
        broken = next((failed[p] for p in (first, second) if p in failed), None)
        if broken is not None:
            outcomes.append(PairOutcome(first, second, broken.status, None, str(broken)))
            continue
        faces = (crops[first][1], crops[second][1])
        outcomes.append(PairOutcome(first, second, "ok", decide(rule, embedded[row_of[first]], embedded[row_of[second]], faces)))
    return outcomes


def read_pair_list(path: str | Path) -> list[tuple[Path, Path]]:
    """Pairs of photo paths from a CSV file, one pair a line (``first,second``; a header line is allowed).
    A relative path is relative to the list file's folder, as facestra's other list files are."""
    import csv

    from facestra.io import read_text, text_lines

    path = Path(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such pair list") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    pairs: list[tuple[Path, Path]] = []
    for number, row in enumerate(csv.reader(text_lines(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if len(cells) != 2 or not all(cells):
            raise UserError(f"{path}:{number}: expected two photo paths separated by a comma, got {len(cells)} field(s)")
        first, second = (Path(cell) if Path(cell).is_absolute() else path.parent / cell for cell in cells)
        if not pairs and number == 1 and not first.exists() and not second.exists() and not any(
                Path(cell).suffix for cell in cells):
            continue  # a header such as "first,second"
        pairs.append((first, second))
    if not pairs:
        raise UserError(f"{path}: lists no pair of photos")
    return pairs


def pair_rows(outcomes: Sequence[PairOutcome]) -> list[list[str]]:
    """The CSV rows of :func:`compare_pairs`' outcomes, header first."""
    rows = [["first", "second", "status", "same_person", "cosine", "distance", "p_same", "message"]]
    for outcome in outcomes:
        result = outcome.comparison
        if result is None:
            rows.append([outcome.first, outcome.second, outcome.status, "", "", "", "", outcome.message or ""])
            continue
        probability = "" if result.probability is None else f"{result.probability:.6f}"
        rows.append([outcome.first, outcome.second, "ok", "1" if result.same else "0", f"{result.cosine:.6f}",
                     f"{result.distance:.6f}", probability, ""])
    return rows
