"""A generic ``pairs.csv`` for any other benchmark: ``path1,path2,same[,fold]``, one pair per row.

Paths are relative to the CSV's folder (or absolute). ``same`` is 1/0, true/false or yes/no. A header
row is recognised by its third field not being such a value. With a ``fold`` column every row needs one
and those folds are used instead of ten contiguous ones.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from facestra.errors import UserError
from facestra.io import read_text
from facestra.protocols.benchmark import Benchmark, from_path_pairs, resolve_image

PAIRS_CSV = "pairs.csv"
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})


def read_pairs_csv(path: str | Path, name: str = "pairs") -> Benchmark:
    """Read ``pairs.csv`` (``path`` is the file or the folder holding it)."""
    path = Path(path)
    csv_file = path / PAIRS_CSV if path.is_dir() else path
    try:
        handle = io.StringIO(read_text(csv_file), newline="")  # BOM and CRLF read like a plain file
        rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1) if any(f.strip() for f in row)]
    except FileNotFoundError:
        raise UserError(f"{csv_file}: no such file") from None
    except (OSError, csv.Error) as error:
        raise UserError(f"{csv_file}: cannot read as CSV ({error})") from None
    if rows and len(rows[0][1]) >= 3 and _label(rows[0][1][2]) is None:
        rows = rows[1:]  # a header
    if not rows:
        raise UserError(f"{csv_file}: no pairs (expected rows 'path1,path2,same[,fold]')")
    with_folds = len(rows[0][1]) >= 4
    path_pairs: list[tuple[Path, Path]] = []
    issame: list[bool] = []
    folds: list[int] = []
    for number, row in rows:
        origin = f"{csv_file}:{number}"
        fields = [field.strip() for field in row]
        if len(fields) != (4 if with_folds else 3):
            expected = "path1,path2,same,fold" if with_folds else "path1,path2,same"
            raise UserError(f"{origin}: expected {expected}, got {','.join(row)!r}")
        same = _label(fields[2])
        if same is None:
            raise UserError(f"{origin}: same must be 1/0, true/false or yes/no, got {fields[2]!r}")
        if with_folds:
            try:
                folds.append(int(fields[3]))
            except ValueError:
                raise UserError(f"{origin}: fold must be an integer, got {fields[3]!r}") from None
        path_pairs.append((resolve_image(csv_file.parent / fields[0], origin), resolve_image(csv_file.parent / fields[1], origin)))
        issame.append(same)
    return from_path_pairs(name, csv_file, path_pairs, issame, folds if with_folds else None)


def _label(text: str) -> bool | None:
    value = text.strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None
