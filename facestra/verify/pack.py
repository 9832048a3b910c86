"""Turn any benchmark into the ``.bin`` format, so that it moves between tools as one file.

The encoded bytes of each image are copied as they are (no re-encoding). A ``.bin`` has no fold column:
readers split it into ten contiguous folds. Pairs are therefore written fold by fold, which keeps a
benchmark's own folds exactly when they are ten of the sizes ``KFold(10)`` would cut; the report says
whether that holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facestra.data.images import decode_image
from facestra.errors import UserError
from facestra.io import input_at, refuse_output_over_inputs
from facestra.protocols.benchmark import Benchmark
from facestra.protocols.binfile import write_bin
from facestra.verify.pairs import kfold_ids


@dataclass(frozen=True)
class PackReport:
    path: Path
    num_pairs: int
    num_same: int
    folds_preserved: bool  # False: the benchmark's own folds differ from the ten contiguous ones of a .bin


def pack_benchmark(
    benchmark: Benchmark,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PackReport:
    """Write ``benchmark`` to ``out`` as a ``.bin`` (atomically; an existing file is kept unless ``overwrite``).

    Every image must decode; an unreadable one is a UserError naming it, and nothing is written. ``out``
    may not be a file the benchmark is read from, even with ``overwrite``.
    """
    _refuse_input_as_output(benchmark, Path(out), overwrite)
    order = np.arange(benchmark.num_pairs)
    preserved = True
    if benchmark.folds is not None:
        order = np.argsort(benchmark.folds, kind="stable")
        sorted_folds = benchmark.folds[order]
        _, dense = np.unique(sorted_folds, return_inverse=True)
        preserved = benchmark.num_pairs >= 10 and np.array_equal(dense, kfold_ids(benchmark.num_pairs, 10))
    encoded: dict[int, bytes] = {}  # each distinct image read and checked once, shared by its pairs
    images: list[bytes] = []
    for pair in order:
        for index in map(int, benchmark.pairs[pair]):
            if index not in encoded:
                encoded[index] = benchmark.image_bytes(index)
                decode_image(encoded[index], benchmark.image_name(index))  # refuse to pack what no tool can read
            images.append(encoded[index])
        if progress is not None:
            progress(1)
    write_bin(out, images, benchmark.issame[order], overwrite=overwrite)
    return PackReport(Path(out), benchmark.num_pairs, int(np.count_nonzero(benchmark.issame)), bool(preserved))


def _refuse_input_as_output(benchmark: Benchmark, out: Path, overwrite: bool) -> None:
    """The benchmark's own file, one of its images, or a pair list under its folder (a .txt or .csv: never
    what a .bin should be written to) are read-only to us; an existing ``out`` is replaced only with
    ``overwrite`` (the shared check, :func:`facestra.io.refuse_output_over_inputs`)."""
    source, target = Path(benchmark.source).resolve(), out.resolve()
    inside = source.is_dir() and target.is_relative_to(source) and target.suffix.lower() in (".txt", ".csv")
    inputs = [source, *benchmark.images]
    if inside or input_at(out, inputs) is not None:  # pack's own words for the shared check's first case
        raise UserError(f"{out}: is a file of the benchmark it packs; refusing to write the .bin over it (choose another `out`)")
    refuse_output_over_inputs(out, inputs, overwrite=overwrite)
