"""What ``facestra verify`` prints and writes: the paper's table layout and every figure as JSON.

Kept apart from running the benchmarks so that a report can be rebuilt from saved outcomes, and so that
the table's layout is tested on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facestra.io import write_text_atomic
from facestra.verify.benchmarks import BenchmarkFailure, BenchmarkOutcome


def format_table(outcomes: Sequence[BenchmarkOutcome], network: str) -> str:
    """The paper's Table 5 layout (one row, a column per benchmark, accuracy in %), then details per benchmark."""
    titles = [o.benchmark.title for o in outcomes]
    width = max([len(network), len("Network")]) + 2
    columns = [max(len(t), 13) + 2 for t in titles]
    lines = [
        "Network".ljust(width) + "".join(t.ljust(c) for t, c in zip(titles, columns)),
        network.ljust(width)
        + "".join(f"{100 * o.result.accuracy:.2f}±{100 * o.result.accuracy_std:.2f}".ljust(c) for o, c in zip(outcomes, columns)),
        "",
    ]
    fars = sorted({far for o in outcomes for far in o.result.tar_at_far}, reverse=True)
    header = ["Benchmark", "Pairs", "Folds", "Acc %", "Std %", "Bal. acc %", "Threshold", "AUC", "EER %"] + [f"TAR@FAR={far:g} %" for far in fars]
    rows = [header]
    for o in outcomes:
        r = o.result
        rows.append(
            [
                o.benchmark.title,
                str(r.num_pairs),
                str(len(r.fold_accuracies)),
                f"{100 * r.accuracy:.2f}",
                f"{100 * r.accuracy_std:.2f}",
                f"{100 * r.balanced_accuracy:.2f}",
                f"{r.threshold:.3f}",
                f"{r.auc:.4f}",
                f"{100 * r.eer:.2f}",
            ]
            + [f"{100 * r.tar_at_far[far]:.2f}" if far in r.tar_at_far else "-" for far in fars]
        )
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(header))]
    lines += ["".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def report_dict(outcomes: Sequence[BenchmarkOutcome], *, checkpoint: str, network: str, flip: str,
                failures: Sequence[BenchmarkFailure] = ()) -> dict[str, Any]:
    """Every figure, JSON-ready; benchmarks that gave none are listed under ``errors`` with their message."""
    return {
        "checkpoint": checkpoint,
        "network": network,
        "flip": flip,
        "benchmarks": {
            o.benchmark.name: {
                "title": o.benchmark.title,
                "source": str(o.benchmark.source),
                **({"embeddings": str(o.embeddings_file)} if o.embeddings_file else {}),
                "warnings": list(o.warnings),
                **o.result.to_dict(),
            }
            for o in outcomes
        },
        "errors": [{"benchmark": f.name, "error": f.error} for f in failures],
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write the report atomically."""
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
