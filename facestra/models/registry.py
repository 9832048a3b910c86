"""One name per architecture, and checkpoints that describe themselves.

``create(name, **kwargs)`` is the only way commands build networks, so ``--arch`` accepts exactly
:func:`names`. ``save`` stores the architecture name, its arguments and the input convention (how pixels
are normalised) next to the weights, and ``load`` rebuilds the network from the file alone: a
``--checkpoint`` never needs its ``--arch`` repeated. Files hold only tensors and plain Python values, so they
load with ``torch.load(weights_only=True)``.

``load`` also reads the files people already hold: arcface_torch's bare ``backbone.pth`` (an IResNet state
dict, with arcface_torch's input convention; :mod:`facestra.models.state_dicts`). ONNX recognition models
are :mod:`facestra.models.onnx`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facestra.data.images import ARCFACE_INPUT, FACESTRA_INPUT, InputConvention
from facestra.errors import UserError
from facestra.io import atomic_write, check_readable
from facestra.models.iresnet import IRESNET_LAYERS, IBasicBlock, IResNet
from facestra.models.memory import check_fits
from facestra.models.record import ModelRecord, record_of, with_record
from facestra.models.recorded import check_recorded_verification, create_recorded
from facestra.models.resnet import BasicBlock, Bottleneck, FaceResNet
from facestra.models.stages import CONV3X3, Block, FaceNetwork
from facestra.models.state_dicts import backbone_tensors, infer_iresnet, load_strict
from facestra.models.stra import StRAOptions, stra_mid_layer

CHECKPOINT_FORMAT = "facestra-model/1"

@dataclass(frozen=True)
class Architecture:
    """One entry of :func:`names`: the network, its block, the blocks per stage, and whether StRA fills the
    middle slot of the stage-4 blocks."""

    network: type[FaceNetwork]
    block: Block
    layers: tuple[int, int, int, int]
    stra: bool = False

    def build(self, **kwargs: Any) -> FaceNetwork:
        """The network with ``kwargs`` (width, embedding_size, input_size, dropout and, with StRA, the
        :class:`StRAOptions` switches given)."""
        switches = {name: kwargs.pop(name) for name in StRAOptions.names() if name in kwargs}
        if switches and not self.stra:
            raise ValueError(f"StRA options {sorted(switches)} only apply to *_stra architectures")
        stage4 = stra_mid_layer(StRAOptions(**switches)) if self.stra else CONV3X3
        return self.network(self.block, self.layers, mid_layers=(CONV3X3, CONV3X3, CONV3X3, stage4), **kwargs)


def _iresnet(name: str, *, stra: bool = False) -> Architecture:
    return Architecture(network=IResNet, block=IBasicBlock, layers=IRESNET_LAYERS[name], stra=stra)


_ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture(network=FaceResNet, block=BasicBlock, layers=(2, 2, 2, 2)),
    "resnet34": Architecture(network=FaceResNet, block=BasicBlock, layers=(3, 4, 6, 3)),
    "resnet50": Architecture(network=FaceResNet, block=Bottleneck, layers=(3, 4, 6, 3)),
    "resnet101": Architecture(network=FaceResNet, block=Bottleneck, layers=(3, 4, 23, 3)),
    "resnet50_stra": Architecture(network=FaceResNet, block=Bottleneck, layers=(3, 4, 6, 3), stra=True),
    "resnet101_stra": Architecture(network=FaceResNet, block=Bottleneck, layers=(3, 4, 23, 3), stra=True),
    **{name: _iresnet(name) for name in IRESNET_LAYERS},
    "iresnet50_stra": _iresnet("iresnet50", stra=True),
    "iresnet100_stra": _iresnet("iresnet100", stra=True),
}


def names() -> list[str]:
    """Architecture names that :func:`create` and every ``--arch`` option accept."""
    return list(_ARCHITECTURES)


def create(name: str, *, memory_copies: int = 1, **kwargs: Any) -> FaceNetwork:
    """Build architecture ``name``; kwargs: width, embedding_size, input_size, dropout and, for *_stra,
    groups, kernel_size, mode_attention, mode_interaction, gate. It takes facestra's input convention.

    The network is first built on the ``meta`` device and refused when ``memory_copies`` of its weights
    do not fit in memory, so an oversized option is one line, not a failed allocation; 0 skips the check
    (training makes its own, activations included). Under ``with torch.device("meta")`` (``facestra
    info``) nothing is allocated and nothing is refused.
    """
    if name not in _ARCHITECTURES:
        raise UserError(f"unknown architecture {name!r}; choose one of {', '.join(names())}")
    if "input_size" in kwargs:
        kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])
    if memory_copies and torch.get_default_device().type != "meta":
        with torch.device("meta"):
            check_fits(_ARCHITECTURES[name].build(**kwargs), name, copies=memory_copies)
    model = _ARCHITECTURES[name].build(**kwargs)
    model.record = ModelRecord(arch=name, arch_kwargs=dict(kwargs), input_convention=FACESTRA_INPUT)
    return model


def save(model: FaceNetwork, path: str | os.PathLike) -> None:
    """Write architecture, arguments, embedding size, input convention, what the record stores (verification,
    calibration, where the weights started) and the weights to ``path`` (atomically)."""
    record = record_of(model)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": record.arch,
        "kwargs": _plain(record.arch_kwargs),
        "embedding_size": model.embedding_size,
        "input_size": list(model.input_size),
        "input": record.input_convention.as_dict(),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    for name in ModelRecord.STORED:
        value = getattr(record, name)
        if value:
            payload[name] = _plain(value)
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, arch: str | None = None) -> nn.Module:
    """The network in ``path``, in eval mode: a facestra model file or a bare state dict (arcface_torch's
    ``backbone.pth``; ``arch`` names its network, else it is read from the tensors). Bad files are a
    :class:`UserError` naming the file. ONNX models run through :func:`facestra.models.onnx.load_onnx`."""
    path = Path(path)
    check_readable(path, "checkpoint file")
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - anything unreadable is a bad checkpoint for the user
        raise UserError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        if arch is not None and arch != payload.get("arch"):
            raise UserError(f"`arch` {arch}: {path} is a facestra model file of {payload.get('arch')}; leave `arch` out")
        model = _from_model_file(payload, path)
    else:
        model = _from_state_dict(payload, path, arch)
    return model.to(map_location).eval()


def _from_model_file(payload: dict, path: Path) -> FaceNetwork:
    """The network of a facestra model file; a file with missing or unknown entries is not one."""
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not isinstance(payload.get("kwargs"), dict) or not isinstance(payload.get("arch"), str):
        raise UserError(f"{path}: not a facestra model file: it lacks its architecture, arguments or weights")
    if any(".stra.local.omega." in key for key in state):
        raise UserError(f"{path}: holds the StRA block of facestra 0.1, whose mode gates had no BatchNorm and saturated; "
                        "its weights do not fit the authors' block that facestra now builds: retrain the model")
    if payload["arch"] not in _ARCHITECTURES:
        raise UserError(f"{path}: not a facestra model file: unknown architecture {payload['arch']!r}")
    model = create_recorded(payload["arch"], payload["kwargs"], path)
    load_strict(model, state, path, payload["arch"])
    stored = {name: payload[name] for name in ("calibration", "initialised_from") if isinstance(payload.get(name), dict)}
    if payload.get("verification") is not None:
        stored["verification"] = check_recorded_verification(payload["verification"], path)
    return with_record(model, input_convention=_convention(payload.get("input"), path), origin="facestra model file", **stored)


def _convention(entry: Any, path: Path) -> InputConvention:
    if entry is None:  # files of facestra 0.2.0 and earlier: facestra's own convention
        return FACESTRA_INPUT
    try:
        if entry.get("colour", "RGB") != "RGB":
            raise ValueError
        return InputConvention(float(entry["mean"]), float(entry["std"]))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a facestra model file: unreadable input convention {entry!r}") from None


def _from_state_dict(payload: Any, path: Path, arch: str | None) -> FaceNetwork:
    """An arcface_torch ``backbone.pth`` (or any bare state dict of a network :func:`create` builds)."""
    tensors = backbone_tensors(payload)
    if tensors is None:
        raise UserError(f"{path}: not a facestra model file, nor the state dict of a network "
                        "(write one with facestra.models.save or facestra train)")
    inferred = infer_iresnet(tensors)
    if arch is None and inferred is None:
        raise UserError(f"{path}: not a facestra model file; if it is a bare state dict (such as arcface_torch's "
                        f"backbone.pth), name its network with --arch ({', '.join(names())})")
    name = arch or inferred[0]
    kwargs = inferred[1] if inferred is not None and inferred[0] == name else {}
    model = create(name, **kwargs)
    load_strict(model, tensors, path, name)
    # arcface_torch trains on (x/255 - 0.5)/0.5; a bare state dict of facestra's own ResNets keeps facestra's.
    return with_record(model, input_convention=ARCFACE_INPUT if name.startswith("iresnet") else FACESTRA_INPUT, origin="state dict")


def _plain(value: Any) -> Any:
    """Arguments as plain lists/dicts/scalars, the only things weights_only loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
