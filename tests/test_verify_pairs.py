"""The verification protocol against an independent plain loop, and TAR@FAR / EER / AUC against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import KFold

from facestra.verify.pairs import evaluate, evaluate_distances, kfold_ids, pair_distances, reference_fold_accuracies

THRESHOLDS = np.arange(0, 4, 0.01)


def kfold_splits(n: int, k: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(KFold(n_splits=k, shuffle=False).split(np.arange(n)))


def fold_splits(fold_ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.flatnonzero(fold_ids != f), np.flatnonzero(fold_ids == f)) for f in np.unique(fold_ids)]


def unit_pairs(rng: np.random.Generator, n: int, dim: int = 32, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random unit embeddings: same pairs are noisy copies, different pairs independent."""
    issame = rng.random(n) < 0.5
    e1 = rng.normal(size=(n, dim)).astype(np.float32)
    e2 = np.where(issame[:, None], e1 + noise * rng.normal(size=(n, dim)), rng.normal(size=(n, dim))).astype(np.float32)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    return e1, e2, issame


def assert_matches_loop(result, dist, issame, splits) -> None:
    accuracies, chosen = reference_fold_accuracies(dist, issame, splits)
    # to the last bit, not approximately
    assert result.fold_accuracies.tolist() == accuracies
    assert result.best_thresholds.tolist() == chosen
    assert result.accuracy == np.mean(accuracies)
    assert result.accuracy_std == np.std(accuracies)


@pytest.mark.parametrize("n, noise, seed", [(6000, 1.2, 0), (607, 1.0, 1), (53, 0.8, 2), (1001, 2.0, 3)])
def test_protocol_matches_plain_loop_on_random_embeddings(n: int, noise: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    e1, e2, issame = unit_pairs(rng, n, noise=noise)
    result = evaluate(e1, e2, issame)
    dist = np.sum(np.square(e1.astype(np.float64) - e2.astype(np.float64)), axis=1)
    assert_matches_loop(result, dist, issame, kfold_splits(n))
    assert 0.5 < result.accuracy < 1.0  # a case where thresholds matter


def test_protocol_matches_plain_loop_when_distances_sit_on_thresholds() -> None:
    """Ties: many pairs exactly at a threshold value (``dist < t`` must be strict) and equal accuracies."""
    rng = np.random.default_rng(5)
    n = 2345  # uneven folds: the first 5 folds have 235 pairs, the others 234
    dist = THRESHOLDS[rng.integers(0, 400, size=n)].copy()
    dist[::7] = 1.0
    dist[::11] = 0.0
    issame = rng.random(n) < (dist < 1.5) * 0.7 + 0.15
    result = evaluate_distances(dist, issame)
    assert_matches_loop(result, dist, issame, kfold_splits(n))


def test_tied_embeddings_give_exact_threshold_distances() -> None:
    """Through embeddings: 1-D vectors whose squared differences are exactly 0, 0.25, 1 and 2.25."""
    rng = np.random.default_rng(6)
    n = 97
    offsets = rng.choice([0.0, 0.5, 1.0, 1.5], size=n)
    e1 = np.zeros((n, 1), dtype=np.float32)
    e2 = offsets[:, None].astype(np.float32)
    issame = (offsets <= 0.5) ^ (rng.random(n) < 0.2)
    dist = pair_distances(e1, e2)
    assert set(dist.tolist()) <= {0.0, 0.25, 1.0, 2.25} and 0.25 in THRESHOLDS and 2.25 in THRESHOLDS
    result = evaluate(e1, e2, issame)
    assert_matches_loop(result, dist, issame, kfold_splits(n))


def test_first_threshold_wins_ties() -> None:
    """All same pairs at distance 1, all different at 3: every threshold in (1, 3] is perfect; take 1.01."""
    dist = np.array([1.0, 3.0] * 50)
    issame = np.array([True, False] * 50)
    result = evaluate_distances(dist, issame)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert np.all(result.best_thresholds == THRESHOLDS[101])


@pytest.mark.parametrize("n", [10, 11, 6000, 6007])
def test_contiguous_folds_are_sklearn_kfold(n: int) -> None:
    ids = kfold_ids(n, 10)
    for fold, (_, test) in enumerate(kfold_splits(n)):
        assert np.flatnonzero(ids == fold).tolist() == test.tolist()


def test_explicit_folds_match_loop_over_those_folds() -> None:
    rng = np.random.default_rng(7)
    e1, e2, issame = unit_pairs(rng, 700)
    fold_ids = rng.integers(1, 11, size=700) * 3  # neither contiguous, nor equal in size, nor 0..9
    result = evaluate(e1, e2, issame, fold_ids)
    dist = pair_distances(e1, e2)
    assert_matches_loop(result, dist, issame, fold_splits(fold_ids))
    assert len(result.fold_accuracies) == 10
    # and differs from what ten contiguous folds would give, so the folds are really used
    assert result.fold_accuracies.tolist() != evaluate(e1, e2, issame).fold_accuracies.tolist()


def test_tar_far_eer_auc_against_sklearn_roc_curve() -> None:
    rng = np.random.default_rng(8)
    e1, e2, issame = unit_pairs(rng, 6000, noise=1.3)
    result = evaluate(e1, e2, issame)
    scores = -pair_distances(e1, e2)
    fpr, tpr, _ = roc_curve(issame, scores)
    num_negatives = int(np.count_nonzero(~issame))
    assert num_negatives >= 1000 and num_negatives < 10000
    assert set(result.tar_at_far) == {1e-1, 1e-2, 1e-3}  # 1e-4 needs 10,000 different pairs
    for far, tar in result.tar_at_far.items():
        assert tar == pytest.approx(tpr[fpr <= far].max(), abs=1e-12)
    # EER: where the ROC crosses fpr = 1 - tpr, by linear interpolation of sklearn's curve
    gap = 1 - tpr - fpr
    i = int(np.flatnonzero(gap <= 0)[0])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    assert result.eer == pytest.approx(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]), abs=1e-12)
    assert 0.0 < result.eer < 0.5
    assert result.auc == pytest.approx(roc_auc_score(issame, scores), abs=1e-12)


def test_roc_with_ties_matches_sklearn() -> None:
    rng = np.random.default_rng(9)
    dist = rng.integers(0, 20, size=3000) / 5.0  # heavy ties
    issame = rng.random(3000) < np.exp(-dist)
    result = evaluate_distances(dist, issame)
    fpr, tpr, thresholds = roc_curve(issame, -dist, drop_intermediate=False)
    assert np.allclose(result.roc.fpr, fpr) and np.allclose(result.roc.tpr, tpr)
    assert np.allclose(result.roc.thresholds[1:], -thresholds[1:])
    assert result.auc == pytest.approx(roc_auc_score(issame, -dist), abs=1e-12)
    assert 1e-3 in result.tar_at_far and 1e-4 not in result.tar_at_far


@pytest.mark.parametrize("n, dim, dtype", [(1, 1, np.float32), (130, 7, np.float32), (6000, 1024, np.float32), (517, 512, np.float64)])
def test_distances_are_the_plain_float64_formula_bit_for_bit(n: int, dim: int, dtype) -> None:
    rng = np.random.default_rng(n)
    e1, e2 = rng.normal(size=(2, n, dim)).astype(dtype)
    plain = np.sum(np.square(e1.astype(np.float64) - e2.astype(np.float64)), axis=1)
    assert pair_distances(e1, e2).tolist() == plain.tolist()


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        evaluate(np.zeros((4, 2)), np.zeros((5, 2)), [True] * 4)
    with pytest.raises(ValueError, match="one label per pair"):
        evaluate(np.zeros((20, 2)), np.zeros((20, 2)), [True] * 19)
    with pytest.raises(ValueError, match="cannot be split"):
        evaluate(np.zeros((5, 2)), np.zeros((5, 2)), [True, False] * 2 + [True])


def test_result_to_dict_holds_every_figure() -> None:
    rng = np.random.default_rng(10)
    e1, e2, issame = unit_pairs(rng, 200)
    data = evaluate(e1, e2, issame).to_dict()
    assert {"accuracy", "accuracy_std", "fold_accuracies", "best_thresholds", "tar_at_far", "auc", "eer", "roc"} <= set(data)
    assert len(data["fold_accuracies"]) == 10 and data["tar_at_far"]["0.1"] >= 0
    assert len(data["roc"]["fpr"]) == len(data["roc"]["tpr"])
