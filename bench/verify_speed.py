"""How much faster ``facestra.verify.pairs.evaluate`` is than the plain 400-threshold loop, on 6,000 pairs.

Both run in this process on the same random embeddings; the script first checks that the fold accuracies
and thresholds are identical to the last bit, then prints the ratio of the best-of-N times.

    python bench/verify_speed.py [--pairs 6000] [--dims 512 1024]
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import best_time  # bench/ is this script's folder, first on sys.path

from facestra.verify.pairs import evaluate, reference_fold_accuracies


def plain_loop(emb1: np.ndarray, emb2: np.ndarray, issame: np.ndarray, num_folds: int = 10) -> tuple[list[float], list[float]]:
    """The protocol as the usual scripts write it: for each fold, every threshold over every training pair."""
    dist = np.sum(np.square(emb1.astype(np.float64) - emb2.astype(np.float64)), axis=1)
    tests = np.array_split(np.arange(len(dist)), num_folds)  # contiguous, the first n % k one longer (KFold)
    splits = [(np.setdiff1d(np.arange(len(dist)), test), test) for test in tests]
    return reference_fold_accuracies(dist, issame, splits)


def random_pairs(rng: np.random.Generator, num_pairs: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit embeddings: same pairs noisy copies, different pairs independent (float32, as models give them)."""
    issame = rng.random(num_pairs) < 0.5
    emb1 = rng.normal(size=(num_pairs, dim)).astype(np.float32)
    emb2 = np.where(issame[:, None], emb1 + 1.2 * rng.normal(size=emb1.shape), rng.normal(size=emb1.shape)).astype(np.float32)
    emb1 /= np.linalg.norm(emb1, axis=1, keepdims=True)
    emb2 /= np.linalg.norm(emb2, axis=1, keepdims=True)
    return emb1, emb2, issame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 1024], help="512: one view; 1024: flip concat")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    for dim in args.dims:
        emb1, emb2, issame = random_pairs(rng, args.pairs, dim)
        result = evaluate(emb1, emb2, issame)
        accuracies, chosen = plain_loop(emb1, emb2, issame)
        identical = result.fold_accuracies.tolist() == accuracies and result.best_thresholds.tolist() == chosen
        if not identical:
            raise SystemExit(f"MISMATCH between evaluate() and the plain loop (dim {dim})")
        loop_s = best_time(lambda e1=emb1, e2=emb2, same=issame: plain_loop(e1, e2, same), 5)
        fast_s = best_time(lambda e1=emb1, e2=emb2, same=issame: evaluate(e1, e2, same), 30)
        print(f"{args.pairs} pairs, dim {dim}: accuracy {100 * result.accuracy:.2f}% ± {100 * result.accuracy_std:.2f}, "
              f"fold accuracies and thresholds identical to the plain loop; plain loop {1e3 * loop_s:.1f} ms, "
              f"evaluate() {1e3 * fast_s:.2f} ms (with ROC, AUC, EER, TAR@FAR): {loop_s / fast_s:.1f}x faster (target >= 20x)")


if __name__ == "__main__":
    main()
