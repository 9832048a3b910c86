"""Throughput of the ``facestra embed`` pipeline against the bare model forward on the same tensors.

The pipeline reads and decodes the image files in DataLoader workers, batches, runs the model (with the
mirror images when flipping), normalises and copies to numpy. The baseline runs only the model's forward
on the already decoded tensors, batch by batch, the same way (inference mode, channels-last, autocast on
GPU). Rounds alternate between the two and the best round of each is kept, so both see the same machine.
On a shared CPU box wall-clock times swing with other jobs; the ratio of CPU seconds (this process and
its loader workers) is printed too, as the steadier figure there.

    python bench/embed_speed.py [--arch resnet50 --width 0.5 --images 256 --batch-size 64 --workers 1 --threads 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facestra import models
from facestra.allocator import reuse_freed_memory
from facestra.data.images import image_to_tensor
from facestra.embed.inference import InferenceOptions, embed_images, load_for_inference


def bare_forward(model: torch.nn.Module, tensors: torch.Tensor, batch_size: int, flip: bool, device: torch.device) -> None:
    with torch.inference_mode():
        for batch in tensors.split(batch_size):
            batch = batch.to(device, non_blocking=True)
            if flip:
                batch = torch.cat([batch, batch.flip(3)])
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=device.type == "cuda"):
                out = model(batch)
            out.float().cpu()


def timed(function) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds of this process and its finished children (the loader workers)."""
    def cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    start_wall, start_cpu = time.perf_counter(), cpu()
    function()
    return time.perf_counter() - start_wall, cpu() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = folder / "model.pt"
        models.save(models.create(args.arch, width=args.width), checkpoint)
        model = load_for_inference(checkpoint, args.device)
        device = next(model.parameters()).device
        height, width = model.input_size
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.images):
            path = folder / f"{i:05d}.jpg"
            cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            paths.append(path)
        tensors = torch.stack([image_to_tensor(cv2.imread(str(p))) for p in paths])
        if device.type == "cuda":
            tensors = tensors.pin_memory()
        print(f"{args.arch} width {args.width:g}, {args.images} images {height}x{width}, batch {args.batch_size}, "
              f"workers {args.workers}, device {device}, torch threads {torch.get_num_threads()}")
        for flip in ("none", "concat"):
            mirrored = flip != "none"

            def run_bare(mirrored: bool = mirrored) -> None:
                bare_forward(model, tensors, args.batch_size, mirrored, device)

            def run_pipeline(flip: str = flip) -> None:
                embed_images(model, paths, InferenceOptions(flip=flip, batch_size=args.batch_size, workers=args.workers))

            bare_forward(model, tensors[: args.batch_size], args.batch_size, mirrored, device)  # warm-up
            bare, pipeline = [], []
            for _ in range(args.rounds):  # alternate, so that both see the same load on the machine
                bare.append(timed(run_bare))
                pipeline.append(timed(run_pipeline))
            bare_wall, bare_cpu = (min(t[i] for t in bare) for i in (0, 1))
            pipe_wall, pipe_cpu = (min(t[i] for t in pipeline) for i in (0, 1))
            print(f"flip {flip:<6}: bare forward {args.images / bare_wall:8.1f} img/s, embed pipeline "
                  f"{args.images / pipe_wall:8.1f} img/s: ratio {bare_wall / pipe_wall:.3f} wall-clock (best of "
                  f"{args.rounds} rounds each), {bare_cpu / pipe_cpu:.3f} in CPU time (target >= 0.9)")


if __name__ == "__main__":
    main()
