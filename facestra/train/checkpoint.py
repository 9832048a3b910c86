"""The resumable ``last.pt`` checkpoint of a training run, and the run's ``config.json`` and ``identities.json``.

``last.pt`` holds everything that decides the next step (weights, head, optimiser, scheduler, AMP scaler,
every random generator of every process, the position in the epoch, and the ``--init`` start with its
input convention), so that a resumed CPU run
repeats the uninterrupted run's losses bit for bit. It holds only tensors and plain values, so it loads
with ``torch.load(weights_only=True)``; it is written atomically, so an interrupted save never leaves a
broken checkpoint behind. Saving is collective (every process sends its generators and skipped images
to rank 0, which alone writes), so every process calls :meth:`Checkpointer.save` at the same step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facestra import models
from facestra.data.datasets import FaceDataset, data_source
from facestra.errors import UserError
from facestra.io import atomic_write, write_path_lines, write_text_atomic
from facestra.train import distributed, shard_files
from facestra.train.config import TrainConfig
from facestra.train.initial import Start
from facestra.train.network import TrainingNetwork
from facestra.train.optim import Optimisation
from facestra.train.partial_fc import ShardedClassifierHead
from facestra.train.run_folder import CONFIG, IDENTITIES, LAST, MODEL, SKIPPED, clear_run, failed_start

log = logging.getLogger(__name__)

TRAIN_CHECKPOINT_FORMAT = "facestra-train/1"


@dataclass(frozen=True)
class Position:
    """Where training stands: ``step_in_epoch`` optimizer steps of epoch ``epoch`` are done."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


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
    np.random.set_state(
        ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached"])
    )
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


def prepare_run_dir(run_dir: Path, config: TrainConfig, dataset: FaceDataset) -> None:
    """Clear an earlier run with ``overwrite``, then write ``config.json`` (ready to resume) and ``identities.json``."""
    if not config.resume and (config.overwrite or failed_start(run_dir)):
        clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_json = config.to_json()
    config_json["data"] = data_source(config.data)
    if config.init is not None:
        config_json["init"] = str(Path(config.init).resolve())
    config_json["out"] = str(run_dir.resolve())
    config_json["resume"] = config_json["overwrite"] = False
    write_text_atomic(run_dir / CONFIG, json.dumps(config_json, indent=2) + "\n")
    identities = {"source": config_json["data"], "num_images": len(dataset), "identities": dataset.identities}
    write_text_atomic(run_dir / IDENTITIES, json.dumps(identities, indent=1) + "\n")


@dataclass(frozen=True)
class Restored:
    """What a resumed run continues from, besides the weights and optimiser state loaded in place."""

    position: Position
    best_accuracy: float | None
    skipped: frozenset[int]


@dataclass(frozen=True)
class Checkpointer:
    """``last.pt`` (and the backbone alone as ``model.pt``) of one run: building it, and restoring from it."""

    run_dir: Path
    config: TrainConfig
    dataset: FaceDataset
    network: TrainingNetwork
    optimisation: Optimisation
    process: distributed.Process
    start: Start | None = None  # the --init weights the backbone started from

    @property
    def path(self) -> Path:
        return self.run_dir / LAST

    def restore(self, state: dict[str, Any]) -> Restored:
        """Load the weights, optimiser and this process's random generators saved in ``state``."""
        self.network.backbone.load_state_dict(state["model"])
        head, shards = self.network.head, state.get("head_shards")
        if isinstance(head, ShardedClassifierHead) != (shards is not None):
            saved_as = "a sharded classifier (--sample-rate)" if shards is not None else "a replicated classifier (no --sample-rate)"
            raise UserError(f"{self.path}: the run was trained with {saved_as}; resume it the same way")
        if shards is not None:
            shard_files.load_shards(head, self.run_dir, shards)
        else:
            head.load_state_dict(state["head"])
        self.optimisation.load_state_dict(state)
        restored = Restored(Position(**state["position"]), state.get("best_accuracy"), frozenset(int(i) for i in state.get("skipped", [])))
        rng_states = state["rng"]
        if len(rng_states) != self.process.world_size:
            log.warning("resuming with %d processes a run saved with %d: random streams will differ", self.process.world_size, len(rng_states))
        restore_rng(rng_states[self.process.rank % len(rng_states)])
        return restored

    def save(self, position: Position, best_accuracy: float | None, skipped: set[int], *, model_too: bool) -> bool:
        """Write ``last.pt`` (and ``model.pt`` with ``model_too``, and ``skipped.txt``); collective.

        Returns whether this process wrote them (rank 0 only).
        """
        rng_states = distributed.gather_objects(capture_rng(), self.process)
        every_skipped = sorted(set().union(*distributed.gather_objects(sorted(skipped), self.process)))
        head = self.network.head
        shards = None
        if isinstance(head, ShardedClassifierHead):
            token = distributed.gather_objects(shard_files.new_token(position.global_step), self.process)[0]  # rank 0's
            shard_files.write_shard(self.run_dir, token, head)
            distributed.barrier(self.process)  # every shard is on disk before last.pt names them
            shards = shard_files.describe(head, token)
        if self.process.is_main:
            self._write(position, best_accuracy, every_skipped, rng_states, shards, model_too=model_too)
        if shards is not None:
            distributed.barrier(self.process)  # last.pt names the new shards: the old ones may go
            if self.process.local_rank == 0:
                shard_files.remove_other_generations(self.run_dir, shards["token"])
        return self.process.is_main

    def _write(
        self,
        position: Position,
        best_accuracy: float | None,
        every_skipped: list[int],
        rng_states: list,
        shards: dict[str, Any] | None,
        *,
        model_too: bool,
    ) -> None:
        backbone, head = self.network.backbone, self.network.head
        payload = {
            "config": self.config.to_json(),
            "identities": self.dataset.identities,
            "num_images": len(self.dataset),
            "model": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
            "head": {} if shards is not None else {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "head_shards": shards,
            **self.optimisation.state_dict(),
            "rng": rng_states,
            "position": dataclasses.asdict(position),
            "best_accuracy": best_accuracy,
            "skipped": every_skipped,
            "world_size": self.process.world_size,
            "init": None if self.start is None else self.start.record(),
        }
        save_training_state(self.path, payload)
        if model_too:
            models.save(backbone, self.run_dir / MODEL)
        if every_skipped:
            # a path listing: a name with a line break or bytes that are not UTF-8 stays one quoted line
            write_path_lines(self.run_dir / SKIPPED, (self.dataset.describe(i) for i in every_skipped))
