"""Calibration of a 10,000-image folder on CPU: about 50 M pairs scored, thresholded, bootstrapped over identities.

facestra's path (:func:`facestra.verify.scoring.score_identities`, block matrix products over the
similarity matrix; then :func:`facestra.verify.calibration.calibrate_scores`: thresholds at six FARs, 1,000
identity-bootstrap draws, EER, best accuracy, the logistic P(same)) against the baseline a user would write:
scikit-learn's ``roc_curve`` on the same scores, which gives the thresholds and nothing else. Both run in
this process on the same embeddings (random unit vectors around identity centres, 512-D); the thresholds
must be equal. BLAS threads are capped at ``--threads`` (2: the goal is under a minute on 2 cores).

    python bench/calibrate_scoring.py [--images 10000] [--identities 1000] [--dim 512] [--threads 2]
"""

from __future__ import annotations

import argparse

from _timing import parse_with_blas_threads


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--identities", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--bootstrap", type=int, default=1000)
    return parse_with_blas_threads(parser)


ARGS = parse() if __name__ == "__main__" else None  # before numpy loads its BLAS

import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def embeddings(images: int, identities: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(identities, size=images)
    centres = rng.normal(size=(identities, dim))
    vectors = 0.35 * centres[labels] + rng.normal(size=(images, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), labels


def main(args: argparse.Namespace) -> None:
    from sklearn.metrics import roc_curve

    from facestra.verify.calibration import CalibrationOptions, calibrate_scores
    from facestra.verify.scoring import score_identities

    vectors, labels = embeddings(args.images, args.identities, args.dim, args.seed)
    options = CalibrationOptions(bootstrap=args.bootstrap, max_pairs=10**9)
    start = time.perf_counter()
    pairs = score_identities(vectors, labels, max_pairs=options.max_pairs)
    scored = time.perf_counter() - start
    result = calibrate_scores(pairs, options)
    facestra_seconds = time.perf_counter() - start
    total = len(pairs.genuine) + len(pairs.impostor)
    print(f"{args.images:,} images, {args.identities:,} identities: {len(pairs.genuine):,} genuine + {len(pairs.impostor):,} "
          f"impostor = {total:,} pairs")
    print(f"facestra: scoring {scored:.2f} s, whole calibration {facestra_seconds:.2f} s "
          f"(thresholds at {len(options.far)} FARs, {args.bootstrap} identity-bootstrap draws, EER, logistic P(same))")

    start = time.perf_counter()
    scores = np.concatenate([pairs.genuine, pairs.impostor])
    truth = np.concatenate([np.ones(len(pairs.genuine), bool), np.zeros(len(pairs.impostor), bool)])
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)  # every operating point
    baseline_seconds = time.perf_counter() - start
    print(f"sklearn roc_curve on the same scores (thresholds only): {baseline_seconds:.2f} s")
    for point in result.points:
        if point.supported:
            index = np.flatnonzero(fpr <= point.far_target)[-1]
            assert point.threshold == thresholds[index] and point.tar == tpr[index], point
    supported = [p for p in result.points if p.supported]
    print("thresholds equal sklearn's at FAR " + ", ".join(f"{p.far_target:g}" for p in supported))
    for p in supported:
        print(f"  FAR {p.far_target:g}: cosine >= {p.threshold:.4f}, TAR {100 * p.tar:.2f}% "
              f"[{100 * p.tar_interval[0]:.2f}, {100 * p.tar_interval[1]:.2f}]")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ratio facestra whole calibration / sklearn roc_curve alone: {facestra_seconds / baseline_seconds:.2f}x "
          f"(goal: the calibration under 60 s); peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main(ARGS)
