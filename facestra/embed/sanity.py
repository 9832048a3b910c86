"""Embeddings that mean nothing are refused, whatever ran the model: non-finite, all-zero, or the same for
every image. Pure numpy, shared by the torch path (:mod:`facestra.embed.inference`) and the torch-free
ONNX path (:mod:`facestra.embed.runtime`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facestra.errors import UserError


def source_names(sources: Sequence[Path | bytes]) -> list[str]:
    """How messages name each source: a file by its path, an image given as bytes by its position."""
    return [str(s) if isinstance(s, Path) else f"image {i}" for i, s in enumerate(sources)]


def refuse_meaningless_rows(embeddings: np.ndarray, row_names: Sequence[str]) -> None:
    """A NaN, infinite or all-zero embedding means broken weights (a run that diverged, a dead network),
    never a property of one image: refuse it rather than let verify score it as a distance of 0, 2 or 4.
    ``row_names[i]`` names row ``i`` in the message. Every path that embeds (embed, verify, compare, IJB)
    calls this on each batch."""
    finite = np.isfinite(embeddings).all(axis=1)
    if not finite.all():
        raise UserError(
            f"{row_names[int(np.argmin(finite))]}: the model's embedding is not finite (NaN or infinity); its weights "
            "are broken (a diverged training run?)", exit_code=1,
        )
    zero = ~np.any(embeddings, axis=1)
    if zero.any():
        raise UserError(
            f"{row_names[int(np.argmax(zero))]}: the model's embedding is all zero; its weights are broken "
            "(a dead or untrained network?)", exit_code=1,
        )


#: Rows closer than this (relative to the largest value of the first row) count as one embedding.
IDENTICAL_TOLERANCE = 1e-5


def refuse_identical_rows(matrix: np.ndarray, sources: Sequence[Path | bytes], names: Sequence[str], *, chunk: int = 65536) -> None:
    """Refuse embeddings that are the same for every image while the images are not all the same: the
    network ignores its input, and every pair would score as a match. ``matrix`` may be a memory map (read
    ``chunk`` rows at a time); the images are compared only when every row is equal, which a working model
    never gives."""
    if len(matrix) < 2:
        return
    first = np.asarray(matrix[0], dtype=np.float64)
    tolerance = IDENTICAL_TOLERANCE * max(float(np.abs(first).max()), 1e-30)
    start, step = 1, 256  # a working model differs within the first rows: look at those before reading more
    while start < len(matrix):
        stop = min(start + step, len(matrix))
        if np.abs(np.asarray(matrix[start:stop], dtype=np.float64) - first).max() > tolerance:
            return
        start, step = stop, chunk
    if not _contents_differ(sources):
        return
    raise UserError(
        f"{names[0]} and the other {len(matrix) - 1} images: the model gives every image the same embedding; its weights "
        "are broken (the network ignores its input)", exit_code=1,
    )


def _contents_differ(sources: Sequence[Path | bytes]) -> bool:
    """Whether two of ``sources`` (files or encoded images) hold different bytes."""
    from facestra.io import read_file

    first = None
    for source in sources:
        try:
            data = source if isinstance(source, bytes) else read_file(source)
        except OSError:
            return True
        if first is None:
            first = data
        elif data != first:
            return True
    return False
