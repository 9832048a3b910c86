"""The floor any trained network must beat: verification by the distance between raw aligned pixels.

The synthetic set is calibrated on this figure (it must stay at or below 70 %): if raw pixels of aligned crops
already told people apart, the data would not test a network. Same protocol as every other figure: crops
flattened, L2-normalised, and handed to :func:`facestra.verify.pairs.evaluate` with the benchmark's folds.
"""

from __future__ import annotations

import os

import numpy as np

from facestra.data.images import decode_image
from facestra.verify.pairs import VerificationResult, evaluate_distances


def raw_pixel_embeddings(images: list[np.ndarray]) -> np.ndarray:
    """Each BGR crop flattened to float64 and scaled to unit length (after removing its mean)."""
    flat = np.stack([np.asarray(image, dtype=np.float64).reshape(-1) for image in images])
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, 1e-12)


def raw_pixel_pair_distances(images: list[np.ndarray], pairs: np.ndarray) -> np.ndarray:
    """Squared distances of the unit raw-pixel vectors of each pair (``pairs`` indexes ``images``).

    Computed from the Gram matrix of the distinct images (|a - b|^2 = 2 - 2 a.b for unit vectors), so thousands
    of pairs never copy a pixel vector per pair.
    """
    embeddings = raw_pixel_embeddings(images)
    gram = embeddings @ embeddings.T
    return np.clip(2.0 - 2.0 * gram[pairs[:, 0], pairs[:, 1]], 0.0, 4.0)


def raw_pixel_verification(bin_path: str | os.PathLike) -> VerificationResult:
    """Verification figures of a ``.bin`` benchmark when the embedding is the aligned crop itself."""
    from facestra.protocols.registry import read_bin_benchmark

    benchmark = read_bin_benchmark(bin_path, "synth")
    # a .bin repeats an image in every pair it belongs to: decode and flatten each distinct one once
    distinct: dict[bytes, int] = {}
    rows = np.array([distinct.setdefault(data, len(distinct)) for data in benchmark.images])
    images = [decode_image(data, f"{bin_path}") for data in distinct]
    distances = raw_pixel_pair_distances(images, rows[benchmark.pairs])
    return evaluate_distances(distances, benchmark.issame, benchmark.fold_spec())
