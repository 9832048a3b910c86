"""facestra's BatchNorm2d and PReLU (facestra/models/batch_norm.py, prelu.py, which train() puts in a network
that trains on the CPU) against PyTorch's nn.BatchNorm2d and nn.PReLU, side by side in one process: each
layer alone, then the training step.

    python bench/cpu_layers_speed.py [--width 0.25] [--batch 32] [--rounds 10] [--threads 1]

1. Each layer alone: forward and backward on the maps of a width-0.25 resnet50 and of its StRA units
   (BatchNorm2d) or of a resnet50's stem and an IResNet's stages (PReLU), best of ``--repeats`` calls each,
   PyTorch's and facestra's alternating.
2. The bare training step (bench/_steps.py) of resnet50, resnet50_stra and iresnet50, each network once
   with facestra's layers (as train() gives it on the CPU) and once with PyTorch's (same weights), all the
   steps taking turns; medians of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch
from _steps import bare_training_step, take_turns  # bench/ is this script's folder, first on sys.path
from torch import nn

from facestra import models
from facestra.allocator import reuse_freed_memory
from facestra.models.batch_norm import BatchNorm2d
from facestra.models.prelu import PReLU

#: (batch-less) maps of each layer in a width-0.25 network at 112x112
SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    # resnet50's stem and stages 1-4, then the StRA units' maps
    "BatchNorm2d": ((16, 112, 112), (64, 56, 56), (32, 28, 28), (128, 28, 28), (256, 14, 14), (512, 7, 7),
                    (80, 14, 14), (32, 14, 14), (80, 7, 7), (64, 7, 7), (32, 7, 7), (8, 7, 7)),
    # resnet50's stem (and iresnet50's first block), then iresnet50's stages 1-4 (3, 4, 14 and 3 blocks)
    "PReLU": ((16, 112, 112), (16, 56, 56), (32, 28, 28), (64, 14, 14), (128, 7, 7)),
}
FACESTRA_LAYERS = {"BatchNorm2d": (nn.BatchNorm2d, BatchNorm2d), "PReLU": (nn.PReLU, PReLU)}


def layer_times(kind: str, shape: tuple[int, ...], repeats: int) -> tuple[float, float]:
    """Seconds of one forward and backward of PyTorch's layer and of facestra's, on the same map."""
    x = torch.randn(shape, requires_grad=True)
    grad = torch.randn(shape)
    layers = tuple(cls(shape[1]) for cls in FACESTRA_LAYERS[kind])

    def step(layer: nn.Module) -> None:
        layer(x).backward(grad)

    times = take_turns({"PyTorch": partial(step, layers[0]), "facestra": partial(step, layers[1])}, repeats, 1)
    return min(times["PyTorch"]), min(times["facestra"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arches", default="resnet50,resnet50_stra,iresnet50")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), batch {args.batch}")
    print(f"1. each layer alone, forward + backward, best of {args.repeats}")
    print(f"   {'layer':<12} {'map':<22} {'PyTorch µs':>10} {'facestra µs':>12} {'speed-up':>9}")
    for kind, shapes in SHAPES.items():
        for shape in shapes:
            pytorch, ours = layer_times(kind, (args.batch, *shape), args.repeats)
            print(f"   {kind:<12} {'x'.join(map(str, (args.batch, *shape))):<22} {1e6 * pytorch:10.0f} {1e6 * ours:12.0f} {pytorch / ours:9.2f}")

    arches = args.arches.split(",")
    steps = {}
    for arch in arches:
        for layers in ("facestra", "PyTorch"):
            torch.manual_seed(0)
            network = models.create(arch, width=args.width, input_size=(112, 112))
            steps[arch, layers] = bare_training_step(network, args.batch, 112, faster_cpu_layers=layers == "facestra")
    times = take_turns(steps, args.rounds, args.warmup)
    print(f"2. the bare training step at width {args.width:g}, median of {args.rounds} rounds")
    print(f"   {'network':<16} {'PyTorch layers img/s':>20} {'facestra layers img/s':>22} {'speed-up':>9}")
    for arch in arches:
        pytorch, ours = (args.batch / statistics.median(times[arch, layers]) for layers in ("PyTorch", "facestra"))
        print(f"   {arch:<16} {pytorch:20.1f} {ours:22.1f} {ours / pytorch:9.3f}")


if __name__ == "__main__":
    main()
