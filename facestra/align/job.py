"""The alignment job: a folder or list of images -> one aligned crop per face, a report, resumable.

Data flow, per image and without detours: read bytes -> check they are whole -> decode once -> landmarks
(from the file, or the detector on the decoded image) -> similarity -> warp -> encode -> atomic write.

Nothing is lost on bad input: every image ends with a status in ``align_report.csv``
(see :data:`facestra.align.records.STATUSES`).
Nothing is destroyed: outputs go to a separate tree, are written atomically (temp file + link), and an
existing file is never replaced: one facestra did not write is reported ``occupied`` and left alone, and
``overwrite=True`` first deletes only the crops the earlier run's journal lists. Progress is journaled (one
JSON line per image in ``OUT/.align_journal.jsonl``), so an interrupted run, rerun with the same arguments,
skips the images it had finished and still writes a complete report.

This module is the entry point and runs those steps in order; each step lives in its own module
(``records``, ``plan``, ``journal``, ``crop``, ``workers``) so that it can be read and changed alone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from facestra.align.crop import CropPlan
from facestra.align.detect import YuNetDetector, load_detector
from facestra.align.geometry import parse_size
from facestra.align.journal import (
    JOURNAL_NAME,
    REPORT_NAME,
    Journal,
    read_journal,
    remove_journaled_outputs,
    remove_stale_temporaries,
    still_done,
    write_report,
)
from facestra.align.landmarks import read_landmarks
from facestra.align.plan import check_output_folder, plan_tasks, resolve_input, split_name_clashes
from facestra.align.records import AlignProblems, AlignSettings, AlignSummary, FaceRecord
from facestra.align.workers import run_tasks, worker_count
from facestra.errors import UserError
from facestra.fields import MAX_WORKERS, documented
from facestra.io import refuse_output_over_inputs, write_text_atomic
from facestra.locks import LOCK_NAME, output_lock

IMAGE_FORMATS = ("jpg", "png")
DETECTORS = ("yunet",)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AlignOptions:
    """How :func:`align_images` runs, declared once: ``facestra align``'s options are generated from it.

    Exactly one source of landmarks: a file (CSV, JSON lines or insightface .lst; paths relative to the
    input root, i.e. the folder, or the list file's folder) or a detector.
    """

    landmarks: Path | None = documented(
        None, "Five points per image: CSV (path,x1,y1,...,x5,y5), JSON lines, or insightface .lst.", path="file"
    )
    detector: str | None = documented(None, "Detect faces with YuNet (pip install 'facestra[detect]').", choices=DETECTORS)
    size: str = documented("112", "Crop size: N (square) or HxW, e.g. 224x192.")
    workers: int | None = documented(None, "Processes (default: all cores; 1 runs in this process).", minimum=1, maximum=MAX_WORKERS)
    image_format: str = documented("jpg", "Format of the crops.", choices=IMAGE_FORMATS, flag="format")
    quality: int = documented(95, "JPEG quality.", minimum=0, maximum=100)
    all_faces: bool = documented(False, "Write every detected face as name_0, name_1, ...")
    min_score: float = documented(0.5, "Detector confidence threshold.", minimum=0.0, maximum=1.0)
    overwrite: bool = documented(
        False, "Redo the run: first delete the crops an earlier run into --out wrote (as its journal lists)."
    )
    strict: bool = documented(False, "Exit 1 if any image is unreadable, has bad landmarks or no face.")
    json_report: Path | None = documented(None, "Also write the summary as JSON.", path="file", flag="json")


def align_images(
    input: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: AlignOptions = AlignOptions(),
    *,
    progress: Progress | None = None,
) -> AlignSummary:
    """Align every face of ``input`` (an image folder, or a text file listing images) into ``out_dir``.

    ``options.size`` is 112, "HxW" or (H, W). ``progress(done, total)`` is called as images finish. Writes
    ``out_dir/align_report.csv`` (and the summary as JSON to ``options.json_report`` if given) and returns
    the summary; with ``options.strict`` any problem raises :class:`AlignProblems` (exit code 1) after the
    reports are written.
    """
    started = time.perf_counter()
    landmarks, detector, overwrite = options.landmarks, options.detector, options.overwrite
    if (landmarks is None) == (detector is None):
        raise UserError("give exactly one source of landmarks: a landmarks file or a detector (yunet)")
    if options.all_faces and detector is None:
        raise UserError("all faces: a landmarks file gives one face per image; use it with a detector")
    face_detector = load_detector(detector, min_score=options.min_score) if detector is not None else None
    settings = _settings(options.size, options.image_format, options.quality, options.all_faces, face_detector)
    workers = _usable_cores() if options.workers is None else int(options.workers)
    if workers < 1:
        raise UserError(f"workers {workers}: expected at least 1")

    input_path = Path(input)
    root, images, listed_problems = resolve_input(input_path)
    if options.json_report is not None:  # replaced only by a run asked to redo the last (``overwrite``)
        reads = [input_path, *([landmarks] if landmarks is not None else []), *(os.path.join(root, image) for image in images)]
        refuse_output_over_inputs(options.json_report, reads, overwrite=overwrite, role="JSON report")
    out = Path(out_dir).absolute()
    check_output_folder(out, root, input_is_folder=input_path.is_dir())
    with output_lock(out, what=f"the align folder {out}"):  # makes --out; removed again if refused before any crop
        entries = read_landmarks(landmarks) if landmarks is not None else None
        tasks = plan_tasks(root, images, listed_problems, entries, is_listing=input_path.is_dir())
        clash_records, tasks = split_name_clashes(tasks, settings)

        journal_path = out / JOURNAL_NAME
        if journal_path.exists():
            remove_stale_temporaries(out, settings)
        if overwrite:  # before the new journal replaces the list of what the earlier run wrote
            remove_journaled_outputs(out)
        journal = None if overwrite else read_journal(journal_path, settings)
        out_was_empty = not any(entry.name != LOCK_NAME for entry in out.iterdir())
        previous = journal or {}
        finished = {t.path: previous[t.path] for t in tasks if t.path in previous and still_done(previous[t.path], out)}
        todo = [task for task in tasks if task.path not in finished]

        records_by_image: dict[str, list[FaceRecord]] = dict(finished)
        plan = CropPlan(out=str(out), settings=settings, detector=face_detector, check_existing=not out_was_empty,
                        adopt_existing=journal is not None)
        with Journal(journal_path, settings, fresh=journal is None) as log:
            for done, (path, records, line) in enumerate(run_tasks(todo, plan, workers), start=1):
                records_by_image[path] = records
                log.write(line)
                if callable(progress):
                    progress(done, len(todo))

        all_records = [record for records in records_by_image.values() for record in records] + clash_records
        all_records.sort(key=lambda r: (r.path, -1 if r.face is None else r.face))
        write_report(out / REPORT_NAME, all_records)
        summary = AlignSummary(
            records=tuple(all_records),
            report_path=out / REPORT_NAME,
            images=len(tasks) + len(clash_records),
            resumed=len(finished),
            seconds=time.perf_counter() - started,
            processed=len(todo),
            workers=worker_count(workers, sum(1 for t in todo if t.status is None)),
            counts=_count_statuses(all_records),
        )
        if options.json_report is not None:
            try:
                write_text_atomic(options.json_report, json.dumps(summary.to_json(), indent=2) + "\n")
            except OSError as error:
                raise UserError(f"{options.json_report}: cannot write ({error.strerror or error})") from None
        if options.strict and summary.problems:
            raise AlignProblems(summary)
        return summary


def _settings(
    size: int | str | tuple[int, int], image_format: str, quality: int, all_faces: bool,
    detector: YuNetDetector | None,
) -> AlignSettings:
    try:
        height_width = parse_size(size)
    except ValueError as error:
        raise UserError(str(error)) from None
    image_format = image_format.lower().lstrip(".").replace("jpeg", "jpg")
    if image_format not in IMAGE_FORMATS:
        raise UserError(f"image format {image_format!r}: expected one of {', '.join(IMAGE_FORMATS)}")
    if not 0 <= quality <= 100:
        raise UserError(f"quality {quality}: expected 0..100")
    source = "landmarks" if detector is None else detector.name
    return AlignSettings(height_width, image_format, int(quality), bool(all_faces), source)


def _usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _count_statuses(records: Iterable[FaceRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts
