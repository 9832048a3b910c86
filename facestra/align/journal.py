"""What a run leaves on disk besides the crops: the progress journal that lets a rerun resume where a killed
one stopped, and the CSV report that gives every image its status. Kept apart from the alignment itself so
that the format of both files is defined, and can be read, in one place.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

from facestra.align.records import FINE_STATUSES, OK, AlignSettings, FaceRecord
from facestra.errors import UserError
from facestra.io import write_bytes_atomic, write_text_atomic

REPORT_NAME = "align_report.csv"
JOURNAL_NAME = ".align_journal.jsonl"
REPORT_COLUMNS = ["path", "face", "output", "status", "score", "residual"] + [
    f"{axis}{i}" for i in range(1, 6) for axis in ("x", "y")
] + ["detail"]


def read_journal(path: Path, settings: AlignSettings) -> dict[str, list[FaceRecord]] | None:
    """Records of an earlier run into the same folder (None if there was none); a torn last line is ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the progress journal ({error})") from None
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a facestra progress journal; use another output folder or `overwrite`")
    if header.get("settings") != settings.to_json():
        raise UserError(
            f"{path.parent}: holds an alignment run with other settings ({header.get('settings')}); "
            "use another output folder, or --overwrite to redo it"
        )
    previous: dict[str, list[FaceRecord]] = {}
    for line in lines[1:]:
        try:
            item = json.loads(line)
            previous[item["path"]] = [FaceRecord.from_json(r) for r in item["records"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return previous


def remove_journaled_outputs(out: Path) -> int:
    """Delete the crops an earlier run into ``out`` journaled as written (for ``--overwrite``); return how many.

    Only files the journal names as ``ok`` outputs are touched, so a crop of another format, or of an image
    that fails this time, does not stay beside the new ones, while a file facestra never wrote stays. A
    journal that is not facestra's deletes nothing.
    """
    try:
        lines = (out / JOURNAL_NAME).read_text(encoding="utf-8", errors="replace").split("\n")
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise UserError(f"{out / JOURNAL_NAME}: cannot read the progress journal ({error.strerror or error})") from None
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        return 0
    if not isinstance(header, dict) or "settings" not in header:
        return 0
    removed = 0
    for line in lines[1:]:
        try:
            records = [FaceRecord.from_json(r) for r in json.loads(line)["records"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        for record in records:
            target = _inside(out, record.output) if record.status == OK else None
            if target is not None and target.is_file() and not target.is_symlink():
                target.unlink()
                removed += 1
    return removed


def _inside(out: Path, output: str) -> Path | None:
    """``out / output`` if that is a crop's place (relative, below ``out``, not our own files), else None."""
    if not isinstance(output, str) or not output or os.path.isabs(output):
        return None
    parts = output.split("/")
    if ".." in parts or "" in parts or output in (JOURNAL_NAME, REPORT_NAME):
        return None
    return out / output


def remove_stale_temporaries(out: Path, settings: AlignSettings) -> None:
    """Delete half-written crops a killed run left (the hidden ``.NAME.*.tmp.EXT`` files of
    :func:`facestra.io.temporary_path`).

    They never carry a real output's name, but their image extension would let a later image-folder reader
    pick them up.
    """
    for stale in out.rglob(f".*.tmp.{settings.image_format}"):
        stale.unlink(missing_ok=True)


def still_done(records: list[FaceRecord], out: Path) -> bool:
    """An image counts as done if it ended fine and every output it wrote is still there."""
    return bool(records) and all(r.status in FINE_STATUSES and (out / r.output).is_file() for r in records)


class Journal:
    """Append-only progress log: one JSON line per finished image."""

    def __init__(self, path: Path, settings: AlignSettings, *, fresh: bool) -> None:
        self.path = path
        self.settings = settings
        self.fresh = fresh
        self.handle: io.TextIOBase | None = None

    def __enter__(self) -> Journal:
        try:
            if self.fresh:
                write_text_atomic(self.path, json.dumps({"settings": self.settings.to_json()}) + "\n")
            torn = _ends_mid_line(self.path)
            self.handle = open(self.path, "a", encoding="utf-8")
            if torn:
                self.handle.write("\n")  # end a line torn by a kill, so that the next record stands alone
        except OSError as error:
            raise UserError(f"{self.path}: cannot write the progress journal ({error.strerror or error})") from None
        return self

    def write(self, line: str) -> None:
        """Append one :func:`journal_line`."""
        # Not flushed line by line: lines lost to a kill only mean that the rerun finds those outputs
        # without a record, recomputes them and adopts the files as they are (``adopt_existing``).
        assert self.handle is not None
        self.handle.write(line)

    def __exit__(self, *exc_info: object) -> None:
        if self.handle is not None:
            self.handle.close()


def journal_line(path: str, records: list[FaceRecord]) -> str:
    """One image's line of the progress journal; made where the image was aligned (a worker process or
    the writer thread), so that the loop that collects results only writes it."""
    return json.dumps({"path": path, "records": [r.to_json() for r in records]}) + "\n"


def _ends_mid_line(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


def write_report(path: Path, records: Iterable[FaceRecord]) -> None:
    """Write the report CSV (``REPORT_COLUMNS``, one row per record) atomically.

    Quoted as the ``csv`` module does, so a name with commas, quotes or line breaks stays one field; UTF-8,
    except that the bytes of a file name that is not UTF-8 are written as they are (``surrogateescape``):
    read it back with ``open(..., newline="", encoding="utf-8", errors="surrogateescape")``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # csv quotes a field holding "\n" but not one holding a lone "\r", which readers take for a line end
    quoting_all = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(REPORT_COLUMNS)
    for r in records:
        points = [f"{v:.3f}" for v in r.landmarks] if r.landmarks is not None else [""] * 10
        row = [r.path, "" if r.face is None else r.face, r.output, r.status,
               "" if r.score is None else f"{r.score:.3f}", "" if r.residual is None else f"{r.residual:.4f}",
               *points, r.detail]
        (quoting_all if "\r" in r.path + r.output + r.detail else writer).writerow(row)
    try:
        write_bytes_atomic(path, buffer.getvalue().encode("utf-8", "surrogateescape"))
    except OSError as error:
        raise UserError(f"{path}: cannot write the report ({error.strerror or error})") from None
