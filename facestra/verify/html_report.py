"""One self-contained HTML page a person can look at: figures, the pairs the model gets wrong, the facts.

``verify --report`` and ``demo`` write it; ``calibrate --report`` can too. The page opens from disk with no
network: figures are inline SVG (:mod:`facestra.verify.svg`), faces are small JPEG thumbnails embedded as
``data:`` URIs, there is no script, font or style from elsewhere. A face that cannot be decoded is a
labelled placeholder, never a broken page. A JSON block (``<script type="application/json"
id="facestra-report">``, data, not code) repeats what the page lists, for programs and tests.

The input is plain data, so other commands reuse the renderer:

* :class:`Section`, one per benchmark: the distances and labels (histograms, ROC, DET), tables, threshold
  markers, fold accuracies and the hardest pairs to show. :func:`benchmark_section` and
  :func:`ijb_section` build one from a ``verify`` outcome; :func:`scores_section` from any pair scores.
  Each takes extra ``markers`` (``(label, squared-distance threshold)``, drawn on the histograms and as
  operating points on the ROC and DET) and extra ``tables`` (:class:`Table`), e.g. calibrated operating
  points.
* :class:`ReportFacts`: the model(s), command line, versions, device, date, warnings and errors.
* :func:`write_report` renders both to one file, atomically.

Distances throughout are the protocol's squared Euclidean distance of unit embeddings (``2 - 2 cos``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from facestra import __version__
from facestra.errors import UserError
from facestra.fields import documented
from facestra.verify import svg
from facestra.verify.hardest import hardest_errors

if TYPE_CHECKING:
    from torch import nn

    from facestra.verify.benchmarks import BenchmarkOutcome
    from facestra.verify.ijb import IJBOutcome

THUMBNAIL_SIDE = 96
# (longest side, JPEG quality) tried in turn until a thumbnail fits THUMBNAIL_BYTES: a face compresses to
# a third of that at the first setting; noise would not, and the page's size must not depend on the data.
THUMBNAIL_SETTINGS = ((96, 85), (96, 60), (96, 40), (72, 40), (56, 30))
THUMBNAIL_BYTES = 6000
IJB_REPORT_FAR = 1e-4  # the IJB operating point whose errors are shown, the FAR papers quote most

Marker = tuple[str, float]  # (label, squared-distance threshold: a pair is "same" below it)


@dataclass(frozen=True)
class ReportOptions:
    """Whether and how ``verify`` (and ``calibrate``) write the HTML report."""

    report: Path | None = documented(
        None, "Also write one self-contained HTML page: figures, the hardest wrong pairs with their faces, the facts.",
        path="file", metavar="HTML",
    )
    report_pairs: int = documented(12, "Hardest false accepts and false rejects the report shows per benchmark.", minimum=0, maximum=1000)


@dataclass(frozen=True)
class Table:
    """A table of text cells under a title (``calibrate`` adds its operating points as one)."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, eq=False)
class ReportImage:
    """A face to show: its name on the page, its encoded bytes or file (None: nothing to show), and, for a
    loose crop, its five landmarks (the face is aligned before it is shown)."""

    name: str
    source: Path | bytes | None
    landmarks: np.ndarray | None = None


@dataclass(frozen=True)
class ShownPair:
    """One wrong pair: its position in the pair list (from 0), its two faces, distance, the threshold it
    was judged by and its fold (None: one threshold for all pairs)."""

    index: int
    first: ReportImage
    second: ReportImage
    distance: float
    threshold: float
    fold: int | None


@dataclass(frozen=True, eq=False)
class Section:
    """One benchmark as the page shows it. ``markers[0]`` is the threshold the errors were judged by."""

    key: str
    title: str
    source: str
    distances: np.ndarray
    issame: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    tables: tuple[Table, ...]
    markers: tuple[Marker, ...]
    false_accepts: tuple[ShownPair, ...] = ()
    false_rejects: tuple[ShownPair, ...] = ()
    num_false_accepts: int = 0
    num_false_rejects: int = 0
    judged_by: str = ""
    fold_accuracies: np.ndarray | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelFacts:
    """What a reader needs to know which model gave the figures."""

    arch: str
    checkpoint: str
    sha256: str
    params: int | None
    macs: int | None
    input: str
    embedding_size: int


@dataclass(frozen=True)
class ReportFacts:
    """The run: models, command line, device, settings, every warning and error, versions and date."""

    models: tuple[ModelFacts, ...]
    command: str
    device: str
    settings: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    facestra_version: str = __version__
    torch_version: str = field(default_factory=lambda: _torch_version())
    date: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read a megabyte at a time (a checkpoint can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_facts(model: nn.Module, checkpoint: str | os.PathLike) -> ModelFacts:
    """Architecture, parameters and multiply-adds (not counted for ONNX graphs), input convention and
    size, embedding size and the checkpoint's SHA-256."""
    from facestra.data.images import FACESTRA_INPUT

    arch = str(getattr(model, "arch", type(model).__name__))
    params = macs = None
    if not arch.startswith("onnx:"):
        from facestra.models.complexity import complexity

        cost = complexity(model)
        params, macs = int(cost.params), int(cost.macs)
    convention = getattr(model, "input_convention", FACESTRA_INPUT)
    height, width = model.input_size
    described = f"RGB {height}x{width}, (x - {convention.mean:g}) / {convention.std:g}"
    return ModelFacts(arch, str(checkpoint), file_sha256(checkpoint), params, macs, described, int(model.embedding_size))


def describe_device(device: Any) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'s' if threads > 1 else ''})"


def scores_section(
    key: str,
    title: str,
    source: str,
    distances: np.ndarray,
    issame: np.ndarray,
    *,
    thresholds: np.ndarray,
    fold_ids: np.ndarray,
    pair_images: Callable[[int], tuple[ReportImage, ReportImage]],
    judged_by: str,
    marker: Marker,
    pairs: int = 12,
    tables: Sequence[Table] = (),
    markers: Sequence[Marker] = (),
    roc: tuple[np.ndarray, np.ndarray] | None = None,
    fold_accuracies: np.ndarray | None = None,
    folds_shown: bool = True,
    warnings: Sequence[str] = (),
) -> Section:
    """A section from any pair scores: the ``pairs`` hardest errors judged by ``thresholds[fold_ids]``
    (:func:`facestra.verify.hardest.hardest_errors`), ``marker`` (the threshold line for them) then
    ``markers`` on the figures, the ROC given as ``(fpr, tpr)`` or computed from the distances."""
    from facestra.verify.pairs import roc_curve

    distances = np.asarray(distances, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    hardest = hardest_errors(distances, issame, thresholds, fold_ids, pairs)
    if roc is None:
        curve = roc_curve(distances, issame)
        roc = (curve.fpr, curve.tpr)

    def shown(indices: np.ndarray) -> tuple[ShownPair, ...]:
        out = []
        for index in indices.tolist():
            first, second = pair_images(index)
            fold = int(fold_ids[index]) + 1 if folds_shown else None
            out.append(ShownPair(index, first, second, float(distances[index]), float(hardest.thresholds[index]), fold))
        return tuple(out)

    return Section(
        key=key, title=title, source=source, distances=distances, issame=issame, fpr=np.asarray(roc[0]),
        tpr=np.asarray(roc[1]), tables=tuple(tables), markers=(marker, *markers),
        false_accepts=shown(hardest.false_accepts), false_rejects=shown(hardest.false_rejects),
        num_false_accepts=hardest.num_false_accepts, num_false_rejects=hardest.num_false_rejects,
        judged_by=judged_by, fold_accuracies=fold_accuracies, warnings=tuple(warnings),
    )


def benchmark_section(outcome: BenchmarkOutcome, *, pairs: int = 12, markers: Sequence[Marker] = (),
                      tables: Sequence[Table] = ()) -> Section:
    """The section of one 10-fold benchmark outcome of ``verify``: each pair judged in its held-out fold by
    the threshold chosen on the other folds, as the protocol judges it."""
    from facestra.verify.pairs import far_operating_points

    benchmark, result = outcome.benchmark, outcome.result
    if outcome.distances is None:
        raise ValueError(f"{benchmark.name}: the outcome holds no pair distances")
    summary = Table("Summary", ("pairs", "same", "folds", "accuracy %", "threshold (mean of folds)", "AUC", "EER %"), ((
        str(result.num_pairs), str(result.num_same), str(len(result.fold_accuracies)),
        f"{100 * result.accuracy:.2f} ± {100 * result.accuracy_std:.2f}", f"{result.threshold:.3f}",
        f"{result.auc:.4f}", f"{100 * result.eer:.2f}"),))
    points = far_operating_points(result.roc, result.num_pairs - result.num_same, list(result.tar_at_far))
    operating = Table("TAR at FAR (all pairs)", ("FAR", "TAR %", "distance threshold (same if ≤)", "cosine"), tuple(
        (f"{far:g}", f"{100 * tar:.2f}", f"{threshold:.4f}", f"{1 - threshold / 2:.4f}")
        for far, (tar, threshold) in points.items()))
    return scores_section(
        benchmark.name, benchmark.title, str(benchmark.source), outcome.distances, benchmark.issame,
        thresholds=result.best_thresholds, fold_ids=result.fold_ids,
        pair_images=lambda index: tuple(benchmark_image(benchmark, int(i)) for i in benchmark.pairs[index]),
        judged_by="each pair in its held-out fold, by the threshold chosen on the other folds (same if distance < threshold)",
        marker=("protocol threshold (mean of folds)", result.threshold), pairs=pairs,
        tables=(summary, operating, *tables), markers=markers, roc=(result.roc.fpr, result.roc.tpr),
        fold_accuracies=result.fold_accuracies, warnings=outcome.warnings,
    )


def benchmark_image(benchmark: Any, index: int) -> ReportImage:
    """Image ``index`` of a benchmark, named by its path under the benchmark's folder (or its place in a
    ``.bin``)."""
    image = benchmark.images[index]
    if isinstance(image, bytes):
        return ReportImage(f"{Path(benchmark.source).name} #{index}", image)
    root = Path(benchmark.source)
    root = root if root.is_dir() else root.parent
    try:
        name = str(Path(image).relative_to(root))
    except ValueError:
        name = str(image)
    return ReportImage(name, Path(image))


def ijb_section(outcome: IJBOutcome, *, pairs: int = 12, far: float = IJB_REPORT_FAR,
                markers: Sequence[Marker] = (), tables: Sequence[Table] = ()) -> Section:
    """The section of an IJB outcome: TAR at FAR, ROC, DET, histograms, and the hardest template pairs at
    the threshold of ``far`` (the ROC point nearest it), each template shown by its best-scored image."""
    verification, data = outcome.verification, outcome.data
    if verification.scores is None:
        raise ValueError(f"{data.name}: the outcome holds no pair scores")
    roc = verification.roc
    nearest = {f: len(roc.fpr) - 1 - int(np.argmin(np.abs(roc.fpr[::-1] - f))) for f in verification.tar_at_far}
    operating = Table("1:1 TAR at FAR (ROC point nearest each FAR, as eval_ijbc.py)", ("FAR", "TAR %", "cosine threshold", "distance"), tuple(
        (f"{f:g}", f"{100 * verification.tar_at_far[f]:.2f}", f"{roc.thresholds[i]:.4f}", f"{2 - 2 * roc.thresholds[i]:.4f}")
        for f, i in nearest.items()))
    summary = Table("Summary", ("template pairs", "same", "templates", "AUC %"), ((
        str(verification.num_pairs), str(verification.num_same), str(verification.num_templates), f"{100 * verification.auc:.2f}"),))
    at = len(roc.fpr) - 1 - int(np.argmin(np.abs(roc.fpr[::-1] - far)))
    # same when score >= the point's threshold, i.e. distance <= 2 - 2 threshold: the next float up for "<"
    # (the first point's threshold is +inf: nothing is accepted there)
    threshold = float(np.nextafter(2.0 - 2.0 * min(float(roc.thresholds[at]), 1.0), np.inf))
    distances = 2.0 - 2.0 * np.asarray(verification.scores, dtype=np.float64)
    shown_image = _template_images(data)
    return scores_section(
        data.name, data.title, str(data.root), distances, data.labels,
        thresholds=np.array([threshold]), fold_ids=np.zeros(len(distances), dtype=np.int64),
        pair_images=lambda index: (shown_image(int(data.pairs[index, 0])), shown_image(int(data.pairs[index, 1]))),
        judged_by=f"every template pair by the threshold at FAR {far:g} (same if distance < threshold)",
        marker=(f"threshold at FAR {far:g}", threshold), pairs=pairs, tables=(summary, operating, *tables),
        markers=markers, roc=(roc.fpr, roc.tpr), folds_shown=False,
    )


def _template_images(data: Any) -> Callable[[int], ReportImage]:
    """Template id -> its image with the best detector score, aligned by its five points."""
    best: dict[int, int] = {}
    for index in np.argsort(-np.asarray(data.detector_scores), kind="stable").tolist():
        best.setdefault(int(data.templates[index]), index)

    def image(template: int) -> ReportImage:
        index = best[template]
        path = Path(data.images[index])
        return ReportImage(f"template {template}: {path.name}", path, np.asarray(data.landmarks[index]))

    return image


def thumbnail(image: ReportImage) -> tuple[str | None, str]:
    """``(data URI, "")`` of a small JPEG of the face, or ``(None, why not)``."""
    import cv2

    from facestra.data.images import decode_image

    if image.source is None:
        return None, "no image"
    try:
        data = image.source if isinstance(image.source, bytes) else Path(image.source).read_bytes()
        pixels = decode_image(data, image.name)
    except UserError as error:
        return None, str(error).removeprefix(f"{image.name}: ")
    except OSError as error:
        return None, f"cannot read ({error.strerror or error})"
    if image.landmarks is not None:
        from facestra.align.geometry import LandmarkError, estimate_similarity, reference_landmarks, warp_to_crop

        try:
            pixels = warp_to_crop(pixels, estimate_similarity(image.landmarks, reference_landmarks(112)), 112)
        except LandmarkError:
            pass  # the loose crop as it is: still a face to look at
    for side, quality in THUMBNAIL_SETTINGS:
        scale = side / max(pixels.shape[:2])
        small = cv2.resize(pixels, (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        if len(encoded) <= THUMBNAIL_BYTES:
            break
    return "data:image/jpeg;base64," + base64.b64encode(encoded).decode("ascii"), ""


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1d;background:#f6f6f4}
header{background:#243447;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.85}
main{padding:8px 24px 40px;max-width:1400px}section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:16px 0;padding:12px 18px}
h2{margin:4px 0 8px;font-size:19px}h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f0f0ee}
td.mono,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
.figures{display:flex;flex-wrap:wrap;gap:10px}.figures svg{border:1px solid #eee;max-width:100%;height:auto}
.pairs{display:flex;flex-wrap:wrap;gap:10px}.pair{margin:0;border:1px solid #ddd;border-radius:4px;padding:6px;width:206px;font-size:11px}
.faces{display:flex;gap:4px}.faces img,.missing{width:96px;height:96px;object-fit:contain;background:#eee}
.missing{display:flex;align-items:center;justify-content:center;text-align:center;font-size:10px;color:#a00;border:1px dashed #a00;box-sizing:border-box;padding:3px;overflow:hidden}
.pair figcaption{margin-top:4px}.pair .name{color:#555;word-break:break-all}.warn{color:#8a5300}.err{color:#a00}
nav a{margin-right:12px}.note{color:#555;font-size:13px}
"""


def render_report(facts: ReportFacts, sections: Sequence[Section], *, title: str = "facestra verification report") -> str:
    """The page, as text."""
    thumbnails: dict[tuple[str, object], tuple[str | None, str]] = {}

    def face(image: ReportImage) -> str:
        key = (image.name, id(image.source) if isinstance(image.source, bytes) else str(image.source))
        if key not in thumbnails:
            thumbnails[key] = thumbnail(image)
        uri, problem = thumbnails[key]
        if uri is None:
            return f'<div class="missing" title="{escape(image.name)}">cannot show: {escape(problem)}</div>'
        return f'<img src="{uri}" alt="{escape(image.name)}" title="{escape(image.name)}">'

    models = ", ".join(m.arch for m in facts.models)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{escape(title)}</h1><p>{escape(models)} · {escape(facts.date)} · facestra {escape(facts.facestra_version)}</p></header><main>",
    ]
    if len(sections) > 1:
        parts.append("<nav>" + "".join(f'<a href="#{escape(_anchor(s.key))}">{escape(s.title)}</a>' for s in sections) + "</nav>")
    for section in sections:
        parts.append(_section_html(section, face))
    parts.append(_facts_html(facts))
    parts.append('<script type="application/json" id="facestra-report">' + _json_for_html(report_data(facts, sections)) + "</script>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _anchor(key: str) -> str:
    return "b-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in key)


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<h3>{escape(table.title)}</h3><table><tr>{head}</tr>{rows}</table>"


def _rates_at(section: Section, threshold: float) -> tuple[float, float]:
    """(false accept rate, true accept rate) of judging ``distance < threshold``."""
    same = section.issame
    accepted = section.distances < threshold
    far = np.count_nonzero(accepted & ~same) / max(np.count_nonzero(~same), 1)
    tar = np.count_nonzero(accepted & same) / max(np.count_nonzero(same), 1)
    return float(far), float(tar)


def _section_html(section: Section, face: Callable[[ReportImage], str]) -> str:
    parts = [f'<section class="benchmark" id="{escape(_anchor(section.key))}"><h2>{escape(section.title)}</h2>',
             f'<p class="note mono">{escape(section.source)}</p>']
    parts += [f'<p class="warn">warning: {escape(w)}</p>' for w in section.warnings]
    parts += [_table_html(t) for t in section.tables]
    rates = [(label, *_rates_at(section, threshold)) for label, threshold in section.markers]
    genuine, impostor = section.distances[section.issame], section.distances[~section.issame]
    figures = [
        svg.roc_svg(section.fpr, section.tpr, [(label, far, tar) for label, far, tar in rates], title=f"{section.title}: ROC"),
        svg.det_svg(section.fpr, 1.0 - section.tpr, [(label, far, 1.0 - tar) for label, far, tar in rates], title=f"{section.title}: DET"),
        svg.histogram_svg(genuine, impostor, section.markers, title=f"{section.title}: distances"),
    ]
    if section.fold_accuracies is not None:
        figures.append(svg.bars_svg(section.fold_accuracies, title=f"{section.title}: held-out fold accuracies"))
    parts.append('<div class="figures">' + "".join(figures) + "</div>")
    for kind, shown, total in (("false accepts", section.false_accepts, section.num_false_accepts),
                               ("false rejects", section.false_rejects, section.num_false_rejects)):
        parts.append(f"<h3>Hardest {kind}: {len(shown)} of {total}</h3>")
        if section.judged_by:
            parts.append(f'<p class="note">Judged {escape(section.judged_by)}; hardest = furthest beyond it.</p>')
        cards = []
        for pair in shown:
            fold = f" · fold {pair.fold}" if pair.fold is not None else ""
            cards.append(
                f'<figure class="pair"><div class="faces">{face(pair.first)}{face(pair.second)}</div><figcaption>'
                f"<b>distance {pair.distance:.4f}</b> (cosine {1 - pair.distance / 2:.4f})<br>threshold {pair.threshold:.4f}{fold} · pair {pair.index + 1}"
                f'<br><span class="name">{escape(pair.first.name)}</span><br><span class="name">{escape(pair.second.name)}</span>'
                "</figcaption></figure>")
        parts.append('<div class="pairs">' + "".join(cards) + "</div>" if cards else '<p class="note">none</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _facts_html(facts: ReportFacts) -> str:
    rows: list[tuple[str, str]] = []
    for model in facts.models:
        rows += [("model", model.arch), ("checkpoint", model.checkpoint), ("sha256", model.sha256),
                 ("parameters", "not counted (ONNX)" if model.params is None else f"{model.params:,}"),
                 ("multiply-adds per image", "not counted (ONNX)" if model.macs is None else f"{model.macs:,}"),
                 ("input", model.input), ("embedding size", str(model.embedding_size))]
    rows += [("command", facts.command), ("device", facts.device), *facts.settings,
             ("facestra", facts.facestra_version), ("torch", facts.torch_version), ("date", facts.date)]
    parts = ['<section id="facts"><h2>Facts</h2><table>']
    parts += [f'<tr><th>{escape(k)}</th><td class="mono">{escape(v)}</td></tr>' for k, v in rows]
    parts.append("</table>")
    parts.append(f"<h3>Warnings ({len(facts.warnings)})</h3>")
    parts += [f'<p class="warn">{escape(w)}</p>' for w in facts.warnings] or ['<p class="note">none</p>']
    if facts.errors:
        parts.append(f"<h3>Benchmarks that gave no figures ({len(facts.errors)})</h3>")
        parts += [f'<p class="err">{escape(e)}</p>' for e in facts.errors]
    parts.append("</section>")
    return "\n".join(parts)


def report_data(facts: ReportFacts, sections: Sequence[Section]) -> dict[str, Any]:
    """What the page lists, JSON-ready: the facts and, per section, its tables and the pairs shown."""

    def pair(p: ShownPair) -> dict[str, Any]:
        return {"pair": p.index, "first": p.first.name, "second": p.second.name, "distance": p.distance,
                "threshold": p.threshold, "fold": p.fold}

    return {
        "format": "facestra-report/1",
        "facts": asdict(facts),
        "sections": {
            s.key: {
                "title": s.title, "source": s.source, "num_pairs": int(len(s.distances)),
                "markers": [{"label": label, "distance": value} for label, value in s.markers],
                "tables": [asdict(t) for t in s.tables],
                "num_false_accepts": s.num_false_accepts, "num_false_rejects": s.num_false_rejects,
                "false_accepts": [pair(p) for p in s.false_accepts],
                "false_rejects": [pair(p) for p in s.false_rejects],
                "warnings": list(s.warnings),
            }
            for s in sections
        },
    }


def _json_for_html(data: dict[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element early (``</`` and ``<!--`` written escaped)."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def read_report_data(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON block of a report written by :func:`write_report` (for programs and tests)."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index('id="facestra-report">') + len('id="facestra-report">')
    return json.loads(text[start : text.index("</script>", start)])


def write_report(path: str | os.PathLike, facts: ReportFacts, sections: Sequence[Section], *,
                 title: str = "facestra verification report") -> None:
    """Render the page and write it atomically."""
    from facestra.io import write_text_atomic

    write_text_atomic(path, render_report(facts, sections, title=title))


def check_report_path(report: str | os.PathLike, inputs: Sequence[str | os.PathLike | bytes], *,
                      other_outputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """Refuse a report path that names one of the command's ``inputs`` (it would be destroyed) or another of
    its outputs, then prove its folder takes a file: both before any work."""
    from facestra.io import check_writable_folder, input_at

    found = input_at(report, inputs)
    if found is not None:
        raise UserError(f"{report}: is one of the inputs ({found}); choose another --report file")
    clash = input_at(report, [o for o in other_outputs if o is not None])
    if clash is not None:
        raise UserError(f"{report}: is also another output of this command ({clash}); choose another --report file")
    if Path(report).is_dir():
        raise UserError(f"{report}: is a folder; --report names an .html file")
    check_writable_folder(Path(report).parent)


def outcome_section(outcome: BenchmarkOutcome | IJBOutcome, *, pairs: int = 12) -> Section:
    """:func:`benchmark_section` or :func:`ijb_section`, whichever ``outcome`` is for."""
    if hasattr(outcome, "verification"):
        return ijb_section(outcome, pairs=pairs)
    return benchmark_section(outcome, pairs=pairs)


def write_verify_report(
    path: str | os.PathLike,
    outcomes: Sequence[BenchmarkOutcome | IJBOutcome],
    *,
    model: nn.Module,
    checkpoint: str | os.PathLike,
    command: str,
    device: Any,
    settings: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
    errors: Sequence[str] = (),
    pairs: int = 12,
) -> None:
    """The report of one ``verify`` run: a section per outcome, the model's facts, every warning of the
    benchmark checks (after ``notes``, such as benchmarks not found) and the benchmarks that failed."""
    warnings = tuple(notes) + tuple(w for o in outcomes for w in getattr(o, "warnings", ()))
    facts = ReportFacts((model_facts(model, checkpoint),), command, describe_device(device), tuple(settings),
                        warnings, tuple(errors))
    write_report(path, facts, [outcome_section(o, pairs=pairs) for o in outcomes])
