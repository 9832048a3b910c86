"""The margin head's elementwise work: facestra's :func:`~facestra.train.heads.margin_logits` against the
same function written as a select over the whole (rows × classes) matrix, side by side in one process.

Both forms compute arcface_torch's combined margin from the same cosines; the select form (a boolean mask of
the true-class columns, ``torch.where`` of the target broadcast over each row against the cosines) is how
facestra wrote it until the margin was scattered into its one column per row. What is timed is the margin
alone (forward, and backward of a given gradient to the cosines), then with the cross-entropy after it: what
a step spends between the cosine matrix and the loss (the products with the class weights are the same for
both forms and left out).

    python bench/margin_head.py [--batch 128] [--classes 10000 93431] [--threads 2] [--rounds 20]
"""

from __future__ import annotations

import argparse
import math

from _timing import parse_with_blas_threads  # bench/ is this script's folder, first on sys.path


def select_form(cosine, labels, spec):
    """The margin by a select over the whole matrix (facestra's form before the scatter)."""
    import torch

    m1, m2, m3 = spec.margins
    if spec.angular:
        cosine = cosine.clamp(-1.0, 1.0)
    owned = labels >= 0
    column = labels.clamp_min(0).unsqueeze(1)
    target = cosine.gather(1, column)
    if spec.angular and m1 == 1.0:
        sine = torch.sqrt((1.0 - target * target).clamp_min(0.0))
        threshold = math.cos(math.pi - m2)
        target = torch.where(target > threshold, target * math.cos(m2) - sine * math.sin(m2), target - m2 * math.sin(m2))
    elif spec.angular:
        turn = math.cos((math.pi - m2) / m1)
        theta = torch.acos(target.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
        target = torch.where(target > turn, torch.cos(m1 * theta + m2), target - turn - 1.0)
    target = target - m3
    mask = torch.zeros_like(cosine, dtype=torch.bool).scatter_(1, column, owned.unsqueeze(1))
    return spec.scale * torch.where(mask, target.expand_as(cosine), cosine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--classes", type=int, nargs="+", default=[10000, 93431])
    parser.add_argument("--rounds", type=int, default=20)
    args = parse_with_blas_threads(parser)

    import torch
    import torch.nn.functional as F
    from _steps import take_turns

    from facestra.allocator import reuse_freed_memory
    from facestra.train.heads import margin_logits
    from facestra.train.margins import MarginSpec

    reuse_freed_memory()  # as the facestra program does at start, so that both forms run alike
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"batch {args.batch}, torch threads {args.threads}, best of {args.rounds} rounds, ms of forward and backward")
    print(f"{'classes':>8}  {'margins':16} {'':12} {'select':>8} {'scatter':>8} {'speed-up':>8}")
    for classes in args.classes:
        cosine = (torch.rand(args.batch, classes, generator=generator) * 2 - 1).requires_grad_()
        labels = torch.randint(0, classes, (args.batch,), generator=generator)
        upstream = torch.randn(args.batch, classes, generator=generator)
        for margins in ((1.0, 0.5, 0.0), (1.0, 0.0, 0.35)):
            spec = MarginSpec.of("combined", scale=64.0, margins=margins)
            for part in ("margin", "+ loss"):
                def step(form, part=part, spec=spec, labels=labels, cosine=cosine, upstream=upstream):
                    logits = form(cosine, labels, spec)
                    if part == "margin":
                        return torch.autograd.grad(logits, cosine, upstream)[0]
                    return torch.autograd.grad(F.cross_entropy(logits, labels), cosine)[0]

                torch.testing.assert_close(step(margin_logits), step(select_form), rtol=1e-5, atol=1e-6)
                turns = take_turns({"select": lambda step=step: step(select_form), "scatter": lambda step=step: step(margin_logits)},
                                   args.rounds, 1)
                timings = {name: min(seconds) for name, seconds in turns.items()}  # each form's best round
                print(f"{classes:>8}  {str(margins):16} {part:12} {1000 * timings['select']:8.2f} "
                      f"{1000 * timings['scatter']:8.2f} {timings['select'] / timings['scatter']:8.2f}")


if __name__ == "__main__":
    main()
