"""Speed of ``facestra synth``: images/s on one core and on all, against an encode-only floor in the same run.

The floor is what writing the same number of 250x250 JPEG files costs with no drawing at all, so
``render / floor`` says how much the face model itself costs. Target: >= 200 images/s per core.

    python bench/synth_speed.py [--identities 100] [--images-per-identity 10] [--size 250] [--rounds 3]
                                [--workers 2 4 ...] [--out-parent /dev/shm]

Worker processes are spawned (a fresh interpreter importing numpy and OpenCV each), which costs a fixed
fraction of a second; the script measures that start-up too, so that the scaling line can be read for what it
is on runs of a few seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facestra.allocator import reuse_freed_memory


def encode_floor(count: int, size: int, folder: Path) -> float:
    """Images/s for encoding and atomically writing ``count`` noise images (no drawing)."""
    from facestra.io import write_bytes_atomic

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(8)]
    for image in images:
        cv2.GaussianBlur(image, (0, 0), 3.0, dst=image)  # photo-like, so JPEG works as hard as on faces
    started = time.perf_counter()
    for i in range(count):
        _, data = cv2.imencode(".jpg", images[i % 8], [cv2.IMWRITE_JPEG_QUALITY, 80])
        write_bytes_atomic(folder / f"{i:06d}.jpg", data.tobytes())
    return count / (time.perf_counter() - started)


def _import_renderer(_: int) -> None:
    import facestra.synth.scene  # noqa: F401  (what a synth worker imports before its first image)


def worker_start_seconds(workers: int) -> float:
    """Seconds until ``workers`` spawned processes, started as ``facestra synth`` starts them, can render."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with context.Pool(workers) as pool:
        pool.map(_import_renderer, range(workers), chunksize=1)
    return time.perf_counter() - started


def synth_rate(out: Path, identities: int, per_identity: int, size: int, workers: int) -> float:
    from facestra.synth.dataset import SynthSettings, synthesize

    settings = SynthSettings(identities=identities, images_per_identity=per_identity, size=size, seed=1,
                             test_identities=max(2, identities // 5), pairs_per_fold=20)
    started = time.perf_counter()
    synthesize(out, settings, workers=workers)
    return identities * per_identity / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--images-per-identity", type=int, default=10)
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts to time besides one (default: all cores)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of floor, one worker, the other counts, back to back; medians are reported")
    parser.add_argument("--out-parent", type=Path, default=None,
                        help="where the images go (default: the temporary folder); /dev/shm takes the disk out")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike
    cv2.setNumThreads(1)
    count = args.identities * args.images_per_identity
    cores = os.cpu_count() or 1
    counts = [1] + [w for w in (args.workers or [cores]) if w != 1]
    floors: list[float] = []
    rates: dict[int, list[float]] = {w: [] for w in counts}
    with tempfile.TemporaryDirectory(dir=args.out_parent) as tmp:
        for number in range(args.rounds):
            round_dir = Path(tmp) / str(number)
            (round_dir / "floor").mkdir(parents=True)
            floors.append(encode_floor(count, args.size, round_dir / "floor"))
            for workers in counts:
                rates[workers].append(synth_rate(round_dir / f"w{workers}", args.identities,
                                                 args.images_per_identity, args.size, workers))
    floor = statistics.median(floors)
    one = statistics.median(rates[1])
    print(f"encode+write floor, 1 core:  {floor:8.0f} images/s")
    print(f"facestra synth, 1 worker:    {one:8.0f} images/s  ({one / floor:.2f}x the floor; rounds "
          f"{min(rates[1]):.0f}..{max(rates[1]):.0f}; target >= 200/core)")
    for workers in counts[1:]:
        many = statistics.median(rates[workers])
        start = statistics.median(worker_start_seconds(workers) for _ in range(3))
        print(f"facestra synth, {workers} workers:  {many:8.0f} images/s  ({many / one:.2f}x one worker, "
              f"{many / workers:.0f} per worker; starting the {workers} worker processes takes {start:.2f} s "
              f"of each run's {count / many:.2f} s)")
    print(f"({count} images of {args.size}x{args.size} a run, including the landmarks, pairs and .bin files; "
          f"median of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f} on {cores} cores)")

if __name__ == "__main__":
    main()
