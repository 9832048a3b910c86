"""``facestra demo``: the whole toolkit on built-in synthetic faces, offline, in a few CPU minutes.

Each step calls the same library function as the corresponding command, top to bottom without detours:

1. :func:`facestra.synth.dataset.synthesize` renders people into ``WORK/faces`` (train and held-out test identities);
2. :func:`facestra.align.job.align_images` crops them from their true landmarks into ``WORK/aligned``
   (and, when the ``yuface`` package is installed, aligns the test faces again with the YuNet detector,
   reporting how many it finds and how far its landmarks are from the truth);
3. raw aligned pixels are verified first: the floor a network must beat;
4. :func:`facestra.train.train` trains a narrow ``resnet50_stra`` and the same-width ``resnet50``, each for
   the same time budget;
5. :func:`facestra.verify.benchmarks.verify_model` verifies both on the held-out pairs with the exact protocol;
   :func:`facestra.embed.job.embed_to_file` embeds the test faces to ``.npy``;
6. ``roc.png`` and ``mode_masks.png`` (the StRA modes' spatial masks over test faces, paper Fig. 4), and
   ``report.html`` (:mod:`facestra.verify.html_report`): both networks' figures and hardest wrong pairs.

Everything is kept in ``WORK`` and a rerun resumes the synthetic set and the alignment.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facestra.embed.options import DEVICES
from facestra.errors import UserError
from facestra.fields import IMAGE_SIDES, documented
from facestra.io import write_text_atomic

MARKER = "facestra-demo.json"
ARCHS = ("resnet50_stra", "resnet50")

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes chosen so that the whole demo fits in 10 minutes on 2 CPU cores (3 minutes of training each).

    48x48 crops and width 0.125 make a 12 M multiply-add network (stage 4 sees 3x3 positions): about 600 SGD
    steps of 64 faces in 3 minutes on 2 cores, enough to pass 90 % on the held-out pairs.
    """

    workdir: Path = documented(Path("facestra-demo"), "Folder for everything the demo makes (reused by a rerun).", path="folder")
    minutes: float = documented(3.0, "Training time for each of the two networks.", minimum=0.01)
    # many people, few photos each: what makes the embedding generalise in few steps
    identities: int = documented(900, "Synthetic people (smaller for a quicker, rougher run).", minimum=4)
    images_per_identity: int = documented(6, "Photos of each person.", minimum=2)
    test_identities: int = documented(60, "People held out for the verification pairs.", minimum=2)
    image_size: int = 250
    crop_size: int = documented(48, "Side of the aligned crops the networks see.", minimum=32, maximum=IMAGE_SIDES[1])
    width: float = 0.125
    embedding_size: int = 128
    loss: str = "softmax"  # in a few hundred steps plain softmax generalises better than a margin loss
    batch_size: int = 64
    seed: int = 0
    difficulty: float = 0.85
    detector: bool = documented(True, "Check alignment with the YuNet detector when yuface is installed.")
    device: str = documented("auto", "Where to train and verify (auto: a GPU when there is one).", choices=DEVICES)
    workers: int | None = None


@dataclass(frozen=True)
class ModelOutcome:
    """One trained network's figures."""

    arch: str
    accuracy: float
    accuracy_std: float
    tar_at_far: dict[float, float]
    auc: float
    params: int
    macs: int
    train_seconds: float
    epochs: float
    steps: int
    stopped: str
    model_path: Path
    embeddings: Path


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured and where it put everything."""

    workdir: Path
    faces: Path
    aligned: Path
    raw_pixels: dict[str, Any]
    models: list[ModelOutcome]
    detector: dict[str, Any] | None
    roc_png: Path
    masks_png: Path | None
    report_html: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {f"{k:g}" if isinstance(k, float) else k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))


def run_demo(config: DemoConfig, *, log: Log | None = None, command: str = "facestra.demo.run_demo()") -> DemoResult:
    """Run every step of the demo in ``config.workdir``; ``log`` receives one line per step, ``command``
    (how the demo was started) goes into the facts of its report."""
    say = log or (lambda message: None)
    work = Path(config.workdir).absolute()
    _claim_workdir(work, config)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    faces = _synthesize(work, config, say)
    seconds["synth"] = time.perf_counter() - started

    started = time.perf_counter()
    aligned = _align(work, faces, config, say)
    detector = _detector_check(work, faces, config, say) if config.detector else None
    seconds["align"] = time.perf_counter() - started

    from facestra.protocols import load_benchmark

    benchmark = load_benchmark("lfw", aligned / "test")
    benchmark = _renamed(benchmark, "synth")
    raw = _raw_pixels(benchmark)
    say(f"raw aligned pixels: {100 * raw.accuracy:.2f}% ± {100 * raw.accuracy_std:.2f} on {benchmark.num_pairs} pairs")

    outcomes: list[ModelOutcome] = []
    results = {"raw pixels": raw}
    verified = []
    first_model = None
    for arch in ARCHS:
        started = time.perf_counter()
        outcome, verification, model = _train_and_verify(work, aligned, benchmark, arch, config, say)
        seconds[arch] = time.perf_counter() - started
        outcomes.append(outcome)
        results[arch] = verification.result
        verified.append((outcome, verification, model))
        first_model = first_model or model

    from facestra.verify import figures as viz

    roc_png = work / "roc.png"
    viz.plot_roc(results, roc_png)
    masks_png = _mode_mask_figure(work, first_model, benchmark, config)
    say(f"figures: {roc_png}" + (f", {masks_png}" if masks_png else ""))
    report_html = _report(work, verified, raw, config, command)
    raw_figures = {"accuracy": raw.accuracy, "accuracy_std": raw.accuracy_std, "tar_at_far": raw.tar_at_far,
                   "auc": raw.auc}
    result = DemoResult(work, faces, aligned, raw_figures, outcomes, detector, roc_png, masks_png, report_html, seconds)
    write_text_atomic(work / "summary.json", json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _claim_workdir(work: Path, config: DemoConfig) -> None:
    """Use ``work`` only if it is new, empty or an earlier demo's; never write into someone's folder."""
    marker = work / MARKER
    if work.exists() and not work.is_dir():
        raise UserError(f"{work}: exists and is not a folder")
    if work.is_dir() and any(work.iterdir()) and not marker.is_file():
        raise UserError(f"{work}: folder is not empty and was not made by facestra demo; choose another `workdir`")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    write_text_atomic(marker, json.dumps({"format": "facestra-demo/1", "settings": settings}, indent=2) + "\n")


def _synthesize(work: Path, config: DemoConfig, say: Log) -> Path:
    from facestra.synth.dataset import MANIFEST, SynthSettings, synthesize

    settings = SynthSettings(identities=config.identities, images_per_identity=config.images_per_identity,
                             size=config.image_size, seed=config.seed, test_identities=config.test_identities,
                             difficulty=config.difficulty)
    faces = work / "faces"
    if (faces / MANIFEST).is_file():
        try:
            previous = json.loads((faces / MANIFEST).read_text()).get("settings")
        except (OSError, ValueError):
            previous = None
        if previous != asdict(settings):  # an earlier demo with other sizes: its data is ours to replace
            shutil.rmtree(faces)
            shutil.rmtree(work / "aligned", ignore_errors=True)
    summary = synthesize(faces, settings, workers=config.workers)
    say(f"synthesised {summary.images} faces of {summary.train_identities} training and {summary.test_identities} "
        f"test identities into {faces} ({summary.written} new, {summary.seconds:.1f}s)")
    return faces


def align_synthetic_set(faces: Path, aligned: Path, size: int | str, workers: int | None = None):
    """Crop a synthetic set from its true landmarks into ``aligned`` (resumed on a rerun) and copy the test
    pairs beside the test crops, so that ``aligned/test`` reads as an LFW-layout benchmark; returns the
    :class:`facestra.align.records.AlignSummary`. Shared by the demo and the ablation runner."""
    from facestra.align.job import AlignOptions, align_images
    from facestra.synth.dataset import LANDMARKS_FILE, PAIRS_FILE, TEST_DIR

    summary = align_images(faces, aligned, AlignOptions(landmarks=faces / LANDMARKS_FILE, size=str(size), workers=workers))
    if summary.problems:
        raise UserError(f"{summary.report_path}: {summary.problems} faces could not be aligned")
    shutil.copyfile(faces / TEST_DIR / PAIRS_FILE, aligned / TEST_DIR / PAIRS_FILE)
    return summary


def _align(work: Path, faces: Path, config: DemoConfig, say: Log) -> Path:
    aligned = work / "aligned"
    summary = align_synthetic_set(faces, aligned, config.crop_size, config.workers)
    say(f"aligned {summary.faces_written} faces from their true landmarks to {config.crop_size}x{config.crop_size} "
        f"into {aligned} ({summary.seconds:.1f}s)")
    return aligned


def _detector_check(work: Path, faces: Path, config: DemoConfig, say: Log) -> dict[str, Any] | None:
    """Align the test faces with YuNet too (when installed) and compare its landmarks with the truth."""
    try:
        import yuface  # noqa: F401
    except ImportError:
        say("yunet detector: skipped (pip install 'facestra[detect]' to try it)")
        return None
    import csv

    from facestra.align.job import AlignOptions, align_images
    from facestra.align.landmarks import read_landmarks
    from facestra.synth.dataset import LANDMARKS_FILE, TEST_DIR

    out = work / "aligned_yunet"
    summary = align_images(faces / TEST_DIR, out, AlignOptions(detector="yunet", size=str(config.crop_size), workers=config.workers))
    truth = {e.path: e.points for e in read_landmarks(faces / LANDMARKS_FILE)}
    errors = []
    with open(summary.report_path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["status"] != "ok" or not row["x1"]:
                continue
            found = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(1, 6)])
            true = truth.get(f"{TEST_DIR}/{row['path']}")
            if true is not None:
                eye_distance = np.linalg.norm(true[1] - true[0])
                errors.append(float(np.mean(np.linalg.norm(found - true, axis=1)) / max(eye_distance, 1e-6)))
    found = summary.counts.get("ok", 0)
    figures = {
        "images": summary.images,
        "faces_found": found,
        "detection_rate": found / max(summary.images, 1),
        "mean_landmark_error_over_eye_distance": float(np.mean(errors)) if errors else None,
        "aligned": str(out),
    }
    error_text = f", landmark error {100 * figures['mean_landmark_error_over_eye_distance']:.1f}% of the eye distance" if errors else ""
    say(f"yunet detector: found a face in {found}/{summary.images} test images{error_text} ({out})")
    return figures


def _renamed(benchmark, name: str):
    from dataclasses import replace

    return replace(benchmark, name=name)


def _raw_pixels(benchmark):
    from facestra.data.images import read_image
    from facestra.synth.baseline import raw_pixel_pair_distances
    from facestra.verify.pairs import evaluate_distances

    distances = raw_pixel_pair_distances([read_image(path) for path in benchmark.images], benchmark.pairs)
    return evaluate_distances(distances, benchmark.issame, benchmark.fold_spec())


def _training_speed(arch: str, config: DemoConfig, batch_size: int) -> tuple[float, int]:
    """(training images per second, torch threads) of ``arch`` here: the faster of one thread and all cores.

    Timed on three steps of random inputs per setting. On a busy machine one thread can be many times faster
    than several (their synchronisation spins while other processes hold the cores), so the demo measures
    instead of assuming.
    """
    import os

    import torch

    from facestra import models
    from facestra.embed.inference import resolve_device

    device = resolve_device(config.device)
    size = config.crop_size
    model = models.create(arch, width=config.width, embedding_size=config.embedding_size,
                          input_size=(size, size)).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batch = torch.randn(batch_size, 3, size, size, device=device)
    choices = [1] if device.type == "cuda" else sorted({1, os.cpu_count() or 1})
    threads_before = torch.get_num_threads()
    speeds = {}
    try:
        for threads in choices:
            torch.set_num_threads(threads)
            timings = []
            for _ in range(3):
                begin = time.perf_counter()
                embeddings, diversity = model.forward_with_diversity(batch)
                (embeddings.square().mean() + diversity.mean()).backward()
                optimizer.step()
                optimizer.zero_grad()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                timings.append(time.perf_counter() - begin)
            speeds[threads] = batch_size / min(timings[1:])
    finally:
        torch.set_num_threads(threads_before)
    best = max(speeds, key=speeds.get)
    return speeds[best], best


def _train_and_verify(work: Path, aligned: Path, benchmark, arch: str, config: DemoConfig, say: Log):
    import torch

    from facestra import models
    from facestra.embed.inference import InferenceOptions, load_for_inference
    from facestra.embed.job import embed_to_file
    from facestra.io import list_images
    from facestra.synth.dataset import TEST_DIR, TRAIN_DIR
    from facestra.train import TrainConfig, train
    from facestra.verify.benchmarks import verify_model

    train_images = len(list_images(aligned / TRAIN_DIR))
    batch_size = min(config.batch_size, train_images)  # a tiny demo set still makes one batch
    # fit the paper's step schedule (x0.1 at 60 % and 85 % of the run) into the time budget
    rate, threads = _training_speed(arch, config, batch_size)
    budget_images = rate * config.minutes * 60.0 * 0.95  # the loader and the head cost a few % more
    epochs = int(min(40, max(1, math.floor(budget_images / max(train_images, 1)))))
    lr_steps = tuple(sorted({max(1, round(epochs * 0.6)), max(1, round(epochs * 0.85))})) if epochs >= 3 else ()
    run_dir = work / "runs" / arch
    train_config = TrainConfig(
        data=str(aligned / TRAIN_DIR), out=str(run_dir), arch=arch, width=config.width,
        embedding_size=config.embedding_size, input_size=(config.crop_size, config.crop_size), loss=config.loss,
        epochs=epochs, lr=0.1, lr_steps=lr_steps, warmup_epochs=min(1.0, epochs * 0.1), batch_size=batch_size,
        workers=0, threads=None if threads == torch.get_num_threads() else threads, seed=config.seed,
        device=config.device, max_minutes=config.minutes, overwrite=True,
        log_every=50,
    )
    say(f"training {arch} (width {config.width:g}, {config.crop_size}x{config.crop_size}) for at most "
        f"{config.minutes:g} min: {epochs} epochs of {train_images} images at ~{rate:.0f} images/s "
        f"({threads} thread{'s' if threads > 1 else ''}) ...")
    result = train(train_config)
    say(f"  {result.stopped} after {result.epochs_completed:.2f} epochs, {result.global_step} steps, "
        f"{result.elapsed_s:.0f}s -> {result.model_path}")
    model = load_for_inference(result.model_path, config.device)
    in_process = InferenceOptions(workers=0)  # a few small crops: decoding costs less than starting workers
    verified = verify_model(model, [benchmark], in_process)[0]
    verification = verified.result
    embeddings = work / "embeddings" / f"{arch}.npy"
    embed_to_file(model, list_images(aligned / TEST_DIR), embeddings, in_process, overwrite=True)
    size = (config.crop_size, config.crop_size)
    cost = models.complexity(models.create(arch, width=config.width, embedding_size=config.embedding_size,
                                           input_size=size), size)
    say(f"  {arch}: {100 * verification.accuracy:.2f}% ± {100 * verification.accuracy_std:.2f} on the held-out "
        f"pairs; test embeddings -> {embeddings}")
    return ModelOutcome(
        arch=arch, accuracy=verification.accuracy, accuracy_std=verification.accuracy_std,
        tar_at_far=dict(verification.tar_at_far), auc=verification.auc, params=int(cost.params), macs=int(cost.macs),
        train_seconds=result.elapsed_s, epochs=result.epochs_completed, steps=result.global_step,
        stopped=result.stopped, model_path=result.model_path, embeddings=embeddings,
    ), verified, model


def _report(work: Path, verified: list, raw, config: DemoConfig, command: str) -> Path:
    """``WORK/report.html``: a section per network on the held-out pairs, the raw-pixel floor beside them."""
    from dataclasses import replace

    from facestra.embed.inference import resolve_device
    from facestra.verify.html_report import ReportFacts, Table, write_report
    from facestra.verify.report_sections import benchmark_section, describe_device, model_facts

    floor = Table("The floor: raw aligned pixels on the same pairs", ("accuracy %", "AUC"),
                  ((f"{100 * raw.accuracy:.2f} ± {100 * raw.accuracy_std:.2f}", f"{raw.auc:.4f}"),))
    sections = [
        replace(benchmark_section(verification, tables=(floor,)), key=f"synth-{outcome.arch}",
                title=f"{outcome.arch} on the held-out synthetic pairs")
        for outcome, verification, _ in verified
    ]
    settings = (("training minutes per network", f"{config.minutes:g}"), ("identities", str(config.identities)),
                ("photos per identity", str(config.images_per_identity)), ("crop size", str(config.crop_size)))
    facts = ReportFacts(
        tuple(model_facts(model, outcome.model_path) for outcome, _, model in verified), command,
        describe_device(resolve_device(config.device)), settings,
        tuple(dict.fromkeys(warning for _, verification, _ in verified for warning in verification.warnings)),  # one benchmark
    )
    path = work / "report.html"
    write_report(path, facts, sections, title="facestra demo: verification report")
    return path


def _mode_mask_figure(work: Path, model, benchmark, config: DemoConfig, faces: int = 4) -> Path | None:
    """The last StRA block's mode masks over a few test faces (paper Fig. 4); None for a plain ResNet."""
    import torch

    from facestra import models
    from facestra.data.images import image_to_tensor, read_image
    from facestra.verify import figures as viz

    chosen = [benchmark.images[int(i)] for i in np.linspace(0, len(benchmark.images) - 1, faces).round()]
    crops = [read_image(path) for path in chosen]
    device = next(model.parameters()).device
    batch = torch.stack([image_to_tensor(crop) for crop in crops]).to(device)
    masks = models.mode_masks(model, batch)
    if not masks:
        return None
    path = work / "mode_masks.png"
    viz.plot_mode_masks(crops, masks[-1].float().cpu().numpy(), path)
    return path


def format_summary(result: DemoResult) -> str:
    """The table the command prints: accuracy ± std, TAR@FAR, parameters, multiply-adds, training time."""
    fars = (1e-1, 1e-2)
    header = ["network", "accuracy %", *[f"TAR@FAR={far:g} %" for far in fars], "params", "MACs", "train time"]
    rows = [header]
    raw = result.raw_pixels
    rows.append(["raw aligned pixels", f"{100 * raw['accuracy']:.2f} ± {100 * raw['accuracy_std']:.2f}",
                 *[_percent(raw["tar_at_far"].get(far)) for far in fars], "-", "-", "-"])
    for m in result.models:
        rows.append([m.arch, f"{100 * m.accuracy:.2f} ± {100 * m.accuracy_std:.2f}",
                     *[_percent(m.tar_at_far.get(far)) for far in fars], f"{m.params / 1e6:.2f}M",
                     f"{m.macs / 1e6:.1f}M", f"{m.train_seconds:.0f}s ({m.epochs:.1f} epochs)"])
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(header))]
    return "\n".join("".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _percent(value: float | None) -> str:
    """A fraction as a percentage; '-' where the pairs are too few to measure it (e.g. TAR at a tiny FAR)."""
    return "-" if value is None else f"{100 * value:.2f}"
