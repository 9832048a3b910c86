"""The IJB images as raw features: align each loose crop with its five points, embed it with its mirror,
stream the rows to a memory-mapped ``.npy`` in a work folder, resumable.

What is stored is the network's raw output for the image and for its mirror, side by side (N x 2D float32,
``eval_ijbc.py``'s ``img_feats``), so that the combination switches (flip sum, norm, detector score) are
applied when scoring and trying another one costs no embedding. The matrix is written under a hidden
partial name with a journal of how many images are done; an interrupted run of the same job (same images,
landmarks, weights) continues from there, and the finished matrix gets its name, with a small record of
the job beside it, only when every image is in. A finished matrix of the same job is reused as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from facestra.align.geometry import LandmarkError, estimate_similarity, outside_image_problem, reference_landmarks, warp_to_crop
from facestra.data.images import decode_image
from facestra.data.images import normalize as normalize_pixels
from facestra.embed.fingerprint import job_fingerprint as embedding_job
from facestra.embed.inference import (
    InferenceOptions,
    Progress,
    embed_batch,
    refuse_identical_rows,
    refuse_meaningless_rows,
    resolve_device,
)
from facestra.embed.job import JOURNAL_INTERVAL_S, _load_journal
from facestra.errors import UserError
from facestra.io import open_reserved_memmap, read_file, remove_dead_temporaries, write_text_atomic
from facestra.locks import output_lock
from facestra.models.record import record_of
from facestra.protocols.ijb import IJBData


@dataclass(frozen=True)
class RawFeatures:
    """The finished raw-feature matrix of a benchmark and how much of it an earlier run had done."""

    path: Path
    rows: int
    dim: int
    resumed_from: int  # images done by an interrupted run (0: fresh; rows: reused whole)


class _AlignedFaces(Dataset):
    """Image ``i`` of the benchmark, aligned to the model's input with its five points: RGB uint8 H x W x 3."""

    def __init__(self, images: tuple[Path, ...], landmarks: np.ndarray, origins: list[str], input_size: tuple[int, int]) -> None:
        self.images = images
        self.landmarks = landmarks
        self.origins = origins
        self.input_size = tuple(input_size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str | None]:
        path = self.images[index]
        try:
            image = decode_image(read_file(path), str(path))
            matrix = estimate_similarity(self.landmarks[index], reference_landmarks(self.input_size))
        except OSError as error:
            return index, None, f"{self.origins[index]}: image {path}: cannot read ({error.strerror or error})"
        except UserError as error:
            return index, None, f"{self.origins[index]}: {error}"
        except LandmarkError as error:
            return index, None, f"{self.origins[index]}: the five points cannot be aligned ({error})"
        outside = outside_image_problem(self.landmarks[index], image.shape[1], image.shape[0])
        if outside is not None:  # what align calls bad_landmarks: the crop would be mostly black border
            return index, None, f"{self.origins[index]}: bad_landmarks: {outside} ({path})"
        crop = warp_to_crop(image, matrix, self.input_size)
        return index, np.ascontiguousarray(crop[:, :, ::-1]), None


def _collate(items: list) -> tuple[list[int], torch.Tensor | None, list[str]]:
    problems = [problem for _, _, problem in items if problem is not None]
    if problems:
        return [], None, problems
    return [index for index, _, _ in items], torch.from_numpy(np.stack([pixels for _, pixels, _ in items])), []


def job_fingerprint(model: nn.Module, data: IJBData, device_type: str = "cpu") -> str:
    """The same images (path, size, modification time), five points, weights and device type (a GPU
    computes in float16) may continue (or reuse) each other's features."""
    points = hashlib.sha256(np.ascontiguousarray(data.landmarks).tobytes()).hexdigest()
    job = {"ijb": data.name, "landmarks": points, "input_size": list(getattr(model, "input_size", ())), "raw": "image+mirror",
           "device": device_type}
    return embedding_job(model, [os.path.abspath(p) for p in data.images], job)


def embed_ijb(
    model: nn.Module,
    data: IJBData,
    work: str | os.PathLike,
    options: InferenceOptions = InferenceOptions(),
    *,
    progress: Progress | None = None,
) -> RawFeatures:
    """``work/<name>_raw_features.npy``: the raw image+mirror features of every image of ``data``, in order.

    An image that cannot be read or aligned is a UserError (exit 1) naming the meta line; the rows done so
    far stay in the partial file, so fixing the image and rerunning continues where it stopped.
    """
    work = Path(work)
    with output_lock(work, what=f"the IJB work folder {work}"):
        return _embed_locked(model, data, work, options, progress)


def _embed_locked(model: nn.Module, data: IJBData, work: Path, options: InferenceOptions, progress: Progress | None) -> RawFeatures:
    """:func:`embed_ijb` once the work folder's lock is held."""
    out = work / f"{data.name}_raw_features.npy"
    record = work / f"{data.name}_raw_features.json"
    partial, journal = work / f".{out.name}.partial.npy", work / f".{out.name}.partial.json"
    remove_dead_temporaries(out, record, partial, journal)
    shape = (len(data.images), 2 * int(model.embedding_size))
    fingerprint = job_fingerprint(model, data, resolve_device(options.device, model).type)
    if _finished(out, record, fingerprint, shape):
        if progress is not None:
            progress(shape[0])
        return RawFeatures(out, shape[0], shape[1], shape[0])
    state = _load_journal(journal, partial, fingerprint, shape)  # an interrupted run of this very job, or None
    if state is None:
        matrix = open_reserved_memmap(partial, shape=shape, name=out)
        done = 0
    else:
        matrix = open_reserved_memmap(partial, name=out)
        done = int(state.get("done", 0))
    resumed_from = done
    if progress is not None and done:
        progress(done)
    try:
        _fill(model, data, matrix, done, journal, fingerprint, options, progress)
        names = [data.landmark_origin(i) for i in range(len(data.images))]
        refuse_identical_rows(matrix, data.images, names)
    finally:
        matrix.flush()
        del matrix
    # The record goes last and the old one first: a crash anywhere never leaves a record naming this job
    # beside features of another (the matrix without a record is recomputed, never reused).
    record.unlink(missing_ok=True)
    os.replace(partial, out)
    write_text_atomic(record, json.dumps({"fingerprint": fingerprint, "shape": list(shape)}) + "\n")
    journal.unlink(missing_ok=True)
    return RawFeatures(out, shape[0], shape[1], resumed_from)


def _fill(model, data, matrix, done, journal, fingerprint, options, progress) -> None:
    """Embed images ``done..`` into ``matrix``, the journal following the rows flushed to disk."""
    target = resolve_device(options.device, model)
    model.to(target)
    origins = [data.landmark_origin(i) for i in range(len(data.images))]
    dataset = _AlignedFaces(data.images[done:], data.landmarks[done:], origins[done:], tuple(model.input_size))
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.workers,
                        collate_fn=_collate, pin_memory=target.type == "cuda")
    saved_at = time.monotonic()
    was_training = model.training
    convention = record_of(model).input_convention  # arcface_torch's weights take (x/255 - 0.5)/0.5
    model.eval()
    try:
        with torch.inference_mode():
            for indices, batch, problems in loader:
                if problems:
                    raise UserError(problems[0], exit_code=1)
                images = normalize_pixels(batch.to(target, non_blocking=True), convention)
                raw = embed_batch(model, images, flip="concat", normalize=False).cpu().numpy()
                refuse_meaningless_rows(raw, origins[done : done + len(indices)])
                matrix[done : done + len(indices)] = raw
                done += len(indices)
                if time.monotonic() - saved_at >= JOURNAL_INTERVAL_S:
                    _save_journal(matrix, journal, fingerprint, done)
                    saved_at = time.monotonic()
                if progress is not None:
                    progress(len(indices))
    finally:
        model.train(was_training)
        if done < len(matrix):
            _save_journal(matrix, journal, fingerprint, done)


def _save_journal(matrix: np.ndarray, journal: Path, fingerprint: str, done: int) -> None:
    matrix.flush()  # rows on disk before the journal says they are
    write_text_atomic(journal, json.dumps({"fingerprint": fingerprint, "done": done}))


def _finished(out: Path, record: Path, fingerprint: str, shape: tuple[int, int]) -> bool:
    try:
        state = json.loads(record.read_text())
        matrix = np.load(out, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return state.get("fingerprint") == fingerprint and matrix.shape == shape and matrix.dtype == np.float32
