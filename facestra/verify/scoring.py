"""Genuine and impostor scores of a calibration source, with the identities behind each pair.

From a folder of identities every pair of images is scored: the images are ordered by identity and the
similarity matrix is computed a block of rows at a time as a matrix product (BLAS), keeping the upper
triangle; a pair of the same identity is genuine, any other an impostor. Beyond ``max_pairs`` pairs of a
kind a seeded uniform sample (with replacement) is scored instead, row-wise, and reported as such.

A benchmark's pairs carry no identity names, so identities are reconstructed: images with the same
content are one image, and images joined by a genuine pair are one identity (connected components). Two
genuine pairs of one person that share no photo then count as two identities, which makes the bootstrap
intervals somewhat narrower than with true names: a folder of identities is the better source.

Pure numpy: embeddings in (unit rows, float32), :class:`~facestra.verify.calibration.ScoredPairs` out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from facestra.verify.calibration import ScoredPairs

#: Rows of the similarity matrix computed at once (times the number of images: the block's floats).
BLOCK_FLOATS = 16_000_000


def pair_counts(identity_sizes: np.ndarray) -> tuple[int, int]:
    """``(genuine, impostor)`` pair counts of a folder with these images per identity."""
    sizes = identity_sizes.astype(np.int64)
    total = int(sizes.sum())
    genuine = int(np.sum(sizes * (sizes - 1) // 2))
    return genuine, total * (total - 1) // 2 - genuine


def score_identities(embeddings: np.ndarray, labels: np.ndarray, *, max_pairs: int, seed: int = 0) -> ScoredPairs:
    """Every genuine and impostor pair of images with identity ``labels`` (``0 .. C - 1``, one per row of
    ``embeddings``), or a seeded sample of ``max_pairs`` of a kind that has more."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    emb = np.ascontiguousarray(embeddings[order], dtype=np.float32)
    ids = labels[order]
    num_ids = int(ids.max()) + 1
    sizes = np.bincount(ids, minlength=num_ids)
    genuine_total, impostor_total = pair_counts(sizes)
    rng = np.random.default_rng(seed)
    if genuine_total <= max_pairs:
        genuine, genuine_images = _all_genuine(emb, sizes)
    else:
        genuine, genuine_images = _sample_genuine(emb, sizes, max_pairs, rng)
    if impostor_total <= max_pairs:
        impostor, impostor_images = _all_impostors(emb, ids, impostor_total)
    else:
        impostor, impostor_images = _sample_impostors(emb, ids, max_pairs, rng)
    sampled = genuine_total > max_pairs or impostor_total > max_pairs
    identity = ids.astype(np.int32)
    position = order.astype(np.int32)  # row of the grouped matrix -> image of the source
    return ScoredPairs(genuine, impostor, identity[genuine_images[:, 0]], identity[impostor_images], num_ids, genuine_total,
                       impostor_total, seed if sampled else None, position[genuine_images], position[impostor_images])


def _all_genuine(emb: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper triangle of each identity's own similarity block (rows are grouped by identity): the
    scores and the two rows of each pair."""
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    scores, rows = [np.empty(0, np.float32)], [np.empty((0, 2), np.int64)]
    for identity in np.flatnonzero(sizes > 1):
        start = starts[identity]
        block = emb[start:start + sizes[identity]]
        upper = np.triu_indices(len(block), k=1)
        scores.append((block @ block.T)[upper])
        rows.append(np.stack(upper, axis=1) + start)
    return np.concatenate(scores).astype(np.float32), np.concatenate(rows)


def _all_impostors(emb: np.ndarray, ids: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of different identities, a block of rows of the similarity matrix at a time; as rows are
    grouped by identity, row ``i``'s impostors are the columns after the end of its identity's run."""
    count = len(emb)
    run_end = np.searchsorted(ids, ids, side="right")  # first row of the next identity, for each row
    scores = np.empty(total, dtype=np.float32)
    rows = np.empty((total, 2), dtype=np.int32)
    rows_per_block = max(1, BLOCK_FLOATS // max(count, 1))
    filled = 0
    for start in range(0, count, rows_per_block):
        stop = min(start + rows_per_block, count)
        first_column = int(run_end[start])
        if first_column >= count:
            break
        block = emb[start:stop] @ emb[first_column:].T
        columns = np.arange(first_column, count, dtype=np.int32)
        keep = columns[None, :] >= run_end[start:stop, None]
        per_row = keep.sum(axis=1)
        taken = int(per_row.sum())
        scores[filled:filled + taken] = block[keep]
        rows[filled:filled + taken, 0] = np.repeat(np.arange(start, stop, dtype=np.int32), per_row)
        rows[filled:filled + taken, 1] = np.broadcast_to(columns, block.shape)[keep]
        filled += taken
    assert filled == total, (filled, total)
    return scores, rows


def _rowwise(emb: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    out = np.empty(len(first), dtype=np.float32)
    step = max(1, BLOCK_FLOATS // max(emb.shape[1], 1))
    for start in range(0, len(first), step):
        a, b = emb[first[start:start + step]], emb[second[start:start + step]]
        out[start:start + step] = np.einsum("ij,ij->i", a, b)
    return out


def _sample_impostors(emb: np.ndarray, ids: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` impostor pairs drawn uniformly (with replacement) by drawing two images until they differ."""
    first = np.empty(0, np.int64)
    second = np.empty(0, np.int64)
    while len(first) < count:
        need = count - len(first)
        a = rng.integers(len(emb), size=2 * need)
        b = rng.integers(len(emb), size=2 * need)
        differ = ids[a] != ids[b]
        first = np.concatenate([first, a[differ][:need]])
        second = np.concatenate([second, b[differ][:need]])
    return _rowwise(emb, first, second), np.stack([first, second], axis=1)


def _sample_genuine(emb: np.ndarray, sizes: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` genuine pairs drawn uniformly: an identity in proportion to its pairs, then two of its images."""
    weights = (sizes * (sizes - 1) / 2).astype(np.float64)
    identity = rng.choice(len(sizes), size=count, p=weights / weights.sum())
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    n = sizes[identity]
    a = rng.integers(n)
    b = rng.integers(n - 1)
    b = b + (b >= a)  # a different image of the same identity
    first, second = starts[identity] + a, starts[identity] + b
    return _rowwise(emb, first, second), np.stack([first, second], axis=1)


def score_benchmark_pairs(emb1: np.ndarray, emb2: np.ndarray, issame: np.ndarray, pair_images: np.ndarray,
                          image_keys: Sequence[object]) -> ScoredPairs:
    """The pairs of a benchmark as scored pairs, identities reconstructed (see the module's docstring).

    ``pair_images`` is the benchmark's ``N x 2`` image indices and ``image_keys`` one hashable key per
    image (its path or a digest of its bytes): images with equal keys are one image.
    """
    scores = np.einsum("ij,ij->i", emb1.astype(np.float32), emb2.astype(np.float32)).astype(np.float32)
    same = np.asarray(issame, dtype=bool)
    clusters = identity_clusters(pair_images, same, image_keys)
    ends = clusters[pair_images]
    images = np.asarray(pair_images, dtype=np.int32)
    return ScoredPairs(scores[same], scores[~same], ends[same, 0].astype(np.int32), ends[~same].astype(np.int32),
                       int(clusters.max()) + 1, int(same.sum()), int((~same).sum()), None, images[same], images[~same])


def identity_clusters(pair_images: np.ndarray, issame: np.ndarray, image_keys: Sequence[object]) -> np.ndarray:
    """One identity number (``0 .. C - 1``) per image: connected components of the genuine pairs over
    images merged by key."""
    canonical: dict[object, int] = {}
    image_of = np.array([canonical.setdefault(key, len(canonical)) for key in image_keys], dtype=np.int64)
    parent = np.arange(len(canonical))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in image_of[pair_images[issame]]:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(len(parent))], dtype=np.int64)
    _, dense = np.unique(roots, return_inverse=True)
    return dense.ravel()[image_of]


def image_key(image: object) -> object:
    """How images are told apart: a path by its name, encoded bytes by a digest of their content."""
    if isinstance(image, bytes):
        return hashlib.blake2b(image, digest_size=16).digest()
    return str(image)
