"""The sharded classifier's part of a checkpoint: one file per process, and re-sharding on resume.

Each process writes its own rows (weights, biases and their optimizer state: SGD's momentum or AdamW's
two moments and step count) to ``head_shards/<token>-<rank>-of-<world>.pt``,
so no process ever holds the whole classifier; ``last.pt`` names the token of the generation it belongs
to. A new generation is written beside the old one and the old one is deleted only once ``last.pt``
names the new one, so an interrupted save leaves a consistent checkpoint. On resume a process reads the
rows of its own class range from whichever saved shards hold them: the same file at the same world size
(bit-exact), parts of one or two files at another (re-sharding). Runs on several machines need the run
folder on a file system they share, as every process writes and reads here.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import torch

from facestra.errors import UserError
from facestra.io import atomic_write
from facestra.train.partial_fc import ShardedClassifierHead, shard_bounds

SHARDS = "head_shards"
SHARD_FORMAT = "facestra-head-shard/1"


def new_token(global_step: int) -> str:
    """A generation name unique among this run's saves (a step may be saved twice)."""
    return f"{global_step:09d}-{secrets.token_hex(4)}"


def shard_path(run_dir: Path, token: str, rank: int, world_size: int) -> Path:
    return run_dir / SHARDS / f"{token}-{rank}-of-{world_size}.pt"


def write_shard(run_dir: Path, token: str, head: ShardedClassifierHead) -> None:
    """This process's rows, atomically."""
    process = head.process
    with atomic_write(shard_path(run_dir, token, process.rank, process.world_size)) as tmp:
        torch.save({"format": SHARD_FORMAT, "token": token, "world_size": process.world_size, **head.shard_state()}, tmp)


def remove_other_generations(run_dir: Path, token: str) -> None:
    """Delete the shard files ``last.pt`` no longer names (missing ones are fine: another process was first)."""
    folder = run_dir / SHARDS
    if folder.is_dir():
        for path in folder.glob("*.pt"):
            if not path.name.startswith((token + "-", ".")):  # hidden: a file being written
                path.unlink(missing_ok=True)


def remove_all(run_dir: Path) -> None:
    """Every shard file of the run (``--overwrite``)."""
    remove_other_generations(run_dir, token="\0")


def describe(head: ShardedClassifierHead, token: str) -> dict[str, Any]:
    """What ``last.pt`` records of the shards."""
    return {"token": token, "world_size": head.process.world_size, "num_classes": head.num_classes}


def load_shards(head: ShardedClassifierHead, run_dir: Path, saved: dict[str, Any]) -> None:
    """Fill ``head`` with its rows of the classifier saved as ``saved`` (:func:`describe`), from every saved
    shard that overlaps its class range; refuse, in one line, when one of those files is missing or foreign."""
    token, old_world = saved["token"], int(saved["world_size"])
    if int(saved["num_classes"]) != head.num_classes:
        raise UserError(f"{run_dir}: its classifier has {saved['num_classes']} classes, the data {head.num_classes}")
    draws = steps = None
    for old_rank in range(old_world):
        start, stop = shard_bounds(head.num_classes, old_world, old_rank)
        if stop <= head.start or start >= head.stop:
            continue
        path = shard_path(run_dir, token, old_rank, old_world)
        if not path.is_file():
            raise UserError(
                f"{path}: missing; the classifier of {run_dir} was saved in {old_world} shards and this process needs "
                f"this one to resume (on several machines the run folder must be shared)"
            )
        try:
            shard = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # noqa: BLE001 - anything unreadable is a bad checkpoint for the user
            raise UserError(f"{path}: not a readable classifier shard ({type(error).__name__})") from None
        if not isinstance(shard, dict) or shard.get("format") != SHARD_FORMAT or (shard["start"], shard["stop"]) != (start, stop):
            raise UserError(f"{path}: not shard {old_rank} of {old_world} of this run's classifier")
        for name in head.row_names():
            if name not in shard:
                raise UserError(f"{path}: holds no {name}; was the run trained with another `loss` or `optimizer`?")
            head.load_rows(name, start, shard[name])
        draws, steps = int(shard["draws"]), int(shard.get("optimizer_steps", 0))
    head.draws = draws if draws is not None else 0
    head.optimizer_steps = steps if steps is not None else 0
