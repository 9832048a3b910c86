"""Why a run stops before its last step, and why it stops only between steps.

A Ctrl-C, a SIGTERM (a batch scheduler's notice) or the end of the time budget must leave a run that
resumes exactly, so none of them interrupts a step: they are noted here and read once per step, after
the backward pass; every process then agrees on the stop through the step's all-reduce, and the loop
saves ``last.pt`` before it returns.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

STOP_COMPLETED, STOP_INTERRUPTED, STOP_TIME, STOP_STEPS = "completed", "interrupted", "time budget", "max steps"


class StopRequests:
    """Ctrl-C and SIGTERM ask for a clean stop at the end of the current step; a second Ctrl-C aborts.

    Under torchrun a Ctrl-C reaches each process twice (from the terminal and forwarded by torchrun), so
    only a second Ctrl-C that comes more than two seconds after the first one aborts.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.signal_number is not None:
            if number == signal.SIGINT and time.monotonic() - self._first_at > 2.0:
                raise KeyboardInterrupt
            return
        self.signal_number = number
        self._first_at = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class TimeBudget:
    """``--max-minutes`` counted from when the run starts its loop (``None``: no budget)."""

    def __init__(self, max_minutes: float | None, started: float) -> None:
        self.deadline = started + 60 * max_minutes if max_minutes else None

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def pending_stop(requests: StopRequests, budget: TimeBudget) -> str | None:
    """This process's reason to stop after the current step, if any (a signal before the budget)."""
    if requests.signal_number is not None:
        return STOP_INTERRUPTED
    if budget.spent():
        return STOP_TIME
    return None


def ignore_sigint(_worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C to the main process, which saves and stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
