"""What a training run depends on, declared once, and how a run's settings may be combined and changed.

:class:`TrainConfig` is the single place where an option's default, help text and limits are written:
``facestra train`` generates its command-line options from these fields, ``config.json`` is this object,
and :func:`check_config` enforces the same limits for library callers that never see the command line.

Precedence, lowest first: :class:`TrainConfig` defaults, a named recipe (:data:`PRESETS`: the paper's
schedules, appendix D, and arcface_torch's published configs), the network of the ``init`` weights,
explicit options. A resumed run keeps everything that defines its network and data
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
from facestra.models.stra_options import StRAOptions
from facestra.train.margins import LOSSES
from facestra.train.run_folder import CONFIG, check_run_dir

AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("step", "poly", "cosine")
# Options that define the network, the data or the optimiser's state; a resumed run must keep them.
FIXED_ON_RESUME: tuple[str, ...] = (
    "data", "init", "arch", "width", "embedding_size", "input_size", "dropout", "stra_options", "loss", "scale", "margin",
    "margins", "sample_rate", "batch_size", "grad_accum", "seed", "flip", "optimizer", "schedule", "lr", "momentum",
    "weight_decay", "backbone_lr_factor", "freeze_backbone_epochs",
)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` in the run folder."""

    data: str = documented(help="Training images: identity folder tree, 'path,label' list file, train.rec (+ train.idx), or "
                           "synthetic[:IDENTITIES[:IMAGES]] (one random image in memory: the step without the disk).")
    out: str = documented(help="Run folder for checkpoints, metrics and the trained model.")
    init: str | None = documented(
        None, "Start the backbone from these weights (a facestra model file, arcface_torch's backbone.pth or "
        "checkpoint_gpu_*.pt); the network and its input convention are the weights', the margin head is new.",
    )
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
    margins: tuple[float, ...] | None = documented(
        None, "--loss combined: arcface_torch's margin_list m1,m2,m3, logit s·(cos(m1·θ+m2) − m3) "
        "(1,0.5,0 is ArcFace, 1,0,0.4 CosFace; --scale 64 by default).", metavar="M1,M2,M3",
    )
    sample_rate: float | None = documented(
        None, "Partial FC: shard the classifier over the processes and score all positives plus this fraction "
        "of each shard's classes per step (0 < R <= 1; default: one replicated classifier).", positive=True, maximum=1.0,
    )
    diversity_weight: float = documented(0.1, "Weight of the StRA diversity loss.", minimum=0.0)
    epochs: int = documented(20, "Passes over the training images.", minimum=1)
    optimizer: str = documented("sgd", "SGD with momentum, or AdamW (decoupled weight decay, torch's betas).", choices=OPTIMIZERS)
    lr: float = documented(0.1, "Base learning rate.", positive=True)
    schedule: str = documented(
        "step", "Learning-rate decay after the warm-up: × --lr-factor at --lr-steps, arcface_torch's polynomial "
        "(power 2, per step, to 0 at the last step) or cosine (per step, to 0).", choices=SCHEDULES,
    )
    lr_steps: tuple[int, ...] = documented((8, 12), "Epochs at which lr is multiplied by --lr-factor (--schedule step).")
    lr_factor: float = documented(0.1, "Learning-rate multiplier at each of --lr-steps.", positive=True)
    momentum: float = documented(0.9, "SGD momentum.", minimum=0.0, maximum=1.0)
    weight_decay: float = documented(5e-4, "Weight decay (SGD: added to the gradient; AdamW: decoupled).", minimum=0.0)
    warmup_epochs: float = documented(0.0, "Linear lr warm-up.", minimum=0.0)
    clip_grad_norm: float | None = documented(
        None, "Clip the backbone's gradient norm to this before each step (arcface_torch: 5; fp16 gradients "
        "unscaled first).", positive=True,
    )
    backbone_lr_factor: float = documented(
        1.0, "Learning-rate multiplier of the backbone's layers (the pretrained ones with --init); the head's stays --lr.",
        minimum=0.0,
    )
    freeze_backbone_epochs: int = documented(
        0, "With --init: train only the head for this many epochs (backbone weights and BatchNorm statistics unchanged).",
        minimum=0,
    )
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
        for name in ("input_size", "lr_steps", "val", "margins"):
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        if isinstance(values.get("stra_options"), Mapping):
            values["stra_options"] = StRAOptions(**values["stra_options"]) if values["stra_options"] else None
        return cls(**values)


def _option(name: str) -> str:
    return f"`{name}`"


def check_config(config: TrainConfig) -> None:
    """Reject impossible settings with one clear line each (the fields' own limits, and those between fields)."""
    if config.loss not in LOSSES:
        raise UserError(f"unknown loss {config.loss!r}; choose one of {', '.join(LOSSES)}")
    for name, choices in (("amp", AMP_MODES), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
        if getattr(config, name) not in choices:
            raise UserError(f"{_option(name)} must be one of {', '.join(choices)}")
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
        raise UserError(f"{' and '.join(given)} {verb} to `loss` cosface and arcface; plain softmax has neither")
    _check_margins(config)
    _check_fine_tuning(config)
    low, high = IMAGE_SIDES
    if not all(low <= side <= high for side in config.input_size):
        raise UserError(f"`input_size` {config.input_size[0]}x{config.input_size[1]}: each side must be {low} to {high} pixels")
    if list(config.lr_steps) != sorted(config.lr_steps):
        raise UserError("`lr_steps` must be increasing epochs")


def _check_margins(config: TrainConfig) -> None:
    if config.loss != "combined":
        if config.margins is not None:
            raise UserError(f"`margins` applies to `loss` combined, not `loss` {config.loss}")
        return
    if config.margin is not None:
        raise UserError("`loss` combined takes its margins as `margins` m1,m2,m3, not `margin`")
    if config.margins is None or len(config.margins) != 3:
        raise UserError("`loss` combined needs `margins` m1,m2,m3 (arcface_torch's margin_list, e.g. 1,0.5,0)")
    m1, m2, m3 = config.margins
    if not (m1 >= 1.0 and m2 >= 0.0 and m3 >= 0.0):
        raise UserError(f"`margins` {','.join(f'{m:g}' for m in config.margins)}: needs m1 >= 1, m2 >= 0 and m3 >= 0")


def _check_fine_tuning(config: TrainConfig) -> None:
    if config.init is None:
        for name, idle in (("freeze_backbone_epochs", 0), ("backbone_lr_factor", 1.0)):
            if getattr(config, name) != idle:
                raise UserError(f"{_option(name)} applies to a run started from pretrained weights (`init`)")


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
            from facestra.data.datasets import data_source  # torch: imported when a run resumes, not for --help

            value = data_source(value)
        if key == "init" and value is not None:
            value = str(Path(value).resolve())
        if key == "out" and value is not None and Path(value).resolve() != run_dir.resolve():
            raise UserError(f"`out` {value} differs from `resume` {run_dir}; a run continues in its own folder")
        if key in FIXED_ON_RESUME and value != getattr(config, key):
            raise UserError(f"{run_dir}: {_option(key)} cannot change when resuming (the run has {getattr(config, key)!r})")
        setattr(config, key, value)
    config.out = str(run_dir)
    config.resume, config.overwrite = True, False
    return config


#: GPUs of arcface_torch's published runs (docs and configs: 8 per node); its batch_size is per GPU.
ARCFACE_TORCH_GPUS = 8


def _arcface_torch(network: str, *, margins: tuple[float, float, float], lr: float, weight_decay: float, epochs: int,
                   warmup_epochs: float, batch_per_gpu: int = 128) -> Mapping[str, Any]:
    """An arcface_torch config as facestra options: its ``train_v2.py`` always scales by 64, clips the
    backbone's gradient norm at 5, decays with PolynomialLRWarmup (power 2, per step) and, with
    ``sample_rate`` 1.0, still trains Partial FC (here: the sharded head with every row)."""
    return MappingProxyType({
        "arch": network, "width": 1.0, "embedding_size": 512, "input_size": (112, 112),
        "loss": "combined", "margins": margins, "scale": 64.0, "sample_rate": 1.0,
        "optimizer": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": weight_decay,
        "batch_size": batch_per_gpu * ARCFACE_TORCH_GPUS, "epochs": epochs, "warmup_epochs": warmup_epochs,
        "schedule": "poly", "clip_grad_norm": 5.0, "amp": "fp16",
    })


PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # "models are trained for 20 epochs ... multiplied by 0.1 at the 8-th and 12-th epochs", batch 512
    "paper-medium": MappingProxyType({"epochs": 20, "lr": 0.1, "lr_steps": (8, 12), "batch_size": 512}),
    # "50 epochs on VGGFace2 ... at the 20-th, 30-th, 38-th, 44-th and 48-th epochs"; inputs 224x192
    "paper-vggface2": MappingProxyType(
        {"epochs": 50, "lr": 0.1, "lr_steps": (20, 30, 38, 44, 48), "batch_size": 512, "input_size": (224, 192)}
    ),
    # deepinsight/insightface recognition/arcface_torch/configs, read at these commits (each file's latest
    # stored version): ms1mv3_r50.py 5ef98047542b18d911cef1e10c6c02273c4adff3, ms1mv3_r100.py
    # fe116a43788fc6458328b251b5a7da26fbebd9e1, glint360k_r50.py d9cb10e6bda109bc9b4a6ca8b92d7f3342b56492; the
    # optimizer is base.py's "sgd" (4f227ba5b4157df0a995a33bbd25c2e4036a82d5), which those files do not override.
    "ms1mv3_r50": _arcface_torch("iresnet50", margins=(1.0, 0.5, 0.0), lr=0.2, weight_decay=5e-4, epochs=25, warmup_epochs=2),
    "ms1mv3_r100": _arcface_torch("iresnet100", margins=(1.0, 0.5, 0.0), lr=0.2, weight_decay=5e-4, epochs=25, warmup_epochs=0),
    "glint360k_r50": _arcface_torch("iresnet50", margins=(1.0, 0.0, 0.4), lr=0.1, weight_decay=1e-4, epochs=20, warmup_epochs=0),
})


def build_config(options: dict[str, Any], preset: str | None = None) -> TrainConfig:
    """A config from explicit ``options`` over the network of the ``init`` weights over ``preset`` over the
    defaults; StRA switches given are gathered into ``stra_options`` (None when none is, so plain ResNets
    accept the defaults)."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset]) if preset else {}
    options = dict(options)
    switches = {key: options.pop(key) for key in StRAOptions.names() if key in options}
    if options.get("init") is not None:
        from facestra.train.initial import initial_network  # torch: loaded with the weights, not for --help

        values.update(initial_network(Path(options["init"]), arch=options.get("arch")).options)
    values.update(options)
    if switches:
        given = values.get("stra_options")
        try:
            values["stra_options"] = StRAOptions(**switches) if given is None else dataclasses.replace(given, **switches)
        except ValueError as error:
            raise UserError(str(error)) from None
    missing = [name for name in ("data", "out") if not values.get(name)]
    if missing:
        raise UserError(f"missing {' and '.join(_option(m) for m in missing)} (or give `resume` RUN_DIR)")
    return TrainConfig(**values)
