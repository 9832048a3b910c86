"""Training throughput of resnet50 and resnet50_stra, and of the data loader alone, side by side.

    python bench/train_speed.py [--width 0.25] [--input 112] [--batch 32] [--steps 6] [--workers 2]

Both networks train through :func:`facestra.train.train` itself (loader, forward, head, backward, SGD) on
the same JPEG ImageFolder written to a temporary folder; images/s is the median over the measured steps
(the first steps are warm-up). The loader alone iterates the same DataLoader configuration without a
network: its rate divided by the training rate says how far the loader is from being the bottleneck
(above 1: the network is the bottleneck).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facestra.allocator import reuse_freed_memory
from facestra.data.datasets import EpochBatchSampler, open_dataset
from facestra.train import TrainConfig, train


def write_faces(root: Path, identities: int, per_identity: int, size: tuple[int, int]) -> Path:
    """Random coloured ellipses as JPEG files, one folder per identity."""
    rng = np.random.default_rng(0)
    height, width = size
    for identity in range(identities):
        folder = root / f"{identity:04d}"
        folder.mkdir(parents=True)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        for n in range(per_identity):
            image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
            centre = (int(width / 2 + rng.integers(-8, 9)), int(height / 2 + rng.integers(-8, 9)))
            cv2.ellipse(image, centre, (width // 3, height // 2 - 4), float(rng.integers(-15, 16)), 0, 360, colour, -1)
            cv2.imwrite(str(folder / f"{n:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return root


def loader_rate(data: Path, *, input_size, batch: int, workers: int, steps: int) -> float:
    """Images/s of the training DataLoader (decode, flip, normalise, collate) without a network."""
    dataset = open_dataset(data, input_size)
    sampler = EpochBatchSampler(len(dataset), global_batch=batch, seed=0, epoch=0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, prefetch_factor=4 if workers else None)
    iterator = iter(loader)
    next(iterator)  # workers started
    start = time.perf_counter()
    count = 0
    for _ in range(min(steps, len(sampler) - 1)):
        count += len(next(iterator)[0])
    return count / (time.perf_counter() - start)


def training_rate(data: Path, out: Path, arch: str, args) -> float:
    rates: list[float] = []

    def record(event) -> None:
        if event.kind == "step" and event.global_step > args.warmup:
            rates.append(event.values["images_per_s"])

    train(TrainConfig(
        data=str(data), out=str(out), arch=arch, width=args.width, input_size=(args.input, args.input),
        batch_size=args.batch, epochs=1, max_steps=args.warmup + args.steps, workers=args.workers,
        log_every=1, device=args.device, amp=args.amp, threads=args.threads,
    ), progress=record)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=None, help="channel width (default 1.0 on GPU, 0.25 on CPU)")
    parser.add_argument("--input", type=int, default=112)
    parser.add_argument("--batch", type=int, default=None, help="global batch (default 256 on GPU, 32 on CPU)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="none")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike
    gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.width = args.width if args.width is not None else (1.0 if gpu else 0.25)
    args.batch = args.batch if args.batch is not None else (256 if gpu else 32)
    size = (args.input, args.input)
    per_identity = -(-args.batch * (args.warmup + args.steps + 2) // 16)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_faces(Path(tmp) / "data", 16, per_identity, size)
        print(f"device {'cuda' if gpu else 'cpu'}, input {args.input}x{args.input}, width {args.width:g}, batch {args.batch}, "
              f"workers {args.workers}, torch threads {args.threads or torch.get_num_threads()}")
        loader = loader_rate(data, input_size=size, batch=args.batch, workers=args.workers, steps=args.warmup + args.steps)
        print(f"data loader alone     {loader:9.1f} img/s")
        rates = {}
        for arch in ("resnet50", "resnet50_stra"):
            rates[arch] = training_rate(data, Path(tmp) / arch, arch, args)
            print(f"train {arch:<15} {rates[arch]:9.1f} img/s   loader / train = {loader / rates[arch]:.1f}")
        print(f"resnet50_stra / resnet50 training speed: {rates['resnet50_stra'] / rates['resnet50']:.3f}")


if __name__ == "__main__":
    main()
