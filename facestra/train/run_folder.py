"""The training run's folder: which files make a run, and when a folder may be started, resumed or cleared.

Everything else reads these names from here: the configuration (``config.json``, which a resumed run
continues from), the checkpoints (``last.pt``, ``best.pt``, ``model.pt``), the metrics and the logs.
"""

from __future__ import annotations

from pathlib import Path

from facestra.errors import UserError

LAST = "last.pt"
BEST = "best.pt"
MODEL = "model.pt"
CONFIG = "config.json"
IDENTITIES = "identities.json"
METRICS = "metrics.jsonl"
SKIPPED = "skipped.txt"
TENSORBOARD = "tensorboard"
RUN_FILES = (LAST, BEST, MODEL, CONFIG, IDENTITIES, METRICS, SKIPPED)


#: What makes a folder worth keeping: trained weights. A start that failed before its first save leaves only
#: its settings and log, and may be started again without --overwrite.
SAVED_FILES = (LAST, BEST, MODEL)


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that saved weights."""
    return run_dir.is_dir() and any((run_dir / name).exists() for name in SAVED_FILES)


def failed_start(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a run writes before its first save (it stopped before one)."""
    return not holds_run(run_dir) and any((run_dir / name).exists() for name in RUN_FILES)


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start over an earlier run (unless asked to), or to resume where there is nothing."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder")
    if resume:
        if not (run_dir / LAST).is_file():
            advice = "; its run stopped before saving anything: start it again without --resume" if failed_start(run_dir) else ""
            raise UserError(f"{run_dir}: no {LAST} to resume from{advice}")
    elif holds_run(run_dir) and not overwrite:
        raise UserError(f"{run_dir}: already holds a training run; use `resume` {run_dir} to continue it or `overwrite` to replace it")


def clear_run(run_dir: Path) -> None:
    """Remove an earlier run's files (only the files a run writes; anything else in the folder stays)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    from facestra.train import shard_files  # torch: only when a run folder is cleared

    shard_files.remove_all(run_dir)
    board = run_dir / TENSORBOARD
    if board.is_dir():
        for event_file in board.glob("events.out.tfevents.*"):
            event_file.unlink()
