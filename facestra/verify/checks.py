"""Whether a benchmark can give a verification figure that means something, checked before any embedding.

The protocol (:mod:`facestra.verify.pairs`) needs same and different pairs, at least two folds and pairs
in every fold. Without them it used to give a silent 100 % (all pairs of one kind: any threshold is
"right") or a traceback deep in the fold loop. :func:`check_benchmark` refuses those benchmarks with one
line naming the file, and returns warnings for what still gives a number but a doubtful one (a fold of one
kind of pair, an image paired with itself, a pair listed twice). :func:`check_images` decodes every image
once, so that ``train --val`` finds a broken image before the first step rather than after an epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from facestra.errors import UserError
from facestra.protocols.benchmark import Benchmark


def check_benchmark(benchmark: Benchmark, folds: int = 10) -> list[str]:
    """Raise :class:`UserError` when ``benchmark`` cannot be evaluated; else the warnings about it.

    ``folds`` is the number of contiguous folds used when the benchmark does not define its own (the
    protocol's 10, as :meth:`Benchmark.fold_spec` gives).
    """
    source = benchmark.source
    num_pairs = benchmark.num_pairs
    if num_pairs == 0:
        raise UserError(f"{source}: no pairs")
    num_same = int(np.count_nonzero(benchmark.issame))
    if num_same in (0, num_pairs):
        kind = "same" if num_same else "different"
        raise UserError(
            f"{source}: all {num_pairs} pairs are {kind} pairs; verification needs both same and different pairs"
        )
    fold_ids = _fold_ids(benchmark, folds)
    balance = balance_warning(int(np.count_nonzero(benchmark.issame)), int(np.count_nonzero(~benchmark.issame)), str(benchmark.source))
    return _fold_warnings(benchmark, fold_ids) + _pair_warnings(benchmark) + ([balance] if balance else [])


def _fold_ids(benchmark: Benchmark, folds: int) -> np.ndarray:
    """One fold id per pair counted from 0, or a :class:`UserError` when the folds cannot be used."""
    source = benchmark.source
    num_pairs = benchmark.num_pairs
    if benchmark.folds is None:
        if folds < 2:
            raise UserError(f"{source}: {folds} fold(s); the protocol needs at least 2")
        if num_pairs < folds:
            raise UserError(f"{source}: {num_pairs} pairs cannot be split into {folds} folds (need at least {folds} pairs)")
        sizes = np.full(folds, num_pairs // folds)
        sizes[: num_pairs % folds] += 1
        return np.repeat(np.arange(folds), sizes)
    ids = np.asarray(benchmark.folds)
    if not np.issubdtype(ids.dtype, np.integer):
        raise UserError(f"{source}: fold ids must be integers")
    present = np.unique(ids)
    if len(present) < 2:
        raise UserError(f"{source}: all {num_pairs} pairs are in fold {int(present[0])}; the protocol needs at least 2 folds")
    # Folds are numbered 0..k-1 (LFW's sets, CFP-FP's splits) or, in a hand-written pairs.csv, 1..k.
    first = 1 if present[0] == 1 else 0
    expected = np.arange(first, first + len(present))
    if not np.array_equal(present, expected):
        outside = int(present[~np.isin(present, expected)][0])
        empty = int(expected[~np.isin(expected, present)][0])
        raise UserError(
            f"{source}: fold id {outside} is outside the expected range {first}..{first + len(present) - 1} "
            f"for {len(present)} folds (fold {empty} has no pairs)"
        )
    return ids - first


def _fold_warnings(benchmark: Benchmark, fold_ids: np.ndarray) -> list[str]:
    same = benchmark.issame
    one_kind = [
        fold for fold in range(int(fold_ids.max()) + 1)
        if len(np.unique(same[fold_ids == fold])) == 1
    ]
    if not one_kind:
        return []
    listed = ", ".join(str(f + _first_fold(benchmark)) for f in one_kind[:10]) + (", ..." if len(one_kind) > 10 else "")
    return [
        f"{benchmark.source}: {len(one_kind)} fold(s) hold only one kind of pair ({listed}); "
        "their accuracies say little about the threshold"
    ]


def _first_fold(benchmark: Benchmark) -> int:
    """The id the benchmark itself gives its first fold, for messages."""
    return 1 if benchmark.folds is not None and int(np.min(benchmark.folds)) == 1 else 0


#: Below this share of either kind of pair, the best-accuracy threshold follows the majority.
BALANCE_WARNING = 0.25


def balance_warning(num_genuine: int, num_impostor: int, source: str) -> str | None:
    """A warning when the pairs are far from balanced: accuracy, and the threshold chosen for it, then
    reward answering the majority (90 % on a list with 10 % genuine pairs by answering "different" to all)."""
    total = num_genuine + num_impostor
    if total == 0 or min(num_genuine, num_impostor) / total >= BALANCE_WARNING:
        return None
    majority = 100 * max(num_genuine, num_impostor) / total
    return (f"{source}: only {100 * num_genuine / total:.1f}% of the {total:,} pairs are genuine: answering "
            f"'{'same' if num_genuine > num_impostor else 'different'}' to every pair scores {majority:.1f}% accuracy; "
            "read the balanced accuracy, the EER and TAR at FAR instead")


def _pair_warnings(benchmark: Benchmark) -> list[str]:
    """Self-pairs and duplicate pairs, comparing images by path or, in a ``.bin``, by their bytes."""
    keys: dict[object, int] = {}
    identity = np.array([keys.setdefault(image, len(keys)) for image in benchmark.images], dtype=np.int64)
    pairs = identity[benchmark.pairs]
    warnings: list[str] = []
    self_pairs = np.flatnonzero(pairs[:, 0] == pairs[:, 1])
    if len(self_pairs):
        warnings.append(
            f"{benchmark.source}: {len(self_pairs)} pair(s) of an image with itself (first: pair {self_pairs[0] + 1}); "
            "their distance is 0 whatever the model"
        )
    unordered = np.sort(pairs, axis=1)
    _, first_index, counts = np.unique(unordered, axis=0, return_index=True, return_counts=True)
    repeated = int(np.sum(counts - 1))
    if repeated:
        first = int(np.min(first_index[counts > 1])) + 1
        warnings.append(
            f"{benchmark.source}: {repeated} duplicate pair(s) (the pair listed first as pair {first} comes again); "
            "they count more than once"
        )
    return warnings


def check_images(benchmark: Benchmark, progress: Callable[[int], None] | None = None) -> None:
    """Decode every image of ``benchmark`` once; the first that cannot be read is a :class:`UserError`
    naming it (exit 1, as an unreadable image in ``verify``)."""
    from facestra.data.images import decode_image

    for index in range(len(benchmark.images)):
        name = benchmark.image_name(index)
        try:
            decode_image(benchmark.image_bytes(index), name)
        except UserError as error:
            raise UserError(str(error), exit_code=1) from None
        if progress is not None:
            progress(1)
