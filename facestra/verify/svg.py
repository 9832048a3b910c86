"""Figures as inline SVG text for the HTML report: ROC, DET, score histograms and fold accuracies.

Pure: arrays in, one ``<svg>`` string out. No matplotlib, no font or file, so the page needs nothing beside
itself and a figure is a few kilobytes; curves are thinned to the points half a pixel apart, so a figure of
fifteen million pairs is as small as one of six thousand. Data outside an axis is drawn at its edge (a log
axis has no zero), never outside the plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH, HEIGHT = 440, 300
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 28, 42
GENUINE, IMPOSTOR, CURVE = "#1b9e77", "#d95f02", "#3060c0"
# the first threshold marker (the protocol's) in black, the others in colours a reader tells apart
MARKER_COLOURS = ("#111111", "#7570b3", "#e7298a", "#66a61e", "#b8860b", "#a6761d", "#1f78b4")
PROBIT_TICKS = (1e-6, 1e-5, 1e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.4)

Label = tuple[str, float]  # (text, data value): a threshold line on a histogram
Point = tuple[str, float, float]  # (text, x, y): an operating point on a curve


@dataclass(frozen=True)
class Axis:
    """Data values ``low..high`` on a linear, log10 or probit (normal deviate) scale, placed at pixels
    ``start..end``."""

    low: float
    high: float
    start: float
    end: float
    scale: str = "linear"

    def _transform(self, values: np.ndarray) -> np.ndarray:
        if self.scale == "log":
            return np.log10(values)
        if self.scale == "probit":
            from scipy.special import ndtri

            return ndtri(values)
        return values

    def place(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Pixel positions of ``values``, those outside the axis at its nearer end."""
        clipped = np.clip(np.asarray(values, dtype=np.float64), self.low, self.high)
        low, high = self._transform(np.array([self.low, self.high]))
        return self.start + (self._transform(clipped) - low) / (high - low) * (self.end - self.start)

    def ticks(self) -> list[tuple[float, str]]:
        """Tick values inside the axis with their labels."""
        if self.scale == "log":
            decades = range(math.ceil(math.log10(self.low) - 1e-9), math.floor(math.log10(self.high) + 1e-9) + 1)
            return [(10.0**k, _power_of_ten(k)) for k in decades]
        if self.scale == "probit":
            return [(v, f"{100 * v:g}%") for v in PROBIT_TICKS if self.low <= v <= self.high]
        step = _nice_step((self.high - self.low) / 5)
        first = math.ceil(self.low / step - 1e-9) * step
        values = np.arange(first, self.high + step * 1e-6, step)
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        return [(float(v), f"{v:.{decimals}f}") for v in values]


def _power_of_ten(exponent: int) -> str:
    return {0: "1", 1: "10"}.get(exponent, f"1e{exponent}")


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))


def _x_axis(low: float, high: float, scale: str = "linear") -> Axis:
    return Axis(low, high, LEFT, WIDTH - RIGHT, scale)


def _y_axis(low: float, high: float, scale: str = "linear") -> Axis:
    return Axis(low, high, HEIGHT - BOTTOM, TOP, scale)


def _figure(title: str, x: Axis, y: Axis, x_label: str, y_label: str, body: list[str],
            legend: Sequence[tuple[str, str, bool]] = (), *, x_ticks: bool = True, legend_at: str = "top left") -> str:
    """The frame (grid, ticks, axis labels, title, legend of ``(label, colour, dashed)`` in the corner
    ``legend_at`` names, where the curves are not) around ``body``; ``x_ticks=False`` leaves the x ticks to
    the body (bars label their own)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="figure" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="10">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{WIDTH / 2:.1f}" y="16" text-anchor="middle" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    for value, text in x.ticks() if x_ticks else ():
        px = float(x.place([value])[0])
        parts.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{HEIGHT - BOTTOM}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{px:.1f}" y="{HEIGHT - BOTTOM + 13}" text-anchor="middle">{escape(text)}</text>')
    for value, text in y.ticks():
        py = float(y.place([value])[0])
        parts.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{WIDTH - RIGHT}" y2="{py:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{py + 3:.1f}" text-anchor="end">{escape(text)}</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" fill="none" stroke="#888888"/>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(13 {(TOP + HEIGHT - BOTTOM) / 2:.1f}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>')
    parts += body
    longest = max((len(label) for label, _, _ in legend), default=0)
    left = LEFT + 8 if "left" in legend_at else WIDTH - RIGHT - 36 - 5.5 * longest
    first = TOP + 12 if "top" in legend_at else HEIGHT - BOTTOM - 6 - 13 * (len(legend) - 1)
    for row, (label, colour, dashed) in enumerate(legend):
        ly = first + 13 * row
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        parts.append(f'<line x1="{left:.1f}" y1="{ly - 3}" x2="{left + 18:.1f}" y2="{ly - 3}" stroke="{colour}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{left + 22:.1f}" y="{ly}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _polyline(px: np.ndarray, py: np.ndarray, colour: str, width: float = 1.6) -> str:
    """A polyline through the points, keeping one of each run of points in the same half-pixel cell."""
    if len(px) == 0:
        return ""
    cells_x, cells_y = np.round(px * 2), np.round(py * 2)
    keep = np.r_[True, (cells_x[1:] != cells_x[:-1]) | (cells_y[1:] != cells_y[:-1])]
    keep[-1] = True
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px[keep], py[keep]))
    return f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="{width}"/>'


def _points(marks: Sequence[Point], x: Axis, y: Axis) -> list[str]:
    parts = []
    for index, (label, vx, vy) in enumerate(marks):
        colour = MARKER_COLOURS[index % len(MARKER_COLOURS)]
        px, py = float(x.place([vx])[0]), float(y.place([vy])[0])
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"><title>{escape(label)}</title></circle>')
    return parts


def _lowest_rate(*rates: np.ndarray, floor: float = 1e-6, ceiling: float = 1e-2) -> float:
    """The smallest positive rate of the curves, within ``[floor, ceiling]``: where a rate axis starts."""
    positive = [float(r[r > 0].min()) for r in rates if np.any(r > 0)]
    return float(np.clip(min(positive, default=ceiling), floor, ceiling))


def roc_svg(fpr: np.ndarray, tpr: np.ndarray, marks: Sequence[Point] = (), title: str = "ROC") -> str:
    """True accept rate against false accept rate on a log axis from the smallest measured FAR to 1;
    ``marks`` are operating points ``(label, far, tar)``."""
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    low = 10.0 ** math.floor(math.log10(_lowest_rate(fpr)))
    x, y = _x_axis(low, 1.0, "log"), _y_axis(0.0, 1.0)
    body = [_polyline(x.place(fpr), y.place(tpr), CURVE)] + _points(marks, x, y)
    legend = [(label, MARKER_COLOURS[i % len(MARKER_COLOURS)], False) for i, (label, _, _) in enumerate(marks)]
    return _figure(title, x, y, "false accept rate (log)", "true accept rate", body, legend, legend_at="bottom right")


def det_svg(fpr: np.ndarray, fnr: np.ndarray, marks: Sequence[Point] = (), title: str = "DET") -> str:
    """False reject rate against false accept rate, both on normal-deviate axes up to 50 %; ``marks`` are
    operating points ``(label, far, frr)``."""
    fpr, fnr = np.asarray(fpr, dtype=np.float64), np.asarray(fnr, dtype=np.float64)
    low = max(t for t in PROBIT_TICKS if t <= _lowest_rate(fpr, fnr))
    x, y = _x_axis(low, 0.5, "probit"), _y_axis(low, 0.5, "probit")
    body = [_polyline(x.place(fpr), y.place(fnr), CURVE)] + _points(marks, x, y)
    legend = [(label, MARKER_COLOURS[i % len(MARKER_COLOURS)], False) for i, (label, _, _) in enumerate(marks)]
    return _figure(title, x, y, "false accept rate", "false reject rate", body, legend, legend_at="top right")


def histogram_svg(genuine: np.ndarray, impostor: np.ndarray, lines: Sequence[Label] = (), *, bins: int = 60,
                  title: str = "Scores", x_label: str = "squared distance") -> str:
    """The genuine and impostor distances as two outlined histograms, each as a share of its own pairs
    (impostors often outnumber genuine pairs a thousand to one), with a vertical line per threshold."""
    genuine, impostor = np.asarray(genuine, dtype=np.float64), np.asarray(impostor, dtype=np.float64)
    values = [v for v in (genuine, impostor) if len(v)]
    low = min([float(v.min()) for v in values] + [t for _, t in lines])
    high = max([float(v.max()) for v in values] + [t for _, t in lines])
    pad = 0.02 * (high - low) or 0.05
    edges = np.linspace(low - pad, high + pad, bins + 1)
    shares = [np.histogram(v, edges)[0] / max(len(v), 1) for v in (genuine, impostor)]
    x, y = _x_axis(edges[0], edges[-1]), _y_axis(0.0, max(float(max(s.max() for s in shares)) * 1.1, 1e-9))
    body = []
    for share, colour in zip(shares, (GENUINE, IMPOSTOR)):
        px = x.place(np.repeat(edges, 2))
        py = y.place(np.r_[0.0, np.repeat(share, 2), 0.0])
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
        body.append(f'<polygon points="{points}" fill="{colour}" fill-opacity="0.25" stroke="{colour}" stroke-width="1.2"/>')
    legend = [(f"same pairs ({len(genuine)})", GENUINE, False), (f"different pairs ({len(impostor)})", IMPOSTOR, False)]
    for index, (label, value) in enumerate(lines):
        colour = MARKER_COLOURS[index % len(MARKER_COLOURS)]
        px = float(x.place([value])[0])
        dash = ' stroke-dasharray="4 3"' if index else ""
        body.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{HEIGHT - BOTTOM}" stroke="{colour}" stroke-width="1.5"{dash}>'
                    f"<title>{escape(label)}: {value:.4f}</title></line>")
        legend.append((f"{label} {value:.3f}", colour, bool(index)))
    return _figure(title, x, y, x_label, "share of pairs", body, legend)


def bars_svg(values: np.ndarray, title: str = "Fold accuracies", y_label: str = "accuracy %") -> str:
    """One bar per fold (numbered from 1), in percent, the axis spanning the values, the mean dashed."""
    percent = 100 * np.asarray(values, dtype=np.float64)
    low = max(0.0, float(percent.min()) - max(1.0, 0.5 * float(np.ptp(percent))))
    step = _nice_step((100.0 - low) / 5)
    low = math.floor(low / step) * step
    x, y = _x_axis(0.5, len(percent) + 0.5), _y_axis(low, 100.0)
    width = 0.7 * (x.end - x.start) / max(len(percent), 1)
    bottom = float(y.place([low])[0])
    body = []
    for fold, value in enumerate(percent, 1):
        cx, top = float(x.place([fold])[0]), float(y.place([value])[0])
        body.append(f'<rect x="{cx - width / 2:.1f}" y="{top:.1f}" width="{width:.1f}" height="{bottom - top:.1f}" fill="{CURVE}">'
                    f"<title>fold {fold}: {value:.2f}%</title></rect>")
        if len(percent) <= 12:
            body.append(f'<text x="{cx:.1f}" y="{bottom + 12:.1f}" text-anchor="middle" fill="#555555">{fold}</text>')
    mean = float(np.mean(percent))
    my = float(y.place([mean])[0])
    body.append(f'<line x1="{LEFT}" y1="{my:.1f}" x2="{WIDTH - RIGHT}" y2="{my:.1f}" stroke="#111111" stroke-dasharray="4 3"/>')
    return _figure(title, x, y, "fold", y_label, body, [(f"mean {mean:.2f}%", "#111111", True)], x_ticks=False)
