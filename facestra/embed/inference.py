"""Embeddings of aligned faces: batched inference and the flip modes of the protocol.

The protocol (paper appendix B.2) embeds each image and its horizontal mirror and concatenates the two
vectors before L2-normalising (``flip="concat"``); ``"sum"`` adds them instead and ``"none"`` uses the image
alone. An image and its mirror go through the network in one batch, so flipping costs one forward pass
of twice the size, not two passes.

Decoding runs in DataLoader workers through the one image pipeline (:mod:`facestra.data.images`), so an
image is fitted to the input exactly as in training; a bad image does not stop a worker but comes back as
a failure, so that the caller decides: raise (exit 1, nothing written) or skip it and list it. How a model
is run (flip, batch, workers, device, resize) is one :class:`InferenceOptions`, shared by embed, verify and
training validation. Writing embeddings to disk is :mod:`facestra.embed.job`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from facestra.data.images import ImageSizeError, load_pixels
from facestra.data.images import normalize as normalize_pixels
from facestra.embed.options import FLIP_MODES, FlipMode, InferenceOptions
from facestra.embed.sanity import refuse_identical_rows, refuse_meaningless_rows, source_names
from facestra.errors import UserError
from facestra.models.record import record_of

if TYPE_CHECKING:
    from facestra.protocols import Benchmark

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be embedded: ``reason`` is ``"unreadable"`` or ``"size"``."""

    index: int
    name: str
    reason: str
    message: str


@dataclass(frozen=True, eq=False)
class EmbeddedBatch:
    indices: np.ndarray  # positions in the input list of the rows of ``embeddings``
    embeddings: np.ndarray  # float32, one row per index
    failures: list[ImageFailure]


def embedding_dim(model: nn.Module, flip: FlipMode) -> int:
    """Width of the vectors the flip mode produces from ``model``."""
    return int(model.embedding_size) * (2 if flip == "concat" else 1)


def resolve_device(device: str | torch.device, model: nn.Module | None = None) -> torch.device:
    """``auto`` -> where ``model`` is, or cuda when available (no model), else cpu; ``cuda`` without a GPU
    is a UserError. ``auto`` never moves a model the caller has placed."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if model is not None:  # an ONNX model has no parameters: its inputs come from the CPU
            anchor = next(iter(model.parameters()), None)
            return anchor.device if anchor is not None else torch.device("cpu")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("`device` cuda: no CUDA GPU is available here (use `device` cpu or auto)")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r} (use auto, cpu or cuda)") from None


def load_for_inference(checkpoint: str | os.PathLike, device: str | torch.device = "auto", *, arch: str | None = None) -> nn.Module:
    """A model from a checkpoint (facestra model file, arcface_torch state dict with ``arch``, or ONNX), on
    ``device``, in eval mode and channels-last (faster convolutions)."""
    from facestra import models

    target = resolve_device(device)
    if Path(checkpoint).suffix.lower() == ".onnx":
        from facestra.models.onnx import load_onnx

        if arch is not None:
            raise UserError(f"`arch` {arch}: {checkpoint} is an ONNX model, which holds its own network; leave `arch` out")
        return load_onnx(checkpoint, device=target.type)
    model = models.load(checkpoint, map_location=target, arch=arch)
    return model.to(memory_format=torch.channels_last).eval()


class _ImageDataset(Dataset):
    """Image ``i`` (path or encoded bytes) as the network sees it, uint8 RGB, or why it cannot be."""

    def __init__(self, sources: Sequence[Path | bytes], names: Sequence[str], input_size: tuple[int, int], resize: bool) -> None:
        self.sources = sources
        self.names = names
        self.input_size = tuple(input_size)
        self.resize = resize

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, ImageFailure | None]:
        source = self.sources[index]
        name = self.names[index]
        try:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            pixels = load_pixels(data, name, self.input_size, fit=self.resize)
        except ImageSizeError as error:
            return index, None, ImageFailure(index, name, "size", str(error))
        except (OSError, UserError) as error:
            message = str(error) if isinstance(error, UserError) else f"{name}: cannot read ({error.strerror or error})"
            return index, None, ImageFailure(index, name, "unreadable", message)
        return index, torch.from_numpy(pixels), None


def _collate(items: list[tuple[int, torch.Tensor | None, ImageFailure | None]]) -> tuple[torch.Tensor, torch.Tensor | None, list[ImageFailure]]:
    good = [(index, tensor) for index, tensor, _ in items if tensor is not None]
    failures = [failure for _, _, failure in items if failure is not None]
    indices = torch.tensor([index for index, _ in good], dtype=torch.int64)
    batch = torch.stack([tensor for _, tensor in good]) if good else None
    return indices, batch, failures


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluate in eval mode and give the model back in the mode it had (the trainer's model is training)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _is_channels_last(model: nn.Module) -> bool:
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def embed_batch(model: nn.Module, images: torch.Tensor, *, flip: FlipMode = "concat", normalize: bool = True) -> torch.Tensor:
    """Embeddings (float32) of a batch of normalised images (B x 3 x H x W) already on the model's device."""
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    count = images.shape[0]
    inputs = images if flip == "none" else torch.cat([images, images.flip(3)])
    if _is_channels_last(model):
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=inputs.device.type == "cuda"):
        outputs = model(inputs).float()
    if flip == "concat":
        outputs = torch.cat([outputs[:count], outputs[count:]], dim=1)
    elif flip == "sum":
        outputs = outputs[:count] + outputs[count:]
    return F.normalize(outputs, dim=1) if normalize else outputs


def iter_embeddings(
    model: nn.Module,
    sources: Sequence[Path | bytes],
    options: InferenceOptions = InferenceOptions(),
    *,
    names: Sequence[str] | None = None,
    normalize: bool = True,
) -> Iterator[EmbeddedBatch]:
    """Embed ``sources`` batch by batch, in order; images that fail come back as failures, not exceptions.

    The model runs where it is unless ``options.device`` names another device (it is then moved there, in
    place, as ``.to``); it is given back in the train/eval mode it had.
    """
    target = resolve_device(options.device, model)
    model.to(target)
    names = source_names(sources) if names is None else names
    dataset = _ImageDataset(sources, names, tuple(model.input_size), options.resize)
    convention = record_of(model).input_convention
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=options.workers,
        collate_fn=_collate,
        pin_memory=target.type == "cuda",
        persistent_workers=False,
    )
    with _eval_mode(model), torch.inference_mode():
        for indices, batch, failures in loader:
            if batch is None:
                embeddings = np.zeros((0, embedding_dim(model, options.flip)), dtype=np.float32)
            else:
                images = normalize_pixels(batch.to(target, non_blocking=True), convention)
                embeddings = embed_batch(model, images, flip=options.flip, normalize=normalize).cpu().numpy()
                refuse_meaningless_rows(embeddings, [names[i] for i in indices.tolist()])
            yield EmbeddedBatch(indices.numpy(), embeddings, failures)


def raise_for(failure: ImageFailure) -> None:
    """Unreadable images exit 1 (a broken data set); a wrong size is a usage error (exit 2)."""
    raise UserError(failure.message, exit_code=1 if failure.reason == "unreadable" else 2)


def embed_images(
    model: nn.Module,
    sources: Sequence[Path | bytes],
    options: InferenceOptions = InferenceOptions(),
    *,
    names: Sequence[str] | None = None,
    normalize: bool = True,
    progress: Progress | None = None,
) -> np.ndarray:
    """An N x D float32 matrix of the embeddings of ``sources`` in order; the first bad image is a UserError."""
    names = source_names(sources) if names is None else names
    out = np.empty((len(sources), embedding_dim(model, options.flip)), dtype=np.float32)
    for part in iter_embeddings(model, sources, options, names=names, normalize=normalize):
        if part.failures:
            raise_for(part.failures[0])
        out[part.indices] = part.embeddings
        if progress is not None:
            progress(len(part.indices))
    refuse_identical_rows(out, sources, names)
    return out


def embed_benchmark(
    model: nn.Module,
    benchmark: Benchmark,
    options: InferenceOptions = InferenceOptions(),
    *,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(emb1, emb2)``: normalised embeddings of the first and second image of every pair of a
    :class:`facestra.protocols.Benchmark`, each distinct image embedded once.

    Ready for ``evaluate(emb1, emb2, benchmark.issame, benchmark.fold_spec())``. The model is left in the
    train/eval mode it had.
    """
    names = [benchmark.image_name(i) for i in range(len(benchmark.images))]
    embeddings = embed_images(model, benchmark.images, options, names=names, progress=progress)
    return embeddings[benchmark.pairs[:, 0]], embeddings[benchmark.pairs[:, 1]]
