"""Timing shared by the bench/ scripts: the best of several rounds, the figure least disturbed by a busy
machine, so that two methods timed side by side compare fairly."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(function: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``function``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
