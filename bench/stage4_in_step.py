"""Stage 4's forward and backward time inside a whole training step, resnet50 against resnet50_stra and its
ablations, side by side in one process.

    python bench/stage4_in_step.py [--width 0.25] [--batch 32] [--rounds 12] [--threads 1] [--parts]

Each network runs the bare training step of bench/train_speed.py (bench/_steps.py: forward with the
diversity loss, softmax head, backward, SGD), the networks taking turns step by step (the order reversed every other round). Two
marks time stage 4 inside each step: from its input to its output in the forward, and from the moment its
output's gradient arrives to the moment its input's leaves in the backward. Stage 4 is where the networks
differ, and timing it inside the step sees what a unit timed alone (bench/model_speed.py --part unit-*)
does not: caches holding the rest of the network's activations, as in training. The rounds are few
because the figure is a difference of a few milliseconds in a window of about seventy, not of a whole
800 ms step; the medians printed are per stage-4 pass.

The rows besides resnet50_stra are the paper's ablations (Table 2): without mode interaction, and local
attention only; what each adds over the one below it is what that part of the unit costs. ``--parts`` also
clocks the middle layers themselves, summed over stage 4's blocks: the 3x3 convolutions of resnet50 against
the local and the mode attention of resnet50_stra (the backward of the diversity loss, which reaches the
masks before the features' gradient arrives, outside the mode attention's window).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _steps import bare_training_step, take_turns  # bench/ is this script's folder, first on sys.path
from torch import Tensor, nn

from facestra import models
from facestra.allocator import reuse_freed_memory

#: name -> (architecture, StRA switches)
NETWORKS: dict[str, tuple[str, dict[str, bool]]] = {
    "resnet50": ("resnet50", {}),
    "resnet50_stra": ("resnet50_stra", {}),
    "resnet50_stra, no mode interaction": ("resnet50_stra", {"mode_interaction": False}),
    "resnet50_stra, local attention only": ("resnet50_stra", {"mode_attention": False}),
}


class StageClock:
    """The forward and backward time of one stage, read by two autograd marks around it."""

    def __init__(self) -> None:
        self.forward: list[float] = []
        self.backward: list[float] = []
        self._forward_start = 0.0
        self._backward_start = 0.0

    def mark(self, x: Tensor, *, entering: bool) -> Tensor:
        return _Mark.apply(x, self, entering)

    def forward_passes(self, entering: bool) -> None:
        now = time.perf_counter()
        if entering:
            self._forward_start = now
        else:
            self.forward.append(now - self._forward_start)

    def gradient_passes(self, entering: bool) -> None:
        now = time.perf_counter()
        if entering:  # the gradient leaves the stage through its input
            self.backward.append(now - self._backward_start)
        else:
            self._backward_start = now


class _Mark(torch.autograd.Function):
    """The identity, noting the time when the forward passes it and when the gradient does."""

    @staticmethod
    def forward(ctx, x: Tensor, clock: StageClock, entering: bool) -> Tensor:
        ctx.clock, ctx.entering = clock, entering
        clock.forward_passes(entering)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        ctx.clock.gradient_passes(ctx.entering)
        return grad, None, None


def clock_stage4(network: nn.Module) -> StageClock:
    """Wrap the first and last blocks of ``network.layer4`` with the marks of a new clock."""
    clock = StageClock()
    first, last = network.layer4[0], network.layer4[-1]
    first_forward, last_forward = first.forward_with_diversity, last.forward_with_diversity

    def entering(x: Tensor) -> tuple[Tensor, Tensor]:
        return first_forward(clock.mark(x, entering=True))

    def leaving(x: Tensor) -> tuple[Tensor, Tensor]:
        out, diversity = last_forward(x)
        return clock.mark(out, entering=False), diversity

    first.forward_with_diversity, last.forward_with_diversity = entering, leaving
    return clock


def clock_module(module: nn.Module, clock: StageClock) -> None:
    """Wrap ``module``'s forward (one tensor in; a tensor, or a tuple led by one, out) with the marks of ``clock``."""
    forward = module.forward

    def marked(x: Tensor):
        out = forward(clock.mark(x, entering=True))
        if isinstance(out, tuple):
            return clock.mark(out[0], entering=False), *out[1:]
        return clock.mark(out, entering=False)

    module.forward = marked


def clock_middle_layers(network: nn.Module) -> dict[str, StageClock]:
    """One clock per part of stage 4's middle layers, each passed once per block: the convolution, or the
    local and the mode attention of the StRA unit (without mode attention, the local attention alone)."""
    clocks: dict[str, StageClock] = {}
    for block in network.layer4:
        parts = {"local attention": block.mid.local, "mode attention": block.mid.mode} if block.mid_name == "stra" else {"3x3 convolution": block.mid}
        for name, module in parts.items():
            if module is not None:
                clock_module(module, clocks.setdefault(name, StageClock()))
    return clocks


def per_step(times: list[float], steps: int, warmup: int) -> float:
    """Milliseconds a step, median over the steps after ``warmup``, of a clock passed the same number of times
    in each of ``steps`` steps (its passes in one step summed)."""
    passes = len(times) // steps
    totals = [sum(times[i : i + passes]) for i in range(0, len(times), passes)]
    return 1000 * statistics.median(totals[warmup:])


def training_step(arch: str, switches: dict[str, bool], args) -> tuple[Callable[[], None], StageClock, dict[str, StageClock]]:
    torch.manual_seed(0)
    network = models.create(arch, width=args.width, input_size=(112, 112), **switches)
    clock = clock_stage4(network)
    parts = clock_middle_layers(network) if args.parts else {}
    return bare_training_step(network, args.batch, 112), clock, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", action="store_true", help="also clock the middle layers' parts")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start
    torch.set_num_threads(args.threads)
    runs = {name: training_step(arch, switches, args) for name, (arch, switches) in NETWORKS.items()}
    take_turns({name: step for name, (step, _, _) in runs.items()}, args.rounds, args.warmup)
    print(f"stage 4 inside the training step: width {args.width:g}, batch {args.batch}, 112x112, CPU, "
          f"{args.threads} thread(s), median of {args.rounds} rounds after {args.warmup}")
    print(f"   {'network':<40} {'forward ms':>10} {'backward ms':>12} {'total ms':>9} {'/ resnet50':>11}")
    steps, baseline = args.warmup + args.rounds, None
    for name, (_, clock, _) in runs.items():
        forward, backward = per_step(clock.forward, steps, args.warmup), per_step(clock.backward, steps, args.warmup)
        baseline = baseline or forward + backward
        print(f"   {name:<40} {forward:10.2f} {backward:12.2f} {forward + backward:9.2f} {(forward + backward) / baseline:11.3f}")
    if args.parts:
        print("stage 4's middle layers, summed over its blocks, ms a step (median)")
        print(f"   {'network':<40} {'part':<16} {'forward':>8} {'backward':>9} {'total':>7}")
        for name, (_, _, parts) in runs.items():
            for part, clock in parts.items():
                forward, backward = per_step(clock.forward, steps, args.warmup), per_step(clock.backward, steps, args.warmup)
                print(f"   {name:<40} {part:<16} {forward:8.2f} {backward:9.2f} {forward + backward:7.2f}")


if __name__ == "__main__":
    main()
