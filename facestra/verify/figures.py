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
from facestra.io import atomic_write

if TYPE_CHECKING:
    from facestra.verify.pairs import VerificationResult


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


def plot_mode_masks(faces: list[np.ndarray], masks: np.ndarray, path: str | os.PathLike) -> None:
    """Each StRA mode's spatial mask over each face (paper Fig. 4): a row per face, a column per mode.

    ``faces`` are aligned BGR uint8 crops; ``masks`` is (faces, modes, h, w) from
    :func:`facestra.models.mode_masks`. Every mask is stretched to its own [min, max] and upsampled to the crop,
    so the figure shows *where* each mode looks, not how strongly.
    """
    import cv2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    masks = np.asarray(masks, dtype=np.float64)
    if masks.ndim != 4 or masks.shape[0] != len(faces):
        raise ValueError(f"need one (modes, h, w) mask stack per face, got {masks.shape} for {len(faces)} faces")
    rows, modes = masks.shape[:2]
    figure = Figure(figsize=(1.3 * (modes + 1), 1.4 * rows), dpi=110)
    FigureCanvasAgg(figure)
    for row, face in enumerate(faces):
        rgb = np.ascontiguousarray(face[:, :, ::-1])
        height, width = rgb.shape[:2]
        axes = figure.add_subplot(rows, modes + 1, row * (modes + 1) + 1)
        axes.imshow(rgb)
        axes.set_axis_off()
        if row == 0:
            axes.set_title("face", fontsize=8)
        for mode in range(modes):
            mask = masks[row, mode]
            span = mask.max() - mask.min()
            mask = (mask - mask.min()) / span if span > 0 else np.zeros_like(mask)
            mask = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
            axes = figure.add_subplot(rows, modes + 1, row * (modes + 1) + mode + 2)
            axes.imshow(rgb)
            axes.imshow(mask, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
            axes.set_axis_off()
            if row == 0:
                axes.set_title(f"mode {mode + 1}", fontsize=8)
    figure.tight_layout(pad=0.3)
    target = Path(path)
    file_format = target.suffix.lstrip(".").lower() or "png"
    with atomic_write(target) as tmp:
        figure.savefig(tmp, format=file_format)
