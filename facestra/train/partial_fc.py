"""Partial FC: a margin classifier sharded over the processes of a job, with sampled negative classes.

A replicated classifier costs ``classes x embedding`` weights, as much momentum and as much gradient on
every process, and every step computes every class's logit: at 2M identities x 512 that is 4 GB of weights
alone per GPU. Here each process holds only its shard (``classes / world`` consecutive rows) and that
shard's momentum; the embeddings and labels of the whole global batch are all-gathered, so that every
shard scores every sample. The softmax over all classes is then assembled from the shards: the global
maximum by an all-reduce MAX, the global sum of exponentials and the true-class logit by a differentiable
all-reduce SUM, so that the cross-entropy and its gradients are those of the full classifier.

With ``sample_rate`` R < 1 each shard keeps every positive class of the global batch and random
negatives up to ``R`` of its rows, and scores only those; only the kept rows (and their momentum) are
updated, which is where the speed comes from (Partial FC, An et al. 2022; insightface's arcface_torch).
At R = 1 every row is kept and the step is exactly full-classifier SGD.

Gradients: every process's loss is the mean over its own samples, as in the rest of the step. The
differentiable all-reduces then give every shard the gradient of the *sum* of the processes' losses;
DistributedDataParallel averages the backbone's gradients over processes, and :meth:`ShardedClassifierHead.step`
divides the shard's by the world size likewise, so both are gradients of the global mean.

Random negatives come from a generator seeded by (seed, draw number, rank), and the draw number is saved
with the shard: a resumed run draws the classes the uninterrupted run would have drawn.

The shard steps with SGD or with AdamW, as the backbone does. SGD updates the scored rows and their momentum
only (arcface_torch's first Partial FC). AdamW is arcface_torch's PartialFC_V2 with ``torch.optim.AdamW``:
there the shard is one parameter whose unscored rows receive a zero gradient, so every AdamW step moves
every row of the shard: the moments of unscored rows decay, the rows keep moving by their first moment, and
the decoupled weight decay shrinks them. :meth:`ShardedClassifierHead.step` does the same to the whole
shard, with torch's AdamW formula, and the shard's files keep both moments and the step count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from facestra.train import distributed
from facestra.train.heads import MarginSpec, classifier_logits

#: Rows initialised from one generator: the initial classifier depends on the seed, not on the world size.
INIT_BLOCK = 4096


def shard_bounds(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of the classifier held by ``rank``: consecutive, the first ``classes % world``
    shards one row longer."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def initial_rows(num_classes: int, embedding_size: int, start: int, stop: int, *, seed: int) -> Tensor:
    """Rows ``[start, stop)`` of the initial classifier (normal, std 0.01), the same whatever the sharding:
    each block of :data:`INIT_BLOCK` rows comes from its own seeded generator, so no process draws the
    whole matrix."""
    rows = torch.empty(stop - start, embedding_size)
    for block in range(start // INIT_BLOCK, (stop - 1) // INIT_BLOCK + 1 if stop > start else 0):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + block)
        first = block * INIT_BLOCK
        values = torch.empty(min(INIT_BLOCK, num_classes - first), embedding_size).normal_(0.0, 0.01, generator=generator)
        low, high = max(start, first), min(stop, first + len(values))
        rows[low - start:high - start] = values[low - first:high - first]
    return rows


def sample_classes(positives: Tensor, num_local: int, sample_rate: float, generator: torch.Generator) -> Tensor | None:
    """Sorted shard rows to score this step: every positive plus random negatives up to ``sample_rate`` of
    the shard (positives alone when they are more, and at least one row, so that the shard's maximum
    exists); ``None`` when that is every row."""
    keep = max(int(sample_rate * num_local), len(positives), 1)
    if keep >= num_local:
        return None
    scores = torch.rand(num_local, generator=generator, device=positives.device)
    scores[positives] = 2.0  # above every random score: positives are always kept
    return torch.topk(scores, keep, sorted=False).indices.sort().values


class _GatherRows(torch.autograd.Function):
    """All-gather along the batch; the backward returns this process's rows of the summed gradients, since
    every process's loss depends on every process's embeddings."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = (rank * len(tensor), (rank + 1) * len(tensor))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        low, high = ctx.rows
        return grad[low:high]


def gather_batch(tensor: Tensor, process: distributed.Process) -> Tensor:
    """Every process's ``tensor`` stacked in rank order (differentiable for floating-point tensors)."""
    if not process.distributed:
        return tensor
    if tensor.is_floating_point():
        return _GatherRows.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(process.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def _max_over_processes(tensor: Tensor, process: distributed.Process) -> Tensor:
    if process.distributed:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def sharded_cross_entropy(logits: Tensor, plain: Tensor, target_column: Tensor, process: distributed.Process) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all shards' columns, and whether the plain logits' maximum is the true class.

    ``logits``/``plain``: (global batch, this shard's scored columns); ``target_column``: the column of each
    sample's class in this shard, -1 where another shard holds it. The maximum is not differentiated (the
    log-sum-exp does not depend on the shift); the sums are, across processes.
    """
    owned = target_column >= 0
    column = target_column.clamp_min(0).unsqueeze(1)
    zero = logits.new_zeros(())
    target_logit = torch.where(owned, logits.gather(1, column).squeeze(1), zero)
    with torch.no_grad():
        plain_target = torch.where(owned, plain.gather(1, column).squeeze(1), zero)
        maxima = _max_over_processes(torch.stack([logits.max(dim=1).values, plain.max(dim=1).values]), process)
    exp_sum = torch.exp(logits - maxima[0].unsqueeze(1)).sum(dim=1)
    stacked = torch.stack([exp_sum, target_logit, plain_target])
    sums = distributed.sum_over_processes(stacked) if process.distributed else stacked
    cross_entropy = torch.log(sums[0]) + maxima[0] - sums[1]
    return cross_entropy, sums[2].detach() >= maxima[1]


@dataclass
class _Scored:
    """One forward's scored rows (``None``: all) and the leaf tensors their gradients arrive in."""

    index: Tensor | None
    weight: Tensor
    bias: Tensor | None


#: The optimizer state a shard keeps per row, for each optimizer: (suffix of the buffer names, ...).
ROW_STATE: dict[str, tuple[str, ...]] = {"sgd": ("momentum",), "adamw": ("exp_avg", "exp_avg_sq")}


@dataclass(frozen=True)
class AdamWSettings:
    """torch.optim.AdamW's constants for the shard (those of the backbone's optimizer)."""

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


class ShardedClassifierHead(nn.Module):
    """This process's shard of a softmax / CosFace / ArcFace / combined-margin classifier, trained with its
    own SGD or AdamW.

    The rows are buffers, not parameters: DistributedDataParallel must neither broadcast nor average them,
    and the optimizer of the backbone must not see them. :meth:`step` applies SGD with momentum and weight
    decay to the rows scored since :meth:`zero_grad` (all rows at ``sample_rate`` 1, where it is the
    optimizer's own formula), or AdamW to every row (see the module's notes).
    """

    def __init__(
        self, embedding_size: int, num_classes: int, *, loss: str = "arcface", scale: float | None = None,
        margin: float | None = None, margins: tuple[float, float, float] | None = None, sample_rate: float = 1.0,
        process: distributed.Process = distributed.Process(), seed: int = 0, optimizer: str = "sgd",
    ) -> None:
        super().__init__()
        self.spec = MarginSpec.of(loss, scale=scale, margin=margin, margins=margins)
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], not {sample_rate}")
        if num_classes < process.world_size:
            raise ValueError(f"{num_classes} classes cannot be split over {process.world_size} processes")
        self.sample_rate = float(sample_rate)
        self.process = process
        self.seed = seed
        self.num_classes = num_classes
        self.start, self.stop = shard_bounds(num_classes, process.world_size, process.rank)
        if optimizer not in ROW_STATE:
            raise ValueError(f"optimizer must be one of {tuple(ROW_STATE)}, not {optimizer!r}")
        self.optimizer = optimizer
        self.register_buffer("weight", initial_rows(num_classes, embedding_size, self.start, self.stop, seed=seed))
        has_bias = not self.spec.normalised
        self.register_buffer("bias", torch.zeros(self.num_local) if has_bias else None)
        for values in ("weight", "bias"):
            for state in ROW_STATE[optimizer]:
                self.register_buffer(f"{values}_{state}", None if getattr(self, values) is None else torch.zeros_like(getattr(self, values)))
        self.draws = 0  # forwards so far: seeds the negatives of the next one
        self.optimizer_steps = 0  # AdamW's step count t (its bias corrections)
        self._scored: list[_Scored] = []

    def row_names(self) -> tuple[str, ...]:
        """The per-row tensors of this shard (values and optimizer state) that its files hold."""
        names = [f"{values}{suffix}" for values in ("weight", "bias") for suffix in ("", *(f"_{state}" for state in ROW_STATE[self.optimizer]))]
        return tuple(name for name in names if getattr(self, name) is not None)

    @property
    def num_local(self) -> int:
        return self.stop - self.start

    def _generator(self) -> torch.Generator:
        generator = torch.Generator(device=self.weight.device)
        return generator.manual_seed((self.seed * 1_000_003 + self.draws) * 4099 + self.process.rank)

    def loss_and_correct(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """This process's samples' cross-entropy over all classes, and whether their plain logits pick their
        class among the scored ones; collective (every process calls it with the same batch size)."""
        all_embeddings = gather_batch(embeddings, self.process)
        all_labels = gather_batch(labels, self.process)
        here = (all_labels >= self.start) & (all_labels < self.stop)
        local = torch.where(here, all_labels - self.start, torch.full_like(all_labels, -1))
        index = None
        if self.sample_rate < 1:
            index = sample_classes(torch.unique(local[here]), self.num_local, self.sample_rate, self._generator())
        self.draws += 1
        scored = self._score(index)
        target_column = local if index is None else torch.where(here, torch.searchsorted(index, local.clamp_min(0)), local)
        with torch.autocast(embeddings.device.type, enabled=False):
            logits, plain = classifier_logits(all_embeddings, scored.weight, scored.bias, target_column, self.spec)
            cross_entropy, correct = sharded_cross_entropy(logits, plain, target_column, self.process)
        rows = slice(self.process.rank * len(labels), (self.process.rank + 1) * len(labels))
        return cross_entropy[rows], correct[rows]

    def _score(self, index: Tensor | None) -> _Scored:
        """Leaf copies (views at R = 1) of the rows scored now; their gradients are kept for :meth:`step`."""
        def leaf(rows: Tensor | None) -> Tensor | None:
            if rows is None:
                return None
            rows = rows.detach() if index is None else rows.index_select(0, index)
            return rows.requires_grad_(torch.is_grad_enabled())

        scored = _Scored(index, leaf(self.weight), leaf(self.bias))
        if torch.is_grad_enabled():
            self._scored.append(scored)
        return scored

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the rows scored since the last step."""
        self._scored = []

    def gradients(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(rows, gradient of their weights, of their biases) accumulated since :meth:`zero_grad`, as
        gradients of the global mean loss; rows ``None``: every row of the shard."""
        scored = [s for s in self._scored if s.weight.grad is not None]
        if not scored:
            return None, None, None
        world = self.process.world_size
        if len(scored) == 1:
            only = scored[0]
            return only.index, only.weight.grad / world, None if only.bias is None else only.bias.grad / world
        dense = any(s.index is None for s in scored)
        rows = None if dense else torch.unique(torch.cat([s.index for s in scored]))
        size = self.num_local if dense else len(rows)
        weight_grad = self.weight.new_zeros(size, self.weight.shape[1])
        bias_grad = None if self.bias is None else self.bias.new_zeros(size)
        for s in scored:
            if s.index is None:
                weight_grad += s.weight.grad
                if bias_grad is not None:
                    bias_grad += s.bias.grad
                continue
            at = s.index if dense else torch.searchsorted(rows, s.index)
            weight_grad.index_add_(0, at, s.weight.grad)
            if bias_grad is not None:
                bias_grad.index_add_(0, at, s.bias.grad)
        return rows, weight_grad / world, None if bias_grad is None else bias_grad / world

    @torch.no_grad()
    def step(self, *, lr: float, momentum: float, weight_decay: float, grad_scale: float = 1.0,
             adamw: AdamWSettings = AdamWSettings()) -> bool:
        """One optimizer step: SGD on the scored rows (gradient + weight decay into the momentum, momentum
        into the rows) as ``torch.optim.SGD`` computes it, or AdamW on every row as ``torch.optim.AdamW``
        does (``momentum`` unused); ``grad_scale`` undoes an fp16 loss scale. Returns whether it stepped
        (not without gradients, nor with non-finite ones)."""
        rows, weight_grad, bias_grad = self.gradients()
        if weight_grad is None:
            return False
        grads = [weight_grad] + ([bias_grad] if bias_grad is not None else [])
        if grad_scale != 1.0:
            grads = [g / grad_scale for g in grads]
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            return False
        if self.optimizer == "adamw":
            self._adamw_step(rows, grads, lr=lr, weight_decay=weight_decay, settings=adamw)
            return True
        for values, buffer, grad in zip((self.weight, self.bias), (self.weight_momentum, self.bias_momentum), grads):
            if rows is None:
                buffer.mul_(momentum).add_(grad.add(values, alpha=weight_decay))
                values.add_(buffer, alpha=-lr)
            else:
                picked = values.index_select(0, rows)
                moved = buffer.index_select(0, rows).mul_(momentum).add_(grad.add(picked, alpha=weight_decay))
                buffer.index_copy_(0, rows, moved)
                values.index_copy_(0, rows, picked.add_(moved, alpha=-lr))
        return True

    def _adamw_step(self, rows: Tensor | None, grads: list[Tensor], *, lr: float, weight_decay: float, settings: AdamWSettings) -> None:
        """torch.optim.AdamW's single-tensor step on the whole shard, the gradient zero on unscored rows."""
        self.optimizer_steps += 1
        beta1, beta2 = settings.betas
        bias_correction1 = 1 - beta1**self.optimizer_steps
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.optimizer_steps)
        for name, grad in zip(("weight", "bias"), grads):
            values, exp_avg, exp_avg_sq = getattr(self, name), getattr(self, f"{name}_exp_avg"), getattr(self, f"{name}_exp_avg_sq")
            if rows is not None:
                grad = values.new_zeros(values.shape).index_copy_(0, rows, grad)
            values.mul_(1 - lr * weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(settings.eps)
            values.addcdiv_(exp_avg, denominator, value=-lr / bias_correction1)

    def shard_state(self) -> dict[str, Any]:
        """This shard as plain tensors and values, for its checkpoint file."""
        state = {"start": self.start, "stop": self.stop, "num_classes": self.num_classes, "draws": self.draws,
                 "optimizer": self.optimizer, "optimizer_steps": self.optimizer_steps}
        for name in self.row_names():
            state[name] = getattr(self, name).detach().cpu()
        return state

    def load_rows(self, name: str, start: int, values: Tensor) -> None:
        """Copy ``values`` (classes ``start`` onwards) into the part of this shard's ``name`` they cover."""
        low, high = max(start, self.start), min(start + len(values), self.stop)
        if low < high:
            getattr(self, name)[low - self.start:high - self.start] = values[low - start:high - start].to(self.weight.device)

    def extra_repr(self) -> str:
        spec = self.spec
        return (f"loss={spec.loss}, embedding_size={self.weight.shape[1]}, classes={self.start}..{self.stop - 1} of "
                f"{self.num_classes}, sample_rate={self.sample_rate}, scale={spec.scale}, margins={spec.margins}, optimizer={self.optimizer}")
