"""Calibrated operating points against independent computations: sklearn's roc_curve, fresh draws from known
score laws, a hand-written logistic regression, and a naive pair-level bootstrap that must fail where the
identity bootstrap holds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

from facestra.verify.calibration import (
    CalibrationOptions,
    ScoredPairs,
    calibrate_scores,
    expected_calibration_error,
    fit_logistic,
    identity_bootstrap,
)
from facestra.verify.pairs import equal_error_rate
from facestra.verify.pairs import roc_curve as protocol_roc
from facestra.verify.scoring import identity_clusters, score_benchmark_pairs, score_identities


def synthetic_pairs(rng: np.random.Generator, identities: int = 200, genuine_per_identity: int = 10,
                    impostors: int = 50_000, identity_spread: float = 0.0) -> ScoredPairs:
    """Genuine scores N(0.6 + identity offset, 0.1), impostor scores N(0.1, 0.1), identities attached.
    ``identity_spread`` > 0 makes an identity's genuine pairs correlated (they share its offset)."""
    offsets = rng.normal(0.0, identity_spread, identities) if identity_spread else np.zeros(identities)
    genuine_ids = np.repeat(np.arange(identities), genuine_per_identity)
    genuine = rng.normal(0.6 + offsets[genuine_ids], 0.1)
    a = rng.integers(identities, size=impostors)
    b = (a + rng.integers(1, identities, size=impostors)) % identities
    impostor = rng.normal(0.1, 0.1, impostors)
    return ScoredPairs(genuine.astype(np.float32), impostor.astype(np.float32), genuine_ids.astype(np.int32),
                       np.stack([a, b], axis=1).astype(np.int32), identities, len(genuine), impostors)


def test_thresholds_and_tars_equal_sklearns_roc_curve() -> None:
    rng = np.random.default_rng(0)
    pairs = synthetic_pairs(rng)
    # ties: round the scores so that equal values of both kinds meet at many thresholds
    pairs = ScoredPairs(np.round(pairs.genuine, 3), np.round(pairs.impostor, 3), pairs.genuine_ids, pairs.impostor_ids,
                        pairs.num_identities, pairs.genuine_total, pairs.impostor_total)
    result = calibrate_scores(pairs, CalibrationOptions(far=(0.2, 0.1, 1e-2, 1e-3, 1e-4, 1e-5), bootstrap=50))
    labels = np.r_[np.ones(len(pairs.genuine)), np.zeros(len(pairs.impostor))]
    scores = np.r_[pairs.genuine, pairs.impostor]
    # every operating point (the default drop_intermediate=True leaves out corners on straight stretches)
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    for point in result.points:
        if not point.supported:
            continue
        index = np.flatnonzero(fpr <= point.far_target)[-1]
        assert point.threshold == thresholds[index]
        assert point.tar == tpr[index] and point.far == fpr[index]
        assert point.distance_threshold == pytest.approx(2 - 2 * thresholds[index])
    supported = {p.far_target: p.supported for p in result.points}
    # 50,000 impostor pairs measure a FAR down to 10 / 50,000 = 2e-4
    assert supported == {0.2: True, 0.1: True, 1e-2: True, 1e-3: True, 1e-4: False, 1e-5: False}
    assert "needs at least 100,000 impostor pairs" in result.points[4].reason


def test_eer_and_best_accuracy_agree_with_the_protocols_own_roc() -> None:
    rng = np.random.default_rng(1)
    pairs = synthetic_pairs(rng, impostors=4000)
    result = calibrate_scores(pairs, CalibrationOptions(bootstrap=50))
    labels = np.r_[np.ones(len(pairs.genuine), bool), np.zeros(len(pairs.impostor), bool)]
    distances = 2.0 - 2.0 * np.r_[pairs.genuine, pairs.impostor].astype(np.float64)
    assert result.eer == pytest.approx(equal_error_rate(protocol_roc(distances, labels)), abs=1e-12)
    # best accuracy by brute force over every score as a threshold
    scores = np.r_[pairs.genuine, pairs.impostor]
    accuracy = [np.mean((scores >= t) == labels) for t in np.unique(scores)]
    assert result.best_accuracy.accuracy == pytest.approx(max(accuracy))


def test_the_far_achieved_on_fresh_draws_falls_inside_the_interval() -> None:
    """Known laws: impostor scores N(0.1, 0.1), so the true FAR of a threshold t is 1 - Phi((t - 0.1) / 0.1)."""
    rng = np.random.default_rng(2)
    covered = {1e-2: 0, 1e-3: 0}
    trials = 40
    for _ in range(trials):
        pairs = synthetic_pairs(rng, identities=100, genuine_per_identity=5, impostors=40_000)
        result = calibrate_scores(pairs, CalibrationOptions(far=tuple(covered), bootstrap=200, seed=int(rng.integers(1 << 30))))
        for far in covered:
            point = result.point(far)
            true_far = norm.sf((point.threshold - 0.1) / 0.1)
            low, high = point.far_interval
            covered[far] += low <= true_far <= high
    for far, hits in covered.items():
        assert hits / trials >= 0.9, (far, hits)


def naive_pair_interval(values: np.ndarray, accepted: np.ndarray, rng: np.random.Generator, draws: int = 300) -> tuple[float, float]:
    """What a bootstrap over pairs says: resample the pairs themselves as if independent."""
    rates = [accepted[rng.integers(len(values), size=len(values))].mean() for _ in range(draws)]
    return tuple(np.percentile(rates, [2.5, 97.5]))


def test_identity_bootstrap_covers_correlated_identities_where_the_pair_bootstrap_does_not() -> None:
    """Genuine pairs of one person share an offset: their TAR varies with which people were photographed.
    The true TAR of a threshold t is E_offset[1 - Phi((t - 0.6 - offset) / 0.1)] = 1 - Phi((t - 0.6) / sqrt(0.1^2 + s^2))."""
    rng = np.random.default_rng(3)
    spread = 0.15
    trials = 40
    identity_hits = pair_hits = 0
    for _ in range(trials):
        pairs = synthetic_pairs(rng, identities=60, genuine_per_identity=20, impostors=20_000, identity_spread=spread)
        result = calibrate_scores(pairs, CalibrationOptions(far=(1e-2,), bootstrap=300, seed=int(rng.integers(1 << 30))))
        point = result.point(1e-2)
        true_tar = norm.sf((point.threshold - 0.6) / math.hypot(0.1, spread))
        low, high = point.tar_interval
        identity_hits += low <= true_tar <= high
        naive_low, naive_high = naive_pair_interval(pairs.genuine, pairs.genuine >= point.threshold, rng)
        pair_hits += naive_low <= true_tar <= naive_high
    assert identity_hits / trials >= 0.85, identity_hits
    assert pair_hits / trials <= 0.6, pair_hits  # the naive interval is far too narrow


def test_bootstrap_rates_are_the_weighted_counts_of_each_draw() -> None:
    """One draw checked by hand: multiplicities w, genuine pairs weighted w[id], impostors w[a] * w[b]."""
    rng = np.random.default_rng(4)
    pairs = synthetic_pairs(rng, identities=7, genuine_per_identity=3, impostors=300)
    thresholds = [0.3, 0.1]
    tar, far = identity_bootstrap(pairs, thresholds, replicates=5, seed=11)
    draws = np.random.default_rng(11).multinomial(7, np.full(7, 1 / 7), size=5)
    for row, w in enumerate(draws):
        gw = w[pairs.genuine_ids]
        iw = w[pairs.impostor_ids[:, 0]] * w[pairs.impostor_ids[:, 1]]
        for column, t in enumerate(thresholds):
            assert tar[row, column] == pytest.approx(np.sum(gw * (pairs.genuine >= t)) / np.sum(gw))
            assert far[row, column] == pytest.approx(np.sum(iw * (pairs.impostor >= t)) / np.sum(iw))


def newton_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted maximum likelihood of (coef, intercept) by Newton's method, written out."""
    beta = np.zeros(2)
    design = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ beta))
        gradient = design.T @ (w * (y - p))
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design
        beta += np.linalg.solve(hessian, gradient)
    return float(beta[0]), float(beta[1])


def test_the_logistic_fit_is_the_weighted_maximum_likelihood() -> None:
    rng = np.random.default_rng(5)
    genuine = rng.normal(0.5, 0.15, 300)
    impostor = rng.normal(0.1, 0.12, 3000)
    x = np.r_[genuine, impostor]
    y = np.r_[np.ones(300), np.zeros(3000)]
    coef, intercept = fit_logistic(x, y.astype(bool))
    # classes weighted equally: each genuine pair 0.5 / 300, each impostor 0.5 / 3000 (times a constant)
    w = np.where(y == 1, 0.5 / 300, 0.5 / 3000) * len(y)
    expected = newton_logistic(x, y, w)
    assert (coef, intercept) == pytest.approx(expected, rel=1e-4)


def test_probability_shifts_with_the_prior_and_ece_is_small_for_a_calibrated_model() -> None:
    rng = np.random.default_rng(6)
    pairs = synthetic_pairs(rng, identities=300, genuine_per_identity=10, impostors=30_000)
    fit = calibrate_scores(pairs, CalibrationOptions(far=(1e-2,), bootstrap=50)).probability
    # equal-variance normal laws: the true log-odds at prior 0.5 are linear, slope (0.6 - 0.1) / 0.1^2
    assert fit.coef == pytest.approx(50.0, rel=0.1)
    assert fit.ece is not None and fit.ece < 0.03 and fit.ece_pairs > 1000
    score = 0.35  # the midpoint: P = 0.5 at prior 0.5
    assert float(fit.probability(score)) == pytest.approx(0.5, abs=0.1)
    low = float(fit.probability(score, prior=0.01))
    odds = low / (1 - low) / (float(fit.probability(score)) / (1 - float(fit.probability(score))))
    assert odds == pytest.approx(0.01 / 0.99)
    # a deliberately wrong probability has a large error
    labels = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    assert expected_calibration_error(np.full(200, 0.99), labels) == pytest.approx(0.49, abs=1e-9)


def test_folder_scoring_covers_every_pair_exactly_once() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 9, 70)
    embeddings = rng.normal(size=(70, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    scored = score_identities(embeddings, labels, max_pairs=10**6)
    i, j = np.triu_indices(70, k=1)
    similarity = (embeddings @ embeddings.T)[i, j]
    same = labels[i] == labels[j]
    assert not scored.sampled
    assert np.allclose(np.sort(scored.genuine), np.sort(similarity[same]), atol=1e-6)
    assert np.allclose(np.sort(scored.impostor), np.sort(similarity[~same]), atol=1e-6)
    # identities as given labels, each impostor pair naming two different ones
    assert sorted(np.bincount(scored.genuine_ids, minlength=9)) == sorted(np.bincount(labels[i][same], minlength=9))
    assert np.all(scored.impostor_ids[:, 0] != scored.impostor_ids[:, 1])


def test_folder_scoring_samples_beyond_max_pairs_and_says_so() -> None:
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(30), 10)
    embeddings = rng.normal(size=(300, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    scored = score_identities(embeddings, labels, max_pairs=5000, seed=3)
    assert scored.sampled and scored.sample_seed == 3
    assert len(scored.impostor) == 5000 and scored.impostor_total == 300 * 299 // 2 - 30 * 45
    assert len(scored.genuine) == 30 * 45  # under the cap: every genuine pair
    a, b = scored.impostor_ids.T
    assert np.all(a != b)
    again = score_identities(embeddings, labels, max_pairs=5000, seed=3)
    assert np.array_equal(again.impostor, scored.impostor)


def test_benchmark_identities_are_connected_components_of_genuine_pairs() -> None:
    # images 0-1-2 joined by genuine pairs, 3 a copy of 2's bytes, 4 and 5 alone
    pairs = np.array([[0, 1], [1, 2], [3, 4], [4, 5], [0, 5]])
    issame = np.array([True, True, False, False, False])
    keys = ["a", "b", "c", "c", "d", "e"]
    clusters = identity_clusters(pairs, issame, keys)
    assert clusters[0] == clusters[1] == clusters[2] == clusters[3]
    assert len({clusters[0], clusters[4], clusters[5]}) == 3
    emb = np.eye(6, dtype=np.float32)
    scored = score_benchmark_pairs(emb[pairs[:, 0]], emb[pairs[:, 1]], issame, pairs, keys)
    assert scored.num_identities == 3 and len(scored.genuine) == 2 and len(scored.impostor) == 3


@pytest.mark.parametrize("far", [0.0, 1.0, -1e-3, 2.0])
def test_a_far_outside_zero_one_is_refused(far: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        CalibrationOptions(far=(far,))


def test_scored_pairs_name_their_images_in_the_sources_order() -> None:
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 6, 40)
    embeddings = rng.normal(size=(40, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    for cap in (10**6, 200):  # every pair, then a sample of each kind
        scored = score_identities(embeddings, labels, max_pairs=cap)
        for scores, images, same in ((scored.genuine, scored.genuine_images, True), (scored.impostor, scored.impostor_images, False)):
            a, b = images.T
            assert np.all(a != b) and np.all((labels[a] == labels[b]) == same)
            assert np.allclose(scores, np.einsum("ij,ij->i", embeddings[a], embeddings[b]), atol=1e-6)
