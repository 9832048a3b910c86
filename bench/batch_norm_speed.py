"""facestra's BatchNorm2d (facestra/models/batch_norm.py) against PyTorch's nn.BatchNorm2d in training mode
on the CPU, side by side in one process: the layer alone, then inside the training step.

    python bench/batch_norm_speed.py [--width 0.25] [--batch 32] [--rounds 10] [--threads 1]

1. The layer alone: forward and backward on the maps of a width-0.25 resnet50 and of its StRA units,
   best of ``--repeats`` calls each, the two layers alternating.
2. The bare training step (bench/_steps.py) of resnet50 and resnet50_stra, each network once as facestra
   builds it and once with every BatchNorm2d swapped for PyTorch's (same weights), the four steps taking
   turns; medians of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _steps import bare_training_step, take_turns  # bench/ is this script's folder, first on sys.path
from _timing import best_time
from torch import nn

from facestra import models
from facestra.allocator import reuse_freed_memory
from facestra.models.batch_norm import BatchNorm2d

#: (batch-less) maps of a width-0.25 resnet50 at 112x112 (stem, stages 1-4) and of its StRA units
SHAPES = ((16, 112, 112), (64, 56, 56), (32, 28, 28), (128, 28, 28), (256, 14, 14), (512, 7, 7),
          (80, 14, 14), (32, 14, 14), (80, 7, 7), (64, 7, 7), (32, 7, 7), (8, 7, 7))


def with_pytorch_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every facestra BatchNorm2d replaced by PyTorch's, holding the same tensors."""
    for name, child in module.named_children():
        if type(child) is BatchNorm2d:
            native = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            native.load_state_dict(child.state_dict())
            setattr(module, name, native)
        else:
            with_pytorch_batch_norm(child)
    return module


def layer_times(shape: tuple[int, ...], repeats: int) -> tuple[float, float]:
    """Seconds of one forward and backward of PyTorch's layer and of facestra's, on the same map."""
    x = torch.randn(shape, requires_grad=True)
    grad = torch.randn(shape)
    layers = (nn.BatchNorm2d(shape[1]), BatchNorm2d(shape[1]))

    def step(layer: nn.Module) -> None:
        layer(x).backward(grad)

    for layer in layers:
        step(layer)
    pytorch, ours = [], []
    for _ in range(repeats):
        pytorch.append(best_time(lambda: step(layers[0]), 1))
        ours.append(best_time(lambda: step(layers[1]), 1))
    return min(pytorch), min(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), batch {args.batch}")
    print("1. the layer alone, forward + backward, best of", args.repeats)
    print(f"   {'map':<22} {'PyTorch µs':>10} {'facestra µs':>12} {'speed-up':>9}")
    for shape in SHAPES:
        pytorch, ours = layer_times((args.batch, *shape), args.repeats)
        print(f"   {'x'.join(map(str, (args.batch, *shape))):<22} {1e6 * pytorch:10.0f} {1e6 * ours:12.0f} {pytorch / ours:9.2f}")

    steps = {}
    for arch in ("resnet50", "resnet50_stra"):
        for norm in ("facestra", "PyTorch"):
            torch.manual_seed(0)
            network = models.create(arch, width=args.width, input_size=(112, 112))
            network = with_pytorch_batch_norm(network) if norm == "PyTorch" else network
            steps[arch, norm] = bare_training_step(network, args.batch, 112)
    times = take_turns(steps, args.rounds, args.warmup)
    print(f"2. the bare training step at width {args.width:g}, median of {args.rounds} rounds")
    print(f"   {'network':<16} {'PyTorch img/s':>13} {'facestra img/s':>15} {'speed-up':>9}")
    for arch in ("resnet50", "resnet50_stra"):
        pytorch, ours = (args.batch / statistics.median(times[arch, norm]) for norm in ("PyTorch", "facestra"))
        print(f"   {arch:<16} {pytorch:13.1f} {ours:15.1f} {ours / pytorch:9.3f}")


if __name__ == "__main__":
    main()
