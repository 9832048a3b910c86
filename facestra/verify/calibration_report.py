"""What ``facestra calibrate`` prints: the operating points as a table, then EER, best accuracy and P(same)."""

from __future__ import annotations

from facestra.verify.calibration import CalibrationResult
from facestra.verify.calibration_job import Calibration


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage with ``digits`` decimals; ``-`` for a figure these data could not give."""
    return "-" if value is None else f"{100 * value:.{digits}f}"


def percent_span(bounds: tuple[float, float] | None, digits: int = 2) -> str:
    """An interval of fractions as ``low-high`` in percent; ``-`` when no bootstrap draw could measure it."""
    return "-" if bounds is None else f"{percent(bounds[0], digits)}-{percent(bounds[1], digits)}"


def operating_point_rows(result: CalibrationResult) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The operating points as text cells, header first: what the printed table and the report show."""
    header = ("FAR target", "cosine >=", "distance <=", "TAR %", "TAR 95% CI", "FAR achieved %", "FAR 95% CI")
    rows = []
    for point in result.points:
        if not point.supported:
            rows.append((f"{point.far_target:g}", "-", "-", "-", "-", "-", "not supported (too few impostor pairs)"))
            continue
        rows.append((f"{point.far_target:g}", f"{point.threshold:.4f}", f"{point.distance_threshold:.4f}", percent(point.tar),
                     percent_span(point.tar_interval), percent(point.far, 5), percent_span(point.far_interval, 5)))
    return header, rows


def format_calibration(calibration: Calibration) -> str:
    """The table of operating points (a FAR the data cannot measure says so) and the summary lines."""
    result = calibration.result
    source = calibration.source
    sampled = " (a seeded sample)" if source["sampled"] else ""
    lines = [
        f"{source['path']}: {result.num_genuine:,} genuine and {result.num_impostor:,} impostor pairs scored{sampled}, "
        f"{result.num_identities:,} identities; intervals: 95%, {result.bootstrap} bootstrap draws over identities",
        "",
    ]
    header, body = operating_point_rows(result)
    rows = [header, *body]
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(header))]
    lines += ["".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    eer, best, fit = result.eer_point, result.best_accuracy, result.probability
    ece = "not measured (too few held-out identities)" if fit.ece is None else f"{100 * fit.ece:.2f}% on {fit.ece_pairs:,} held-out pairs"
    lines += [
        "",
        f"EER {100 * result.eer:.2f}% at cosine {eer.threshold:.4f}",
        f"best accuracy {100 * best.accuracy:.2f}% (balanced {100 * best.balanced_accuracy:.2f}%) at cosine {best.threshold:.4f}",
        f"P(same) = sigmoid({fit.coef:.3f} * cosine + {fit.intercept:.3f}) at prior {fit.prior:g}; calibration error {ece}",
    ]
    for point in result.points:
        if not point.supported:
            lines.append(f"FAR {point.far_target:g}: {point.reason}")
    return "\n".join(lines)
