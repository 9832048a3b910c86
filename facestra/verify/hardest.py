"""The pairs a model gets most wrong under the protocol, ranked: what a reader of a report looks at first.

A pair is judged as the protocol judges it: in its held-out fold, with the threshold chosen on the other
folds, "same" when ``distance < threshold``. A false accept is a different pair judged same, a false
reject a same pair judged different; the hardest are those furthest beyond their threshold (the
distance's margin on the wrong side). Ties keep list order, so the ranking is reproducible.

Pure numpy: arrays in, a small dataclass of index arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class HardestErrors:
    """Pair indices, hardest first, and how many errors of each kind there are in all."""

    false_accepts: np.ndarray
    false_rejects: np.ndarray
    num_false_accepts: int
    num_false_rejects: int
    thresholds: np.ndarray  # the threshold each pair was judged by (one per pair)


def hardest_errors(
    distances: np.ndarray, issame: np.ndarray, fold_thresholds: np.ndarray, fold_ids: np.ndarray, count: int
) -> HardestErrors:
    """The ``count`` hardest false accepts and false rejects of pairs with these ``distances`` and labels.

    ``fold_thresholds[k]`` is the threshold applied to the pairs of fold ``k`` (``fold_ids``, one per pair,
    counted from 0), as :class:`facestra.verify.pairs.VerificationResult` holds them in
    ``best_thresholds`` and ``fold_ids``. One threshold for every pair: ``fold_ids`` all 0.
    """
    dist = np.asarray(distances, dtype=np.float64)
    same = np.asarray(issame, dtype=bool)
    folds = np.asarray(fold_ids, dtype=np.int64)
    if dist.ndim != 1 or same.shape != dist.shape or folds.shape != dist.shape:
        raise ValueError(f"need one label and fold id per distance: {dist.shape}, {same.shape}, {folds.shape}")
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    threshold = np.asarray(fold_thresholds, dtype=np.float64)[folds]
    margin = threshold - dist  # > 0: judged same
    judged_same = dist < threshold
    accepts = np.flatnonzero(~same & judged_same)
    rejects = np.flatnonzero(same & ~judged_same)
    accepts = accepts[np.argsort(-margin[accepts], kind="stable")]
    rejects = rejects[np.argsort(margin[rejects], kind="stable")]
    return HardestErrors(accepts[:count], rejects[:count], int(len(accepts)), int(len(rejects)), threshold)
