"""Reading five-point landmark files: CSV, JSON lines and insightface ``.lst``.

A bad row must not stop a run of a million images, so rows are parsed one by one: each becomes a
:class:`LandmarkEntry` that carries either its 5x2 points or the reason it could not be read, and the
alignment job turns that reason into a ``bad_landmarks`` line of its report. Only a file that cannot be read
at all is a :class:`~facestra.errors.UserError`.

Formats (points always in image pixels, template order: image-left eye, other eye, nose tip, image-left
mouth corner, other mouth corner):

* CSV: ``path,x1,y1,x2,y2,...,x5,y5``, header line optional;
* JSON lines: one object per line, ``{"path": ..., "landmarks": [[x1, y1], ..., [x5, y5]]}`` (a flat list of
  ten numbers works too; ``image``/``file`` and ``points``/``kps`` are accepted as key names; a file
  holding one JSON array of such objects works too);
* insightface ``.lst``: tab-separated ``aligned  path  label  x0 y0 x1 y1 (box)  x1..x5  y1..y5`` -- note
  that insightface stores the five x coordinates first, then the five y coordinates.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facestra.errors import UserError
from facestra.io import read_text, text_lines

FORMATS = ("csv", "jsonl", "lst")
PATH_KEYS = ("path", "image", "file")
POINT_KEYS = ("landmarks", "points", "kps")


@dataclass(frozen=True)
class LandmarkEntry:
    """One row of a landmark file: the image path as written, and its points or why there are none."""

    path: str
    line: int
    points: np.ndarray | None = None
    problem: str | None = None


def detect_format(path: str | os.PathLike, text: str) -> str:
    """Guess the format from the extension, then from the first non-blank line."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".lst":
        return "lst"
    first = next((line.strip() for line in text_lines(text) if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    if "\t" in first:
        return "lst"
    return "csv"


def read_landmarks(path: str | os.PathLike, fmt: str | None = None) -> list[LandmarkEntry]:
    """All rows of the landmark file ``path`` (format guessed unless ``fmt`` is one of :data:`FORMATS`)."""
    path = Path(path)
    try:
        text = read_text(path)  # as every text input: BOM, CRLF, and names that are not UTF-8 kept as bytes
    except OSError as error:
        raise UserError(f"{path}: cannot read landmarks ({error.strerror or error})") from None
    fmt = fmt or detect_format(path, text)
    if fmt not in FORMATS:
        raise UserError(f"{path}: unknown landmarks format {fmt!r}; expected one of {', '.join(FORMATS)}")
    parse = {"csv": parse_csv, "jsonl": parse_jsonl, "lst": parse_lst}[fmt]
    entries = parse(text, str(path))
    if not entries:
        raise UserError(f"{path}: no landmark rows found")
    return entries


def _numbers(values: list[str]) -> tuple[np.ndarray | None, str | None]:
    """Ten numeric strings -> 5x2 points; otherwise the reason (NaN/inf are kept for the validator)."""
    values = [v.strip() for v in values]
    if len(values) != 10:
        return None, f"expected 10 numbers (5 points), got {len(values)}"
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        return None, f"not a number: {bad!r}"
    return np.asarray(numbers, dtype=np.float64).reshape(5, 2), None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_csv(text: str, source: str = "<csv>") -> list[LandmarkEntry]:
    """``path,x1,y1,...,x5,y5`` rows; a first row whose second field is not a number is a header."""
    entries: list[LandmarkEntry] = []
    for index, row in enumerate(csv.reader(io.StringIO(text))):
        line = index + 1
        if not row or all(not field.strip() for field in row):
            continue
        if index == 0 and (len(row) < 2 or not _is_float(row[1].strip())):
            continue  # header
        values = row[1:]
        while values and not values[-1].strip() and len(values) > 10:
            values = values[:-1]  # a trailing comma
        points, problem = _numbers(values)
        entries.append(LandmarkEntry(row[0].strip(), line, points, problem))
    return entries


def parse_jsonl(text: str, source: str = "<jsonl>") -> list[LandmarkEntry]:
    """One JSON object per line with a path and five points (nested pairs or ten flat numbers).

    A file holding one JSON array of such objects is read too (entry numbers then stand for lines).
    """
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{source}: not valid JSON ({error.msg}, line {error.lineno})") from None
        return [_entry(record, number, source) for number, record in enumerate(records, start=1)]
    entries: list[LandmarkEntry] = []
    for index, raw in enumerate(text_lines(text)):
        line = index + 1
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            entries.append(LandmarkEntry(f"{source}:{line}", line, None, f"line {line}: not JSON ({error.msg})"))
            continue
        entries.append(_entry(record, line, source))
    return entries


def _entry(record: object, line: int, source: str) -> LandmarkEntry:
    unnamed = f"{source}:{line}"
    if not isinstance(record, dict):
        return LandmarkEntry(unnamed, line, None, f"line {line}: expected a JSON object")
    image = next((record[k] for k in PATH_KEYS if k in record), None)
    if not isinstance(image, str) or not image:
        return LandmarkEntry(unnamed, line, None, f"line {line}: no 'path' string")
    points_value = next((record[k] for k in POINT_KEYS if k in record), None)
    if points_value is None:
        return LandmarkEntry(image, line, None, "no 'landmarks' field")
    flat = _flatten(points_value)
    if flat is None:
        return LandmarkEntry(image, line, None, "landmarks must be 5 [x, y] pairs or 10 numbers")
    points, problem = _numbers([repr(v) for v in flat])
    return LandmarkEntry(image, line, points, problem)


def _flatten(value: object) -> list[float] | None:
    if not isinstance(value, list):
        return None
    flat: list[float] = []
    for item in value:
        if isinstance(item, list):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item):
                return None
            flat.extend(float(v) for v in item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            flat.append(float(item))
        else:
            return None
    return flat


def parse_lst(text: str, source: str = "<lst>") -> list[LandmarkEntry]:
    """insightface ``.lst``: ``aligned, path, label, 4 box numbers, x1..x5, y1..y5`` separated by tabs."""
    entries: list[LandmarkEntry] = []
    for index, raw in enumerate(text_lines(text)):
        line = index + 1
        if not raw.strip():
            continue
        fields = raw.strip().split("\t") if "\t" in raw else raw.split()
        if len(fields) < 2:
            entries.append(LandmarkEntry(f"{source}:{line}", line, None, f"line {line}: no image path"))
            continue
        image = fields[1].strip()
        if len(fields) != 17:
            entries.append(
                LandmarkEntry(image, line, None, f"expected 17 tab-separated fields (with 10 landmark numbers), "
                              f"got {len(fields)}")
            )
            continue
        xs_then_ys = fields[7:17]
        interleaved = [value for pair in zip(xs_then_ys[:5], xs_then_ys[5:]) for value in pair]
        points, problem = _numbers(interleaved)
        entries.append(LandmarkEntry(image, line, points, problem))
    return entries
