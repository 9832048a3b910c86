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
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from facestra.data.images import ARCFACE_INPUT, FACESTRA_INPUT, RAW_INPUT, InputConvention
from facestra.errors import UserError
from facestra.io import atomic_write, input_at
from facestra.models.registry import load

#: The opsets ``export`` writes, measured with the TorchScript exporter: every network at 11..21, except
#: that StRA's mode attention (``einsum``) needs 12; below 11 the exporter cannot express StRA's strided
#: unfold at all, and onnxruntime does not yet run every opset above 21.
OPSETS: tuple[int, int] = (11, 21)
STRA_FIRST_OPSET = 12
INPUT_NAME = "data"
OUTPUT_NAME = "embedding"
DEFAULT_OPSET = 17
#: ArcFaceONNX looks for the normalising nodes among the graph's first nodes only.
CONVENTION_NODES = 8
_FREE_BATCH = "None"  # the name arcface_torch's torch2onnx gives the batch dimension


def _onnx_packages() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError("ONNX models need onnx and onnxruntime: pip install 'facestra[onnx]'") from None
    return onnx, onnxruntime


def graph_convention(node_names: list[str]) -> InputConvention:
    """The input convention ArcFaceONNX infers from a graph's node names (in graph order)."""
    first = node_names[:CONVENTION_NODES]
    subtracts = any(name.startswith(("Sub", "_minus")) for name in first)
    multiplies = any(name.startswith(("Mul", "_mul")) for name in first)
    return RAW_INPUT if subtracts and multiplies else ARCFACE_INPUT


def _providers(onnxruntime: Any, device: str) -> list[str]:
    available = onnxruntime.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device.startswith("cuda"):
        if not cuda:
            raise UserError("--device cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu, or use --device cpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModel(nn.Module):
    """An ONNX recognition model behind the interface of facestra's networks (``forward`` on normalised
    N x 3 x H x W tensors, ``embedding_size``, ``input_size``, ``input_convention``, ``arch``).

    It has no parameters; inputs go to onnxruntime from the CPU and the features come back on the
    device of the input.
    """

    def __init__(self, session: Any, path: Path, convention: InputConvention, *, fixed_batch: int | None,
                 input_size: tuple[int, int], embedding_size: int) -> None:
        super().__init__()
        self.session = session
        self.path = path
        self.input_convention = convention
        self.fixed_batch = fixed_batch
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.arch = f"onnx:{path.name}"
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        self.input_dtype: type = np.float32

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            (out,) = self.session.run([self.output_name], {self.input_name: batch.astype(self.input_dtype, copy=False)})
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own kinds for a graph that cannot run
            raise UserError(f"{self.path}: onnxruntime cannot run it on a batch of {len(batch)} "
                            f"{batch.shape[2]}x{batch.shape[3]} images ({_first_line(error)})") from None
        return one_vector_per_image(np.asarray(out), len(batch), self.path)

    def forward(self, x: Tensor) -> Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        if self.fixed_batch is None:
            out = self._run(array)
        else:
            step = self.fixed_batch
            parts = []
            for start in range(0, len(array), step):
                chunk = array[start : start + step]
                padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)]) if len(chunk) < step else chunk
                parts.append(self._run(padded)[: len(chunk)])
            out = np.concatenate(parts) if parts else np.zeros((0, self.embedding_size), np.float32)
        return torch.from_numpy(out).to(x.device)


#: The element types an image input may have, and what facestra feeds each (normalised pixels, as floats).
_FLOAT_INPUTS = MappingProxyType({"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64})
#: The most images a model may declare as its fixed batch: facestra pads each chunk to it.
MAX_FIXED_BATCH = 1024


def one_vector_per_image(out: np.ndarray, images: int, path: Path) -> np.ndarray:
    """``out`` as an ``images`` x D float32 matrix, or a UserError: an output that is not one vector per image
    (a feature map, a score per batch, integers) is refused, never flattened into something that looks like
    embeddings. Trailing axes of size 1 (N x D x 1 x 1, a 1x1 convolution head) are one vector."""
    if not (np.issubdtype(out.dtype, np.floating) and out.ndim >= 2 and out.shape[0] == images and out.shape[1] >= 1
            and all(side == 1 for side in out.shape[2:])):
        kind = out.dtype if not np.issubdtype(out.dtype, np.floating) else " x ".join(map(str, out.shape))
        raise UserError(f"{path}: its output for {images} image(s) is {kind}, not one floating-point vector per image "
                        "(is it a recognition model?)")
    return out.reshape(images, out.shape[1]).astype(np.float32, copy=False)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def load_onnx(path: str | os.PathLike, *, device: str = "auto") -> OnnxModel:
    """An ONNX recognition model ready for :func:`facestra.embed.embed_images`; bad files are a UserError.

    Whatever the file declares, the model is either run correctly or refused in one line: float16 and
    double inputs are fed as such, other element types, ranks, channel counts and sides outside 8..4096 are
    refused; a fixed batch is fed in padded chunks, a free batch that only runs one image at a time is fed
    one at a time; the output must be one vector per image.
    """
    from facestra.fields import IMAGE_SIDES

    path = Path(path)
    onnx, onnxruntime = _onnx_packages()
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
        session = onnxruntime.InferenceSession(str(path), providers=_providers(onnxruntime, device))
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - protobuf and onnxruntime raise many kinds
        raise UserError(f"{path}: not a readable ONNX model ({_first_line(error)})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise UserError(f"{path}: a recognition model has one input and one output; this one has {len(inputs)} and {len(outputs)}")
    if inputs[0].type not in _FLOAT_INPUTS:
        raise UserError(f"{path}: its input takes {inputs[0].type}, not floating-point images (float, float16 or double)")
    shape = list(inputs[0].shape)
    if len(shape) != 4:
        raise UserError(f"{path}: its input is {shape}, not N x 3 x H x W images")
    if isinstance(shape[1], int) and shape[1] != 3:
        raise UserError(f"{path}: its input takes {shape[1]} channels, not 3 (RGB)")
    low, high = IMAGE_SIDES
    declared = [side for side in shape[2:4] if isinstance(side, int) and side > 0]
    if any(not low <= side <= high for side in declared):
        raise UserError(f"{path}: its input is {shape[2]} x {shape[3]} pixels; facestra feeds images of {low} to {high} pixels a side")
    height, width = (int(side) if isinstance(side, int) and side > 0 else 112 for side in shape[2:4])
    fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if fixed_batch is not None and fixed_batch > MAX_FIXED_BATCH:
        raise UserError(f"{path}: its input declares a fixed batch of {fixed_batch} images; facestra pads to at most {MAX_FIXED_BATCH}")
    convention = graph_convention([node.name for node in graph.node])
    model = OnnxModel(session, path, convention, fixed_batch=fixed_batch, input_size=(height, width), embedding_size=0)
    model.input_dtype = _FLOAT_INPUTS[inputs[0].type]
    try:
        probe = model(torch.zeros(2, 3, height, width))
    except UserError as error:
        if fixed_batch is not None:
            raise
        model.fixed_batch = 1  # a "free" batch that a Reshape fixes at 1 (older exporters): one image at a time
        try:
            probe = model(torch.zeros(2, 3, height, width))
        except UserError:
            raise error from None
    model.embedding_size = int(probe.shape[1])
    return model.eval()


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
    convention = getattr(model, "input_convention", FACESTRA_INPUT)
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
        "facestra.arch": str(getattr(model, "arch", "")),
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
        raise UserError(f"--onnx {out}: the output must end in .onnx")
    refuse_output_over_inputs(out, [checkpoint], overwrite=overwrite, role="--onnx")
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise UserError(f"{checkpoint}: is already an ONNX model")
    _onnx_packages()
    model = load(checkpoint, arch=arch)
    low, high = supported_opsets(model)
    if not low <= opset <= high:
        raise UserError(f"--opset {opset}: {model.arch} needs ONNX opset {low} to {high}"
                        + (" (StRA's attention uses einsum, added in opset 12)" if low > OPSETS[0] else ""))
    try:
        written = export_onnx(model, out, opset=opset)
    except (RuntimeError, ValueError, TypeError) as error:  # the exporter's own errors subclass these
        raise UserError(f"--opset {opset}: the ONNX exporter cannot express {model.arch} at this opset "
                        f"({_first_line(error)}); try opset {low} to {high}") from None
    return ExportReport(out, model.arch, tuple(model.input_size), int(model.embedding_size), baked=written == RAW_INPUT)
