"""IJB template evaluation, pure numpy: image features -> template features -> 1:1 and 1:N figures.

The recipe is insightface's ``eval_ijbc.py`` with its default switches: each image's raw feature is the
network's output for the image plus its output for the mirror image (flip features summed), its norm kept
(a blurred face gives a short vector and so weighs less), multiplied by the detector's faceness score.
Images of one media (frames of one video, or a single photo) are averaged, the media of a template summed,
and the template L2-normalised; a pair's score is the cosine of its two templates.

The media-then-template pooling is one weighted sum: image i enters its template with weight
1 / (images of its media in that template), so features are streamed through a sparse matrix a chunk of
images at a time and the 469k x 1024 raw features of IJB-C never need to be in memory at once.

Pair scores are computed a block of templates at a time: for the pairs whose first template lies in the
block, one matrix product with the distinct second templates gives every score, instead of gathering two
feature rows per pair (15.7M pairs x 2 x 512 doubles is 128 GB of memory traffic for IJB-C).

The TAR at each FAR is picked as ``eval_ijbc.py`` picks it: on scikit-learn's ROC (collinear points
dropped), the point whose FPR is nearest the target, the highest such point on ties.

1:N is the open-set protocol of IJB-B/C: a gallery (G1 or G2; S1 or S2 for IJB-B) and the mixed probe
list; probes whose subject is in the gallery are mated, the others non-mated. The threshold for a FPIR is
set on the non-mated probes' top scores, the TPIR is the share of mated probes whose mate is ranked first
and scores above it; rank-k counts mated probes whose mate is among the k best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facestra.fields import documented

IJB_FAR_TARGETS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FPIR_TARGETS: tuple[float, ...] = (1e-2, 1e-1)
RANKS: tuple[int, ...] = (1, 5)
IMAGE_FLIP_MODES: tuple[str, ...] = ("sum", "concat", "none")


@dataclass(frozen=True)
class TemplateOptions:
    """How image features become template features (eval_ijbc.py's switches, its defaults on)."""

    ijb_flip: str = documented(
        "sum", "IJB: combine each image's features with its mirror's: add them (eval_ijbc.py), concatenate, "
        "or the image alone.", choices=IMAGE_FLIP_MODES,
    )
    ijb_norm: bool = documented(True, "IJB: keep each image feature's norm as its weight (off: L2-normalise it first).")
    ijb_detector_score: bool = documented(True, "IJB: multiply each image feature by its detector score.")

    def __post_init__(self) -> None:
        if self.ijb_flip not in IMAGE_FLIP_MODES:
            raise ValueError(f"ijb_flip must be one of {IMAGE_FLIP_MODES}, got {self.ijb_flip!r}")


def image_features(raw: np.ndarray, detector_scores: np.ndarray, options: TemplateOptions = TemplateOptions()) -> np.ndarray:
    """float64 image features from raw ``[image, mirror]`` network outputs (N x 2D) and detector scores (N,)."""
    raw = np.asarray(raw, dtype=np.float64)
    half = raw.shape[1] // 2
    if options.ijb_flip == "sum":
        features = raw[:, :half] + raw[:, half:]
    elif options.ijb_flip == "concat":
        features = raw.copy()
    else:
        features = raw[:, :half].copy()
    if not options.ijb_norm:
        features /= np.sqrt(np.sum(features**2, axis=1, keepdims=True))
    if options.ijb_detector_score:
        features *= np.asarray(detector_scores, dtype=np.float64)[:, None]
    return features


def feature_width(raw_width: int, options: TemplateOptions = TemplateOptions()) -> int:
    """Width of :func:`image_features` for raw features ``raw_width`` wide."""
    return raw_width if options.ijb_flip == "concat" else raw_width // 2


def pooling_weights(templates: np.ndarray, medias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(unique_templates, row, weight)``: image i adds ``weight[i]`` times its feature to template row
    ``row[i]``; the weight is one over the images sharing its (template, media), so media are averaged and
    the averages summed."""
    unique_templates, row = np.unique(np.asarray(templates, dtype=np.int64), return_inverse=True)
    _, group, counts = np.unique(np.stack([row, np.asarray(medias, dtype=np.int64)], axis=1), axis=0, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[group.reshape(-1)]
    return unique_templates, row.reshape(-1), weight


def template_features(
    raw: np.ndarray,
    detector_scores: np.ndarray,
    templates: np.ndarray,
    medias: np.ndarray,
    options: TemplateOptions = TemplateOptions(),
    *,
    chunk_images: int = 32768,
) -> tuple[np.ndarray, np.ndarray]:
    """``(unique_templates, features)``: one L2-normalised float64 row per template, sorted by template id.

    ``raw`` may be a memory map: it is read ``chunk_images`` rows at a time. A template whose features sum
    to zero stays zero (scikit-learn's ``normalize`` does the same).
    """
    from scipy import sparse

    unique_templates, row, weight = pooling_weights(templates, medias)
    count = len(row)
    pooled = np.zeros((len(unique_templates), feature_width(raw.shape[1], options)), dtype=np.float64)
    for start in range(0, count, chunk_images):
        stop = min(start + chunk_images, count)
        features = image_features(raw[start:stop], detector_scores[start:stop], options)
        mixing = sparse.csr_matrix(
            (weight[start:stop], (row[start:stop], np.arange(stop - start))), shape=(len(unique_templates), stop - start)
        )
        pooled += mixing @ features
    norms = np.sqrt(np.sum(pooled**2, axis=1, keepdims=True))
    np.divide(pooled, norms, out=pooled, where=norms > 0)
    return unique_templates, pooled


def template_rows(unique_templates: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The row of each template id in ``unique_templates`` (sorted); every id must be there."""
    rows = np.searchsorted(unique_templates, ids)
    if np.any(rows >= len(unique_templates)) or np.any(unique_templates[np.minimum(rows, len(unique_templates) - 1)] != ids):
        raise ValueError("a template id has no template features")
    return rows


def pair_scores(features: np.ndarray, first: np.ndarray, second: np.ndarray, *, block_bytes: int = 64 << 20) -> np.ndarray:
    """Cosine score of each pair of template rows ``(first[i], second[i])`` of normalised ``features``.

    Blocks of consecutive first templates are scored against the distinct second templates of their pairs
    (all templates when the block has more pairs than there are templates) with one matrix product; each
    block's product matrix is at most ``block_bytes``.
    """
    first = np.asarray(first, dtype=np.int64)
    second = np.asarray(second, dtype=np.int64)
    scores = np.empty(len(first), dtype=np.float64)
    if len(first) == 0:
        return scores
    num_templates = len(features)
    block_rows = max(1, block_bytes // (features.dtype.itemsize * num_templates))
    num_blocks = -(-num_templates // block_rows)
    block_of = first // block_rows
    # a stable sort of small integers is a radix sort: the pairs grouped by block in a fraction of a second
    order = np.argsort(block_of.astype(np.int16) if num_blocks < 2**15 else block_of, kind="stable")
    edges = np.searchsorted(block_of[order], np.arange(num_blocks + 1))
    for block, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        if lo == hi:
            continue
        pairs = order[lo:hi]
        base = block * block_rows
        rows = first[pairs] - base
        if hi - lo >= num_templates:  # dense: every template is likely a second one, skip finding which
            product = features[base : base + block_rows] @ features.T
            position = second[pairs]
        else:
            columns, position = np.unique(second[pairs], return_inverse=True)
            product = features[base : base + block_rows] @ features[columns].T
        scores[pairs] = product[rows, position.reshape(-1)]
    return scores


@dataclass(frozen=True, eq=False)
class TemplateRoc:
    """scikit-learn's ``roc_curve`` of the pair scores (same points, collinear ones dropped)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc_points(labels: np.ndarray, scores: np.ndarray) -> TemplateRoc:
    """The ROC of ``scores`` (higher means same) as ``sklearn.metrics.roc_curve`` computes it by default."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")[::-1]
    ordered = scores[order]
    last = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1]
    tps = np.cumsum(labels[order], dtype=np.float64)[last]
    fps = 1.0 + last - tps
    thresholds = ordered[last]
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thresholds = np.r_[np.inf, thresholds]
    with np.errstate(invalid="ignore", divide="ignore"):
        return TemplateRoc(fps / fps[-1], tps / tps[-1], thresholds)


def tar_at_nearest_far(roc: TemplateRoc, far_targets: Sequence[float] = IJB_FAR_TARGETS) -> dict[float, float]:
    """The TPR at the ROC point whose FPR is nearest each target (on ties the later, higher point)."""
    fpr = roc.fpr[::-1]
    tpr = roc.tpr[::-1]
    return {float(far): float(tpr[int(np.argmin(np.abs(fpr - far)))]) for far in far_targets}


def roc_area(roc: TemplateRoc) -> float:
    """Area under the ROC (trapezoids), as ``sklearn.metrics.auc``."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2.0))


@dataclass(frozen=True, eq=False)
class TemplateVerification:
    """The 1:1 figures of an IJB benchmark, and each pair's cosine score (what a report ranks and draws)."""

    tar_at_far: dict[float, float]
    auc: float
    roc: TemplateRoc
    num_pairs: int
    num_same: int
    num_templates: int
    scores: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self, *, roc_points: int = 400) -> dict[str, Any]:
        """JSON-ready: the TAR table keyed by FAR, and the ROC thinned to about ``roc_points`` points."""
        keep = thin_roc(self.roc, roc_points)
        return {
            "tar_at_far": {f"{far:g}": tar for far, tar in self.tar_at_far.items()},
            "auc": self.auc,
            "num_pairs": self.num_pairs,
            "num_same": self.num_same,
            "num_templates": self.num_templates,
            "roc": {"fpr": self.roc.fpr[keep].tolist(), "tpr": self.roc.tpr[keep].tolist()},
        }


def thin_roc(roc: TemplateRoc, points: int) -> np.ndarray:
    """Indices of about ``points`` ROC points spread evenly over log-FPR (for figures and JSON)."""
    if len(roc.fpr) <= points:
        return np.arange(len(roc.fpr))
    positive = roc.fpr[roc.fpr > 0]
    low = math.log10(positive.min()) if len(positive) else -6.0
    grid = np.logspace(low, 0.0, points)
    picked = np.searchsorted(roc.fpr, grid, side="right") - 1
    return np.unique(np.r_[0, np.clip(picked, 0, len(roc.fpr) - 1), len(roc.fpr) - 1])


def verify_templates(
    features: np.ndarray,
    unique_templates: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    far_targets: Sequence[float] = IJB_FAR_TARGETS,
) -> TemplateVerification:
    """1:1 figures of template ``pairs`` (ids, P x 2) with ``labels`` over template ``features``."""
    first = template_rows(unique_templates, pairs[:, 0])
    second = template_rows(unique_templates, pairs[:, 1])
    scores = pair_scores(features, first, second)
    roc = roc_points(labels, scores)
    return TemplateVerification(
        tar_at_far=tar_at_nearest_far(roc, far_targets),
        auc=roc_area(roc),
        roc=roc,
        num_pairs=int(len(labels)),
        num_same=int(np.count_nonzero(labels)),
        num_templates=int(len(unique_templates)),
        scores=scores,
    )


@dataclass(frozen=True)
class Identification:
    """Open-set 1:N figures of one gallery against the probes."""

    tpir_at_fpir: dict[float, float]
    rank_accuracy: dict[int, float]
    num_mated: int
    num_nonmated: int
    num_gallery: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "tpir_at_fpir": {f"{fpir:g}": tpir for fpir, tpir in self.tpir_at_fpir.items()},
            "rank": {str(rank): accuracy for rank, accuracy in self.rank_accuracy.items()},
            "num_mated_probes": self.num_mated,
            "num_nonmated_probes": self.num_nonmated,
            "num_gallery_templates": self.num_gallery,
        }


def search_scores(
    probe_features: np.ndarray,
    probe_subjects: np.ndarray,
    gallery_features: np.ndarray,
    gallery_subjects: np.ndarray,
    *,
    chunk_probes: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per probe: ``(mated, top_score, rank)``. ``top_score`` is the best gallery score; for mated probes
    ``rank`` is 1 + the gallery templates of other subjects scoring strictly above the best mate (0 for
    non-mated probes)."""
    count = len(probe_features)
    mated = np.isin(probe_subjects, gallery_subjects)
    top = np.empty(count, dtype=np.float64)
    rank = np.zeros(count, dtype=np.int64)
    for start in range(0, count, chunk_probes):
        stop = min(start + chunk_probes, count)
        scores = probe_features[start:stop] @ gallery_features.T
        top[start:stop] = scores.max(axis=1)
        is_mate = probe_subjects[start:stop, None] == gallery_subjects[None, :]
        best_mate = np.where(is_mate, scores, -np.inf).max(axis=1)
        above = np.count_nonzero((scores > best_mate[:, None]) & ~is_mate, axis=1)
        rank[start:stop] = np.where(mated[start:stop], 1 + above, 0)
    return mated, top, rank


def identify(
    probe_features: np.ndarray,
    probe_subjects: np.ndarray,
    gallery_features: np.ndarray,
    gallery_subjects: np.ndarray,
    *,
    fpir_targets: Sequence[float] = FPIR_TARGETS,
    ranks: Sequence[int] = RANKS,
) -> Identification:
    """TPIR at each FPIR and rank-k accuracy of the probes searched in one gallery.

    For a FPIR target f over N non-mated probes, at most floor(f N) of them may raise an alarm: the
    threshold is the (floor(f N) + 1)-th highest non-mated top score, and a search alarms when its score is
    strictly above it. A mated probe counts towards the TPIR when its mate is ranked first and alarms.
    """
    mated, top, rank = search_scores(probe_features, probe_subjects, gallery_features, gallery_subjects)
    nonmated_top = np.sort(top[~mated])[::-1]
    mated_hits = rank[mated] == 1
    mated_top = top[mated]
    num_mated, num_nonmated = int(np.count_nonzero(mated)), int(len(nonmated_top))
    tpir: dict[float, float] = {}
    for fpir in fpir_targets:
        allowed = int(math.floor(fpir * num_nonmated + 1e-9))
        threshold = nonmated_top[allowed] if allowed < num_nonmated else -np.inf
        tpir[float(fpir)] = float(np.count_nonzero(mated_hits & (mated_top > threshold)) / max(num_mated, 1))
    accuracy = {int(k): float(np.count_nonzero(rank[mated] <= k) / max(num_mated, 1)) for k in ranks}
    return Identification(tpir, accuracy, num_mated, num_nonmated, int(len(gallery_subjects)))
