"""``facestra verify`` as library calls: find the benchmarks, embed them with a model, evaluate.

The flow is the one of the design: protocol reader -> images -> embedding (flip) -> ``evaluate()``; the
table, JSON and figures of the outcomes are :mod:`facestra.verify.report` and :mod:`facestra.verify.figures`.
Nothing here prints; the command prints what these functions return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from facestra.embed.inference import InferenceOptions, Progress, embed_benchmark
from facestra.errors import UserError
from facestra.io import atomic_write
from facestra.protocols import Benchmark, canonical_name, find_benchmarks, load_benchmark, standard_names
from facestra.verify.checks import check_benchmark
from facestra.verify.pairs import VerificationResult, evaluate_distances, pair_distances


@dataclass(frozen=True, eq=False)
class BenchmarkOutcome:
    """One benchmark's figures, with where its pairs came from, what :func:`check_benchmark` warned of and
    each pair's distance (what a report ranks and draws)."""

    benchmark: Benchmark
    result: VerificationResult
    embeddings_file: Path | None = None
    warnings: tuple[str, ...] = ()
    distances: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BenchmarkFailure:
    """A benchmark that gave no figures: its name, the one-line error and the exit code it carries."""

    name: str
    error: str
    exit_code: int = 2

    @classmethod
    def from_error(cls, name: str, error: UserError) -> BenchmarkFailure:
        """The failure a refused benchmark becomes: its line and exit code, as the program would report them."""
        return cls(name, str(error), error.exit_code)


def guess_name(data: Path) -> str:
    """``cfp_fp.bin`` -> ``cfp-fp``, ``data/lfw/`` -> ``lfw``: the benchmark a path most likely holds."""
    stem = data.stem if data.is_file() else data.name
    if data.is_file() and data.suffix.lower() in (".csv", ".txt"):
        stem = data.parent.name
    return canonical_name(stem)


def select_benchmarks(
    names: str | None, data: Path | None = None, data_root: Path | None = None
) -> tuple[list[Benchmark], list[str]]:
    """The benchmarks to run and the standard names not found under ``data_root``.

    ``names`` is one name, a comma-separated list or ``all``; with ``data`` it is one benchmark read from
    that path (its name guessed from the path when not given), with ``data_root`` each is looked up there.
    The first benchmark that cannot be read is a :class:`UserError`; :func:`select_each` goes on instead.
    """
    benchmarks, missing, failures = select_each(names, data, data_root)
    if failures:
        raise UserError(failures[0].error, failures[0].exit_code)
    return benchmarks, missing


def select_each(
    names: str | None, data: Path | None = None, data_root: Path | None = None
) -> tuple[list[Benchmark], list[str], list[BenchmarkFailure]]:
    """:func:`select_benchmarks` that reads every benchmark it finds, keeping those that fail to read as
    :class:`BenchmarkFailure` so that the others still run."""
    if (data is None) == (data_root is None):
        raise UserError("give either `data` PATH (one benchmark) or `data_root` DIR (several)")
    if data is not None:
        name = guess_name(data) if names is None else names
        if name == "all" or "," in name:
            raise UserError("`data` reads one benchmark; use `data_root` DIR for several")
        found, missing = {name: data}, []
    else:
        wanted = standard_names() if names in (None, "all") else [n for n in names.split(",") if n.strip()]
        found, missing = find_benchmarks(data_root, wanted)
        if not found:
            raise UserError(
                f"{data_root}: none of {', '.join(wanted)} found "
                "(expected lfw.bin, cfp_fp.bin, cplfw.bin, calfw.bin, agedb_30.bin or folders in their original layout)"
            )
    benchmarks: list[Benchmark] = []
    failures: list[BenchmarkFailure] = []
    for name, path in found.items():
        try:
            benchmarks.append(load_benchmark(name, path))
        except UserError as error:
            failures.append(BenchmarkFailure.from_error(canonical_name(name), error))
    return benchmarks, missing, failures


def check_each(benchmarks: Sequence[Benchmark]) -> tuple[list[Benchmark], list[BenchmarkFailure]]:
    """The benchmarks that :func:`facestra.verify.checks.check_benchmark` accepts, and those it refuses as
    failures: cheap, so a command runs it before loading a model or embedding anything."""
    accepted: list[Benchmark] = []
    failures: list[BenchmarkFailure] = []
    for benchmark in benchmarks:
        try:
            check_benchmark(benchmark)
        except UserError as error:
            failures.append(BenchmarkFailure.from_error(benchmark.name, error))
        else:
            accepted.append(benchmark)
    return accepted, failures


def verify_model(
    model: nn.Module,
    benchmarks: Sequence[Benchmark],
    options: InferenceOptions = InferenceOptions(),
    *,
    save_embeddings: Path | None = None,
    progress: Progress | None = None,
) -> list[BenchmarkOutcome]:
    """Embed every benchmark with ``model`` and evaluate it with the exact protocol (its own folds if any).

    Each benchmark is checked first (:func:`facestra.verify.checks.check_benchmark`): one that cannot give a
    meaningful figure is a :class:`UserError` before its images are embedded. With ``save_embeddings`` a
    folder, each benchmark's ``emb1``, ``emb2``, ``issame`` and ``folds`` are kept in ``<folder>/<name>.npz``.
    The first failure stops here; :func:`verify_each` goes on with the other benchmarks.
    """
    return [verify_one(model, benchmark, options, save_embeddings=save_embeddings, progress=progress) for benchmark in benchmarks]


def verify_each(
    model: nn.Module,
    benchmarks: Sequence[Benchmark],
    options: InferenceOptions = InferenceOptions(),
    *,
    save_embeddings: Path | None = None,
    progress: Progress | None = None,
) -> tuple[list[BenchmarkOutcome], list[BenchmarkFailure]]:
    """:func:`verify_model` that keeps going: a benchmark that fails (bad pairs, an unreadable image)
    becomes a :class:`BenchmarkFailure` and the others still give their figures."""
    outcomes: list[BenchmarkOutcome] = []
    failures: list[BenchmarkFailure] = []
    for benchmark in benchmarks:
        try:
            outcomes.append(verify_one(model, benchmark, options, save_embeddings=save_embeddings, progress=progress))
        except UserError as error:
            failures.append(BenchmarkFailure.from_error(benchmark.name, error))
    return outcomes, failures


def verify_one(
    model: nn.Module,
    benchmark: Benchmark,
    options: InferenceOptions = InferenceOptions(),
    *,
    save_embeddings: Path | None = None,
    progress: Progress | None = None,
) -> BenchmarkOutcome:
    """Check, embed and evaluate one benchmark (see :func:`verify_model`)."""
    warnings = check_benchmark(benchmark)
    emb1, emb2 = embed_benchmark(model, benchmark, options, progress=progress)
    distances = pair_distances(emb1, emb2)
    result = evaluate_distances(distances, benchmark.issame, benchmark.fold_spec())
    kept = None
    if save_embeddings is not None:
        kept = Path(save_embeddings) / f"{benchmark.name}.npz"
        with atomic_write(kept) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, emb1=emb1, emb2=emb2, issame=benchmark.issame, folds=result.fold_ids)
    return BenchmarkOutcome(benchmark, result, kept, tuple(warnings), distances)
