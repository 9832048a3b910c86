"""Aligned images per second of ``facestra align`` against a floor measured in the same run.

The floor is the least any aligner must do: a plain loop that reads the same files, decodes them and calls
``cv2.warpAffine`` with a fixed matrix. The job on top of that validates landmarks, fits the similarity,
encodes and atomically writes each crop, and journals progress; the ratio says what that costs
(target: >= 0.8 with one worker), and the multi-worker lines say how it scales.

    python bench/align_speed.py [--images 1500] [--side 250] [--workers 1 2] [--rounds 3] [--out-parent DIR]

Encoding and writing one file per face is part of the job but not of the floor, so the script also prints
what encoding a crop and writing a crop-sized file cost where the outputs go (``--out-parent``, default: next
to the images) and the ratio those costs alone allow on one thread; on a machine whose file system makes
writing expensive, compare with ``--out-parent /dev/shm``. With one worker the job reads and decodes on its
main thread while a helper thread fits, warps, encodes and writes, which hides part of that cost; with
several, each process works alone on its core.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facestra.align.geometry import ARCFACE_TEMPLATE_112
from facestra.align.job import AlignOptions, align_images
from facestra.allocator import reuse_freed_memory
from facestra.io import write_bytes_atomic


def make_images(root: Path, count: int, side: int, seed: int = 0) -> Path:
    """JPEG photos of textured 'faces' at random similarities, and their landmarks CSV."""
    rng = np.random.default_rng(seed)
    lines = ["path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5"]
    for index in range(count):
        noise = rng.integers(0, 256, size=(side // 8, side // 8, 3), dtype=np.uint8)
        image = cv2.resize(noise, (side, side), interpolation=cv2.INTER_CUBIC)
        scale = side / 112 * rng.uniform(0.45, 0.7)
        angle = np.deg2rad(rng.uniform(-25, 25))
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = side / 2 + rng.uniform(-side / 10, side / 10, size=2)
        points = (ARCFACE_TEMPLATE_112 - 56.0) @ rotation.T + centre
        for x, y in points:
            cv2.circle(image, (int(x), int(y)), max(2, side // 60), (20, 20, 20), -1)
        name = f"id{index % 50:02d}/{index:05d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        lines.append(",".join([name, *(f"{v:.2f}" for v in points.reshape(-1))]))
    marks = root.parent / "landmarks.csv"
    marks.write_text("\n".join(lines) + "\n")
    return marks


def floor_rate(files: list[Path]) -> float:
    """Images per second of read + decode + warpAffine with a fixed matrix, nothing else."""
    matrix = np.array([[0.5, 0.0, 10.0], [0.0, 0.5, 10.0]])
    started = time.perf_counter()
    for path in files:
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return len(files) / (time.perf_counter() - started)


def crop_write_seconds(folder: Path, count: int = 200) -> float:
    """Seconds to write one crop-sized file (5 KB) atomically in ``folder``: what no aligner can avoid."""
    probe = folder / "write-probe"
    data = bytes(5000)
    started = time.perf_counter()
    for index in range(count):
        write_bytes_atomic(probe / f"{index}.jpg", data, overwrite=False)
    seconds = (time.perf_counter() - started) / count
    shutil.rmtree(probe)
    return seconds


def crop_encode_seconds(files: list[Path], count: int = 200) -> float:
    """Seconds to JPEG-encode one 112x112 crop (quality 95, the default): also part of the job, not the floor."""
    crops = [cv2.resize(cv2.imread(str(path)), (112, 112)) for path in files[:count]]
    started = time.perf_counter()
    for crop in crops:
        cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return (time.perf_counter() - started) / len(crops)


def align_rate(images: Path, marks: Path, work: Path, workers: int) -> float:
    out = work / f"out-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = align_images(images, out, AlignOptions(landmarks=marks, workers=workers))
    seconds = time.perf_counter() - started
    assert summary.counts.get("ok") == summary.images, summary.line()
    assert summary.workers == workers, f"the job used {summary.workers} workers; give more --images"
    return summary.images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--side", type=int, default=250, help="image side in pixels (LFW photos are 250)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of floor-then-align, back to back; the median ratio is reported")
    parser.add_argument("--out-parent", type=Path, default=None, help="where the aligned outputs go")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike

    with tempfile.TemporaryDirectory(prefix="align-bench-") as tmp:
        work = Path(tmp)
        images = work / "images"
        images.mkdir()
        marks = make_images(images, args.images, args.side)
        files = sorted(images.rglob("*.jpg"))
        floor_rate(files[:50])  # warm the page cache and OpenCV
        outputs = Path(tempfile.mkdtemp(prefix="align-bench-out-", dir=args.out_parent)) if args.out_parent else work
        write = crop_write_seconds(outputs) + crop_encode_seconds(files)
        # Each round measures the floor and then every worker count right after it, so that a load change
        # on a shared machine hits both sides of a ratio alike.
        floors: list[float] = []
        rates: dict[int, list[float]] = {w: [] for w in args.workers}
        for _ in range(args.rounds):
            floors.append(floor_rate(files))
            for workers in args.workers:
                rates[workers].append(align_rate(images, marks, outputs, workers))
        print(f"align_speed: {len(files)} JPEG images {args.side}x{args.side} -> 112x112 jpg in {outputs}")
        floor_us, write_us = 1e6 / statistics.median(floors), write * 1e6
        print(f"align_speed: floor per image {floor_us:.0f} us; encoding a crop and writing it atomically there "
              f"{write_us:.0f} us, so on one thread the outputs alone cap the ratio at "
              f"{floor_us / (floor_us + write_us):.2f}")
        print(f"align_speed: floor (read + decode + warpAffine, fixed matrix): best {max(floors):8.1f} images/s")
        first = args.workers[0]
        for workers in args.workers:
            ratios = sorted(r / f for r, f in zip(rates[workers], floors))
            scaling = statistics.median(r / s for r, s in zip(rates[workers], rates[first]))
            print(f"align_speed: facestra align --workers {workers}: best {max(rates[workers]):8.1f} images/s  "
                  f"ratio to floor {statistics.median(ratios):.2f} (median of {len(ratios)} rounds, "
                  f"{ratios[0]:.2f}..{ratios[-1]:.2f})  x{scaling:.2f} vs --workers {first}")
        if outputs != work:
            shutil.rmtree(outputs, ignore_errors=True)


if __name__ == "__main__":
    main()
