"""What the HTML report shows, assembled from what ``verify`` measured: a :class:`Section` per benchmark
(10-fold or IJB) and the facts of the model that gave the figures.

:func:`scores_section` is the one builder under the others: any pair distances with the thresholds that
judge them, the ``pairs`` hardest errors (:func:`facestra.verify.hardest.hardest_errors`), the ROC, and
the caller's own threshold markers and tables, so ``calibrate`` reuses it for its operating points.
Rendering is :mod:`facestra.verify.html_report`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facestra.models.fingerprint import file_sha256
from facestra.models.record import record_of
from facestra.verify.hardest import hardest_errors
from facestra.verify.html_report import Marker, ModelFacts, ReportFacts, ReportImage, Section, ShownPair, Table, write_report

if TYPE_CHECKING:
    from torch import nn

    from facestra.verify.benchmarks import BenchmarkOutcome
    from facestra.verify.calibration_job import Calibration
    from facestra.verify.ijb import IJBOutcome

IJB_REPORT_FAR = 1e-4  # the IJB operating point whose errors are shown, the FAR papers quote most


def model_facts(model: nn.Module, checkpoint: str | os.PathLike) -> ModelFacts:
    """Architecture, parameters and multiply-adds (not counted for ONNX graphs), input convention and
    size, embedding size and the checkpoint's SHA-256."""

    arch = record_of(model).arch
    params = macs = None
    if not arch.startswith("onnx:"):
        from facestra.models.cost import complexity

        cost = complexity(model)
        params, macs = int(cost.params), int(cost.macs)
    convention = record_of(model).input_convention
    height, width = model.input_size
    described = f"RGB {height}x{width}, (x - {convention.mean:g}) / {convention.std:g}"
    return ModelFacts(arch, str(checkpoint), file_sha256(checkpoint), params, macs, described, int(model.embedding_size))


def describe_device(device: Any) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'s' if threads > 1 else ''})"


def scores_section(
    key: str,
    title: str,
    source: str,
    distances: np.ndarray,
    issame: np.ndarray,
    *,
    marker: Marker,
    judged_by: str,
    thresholds: np.ndarray | None = None,
    fold_ids: np.ndarray | None = None,
    pair_images: Callable[[int], tuple[ReportImage, ReportImage]] | None = None,
    pairs: int = 12,
    tables: Sequence[Table] = (),
    markers: Sequence[Marker] = (),
    roc: tuple[np.ndarray, np.ndarray] | None = None,
    fold_accuracies: np.ndarray | None = None,
    warnings: Sequence[str] = (),
) -> Section:
    """A section from any pair distances and labels.

    The errors are judged by ``thresholds[fold_ids]`` (one threshold per fold, the fold of each pair; the
    fold is shown with each pair), or, with both left out, by ``marker``'s threshold for every pair; the
    ``pairs`` hardest of each kind (:func:`facestra.verify.hardest.hardest_errors`) are shown with the
    faces ``pair_images(index)`` gives (none without it: only their count). ``marker`` (the line the
    errors were judged by) then ``markers`` are drawn on the figures; the ROC is ``(fpr, tpr)`` or
    computed from the distances.
    """
    from facestra.verify.pairs import roc_curve

    distances = np.asarray(distances, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    folds_shown = fold_ids is not None
    if thresholds is None:
        thresholds = np.array([marker[1]])
    if fold_ids is None:
        fold_ids = np.zeros(len(distances), dtype=np.int64)
    hardest = hardest_errors(distances, issame, thresholds, fold_ids, pairs if pair_images is not None else 0)
    if roc is None:
        curve = roc_curve(distances, issame)
        roc = (curve.fpr, curve.tpr)

    def shown(indices: np.ndarray) -> tuple[ShownPair, ...]:
        out = []
        for index in indices.tolist():
            first, second = pair_images(index)
            fold = int(fold_ids[index]) + 1 if folds_shown else None
            out.append(ShownPair(index, first, second, float(distances[index]), float(hardest.thresholds[index]), fold))
        return tuple(out)

    return Section(
        key=key, title=title, source=source, distances=distances, issame=issame, fpr=np.asarray(roc[0]),
        tpr=np.asarray(roc[1]), tables=tuple(tables), markers=(marker, *markers),
        false_accepts=shown(hardest.false_accepts), false_rejects=shown(hardest.false_rejects),
        num_false_accepts=hardest.num_false_accepts, num_false_rejects=hardest.num_false_rejects,
        judged_by=judged_by, fold_accuracies=fold_accuracies, warnings=tuple(warnings),
    )


def benchmark_section(outcome: BenchmarkOutcome, *, pairs: int = 12, markers: Sequence[Marker] = (),
                      tables: Sequence[Table] = ()) -> Section:
    """The section of one 10-fold benchmark outcome of ``verify``: each pair judged in its held-out fold by
    the threshold chosen on the other folds, as the protocol judges it."""
    from facestra.verify.pairs import far_operating_points

    benchmark, result = outcome.benchmark, outcome.result
    if outcome.distances is None:
        raise ValueError(f"{benchmark.name}: the outcome holds no pair distances")
    summary = Table("Summary", ("pairs", "same", "folds", "accuracy %", "threshold (mean of folds)", "AUC", "EER %"), ((
        str(result.num_pairs), str(result.num_same), str(len(result.fold_accuracies)),
        f"{100 * result.accuracy:.2f} ± {100 * result.accuracy_std:.2f}", f"{result.threshold:.3f}",
        f"{result.auc:.4f}", f"{100 * result.eer:.2f}"),))
    points = far_operating_points(result.roc, result.num_pairs - result.num_same, list(result.tar_at_far))
    operating = Table("TAR at FAR (all pairs)", ("FAR", "TAR %", "distance threshold (same if ≤)", "cosine"), tuple(
        (f"{far:g}", f"{100 * tar:.2f}", f"{threshold:.4f}", f"{1 - threshold / 2:.4f}")
        for far, (tar, threshold) in points.items()))
    return scores_section(
        benchmark.name, benchmark.title, str(benchmark.source), outcome.distances, benchmark.issame,
        thresholds=result.best_thresholds, fold_ids=result.fold_ids,
        pair_images=lambda index: tuple(benchmark_image(benchmark, int(i)) for i in benchmark.pairs[index]),
        judged_by="each pair in its held-out fold, by the threshold chosen on the other folds (same if distance < threshold)",
        marker=("protocol threshold (mean of folds)", result.threshold), pairs=pairs,
        tables=(summary, operating, *tables), markers=markers, roc=(result.roc.fpr, result.roc.tpr),
        fold_accuracies=result.fold_accuracies, warnings=outcome.warnings,
    )


def benchmark_image(benchmark: Any, index: int) -> ReportImage:
    """Image ``index`` of a benchmark, named by its path under the benchmark's folder (or its place in a
    ``.bin``)."""
    image = benchmark.images[index]
    if isinstance(image, bytes):
        return ReportImage(f"{Path(benchmark.source).name} #{index}", image)
    root = Path(benchmark.source)
    root = root if root.is_dir() else root.parent
    try:
        name = str(Path(image).relative_to(root))
    except ValueError:
        name = str(image)
    return ReportImage(name, Path(image))


def ijb_section(outcome: IJBOutcome, *, pairs: int = 12, far: float = IJB_REPORT_FAR,
                markers: Sequence[Marker] = (), tables: Sequence[Table] = ()) -> Section:
    """The section of an IJB outcome: TAR at FAR, ROC, DET, histograms, and the hardest template pairs at
    the threshold of ``far`` (the ROC point nearest it), each template shown by its best-scored image."""
    verification, data = outcome.verification, outcome.data
    if verification.scores is None:
        raise ValueError(f"{data.name}: the outcome holds no pair scores")
    roc = verification.roc
    nearest = {f: len(roc.fpr) - 1 - int(np.argmin(np.abs(roc.fpr[::-1] - f))) for f in verification.tar_at_far}
    operating = Table("1:1 TAR at FAR (ROC point nearest each FAR, as eval_ijbc.py)", ("FAR", "TAR %", "cosine threshold", "distance"), tuple(
        (f"{f:g}", f"{100 * verification.tar_at_far[f]:.2f}", f"{roc.thresholds[i]:.4f}", f"{2 - 2 * roc.thresholds[i]:.4f}")
        for f, i in nearest.items()))
    summary = Table("Summary", ("template pairs", "same", "templates", "AUC %"), ((
        str(verification.num_pairs), str(verification.num_same), str(verification.num_templates), f"{100 * verification.auc:.2f}"),))
    at = len(roc.fpr) - 1 - int(np.argmin(np.abs(roc.fpr[::-1] - far)))
    # same when score >= the point's threshold, i.e. distance <= 2 - 2 threshold: the next float up for "<"
    # (the first point's threshold is +inf: nothing is accepted there)
    threshold = float(np.nextafter(2.0 - 2.0 * min(float(roc.thresholds[at]), 1.0), np.inf))
    distances = 2.0 - 2.0 * np.asarray(verification.scores, dtype=np.float64)
    shown_image = _template_images(data)
    return scores_section(
        data.name, data.title, str(data.root), distances, data.labels,
        pair_images=lambda index: (shown_image(int(data.pairs[index, 0])), shown_image(int(data.pairs[index, 1]))),
        judged_by=f"every template pair by the threshold at FAR {far:g} (same if distance < threshold)",
        marker=(f"threshold at FAR {far:g}", threshold), pairs=pairs, tables=(summary, operating, *tables),
        markers=markers, roc=(roc.fpr, roc.tpr),
    )


def _template_images(data: Any) -> Callable[[int], ReportImage]:
    """Template id -> its image with the best detector score, aligned by its five points."""
    best: dict[int, int] = {}
    for index in np.argsort(-np.asarray(data.detector_scores), kind="stable").tolist():
        best.setdefault(int(data.templates[index]), index)

    def image(template: int) -> ReportImage:
        index = best[template]
        path = Path(data.images[index])
        return ReportImage(f"template {template}: {path.name}", path, np.asarray(data.landmarks[index]))

    return image


def outcome_section(outcome: BenchmarkOutcome | IJBOutcome, *, pairs: int = 12) -> Section:
    """:func:`benchmark_section` or :func:`ijb_section`, whichever ``outcome`` is for."""
    if hasattr(outcome, "verification"):
        return ijb_section(outcome, pairs=pairs)
    return benchmark_section(outcome, pairs=pairs)


def calibration_section(calibration: Calibration, *, pairs: int = 12) -> Section:
    """The calibration's genuine and impostor scores as a section: the calibrated thresholds marked (the
    errors judged by the first supported one, else the EER's), the operating points as a table, and the
    hardest errors with their faces."""
    from facestra.verify.calibration import genuine_corners
    from facestra.verify.calibration_report import operating_point_rows

    scored, result = calibration.scored, calibration.result
    supported = [p for p in result.points if p.supported and p.threshold is not None]
    # calibrated pairs are the same when distance <= 2 - 2t; the page's rule is "<", so mark just above
    markers = [(f"calibrated FAR {p.far_target:g}", float(np.nextafter(p.distance_threshold, np.inf))) for p in supported]
    if not markers:
        markers = [("EER", float(np.nextafter(2.0 - 2.0 * result.eer_point.threshold, np.inf)))]
    judged = f"the threshold calibrated at FAR {supported[0].far_target:g}" if supported else "the EER threshold"
    genuine, impostor = np.sort(scored.genuine), np.sort(scored.impostor)
    _, tar, far = genuine_corners(genuine, impostor)
    header, rows = operating_point_rows(result)
    table = Table("Calibrated operating points (95 % intervals over identities)", header, tuple(rows))
    num_genuine = len(scored.genuine)
    images = np.concatenate([scored.genuine_images, scored.impostor_images]) if scored.genuine_images is not None else None

    def pair_images(index: int) -> tuple[ReportImage, ReportImage]:
        first, second = (int(v) for v in images[index])
        return (ReportImage(calibration.names[first], calibration.images[first]),
                ReportImage(calibration.names[second], calibration.images[second]))

    distances = 2.0 - 2.0 * np.concatenate([scored.genuine, scored.impostor]).astype(np.float64)
    issame = np.concatenate([np.ones(num_genuine, bool), np.zeros(len(scored.impostor), bool)])
    return scores_section(
        "calibration", "Calibration", calibration.source["path"], distances, issame, marker=markers[0], markers=markers[1:],
        judged_by=f"by {judged}", pair_images=pair_images if images is not None else None, pairs=pairs, tables=[table],
        roc=(np.concatenate(([0.0], far, [1.0])), np.concatenate(([0.0], tar, [1.0]))), warnings=result.warnings,
    )


def write_calibration_report(path: str | os.PathLike, calibration: Calibration, *, model: nn.Module, checkpoint: str | os.PathLike,
                             command: str, device: Any, pairs: int = 12) -> None:
    """The report of one ``calibrate`` run: its section and the model's facts."""
    options = calibration.options
    settings = (("flip", calibration.model["flip"]), ("prior", f"{options.prior:g}"), ("bootstrap", str(options.bootstrap)),
                ("seed", str(options.seed)), ("sampled", str(calibration.source["sampled"])))
    facts = ReportFacts((model_facts(model, checkpoint),), command, describe_device(device), settings, tuple(calibration.result.warnings))
    write_report(path, facts, [calibration_section(calibration, pairs=pairs)], title="facestra calibration report")


def write_verify_report(
    path: str | os.PathLike,
    outcomes: Sequence[BenchmarkOutcome | IJBOutcome],
    *,
    model: nn.Module,
    checkpoint: str | os.PathLike,
    command: str,
    device: Any,
    settings: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
    errors: Sequence[str] = (),
    pairs: int = 12,
) -> None:
    """The report of one ``verify`` run: a section per outcome, the model's facts, every warning of the
    benchmark checks (after ``notes``, such as benchmarks not found) and the benchmarks that failed."""
    warnings = tuple(notes) + tuple(w for o in outcomes for w in getattr(o, "warnings", ()))
    facts = ReportFacts((model_facts(model, checkpoint),), command, describe_device(device), tuple(settings),
                        warnings, tuple(errors))
    write_report(path, facts, [outcome_section(o, pairs=pairs) for o in outcomes])
