"""IJB-C-sized 1:1 scoring on CPU: 15.7M template pairs of 23,124 templates, scored, ROC'd and TAR@FAR'd.

facestra's chunked scorer (:func:`facestra.verify.templates.pair_scores`, block matrix products) with its
ROC and TAR pick, against the loop of insightface's ``eval_ijbc.py`` (gather both rows of 100,000 pairs at
a time, multiply, sum; scikit-learn's ``roc_curve``; the nearest-FPR pick) run side by side in this process
on a fraction of the pairs and scaled to the whole. The scores of the shared pairs must agree to 1e-12
and the TAR tables of the subset must be identical. BLAS threads are capped at ``--threads`` (2: the goal is
under 60 s on 2 cores).

    python bench/ijb_scoring.py [--pairs 15700000] [--templates 23124] [--baseline-fraction 0.1] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys

from _timing import parse_with_blas_threads


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15_700_000)
    parser.add_argument("--templates", type=int, default=23_124)
    parser.add_argument("--subjects", type=int, default=3_531)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--baseline-fraction", type=float, default=0.1, help="share of the pairs the slow loop scores")
    return parse_with_blas_threads(parser)


ARGS = parse() if __name__ == "__main__" else None  # before numpy loads its BLAS

import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from facestra.verify.templates import IJB_FAR_TARGETS, pair_scores, roc_points, tar_at_nearest_far  # noqa: E402


def synthetic_templates(rng: np.random.Generator, templates: int, subjects: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit template features clustered by subject, and the subject of each template."""
    subject = rng.integers(0, subjects, templates)
    centres = rng.standard_normal((subjects, dim))
    features = centres[subject] + 2.0 * rng.standard_normal((templates, dim))  # TAR@1e-6 well below 100%
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return features, subject


def synthetic_pairs(rng: np.random.Generator, subject: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` template pairs, about 1 in 800 of the same subject (IJB-C: 19,557 of 15.66M)."""
    templates = len(subject)
    first = rng.integers(0, templates, count)
    second = rng.integers(0, templates, count)
    by_subject = np.argsort(subject, kind="stable")
    starts = np.searchsorted(subject[by_subject], subject)
    sizes = np.bincount(subject, minlength=subject.max() + 1)[subject]
    genuine = np.flatnonzero(rng.random(count) < 1 / 800)
    offsets = (rng.random(len(genuine)) * sizes[first[genuine]]).astype(np.int64)
    second[genuine] = by_subject[starts[first[genuine]] + offsets]
    return first, second, subject[first] == subject[second]


def insightface_loop(features: np.ndarray, first: np.ndarray, second: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """eval_ijbc.py's verification(): 100,000 pairs at a time, two gathered float64 rows per pair; then
    scikit-learn's roc_curve and the nearest-FPR pick."""
    from sklearn.metrics import roc_curve

    template2id = np.arange(len(features)).reshape(-1, 1)
    score = np.zeros(len(first))
    for start in range(0, len(first), 100_000):
        s = np.arange(start, min(start + 100_000, len(first)))
        feat1 = features[template2id[first[s]]]
        feat2 = features[template2id[second[s]]]
        score[s] = np.sum(feat1 * feat2, -1).flatten()
    fpr, tpr, _ = roc_curve(labels, score)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    table = {}
    for far in IJB_FAR_TARGETS:
        _, index = min(zip(abs(fpr - far), range(len(fpr))))
        table[far] = float(tpr[index])
    return score, table


def facestra_scoring(features: np.ndarray, first: np.ndarray, second: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    scores = pair_scores(features, first, second)
    return scores, tar_at_nearest_far(roc_points(labels, scores))


def timed(function, *arguments):
    start = time.perf_counter()
    out = function(*arguments)
    return time.perf_counter() - start, out


def main(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    features, subject = synthetic_templates(rng, args.templates, args.subjects, args.dim)
    first, second, labels = synthetic_pairs(rng, subject, args.pairs)
    print(f"{args.pairs:,} pairs of {args.templates:,} templates ({args.dim}-d float64), {labels.sum():,} genuine; "
          f"{args.threads} BLAS threads, {os.cpu_count()} cores visible")

    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fast_time, (_, table) = timed(facestra_scoring, features, first, second, labels)
    rss_fast = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    part = max(1000, int(args.pairs * args.baseline_fraction))
    subset = slice(0, part)
    slow_time, (slow_scores, slow_table) = timed(insightface_loop, features, first[subset], second[subset], labels[subset])
    fast_part_time, (fast_part_scores, fast_part_table) = timed(facestra_scoring, features, first[subset], second[subset], labels[subset])
    gap = float(np.abs(slow_scores - fast_part_scores).max())
    if gap > 1e-12 or slow_table != fast_part_table:
        sys.exit(f"MISMATCH on the {part:,}-pair subset: largest score gap {gap:g}, tables {slow_table} vs {fast_part_table}")
    scaled = slow_time * args.pairs / part
    print(f"subset {part:,} pairs: eval_ijbc.py loop {slow_time:.2f} s, facestra {fast_part_time:.2f} s "
          f"(scores agree to {gap:.1e}, TAR tables identical)")
    print(f"all {args.pairs:,} pairs: facestra {fast_time:.2f} s (goal < 60 s); eval_ijbc.py loop scaled {scaled:.1f} s; "
          f"ratio {scaled / fast_time:.1f}x")
    print(f"peak RSS of the full facestra run {rss_fast:.0f} MiB, of which the synthetic inputs {rss_setup:.0f} MiB")
    print("TAR@FAR: " + "  ".join(f"{far:g}: {100 * tar:.2f}%" for far, tar in table.items()))


if __name__ == "__main__":
    main(ARGS)
