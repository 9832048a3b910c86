"""Figures: ROC curves of verification results (and, later, mode-mask overlays).

Figures are drawn on a ``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``'s global
state, so they work without a display and inside long-running processes; files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facestra.errors import UserError
from facestra.fileio import atomic_write

if TYPE_CHECKING:
    from facestra.verification import VerificationResult


def figure_format(path: str | os.PathLike) -> str:
    """The file format a figure path asks for (its suffix); an unsupported one is a UserError, raised
    before any long computation whose figure it is."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    file_format = Path(path).suffix.lstrip(".").lower() or "png"
    if file_format not in FigureCanvasAgg(Figure()).get_supported_filetypes():
        raise UserError(f"{path}: cannot draw a figure as .{file_format} (use .png, .pdf or .svg)")
    return file_format


def plot_roc(results: dict[str, VerificationResult], path: str | os.PathLike) -> None:
    """One ROC curve per named result (TAR against FAR, FAR on a log axis) saved to ``path`` (format from its suffix)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    file_format = figure_format(path)
    figure = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positive = [r.roc.fpr[r.roc.fpr > 0] for r in results.values()]
    left = min([1e-3] + [float(f.min()) for f in positive if len(f)])
    for name, result in results.items():
        # a log axis has no zero: points without false accepts are drawn at its left edge
        fpr = np.maximum(result.roc.fpr, left)
        label = f"{name}  acc {100 * result.accuracy:.2f}%  AUC {result.auc:.4f}  EER {100 * result.eer:.2f}%"
        axes.plot(fpr, result.roc.tpr, label=label)
    axes.set_xscale("log")
    axes.set_xlim(left, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("false accept rate")
    axes.set_ylabel("true accept rate")
    axes.set_title("ROC over all pairs")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format=file_format)
