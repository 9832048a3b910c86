"""Everything about a run that can be settled before any pixel is decoded: which images there are, where their
landmarks are, what their outputs are called, and whether the output folder may be used. Done up front so that
a bad argument fails at once (exit 2) and every image that cannot be aligned already has its status.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from facestra.align.landmarks import LandmarkEntry
from facestra.align.records import (
    BAD_LANDMARKS,
    MISSING_IMAGE,
    NAME_CLASH,
    NO_LANDMARKS,
    AlignSettings,
    AlignTask,
    FaceRecord,
)
from facestra.errors import UserError
from facestra.io import check_readable, check_writable_folder, list_image_paths, parse_path_line, read_lines


def resolve_input(path: Path) -> tuple[Path, list[str], dict[str, str]]:
    """(root, relative image paths, {relative path: problem}) for a folder or a list file."""
    check_readable(path, "folder")
    if path.is_dir():
        root = path.absolute()
        images = list_image_paths(root)
        if not images:
            raise UserError(f"{path}: no images found (jpg, jpeg, png, bmp or webp, in any sub-folder)")
        return root, images, {}
    if path.is_file():
        root = path.absolute().parent
        try:
            lines = read_lines(path)  # the one way facestra reads text: BOM, CRLF, names that are not UTF-8
        except OSError as error:
            raise UserError(f"{path}: cannot read the image list ({error})") from None
        listed: dict[str, None] = {}  # ordered and without repeats
        problems: dict[str, str] = {}
        for number, line in enumerate(lines, 1):
            written = line.strip()
            quoted = written.startswith('"')
            if quoted:  # one quoted name, as facestra's listings write awkward names
                try:
                    written = parse_path_line(written)
                except ValueError:
                    raise UserError(f"{path}: line {number}: not a valid quoted file name") from None
            elif written != line and written and os.path.lexists(os.path.join(root, line)):
                written = line  # a name that starts or ends with spaces, as the folder holds it
            if not written or (written.startswith("#") and not quoted):
                continue
            relative, problem = _relative_path(root, written)
            if problem is not None:
                problems[written] = problem
            else:
                listed[relative] = None
        if not listed and not problems:
            raise UserError(f"{path}: the image list is empty")
        return root, list(listed), problems
    raise UserError(f"{path}: no such folder or list file")


def _relative_path(root: Path, written: str) -> tuple[str, str | None]:
    """A path from a list or landmark file, relative to ``root``; or a problem if it leaves the root."""
    if os.path.isabs(written):
        relative = os.path.relpath(os.path.normpath(written), root)
    else:
        relative = os.path.normpath(written)
    if relative == "." or relative == ".." or relative.startswith(".." + os.sep):
        return written, "path is outside the input folder"
    return relative.replace(os.sep, "/"), None


def plan_tasks(
    root: Path,
    images: list[str],
    listed_problems: dict[str, str],
    entries: list[LandmarkEntry] | None,
    *,
    is_listing: bool,
) -> list[AlignTask]:
    """One task per image; ``is_listing`` says ``images`` come from listing a folder (so they exist)."""
    base = str(root)
    tasks: dict[str, AlignTask] = {}
    for written, problem in listed_problems.items():
        tasks[written] = AlignTask(written, None, status=MISSING_IMAGE, detail=problem)
    if entries is None:
        for path in images:
            tasks[path] = AlignTask(path, os.path.join(base, path))
        return _check_existence(sorted(tasks.values(), key=lambda t: t.path), set(images) if is_listing else set())

    by_path: dict[str, list[LandmarkEntry]] = {}
    selected = None if is_listing else set(images)  # a list file selects images; a folder takes every row
    for entry in entries:
        relative, problem = _relative_path(root, entry.path)
        if selected is not None and (problem is not None or relative not in selected):
            continue
        if problem is not None:
            tasks[entry.path] = AlignTask(entry.path, None, status=MISSING_IMAGE, detail=problem)
            continue
        by_path.setdefault(relative, []).append(entry)
    for path in images:
        if path not in by_path:
            tasks[path] = AlignTask(path, os.path.join(base, path), status=NO_LANDMARKS,
                                    detail="no row in the landmarks file")
    for path, rows in by_path.items():
        if len(rows) > 1:
            lines = ", ".join(str(row.line) for row in rows)
            tasks[path] = AlignTask(path, os.path.join(base, path), status=BAD_LANDMARKS,
                                    detail=f"listed {len(rows)} times in the landmarks file (lines {lines})")
            continue
        row = rows[0]
        if row.points is None:
            tasks[path] = AlignTask(path, os.path.join(base, path), status=BAD_LANDMARKS,
                                    detail=f"line {row.line}: {row.problem}")
        else:  # numbers whose geometry is checked where the crop is fitted, off the thread that decodes
            tasks[path] = AlignTask(path, os.path.join(base, path), points=row.points, line=row.line)
    return _check_existence(sorted(tasks.values(), key=lambda t: t.path), set(images) if is_listing else set())


def _check_existence(tasks: list[AlignTask], known: set[str]) -> list[AlignTask]:
    """Mark tasks whose image does not exist; ``known`` paths come from a folder listing and do."""
    checked = []
    for task in tasks:
        if task.source is not None and task.path not in known and not os.path.isfile(task.source):
            task = AlignTask(task.path, None, status=MISSING_IMAGE, detail="image file not found")
        checked.append(task)
    return checked


def output_name(path: str, settings: AlignSettings, face: int | None = None) -> str:
    """Relative output path of ``path``'s face: same tree, new extension; ``name_<i>`` with all faces."""
    stem = posixpath.splitext(path)[0]
    return f"{stem}.{settings.image_format}" if face is None else f"{stem}_{face}.{settings.image_format}"


def split_name_clashes(tasks: list[AlignTask], settings: AlignSettings) -> tuple[list[FaceRecord], list[AlignTask]]:
    """``a.png`` and ``a.jpg`` would both write ``a.jpg``: the first (sorted) wins, the rest are reported."""
    owners: dict[str, str] = {}
    kept: list[AlignTask] = []
    clashes: list[FaceRecord] = []
    for task in tasks:
        if task.status is not None:
            kept.append(task)
            continue
        key = posixpath.splitext(task.path)[0]  # what output_name keeps
        owner = owners.setdefault(key, task.path)
        if owner == task.path:
            kept.append(task)
        else:
            clashes.append(FaceRecord(task.path, NAME_CLASH, detail=f"its output name is taken by {owner}"))
    return clashes, kept


def check_output_folder(out: Path, root: Path, *, input_is_folder: bool) -> None:
    """Refuse to write into the input tree, and fail early (exit 2) if ``out`` cannot be written."""
    resolved_out, resolved_root = out.resolve(), root.resolve()
    if resolved_out == resolved_root or (input_is_folder and (
        resolved_root in resolved_out.parents or resolved_out in resolved_root.parents
    )):
        raise UserError(f"{out}: the output folder must not overlap the input folder {root}")
    try:
        check_writable_folder(out)  # made only once the run holds its lock, so a refused run leaves none
    except UserError as error:
        raise UserError(f"{out}: cannot write the output folder ({str(error).rsplit(': ', 1)[-1]})") from None
