"""Speed of ``facestra synth``: images/s on one core and on all, against an encode-only floor in the same run.

The floor is what writing the same number of 250x250 JPEG files costs with no drawing at all, so
``render / floor`` says how much the face model itself costs. Target: >= 200 images/s per core.

    python bench/synth_speed.py [--identities 40] [--images-per-identity 10] [--size 250]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facestra.allocator import reuse_freed_memory


def encode_floor(count: int, size: int, folder: Path) -> float:
    """Images/s for encoding and atomically writing ``count`` noise images (no drawing)."""
    from facestra.fileio import write_bytes_atomic

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(8)]
    for image in images:
        cv2.GaussianBlur(image, (0, 0), 3.0, dst=image)  # photo-like, so JPEG works as hard as on faces
    started = time.perf_counter()
    for i in range(count):
        _, data = cv2.imencode(".jpg", images[i % 8], [cv2.IMWRITE_JPEG_QUALITY, 80])
        write_bytes_atomic(folder / f"{i:06d}.jpg", data.tobytes())
    return count / (time.perf_counter() - started)


def synth_rate(out: Path, identities: int, per_identity: int, size: int, workers: int) -> float:
    from facestra.synth import SynthSettings, synthesize

    settings = SynthSettings(identities=identities, images_per_identity=per_identity, size=size, seed=1,
                             test_identities=max(2, identities // 5), pairs_per_fold=20)
    started = time.perf_counter()
    synthesize(out, settings, workers=workers)
    return identities * per_identity / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--images-per-identity", type=int, default=10)
    parser.add_argument("--size", type=int, default=250)
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike
    cv2.setNumThreads(1)
    count = args.identities * args.images_per_identity
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "floor").mkdir()
        floor = encode_floor(count, args.size, tmp / "floor")
        one = synth_rate(tmp / "one", args.identities, args.images_per_identity, args.size, 1)
        many = synth_rate(tmp / "many", args.identities, args.images_per_identity, args.size, cores)
    print(f"encode+write floor, 1 core:  {floor:8.0f} images/s")
    print(f"facestra synth, 1 worker:    {one:8.0f} images/s  ({one / floor:.2f}x the floor; target >= 200/core)")
    print(f"facestra synth, {cores} workers:   {many:8.0f} images/s  ({many / one:.2f}x one worker)")
    print(f"({count} images of {args.size}x{args.size}, including the landmarks, pairs and .bin files; "
          f"load average {os.getloadavg()[0]:.1f} on {cores} cores)")


if __name__ == "__main__":
    main()
