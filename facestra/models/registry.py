"""One name per architecture, and checkpoints that describe themselves.

``create(name, **kwargs)`` is the only way commands build networks, so ``--arch`` accepts exactly
:func:`names`. ``save`` stores the architecture name and its arguments next to the weights, and ``load``
rebuilds the network from the file alone: a ``--checkpoint`` never needs its ``--arch`` repeated. Files hold
only tensors and plain Python values, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from facestra.errors import UserError
from facestra.io import atomic_write
from facestra.models.resnet import BasicBlock, Bottleneck, FaceResNet, StRABottleneck
from facestra.models.stra import StRAOptions

CHECKPOINT_FORMAT = "facestra-model/1"
STRA_OPTIONS = StRAOptions.names()


def _resnet(block: type[nn.Module], layers: list[int], *, stra: bool = False, **kwargs: Any) -> FaceResNet:
    stra_kwargs = {key: kwargs.pop(key) for key in STRA_OPTIONS if key in kwargs}
    if stra_kwargs and not stra:
        raise ValueError(f"StRA options {sorted(stra_kwargs)} only apply to *_stra architectures")
    if stra:
        StRAOptions(**stra_kwargs)  # one clear error for a bad switch before any layer is built
    stage_blocks = [block, block, block, StRABottleneck if stra else block]
    block_kwargs = [{}, {}, {}, stra_kwargs]
    return FaceResNet(stage_blocks, layers, block_kwargs=block_kwargs, **kwargs)


_BUILDERS: dict[str, Callable[..., FaceResNet]] = {
    "resnet18": partial(_resnet, BasicBlock, [2, 2, 2, 2]),
    "resnet34": partial(_resnet, BasicBlock, [3, 4, 6, 3]),
    "resnet50": partial(_resnet, Bottleneck, [3, 4, 6, 3]),
    "resnet101": partial(_resnet, Bottleneck, [3, 4, 23, 3]),
    "resnet50_stra": partial(_resnet, Bottleneck, [3, 4, 6, 3], stra=True),
    "resnet101_stra": partial(_resnet, Bottleneck, [3, 4, 23, 3], stra=True),
}


def names() -> list[str]:
    """Architecture names that :func:`create` and every ``--arch`` option accept."""
    return list(_BUILDERS)


def create(name: str, **kwargs: Any) -> FaceResNet:
    """Build architecture ``name``; kwargs: width, embedding_size, input_size, dropout and, for *_stra,
    groups, kernel_size, mode_attention, mode_interaction, gate."""
    if name not in _BUILDERS:
        raise UserError(f"unknown architecture {name!r}; choose one of {', '.join(names())}")
    if "input_size" in kwargs:
        kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])
    model = _BUILDERS[name](**kwargs)
    model.arch = name
    model.arch_kwargs = dict(kwargs)
    return model


def save(model: FaceResNet, path: str | os.PathLike) -> None:
    """Write architecture, arguments, embedding size and weights to ``path`` (atomically)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch,
        "kwargs": _plain(model.arch_kwargs),
        "embedding_size": model.embedding_size,
        "input_size": list(model.input_size),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> FaceResNet:
    """Rebuild the model saved by :func:`save`, in eval mode. Bad files are a :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - anything unreadable is a bad checkpoint for the user
        raise UserError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a facestra model file (write one with facestra.models.save or facestra train)")
    kwargs = dict(payload["kwargs"])
    state = payload.get("state_dict", {})
    if any(".stra.local.omega." in key for key in state):
        raise UserError(f"{path}: holds the StRA block of facestra 0.1, whose mode gates had no BatchNorm and saturated; "
                        "its weights do not fit the authors' block that facestra now builds: retrain the model")
    model = create(payload["arch"], **kwargs)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise UserError(f"{path}: weights do not match architecture {payload['arch']} ({str(error).splitlines()[0]})") from None
    return model.to(map_location).eval()


def _plain(value: Any) -> Any:
    """Arguments as plain lists/dicts/scalars, the only things weights_only loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
