"""The two written-out forms of StRA's local attention side by side in one process: the phase grid
(:class:`~facestra.models.stra_kernels.LocalAttentionFunction`) and the dense window matrix
(:class:`~facestra.models.stra_kernels.WindowMatrixFunction`), forward and backward.

1. The function alone, on maps around the size where :func:`~facestra.models.stra_kernels.local_attention`
   switches from the matrix to the grid (:func:`~facestra.models.stra_kernels.matrix_form_pays`), best of
   ``--repeats`` calls of each form, taking turns: the ratio grid / matrix above 1 where the matrix is faster.
2. A stride-1 StRA unit of resnet50_stra's stage 4 (7×7 maps) at ``--widths``, forward and backward with each
   form, taking turns call by call; medians. (The turns are bench/_steps.py's, the order reversed every other
   round.)

    python bench/local_attention_forms.py [--batch 32] [--repeats 30] [--widths 0.25 1.0] [--threads 1]
                                          [--device cpu|cuda]

The choice between the forms was measured on the CPU; ``--device cuda`` measures it on a GPU (each call
then waits for the GPU to finish).
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch
from _steps import take_turns  # bench/ is this script's folder, first on sys.path

from facestra import models
from facestra.allocator import reuse_freed_memory
from facestra.models import stra_kernels
from facestra.models.stra_kernels import LocalAttentionFunction, WindowMatrixFunction, output_size

#: (K, stride, map side) of part 1: stage 4's maps at 112x112 input, then larger ones up to past the switch
MAPS = ((3, 1, 7), (3, 1, 8), (3, 1, 9), (3, 1, 10), (3, 1, 12), (3, 2, 8), (3, 2, 10), (3, 2, 14),
        (5, 1, 7), (5, 1, 10), (5, 1, 14), (7, 1, 14))
FORMS = ("grid", "matrix")


def _finish(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def function_times(kernel_size: int, stride: int, side: int, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(batch, 8, 16, side, side, generator=generator).to(device).requires_grad_()
    logits = torch.randn(batch, 8, 1 + kernel_size**2, side, side, generator=generator).to(device).requires_grad_()
    grad = torch.randn(batch, 8, 16, *output_size(side, side, stride), generator=generator).to(device)
    def call(function: type[torch.autograd.Function]) -> None:
        torch.autograd.grad(function.apply(values, logits, kernel_size, stride), (values, logits), grad)
        _finish(device)

    times = take_turns({"grid": partial(call, LocalAttentionFunction), "matrix": partial(call, WindowMatrixFunction)}, repeats, 1)
    return {name: min(seconds) for name, seconds in times.items()}

def unit_times(width: float, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    unit = models.create("resnet50_stra", width=width, input_size=(112, 112)).layer4[1].mid.train().to(device)
    channels = unit.local.value.in_channels
    x = torch.randn(batch, channels, 7, 7, device=device, requires_grad=True)
    grad = torch.randn(batch, channels, 7, 7, device=device)
    def step(form: str) -> None:
        stra_kernels.matrix_form_pays = lambda nodes, kernel_size: form == "matrix"
        torch.autograd.backward(unit(x), grad)
        _finish(device)

    _finish(device)
    times = take_turns({form: partial(step, form) for form in FORMS}, repeats, 3)
    return {name: statistics.median(seconds) for name, seconds in times.items()}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    device = torch.device(args.device)
    reuse_freed_memory()  # as the facestra program does at start
    torch.set_num_threads(args.threads)
    chooses = stra_kernels.matrix_form_pays
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{where}, batch {args.batch}, 8 modes of 16 channels; ms of forward + backward")
    print(f"1. the function alone (best of {args.repeats}), and the form local_attention takes")
    print(f"   {'K':>2} {'stride':>6} {'map':>7} {'nodes':>5} {'grid':>7} {'matrix':>7} {'grid/matrix':>11}  takes")
    for kernel_size, stride, side in MAPS:
        times = function_times(kernel_size, stride, side, args.batch, args.repeats, device)
        takes = "matrix" if chooses(side * side, kernel_size) else "grid"
        print(f"   {kernel_size:>2} {stride:>6} {f'{side}x{side}':>7} {side * side:>5} {1000 * times['grid']:7.2f} "
              f"{1000 * times['matrix']:7.2f} {times['grid'] / times['matrix']:11.2f}  {takes}")
    print(f"2. resnet50_stra's stride-1 stage-4 unit (7x7), medians of {args.repeats}")
    print(f"   {'width':>5} {'grid':>7} {'matrix':>7} {'grid/matrix':>11}")
    for width in args.widths:
        times = unit_times(width, args.batch, args.repeats, device)
        print(f"   {width:>5g} {1000 * times['grid']:7.2f} {1000 * times['matrix']:7.2f} {times['grid'] / times['matrix']:11.2f}")
    stra_kernels.matrix_form_pays = chooses


if __name__ == "__main__":
    main()
