"""Training throughput through :func:`facestra.train.train`: the loader's cost (synthetic data vs a JPEG folder)
and resnet50_stra against resnet50, each as a ratio of runs made in this process.

    python bench/train_speed.py [--loader-width 0.5] [--width 0.25] [--input 112] [--batch 32] [--steps 8]
                                [--workers 2] [--repeats 2] [--threads N]

1. Loader: the same network trained on ``--data synthetic`` (one image in memory, as arcface_torch's
   SyntheticDataset: no disk, no decoding) and on a JPEG ImageFolder written to a temporary folder, side
   by side; JPEG / synthetic is what the loader costs the whole step.
2. Networks: resnet50 and resnet50_stra trained on the JPEG folder, in the order A B B A for each repeat
   (a run's position in the process then weighs on both alike), and the bare step (forward, backward,
   SGD on one batch, without train()) of each, the networks taking turns step by step. Besides images/s of wall time, the images per CPU-second of
   this process are shown: on a shared machine wall time also counts the other processes' load, CPU time
   counts only this run's work (and the spinning of its threads while one of them waits for a core).
3. The ceiling: the bare step of resnet50 with stage 4's middle layers replaced by a strided slice (no
   work at all), taking its turns among the bare steps. No implementation of StRA can bring
   resnet50_stra / resnet50 above this ratio; how far below it the measured ratio lies is what StRA's
   units cost beyond the 3x3 convolutions they replace.

Every rate is the median over a run's steps after ``--warmup`` steps; the whole-run rate counts the
train() call from start to end (building, loading, saving). A first train() call, whose rate is shown
but used nowhere, warms up the process.

On a 2-core machine shared with other processes, use ``--threads 1``: with two OpenMP threads on two
cores, every parallel region ends at a barrier where one thread spins while the other waits for a core
taken by another process (or by a loader worker), so the same run measures anywhere from 5 to 65 img/s and
its CPU time inflates with the spinning; resnet50_stra, with more and smaller operations per step, pays
more such barriers. One thread has no barrier and gives the same figures run after run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from _steps import bare_training_step, take_turns  # bench/ is this script's folder, first on sys.path
from torch import nn

from facestra import models
from facestra.allocator import reuse_freed_memory
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


class Rates:
    """One train() call's step rates (wall and CPU of this process) and its whole duration."""

    def __init__(self, warmup: int, batch: int) -> None:
        self.warmup, self.batch = warmup, batch
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.last = (time.perf_counter(), time.process_time())
        self.whole_s = 0.0
        self.images = 0

    def record(self, event) -> None:
        now = (time.perf_counter(), time.process_time())
        if event.kind == "step":
            if event.global_step > self.warmup:
                self.wall.append(self.batch / max(now[0] - self.last[0], 1e-9))
                self.cpu.append(self.batch / max(now[1] - self.last[1], 1e-9))
            self.images += self.batch
        self.last = now

    @property
    def step_rate(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_rate(self) -> float:
        return statistics.median(self.cpu)

    @property
    def whole_rate(self) -> float:
        return self.images / self.whole_s


def training_rates(data: str, out: Path, arch: str, width: float, args) -> Rates:
    rates = Rates(args.warmup, args.batch)
    start = time.perf_counter()
    train(TrainConfig(
        data=data, out=str(out), arch=arch, width=width, input_size=(args.input, args.input), batch_size=args.batch, epochs=1,
        max_steps=args.warmup + args.steps, workers=args.workers, log_every=1, device=args.device, amp=args.amp, threads=args.threads,
        overwrite=True,
    ), progress=rates.record)
    rates.whole_s = time.perf_counter() - start
    return rates


class Subsample(nn.Module):
    """A middle layer that costs nothing: every stride-th node, as the layer's output shape requires."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :: self.stride, :: self.stride]


#: resnet50 whose stage-4 blocks hold :class:`Subsample` in their middle slot (the ceiling of part 3).
NO_STAGE4_MIDDLE = "resnet50 without stage 4's middle layers"


def create_network(arch: str, width: float, input_size: tuple[int, int]) -> nn.Module:
    if arch != NO_STAGE4_MIDDLE:
        return models.create(arch, width=width, input_size=input_size)
    network = models.create("resnet50", width=width, input_size=input_size)
    for block in network.layer4:
        setattr(block, block.mid_name, Subsample(block.mid.stride[0]))
    return network


def bare_step_rates(arches: tuple[str, ...], width: float, args) -> dict[str, float]:
    """Images/s of forward + diversity + head + backward + SGD on one batch, as train() computes them, without
    train(): one step of each network in turn (the order reversed every other round), ``--repeats`` times
    ``--steps`` rounds after ``--warmup``, so that a slow spell of the machine falls on every network alike."""
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads_before)  # as train() sets them
    try:
        steps = {arch: _bare_step(arch, width, args) for arch in arches}
        times = take_turns(steps, args.repeats * args.steps, args.warmup)
        return {arch: args.batch / statistics.median(arch_times) for arch, arch_times in times.items()}
    finally:
        torch.set_num_threads(threads_before)


def _bare_step(arch: str, width: float, args) -> Callable[[], None]:
    torch.manual_seed(0)
    return bare_training_step(create_network(arch, width, (args.input, args.input)), args.batch, args.input)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loader-width", type=float, default=0.5, help="width of the loader comparison (1)")
    parser.add_argument("--width", type=float, default=None, help="width of the network comparison (2; default 1.0 on GPU, 0.25 on CPU)")
    parser.add_argument("--loader-arch", default="resnet50_stra")
    parser.add_argument("--input", type=int, default=112)
    parser.add_argument("--batch", type=int, default=None, help="global batch (default 256 on GPU, 32 on CPU)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="none")
    parser.add_argument("--skip", choices=("loader", "networks"), default=None)
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike
    gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.width = args.width if args.width is not None else (1.0 if gpu else 0.25)
    args.batch = args.batch if args.batch is not None else (256 if gpu else 32)
    size = (args.input, args.input)
    per_identity = -(-args.batch * (args.warmup + args.steps + 2) // 16)
    print(f"device {'cuda' if gpu else 'cpu'}, input {args.input}x{args.input}, batch {args.batch}, workers {args.workers}, "
          f"torch threads {args.threads or torch.get_num_threads()}, {args.steps} measured steps after {args.warmup}, "
          f"{args.repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = str(write_faces(Path(tmp) / "data", 16, per_identity, size))
        synthetic = f"synthetic:16:{16 * per_identity}"
        first = training_rates(jpeg, Path(tmp) / "first", "resnet50", args.width, args)
        print(f"first train() call of the process (resnet50, width {args.width:g}): {first.step_rate:.1f} img/s, not used below")

        if args.skip != "loader":
            runs: dict[str, list[Rates]] = {"synthetic": [], "jpeg": []}
            for repeat in range(args.repeats):
                order = ("synthetic", "jpeg") if repeat % 2 == 0 else ("jpeg", "synthetic")
                for name in order:
                    runs[name].append(training_rates(synthetic if name == "synthetic" else jpeg, Path(tmp) / name, args.loader_arch,
                                                     args.loader_width, args))
            print(f"\n1. loader: {args.loader_arch} at width {args.loader_width:g}      step img/s   img/cpu-s   whole run img/s")
            medians = {}
            for name, rates in runs.items():
                medians[name] = [statistics.median(getattr(r, key) for r in rates) for key in ("step_rate", "cpu_rate", "whole_rate")]
                print(f"   {name:<38} {medians[name][0]:9.1f} {medians[name][1]:11.1f} {medians[name][2]:17.1f}")
            ratio = [j / s for j, s in zip(medians["jpeg"], medians["synthetic"])]
            print(f"   JPEG / synthetic                       {ratio[0]:9.3f} {ratio[1]:11.3f} {ratio[2]:17.3f}")

        if args.skip != "networks":
            arches = ("resnet50", "resnet50_stra")
            nets: dict[str, list[Rates]] = {arch: [] for arch in arches}
            for _ in range(args.repeats):
                for arch in (*arches, *reversed(arches)):  # A B B A
                    nets[arch].append(training_rates(jpeg, Path(tmp) / arch, arch, args.width, args))
            bare = bare_step_rates((*arches, NO_STAGE4_MIDDLE), args.width, args)
            print(f"\n2. networks at width {args.width:g} (JPEG folder)      step img/s   img/cpu-s   whole run img/s   bare step img/s")
            medians = {}
            for arch in arches:
                medians[arch] = [statistics.median(getattr(r, key) for r in nets[arch]) for key in ("step_rate", "cpu_rate", "whole_rate")]
                medians[arch].append(bare[arch])
                print(f"   train {arch:<32} {medians[arch][0]:9.1f} {medians[arch][1]:11.1f} {medians[arch][2]:17.1f} {bare[arch]:17.1f}")
                print(f"      each run's step img/s: {', '.join(f'{r.step_rate:.1f}' for r in nets[arch])}")
            ratio = [s / r for s, r in zip(medians["resnet50_stra"], medians["resnet50"])]
            print(f"   resnet50_stra / resnet50               {ratio[0]:9.3f} {ratio[1]:11.3f} {ratio[2]:17.3f} {ratio[3]:17.3f}")
            print(f"\n3. ceiling: bare step of {NO_STAGE4_MIDDLE}: {bare[NO_STAGE4_MIDDLE]:.1f} img/s, "
                  f"/ resnet50 {bare[NO_STAGE4_MIDDLE] / bare['resnet50']:.3f}")


if __name__ == "__main__":
    main()
