"""Operating points a deployer can trust: thresholds at target false-accept rates, their intervals, P(same).

The 10-fold protocol's best-accuracy threshold assumes half of all comparisons are genuine; nobody deploys
at that point. A deployer picks a false accept rate (FAR, 1 in 1,000 or 1 in 100,000) and needs the
threshold that gives it on their own labelled photos, the true accept rate (TAR) paid for it, how far both
can be trusted, and a probability for a single comparison. Everything here works on similarity scores
(cosine of the unit embeddings, higher means more alike; a pair is accepted when ``score >= threshold``)
with an identity, or identity pair, attached to every score.

- **Thresholds** are those of ``sklearn.metrics.roc_curve`` on the same scores: for a target FAR, the most
  permissive score threshold whose false-accept rate does not exceed it. A target with fewer than
  ``10 / FAR`` impostor pairs cannot be measured (a handful of false accepts decide it) and is reported as
  not supported, never extrapolated.
- **Intervals** come from a bootstrap over identities, not over pairs: all pairs of one person share that
  person's photos, so they are not independent and a pair-level bootstrap is far too narrow. Each
  replicate draws identities with replacement; a genuine pair counts as often as its identity was drawn, an
  impostor pair as the product of its two identities' draws (the "subsets bootstrap" of Bolle et al.).
  The rates are measured at the fixed calibrated threshold, so the FAR interval says where the false-accept
  rate of that threshold lies on photos of new people.
- **P(same)** is a logistic fit of the label on the score with the two kinds of pair weighted equally (prior
  0.5); another prior shifts the log-odds by ``log(prior / (1 - prior))``. Its expected calibration error
  is measured on the pairs of identities held out of the fit.

Pure numpy and scikit-learn: arrays in, small dataclasses out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facestra.fields import documented

DEFAULT_FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
#: A FAR is measured only with at least this many expected false accepts (impostor pairs >= this / FAR).
MIN_FALSE_ACCEPTS = 10
CONFIDENCE = 0.95
#: Pairs of each kind the logistic fit uses at most (a seeded sample beyond): the fit has two parameters.
LOGISTIC_PAIRS = 200_000
ECE_BINS = 15
#: Identity pairs counted in a dense table (``bincount``) rather than sorted out with ``np.unique``.
DENSE_KEYS = 1 << 22


@dataclass(frozen=True)
class CalibrationOptions:
    """How operating points are calibrated, declared once for :func:`facestra.verify.calibrate` and
    ``facestra calibrate``."""

    far: tuple[float, ...] = documented(DEFAULT_FARS, "Target false accept rates, a comma list.", metavar="FARS")
    prior: float = documented(0.5, "Prior probability that a comparison is genuine, for P(same).", minimum=0.0, maximum=1.0)
    bootstrap: int = documented(1000, "Bootstrap replicates over identities for the 95% intervals.", minimum=50, maximum=100_000)
    max_pairs: int = documented(
        50_000_000, "Most pairs of each kind scored from a folder; beyond, a seeded random sample (reported).", minimum=1000,
    )
    held_out: float = documented(0.2, "Share of identities held out of the logistic fit to measure its calibration error.",
                                 minimum=0.05, maximum=0.5)
    seed: int = documented(0, "Seed of the pair sample, the held-out identities and the bootstrap.", minimum=0)

    def __post_init__(self) -> None:
        if not self.far:
            raise ValueError("far needs at least one target false accept rate")
        for far in self.far:
            if not 0.0 < far < 1.0:
                raise ValueError(f"far {far:g} is outside (0, 1): a target false accept rate is a fraction such as 1e-4")
        if not 0.0 < self.prior < 1.0:
            raise ValueError(f"prior {self.prior:g} is outside (0, 1)")


@dataclass(frozen=True, eq=False)
class ScoredPairs:
    """Every scored pair: similarity scores (float32) and the identities behind each pair.

    ``genuine_ids[i]`` is the identity of genuine pair ``i``; ``impostor_ids[i]`` the two identities of
    impostor pair ``i``; identities are ``0 .. num_identities - 1``. ``*_total`` count the pairs the source
    holds, which exceed the scored ones when a sample was drawn. ``*_images`` name the two images of each
    pair in the source's own order, for a report to show them.
    """

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_ids: np.ndarray
    impostor_ids: np.ndarray
    num_identities: int
    genuine_total: int
    impostor_total: int
    sample_seed: int | None = None
    genuine_images: np.ndarray | None = None  # N x 2 indices of the two images of each pair, when known
    impostor_images: np.ndarray | None = None

    @property
    def sampled(self) -> bool:
        return len(self.genuine) < self.genuine_total or len(self.impostor) < self.impostor_total


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold for one target FAR and what it gives; the rates and intervals are fractions."""

    far_target: float
    supported: bool
    reason: str | None = None
    threshold: float | None = None  # cosine; accept when score >= threshold
    tar: float | None = None
    far: float | None = None  # achieved on these pairs
    false_accepts: int | None = None
    tar_interval: tuple[float, float] | None = None
    far_interval: tuple[float, float] | None = None

    @property
    def distance_threshold(self) -> float | None:
        """The same threshold as the protocol's squared distance of unit vectors, ``2 - 2 cos``: same when
        ``distance <= 2 - 2 * threshold``."""
        return None if self.threshold is None else 2.0 - 2.0 * self.threshold

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"far_target": self.far_target, "supported": self.supported}
        if not self.supported:
            out["reason"] = self.reason
            return out
        return out | {
            "threshold_cosine": self.threshold, "threshold_distance": self.distance_threshold, "tar": self.tar,
            "tar_interval": list(self.tar_interval) if self.tar_interval else None, "far_achieved": self.far,
            "far_interval": list(self.far_interval) if self.far_interval else None, "false_accepts": self.false_accepts,
        }


@dataclass(frozen=True)
class ThresholdPoint:
    """A named threshold (EER, best accuracy) and the rates at it."""

    threshold: float
    tar: float
    far: float
    accuracy: float
    balanced_accuracy: float

    def as_dict(self) -> dict[str, Any]:
        return {"threshold_cosine": self.threshold, "threshold_distance": 2.0 - 2.0 * self.threshold, "tar": self.tar,
                "far": self.far, "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy}


@dataclass(frozen=True)
class LogisticCalibration:
    """``P(same | score) = sigmoid(coef * score + intercept + log(prior / (1 - prior)))``; fitted at prior 0.5."""

    coef: float
    intercept: float
    prior: float
    ece: float | None
    ece_pairs: int
    held_out_identities: int

    def probability(self, score: float | np.ndarray, prior: float | None = None) -> np.ndarray:
        """P(same person) for similarity ``score`` when a fraction ``prior`` of comparisons are genuine."""
        chosen = self.prior if prior is None else prior
        log_odds = self.coef * np.asarray(score, dtype=np.float64) + self.intercept + math.log(chosen / (1.0 - chosen))
        return 1.0 / (1.0 + np.exp(-log_odds))

    def as_dict(self) -> dict[str, Any]:
        return {"method": "logistic regression of the label on the cosine, classes weighted equally (prior 0.5)",
                "coef": self.coef, "intercept": self.intercept, "prior": self.prior, "ece": self.ece,
                "ece_pairs": self.ece_pairs, "held_out_identities": self.held_out_identities}


@dataclass(frozen=True)
class CalibrationResult:
    """Every figure of one calibration (see the module's docstring)."""

    points: tuple[OperatingPoint, ...]
    eer: float
    eer_point: ThresholdPoint
    best_accuracy: ThresholdPoint
    probability: LogisticCalibration
    num_genuine: int
    num_impostor: int
    num_identities: int
    bootstrap: int
    warnings: tuple[str, ...] = field(default=())

    def point(self, far: float) -> OperatingPoint | None:
        """The operating point calibrated for target ``far`` (matched to 1e-9 relative), if any."""
        return next((p for p in self.points if math.isclose(p.far_target, far, rel_tol=1e-9)), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "operating_points": [p.as_dict() for p in self.points],
            "eer": self.eer, "eer_point": self.eer_point.as_dict(), "best_accuracy": self.best_accuracy.as_dict(),
            "probability": self.probability.as_dict(),
            "pairs": {"genuine": self.num_genuine, "impostor": self.num_impostor, "identities": self.num_identities},
            "bootstrap": {"replicates": self.bootstrap, "unit": "identity", "level": CONFIDENCE},
            "warnings": list(self.warnings),
        }


def threshold_at_far(genuine_sorted: np.ndarray, impostor_sorted: np.ndarray, far: float) -> tuple[float, int]:
    """The most permissive threshold whose FAR is at most ``far``, and how many impostors it accepts.

    Both arrays ascending. The threshold is the smallest score (of either kind) above the ``(k+1)``-th
    largest impostor score, ``k = floor(far * impostors)`` false accepts being allowed: exactly the point
    ``sklearn.metrics.roc_curve`` lists with the largest TPR at FPR <= far. ``inf`` when no score qualifies.
    """
    num_impostor = len(impostor_sorted)
    allowed = int(math.floor(far * num_impostor + 1e-9))
    if allowed >= num_impostor:
        candidates = [impostor_sorted[0]] + ([genuine_sorted[0]] if len(genuine_sorted) else [])
        return float(min(candidates)), num_impostor
    bound = impostor_sorted[num_impostor - 1 - allowed]  # the (allowed + 1)-th largest impostor score
    candidates = []
    for scores in (genuine_sorted, impostor_sorted):
        above = int(np.searchsorted(scores, bound, side="right"))
        if above < len(scores):
            candidates.append(scores[above])
    if not candidates:
        return math.inf, 0
    threshold = float(min(candidates))
    return threshold, count_at_least(impostor_sorted, threshold)


def count_at_least(sorted_scores: np.ndarray, threshold: float) -> int:
    """How many of the ascending ``sorted_scores`` are accepted (``>= threshold``)."""
    return int(len(sorted_scores) - np.searchsorted(sorted_scores, threshold, side="left"))


def rates_at(genuine_sorted: np.ndarray, impostor_sorted: np.ndarray, threshold: float) -> ThresholdPoint:
    """TAR, FAR, accuracy and balanced accuracy of accepting ``score >= threshold``."""
    accepted = count_at_least(genuine_sorted, threshold)
    false = count_at_least(impostor_sorted, threshold)
    tar = accepted / len(genuine_sorted)
    far = false / len(impostor_sorted)
    accuracy = (accepted + len(impostor_sorted) - false) / (len(genuine_sorted) + len(impostor_sorted))
    return ThresholdPoint(float(threshold), tar, far, accuracy, (tar + 1.0 - far) / 2.0)


def genuine_corners(genuine_sorted: np.ndarray, impostor_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, tar, far)`` at each genuine score, highest first: the ROC's corners where a genuine
    pair is accepted (between two of them only the FAR moves). Exact counts from the sorted scores."""
    thresholds = genuine_sorted[::-1]
    tar = np.arange(1, len(genuine_sorted) + 1, dtype=np.float64) / len(genuine_sorted)
    far = (len(impostor_sorted) - np.searchsorted(impostor_sorted, thresholds, side="left")) / len(impostor_sorted)
    return thresholds, tar, far


def equal_error_point(genuine_sorted: np.ndarray, impostor_sorted: np.ndarray) -> tuple[float, ThresholdPoint]:
    """The equal error rate and the threshold at it.

    FAR falls and FRR rises as the threshold grows; between two genuine scores only the FAR moves, so the
    crossing is found among the genuine scores. The rate is interpolated along the ROC segment that crosses
    the diagonal FAR = 1 - TAR, as :func:`facestra.verify.pairs.equal_error_rate` does.
    """
    num_genuine = len(genuine_sorted)
    thresholds, tar, far = genuine_corners(genuine_sorted, impostor_sorted)
    fnr = 1.0 - tar
    crossed = np.flatnonzero(fnr <= far)
    index = int(crossed[0]) if len(crossed) else num_genuine - 1
    previous_fnr = 1.0 - index / num_genuine
    # from the vertex before, the ROC runs right (impostors accepted, FRR fixed at previous_fnr) to far[index],
    # then up (this genuine pair accepted, FAR fixed): it meets FAR = FRR on whichever comes first
    eer = float(min(far[index], previous_fnr))
    return eer, rates_at(genuine_sorted, impostor_sorted, float(thresholds[index]))


def best_accuracy_point(genuine_sorted: np.ndarray, impostor_sorted: np.ndarray) -> ThresholdPoint:
    """The threshold with the best accuracy over all pairs (the first, highest, on ties). Accuracy only
    rises when a genuine pair is accepted, so the best threshold is a genuine score (or accepts none)."""
    num_genuine, num_impostor = len(genuine_sorted), len(impostor_sorted)
    thresholds, tar, far = genuine_corners(genuine_sorted, impostor_sorted)
    correct = np.rint(tar * num_genuine + (1.0 - far) * num_impostor)
    index = int(np.argmax(correct))
    if correct[index] <= num_impostor:  # accepting nothing is as good
        return ThresholdPoint(math.inf, 0.0, 0.0, num_impostor / (num_genuine + num_impostor), 0.5)
    return rates_at(genuine_sorted, impostor_sorted, float(thresholds[index]))


def identity_bootstrap(
    pairs: ScoredPairs, thresholds: Sequence[float], replicates: int, seed: int, *, chunk: int = 20_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """TAR and FAR of every threshold in ``replicates`` bootstrap draws of the identities: two
    ``replicates x len(thresholds)`` arrays (NaN where a draw holds no pair of that kind).

    Scores are first reduced to counts per identity (genuine) and per identity pair (impostor) at each
    threshold, so a replicate costs one product with the draw's multiplicities, not a pass over the pairs.
    """
    levels = np.asarray(thresholds, dtype=np.float64)
    num_ids = pairs.num_identities
    genuine_counts = _counts_by_key(pairs.genuine, pairs.genuine_ids.astype(np.int64), levels, num_ids)
    a = np.minimum(pairs.impostor_ids[:, 0], pairs.impostor_ids[:, 1]).astype(np.int64)
    b = np.maximum(pairs.impostor_ids[:, 0], pairs.impostor_ids[:, 1]).astype(np.int64)
    keys, impostor_counts = _sparse_counts(pairs.impostor, a * num_ids + b, levels, num_ids * num_ids)
    key_a, key_b = keys // num_ids, keys % num_ids
    rng = np.random.default_rng(seed)
    genuine_weight = np.empty((replicates, len(levels) + 1))  # per replicate: pairs drawn, then accepted
    impostor_weight = np.empty_like(genuine_weight)
    step = max(1, chunk // max(len(keys), num_ids, 1))
    for start in range(0, replicates, step):
        count = min(step, replicates - start)
        draws = rng.multinomial(num_ids, np.full(num_ids, 1.0 / num_ids), size=count).astype(np.float64)
        genuine_weight[start:start + count] = draws @ genuine_counts
        impostor_weight[start:start + count] = (draws[:, key_a] * draws[:, key_b]) @ impostor_counts
    with np.errstate(invalid="ignore", divide="ignore"):
        tar = genuine_weight[:, 1:] / genuine_weight[:, :1]
        far = impostor_weight[:, 1:] / impostor_weight[:, :1]
    return tar, far


def _levels(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """For each score, how many of the ``levels`` (any order) it reaches (``score >= level``): the score is
    accepted at the lowest ``reached`` of them."""
    ascending = np.sort(levels)
    return np.searchsorted(ascending, scores.astype(np.float64), side="right")


def _accept_matrix(reached: np.ndarray, keys: np.ndarray, num_keys: int, levels: np.ndarray) -> np.ndarray:
    """``num_keys x (1 + len(levels))``: pairs per key, then pairs per key accepted at each level (in the
    levels' given order)."""
    position = np.argsort(np.argsort(levels, kind="stable"), kind="stable")  # ascending rank of each level
    out = np.empty((num_keys, len(levels) + 1), dtype=np.float64)
    out[:, 0] = np.bincount(keys, minlength=num_keys)
    # a score reaching r ascending levels is accepted at the r lowest; count by r, then cumulate downward
    by_reached = np.zeros((num_keys, len(levels) + 1), dtype=np.float64)
    for value in np.unique(reached):
        chosen = reached == value
        by_reached[:, value] = np.bincount(keys[chosen], minlength=num_keys)
    at_least = np.cumsum(by_reached[:, ::-1], axis=1)[:, ::-1]  # at_least[:, r]: scores reaching r levels or more
    for column, rank in enumerate(position):  # the level of ascending rank p accepts scores reaching p + 1 levels
        out[:, 1 + column] = at_least[:, rank + 1]
    return out


def _counts_by_key(scores: np.ndarray, keys: np.ndarray, levels: np.ndarray, num_keys: int) -> np.ndarray:
    return _accept_matrix(_levels(scores, levels), keys, num_keys, levels)


def _sparse_counts(scores: np.ndarray, keys: np.ndarray, levels: np.ndarray, key_space: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_counts_by_key` over the keys that occur only: ``(keys, matrix)``. Counted by ``bincount``
    over the whole key space while it is small (a few million identity pairs), else over ``np.unique``."""
    reached = _levels(scores, levels)
    if key_space <= DENSE_KEYS:
        table = _accept_matrix(reached, keys, key_space, levels)
        used = np.flatnonzero(table[:, 0])
        return used, table[used]
    unique, dense = np.unique(keys, return_inverse=True)
    return unique, _accept_matrix(reached, dense.ravel(), len(unique), levels)


def interval(values: np.ndarray) -> tuple[float, float] | None:
    """The central 95 % percentile interval of the finite bootstrap values, or None without any."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """A weight per pair so that each kind sums to 0.5: what prior 0.5 means, whatever the pair counts."""
    positives = int(np.count_nonzero(labels))
    return np.where(labels, 0.5 / positives, 0.5 / (len(labels) - positives))


def fit_logistic(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(coef, intercept)`` of an unpenalised logistic regression of ``labels`` (bool) on ``scores``, the
    two classes weighted equally, so the fit describes prior 0.5 whatever the pair counts."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, dtype=bool)
    weights = balanced_weights(labels) * len(labels)
    model = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-10, max_iter=200)
    model.fit(np.asarray(scores, dtype=np.float64).reshape(-1, 1), labels, sample_weight=weights)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error at prior 0.5: the two classes weighted equally, ``bins`` equal-width bins
    of the predicted probability, the weighted mean gap between predicted and observed frequency."""
    labels = np.asarray(labels, dtype=bool)
    weights = balanced_weights(labels)
    which = np.minimum((np.asarray(probabilities) * bins).astype(np.int64), bins - 1)
    mass = np.bincount(which, weights=weights, minlength=bins)
    predicted = np.bincount(which, weights=weights * probabilities, minlength=bins)
    observed = np.bincount(which, weights=weights * labels, minlength=bins)
    used = mass > 0
    return float(np.sum(np.abs(predicted[used] - observed[used])))


def calibrate_probability(pairs: ScoredPairs, options: CalibrationOptions) -> LogisticCalibration:
    """The logistic fit on all (sampled) pairs, and its calibration error measured by a fit that did not see
    a held-out share of the identities, on the pairs among those identities only."""
    rng = np.random.default_rng(options.seed + 1)
    genuine = _subsample(pairs.genuine, LOGISTIC_PAIRS, rng)
    impostor = _subsample(pairs.impostor, LOGISTIC_PAIRS, rng)
    scores = np.concatenate([pairs.genuine[genuine], pairs.impostor[impostor]])
    labels = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    coef, intercept = fit_logistic(scores, labels)

    held = rng.random(pairs.num_identities) < options.held_out
    genuine_held = held[pairs.genuine_ids[genuine]]
    impostor_held = held[pairs.impostor_ids[impostor]]
    test = np.concatenate([genuine_held, impostor_held.all(axis=1)])
    train = np.concatenate([~genuine_held, ~impostor_held.any(axis=1)])
    ece, ece_pairs = None, 0
    if _both_kinds(labels[train]) and _both_kinds(labels[test]):
        held_coef, held_intercept = fit_logistic(scores[train], labels[train])
        predicted = 1.0 / (1.0 + np.exp(-(held_coef * scores[test].astype(np.float64) + held_intercept)))
        ece, ece_pairs = expected_calibration_error(predicted, labels[test]), int(np.count_nonzero(test))
    return LogisticCalibration(coef, intercept, options.prior, ece, ece_pairs, int(np.count_nonzero(held)))


def _both_kinds(labels: np.ndarray) -> bool:
    return 0 < int(np.count_nonzero(labels)) < len(labels)


def _subsample(values: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= most:
        return np.arange(len(values))
    return np.sort(rng.choice(len(values), size=most, replace=False))


def calibrate_scores(pairs: ScoredPairs, options: CalibrationOptions = CalibrationOptions()) -> CalibrationResult:
    """Every figure of the module's docstring from scored pairs. Refuses (``ValueError``) pairs of one kind."""
    if len(pairs.genuine) == 0 or len(pairs.impostor) == 0:
        raise ValueError(f"need genuine and impostor pairs, got {len(pairs.genuine)} genuine and {len(pairs.impostor)} impostor")
    genuine = np.sort(pairs.genuine)
    impostor = np.sort(pairs.impostor)
    chosen: list[tuple[float, float, int]] = []
    unsupported: dict[float, str] = {}
    for far in options.far:
        needed = MIN_FALSE_ACCEPTS / far
        if len(impostor) < needed - 1e-6:
            unsupported[far] = (f"needs at least {math.ceil(needed - 1e-6):,} impostor pairs to be measured, "
                                f"these data have {len(impostor):,}")
            continue
        threshold, false_accepts = threshold_at_far(genuine, impostor, far)
        chosen.append((far, threshold, false_accepts))
    tar_draws, far_draws = identity_bootstrap(pairs, [t for _, t, _ in chosen], options.bootstrap, options.seed) \
        if chosen else (np.empty((0, 0)), np.empty((0, 0)))
    points = []
    column = 0
    for far in options.far:
        if far in unsupported:
            points.append(OperatingPoint(far, False, unsupported[far]))
            continue
        _, threshold, false_accepts = chosen[column]
        at = rates_at(genuine, impostor, threshold)
        points.append(OperatingPoint(
            far, True, None, threshold if math.isfinite(threshold) else None, at.tar, at.far, false_accepts,
            interval(tar_draws[:, column]), interval(far_draws[:, column]),
        ))
        column += 1
    eer, eer_point = equal_error_point(genuine, impostor)
    warnings = []
    if pairs.num_identities < 20:
        warnings.append(f"only {pairs.num_identities} identities: the intervals over identities are rough")
    return CalibrationResult(
        tuple(points), eer, eer_point, best_accuracy_point(genuine, impostor), calibrate_probability(pairs, options),
        len(genuine), len(impostor), pairs.num_identities, options.bootstrap, tuple(warnings),
    )
