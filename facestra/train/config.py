"""What a training run depends on, declared once, and how a run's settings may be combined and changed.

:class:`TrainConfig` is the single place where an option's default, help text and limits are written:
``facestra train`` generates its command-line options from these fields, ``config.json`` is this object,
and :func:`check_config` enforces the same limits for library callers that never see the command line.

Precedence, lowest first: :class:`TrainConfig` defaults, a named schedule from the paper (appendix D,
:data:`PRESETS`), explicit options. A resumed run keeps everything that defines its network and data
(:data:`FIXED_ON_RESUME`), so that it continues the run it names instead of silently starting another.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from facestra.embed.options import DEVICES
from facestra.errors import UserError
from facestra.fields import IMAGE_SIDES, MAX_WORKERS, documented
from facestra.models.stra import StRAOptions
from facestra.train.heads import LOSSES
from facestra.train.run_folder import CONFIG, check_run_dir

AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
# Options that define the network or the data; a resumed run must keep them.
FIXED_ON_RESUME: tuple[str, ...] = (
    "data", "arch", "width", "embedding_size", "input_size", "dropout", "stra_options", "loss", "scale", "margin",
    "sample_rate", "batch_size", "grad_accum", "seed", "flip", "lr", "momentum", "weight_decay",
)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` in the run folder."""

    data: str = documented(help="Training images: identity folder tree, 'path,label' list file, or train.rec (+ train.idx).")
    out: str = documented(help="Run folder for checkpoints, metrics and the trained model.")
    arch: str = documented("resnet50_stra", "Architecture (facestra info lists costs).")
    width: float = documented(1.0, "Channel width multiplier (stage 1 has 64 x width channels).", minimum=0.125, maximum=8.0)
    embedding_size: int = documented(512, "Length of the face embedding.", minimum=1, maximum=16384)
    input_size: tuple[int, int] = documented((112, 112), "Network input HxW.")
    dropout: float = documented(0.0, "Dropout rate before the embedding layer.", minimum=0.0, maximum=1.0)
    # the StRA switches (None: not given, the *_stra architectures' defaults); one command-line option each
    stra_options: StRAOptions | None = None
    loss: str = documented("softmax", "Classification head: plain softmax or a margin loss.", choices=LOSSES)
    scale: float | None = documented(None, "Feature scale s (CosFace/ArcFace default 20).", positive=True, maximum=1024.0)
    margin: float | None = documented(
        None, "Margin m (CosFace 0.2, ArcFace 0.15 by default): a cosine for CosFace, radians for ArcFace.", minimum=0.0, maximum=1.0
    )
    sample_rate: float | None = documented(
        None, "Partial FC: shard the classifier over the processes and score all positives plus this fraction "
        "of each shard's classes per step (0 < R <= 1; default: one replicated classifier).", positive=True, maximum=1.0,
    )
    diversity_weight: float = documented(0.1, "Weight of the StRA diversity loss.", minimum=0.0)
    epochs: int = documented(20, "Passes over the training images.", minimum=1)
    lr: float = documented(0.1, "Base learning rate of SGD.", positive=True)
    lr_steps: tuple[int, ...] = documented((8, 12), "Epochs at which lr is multiplied by --lr-factor.")
    lr_factor: float = documented(0.1, "Learning-rate multiplier at each of --lr-steps.", positive=True)
    momentum: float = documented(0.9, "SGD momentum.", minimum=0.0, maximum=1.0)
    weight_decay: float = documented(5e-4, "SGD weight decay.", minimum=0.0)
    warmup_epochs: float = documented(0.0, "Linear lr warm-up.", minimum=0.0)
    batch_size: int = documented(512, "Global batch (over all processes).", minimum=1)
    grad_accum: int = documented(1, "Micro-batches per optimizer step.", minimum=1)
    workers: int = documented(4, "Data-loader processes per training process.", minimum=0, maximum=MAX_WORKERS)
    threads: int | None = documented(None, "CPU threads for the network (default: PyTorch's choice).", minimum=1, maximum=1024)
    seed: int = documented(0, "Seed of the initial weights and of every epoch's order and flips.")
    device: str = documented("auto", "Where to train (auto: cuda when available).", choices=DEVICES)
    amp: str = documented("none", "Mixed precision.", choices=AMP_MODES)
    channels_last: bool | None = documented(None, "Channels-last memory format (default: on GPUs).")
    compile: bool = documented(False, "torch.compile the network: faster steps on a GPU after a slow first one.")
    sync_bn: bool = documented(False, "Batch statistics over all processes.")
    flip: bool = documented(True, "Random horizontal flip of the training images.")
    strict: bool = documented(False, "Stop at the first unreadable image instead of skipping it.")
    val: tuple[str, ...] = documented((), "Benchmarks to verify on, comma-separated (lfw.bin,cfp_fp.bin,...).")
    val_every: int = documented(0, "Validate every N steps (0: every epoch).", minimum=0)
    val_batch_size: int = documented(128, "Images per forward pass when validating.", minimum=1)
    save_every: int = documented(0, "Also save last.pt every N steps.", minimum=0)
    log_every: int = documented(10, "Log metrics every N steps.", minimum=1)
    max_steps: int | None = documented(None, "Stop after this many optimizer steps in all.", minimum=1)
    max_minutes: float | None = documented(None, "Time budget: stop cleanly and save after this many minutes.", positive=True)
    overwrite: bool = documented(False, "Replace a run already in --out.")
    resume: bool = documented(False, "Continue the run already in --out (see resume_config).")
    check_replicas: bool = documented(False, "Debugging: record a digest of every process's weights after each step.")

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainConfig:
        """The config :meth:`to_json` wrote, or facestra 0.2 (whose ``stra_options`` held only the switches
        given: ``{}`` for none); a bad StRA switch is a ValueError or TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        for name in ("input_size", "lr_steps", "val"):
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        if isinstance(values.get("stra_options"), Mapping):
            values["stra_options"] = StRAOptions(**values["stra_options"]) if values["stra_options"] else None
        return cls(**values)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_config(config: TrainConfig) -> None:
    """Reject impossible settings with one clear line each (the fields' own limits, and those between fields)."""
    if config.loss not in LOSSES:
        raise UserError(f"unknown loss {config.loss!r}; choose one of {', '.join(LOSSES)}")
    if config.amp not in AMP_MODES:
        raise UserError(f"--amp must be one of {', '.join(AMP_MODES)}")
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if value is None or isinstance(value, (bool, str, tuple, StRAOptions)):
            continue
        minimum, maximum = spec.metadata.get("minimum"), spec.metadata.get("maximum")
        if spec.metadata.get("positive") and not value > 0:
            raise UserError(f"{_option(spec.name)} must be positive")
        if minimum is not None and not value >= minimum:
            rule = f"be at least {minimum}" if minimum else "not be negative"
            raise UserError(f"{_option(spec.name)} must {rule}")
        if maximum is not None and not value <= maximum:
            raise UserError(f"{_option(spec.name)} must be at most {maximum}")
    if config.loss == "softmax" and (config.scale is not None or config.margin is not None):
        given = [_option(name) for name in ("scale", "margin") if getattr(config, name) is not None]
        verb = "applies" if len(given) == 1 else "apply"
        raise UserError(f"{' and '.join(given)} {verb} to --loss cosface and arcface; plain softmax has neither")
    low, high = IMAGE_SIDES
    if not all(low <= side <= high for side in config.input_size):
        raise UserError(f"--input-size {config.input_size[0]}x{config.input_size[1]}: each side must be {low} to {high} pixels")
    if list(config.lr_steps) != sorted(config.lr_steps):
        raise UserError("--lr-steps must be increasing epochs")


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
    try:
        config = TrainConfig.from_json(saved)
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: not a run configuration facestra can resume ({error})") from None
    for key, value in (overrides or {}).items():
        if not hasattr(config, key):
            raise UserError(f"{run_dir}: {_option(key)} cannot change when resuming")
        value = tuple(value) if isinstance(value, list) else value
        if key == "data" and value is not None:
            value = str(Path(value).resolve())
        if key == "out" and value is not None and Path(value).resolve() != run_dir.resolve():
            raise UserError(f"--out {value} differs from --resume {run_dir}; a run continues in its own folder")
        if key in FIXED_ON_RESUME and value != getattr(config, key):
            raise UserError(f"{run_dir}: {_option(key)} cannot change when resuming (the run has {getattr(config, key)!r})")
        setattr(config, key, value)
    config.out = str(run_dir)
    config.resume, config.overwrite = True, False
    return config


PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # "models are trained for 20 epochs ... multiplied by 0.1 at the 8-th and 12-th epochs", batch 512
    "paper-medium": MappingProxyType({"epochs": 20, "lr": 0.1, "lr_steps": (8, 12), "batch_size": 512}),
    # "50 epochs on VGGFace2 ... at the 20-th, 30-th, 38-th, 44-th and 48-th epochs"; inputs 224x192
    "paper-vggface2": MappingProxyType(
        {"epochs": 50, "lr": 0.1, "lr_steps": (20, 30, 38, 44, 48), "batch_size": 512, "input_size": (224, 192)}
    ),
})


def build_config(options: dict[str, Any], preset: str | None = None) -> TrainConfig:
    """A config from explicit ``options`` over ``preset`` over the defaults; StRA switches given are gathered
    into ``stra_options`` (None when none is, so plain ResNets accept the defaults)."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset]) if preset else {}
    options = dict(options)
    switches = {key: options.pop(key) for key in StRAOptions.names() if key in options}
    values.update(options)
    if switches:
        given = values.get("stra_options")
        try:
            values["stra_options"] = StRAOptions(**switches) if given is None else dataclasses.replace(given, **switches)
        except ValueError as error:
            raise UserError(str(error)) from None
    missing = [name for name in ("data", "out") if not values.get(name)]
    if missing:
        raise UserError(f"missing {' and '.join('--' + m for m in missing)} (or give --resume RUN_DIR)")
    return TrainConfig(**values)
