"""``facestra calibrate`` as library calls: a labelled source -> scores -> operating points -> a JSON file.

The source is a benchmark any ``verify`` reads (``.bin``, ``pairs.csv``, the LFW / CFP / CALFW layouts) or
a folder of aligned faces with one sub-folder per identity, from which every pair is scored
(:mod:`facestra.verify.scoring`). The figures are :mod:`facestra.verify.calibration`'s. The result names
the weights it was measured with (:func:`facestra.models.fingerprint.weights_sha256`) and the flip mode
of the embeddings, since a threshold means nothing for another model or another way of embedding; a
compare with a calibration of other weights is refused unless forced.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facestra import __version__
from facestra.embed.options import InferenceOptions
from facestra.errors import UserError
from facestra.verify.calibration import CalibrationOptions, CalibrationResult, LogisticCalibration, ScoredPairs, calibrate_scores

if TYPE_CHECKING:
    from torch import nn

    from facestra.protocols import Benchmark

CALIBRATION_FORMAT = "facestra-calibration/1"


@dataclass(frozen=True)
class IdentityFolder:
    """Aligned faces, one sub-folder per identity: image paths and the identity number of each."""

    root: Path
    images: tuple[Path, ...]
    labels: np.ndarray
    names: tuple[str, ...]
    loose: int  # images directly under root, in no identity's folder (not used)


@dataclass(frozen=True)
class Calibration:
    """A calibration and what it is valid for: the weights, the embedding's flip mode, the source."""

    model: dict[str, Any]
    source: dict[str, Any]
    result: CalibrationResult
    options: CalibrationOptions
    scored: ScoredPairs | None = field(default=None, repr=False, compare=False)  # for a report; not written
    images: tuple[Path | bytes, ...] = field(default=(), repr=False, compare=False)  # the source's, as scored names them
    names: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT, "facestra": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": self.model, "source": self.source, **self.result.as_dict(),
            "options": dataclasses.asdict(self.options),
        }


@dataclass(frozen=True)
class StoredCalibration:
    """What a decision needs from a calibration file (or a model file that carries one)."""

    origin: str
    weights_sha256: str
    flip: str
    points: dict[float, tuple[float | None, float | None]]  # target FAR -> (cosine threshold, TAR); None: unsupported
    probability: LogisticCalibration
    data: dict[str, Any]

    def threshold_at(self, far: float) -> tuple[float, float]:
        """``(cosine threshold, TAR)`` calibrated for target ``far``; a FAR not calibrated, or that the data
        could not measure, is a :class:`UserError` listing those that can be used."""
        for target, (threshold, tar) in self.points.items():
            if math.isclose(target, far, rel_tol=1e-9):
                if threshold is None:
                    raise UserError(f"{self.origin}: FAR {far:g} is not supported by the calibration's data "
                                    f"(too few impostor pairs); use one of {self._usable()}")
                return threshold, tar
        raise UserError(f"{self.origin}: not calibrated for FAR {far:g}; use one of {self._usable()} "
                        "(or calibrate again with --far)")

    def _usable(self) -> str:
        return ", ".join(f"{far:g}" for far, (threshold, _) in self.points.items() if threshold is not None) or "none"

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> StoredCalibration:
        """Read back what :meth:`Calibration.as_dict` wrote; anything else is a one-line :class:`UserError`."""
        try:
            if data.get("format") != CALIBRATION_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {CALIBRATION_FORMAT!r}")
            points = {}
            for entry in data["operating_points"]:
                far = float(entry["far_target"])
                threshold = entry.get("threshold_cosine") if entry["supported"] else None
                if threshold is not None and not (math.isfinite(float(threshold)) and -1.0 <= float(threshold) <= 1.0):
                    raise ValueError(f"threshold {threshold!r} at FAR {far:g} is not a cosine in [-1, 1]")
                points[far] = (None if threshold is None else float(threshold), entry.get("tar"))
            fit = data["probability"]
            probability = LogisticCalibration(float(fit["coef"]), float(fit["intercept"]), float(fit["prior"]),
                                              fit.get("ece"), int(fit.get("ece_pairs", 0)), int(fit.get("held_out_identities", 0)))
            if not (math.isfinite(probability.coef) and math.isfinite(probability.intercept) and 0 < probability.prior < 1):
                raise ValueError("the probability fit holds numbers out of range")
            return cls(origin, str(data["model"]["weights_sha256"]), str(data["model"]["flip"]), points, probability, data)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            detail = f"missing entry {error}" if isinstance(error, KeyError) else str(error) or type(error).__name__
            raise UserError(f"{origin}: not a facestra calibration file ({detail})") from None

    def check_model(self, model: nn.Module, flip: str, *, force: bool = False) -> None:
        """Refuse a calibration measured with other weights or another flip mode (unless ``force``)."""
        from facestra.models.fingerprint import weights_sha256

        if force:
            return
        if weights_sha256(model) != self.weights_sha256:
            raise UserError(f"{self.origin}: calibrated for other weights ({self.data['model'].get('network', '?')}, "
                            f"sha256 {self.weights_sha256[:12]}...); calibrate this model, or pass `force`")
        if flip != self.flip:
            raise UserError(f"{self.origin}: calibrated with `flip` {self.flip}, not {flip}; use the same `flip`, or pass `force`")


def load_calibration(path: str | Path) -> StoredCalibration:
    """A calibration file written by ``facestra calibrate``; a corrupt or foreign file is a UserError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a facestra calibration file ({type(error).__name__})") from None
    return StoredCalibration.from_dict(data, str(path))


def carried_calibration(model: nn.Module) -> StoredCalibration | None:
    """The calibration a facestra model file carries (written by ``calibrate --save-model``), if any."""
    from facestra.models.record import record_of

    data = record_of(model).calibration
    return None if data is None else StoredCalibration.from_dict(data, "the model file's calibration")


def is_identity_folder(path: Path) -> bool:
    """A folder that holds no benchmark (no pair file, layout marker or ``.bin``) but sub-folders: identities."""
    from facestra.protocols.registry import benchmark_markers

    if not path.is_dir():
        return False
    if any((path / marker).is_file() for marker in benchmark_markers()) or any(path.glob("*.bin")):
        return False
    return any(child.is_dir() for child in path.iterdir())


def read_identity_folder(root: str | Path) -> IdentityFolder:
    """Every image under each sub-folder of ``root``; the sub-folder names the identity."""
    from facestra.io import list_image_paths

    root = Path(root)
    relative = list_image_paths(root)
    names: dict[str, int] = {}
    images, labels, loose = [], [], 0
    for name in relative:
        parts = name.split("/")
        if len(parts) < 2:
            loose += 1
            continue
        labels.append(names.setdefault(parts[0], len(names)))
        images.append(root / name)
    if len(names) < 2:
        raise UserError(f"{root}: needs aligned faces in at least two identity sub-folders, found {len(names)} "
                        f"({len(images)} images); a benchmark needs a .bin, pairs.csv or its layout's pair file")
    return IdentityFolder(root, tuple(images), np.asarray(labels, dtype=np.int64), tuple(names), loose)


def read_source(data: str | Path) -> IdentityFolder | Benchmark:
    """The calibration source at ``data``: a folder of identities, or any benchmark ``verify`` reads."""
    from facestra.protocols import load_benchmark
    from facestra.verify.benchmarks import guess_name

    data = Path(data)
    if not data.exists():
        raise UserError(f"{data}: no such file or folder")
    if is_identity_folder(data):
        return read_identity_folder(data)
    try:
        return load_benchmark(guess_name(data), data)
    except UserError as error:
        if not data.is_dir():
            raise
        raise UserError(f"{data}: holds neither sub-folders of aligned faces, one per identity, nor a benchmark "
                        f"({error})") from None


def score_source(model: nn.Module, source: IdentityFolder | Benchmark, options: CalibrationOptions,
                 inference: InferenceOptions, *, progress: Any = None) -> ScoredPairs:
    """Embed the source's images once and score its pairs."""
    from facestra.embed.inference import embed_benchmark, embed_images
    from facestra.verify.scoring import image_key, score_benchmark_pairs, score_identities

    if isinstance(source, IdentityFolder):
        sizes = np.bincount(source.labels)
        if not (sizes > 1).any():
            raise UserError(f"{source.root}: every identity has one image, so there is no genuine pair to calibrate with")
        embeddings = embed_images(model, list(source.images), inference, progress=progress)
        return score_identities(embeddings, source.labels, max_pairs=options.max_pairs, seed=options.seed)
    emb1, emb2 = embed_benchmark(model, source, inference, progress=progress)
    keys = [image_key(image) for image in source.images]
    return score_benchmark_pairs(emb1, emb2, source.issame, source.pairs, keys)


def calibrate(
    model: nn.Module | str | Path,
    data: str | Path,
    options: CalibrationOptions = CalibrationOptions(),
    inference: InferenceOptions = InferenceOptions(),
    *,
    arch: str | None = None,
    progress: Any = None,
    source: IdentityFolder | Benchmark | None = None,
    checkpoint: str | Path | None = None,
) -> Calibration:
    """Calibrate ``model`` (a loaded network or any file ``--checkpoint`` takes) on the labelled source
    ``data``: thresholds at ``options.far``, their intervals over identities, EER, the best-accuracy
    threshold and P(same). A source with one identity or one kind of pair is a :class:`UserError`.

    ``source`` is ``data`` already read (:func:`read_source`), ``checkpoint`` the file a loaded ``model``
    came from, recorded in the result."""
    from facestra.embed.inference import load_for_inference
    from facestra.models.fingerprint import weights_sha256
    from facestra.models.record import record_of
    from facestra.verify.checks import check_benchmark

    if isinstance(model, (str, Path)):
        checkpoint = model
        model = load_for_inference(model, inference.device, arch=arch)
    source = read_source(data) if source is None else source
    checked = [] if isinstance(source, IdentityFolder) else check_benchmark(source)  # refuses a benchmark that cannot be scored
    pairs = score_source(model, source, options, inference, progress=progress)
    if len(pairs.genuine) == 0 or len(pairs.impostor) == 0:
        raise UserError(f"{data}: has {len(pairs.genuine)} genuine and {len(pairs.impostor)} impostor pairs; "
                        "calibration needs both")
    result = calibrate_scores(pairs, options)
    warnings = checked + list(result.warnings)
    result = CalibrationResult(**{**result.__dict__, "warnings": tuple(warnings)})
    described = {
        "weights_sha256": weights_sha256(model), "network": record_of(model).arch,
        "checkpoint": None if checkpoint is None else str(checkpoint), "flip": inference.flip, "input_size": [int(v) for v in model.input_size],
    }
    names = tuple(str(path) for path in source.images) if isinstance(source, IdentityFolder) else \
        tuple(source.image_name(index) for index in range(len(source.images)))
    return Calibration(described, _describe_source(data, source, pairs), result, options, pairs, tuple(source.images), names)


def _kind(source: IdentityFolder | Benchmark) -> str:
    return "identity folder" if isinstance(source, IdentityFolder) else "benchmark"


def _describe_source(data: str | Path, source: IdentityFolder | Benchmark, pairs: ScoredPairs) -> dict[str, Any]:
    described: dict[str, Any] = {
        "path": str(data), "kind": _kind(source), "identities": pairs.num_identities,
        "genuine_pairs": pairs.genuine_total, "impostor_pairs": pairs.impostor_total,
        "genuine_scored": int(len(pairs.genuine)), "impostor_scored": int(len(pairs.impostor)),
        "sampled": pairs.sampled, "sample_seed": pairs.sample_seed,
    }
    if isinstance(source, IdentityFolder):
        described |= {"images": len(source.images), "identity_unit": "sub-folder", "loose_images_skipped": source.loose}
    else:
        described |= {"benchmark": source.name, "images": len(source.images),
                      "identity_unit": "connected components of the genuine pairs (the benchmark names no identities)"}
    return described


def write_calibration(calibration: Calibration, path: str | Path, *, overwrite: bool = False) -> None:
    """Write the calibration as JSON, atomically; an existing file is kept unless ``overwrite``."""
    from facestra.io import write_text_atomic

    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists; choose another `out` or pass `overwrite`")
    write_text_atomic(path, json.dumps(_json_ready(calibration.as_dict()), indent=2) + "\n")


def save_calibrated_model(model: nn.Module, calibration: Calibration, out: str | Path, *, overwrite: bool = False) -> None:
    """A facestra model file of ``model``'s weights carrying ``calibration``; the user's file is never
    touched (``out`` must be another path). ONNX models hold their graph and cannot carry one."""
    from facestra.models import registry
    from facestra.models.record import record_of, with_record

    out = Path(out)
    if getattr(model, "session", None) is not None:
        raise UserError(f"`save_model` {out}: an ONNX model cannot carry a calibration; keep the JSON and pass `calibration`")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; choose another `save_model` or pass `overwrite`")
    original = record_of(model)
    with_record(model, calibration=_json_ready(calibration.as_dict()))
    try:
        registry.save(model, out)
    finally:
        model.record = original


def _json_ready(value: Any) -> Any:
    """Plain JSON values: NaN and infinity (a rate no bootstrap draw could measure) become None."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
