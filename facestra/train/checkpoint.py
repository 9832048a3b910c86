"""The training run's folder: which files make a run, and the resumable ``last.pt`` checkpoint.

``last.pt`` holds everything that decides the next step (weights, head, optimiser, scheduler, AMP scaler,
every random generator of every process, and the position in the epoch), so that a resumed CPU run
repeats the uninterrupted run's losses bit for bit. It holds only tensors and plain values, so it loads
with ``torch.load(weights_only=True)``; it is written atomically, so an interrupted save never leaves a
broken checkpoint behind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facestra.errors import UserError
from facestra.io import atomic_write

TRAIN_CHECKPOINT_FORMAT = "facestra-train/1"
LAST = "last.pt"
BEST = "best.pt"
MODEL = "model.pt"
CONFIG = "config.json"
IDENTITIES = "identities.json"
METRICS = "metrics.jsonl"
SKIPPED = "skipped.txt"
TENSORBOARD = "tensorboard"
RUN_FILES = (LAST, BEST, MODEL, CONFIG, IDENTITIES, METRICS, SKIPPED)


@dataclass(frozen=True)
class Position:
    """Where training stands: ``step_in_epoch`` optimizer steps of epoch ``epoch`` are done."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run."""
    return run_dir.is_dir() and any((run_dir / name).exists() for name in RUN_FILES)


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start over an earlier run (unless asked to), or to resume where there is nothing."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder")
    if resume:
        if not (run_dir / LAST).is_file():
            raise UserError(f"{run_dir}: no {LAST} to resume from")
    elif holds_run(run_dir) and not overwrite:
        raise UserError(f"{run_dir}: already holds a training run; use --resume {run_dir} to continue it or --overwrite to replace it")


def clear_run(run_dir: Path) -> None:
    """Remove an earlier run's files (only the files a run writes; anything else in the folder stays)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    board = run_dir / TENSORBOARD
    if board.is_dir():
        for event_file in board.glob("events.out.tfevents.*"):
            event_file.unlink()


def capture_rng() -> dict[str, Any]:
    """Every random generator this process uses, as tensors and plain values."""
    version, mt_state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` captured."""
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"]))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_training_state(path: Path, payload: dict[str, Any]) -> None:
    """Write the resumable checkpoint atomically."""
    with atomic_write(path) as tmp:
        torch.save({"format": TRAIN_CHECKPOINT_FORMAT, **payload}, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    """Read ``last.pt``; an unreadable or foreign file is a :class:`UserError`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - anything unreadable is a bad checkpoint for the user
        raise UserError(f"{path}: not a readable training checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != TRAIN_CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a facestra training checkpoint")
    return payload
