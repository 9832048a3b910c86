"""``--val``: verification accuracy on benchmarks during training, with exactly the protocol of ``verify``.

Benchmarks are read once through :mod:`facestra.protocols`; every evaluation hands the current backbone
to :func:`facestra.verify.benchmarks.verify_model` (flip concatenation, 10 folds or the benchmark's own), so the
figure in ``metrics.jsonl`` is the one ``facestra verify`` prints for the same weights. Images of another
size than the network's input are fitted to it as training images are (shorter edge, centre crop), so a
112×112 ``lfw.bin`` also checks a 224×192 model.

The best mean accuracy so far decides ``best.pt``; it is saved in ``last.pt``, so a resumed run only
replaces ``best.pt`` with a better model than the one it already holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from facestra import models
from facestra.embed.inference import InferenceOptions
from facestra.errors import UserError
from facestra.models.record import with_record
from facestra.protocols import load_benchmark
from facestra.train import distributed
from facestra.train.run_folder import BEST
from facestra.verify.benchmarks import guess_name, verify_model
from facestra.verify.checks import check_benchmark, check_images


def _check_exists(paths: Sequence[str]) -> None:
    for path in paths:
        if not Path(path).exists():
            raise UserError(f"{path}: no such validation benchmark (`val`)")


class Validator:
    """The ``--val`` benchmarks and their evaluation for a given backbone."""

    def __init__(self, paths: Sequence[str], *, batch_size: int = 128, device: torch.device | None = None) -> None:
        _check_exists(paths)
        self.batch_size = batch_size
        self.device = device if device is not None else torch.device("cpu")
        self.benchmarks = [load_benchmark(guess_name(Path(path)), path) for path in paths]
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise UserError(f"`val` names the same benchmark twice ({', '.join(names)})")
        # Everything a validation needs is checked now, before the run folder or the first step: a
        # benchmark that cannot be evaluated, or an image that cannot be decoded, costs no training.
        self.warnings: list[str] = []
        for benchmark in self.benchmarks:
            self.warnings += check_benchmark(benchmark)
            check_images(benchmark)

    @staticmethod
    def check_only(paths: Sequence[str]) -> None:
        """Fail early on a missing benchmark in processes that do not evaluate (ranks other than 0)."""
        _check_exists(paths)

    def evaluate(self, backbone: nn.Module) -> list:
        """One :class:`facestra.verify.benchmarks.BenchmarkOutcome` per benchmark; the backbone keeps its
        train/eval mode."""
        # Decoded in this process (workers=0): starting loader processes at every validation costs more
        # than decoding a .bin; images are fitted to the input exactly as the training images are.
        options = InferenceOptions(batch_size=self.batch_size, workers=0, device=str(self.device), resize=True)
        return verify_model(backbone, self.benchmarks, options)


def verification_record(outcomes: Sequence) -> dict[str, object]:
    """The threshold of the first benchmark (its folds' mean best threshold) and what it was measured on,
    as a model file keeps it."""
    first = outcomes[0]
    return {
        "benchmark": first.benchmark.name,
        "threshold": float(first.result.threshold),
        "accuracy": float(first.result.accuracy),
        "flip": "concat",
        "pairs": int(len(first.benchmark.issame)),
    }


class BestValidation:
    """``--val`` during a run: evaluate on rank 0, keep the best mean accuracy and its ``best.pt``."""

    def __init__(self, paths: Sequence[str], run_dir: Path, process: distributed.Process, *, batch_size: int = 128) -> None:
        self.enabled = bool(paths)
        self.best_path = run_dir / BEST
        self.best_accuracy: float | None = None
        self.validator: Validator | None = None
        self.warnings: list[str] = []
        if not self.enabled:
            return
        if process.is_main:
            self.validator = Validator(paths, batch_size=batch_size, device=process.device)
            self.warnings = list(self.validator.warnings)
        else:  # every process checks the benchmarks exist, so that a missing file stops all of them before training
            Validator.check_only(paths)

    def validate(self, backbone: nn.Module) -> dict[str, float | bool] | None:
        """Per-benchmark and mean accuracy (``best: True`` when it beat every earlier one and was saved as
        ``best.pt``) on rank 0; None on the other ranks, which wait for it at the caller's barrier."""
        if self.validator is None:
            return None
        outcomes = self.validator.evaluate(backbone)
        accuracies = {outcome.benchmark.name: float(outcome.result.accuracy) for outcome in outcomes}
        mean = sum(accuracies.values()) / len(accuracies)
        # The model files saved from now on carry the threshold, so that `facestra compare` decides with it.
        with_record(backbone, verification=verification_record(outcomes))
        values: dict[str, float | bool] = {**{f"{name}_accuracy": acc for name, acc in accuracies.items()}, "mean_accuracy": mean}
        if self.best_accuracy is None or mean > self.best_accuracy:
            self.best_accuracy = mean
            models.save(backbone, self.best_path)
            values["best"] = True
        return values
