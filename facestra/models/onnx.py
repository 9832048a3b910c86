"""ONNX recognition models in and out, with insightface's conventions, through onnxruntime.

In: an ONNX model (insightface's model zoo, arcface_torch's ``torch2onnx.py``, ``facestra export``) runs as a
module that facestra's embedding code drives like its own networks (flip, batches, workers). How pixels
are normalised is decided as insightface's ``ArcFaceONNX`` decides it: a graph whose first eight nodes
include ones named ``Sub*``/``_minus*`` and ``Mul*``/``_mul*`` normalises inside (mxnet-era models: feed raw
pixels); any other takes ``(x - 127.5) / 127.5``. Both take RGB. A model that declares a fixed batch (often
1) is fed in chunks of that size.

Out: :func:`export_onnx` writes a file that insightface's model router takes for a recognition model (input
``N x 3 x H x W`` with a free batch) and whose ``ArcFaceONNX.get_feat`` gives facestra's features: a model
whose own convention is not ``(x - 127.5) / 127.5`` gets it baked into the graph as its first two nodes,
named ``Sub_*`` and ``Mul_*`` so that ``ArcFaceONNX`` feeds raw pixels; an IResNet with arcface_torch's
weights exports bare, as ``torch2onnx.py`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facestra.data.images import ARCFACE_INPUT, RAW_INPUT, InputConvention
from facestra.errors import UserError
from facestra.io import atomic_write
from facestra.models.onnx_runtime import OnnxRuntimeModel, first_line, graph_convention, open_onnx
from facestra.models.record import record_of
from facestra.models.registry import load

#: The opsets ``export`` writes, measured with the TorchScript exporter: every network at 11..21, except
#: that StRA's mode attention (``einsum``) needs 12; below 11 the exporter cannot express StRA's strided
#: unfold at all, and onnxruntime does not yet run every opset above 21.
OPSETS: tuple[int, int] = (11, 21)
STRA_FIRST_OPSET = 12
INPUT_NAME = "data"
OUTPUT_NAME = "embedding"
DEFAULT_OPSET = 17
_FREE_BATCH = "None"  # the name arcface_torch's torch2onnx gives the batch dimension


def _onnx_packages() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError("ONNX models need onnx and onnxruntime: pip install 'facestra[onnx]'") from None
    return onnx, onnxruntime


class OnnxModel(nn.Module):
    """An ONNX recognition model (:class:`facestra.models.onnx_runtime.OnnxRuntimeModel`) behind the
    interface of facestra's networks (``forward`` on normalised N x 3 x H x W tensors, ``embedding_size``,
    ``input_size``, ``record``), for the batched embedding code.

    It has no parameters; inputs go to onnxruntime from the CPU and the features come back on the
    device of the input.
    """

    def __init__(self, runtime: OnnxRuntimeModel) -> None:
        super().__init__()
        self.runtime = runtime
        self.session = runtime.session
        self.path = runtime.path
        self.record = runtime.record
        self.input_size = runtime.input_size
        self.embedding_size = runtime.embedding_size

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.runtime.run(x.detach().float().cpu().numpy())).to(x.device)


def load_onnx(path: str | os.PathLike, *, device: str = "auto") -> OnnxModel:
    """An ONNX recognition model ready for :func:`facestra.embed.embed_images`; bad files are a UserError
    (see :func:`facestra.models.onnx_runtime.open_onnx`)."""
    return OnnxModel(open_onnx(path, device=device)).eval()


class _Normalised(nn.Module):
    """``model`` behind its input convention, so that the exported graph takes raw RGB pixels."""

    def __init__(self, model: nn.Module, convention: InputConvention) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(float(convention.mean)), persistent=False)
        self.register_buffer("scale", torch.tensor(1.0 / float(convention.std)), persistent=False)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.model((pixels - self.mean) * self.scale)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET) -> InputConvention:
    """Write ``model`` as an ONNX recognition model at ``path`` (atomically); returns the convention that
    an ONNX reader infers from the file (raw pixels when facestra's was baked in)."""
    convention = record_of(model).input_convention
    was_training = model.training
    device = next(model.parameters()).device
    network = model.to("cpu", memory_format=torch.contiguous_format).float()
    baked = convention != ARCFACE_INPUT
    module = (_Normalised(network, convention) if baked else network).eval()
    try:
        _export(module, model, convention, Path(path), opset=opset, baked=baked)
    finally:  # the exporter gives every module the mode of the one it was handed
        model.train(was_training).to(device)
    return graph_convention([node.name for node in _onnx_packages()[0].load(str(path)).graph.node])


def _export(module: nn.Module, model: nn.Module, convention: InputConvention, path: Path, *, opset: int, baked: bool) -> None:
    onnx, _ = _onnx_packages()
    height, width = model.input_size
    dummy = torch.zeros(1, 3, height, width)
    with atomic_write(path) as tmp:
        torch.onnx.export(
            module, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamic_axes={INPUT_NAME: {0: _FREE_BATCH}, OUTPUT_NAME: {0: _FREE_BATCH}},
            dynamo=False, do_constant_folding=True,  # the TorchScript exporter: opsets down to 11, as torch2onnx
        )
        proto = onnx.load(str(tmp))
        if baked:
            _name_normalising_nodes(proto.graph)
        _describe(proto, model, convention)
        onnx.save(proto, str(tmp))


def _name_normalising_nodes(graph: Any) -> None:
    """Put the exported ``(x - mean) * scale`` first in the graph and name it so that ArcFaceONNX, which
    looks at the first eight nodes only, recognises it (the exporter puts Identity nodes before it)."""
    nodes = list(graph.node)
    sub = next((n for n in nodes if n.op_type == "Sub" and INPUT_NAME in n.input), None)
    mul = next((n for n in nodes if n.op_type == "Mul" and sub is not None and sub.output[0] in n.input), None)
    if sub is None or mul is None:
        raise RuntimeError("the exported graph has no input normalisation to name")
    producers = {output: n for n in nodes for output in n.output}

    def with_constants(node: Any) -> list[Any]:
        return [producers[i] for i in node.input if i in producers and producers[i].op_type == "Constant"] + [node]

    front = with_constants(sub) + with_constants(mul)
    sub.name, mul.name = "Sub_pixel_mean", "Mul_pixel_scale"
    rest = [n for n in nodes if all(n is not f for f in front)]
    del graph.node[:]
    graph.node.extend(front + rest)


def _describe(proto: Any, model: nn.Module, convention: InputConvention) -> None:
    """Record where the file comes from and what its network expects, as model metadata."""
    entries = {
        "producer": "facestra",
        "facestra.arch": record_of(model).arch,
        "facestra.input_mean": f"{convention.mean:g}",
        "facestra.input_std": f"{convention.std:g}",
        "facestra.colour": "RGB",
    }
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def supported_opsets(model: nn.Module) -> tuple[int, int]:
    """The first and last opset that can express ``model``."""
    from facestra.models.stra import StRA

    uses_stra = any(isinstance(module, StRA) for module in model.modules())
    return (STRA_FIRST_OPSET if uses_stra else OPSETS[0]), OPSETS[1]


@dataclass(frozen=True)
class ExportReport:
    """What ``facestra export`` wrote, and how a reader of the file must feed it."""

    path: Path
    arch: str
    input_size: tuple[int, int]
    embedding_size: int
    baked: bool  # True: the graph takes raw RGB pixels and normalises them itself


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, arch: str | None = None,
                      opset: int = DEFAULT_OPSET, overwrite: bool = False) -> ExportReport:
    """``facestra export``: the model in ``checkpoint`` (facestra model file or backbone.pth) as ONNX at
    ``out``. An existing ``out`` is kept unless ``overwrite``, and never when it is the checkpoint itself."""
    from facestra.io import refuse_output_over_inputs

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"`onnx` {out}: the output must end in .onnx")
    refuse_output_over_inputs(out, [checkpoint], overwrite=overwrite, role="--onnx")
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise UserError(f"{checkpoint}: is already an ONNX model")
    _onnx_packages()
    model = load(checkpoint, arch=arch)
    low, high = supported_opsets(model)
    if not low <= opset <= high:
        raise UserError(f"`opset` {opset}: {record_of(model).arch} needs ONNX opset {low} to {high}"
                        + (" (StRA's attention uses einsum, added in opset 12)" if low > OPSETS[0] else ""))
    try:
        written = export_onnx(model, out, opset=opset)
    except (RuntimeError, ValueError, TypeError) as error:  # the exporter's own errors subclass these
        raise UserError(f"`opset` {opset}: the ONNX exporter cannot express {record_of(model).arch} at this opset "
                        f"({first_line(error)}); try opset {low} to {high}") from None
    return ExportReport(out, record_of(model).arch, tuple(model.input_size), int(model.embedding_size), baked=written == RAW_INPUT)
