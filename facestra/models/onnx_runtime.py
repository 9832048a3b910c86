"""ONNX recognition models run through onnxruntime alone: no torch, no ``onnx`` package.

A two-photo ``facestra compare`` with an ONNX model needs neither torch (about 2 s to import) nor the
``onnx`` package (about 1 s, and a parse of the whole graph with its weights): onnxruntime runs the graph,
and the few node names insightface's ``ArcFaceONNX`` decides the pixel convention from are read straight
from the file (:mod:`facestra.models.onnx_graph`). :class:`OnnxRuntimeModel` holds the session and what
facestra needs to feed it; :class:`facestra.models.onnx.OnnxModel` puts it behind the interface of
facestra's torch networks for the batched embedding code.

Whatever the file declares, the model is either run correctly or refused in one line: float16 and double
inputs are fed as such, other element types, ranks, channel counts and sides outside 8..4096 are refused;
a fixed batch is fed in padded chunks, a free batch that only runs one image at a time is fed one at a
time; the output must be one vector per image.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from facestra.data.images import ARCFACE_INPUT, RAW_INPUT, InputConvention
from facestra.errors import UserError
from facestra.models.record import ModelRecord

#: ArcFaceONNX looks for the normalising nodes among the graph's first nodes only.
CONVENTION_NODES = 8
#: The element types an image input may have, and what facestra feeds each (normalised pixels, as floats).
_FLOAT_INPUTS = MappingProxyType({"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64})
#: The most images a model may declare as its fixed batch: facestra pads each chunk to it.
MAX_FIXED_BATCH = 1024


def onnxruntime_module() -> Any:
    """onnxruntime, or a one-line UserError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX models need onnxruntime: pip install 'facestra[onnx]'") from None
    return onnxruntime


def graph_convention(node_names: list[str]) -> InputConvention:
    """The input convention ArcFaceONNX infers from a graph's node names (in graph order)."""
    first = node_names[:CONVENTION_NODES]
    subtracts = any(name.startswith(("Sub", "_minus")) for name in first)
    multiplies = any(name.startswith(("Mul", "_mul")) for name in first)
    return RAW_INPUT if subtracts and multiplies else ARCFACE_INPUT


def providers(onnxruntime: Any, device: str) -> list[str]:
    """onnxruntime's execution providers for ``device`` (auto: CUDA when this onnxruntime has it)."""
    available = onnxruntime.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device.startswith("cuda"):
        if not cuda:
            raise UserError("`device` cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu, or use `device` cpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


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


def first_line(error: BaseException) -> str:
    """An exception's first line, at most 200 characters: what a one-line error quotes of it."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


class OnnxRuntimeModel:
    """An ONNX recognition model's session and what facestra feeds it: ``run`` takes normalised
    N x 3 x H x W float pixels (numpy) and gives N x D float32 features."""

    def __init__(self, session: Any, path: Path, convention: InputConvention, *, fixed_batch: int | None,
                 input_size: tuple[int, int], input_dtype: type = np.float32) -> None:
        self.session = session
        self.path = path
        self.record = ModelRecord(arch=f"onnx:{path.name}", input_convention=convention, origin="onnx")
        self.fixed_batch = fixed_batch
        self.input_size = input_size
        self.input_dtype = input_dtype
        self.embedding_size = 0
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            (out,) = self.session.run([self.output_name], {self.input_name: batch.astype(self.input_dtype, copy=False)})
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own kinds for a graph that cannot run
            raise UserError(f"{self.path}: onnxruntime cannot run it on a batch of {len(batch)} "
                            f"{batch.shape[2]}x{batch.shape[3]} images ({first_line(error)})") from None
        return one_vector_per_image(np.asarray(out), len(batch), self.path)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """Features of normalised N x 3 x H x W pixels, fed in padded chunks when the batch is fixed."""
        array = np.ascontiguousarray(pixels, dtype=np.float32)
        if self.fixed_batch is None:
            return self._run(array)
        step = self.fixed_batch
        parts = []
        for start in range(0, len(array), step):
            chunk = array[start : start + step]
            padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)]) if len(chunk) < step else chunk
            parts.append(self._run(padded)[: len(chunk)])
        return np.concatenate(parts) if parts else np.zeros((0, self.embedding_size), np.float32)


def open_onnx(path: str | os.PathLike, *, device: str = "auto") -> OnnxRuntimeModel:
    """The ONNX recognition model at ``path``, checked and probed (see the module's docstring); bad files
    are a UserError."""
    from facestra.fields import IMAGE_SIDES
    from facestra.models.onnx_graph import first_node_names

    path = Path(path)
    onnxruntime = onnxruntime_module()
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers(onnxruntime, device))
        names = first_node_names(path, CONVENTION_NODES)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - protobuf and onnxruntime raise many kinds
        raise UserError(f"{path}: not a readable ONNX model ({first_line(error)})") from None
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
    model = OnnxRuntimeModel(session, path, graph_convention(names), fixed_batch=fixed_batch, input_size=(height, width),
                             input_dtype=_FLOAT_INPUTS[inputs[0].type])
    probe_pixels = np.zeros((2, 3, height, width), np.float32)
    try:
        probe = model.run(probe_pixels)
    except UserError as error:
        if fixed_batch is not None:
            raise
        model.fixed_batch = 1  # a "free" batch that a Reshape fixes at 1 (older exporters): one image at a time
        try:
            probe = model.run(probe_pixels)
        except UserError:
            raise error from None
    model.embedding_size = int(probe.shape[1])
    return model
