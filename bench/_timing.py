"""Timing shared by the bench/ scripts: the best of several rounds, the figure least disturbed by a busy
machine, so that two methods timed side by side compare fairly."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable


def limit_blas_threads(threads: int) -> None:
    """Cap the BLAS and OpenMP threads; call it before numpy is imported, which reads these once."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)


def parse_with_blas_threads(parser: argparse.ArgumentParser, *, threads: int = 2) -> argparse.Namespace:
    """Add ``--threads`` and ``--seed``, parse, and cap the BLAS threads: call it before numpy is imported."""
    parser.add_argument("--threads", type=int, default=threads, help="BLAS and OpenMP threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    limit_blas_threads(args.threads)
    return args


def best_time(function: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``function``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
