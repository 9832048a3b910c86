"""The paper's ablations (Tables 2-4) as one seed-averaged experiment: every variant trained the same way.

Each (variant, seed) run is an ordinary :func:`facestra.train.train` run in ``WORK/runs/<variant>/seed<k>``
followed by :func:`facestra.verify.benchmarks.verify_model` on the benchmarks; its figures are written to
``result.json`` there, so an interrupted experiment resumes where it stopped (finished runs are kept, an
unfinished one resumes from its ``last.pt``). Runs are spread over ``jobs`` processes of ``threads``
threads each: on a CPU, several one-thread trainings of a small network get more done than one that uses
every core. Without ``data`` the experiment makes its own synthetic faces (as ``facestra demo`` does); with
``data`` (an aligned identity tree, list or RecordIO) and ``val`` (benchmark files or folders) it runs on
real data, on a GPU with ``device="cuda"`` and ``jobs=1``.

Accuracy is reported per variant as the mean over seeds with a 95 % Student-t interval (each seed's
accuracy being the mean over the benchmarks' ten folds and over the benchmarks).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from facestra.errors import UserError
from facestra.io import write_text_atomic

RESULT = "result.json"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """One row of the paper's ablation tables."""

    name: str
    table: str
    arch: str
    stra: dict[str, Any] = field(default_factory=dict)


VARIANTS: tuple[Variant, ...] = (
    Variant("resnet50", "Table 2: baseline", "resnet50"),
    Variant("local", "Table 2: local attention only", "resnet50_stra", {"mode_attention": False}),
    Variant("local+mode", "Table 2: + mode attention, no interaction", "resnet50_stra", {"mode_interaction": False}),
    Variant("full", "Table 2-4: full StRA (sigmoid, K=3)", "resnet50_stra"),
    Variant("gate-softmax", "Table 3: softmax gate", "resnet50_stra", {"gate": "softmax"}),
    Variant("gate-tanh", "Table 3: tanh gate", "resnet50_stra", {"gate": "tanh"}),
    Variant("k5", "Table 4: K=5", "resnet50_stra", {"kernel_size": 5}),
    Variant("k7", "Table 4: K=7", "resnet50_stra", {"kernel_size": 7}),
)


def variant_names() -> list[str]:
    return [variant.name for variant in VARIANTS]


@dataclass(frozen=True)
class AblationConfig:
    """What the experiment trains and on what. The defaults are the paper's face setting (112x112, full
    width, 20 epochs with steps at 8 and 12); :data:`QUICK` is the 2-CPU-core setting."""

    workdir: Path
    variants: tuple[str, ...] = tuple(variant_names())
    seeds: tuple[int, ...] = (0, 1, 2)
    data: str | None = None
    val: tuple[str, ...] = ()
    width: float = 1.0
    embedding_size: int = 512
    input_size: tuple[int, int] = (112, 112)
    loss: str = "softmax"
    epochs: int = 20
    lr_steps: tuple[int, ...] = (8, 12)
    warmup_epochs: float = 0.0
    batch_size: int = 512
    diversity_weight: float = 0.1
    device: str = "auto"
    amp: str = "none"
    jobs: int = 1
    threads: int | None = None
    loader_workers: int = 4
    # the synthetic data set, when ``data`` is not given
    identities: int = 900
    images_per_identity: int = 6
    test_identities: int = 60
    difficulty: float = 0.85

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variants) - set(variant_names()))
        if unknown:
            raise UserError(f"unknown variant {', '.join(unknown)}; choose from {', '.join(variant_names())}")
        if not self.seeds:
            raise UserError("give at least one seed")
        if self.jobs < 1:
            raise UserError(f"jobs must be at least 1, got {self.jobs}")
        if self.data and not self.val:
            raise UserError("with `data` give `val` benchmarks to measure the variants on")


QUICK = dict(
    width=0.125, embedding_size=128, input_size=(48, 48), epochs=4, lr_steps=(3,), warmup_epochs=0.5,
    batch_size=64, identities=800, images_per_identity=6, test_identities=60, jobs=2, threads=1, loader_workers=0,
    device="cpu",
)
"""8 variants x 3 seeds in about 20 minutes on 2 CPU cores (20.2 measured): the demo's network and crops."""


@dataclass(frozen=True)
class RunResult:
    """One trained variant and seed."""

    variant: str
    seed: int
    accuracy: float  # mean over the benchmarks of the 10-fold accuracy
    per_benchmark: dict[str, float]
    train_seconds: float
    steps: int
    final_loss: float | None
    diversity: float | None


@dataclass(frozen=True)
class VariantSummary:
    """The seeds of one variant together, with the network's cost."""

    variant: Variant
    accuracies: tuple[float, ...]
    mean: float
    half_width: float  # of the 95 % interval; nan with one seed
    params: int
    macs: int
    train_seconds: float


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t ``confidence`` interval (nan for fewer than two values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    from scipy.stats import t  # scikit-learn's dependency

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)


def run_ablation(config: AblationConfig, *, log: Log | None = None) -> list[VariantSummary]:
    """Train and verify every (variant, seed) not done yet in ``config.workdir``; summarise all of them."""
    say = log or (lambda message: None)
    work = Path(config.workdir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    data, val = (config.data, config.val) if config.data else _synthetic_data(work, config, say)
    todo = [(name, seed) for name in config.variants for seed in config.seeds if not (_run_dir(work, name, seed) / RESULT).is_file()]
    done = len(config.variants) * len(config.seeds) - len(todo)
    say(f"{len(todo)} runs to do, {done} already done, {config.jobs} at a time")
    started = time.perf_counter()
    if config.jobs == 1:
        for number, (name, seed) in enumerate(todo, 1):
            result = _train_and_verify(config, work, data, val, name, seed)
            say(_progress_line(result, number, len(todo), started))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.jobs, mp_context=context) as pool:
            pending = {pool.submit(_train_and_verify, config, work, data, val, name, seed) for name, seed in todo}
            finished = 0
            while pending:
                complete, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in complete:
                    finished += 1
                    say(_progress_line(future.result(), finished, len(todo), started))
    return summarise(config, [_read_result(work, name, seed) for name in config.variants for seed in config.seeds])


def _progress_line(result: RunResult, number: int, total: int, started: float) -> str:
    return (f"[{number}/{total}] {result.variant} seed {result.seed}: {100 * result.accuracy:.2f}% "
            f"({result.train_seconds:.0f}s training, {time.perf_counter() - started:.0f}s so far)")


def _run_dir(work: Path, variant: str, seed: int) -> Path:
    return work / "runs" / variant / f"seed{seed}"


def _synthetic_data(work: Path, config: AblationConfig, say: Log) -> tuple[str, tuple[str, ...]]:
    """Render and align the synthetic set once (resumed on a rerun): train folder and the test pairs."""
    from facestra.demo import align_synthetic_set
    from facestra.synth.dataset import TEST_DIR, TRAIN_DIR, SynthSettings, synthesize

    faces, aligned = work / "faces", work / "aligned"
    settings = SynthSettings(identities=config.identities, images_per_identity=config.images_per_identity,
                             test_identities=config.test_identities, difficulty=config.difficulty)
    summary = synthesize(faces, settings)
    say(f"synthetic faces: {summary.images} images of {summary.train_identities} + {summary.test_identities} "
        f"identities in {faces}")
    size = config.input_size[0] if config.input_size[0] == config.input_size[1] else f"{config.input_size[0]}x{config.input_size[1]}"
    align_synthetic_set(faces, aligned, size)
    return str(aligned / TRAIN_DIR), (str(aligned / TEST_DIR),)


def _train_and_verify(config: AblationConfig, work: Path, data: str, val: tuple[str, ...], name: str, seed: int) -> RunResult:
    """One run, in a worker process: train (or resume), verify, write ``result.json`` atomically."""
    import torch

    from facestra.embed.inference import InferenceOptions, load_for_inference
    from facestra.models.stra import StRAOptions
    from facestra.protocols import load_benchmark
    from facestra.train import TrainConfig, resume_config, train
    from facestra.verify.benchmarks import guess_name, verify_model

    if config.threads:
        torch.set_num_threads(config.threads)
    variant = next(v for v in VARIANTS if v.name == name)
    run_dir = _run_dir(work, name, seed)
    train_config = TrainConfig(
        data=data, out=str(run_dir), arch=variant.arch, width=config.width, embedding_size=config.embedding_size,
        input_size=tuple(config.input_size), stra_options=StRAOptions(**variant.stra) if variant.stra else None, loss=config.loss,
        diversity_weight=config.diversity_weight, epochs=config.epochs, lr_steps=tuple(config.lr_steps),
        warmup_epochs=config.warmup_epochs, batch_size=config.batch_size, workers=config.loader_workers,
        threads=config.threads, seed=seed, device=config.device, amp=config.amp, log_every=50,
    )
    if (run_dir / "last.pt").is_file():
        try:
            train_config = resume_config(run_dir)
            train_config.resume = True
        except UserError:
            train_config = replace(train_config, overwrite=True)
    else:
        train_config = replace(train_config, overwrite=True)
    outcome = train(train_config)
    model = load_for_inference(outcome.model_path, config.device)
    benchmarks = [load_benchmark(guess_name(Path(path)), Path(path)) for path in val]
    verified = verify_model(model, benchmarks, InferenceOptions(workers=0))
    per_benchmark = {item.benchmark.name: float(item.result.accuracy) for item in verified}
    diversity = _last_metric(run_dir, "diversity")
    result = RunResult(
        variant=name, seed=seed, accuracy=sum(per_benchmark.values()) / len(per_benchmark), per_benchmark=per_benchmark,
        train_seconds=outcome.elapsed_s, steps=outcome.global_step, final_loss=outcome.final_loss, diversity=diversity,
    )
    write_text_atomic(run_dir / RESULT, json.dumps(asdict(result), indent=2) + "\n")
    return result


def _last_metric(run_dir: Path, key: str) -> float | None:
    path = run_dir / "metrics.jsonl"
    value = None
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            value = row.get(key, value)
    return value


def _read_result(work: Path, name: str, seed: int) -> RunResult:
    path = _run_dir(work, name, seed) / RESULT
    try:
        return RunResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise UserError(f"{path}: unreadable run result ({error}); delete it to rerun that run") from None


def summarise(config: AblationConfig, results: Sequence[RunResult]) -> list[VariantSummary]:
    """Group the runs by variant (in the tables' order) and add each network's parameters and MACs."""
    from facestra import models

    summaries = []
    for variant in VARIANTS:
        runs = [r for r in results if r.variant == variant.name]
        if not runs:
            continue
        accuracies = tuple(r.accuracy for r in sorted(runs, key=lambda r: r.seed))
        mean, half = mean_interval(accuracies)
        network = models.create(variant.arch, width=config.width, embedding_size=config.embedding_size,
                                input_size=tuple(config.input_size), **variant.stra)
        cost = models.complexity(network, tuple(config.input_size))
        summaries.append(VariantSummary(variant, accuracies, mean, half, cost.params, cost.macs,
                                        sum(r.train_seconds for r in runs) / len(runs)))
    return summaries


def markdown_table(summaries: Sequence[VariantSummary]) -> str:
    """One row per variant: mean accuracy ± 95 % interval over seeds, each seed, difference to the
    baseline, parameters and MACs."""
    baseline = next((s.mean for s in summaries if s.variant.arch == "resnet50"), None)
    lines = [
        "| variant | row of the paper | accuracy % (mean ± 95% CI) | seeds | vs resnet50 | params | MACs | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        interval = "" if math.isnan(s.half_width) else f" ± {100 * s.half_width:.2f}"
        delta = "" if baseline is None or s.variant.arch == "resnet50" else f"{100 * (s.mean - baseline):+.2f}"
        seeds = ", ".join(f"{100 * a:.2f}" for a in s.accuracies)
        lines.append(f"| {s.variant.name} | {s.variant.table} | {100 * s.mean:.2f}{interval} | {seeds} | {delta} | "
                     f"{s.params / 1e6:.3f}M | {s.macs / 1e6:.1f}M | {s.train_seconds:.0f} |")
    return "\n".join(lines)
