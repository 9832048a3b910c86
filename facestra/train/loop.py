"""``facestra train``: one function of a :class:`TrainConfig`, from one CPU process to many GPUs.

The data flow is the paper's (§4.2, appendices B.2 and D): dataset -> loader (random horizontal flip) ->
backbone -> classification head (softmax, CosFace or ArcFace) + ``diversity_weight`` × the diversity loss
(each image's L_d summed over the StRA blocks, from ``forward_with_diversity``, averaged over the batch)
-> SGD (momentum 0.9, weight decay 5e-4, lr 0.1 × 0.1 at the step epochs) -> checkpoint.

Under ``torchrun`` every process runs :func:`train`; the global batch is split evenly over them,
gradients are averaged by DistributedDataParallel, and only rank 0 writes files. Every random choice is
either seeded per epoch (which images, which flips) or saved in ``last.pt`` (every generator of every
process), so that an interrupted run resumed with ``resume=True`` computes exactly the losses it would
have computed without the interruption.

The library never prints: progress goes to the ``progress`` callback, figures to ``metrics.jsonl``
(and TensorBoard when it is installed), and :func:`train` returns a :class:`TrainResult`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facestra.train import distributed
from facestra.train.checkpoint import (
    BEST,
    CONFIG,
    IDENTITIES,
    LAST,
    METRICS,
    MODEL,
    SKIPPED,
    TENSORBOARD,
    Position,
    capture_rng,
    check_run_dir,
    clear_run,
    load_training_state,
    restore_rng,
    save_training_state,
)
from facestra.data.datasets import EpochBatchSampler, FaceDataset, open_dataset
from facestra.errors import UserError
from facestra.io import write_text_atomic
from facestra.train.heads import LOSSES, ClassifierHead

log = logging.getLogger(__name__)

AMP_MODES = ("none", "bf16", "fp16")
STOP_COMPLETED, STOP_INTERRUPTED, STOP_TIME, STOP_STEPS = "completed", "interrupted", "time budget", "max steps"
# Options that define the network or the data; a resumed run must keep them.
FIXED_ON_RESUME = (
    "data", "arch", "width", "embedding_size", "input_size", "dropout", "stra_options", "loss", "scale", "margin",
    "batch_size", "grad_accum", "seed", "flip", "lr", "momentum", "weight_decay",
)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` in the run folder."""

    data: str
    out: str
    arch: str = "resnet50_stra"
    width: float = 1.0
    embedding_size: int = 512
    input_size: tuple[int, int] = (112, 112)
    dropout: float = 0.0
    stra_options: dict[str, Any] = field(default_factory=dict)
    loss: str = "softmax"
    scale: float | None = None
    margin: float | None = None
    diversity_weight: float = 0.1
    epochs: int = 20
    lr: float = 0.1
    lr_steps: tuple[int, ...] = (8, 12)
    lr_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    batch_size: int = 512
    grad_accum: int = 1
    workers: int = 4
    threads: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    channels_last: bool | None = None
    compile: bool = False
    sync_bn: bool = False
    flip: bool = True
    strict: bool = False
    val: tuple[str, ...] = ()
    val_every: int = 0
    val_batch_size: int = 128
    save_every: int = 0
    log_every: int = 10
    max_steps: int | None = None
    max_minutes: float | None = None
    overwrite: bool = False
    resume: bool = False
    check_replicas: bool = False

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        for name in ("input_size", "lr_steps", "val"):
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        return cls(**values)


@dataclass(frozen=True)
class TrainEvent:
    """What the ``progress`` callback receives: after a logged step (``kind="step"``), a validation
    (``"val"``) or a saved checkpoint (``"save"``)."""

    kind: str
    epoch: int
    global_step: int
    total_steps: int
    values: dict[str, Any]


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


def paper_lr_factor(step: int, *, steps_per_epoch: int, lr_steps: tuple[int, ...], lr_factor: float, warmup_epochs: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step``: × ``lr_factor`` at each step epoch,
    with an optional linear warm-up over the first ``warmup_epochs``."""
    factor = lr_factor ** sum(step >= milestone * steps_per_epoch for milestone in lr_steps)
    warmup_steps = warmup_epochs * steps_per_epoch
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration saved in ``run_dir`` with ``overrides`` applied, ready to resume.

    Options that define the network or the data cannot change; schedule length, time budget, workers,
    validation and logging can (e.g. ``epochs`` to train longer).
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume=True, overwrite=False)
    path = run_dir / CONFIG
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read the run's configuration ({error})") from None
    config = TrainConfig.from_json(saved)
    for key, value in (overrides or {}).items():
        if not hasattr(config, key):
            raise UserError(f"{run_dir}: --{key.replace('_', '-')} cannot change when resuming")
        value = tuple(value) if isinstance(value, list) else value
        if key == "data" and value is not None:
            value = str(Path(value).resolve())
        if key == "out" and value is not None and Path(value).resolve() != run_dir.resolve():
            raise UserError(f"--out {value} differs from --resume {run_dir}; a run continues in its own folder")
        if key in FIXED_ON_RESUME and value != getattr(config, key):
            raise UserError(f"{run_dir}: --{key.replace('_', '-')} cannot change when resuming (the run has {getattr(config, key)!r})")
        setattr(config, key, value)
    config.out = str(run_dir)
    config.resume, config.overwrite = True, False
    return config


def check_config(config: TrainConfig) -> None:
    """Reject impossible settings with one clear line each."""
    if config.loss not in LOSSES:
        raise UserError(f"unknown loss {config.loss!r}; choose one of {', '.join(LOSSES)}")
    if config.amp not in AMP_MODES:
        raise UserError(f"--amp must be one of {', '.join(AMP_MODES)}")
    for name in ("batch_size", "grad_accum", "epochs", "log_every", "val_batch_size"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if config.threads is not None and config.threads < 1:
        raise UserError("--threads must be at least 1")
    for name in ("workers", "save_every", "val_every", "warmup_epochs", "diversity_weight", "weight_decay"):
        if getattr(config, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must not be negative")
    if config.lr <= 0:
        raise UserError("--lr must be positive")
    if config.max_minutes is not None and config.max_minutes <= 0:
        raise UserError("--max-minutes must be positive")
    if config.max_steps is not None and config.max_steps < 1:
        raise UserError("--max-steps must be at least 1")
    if list(config.lr_steps) != sorted(config.lr_steps):
        raise UserError("--lr-steps must be increasing epochs")


def train(config: TrainConfig, *, progress: Callable[[TrainEvent], None] | None = None) -> TrainResult:
    """Train a backbone and head as ``config`` says; return where the results are and how it ended.

    Inputs are checked before anything is written: a bad dataset, option or run folder raises a
    :class:`UserError` and leaves an earlier run's files as they were.
    """
    check_config(config)
    process = distributed.describe(config.device)
    _check_devices(config, process)
    run_dir = Path(config.out)
    check_run_dir(run_dir, resume=config.resume, overwrite=config.overwrite)
    state = load_training_state(run_dir / LAST) if config.resume else None
    dataset = open_dataset(config.data, config.input_size)
    if state is not None and list(state["identities"]) != dataset.identities:
        raise UserError(f"{config.data}: its identities differ from those of the run in {run_dir}; resume with the same data")
    if state is not None and state.get("num_images", len(dataset)) != len(dataset):
        raise UserError(f"{config.data}: {len(dataset)} images, but the run in {run_dir} was trained on {state['num_images']}; resume with the same data")
    per_step = process.world_size * config.grad_accum
    if config.batch_size % per_step:
        raise UserError(f"--batch-size {config.batch_size} must be divisible by processes × --grad-accum = {per_step}")
    if len(dataset) < config.batch_size:
        raise UserError(f"{config.data}: {len(dataset)} images, fewer than one batch of {config.batch_size}; lower --batch-size")
    _seed_everything(config.seed)
    backbone = build_backbone(config)
    head = ClassifierHead(config.embedding_size, dataset.num_classes, loss=config.loss, scale=config.scale, margin=config.margin)
    validator = _open_validator(config, process)
    distributed.start(process)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    session = None
    try:
        with _StopRequests() as stop_requests:
            session = _Session(config, process, dataset, backbone, head, validator, state, stop_requests, progress)
            result = session.run()
        distributed.barrier(process)  # no process tears the group down while another still talks to it
        return result
    finally:
        torch.set_num_threads(threads_before)
        if process.distributed:
            # DistributedDataParallel's reducer holds the process group: free it now, or the group's threads
            # are destroyed at interpreter exit, which aborts the process ("terminate called without an
            # active exception") once in a while on a busy machine.
            session = None
            gc.collect()
        distributed.teardown(process)


def build_backbone(config: TrainConfig) -> nn.Module:
    """The network of ``config`` from :func:`facestra.models.create` (options errors become user errors)."""
    from facestra import models

    kwargs = dict(
        width=config.width,
        embedding_size=config.embedding_size,
        input_size=tuple(config.input_size),
        dropout=config.dropout,
        **config.stra_options,
    )
    try:
        return models.create(config.arch, **kwargs)
    except (ValueError, TypeError) as error:
        raise UserError(f"--arch {config.arch}: {error}") from None


class TrainingNetwork(nn.Module):
    """Backbone and head as one module, so that DistributedDataParallel averages the gradients of both."""

    def __init__(self, backbone: nn.Module, head: ClassifierHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        embeddings, diversity = self.backbone.forward_with_diversity(images)
        logits, plain_logits = self.head(embeddings, labels)
        return logits, plain_logits, diversity


def _check_devices(config: TrainConfig, process: distributed.Process) -> None:
    if process.device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available")
    if config.amp == "fp16" and process.device.type != "cuda":
        raise UserError("--amp fp16 needs a GPU; use --amp bf16 or none on the CPU")


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _open_validator(config: TrainConfig, process: distributed.Process):
    if not config.val:
        return None
    from facestra.train.validation import Validator

    # Every process reads the benchmarks so that a missing file stops all of them before training.
    return Validator(config.val, batch_size=config.val_batch_size, device=process.device) if process.is_main else Validator.check_only(config.val)


def _ignore_sigint(_worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C to the main process, which saves and stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopRequests:
    """Ctrl-C and SIGTERM ask for a clean stop at the end of the current step; a second Ctrl-C aborts.

    Under torchrun a Ctrl-C reaches each process twice (from the terminal and forwarded by torchrun), so
    only a second Ctrl-C that comes more than two seconds after the first one aborts.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame) -> None:
        if self.signal_number is not None:
            if number == signal.SIGINT and time.monotonic() - self._first_at > 2.0:
                raise KeyboardInterrupt
            return
        self.signal_number = number
        self._first_at = time.monotonic()

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class _MetricsLog:
    """``metrics.jsonl`` (one JSON object a line) and TensorBoard scalars when TensorBoard is installed."""

    def __init__(self, run_dir: Path, keep_until_step: int | None) -> None:
        self.path = run_dir / METRICS
        if keep_until_step is not None and self.path.exists():
            # Lines logged after the checkpoint we resume from will be logged again: drop them.
            kept = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= keep_until_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self.file = self.path.open("a", encoding="utf-8")
        self.board = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(run_dir / TENSORBOARD))
        except ImportError:
            pass

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.board is not None:
            prefix = "val" if record.get("kind") == "val" else "train"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.board.add_scalar(f"{prefix}/{key}", value, record.get("step", 0))

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


class _Session:
    """One call of :func:`train`: the objects it builds and the loop over epochs and steps."""

    def __init__(self, config, process, dataset: FaceDataset, backbone, head, validator, state, stop_requests, progress) -> None:
        self.config = config
        self.process = process
        self.dataset = dataset
        self.validator = validator
        self.stop_requests = stop_requests
        self.progress = progress
        self.run_dir = Path(config.out)
        self.device = process.device
        self.steps_per_epoch = len(dataset) // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        # Not on the CPU by default, though it trains 1.3-1.6x faster there (bench/model_speed.py --nchw): this
        # torch build's CPU backward of a 1x1 stride-2 convolution segfaults on channels-last tensors for some
        # shapes (8 -> 32 channels at 112x112: resnet50 at width 0.125).
        self.channels_last = config.channels_last if config.channels_last is not None else self.device.type == "cuda"

        if config.sync_bn and process.distributed:
            backbone = distributed.convert_sync_batchnorm(backbone, self.device)
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.backbone = backbone.to(self.device, memory_format=memory_format)
        self.head = head.to(self.device)
        self.network: nn.Module = TrainingNetwork(self.backbone, self.head)
        self.optimizer = torch.optim.SGD(
            self.network.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)

        self.position = Position()
        self.best_accuracy: float | None = None
        self.skipped: set[int] = set()
        self.last_values: dict[str, Any] = {}
        if state is not None:
            self._restore(state)
        if process.distributed:
            self.network = nn.parallel.DistributedDataParallel(
                self.network, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if config.compile:
            # Fuses StRA's per-neighbour elementwise work, which eager mode runs as many small kernels.
            # Checkpoints keep coming from self.backbone and self.head, so their keys do not change.
            self.network = torch.compile(self.network)
        self.metrics: _MetricsLog | None = None

    # ------------------------------------------------------------------------------------------- setup

    def _lr_factor(self, step: int) -> float:
        c = self.config
        return paper_lr_factor(step, steps_per_epoch=self.steps_per_epoch, lr_steps=tuple(c.lr_steps), lr_factor=c.lr_factor, warmup_epochs=c.warmup_epochs)

    def _restore(self, state: dict[str, Any]) -> None:
        self.backbone.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.position = Position(**state["position"])
        self.best_accuracy = state.get("best_accuracy")
        self.skipped = {int(i) for i in state.get("skipped", [])}
        rng_states = state["rng"]
        if len(rng_states) != self.process.world_size:
            log.warning("resuming with %d processes a run saved with %d: random streams will differ", self.process.world_size, len(rng_states))
        restore_rng(rng_states[self.process.rank % len(rng_states)])

    def _prepare_run_dir(self) -> None:
        if not self.process.is_main:
            return
        if self.config.overwrite and not self.config.resume:
            clear_run(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_json = self.config.to_json()
        config_json["data"] = str(Path(self.config.data).resolve())
        config_json["out"] = str(self.run_dir.resolve())
        config_json["resume"] = config_json["overwrite"] = False
        write_text_atomic(self.run_dir / CONFIG, json.dumps(config_json, indent=2) + "\n")
        identities = {"source": config_json["data"], "num_images": len(self.dataset), "identities": self.dataset.identities}
        write_text_atomic(self.run_dir / IDENTITIES, json.dumps(identities, indent=1) + "\n")
        self.metrics = _MetricsLog(self.run_dir, self.position.global_step if self.config.resume else None)

    # -------------------------------------------------------------------------------------------- loop

    def run(self) -> TrainResult:
        started = time.monotonic()
        self.deadline = started + 60 * self.config.max_minutes if self.config.max_minutes else None
        self._prepare_run_dir()
        distributed.barrier(self.process)
        stopped = STOP_COMPLETED
        try:
            while self.position.epoch < self.config.epochs and stopped == STOP_COMPLETED:
                stopped = self._run_epoch()
            if stopped != STOP_COMPLETED:  # a finished epoch has just been saved; a stop mid-epoch not yet
                self._save_checkpoint(model_too=True)
        finally:
            if self.metrics is not None:
                self.metrics.close()
        best = self.run_dir / BEST
        return TrainResult(
            run_dir=self.run_dir,
            model_path=self.run_dir / MODEL,
            checkpoint_path=self.run_dir / LAST,
            best_path=best if self.best_accuracy is not None else None,
            stopped=stopped,
            global_step=self.position.global_step,
            total_steps=self.total_steps,
            epochs_completed=self.position.epoch + self.position.step_in_epoch / self.steps_per_epoch,
            final_loss=self.last_values.get("loss"),
            final_accuracy=self.last_values.get("accuracy"),
            best_accuracy=self.best_accuracy,
            num_images=len(self.dataset),
            num_identities=self.dataset.num_classes,
            skipped_images=len(self.skipped),
            elapsed_s=time.monotonic() - started,
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
            worker_init_fn=_ignore_sigint if c.workers else None,
            # The loader draws its worker seeds from this generator, not from the global one: the global
            # random stream (dropout...) then does not depend on where in an epoch a run was resumed.
            generator=torch.Generator().manual_seed(c.seed),
            prefetch_factor=4 if c.workers else None,
        )

    def _run_epoch(self) -> str:
        if self.position.global_step >= self.total_steps:
            return STOP_STEPS
        batches = iter(self._loader())
        self._tick, images_since = time.monotonic(), 0
        while self.position.step_in_epoch < self.steps_per_epoch:
            if self.position.global_step >= self.total_steps:
                return STOP_STEPS
            micro_batches = [next(batches) for _ in range(self.config.grad_accum)]
            values, stop = self._step(micro_batches)
            images_since += self.config.batch_size
            step = self.position.global_step
            if self.process.is_main and (step % self.config.log_every == 0 or self.config.check_replicas or step == self.total_steps):
                now = time.monotonic()
                values["images_per_s"] = images_since / max(now - self._tick, 1e-9)
                self._tick, images_since = now, 0
                self._log("step", values)
            self.last_values = values
            at_epoch_end = self.position.step_in_epoch == self.steps_per_epoch
            if (self.config.val_every and step % self.config.val_every == 0) or (at_epoch_end and not self.config.val_every):
                self._validate()
                self._tick, images_since = time.monotonic(), 0  # validating is not training time
            if at_epoch_end:
                self.position = Position(self.position.epoch + 1, 0, step)
            if stop:
                return stop
            if at_epoch_end:
                self._save_checkpoint(model_too=True)
                return STOP_COMPLETED
            if self.config.save_every and step % self.config.save_every == 0:
                self._save_checkpoint(model_too=False)
                self._tick, images_since = time.monotonic(), 0
        self.position = Position(self.position.epoch + 1, 0, self.position.global_step)
        return STOP_COMPLETED

    def _step(self, micro_batches: list) -> tuple[dict[str, Any], str | None]:
        """One optimizer step over the micro-batches; returns the global figures and any stop request."""
        c = self.config
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        # ce sum, diversity sum, correct, valid, unreadable: kept on the device, read once per step
        totals = torch.zeros(5, dtype=torch.float64, device=self.device)
        bad_here: list[int] = []
        for number, (images, labels, indices, ok) in enumerate(micro_batches):
            images = images.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(self.device, non_blocking=True)
            valid = ok.to(self.device, non_blocking=True)
            last = number == len(micro_batches) - 1
            no_sync = self.network.no_sync() if (self.process.distributed and not last) else contextlib.nullcontext()
            with no_sync:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    logits, plain_logits, diversity = self.network(images, labels)
                cross_entropy = F.cross_entropy(logits.float(), labels, reduction="none")
                weights = valid.float()
                classification = (cross_entropy * weights).sum() / weights.sum().clamp_min(1.0)
                diversity = (diversity.float() * weights).sum() / weights.sum().clamp_min(1.0)
                loss = (classification + c.diversity_weight * diversity) / len(micro_batches)
                self.scaler.scale(loss).backward()
            with torch.no_grad():
                correct = ((plain_logits.argmax(dim=1) == labels) & valid).sum()
                totals += torch.stack([
                    (cross_entropy.detach() * weights).sum().double(),
                    diversity.detach().double() * weights.sum().double(),
                    correct.double(),
                    weights.sum().double(),
                    (~valid).sum().double(),
                ])
            bad_here += [int(i) for i in indices[~ok]]
        stop_here = self._stop_requested()
        flags = torch.tensor([float(stop_here == STOP_INTERRUPTED), float(stop_here == STOP_TIME)], dtype=torch.float64, device=self.device)
        reduced = distributed.all_reduce_sum(torch.cat([totals, flags]), self.process).cpu()
        if c.strict and reduced[4] > 0:
            where = self.dataset.describe(bad_here[0]) if bad_here else "an image read by another process"
            raise UserError(f"{where}: unreadable image (--strict)")
        self.skipped.update(bad_here)
        learning_rate = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.position = Position(self.position.epoch, self.position.step_in_epoch + 1, self.position.global_step + 1)

        images = float(reduced[0:5][3]) or 1.0
        classification_loss = float(reduced[0]) / images
        diversity_value = float(reduced[1]) / images
        values: dict[str, Any] = {
            "loss": classification_loss + c.diversity_weight * diversity_value,
            "cls_loss": classification_loss,
            "diversity": diversity_value,
            "accuracy": float(reduced[2]) / images,
            "lr": learning_rate,
            "unreadable": int(reduced[4]),
        }
        if c.check_replicas:
            digests = distributed.gather_objects(self._weights_digest(), self.process)
            values["replica_digests"] = digests
            values["replicas_identical"] = len(set(digests)) == 1
        stop = STOP_INTERRUPTED if reduced[5] > 0 else STOP_TIME if reduced[6] > 0 else None
        return values, stop

    def _stop_requested(self) -> str | None:
        if self.stop_requests.signal_number is not None:
            return STOP_INTERRUPTED
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return STOP_TIME
        return None

    def _weights_digest(self) -> str:
        digest = hashlib.sha256()
        for tensor in list(self.network.parameters()) + list(self.network.buffers()):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------------------------- side effects

    def _log(self, kind: str, values: dict[str, Any]) -> None:
        record = {"kind": kind, "step": self.position.global_step, "epoch": self.position.epoch, **values}
        if self.metrics is not None:
            self.metrics.write(record)
        if self.progress is not None:
            self.progress(TrainEvent(kind, self.position.epoch, self.position.global_step, self.total_steps, values))

    def _validate(self) -> None:
        if not self.config.val:
            return
        if self.process.is_main:  # the others wait at the barrier below
            accuracies = self.validator.evaluate(self.backbone)
            mean = sum(accuracies.values()) / len(accuracies)
            values = {**{f"{name}_accuracy": acc for name, acc in accuracies.items()}, "mean_accuracy": mean}
            if self.best_accuracy is None or mean > self.best_accuracy:
                self.best_accuracy = mean
                from facestra import models

                models.save(self.backbone, self.run_dir / BEST)
                values["best"] = True
            self._log("val", values)
        distributed.barrier(self.process)

    def _save_checkpoint(self, *, model_too: bool) -> None:
        """``last.pt`` (and the backbone alone as ``model.pt``); collective: every process sends its state."""
        rng_states = distributed.gather_objects(capture_rng(), self.process)
        skipped = sorted(set().union(*distributed.gather_objects(sorted(self.skipped), self.process)))
        if not self.process.is_main:
            return
        payload = {
            "config": self.config.to_json(),
            "identities": self.dataset.identities,
            "num_images": len(self.dataset),
            "model": {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()},
            "head": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_states,
            "position": dataclasses.asdict(self.position),
            "best_accuracy": self.best_accuracy,
            "skipped": skipped,
            "world_size": self.process.world_size,
        }
        save_training_state(self.run_dir / LAST, payload)
        if model_too:
            from facestra import models

            models.save(self.backbone, self.run_dir / MODEL)
        if skipped:
            write_text_atomic(self.run_dir / SKIPPED, "".join(self.dataset.describe(i) + "\n" for i in skipped))
        if self.progress is not None:
            self.progress(TrainEvent("save", self.position.epoch, self.position.global_step, self.total_steps, {"path": str(self.run_dir / LAST)}))
