"""Partial FC against the replicated classifier, side by side in one run: memory per process and head step time.

Two gloo processes on the CPU (``torch.multiprocessing``), an ArcFace head of 512-D at 100k and 1M
identities, and for each: the replicated classifier (every process holds all rows, its gradient is
all-reduced as DistributedDataParallel does, SGD over all rows), and the sharded one at R = 1 and R = 0.1.
A head step is what a training step spends in the head: logits and loss for the global batch, backward,
the gradient exchange and the SGD update (the backbone is left out: it costs the same in every variant).

Memory is counted, not sampled from the allocator: the bytes of the classifier's rows and momentum a
process keeps between steps (its state), and the gradient it allocates during a step.

    python bench/partial_fc.py                  # 100k and 1M identities, 64 images per process
    python bench/partial_fc.py --classes 100000 --steps 5
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from facestra.train.distributed import Process
from facestra.train.heads import ClassifierHead
from facestra.train.partial_fc import ShardedClassifierHead

WORLD = 2
SGD = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)


def _replicated_steps(process: Process, classes: int, size: int, batch: int, steps: int) -> tuple[list[float], int, int]:
    head = ClassifierHead(size, classes, loss="arcface")
    optimizer = torch.optim.SGD(head.parameters(), **SGD)
    times, grad_bytes = [], 0
    for step in range(steps + 1):  # the first step allocates the momentum: not timed
        embeddings, labels = _batch(process, classes, size, batch, step)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        cross_entropy, _ = head.loss_and_correct(embeddings, labels)
        cross_entropy.mean().backward()
        dist.all_reduce(head.weight.grad)  # what DistributedDataParallel does with a replicated head
        head.weight.grad.div_(process.world_size)
        optimizer.step()
        if step:
            times.append(time.perf_counter() - started)
        grad_bytes = head.weight.grad.numel() * 4
    state_bytes = sum(p.numel() * 4 for p in head.parameters()) + sum(
        s["momentum_buffer"].numel() * 4 for s in optimizer.state.values())
    return times, state_bytes, grad_bytes


def _sharded_steps(process: Process, classes: int, size: int, batch: int, steps: int, rate: float) -> tuple[list[float], int, int]:
    head = ShardedClassifierHead(size, classes, loss="arcface", sample_rate=rate, process=process)
    times, grad_bytes = [], 0
    for step in range(steps + 1):
        embeddings, labels = _batch(process, classes, size, batch, step)
        started = time.perf_counter()
        head.zero_grad()
        cross_entropy, _ = head.loss_and_correct(embeddings, labels)
        cross_entropy.mean().backward()
        grad_bytes = head.gradients()[1].numel() * 4
        head.step(**SGD)
        if step:
            times.append(time.perf_counter() - started)
    state_bytes = sum(t.numel() * 4 for t in (head.weight, head.weight_momentum))
    return times, state_bytes, grad_bytes


def _batch(process: Process, classes: int, size: int, batch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * step + process.rank)
    embeddings = torch.randn(batch, size, generator=generator).requires_grad_()
    return embeddings, torch.randint(0, classes, (batch,), generator=generator)


def _needed_bytes(classes: int, size: int, batch: int, rate: float | None) -> int:
    """Rough peak of one process: rows, their normalised copy, gradient (twice through the normalisation),
    momentum, and about a dozen (batch x scored classes) float tensors of logits."""
    if rate is None:
        return 4 * (5 * classes * size + 12 * batch * classes)
    local = classes // WORLD
    return 4 * (5 * local * size + 12 * WORLD * batch * int(rate * local))


def _available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) * 1024


def _worker(rank: int, folder: str, classes_list: list[int], size: int, batch: int, steps: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // WORLD))
    process = Process(rank, WORLD)
    _say(rank, f"{WORLD} gloo processes on {os.cpu_count()} CPU cores, ArcFace {size}-D, {batch} images per process "
               f"(global batch {WORLD * batch}), median of {steps} head steps; memory in MiB per process")
    _say(rank, f"{'classes':>9} {'variant':<15} {'state':>9} {'grad':>9} {'step s':>8} {'state/repl':>11} {'speed-up':>9}")
    for classes in classes_list:
        measured: dict[str, tuple[int, int, float]] = {}
        for name, rate in (("replicated", None), ("sharded R=1", 1.0), ("sharded R=0.1", 0.1)):
            needed = WORLD * _needed_bytes(classes, size, batch, rate)
            verdict = torch.tensor([float(needed > 0.9 * _available_bytes())])
            dist.all_reduce(verdict)
            if verdict.item():
                state = 4 * 2 * size * (classes if rate is None else -(-classes // WORLD))  # rows + momentum, counted
                _say(rank, f"{classes:>9} {name:<15} {state / 2**20:>9.1f}  not run: {WORLD} processes need about "
                           f"{needed / 2**30:.0f} GiB, {_available_bytes() / 2**30:.0f} GiB available")
                measured[name] = (state, 0, float("nan"))
                continue
            if rate is None:
                times, state, grad = _replicated_steps(process, classes, size, batch, steps)
            else:
                times, state, grad = _sharded_steps(process, classes, size, batch, steps, rate)
            median = torch.tensor([statistics.median(times)])
            dist.all_reduce(median, op=dist.ReduceOp.MAX)  # a step lasts as long as its slowest process
            measured[name] = (state, grad, float(median))
            replicated_state, _, replicated_time = measured["replicated"]
            _say(rank, f"{classes:>9} {name:<15} {state / 2**20:>9.1f} {grad / 2**20:>9.1f} {float(median):>8.3f} "
                       f"{state / replicated_state:>11.3f} {_ratio(replicated_time, float(median)):>9}")
            gc.collect()
            dist.barrier()
        full, sampled = measured["sharded R=1"][2], measured["sharded R=0.1"][2]
        _say(rank, f"{classes:>9} sharded head step, R = 1 / R = 0.1: {full / sampled:.1f}x")
    dist.destroy_process_group()


def _ratio(baseline: float, seconds: float) -> str:
    return "-" if math.isnan(baseline) else f"{baseline / seconds:.1f}x"


def _say(rank: int, line: str) -> None:
    if rank == 0:
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64, help="images per process")
    parser.add_argument("--steps", type=int, default=2, help="timed head steps per variant (after one untimed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        mp.spawn(_worker, args=(folder, args.classes, args.size, args.batch, args.steps), nprocs=WORLD, join=True)
    print(f"bench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
