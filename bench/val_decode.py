"""What ``train --val`` pays up front for checking its benchmark: ``check_images`` against a bare decode loop.

``facestra.verify.checks.check_images`` decodes every image of a benchmark once before the first step (so
a broken ``--val`` file costs no training). This builds a ``.bin``-like benchmark of ~12,000 small JPEGs in
memory (LFW's ``lfw.bin`` holds 12,000 images of 112x112), then times, in this process and on the same
bytes, ``check_images`` and a plain ``cv2.imdecode`` loop (what any checker must do at least), best of N,
and prints both and their ratio, then the time of ``check_benchmark`` (pairs and folds) on it. The difference is
facestra's truncation check and its error handling.

    python bench/val_decode.py [--images 12000] [--size 112] [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from _timing import best_time  # bench/ is this script's folder, first on sys.path

from facestra.protocols.benchmark import Benchmark
from facestra.verify.checks import check_benchmark, check_images


def make_benchmark(num_images: int, size: int, seed: int) -> Benchmark:
    """Random-textured faces-sized JPEGs, two per pair, as a ``.bin`` holds them (encoded bytes)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 3)
    images = []
    for i in range(num_images):
        pixels = np.roll(base, i % size, axis=1) ^ np.uint8(i % 256)
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        images.append(encoded.tobytes())
    num_pairs = num_images // 2
    return Benchmark(
        name="bench",
        source=Path("bench.bin"),
        images=tuple(images[: 2 * num_pairs]),
        pairs=np.arange(2 * num_pairs, dtype=np.int64).reshape(-1, 2),
        issame=np.arange(num_pairs) % 2 == 0,
    )


def plain_loop(benchmark: Benchmark) -> None:
    for data in benchmark.images:
        if cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) is None:
            raise SystemExit("an image did not decode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cv2.setNumThreads(1)  # both loops decode one image at a time in this thread
    benchmark = make_benchmark(args.images, args.size, args.seed)
    megabytes = sum(len(b) for b in benchmark.images) / 2**20
    plain_s = best_time(lambda: plain_loop(benchmark), args.repeats)
    checked_s = best_time(lambda: check_images(benchmark), args.repeats)
    print(f"{len(benchmark.images)} JPEGs of {args.size}x{args.size} ({megabytes:.1f} MiB), best of {args.repeats}:")
    print(f"plain cv2.imdecode loop {plain_s:.2f} s ({1e6 * plain_s / len(benchmark.images):.0f} us/image)")
    print(f"check_images            {checked_s:.2f} s ({1e6 * checked_s / len(benchmark.images):.0f} us/image)")
    print(f"ratio check_images / plain loop: {checked_s / plain_s:.2f}x")
    pairs_s = best_time(lambda: check_benchmark(benchmark), args.repeats)
    print(f"check_benchmark (labels, folds, self-pairs and duplicates by image bytes) {1e3 * pairs_s:.1f} ms")


if __name__ == "__main__":
    main()
