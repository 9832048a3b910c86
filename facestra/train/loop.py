"""``facestra train``: one function of a :class:`~facestra.train.config.TrainConfig`, from one CPU process to many GPUs.

The data flow is the paper's (§4.2, appendices B.2 and D): dataset -> loader (random horizontal flip) ->
backbone -> classification head (softmax, CosFace or ArcFace) + ``diversity_weight`` × the diversity loss
(each image's L_d summed over the StRA blocks, from ``forward_with_diversity``, averaged over the batch)
-> SGD (momentum 0.9, weight decay 5e-4, lr 0.1 × 0.1 at the step epochs) -> checkpoint. arcface_torch's
recipes replace pieces of it (the combined margin, AdamW, the polynomial schedule, clipping), and
``init`` starts the backbone from pretrained weights (:mod:`facestra.train.initial`) instead of the seed.

Under ``torchrun`` every process runs :func:`train`; the global batch is split evenly over them,
gradients are averaged by DistributedDataParallel, and only rank 0 writes files. Every random choice is
either seeded per epoch (which images, which flips) or saved in ``last.pt`` (every generator of every
process), so that an interrupted run resumed with ``resume=True`` computes exactly the losses it would
have computed without the interruption. That is why this module holds only the order of things (checks
before any write, seeding before building, restoring before wrapping, one all-reduce per step) and
leaves each thing to its own module.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from facestra.data.datasets import EpochBatchSampler, FaceDataset, open_dataset
from facestra.errors import UserError
from facestra.io import remove_dead_temporaries
from facestra.locks import output_lock
from facestra.train import distributed
from facestra.train.checkpoint import Checkpointer, Position, load_training_state, prepare_run_dir
from facestra.train.config import TrainConfig, check_config
from facestra.train.heads import ClassifierHead
from facestra.train.initial import InitialNetwork, Start, initial_network
from facestra.train.metrics import MetricsLog, Progress, RunLog
from facestra.train.network import build_backbone, place, replicated, seed_everything, uses_channels_last, weights_digest, wrap
from facestra.train.optim import Optimisation
from facestra.train.partial_fc import ShardedClassifierHead
from facestra.train.run_folder import LAST, MODEL, RUN_FILES, check_run_dir
from facestra.train.step import accumulate
from facestra.train.stopping import STOP_COMPLETED, STOP_STEPS, StopRequests, TimeBudget, ignore_sigint, pending_stop
from facestra.train.validation import BestValidation


@dataclass(frozen=True)
class TrainResult:
    """How the run ended and where its files are."""

    run_dir: Path
    model_path: Path
    checkpoint_path: Path
    best_path: Path | None
    stopped: str
    global_step: int
    total_steps: int
    epochs_completed: float
    final_loss: float | None
    final_accuracy: float | None
    best_accuracy: float | None
    num_images: int
    num_identities: int
    skipped_images: int
    elapsed_s: float
    val_warnings: tuple[str, ...] = ()  # what checking the --val benchmarks warned of (rank 0)


def train(config: TrainConfig, *, progress: Progress | None = None, warn: Callable[[str], None] | None = None) -> TrainResult:
    """Train a backbone and head as ``config`` says; return where the results are and how it ended.

    Inputs are checked before anything is written: a bad dataset, option or run folder raises a
    :class:`UserError` and leaves an earlier run's files as they were.
    """
    check_config(config)
    process = distributed.describe(config.device)
    _check_devices(config, process)
    run_dir = Path(config.out)
    check_run_dir(run_dir, resume=config.resume, overwrite=config.overwrite)
    with output_lock(run_dir, what=f"the run folder {run_dir}") if process.is_main else contextlib.nullcontext():
        return _train_locked(config, process, run_dir, progress, warn)


def _train_locked(config: TrainConfig, process: distributed.Process, run_dir: Path, progress: Progress | None,
                  warn: Callable[[str], None] | None) -> TrainResult:
    """:func:`train` once the run folder's lock is held (by the main process): no other run writes it."""
    check_run_dir(run_dir, resume=config.resume, overwrite=config.overwrite)  # again: another run may have saved
    if process.is_main:  # what a killed run was writing when it died
        remove_dead_temporaries(*(run_dir / name for name in RUN_FILES))
    state = load_training_state(run_dir / LAST) if config.resume else None
    dataset = open_dataset(config.data, config.input_size)
    _check_data(config, process, dataset, state, run_dir)
    initial = _initial_network(config) if state is None else None
    start = initial.start if initial is not None else Start.from_record(state["init"]) if state and state.get("init") else None
    seed_everything(config.seed)
    backbone = build_backbone(config, process)
    if initial is not None:
        initial.load_into(backbone)
        del initial  # its copy of the weights
    if start is not None:
        start.apply(backbone)
        dataset.convention = start.convention  # the training images as the weights were trained on them
    head = _build_head(config, process, dataset.num_classes)
    validation = BestValidation(config.val, run_dir, process, batch_size=config.val_batch_size)
    for warning in validation.warnings:  # now, before training, not only in the result
        if warn is not None:
            warn(warning)
    distributed.start(process)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    loop = None
    try:
        with StopRequests() as stop_requests:
            loop = _Loop(config, process, dataset, backbone, head, validation, state, stop_requests, progress, start)
            result = loop.run()
        distributed.barrier(process)  # no process tears the group down while another still talks to it
        return result
    finally:
        torch.set_num_threads(threads_before)
        if process.distributed:
            # DistributedDataParallel's reducer holds the process group: free it now, or the group's threads
            # are destroyed at interpreter exit, which aborts the process ("terminate called without an
            # active exception") once in a while on a busy machine.
            loop = None
            gc.collect()
        distributed.teardown(process)


def _initial_network(config: TrainConfig) -> InitialNetwork | None:
    """The ``--init`` network, checked against the run's options (before anything is written)."""
    if config.init is None:
        return None
    initial = initial_network(Path(config.init), arch=config.arch)
    initial.check({name: getattr(config, name) for name in initial.options})
    return initial


def _build_head(config: TrainConfig, process: distributed.Process, num_classes: int) -> ClassifierHead | ShardedClassifierHead:
    """The replicated head, or with ``sample_rate`` this process's shard of the Partial FC head."""
    margins = None if config.margins is None else tuple(config.margins)
    if config.sample_rate is None:
        return ClassifierHead(config.embedding_size, num_classes, loss=config.loss, scale=config.scale, margin=config.margin, margins=margins)
    if num_classes < process.world_size:
        raise UserError(f"{config.data}: {num_classes} identities cannot be sharded over {process.world_size} processes (`sample_rate`)")
    return ShardedClassifierHead(
        config.embedding_size, num_classes, loss=config.loss, scale=config.scale, margin=config.margin, margins=margins,
        sample_rate=config.sample_rate, process=process, seed=config.seed, optimizer=config.optimizer,
    )


def _check_devices(config: TrainConfig, process: distributed.Process) -> None:
    if process.device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("`device` cuda: no CUDA GPU is available")
    if config.amp == "fp16" and process.device.type != "cuda":
        raise UserError("`amp` fp16 needs a GPU; use `amp` bf16 or none on the CPU")


def _check_data(config: TrainConfig, process: distributed.Process, dataset: FaceDataset, state: dict[str, Any] | None, run_dir: Path) -> None:
    if state is not None and list(state["identities"]) != dataset.identities:
        raise UserError(f"{config.data}: its identities differ from those of the run in {run_dir}; resume with the same data")
    if state is not None and state.get("num_images", len(dataset)) != len(dataset):
        raise UserError(
            f"{config.data}: {len(dataset)} images, but the run in {run_dir} was trained on {state['num_images']}; resume with the same data"
        )
    per_step = process.world_size * config.grad_accum
    if config.batch_size % per_step:
        raise UserError(f"`batch_size` {config.batch_size} must be divisible by processes × `grad_accum` = {per_step}")
    if len(dataset) < config.batch_size:
        raise UserError(f"{config.data}: {len(dataset)} images, fewer than one batch of {config.batch_size}; lower `batch_size`")


class _Loop:
    """The epochs and optimizer steps of one :func:`train` call, and where they stand."""

    def __init__(self, config: TrainConfig, process: distributed.Process, dataset: FaceDataset, backbone: torch.nn.Module,
                 head: ClassifierHead | ShardedClassifierHead, validation: BestValidation, state: dict[str, Any] | None, stop_requests: StopRequests,
                 progress: Progress | None, start: Start | None) -> None:
        self.config = config
        self.process = process
        self.dataset = dataset
        self.validation = validation
        self.stop_requests = stop_requests
        self.progress = progress
        self.run_dir = Path(config.out)
        self.device = process.device
        self.steps_per_epoch = len(dataset) // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.channels_last = uses_channels_last(config, self.device)
        self.network = place(backbone, head, config, process)
        self.optimisation = Optimisation(self.network.backbone, self.network.head, config, steps_per_epoch=self.steps_per_epoch, device=self.device)
        self.checkpoints = Checkpointer(self.run_dir, config, dataset, self.network, self.optimisation, process, start)
        self.position = Position()
        self.skipped: set[int] = set()
        self.last_values: dict[str, Any] = {}
        if state is not None:
            restored = self.checkpoints.restore(state)
            self.position, self.skipped = restored.position, set(restored.skipped)
            validation.best_accuracy = restored.best_accuracy
        self.module = wrap(self.network, config, process)  # what the steps call; checkpoints use self.network
        self.budget = TimeBudget(None, 0.0)  # counted from run()
        self.log = RunLog(None, progress, self.total_steps)

    def run(self) -> TrainResult:
        started = time.monotonic()
        self.budget = TimeBudget(self.config.max_minutes, started)
        if self.process.is_main:
            prepare_run_dir(self.run_dir, self.config, self.dataset)
            metrics = MetricsLog(self.run_dir, self.position.global_step if self.config.resume else None)
            self.log = RunLog(metrics, self.progress, self.total_steps)
        distributed.barrier(self.process)
        stopped = STOP_COMPLETED
        try:
            while self.position.epoch < self.config.epochs and stopped == STOP_COMPLETED:
                stopped = self._run_epoch()
            if stopped != STOP_COMPLETED and self.position.step_in_epoch:  # a finished epoch is saved already
                self._save(model_too=True)
        finally:
            self.log.close()
        best = self.validation.best_accuracy
        return TrainResult(
            run_dir=self.run_dir,
            model_path=self.run_dir / MODEL,
            checkpoint_path=self.checkpoints.path,
            best_path=self.validation.best_path if best is not None else None,
            stopped=stopped,
            global_step=self.position.global_step,
            total_steps=self.total_steps,
            epochs_completed=self.position.epoch + self.position.step_in_epoch / self.steps_per_epoch,
            final_loss=self.last_values.get("loss"),
            final_accuracy=self.last_values.get("accuracy"),
            best_accuracy=best,
            num_images=len(self.dataset),
            num_identities=self.dataset.num_classes,
            skipped_images=len(self.skipped),
            elapsed_s=time.monotonic() - started,
            val_warnings=tuple(self.validation.warnings),
        )

    def _loader(self) -> torch.utils.data.DataLoader:
        c = self.config
        sampler = EpochBatchSampler(
            len(self.dataset),
            global_batch=c.batch_size,
            seed=c.seed,
            epoch=self.position.epoch,
            rank=self.process.rank,
            world_size=self.process.world_size,
            micro_batches=c.grad_accum,
            start_step=self.position.step_in_epoch,
            flip=c.flip,
        )
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=c.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_sigint if c.workers else None,
            # The loader draws its worker seeds from this generator, not from the global one: the global
            # random stream (dropout...) then does not depend on where in an epoch a run was resumed.
            generator=torch.Generator().manual_seed(c.seed),
            prefetch_factor=4 if c.workers else None,
        )

    def _run_epoch(self) -> str:
        if self.position.global_step >= self.total_steps:
            return STOP_STEPS
        batches = iter(self._loader())
        tick, images_since = time.monotonic(), 0
        while self.position.step_in_epoch < self.steps_per_epoch:
            if self.position.global_step >= self.total_steps:
                return STOP_STEPS
            micro_batches = [next(batches) for _ in range(self.config.grad_accum)]
            values, stop = self._step(micro_batches)
            images_since += self.config.batch_size
            step = self.position.global_step
            if self.process.is_main and (step % self.config.log_every == 0 or self.config.check_replicas or step == self.total_steps):
                now = time.monotonic()
                values["images_per_s"] = images_since / max(now - tick, 1e-9)
                tick, images_since = now, 0
                self.log.record("step", self.position, values)
            self.last_values = values
            at_epoch_end = self.position.step_in_epoch == self.steps_per_epoch
            validate_now = (self.config.val_every and step % self.config.val_every == 0) or (at_epoch_end and not self.config.val_every)
            finished = self.position
            if at_epoch_end:
                # Saved before validating: a benchmark that fails to load or run cannot cost the epoch.
                self.position = Position(self.position.epoch + 1, 0, step)
                self._save(model_too=True)
            if validate_now:
                self._validate(finished)
                tick, images_since = time.monotonic(), 0  # validating is not training time
                if at_epoch_end and self.validation.enabled:
                    # again, so that last.pt holds the best accuracy and the random state after validating
                    # (a run resumed from it continues exactly as the uninterrupted one) and model.pt the
                    # threshold just measured, which `facestra compare` decides with
                    self._save(model_too=True)
            if at_epoch_end:
                return stop or STOP_COMPLETED
            if stop:
                return stop
            if self.config.save_every and step % self.config.save_every == 0:
                self._save(model_too=False)
                tick, images_since = time.monotonic(), 0
        self.position = Position(self.position.epoch + 1, 0, self.position.global_step)
        return STOP_COMPLETED

    def _step(self, micro_batches: list) -> tuple[dict[str, Any], str | None]:
        """One optimizer step over the micro-batches; returns the global figures and any stop request."""
        c = self.config
        frozen = self.position.epoch < c.freeze_backbone_epochs
        reduced = accumulate(
            self.module, self.optimisation, micro_batches, process=self.process, channels_last=self.channels_last,
            diversity_weight=c.diversity_weight, pending_stop=lambda: pending_stop(self.stop_requests, self.budget),
            frozen_backbone=self.network.backbone if frozen else None,
        )
        if c.strict and reduced.unreadable > 0:
            bad_here = reduced.unreadable_here
            where = self.dataset.describe(bad_here[0]) if bad_here else "an image read by another process"
            raise UserError(f"{where}: unreadable image (`strict`)")
        self.skipped.update(reduced.unreadable_here)
        values = reduced.values(learning_rate=self.optimisation.learning_rate, diversity_weight=c.diversity_weight)
        if not math.isfinite(values["loss"]):  # the same global figure on every process: all stop together
            again = "start again with --overwrite" if (self.run_dir / LAST).exists() else "start again"
            raise UserError(
                f"step {self.position.global_step + 1}: the training loss is {values['loss']}; the run diverged and "
                f"no model was written from its weights; {again} with a lower --lr (now {c.lr:g}) or --warmup-epochs"
            )
        self.optimisation.step(freeze_backbone=frozen)
        self.position = Position(self.position.epoch, self.position.step_in_epoch + 1, self.position.global_step + 1)
        if c.check_replicas:
            digests = distributed.gather_objects(weights_digest(replicated(self.network)), self.process)
            values["replica_digests"] = digests
            values["replicas_identical"] = len(set(digests)) == 1
        return values, reduced.stop

    def _validate(self, position: Position) -> None:
        if not self.validation.enabled:
            return
        values = self.validation.validate(self.network.backbone)
        if values is not None:
            self.log.record("val", position, values)
        distributed.barrier(self.process)  # the other processes wait while rank 0 validates

    def _save(self, *, model_too: bool) -> None:
        """``last.pt`` (and ``model.pt``); collective: every process sends its state."""
        if self.checkpoints.save(self.position, self.validation.best_accuracy, self.skipped, model_too=model_too):
            self.log.saved(self.position, self.checkpoints.path)
