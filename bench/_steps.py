"""The bare training step that bench/train_speed.py and bench/stage4_in_step.py time: forward with the
diversity loss, a softmax head, backward and SGD on one random batch, as train() computes a step but without
train() around it (no loader, no logging); and the turns in which several networks take it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

from facestra.models.cpu_layers import use_faster_cpu_layers
from facestra.train.heads import ClassifierHead


def bare_training_step(network: nn.Module, batch: int, side: int, classes: int = 16, *,
                       faster_cpu_layers: bool = True) -> Callable[[], None]:
    """A function that trains ``network`` (in training mode; with ``faster_cpu_layers``, the BatchNorm and
    PReLU layers that train() gives it on the CPU) one step on the same random batch each call."""
    if faster_cpu_layers:
        use_faster_cpu_layers(network)
    network.train()
    head = ClassifierHead(network.embedding_size, classes, loss="softmax")
    optimizer = torch.optim.SGD([*network.parameters(), *head.parameters()], lr=0.01, momentum=0.9, weight_decay=5e-4)
    images, labels = torch.randn(batch, 3, side, side), torch.randint(0, classes, (batch,))

    def step() -> None:
        embeddings, diversity = network.forward_with_diversity(images)
        cross_entropy, _ = head.loss_and_correct(embeddings, labels)
        optimizer.zero_grad(set_to_none=True)
        (cross_entropy.mean() + 0.1 * diversity.mean()).backward()
        optimizer.step()

    return step


def take_turns(steps: Mapping[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Each step's wall time (seconds) in ``rounds`` rounds after ``warmup``: one call of each step per round,
    the order reversed every other round, so that a slow spell of the machine falls on every step alike."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            start = time.perf_counter()
            steps[name]()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return times
