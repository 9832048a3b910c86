"""One self-contained HTML page a person can look at: figures, the pairs the model gets wrong, the facts.

``verify --report`` and ``demo`` write it; ``calibrate --report`` can too. The page opens from disk with no
network: figures are inline SVG (:mod:`facestra.verify.svg`), faces are small JPEG thumbnails embedded as
``data:`` URIs, there is no script, font or style from elsewhere. A face that cannot be decoded is a
labelled placeholder, never a broken page. A JSON block (``<script type="application/json"
id="facestra-report">``, data, not code) repeats what the page lists, for programs and tests.

The input is plain data, so other commands reuse the renderer:

* :class:`Section`, one per benchmark: the distances and labels (histograms, ROC, DET), tables, threshold
  markers, fold accuracies and the hardest pairs to show. :mod:`facestra.verify.report_sections` builds
  them: ``benchmark_section`` and ``ijb_section`` from a ``verify`` outcome, ``scores_section`` from any
  pair scores, each with extra ``markers`` (``(label, squared-distance threshold)``, drawn on the
  histograms and as operating points on the ROC and DET) and extra ``tables`` (:class:`Table`), e.g.
  calibrated operating points.
* :class:`ReportFacts`: the model(s), command line, versions, device, date, warnings and errors.
* :func:`write_report` renders both to one file, atomically.

Distances throughout are the protocol's squared Euclidean distance of unit embeddings (``2 - 2 cos``).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from facestra import __version__
from facestra.errors import UserError
from facestra.fields import documented
from facestra.verify import svg

# (longest side, JPEG quality) tried in turn until a thumbnail fits THUMBNAIL_BYTES: a face compresses to
# a third of that at the first setting; noise would not, and the page's size must not depend on the data.
THUMBNAIL_SETTINGS = ((96, 85), (96, 60), (96, 40), (72, 40), (56, 30))
THUMBNAIL_BYTES = 6000

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
.missing{display:flex;align-items:center;justify-content:center;text-align:center;font-size:10px;color:#a00;
 border:1px dashed #a00;box-sizing:border-box;padding:3px;overflow:hidden}
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
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
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
    parts = [
        f'<section class="benchmark" id="{escape(_anchor(section.key))}"><h2>{escape(section.title)}</h2>',
        f'<p class="note mono">{escape(section.source)}</p>',
    ]
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
    for kind, shown, total in (
        ("false accepts", section.false_accepts, section.num_false_accepts),
        ("false rejects", section.false_rejects, section.num_false_rejects),
    ):
        parts.append(f"<h3>Hardest {kind}: {len(shown)} of {total}</h3>")
        if section.judged_by:
            parts.append(f'<p class="note">Judged {escape(section.judged_by)}; hardest = furthest beyond it.</p>')
        cards = []
        for pair in shown:
            fold = f" · fold {pair.fold}" if pair.fold is not None else ""
            cards.append(
                f'<figure class="pair"><div class="faces">{face(pair.first)}{face(pair.second)}</div><figcaption>'
                f"<b>distance {pair.distance:.4f}</b> (cosine {1 - pair.distance / 2:.4f})<br>"
                f"threshold {pair.threshold:.4f}{fold} · pair {pair.index + 1}"
                f'<br><span class="name">{escape(pair.first.name)}</span><br><span class="name">{escape(pair.second.name)}</span>'
                "</figcaption></figure>"
            )
        parts.append('<div class="pairs">' + "".join(cards) + "</div>" if cards else '<p class="note">none</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _facts_html(facts: ReportFacts) -> str:
    rows: list[tuple[str, str]] = []
    for model in facts.models:
        rows += [
            ("model", model.arch),
            ("checkpoint", model.checkpoint),
            ("sha256", model.sha256),
            ("parameters", "not counted (ONNX)" if model.params is None else f"{model.params:,}"),
            ("multiply-adds per image", "not counted (ONNX)" if model.macs is None else f"{model.macs:,}"),
            ("input", model.input),
            ("embedding size", str(model.embedding_size)),
        ]
    rows += [
        ("command", facts.command),
        ("device", facts.device),
        *facts.settings,
        ("facestra", facts.facestra_version),
        ("torch", facts.torch_version),
        ("date", facts.date),
    ]
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
        return {"pair": p.index, "first": p.first.name, "second": p.second.name, "distance": p.distance, "threshold": p.threshold, "fold": p.fold}

    return {
        "format": "facestra-report/1",
        "facts": asdict(facts),
        "sections": {
            s.key: {
                "title": s.title,
                "source": s.source,
                "num_pairs": int(len(s.distances)),
                "markers": [{"label": label, "distance": value} for label, value in s.markers],
                "tables": [asdict(t) for t in s.tables],
                "num_false_accepts": s.num_false_accepts,
                "num_false_rejects": s.num_false_rejects,
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


def write_report(path: str | os.PathLike, facts: ReportFacts, sections: Sequence[Section], *, title: str = "facestra verification report") -> None:
    """Render the page and write it atomically."""
    from facestra.io import write_text_atomic

    write_text_atomic(path, render_report(facts, sections, title=title))


def check_report_path(
    report: str | os.PathLike,
    inputs: Sequence[str | os.PathLike | bytes],
    *,
    other_outputs: Sequence[str | os.PathLike | None] = (),
    overwrite: bool = False,
) -> None:
    """Refuse a report path that names one of the command's ``inputs`` (the shared check,
    :func:`facestra.io.refuse_output_over_inputs`: links included, even with ``overwrite``), an existing
    file without ``overwrite``, a folder, or another of the command's outputs; then prove its folder takes a
    file: all before any work."""
    from facestra.io import check_writable_folder, input_at, refuse_output_over_inputs

    if Path(report).is_dir():
        raise UserError(f"{report}: is a folder; `report` names an .html file")
    refuse_output_over_inputs(report, inputs, overwrite=overwrite, role="--report")
    clash = input_at(report, [o for o in other_outputs if o is not None])
    if clash is not None:
        raise UserError(f"{report}: is also another output of this command ({clash}); choose another `report` file")
    check_writable_folder(Path(report).parent)
