"""The floor any trained network must beat: verification by the distance between raw aligned pixels.

The synthetic set is calibrated on this figure (it must stay at or below 70 %): if raw pixels of aligned crops
already told people apart, the data would not test a network. Same protocol as every other figure: crops
flattened, L2-normalised, and handed to :func:`facestra.verification.evaluate` with the benchmark's folds.
"""

from __future__ import annotations

import os

import numpy as np

from facestra.fileio import decode_image
from facestra.verification import VerificationResult, evaluate


def raw_pixel_embeddings(images: list[np.ndarray]) -> np.ndarray:
    """Each BGR crop flattened to float64 and scaled to unit length (after removing its mean)."""
    flat = np.stack([np.asarray(image, dtype=np.float64).reshape(-1) for image in images])
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, 1e-12)


def raw_pixel_verification(bin_path: str | os.PathLike) -> VerificationResult:
    """Verification figures of a ``.bin`` benchmark when the embedding is the aligned crop itself."""
    from facestra.protocols.registry import read_bin_benchmark

    benchmark = read_bin_benchmark(bin_path, "synth")
    images = [decode_image(data, f"{bin_path}[{i}]") for i, data in enumerate(benchmark.images)]
    embeddings = raw_pixel_embeddings(images)
    pairs = benchmark.pairs
    return evaluate(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]], benchmark.issame, benchmark.fold_spec())
