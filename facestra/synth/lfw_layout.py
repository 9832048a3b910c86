"""The synthetic set laid out like LFW: identity and file names, ten folds of pairs, ``pairs.txt`` and the ``.bin``.

Kept apart from the rendering so that the benchmark side of the set (which pairs, in which folds, in which
files) reads alone; it is a pure function of the seed and the identities held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FOLDS = 10


def identity_name(index: int) -> str:
    """The folder (and file prefix) of identity ``index``, LFW style."""
    return f"synth_{index:05d}"


def image_name(index: int, number: int) -> str:
    """File name of image ``number`` (1-based, as in LFW's pairs.txt) of identity ``index``."""
    return f"{identity_name(index)}_{number:04d}.jpg"



Pair = tuple[int, int, int, int]  # identity, image number, identity, image number (1-based)


def make_pairs(test_indices: list[int], images_per_identity: int, pairs_per_fold: int, seed: int) -> list[tuple[list[Pair], list[Pair]]]:
    """Ten folds of (same pairs, different pairs), equally many of each in every fold, no pair twice.

    With at least 20 test identities, folds use disjoint identities as LFW's do; with fewer, every fold draws
    from all of them. The count per fold is ``pairs_per_fold`` or what the smallest fold can supply.
    """
    rng = np.random.default_rng([int(seed), 3])
    count = len(test_indices)
    if count >= 2 * FOLDS:
        groups = [test_indices[f::FOLDS] for f in range(FOLDS)]
    else:
        groups = [test_indices] * FOLDS
    m = images_per_identity
    same_available = min(len(g) * m * (m - 1) // 2 for g in groups)
    diff_available = min(len(g) * (len(g) - 1) // 2 * m * m for g in groups)
    per_fold = max(1, min(pairs_per_fold, same_available, diff_available))
    folds = []
    used: set[Pair] = set()
    for group in groups:
        same = [(who, a, who, b) for who in group for a in range(1, m + 1) for b in range(a + 1, m + 1)]
        fresh = [p for p in same if p not in used] or same
        chosen = [fresh[i] for i in sorted(rng.choice(len(fresh), size=min(per_fold, len(fresh)), replace=False))]
        while len(chosen) < per_fold:  # only when identities are shared across folds and used up
            chosen.append(same[int(rng.integers(len(same)))])
        different: list[Pair] = []
        seen: set[Pair] = set()
        attempts = 0
        while len(different) < per_fold:
            first, second = rng.choice(len(group), size=2, replace=False)
            a, b = (int(x) for x in rng.integers(1, m + 1, size=2))
            pair = (group[first], a, group[second], b)
            key = min(pair, (pair[2], pair[3], pair[0], pair[1]))
            attempts += 1
            if (key in seen or key in used) and attempts < 100 * per_fold:
                continue
            seen.add(key)
            different.append(pair)
        used.update(chosen)
        used.update(seen)
        folds.append((chosen, different))
    return folds


def pairs_text(folds: list[tuple[list[Pair], list[Pair]]]) -> str:
    """LFW's ``pairs.txt``: header ``sets per_set``, then per set the same then the different pairs."""
    per_fold = len(folds[0][0])
    lines = [f"{len(folds)}\t{per_fold}"]
    for same, different in folds:
        lines += [f"{identity_name(p[0])}\t{p[1]}\t{p[3]}" for p in same]
        lines += [f"{identity_name(p[0])}\t{p[1]}\t{identity_name(p[2])}\t{p[3]}" for p in different]
    return "\n".join(lines) + "\n"


def write_pairs_bin(path: Path, folds: list[tuple[list[Pair], list[Pair]]], crops: dict[tuple[int, int], bytes]) -> None:
    """The pairs as 112x112 crops (``crops[identity, number]``), in pairs.txt order (contiguous folds)."""
    from facestra.protocols.binfile import write_bin

    images: list[bytes] = []
    issame: list[bool] = []
    for same, different in folds:
        for pairs, label in ((same, True), (different, False)):
            for first, a, second, b in pairs:
                images += [crops[first, a], crops[second, b]]
                issame.append(label)
    write_bin(path, images, issame, overwrite=True)
