"""The face-verification protocol of LFW and its successors (paper §4.2, appendix B.2), exactly and fast.

Pairs are compared by the squared Euclidean distance of their (normalised) embeddings, computed in
float64 as ``np.sum(np.square(e1 - e2), axis=1)``. The pairs are split into folds (ten, in file order,
unless the benchmark defines its own); for each fold the threshold from ``np.arange(0, 4, 0.01)`` with
the best accuracy on the other folds (the first on ties) is applied to the held-out fold, a pair being
predicted "same" when ``dist < threshold``. The reported accuracy is the mean of the held-out accuracies.

The usual scripts loop over the 400 thresholds and re-scan every pair each time. Here each fold's
same-pair and different-pair distances are sorted once and ``np.searchsorted(..., side="left")`` counts,
for all thresholds at once, how many lie strictly below each threshold: the integer counts are exactly
those of the loop, and so are the accuracies derived from them, to the last bit.

Everything here is pure numpy: arrays in, arrays or small dataclasses out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_FAR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def protocol_thresholds() -> np.ndarray:
    """The 400 candidate thresholds of the protocol, ``np.arange(0, 4, 0.01)`` (float64), as the usual scripts build them."""
    return np.arange(0, 4, 0.01)


@dataclass(frozen=True, eq=False)
class RocCurve:
    """Operating points over all pairs: a pair is predicted same when ``distance <= thresholds[i]``.

    Starts at (0, 0) (a threshold below every distance) and ends at (1, 1).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True, eq=False)
class VerificationResult:
    """Every figure of one benchmark; ``accuracy`` is what papers report (a fraction, not a percentage)."""

    accuracy: float
    accuracy_std: float
    fold_accuracies: np.ndarray
    best_thresholds: np.ndarray
    tar_at_far: dict[float, float]
    auc: float
    eer: float
    roc: RocCurve
    num_pairs: int
    num_same: int
    fold_ids: np.ndarray = field(repr=False)
    #: Mean over folds of (TPR + TNR) / 2 at each fold's chosen threshold: unlike the accuracy, answering
    #: "different" to every pair of a list with 10 % genuine pairs scores 50 % here, not 90 %.
    balanced_accuracy: float = float("nan")

    @property
    def threshold(self) -> float:
        """The mean of the per-fold best thresholds: one number to quote, as the usual scripts do."""
        return float(np.mean(self.best_thresholds))

    def to_dict(self, *, with_roc: bool = True) -> dict[str, Any]:
        """Plain JSON-ready values (lists and floats)."""
        out: dict[str, Any] = {
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "balanced_accuracy": self.balanced_accuracy,
            "fold_accuracies": self.fold_accuracies.tolist(),
            "best_thresholds": self.best_thresholds.tolist(),
            "threshold": self.threshold,
            "tar_at_far": {f"{far:g}": tar for far, tar in self.tar_at_far.items()},
            "auc": self.auc,
            "eer": self.eer,
            "num_pairs": self.num_pairs,
            "num_same": self.num_same,
            "num_folds": int(len(self.fold_accuracies)),
        }
        if with_roc:
            out["roc"] = {
                "fpr": self.roc.fpr.tolist(),
                "tpr": self.roc.tpr.tolist(),
                "thresholds": self.roc.thresholds.tolist(),
            }
        return out


def pair_distances(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of each row pair, in float64 (in [0, 4] for unit vectors).

    The same numbers as ``np.sum(np.square(e1 - e2), axis=1)`` on float64 copies, bit for bit (each row is
    summed on its own either way), computed a block of rows at a time so the float64 temporaries stay in
    cache instead of doubling the embeddings in memory.
    """
    e1 = np.asarray(emb1)
    e2 = np.asarray(emb2)
    if e1.ndim != 2 or e1.shape != e2.shape:
        raise ValueError(f"embeddings must be two N x D arrays of the same shape, got {e1.shape} and {e2.shape}")
    num_pairs, dim = e1.shape
    out = np.empty(num_pairs, dtype=np.float64)
    block_rows = max(1, 65536 // max(dim, 1))
    buffer = np.empty((min(block_rows, num_pairs), dim), dtype=np.float64)
    for start in range(0, num_pairs, block_rows):
        stop = min(start + block_rows, num_pairs)
        block = buffer[: stop - start]
        np.subtract(e1[start:stop], e2[start:stop], out=block, dtype=np.float64)
        np.square(block, out=block)
        np.sum(block, axis=1, out=out[start:stop])
    return out


def kfold_ids(num_pairs: int, num_folds: int = 10) -> np.ndarray:
    """Fold id of each pair for ``KFold(num_folds, shuffle=False)``: contiguous, the first ``n % k`` one longer."""
    if num_folds < 2:
        raise ValueError(f"need at least 2 folds, got {num_folds}")
    if num_pairs < num_folds:
        raise ValueError(f"{num_pairs} pairs cannot be split into {num_folds} folds")
    sizes = np.full(num_folds, num_pairs // num_folds, dtype=np.int64)
    sizes[: num_pairs % num_folds] += 1
    return np.repeat(np.arange(num_folds, dtype=np.int64), sizes)


def evaluate(
    emb1: np.ndarray,
    emb2: np.ndarray,
    issame: Sequence[bool] | np.ndarray,
    folds: int | Sequence[int] | np.ndarray = 10,
    *,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
) -> VerificationResult:
    """Verification figures of the pairs ``(emb1[i], emb2[i])`` with labels ``issame``.

    ``folds`` is a number of contiguous folds in pair order, or one fold id per pair (a benchmark's own
    splits). Embeddings are used as given: normalise them first (as :mod:`facestra.embed.inference` does).
    """
    return evaluate_distances(pair_distances(emb1, emb2), issame, folds, far_targets=far_targets)


def evaluate_distances(
    distances: np.ndarray,
    issame: Sequence[bool] | np.ndarray,
    folds: int | Sequence[int] | np.ndarray = 10,
    *,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
) -> VerificationResult:
    """:func:`evaluate` on precomputed pair distances (float64, smaller means more alike)."""
    dist = np.asarray(distances, dtype=np.float64)
    same = np.asarray(issame)
    if dist.ndim != 1 or same.shape != dist.shape:
        raise ValueError(f"need one label per pair: {dist.shape} distances, {same.shape} labels")
    if same.dtype != np.bool_:
        if not np.isin(same, (0, 1)).all():
            raise ValueError("issame must hold booleans (or 0/1)")
        same = same.astype(bool)
    # A NaN distance would count as "different" at every threshold, and one kind of pair makes every
    # threshold right: both give a number that means nothing, so refuse them (check_benchmark says why
    # in the user's terms before any embedding).
    if np.isnan(dist).any():
        raise ValueError(f"{int(np.count_nonzero(np.isnan(dist)))} of {len(dist)} distances are NaN")
    num_same = int(np.count_nonzero(same))
    if num_same in (0, len(same)):
        raise ValueError(f"need both same and different pairs, got {num_same} same of {len(same)}")
    fold_ids = _fold_ids(folds, len(dist))
    accuracies, thresholds, balanced = _cross_validated_accuracy(dist, same, fold_ids)
    roc = roc_curve(dist, same)
    return VerificationResult(
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        fold_accuracies=accuracies,
        best_thresholds=thresholds,
        tar_at_far=tar_at_far(roc, int(np.count_nonzero(~same)), far_targets),
        auc=roc_auc(roc),
        eer=equal_error_rate(roc),
        roc=roc,
        num_pairs=int(len(dist)),
        num_same=int(np.count_nonzero(same)),
        fold_ids=fold_ids,
        balanced_accuracy=balanced,
    )


def _fold_ids(folds: int | Sequence[int] | np.ndarray, num_pairs: int) -> np.ndarray:
    if isinstance(folds, (int, np.integer)):
        return kfold_ids(num_pairs, int(folds))
    ids = np.asarray(folds)
    if ids.shape != (num_pairs,):
        raise ValueError(f"need one fold id per pair: {ids.shape} fold ids for {num_pairs} pairs")
    _, dense = np.unique(ids, return_inverse=True)
    if dense.max(initial=0) < 1:
        raise ValueError("need at least 2 folds")
    return dense.astype(np.int64)


def _counts_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly below each threshold (``value < t`` is what the protocol tests)."""
    return np.searchsorted(sorted_values, thresholds, side="left").astype(np.int64)


def _cross_validated_accuracy(dist: np.ndarray, same: np.ndarray, fold_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Held-out accuracy and chosen threshold of each fold, from integer counts per (fold, threshold), and
    the mean held-out balanced accuracy (over the folds holding both kinds of pair)."""
    thresholds = protocol_thresholds()
    num_folds = int(fold_ids.max()) + 1
    # true positives (same pairs below t) and true negatives (different pairs not below t) per fold
    tp = np.empty((num_folds, len(thresholds)), dtype=np.int64)
    tn = np.empty_like(tp)
    positives = np.empty(num_folds, dtype=np.int64)
    negatives = np.empty(num_folds, dtype=np.int64)
    for k in range(num_folds):
        in_fold = fold_ids == k
        same_d = np.sort(dist[in_fold & same])
        diff_d = np.sort(dist[in_fold & ~same])
        tp[k] = _counts_below(same_d, thresholds)
        tn[k] = len(diff_d) - _counts_below(diff_d, thresholds)
        positives[k], negatives[k] = len(same_d), len(diff_d)
    sizes = positives + negatives
    correct = tp + tn
    correct_total = correct.sum(axis=0)
    accuracies = np.empty(num_folds, dtype=np.float64)
    best = np.empty(num_folds, dtype=np.float64)
    balanced = []
    for k in range(num_folds):
        train_accuracy = (correct_total - correct[k]) / (sizes.sum() - sizes[k])
        index = int(np.argmax(train_accuracy))  # the first threshold on ties
        best[k] = thresholds[index]
        accuracies[k] = correct[k, index] / sizes[k]
        if positives[k] and negatives[k]:
            balanced.append((tp[k, index] / positives[k] + tn[k, index] / negatives[k]) / 2.0)
    return accuracies, best, float(np.mean(balanced)) if balanced else float("nan")


def reference_fold_accuracies(
    dist: np.ndarray, issame: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]]
) -> tuple[list[float], list[float]]:
    """Test accuracy and chosen threshold of each ``(train, test)`` split, computed the way insightface's
    ``verification.py`` does it: every threshold of [0, 4) in steps of 0.01, over every training pair.

    Far too slow for use (folds x thresholds x pairs); kept as the independent statement of the protocol
    that the tests and ``bench/verify_speed.py`` check :func:`evaluate` against, bit for bit.
    """
    thresholds = protocol_thresholds()
    accuracies, chosen = [], []
    for train, test in splits:
        train_accuracy = np.zeros(len(thresholds))
        for i, threshold in enumerate(thresholds):
            predict = np.less(dist[train], threshold)
            tp = np.sum(np.logical_and(predict, issame[train]))
            tn = np.sum(np.logical_and(~predict, ~issame[train]))
            train_accuracy[i] = float(tp + tn) / dist[train].size
        best = thresholds[np.argmax(train_accuracy)]
        predict = np.less(dist[test], best)
        tp = np.sum(np.logical_and(predict, issame[test]))
        tn = np.sum(np.logical_and(~predict, ~issame[test]))
        accuracies.append(float(tp + tn) / dist[test].size)
        chosen.append(float(best))
    return accuracies, chosen


def roc_curve(dist: np.ndarray, same: np.ndarray) -> RocCurve:
    """The ROC over all pairs, one point per distinct distance (NaN distances count as the largest)."""
    dist = np.where(np.isnan(dist), np.inf, dist)
    order = np.argsort(dist, kind="stable")
    d = dist[order]
    s = same[order]
    # the last index of each run of equal distances: a threshold there accepts the whole run
    last = np.flatnonzero(np.append(d[1:] != d[:-1], True))
    tp = np.cumsum(s)[last]
    fp = (last + 1) - tp
    num_pos = max(int(np.count_nonzero(same)), 1)
    num_neg = max(int(len(same) - np.count_nonzero(same)), 1)
    below_all = np.nextafter(d[0], -np.inf) if len(d) else 0.0
    return RocCurve(
        fpr=np.concatenate(([0.0], fp / num_neg)),
        tpr=np.concatenate(([0.0], tp / num_pos)),
        thresholds=np.concatenate(([below_all], d[last])),
    )


def tar_at_far(roc: RocCurve, num_negatives: int, far_targets: Sequence[float] = DEFAULT_FAR_TARGETS) -> dict[float, float]:
    """The best true-accept rate with a false-accept rate at most each target.

    A target is reported only when there are enough different pairs to resolve it (at least 1/FAR).
    """
    return {far: tar for far, (tar, _) in far_operating_points(roc, num_negatives, far_targets).items()}


def far_operating_points(
    roc: RocCurve, num_negatives: int, far_targets: Sequence[float] = DEFAULT_FAR_TARGETS
) -> dict[float, tuple[float, float]]:
    """``(tar, threshold)`` at each FAR target of :func:`tar_at_far`: the best TAR with a FAR at most the
    target, and the largest distance threshold that gives it (a pair is same when ``distance <= threshold``).

    The ROC's rates never decrease along it, so the allowed points are a prefix and the last one is best.
    """
    out: dict[float, tuple[float, float]] = {}
    for far in far_targets:
        if num_negatives * far < 1 - 1e-9:
            continue
        last = int(np.flatnonzero(roc.fpr <= far)[-1])
        out[float(far)] = (float(roc.tpr[last]), float(roc.thresholds[last]))
    return out


def roc_auc(roc: RocCurve) -> float:
    """Area under the ROC curve (trapezoids between operating points)."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2.0))


def equal_error_rate(roc: RocCurve) -> float:
    """The rate where false accepts equal false rejects, interpolated linearly along the ROC curve."""
    fnr = 1.0 - roc.tpr
    crossed = np.flatnonzero(fnr <= roc.fpr)
    if len(crossed) == 0:
        return 1.0
    i = int(crossed[0])
    if i == 0:
        return float(roc.fpr[0])
    fpr_a, fpr_b = roc.fpr[i - 1], roc.fpr[i]
    gap_a = fnr[i - 1] - fpr_a  # > 0 before the crossing
    gap_b = fnr[i] - fpr_b  # <= 0 at it
    t = gap_a / (gap_a - gap_b)
    return float(fpr_a + t * (fpr_b - fpr_a))
