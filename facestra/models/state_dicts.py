"""Bare state dicts written by other tools: arcface_torch's ``backbone.pth`` and its training checkpoints.

arcface_torch saves ``backbone.module.state_dict()`` alone, without the network's name or size, so the
architecture comes from ``--arch`` or, when it is not given, from the tensors themselves (the number of
blocks per stage names the IResNet, ``conv1`` its width, ``fc`` the embedding size and the input size).
The tensors must then fit exactly: a missing, unexpected or wrong-shaped tensor is refused in one line that
names it, so a wrong ``--arch`` never loads half a network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facestra.errors import UserError
from facestra.models.iresnet import IRESNET_LAYERS

# Where the backbone's tensors sit in the training checkpoints other tools write.
_NESTED_KEYS = ("state_dict_backbone", "state_dict", "model")
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


def backbone_tensors(payload: Any) -> dict[str, torch.Tensor] | None:
    """The backbone's name -> tensor map in ``payload``, or None when it holds none.

    Accepts a plain state dict, one nested under ``state_dict_backbone`` (arcface_torch's
    ``checkpoint_gpu_0.pt``), ``state_dict`` or ``model``, and drops the ``module.`` prefix that
    DistributedDataParallel adds and ``torch.compile``'s ``_orig_mod.``.
    """
    if not isinstance(payload, Mapping):
        return None
    for key in _NESTED_KEYS:
        if isinstance(payload.get(key), Mapping):
            return backbone_tensors(payload[key])
    if not payload or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        return None
    tensors = dict(payload)
    for prefix in _PREFIXES:
        if all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix):]: value for key, value in tensors.items()}
    return tensors


def infer_iresnet(tensors: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]] | None:
    """``(arch, create kwargs)`` of the IResNet these tensors come from, or None when they are none."""
    if "conv1.weight" not in tensors or "fc.weight" not in tensors or "features.running_mean" not in tensors:
        return None
    depth = [0, 0, 0, 0]
    for key in tensors:
        match = _BLOCK.match(key)
        if match:
            stage, block = int(match.group(1)) - 1, int(match.group(2))
            depth[stage] = max(depth[stage], block + 1)
    name = next((arch for arch, layers in IRESNET_LAYERS.items() if layers == tuple(depth)), None)
    if name is None:
        return None
    if any(".stra." in key for key in tensors):
        name += "_stra"
    stem_channels = tensors["conv1.weight"].shape[0]
    last_channels = tensors["bn2.weight"].shape[0] if "bn2.weight" in tensors else stem_channels * 8
    fc = tensors["fc.weight"]
    cells = fc.shape[1] // last_channels
    side = round(cells**0.5)
    kwargs: dict[str, Any] = {"width": stem_channels / 64, "embedding_size": int(fc.shape[0])}
    if side * side == cells and side != 7:
        kwargs["input_size"] = (side * 16, side * 16)
    return name, kwargs


def load_strict(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: Path, arch: str) -> None:
    """Load every tensor of ``model`` from ``tensors``, refusing the first misfit in one line."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in tensors:
            raise UserError(f"{source}: has no tensor {key!r}, which {arch} needs (is it a state dict of another network?)")
        given = tensors[key]
        if not isinstance(given, torch.Tensor):
            raise UserError(f"{source}: entry {key!r} is a {type(given).__name__}, not a tensor")
        if tuple(given.shape) != tuple(value.shape):
            raise UserError(
                f"{source}: tensor {key!r} has shape {tuple(given.shape)} but {arch} needs "
                f"{tuple(value.shape)} (another network or size?)"
            )
        if value.is_floating_point() and not given.is_floating_point():
            raise UserError(f"{source}: tensor {key!r} holds {str(given.dtype).replace('torch.', '')} values, but {arch} "
                            "needs floating-point weights (is it a quantised or corrupted file?)")
    unexpected = [key for key in tensors if key not in expected]
    if unexpected:
        raise UserError(f"{source}: tensor {unexpected[0]!r} is not part of {arch} (is it a state dict of another network?)")
    model.load_state_dict(dict(tensors), strict=True)
