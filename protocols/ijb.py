"""IJB-B and IJB-C in their official layout, read the way insightface's IJB scripts read them.

``DIR/loose_crop/`` holds the images; ``DIR/meta/`` the lists (``<name>`` is ``ijbb`` or ``ijbc``):

* ``<name>_name_5pts_score.txt``: ``image x1 y1 ... x5 y5 score``, one line per image (the five points in
  the loose crop, the detector's faceness score);
* ``<name>_face_tid_mid.txt``: ``image template media``, the same images in the same order;
* ``<name>_template_pair_label.txt``: ``template template label`` (1 same subject, 0 not), the 1:1 pairs;
* for 1:N (optional, all or none): the two galleries (``ijbc_1N_gallery_G1.csv`` / ``_G2.csv``,
  ``ijbb_1N_gallery_S1.csv`` / ``_S2.csv``) and ``<name>_1N_probe_mixed.csv``, CSV files with a header
  whose first two columns are ``TEMPLATE_ID,SUBJECT_ID`` (one row per image of a template).

Everything is checked before any image is embedded: a missing file, a malformed line or an image that is
not there is one :class:`UserError` naming the file and line. The 15.7M-line pair list of IJB-C is parsed
by numpy's C reader; only when that fails is the file scanned line by line to say which line is wrong.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from facestra.errors import UserError
from facestra.io import read_lines, read_text

IJB_NAMES: tuple[str, ...] = ("ijbb", "ijbc")
TITLES = MappingProxyType({"ijbb": "IJB-B", "ijbc": "IJB-C"})
IMAGE_FOLDER = "loose_crop"
META_FOLDER = "meta"
#: The gallery files of each benchmark, under the names the IJB protocol gives the two galleries.
GALLERIES = MappingProxyType(
    {
        "ijbb": (("S1", "ijbb_1N_gallery_S1.csv"), ("S2", "ijbb_1N_gallery_S2.csv")),
        "ijbc": (("G1", "ijbc_1N_gallery_G1.csv"), ("G2", "ijbc_1N_gallery_G2.csv")),
    }
)


def is_ijb(name: str | None) -> bool:
    """Whether a ``--benchmark`` value names IJB-B or IJB-C (``IJBC``, ``ijb-c``, ``ijb_c`` all do)."""
    return name is not None and ijb_name(name) in IJB_NAMES


def ijb_name(name: str) -> str:
    """``IJB-C`` / ``ijb_c`` / ``IJBC`` -> ``ijbc``."""
    return name.strip().lower().replace("-", "").replace("_", "")


def meta_files(name: str) -> dict[str, str]:
    """The file names under ``meta/`` of benchmark ``name`` (``ijbb`` or ``ijbc``), by role."""
    return {
        "landmarks": f"{name}_name_5pts_score.txt",
        "media": f"{name}_face_tid_mid.txt",
        "pairs": f"{name}_template_pair_label.txt",
        **{f"gallery {label}": file for label, file in GALLERIES[name]},
        "probes": f"{name}_1N_probe_mixed.csv",
    }


@dataclass(frozen=True, eq=False)
class TemplateSubjects:
    """A 1:N list: its distinct templates (in order of first appearance) and the subject of each."""

    source: Path
    templates: np.ndarray  # (T,) int64
    subjects: np.ndarray  # (T,) int64


@dataclass(frozen=True, eq=False)
class IJBData:
    """One IJB benchmark as arrays: a row per image, a row per template pair, and the 1:N lists if present."""

    name: str
    root: Path
    images: tuple[Path, ...]
    landmarks: np.ndarray  # (N, 5, 2) float64, in loose-crop pixels
    detector_scores: np.ndarray  # (N,) float64
    templates: np.ndarray  # (N,) int64 template id of each image
    medias: np.ndarray  # (N,) int64 media id of each image
    pairs: np.ndarray  # (P, 2) int64 template ids
    labels: np.ndarray  # (P,) bool
    galleries: dict[str, TemplateSubjects] = field(default_factory=dict)
    probes: TemplateSubjects | None = None

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)

    def landmark_origin(self, index: int) -> str:
        """``file:line`` of image ``index`` in the landmark list, for messages."""
        return f"{self.root / META_FOLDER / meta_files(self.name)['landmarks']}:{index + 1}"


def read_ijb(name: str, root: str | os.PathLike) -> IJBData:
    """Read IJB benchmark ``name`` (``ijbb`` or ``ijbc``) from its official folder ``root``."""
    name = ijb_name(name)
    if name not in IJB_NAMES:
        raise UserError(f"unknown IJB benchmark {name!r}; choose ijbb or ijbc")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (expected the {TITLES[name]} folder with loose_crop/ and meta/)")
    files = {role: root / META_FOLDER / file for role, file in meta_files(name).items()}
    for role in ("landmarks", "media", "pairs"):
        if not files[role].is_file():
            raise UserError(f"{files[role]}: no such file (the {TITLES[name]} {role} list)")
    image_names, landmarks, scores = _read_landmarks(files["landmarks"])
    templates, medias = _read_media(files["media"], image_names)
    images = _find_images(root / IMAGE_FOLDER, image_names, files["landmarks"])
    pairs, labels = _read_pairs(files["pairs"], templates)
    one_to_n = [role for role in files if role.startswith("gallery") or role == "probes"]
    present = [role for role in one_to_n if files[role].is_file()]
    galleries: dict[str, TemplateSubjects] = {}
    probes = None
    if present:
        missing = [role for role in one_to_n if role not in present]
        if missing:
            raise UserError(f"{files[missing[0]]}: no such file (1:N needs both galleries and the probe list)")
        known = np.unique(templates)
        galleries = {role.split()[1]: _read_subjects(files[role], known) for role in one_to_n if role.startswith("gallery")}
        probes = _read_subjects(files["probes"], known)
    return IJBData(name, root, images, landmarks, scores, templates, medias, pairs, labels, galleries, probes)


def _lines(path: Path) -> list[str]:
    try:
        return read_lines(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read as text ({error.strerror or error})") from None


def _read_landmarks(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    names: list[str] = []
    values: list[list[float]] = []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if not fields:
            raise UserError(f"{path}:{number}: empty line (expected 'image x1 y1 ... x5 y5 score')")
        if len(fields) != 12:
            raise UserError(f"{path}:{number}: expected 'image x1 y1 ... x5 y5 score' (12 fields), got {len(fields)}")
        try:
            numbers = [float(v) for v in fields[1:]]
        except ValueError:
            raise UserError(f"{path}:{number}: the 10 coordinates and the score must be numbers, got {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in numbers):
            raise UserError(f"{path}:{number}: NaN or infinite coordinate or score")
        names.append(fields[0])
        values.append(numbers)
    if not names:
        raise UserError(f"{path}: no images listed")
    table = np.asarray(values, dtype=np.float64)
    return names, table[:, :10].reshape(-1, 5, 2), table[:, 10].copy()


def _read_media(path: Path, image_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    lines = _lines(path)
    if len(lines) != len(image_names):
        raise UserError(f"{path}: {len(lines)} lines but the landmark list has {len(image_names)} (one line per image, same order)")
    ids = np.empty((len(lines), 2), dtype=np.int64)
    for row, (line, image) in enumerate(zip(lines, image_names)):
        fields = line.split()
        if len(fields) != 3:
            raise UserError(f"{path}:{row + 1}: expected 'image template media' (3 fields), got {len(fields)}")
        if fields[0] != image:
            raise UserError(f"{path}:{row + 1}: image {fields[0]} but line {row + 1} of the landmark list is {image} (same order needed)")
        try:
            ids[row] = int(fields[1]), int(fields[2])
        except ValueError:
            raise UserError(f"{path}:{row + 1}: template and media must be integers, got {line.strip()!r}") from None
    return ids[:, 0].copy(), ids[:, 1].copy()


def _find_images(folder: Path, image_names: list[str], listed_in: Path) -> tuple[Path, ...]:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (the loose crops the landmark list names)")
    images = tuple(folder / image for image in image_names)
    for number, image in enumerate(images, start=1):
        if not image.is_file():
            raise UserError(f"{listed_in}:{number}: image {image} not found")
    return images


def _read_pairs(path: Path, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        # streamed, as a pair list has millions of lines; read as every text input is: BOM and CRLF allowed
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
            table = np.loadtxt(handle, dtype=np.int64, ndmin=2, comments=None)
    except (ValueError, OSError) as error:
        raise UserError(_first_bad_pair_line(path) or f"{path}: cannot read as 'template template label' lines ({error})") from None
    if table.size == 0:
        raise UserError(f"{path}: no template pairs")
    if table.shape[1] != 3:
        raise UserError(_first_bad_pair_line(path) or f"{path}: expected 3 fields per line")
    labels = table[:, 2]
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if len(bad):
        raise UserError(f"{_pair_origin(path, int(bad[0]))}: label must be 0 or 1, got {int(labels[bad[0]])}")
    pairs = table[:, :2].copy()
    unknown = np.flatnonzero(~np.isin(pairs, np.unique(templates)).all(axis=1))
    if len(unknown):
        row = int(unknown[0])
        raise UserError(f"{_pair_origin(path, row)}: template {' or '.join(map(str, pairs[row]))} has no image in the media list")
    return pairs, labels.astype(bool)


def _pair_origin(path: Path, row: int) -> str:
    """``file:line`` of pair ``row`` (numpy's reader skips blank lines, so count the others)."""
    seen = -1
    with contextlib.suppress(OSError):
        for number, line in enumerate(read_lines(path), start=1):
            if line.strip():
                seen += 1
                if seen == row:
                    return f"{path}:{number}"
    return str(path)


def _first_bad_pair_line(path: Path) -> str | None:
    """The message for the first line of a pair list that is not three integers, or None."""
    try:
        for number, line in enumerate(read_lines(path), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3:
                return f"{path}:{number}: expected 'template template label' (3 fields), got {len(fields)}"
            try:
                [int(v) for v in fields]
            except ValueError:
                return f"{path}:{number}: template, template and label must be integers, got {line.strip()!r}"
    except OSError as error:
        return f"{path}: cannot read as text ({error.strerror or error})"
    return None


def _read_subjects(path: Path, known_templates: np.ndarray) -> TemplateSubjects:
    """A 1:N CSV (header, then ``TEMPLATE_ID,SUBJECT_ID,...``): each template once, with its one subject."""
    try:
        rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    except (OSError, csv.Error) as error:
        raise UserError(f"{path}: cannot read as CSV ({error})") from None
    subject_of: dict[int, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in row):
            continue
        if len(row) < 2:
            raise UserError(f"{path}:{number}: expected TEMPLATE_ID,SUBJECT_ID,... got {','.join(row)!r}")
        try:
            template, subject = int(row[0]), int(row[1])
        except ValueError:
            raise UserError(f"{path}:{number}: TEMPLATE_ID and SUBJECT_ID must be integers, got {row[0]!r}, {row[1]!r}") from None
        if subject_of.setdefault(template, subject) != subject:
            raise UserError(f"{path}:{number}: template {template} listed with subjects {subject_of[template]} and {subject}")
        position = np.searchsorted(known_templates, template)
        if position >= len(known_templates) or known_templates[position] != template:
            raise UserError(f"{path}:{number}: template {template} has no image in the media list")
    if not subject_of:
        raise UserError(f"{path}: no templates (expected a header, then TEMPLATE_ID,SUBJECT_ID,... rows)")
    return TemplateSubjects(path, np.fromiter(subject_of, dtype=np.int64), np.fromiter(subject_of.values(), dtype=np.int64))
