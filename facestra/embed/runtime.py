"""Embeddings of aligned faces with an ONNX model through onnxruntime alone, without torch.

The same arithmetic as :mod:`facestra.embed.inference` (the protocol's flip modes, the model's input
convention, L2 normalisation, the refusal of meaningless embeddings), in numpy, for the short jobs where
importing torch would cost more than the work: ``facestra compare`` with an ONNX model answers in under a
second. Images are decoded in this process; the batched, multi-process path for large jobs stays
:func:`facestra.embed.inference.embed_images`, which runs the same model through
:class:`facestra.models.onnx.OnnxModel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facestra.data.images import load_pixels
from facestra.embed.options import FLIP_MODES, FlipMode
from facestra.embed.sanity import refuse_identical_rows, refuse_meaningless_rows, source_names
from facestra.models.onnx_runtime import OnnxRuntimeModel


def normalised_pixels(rgb: np.ndarray, mean: float, std: float) -> np.ndarray:
    """N x H x W x 3 RGB uint8 -> N x 3 x H x W float32 ``(x - mean) / std``, as :func:`facestra.data.images.normalize`."""
    return (rgb.transpose(0, 3, 1, 2).astype(np.float32) - np.float32(mean)) / np.float32(std)


def embed_with_runtime(
    model: OnnxRuntimeModel,
    sources: Sequence[Path | bytes],
    *,
    flip: FlipMode = "concat",
    names: Sequence[str] | None = None,
    batch_size: int = 32,
    resize: bool = False,
) -> np.ndarray:
    """An N x D float32 matrix of the L2-normalised embeddings of ``sources`` (files or encoded images);
    the first unreadable image is a UserError naming it."""
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    names = source_names(sources) if names is None else names
    convention = model.record.input_convention
    parts = []
    for start in range(0, len(sources), batch_size):
        chunk = range(start, min(start + batch_size, len(sources)))
        rgb = np.stack([load_pixels(_read(sources[i]), names[i], model.input_size, fit=resize) for i in chunk])
        pixels = normalised_pixels(rgb, convention.mean, convention.std)
        inputs = pixels if flip == "none" else np.concatenate([pixels, pixels[..., ::-1]])
        out = model.run(inputs)
        count = len(chunk)
        if flip == "concat":
            out = np.concatenate([out[:count], out[count:]], axis=1)
        elif flip == "sum":
            out = out[:count] + out[count:]
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # torch's F.normalize
        out = (out / norms).astype(np.float32)
        refuse_meaningless_rows(out, [names[i] for i in chunk])
        parts.append(out)
    width = model.embedding_size * (2 if flip == "concat" else 1)
    matrix = np.concatenate(parts) if parts else np.zeros((0, width), np.float32)
    refuse_identical_rows(matrix, sources, names)
    return matrix


def _read(source: Path | bytes) -> bytes:
    from facestra.io import read_file

    return source if isinstance(source, bytes) else read_file(source)
