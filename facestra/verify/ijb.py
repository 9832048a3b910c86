"""``facestra verify --benchmark ijbb|ijbc``: embed the benchmark, pool templates, 1:1 and 1:N, report.

The flow: :func:`facestra.protocols.ijb.read_ijb` (every file checked first) -> raw features streamed to
the work folder (:mod:`facestra.verify.ijb_embed`) -> template features and figures
(:mod:`facestra.verify.templates`). The work folder is ours, never inside the benchmark's folder.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from facestra.embed.inference import InferenceOptions, Progress
from facestra.errors import UserError
from facestra.io import atomic_write
from facestra.protocols.ijb import IJBData
from facestra.verify.templates import (
    Identification,
    TemplateOptions,
    TemplateVerification,
    identify,
    template_features,
    template_rows,
    thin_roc,
    verify_templates,
)


@dataclass(frozen=True, eq=False)
class IJBOutcome:
    """One IJB benchmark's 1:1 figures and, when its 1:N lists are there, one identification per gallery."""

    data: IJBData
    verification: TemplateVerification
    identification: dict[str, Identification] = field(default_factory=dict)
    features_file: Path | None = None
    resumed_from: int = 0
    warnings: tuple[str, ...] = ()  # what :func:`facestra.verify.ijb_checks.check_ijb` warned of


def work_folder(name: str, work: Path | None, json_path: Path | None) -> Path:
    """Where the raw features go: ``--work``, else beside ``--json``, else in the current folder."""
    if work is not None:
        return Path(work)
    if json_path is not None:
        return Path(json_path).parent / f"{Path(json_path).stem}.{name}-work"
    return Path.cwd() / f"facestra-{name}-work"


def check_work_folder(work: Path, data_root: Path) -> None:
    """Refuse a work folder inside the benchmark's folder: the user's data is read-only to us."""
    root = Path(data_root).resolve()
    place = Path(work).resolve()
    if place == root or root in place.parents:
        raise UserError(f"{work}: is inside the benchmark folder {data_root}; choose a `work` folder elsewhere")


def evaluate_ijb(
    data: IJBData, raw: np.ndarray, options: TemplateOptions = TemplateOptions()
) -> tuple[TemplateVerification, dict[str, Identification]]:
    """The figures of ``data`` from its raw image+mirror features (N x 2D, may be a memory map)."""
    unique_templates, features = template_features(raw, data.detector_scores, data.templates, data.medias, options)
    verification = verify_templates(features, unique_templates, data.pairs, data.labels)
    identification: dict[str, Identification] = {}
    if data.probes is not None:
        probe_features = features[template_rows(unique_templates, data.probes.templates)]
        for label, gallery in data.galleries.items():
            gallery_features = features[template_rows(unique_templates, gallery.templates)]
            identification[label] = identify(probe_features, data.probes.subjects, gallery_features, gallery.subjects)
    return verification, identification


def verify_ijb(
    model: nn.Module,
    data: IJBData,
    work: str | os.PathLike,
    options: InferenceOptions = InferenceOptions(),
    template_options: TemplateOptions = TemplateOptions(),
    *,
    progress: Progress | None = None,
) -> IJBOutcome:
    """Embed ``data`` with ``model`` (resuming or reusing what ``work`` holds) and evaluate it."""
    from facestra.verify.ijb_checks import check_ijb
    from facestra.verify.ijb_embed import embed_ijb

    check_work_folder(Path(work), data.root)
    warnings = check_ijb(data, template_options)  # before any image is embedded
    stored = embed_ijb(model, data, work, options, progress=progress)
    raw = np.load(stored.path, mmap_mode="r")
    verification, identification = evaluate_ijb(data, raw, template_options)
    return IJBOutcome(data, verification, identification, stored.path, stored.resumed_from, tuple(warnings))


def mean_identification(identification: dict[str, Identification]) -> dict[str, Any]:
    """The average of the galleries' figures (how papers quote 1:N on IJB)."""
    parts = list(identification.values())
    return {
        "tpir_at_fpir": {f"{k:g}": float(np.mean([p.tpir_at_fpir[k] for p in parts])) for k in parts[0].tpir_at_fpir},
        "rank": {str(k): float(np.mean([p.rank_accuracy[k] for p in parts])) for k in parts[0].rank_accuracy},
    }


def format_ijb_table(outcome: IJBOutcome, network: str) -> str:
    """The TAR@FAR row as papers print it (in %), then the 1:N figures per gallery."""
    result = outcome.verification
    fars = list(result.tar_at_far)
    header = ["Network", "Benchmark"] + [f"{far:g}" for far in fars] + ["AUC"]
    row = [network, outcome.data.title] + [f"{100 * result.tar_at_far[far]:.2f}" for far in fars] + [f"{100 * result.auc:.2f}"]
    lines = [f"{outcome.data.title} 1:1 TAR (%) at FAR: {result.num_pairs} pairs of {result.num_templates} templates"]
    lines += _columns([header, row])
    if outcome.identification:
        first = next(iter(outcome.identification.values()))
        header = ["Gallery", "Mated", "Non-mated"] + [f"TPIR@FPIR={f:g}" for f in first.tpir_at_fpir] + [f"Rank-{k}" for k in first.rank_accuracy]
        rows = [header]
        for label, part in outcome.identification.items():
            rows.append(
                [label, str(part.num_mated), str(part.num_nonmated)]
                + [f"{100 * v:.2f}" for v in part.tpir_at_fpir.values()]
                + [f"{100 * v:.2f}" for v in part.rank_accuracy.values()]
            )
        mean = mean_identification(outcome.identification)
        rows.append(["mean", "", ""] + [f"{100 * v:.2f}" for v in mean["tpir_at_fpir"].values()] + [f"{100 * v:.2f}" for v in mean["rank"].values()])
        lines += ["", f"{outcome.data.title} 1:N (%)"] + _columns(rows)
    return "\n".join(lines)


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
    return ["".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def ijb_report_dict(outcome: IJBOutcome, *, checkpoint: str, network: str, options: TemplateOptions) -> dict[str, Any]:
    """Every figure, JSON-ready, in the layout of the other benchmarks' report: under the benchmark's name."""
    entry: dict[str, Any] = {
        "title": outcome.data.title,
        "source": str(outcome.data.root),
        "template_options": asdict(options),
        "warnings": list(outcome.warnings),
        **({"raw_features": str(outcome.features_file)} if outcome.features_file else {}),
        **outcome.verification.to_dict(),
    }
    if outcome.identification:
        entry["identification"] = {label: part.to_dict() for label, part in outcome.identification.items()}
        entry["identification"]["mean"] = mean_identification(outcome.identification)
    return {"checkpoint": checkpoint, "network": network, "benchmarks": {outcome.data.name: entry}}


def plot_ijb_roc(outcome: IJBOutcome, path: str | os.PathLike) -> None:
    """The 1:1 ROC (TAR against FAR on a log axis, 1e-6 to 1), as ``eval_ijbc.py`` draws it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from facestra.verify.figures import figure_format

    file_format = figure_format(path)
    roc = outcome.verification.roc
    keep = thin_roc(roc, 2000)
    figure = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(np.maximum(roc.fpr[keep], 1e-6), roc.tpr[keep], lw=1, label=f"{outcome.data.title} (AUC {100 * outcome.verification.auc:.2f}%)")
    axes.set_xscale("log")
    axes.set_xlim(1e-6, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(f"ROC on {outcome.data.title}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format=file_format)
