"""The alignment job: a folder or list of images -> one aligned crop per face, a report, resumable.

Data flow, per image and without detours: read bytes -> check they are whole -> decode once -> landmarks
(from the file, or the detector on the decoded image) -> similarity -> warp -> encode -> atomic write.

Nothing is lost on bad input: every image ends with a status in ``align_report.csv`` (see ``STATUSES``).
Nothing is destroyed: outputs go to a separate tree, are written atomically (temp file + rename), and an
existing output is never replaced unless ``overwrite=True``. Progress is journaled (one JSON line per image
in ``OUT/.align_journal.jsonl``), so an interrupted run, rerun with the same arguments, skips the images it
had finished and still writes a complete report.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import multiprocessing
import os
import posixpath
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from facestra.align.geometry import LandmarkError, fit_face, parse_size, warp_to_crop
from facestra.align.detect import YuNetDetector, load_detector, rank_faces
from facestra.errors import UserError
from facestra.io import list_image_paths, read_file, write_bytes_atomic, write_text_atomic
from facestra.data.truncation import decode_whole_image
from facestra.align.landmarks import LandmarkEntry, read_landmarks

OK = "ok"
EXISTS = "exists"
NO_FACE = "no_face"
UNREADABLE = "unreadable"
BAD_LANDMARKS = "bad_landmarks"
NO_LANDMARKS = "no_landmarks"
MISSING_IMAGE = "missing_image"
NAME_CLASH = "name_clash"
#: Every status a report line can carry; all but ``ok`` and ``exists`` count as problems (``--strict``).
STATUSES = (OK, EXISTS, NO_FACE, UNREADABLE, BAD_LANDMARKS, NO_LANDMARKS, MISSING_IMAGE, NAME_CLASH)
FINE_STATUSES = frozenset({OK, EXISTS})

KEPT = "output already exists; not overwritten (use --overwrite)"
REPORT_NAME = "align_report.csv"
JOURNAL_NAME = ".align_journal.jsonl"
IMAGE_FORMATS = ("jpg", "png")
REPORT_COLUMNS = ["path", "face", "output", "status", "score", "residual"] + [
    f"{axis}{i}" for i in range(1, 6) for axis in ("x", "y")
] + ["detail"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FaceRecord:
    """One line of the report: an aligned face, or why an image gave none."""

    path: str
    status: str
    face: int | None = None
    output: str = ""
    score: float | None = None
    residual: float | None = None
    landmarks: tuple[float, ...] | None = None
    detail: str = ""

    def to_json(self) -> dict:
        return {"path": self.path, "status": self.status, "face": self.face, "output": self.output,
                "score": self.score, "residual": self.residual,
                "landmarks": None if self.landmarks is None else list(self.landmarks), "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict) -> "FaceRecord":
        landmarks = data.get("landmarks")
        return cls(**{**data, "landmarks": tuple(landmarks) if landmarks is not None else None})


@dataclass(frozen=True)
class AlignSettings:
    """What decides the content of an output file; a rerun into the same folder must use the same."""

    size: tuple[int, int]
    image_format: str
    quality: int
    all_faces: bool
    source: str  # "landmarks" or the detector name

    def to_json(self) -> dict:
        return {**asdict(self), "size": list(self.size)}


@dataclass(frozen=True)
class AlignTask:
    """One image to process: where it is, and its landmarks or the reason it has none."""

    path: str  # relative to the input root, POSIX separators
    source: str | None  # absolute path of the image
    points: np.ndarray | None = None
    status: str | None = None  # set when the image is settled before decoding
    detail: str = ""
    line: int = 0  # the landmarks file's line the points come from


@dataclass(frozen=True)
class AlignSummary:
    """What a run did: one record per face or failed image, where the report is, how long it took."""

    records: tuple[FaceRecord, ...]
    report_path: Path
    images: int
    resumed: int
    seconds: float
    processed: int = 0
    workers: int = 1
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def problems(self) -> int:
        """Records whose status is a problem (anything but ok/exists)."""
        return sum(n for status, n in self.counts.items() if status not in FINE_STATUSES)

    def to_json(self) -> dict:
        """The summary without the per-face records (those are in the CSV report)."""
        return {
            "images": self.images,
            "processed": self.processed,
            "workers": self.workers,
            "resumed": self.resumed,
            "counts": dict(self.counts),
            "warnings": self.problems,
            "seconds": round(self.seconds, 3),
            "report": str(self.report_path),
        }

    @property
    def faces_written(self) -> int:
        return self.counts.get(OK, 0)

    def line(self) -> str:
        """The one-line summary the CLI prints at the end."""
        parts = ", ".join(f"{status} {self.counts[status]}" for status in STATUSES if self.counts.get(status))
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        resumed = f"; {self.resumed} done by an earlier run" if self.resumed else ""
        return (
            f"aligned {self.images} images: {parts or 'nothing to do'}{resumed}; "
            f"{self.problems} warnings; {rate:.1f} images/s; report {self.report_path}"
        )


class AlignProblems(UserError):
    """Raised under ``strict=True`` after the report is written, when any image had a problem (exit 1)."""

    def __init__(self, summary: AlignSummary) -> None:
        super().__init__(f"strict: {summary.problems} problems -- {summary.line()}", exit_code=1)
        self.summary = summary


def align_images(
    input: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    landmarks: str | os.PathLike | None = None,
    detector: str | None = None,
    size: int | str | tuple[int, int] = 112,
    workers: int | None = None,
    overwrite: bool = False,
    strict: bool = False,
    image_format: str = "jpg",
    quality: int = 95,
    all_faces: bool = False,
    min_score: float = 0.5,
    json_report: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> AlignSummary:
    """Align every face of ``input`` (an image folder, or a text file listing images) into ``out_dir``.

    Landmarks come from ``landmarks`` (CSV, JSON lines or insightface .lst; paths relative to the input
    root, i.e. the folder, or the list file's folder) or from ``detector="yunet"``. ``size`` is 112, "HxW"
    or (H, W). ``workers`` processes (default: all cores; 1 runs in this process). ``progress(done, total)``
    is called as images finish. Writes ``out_dir/align_report.csv`` (and the summary as JSON to
    ``json_report`` if given) and returns the summary; with ``strict=True`` any problem raises
    :class:`AlignProblems` (exit code 1) after the reports are written.
    """
    started = time.perf_counter()
    if (landmarks is None) == (detector is None):
        raise UserError("give exactly one source of landmarks: a landmarks file or a detector (yunet)")
    if all_faces and detector is None:
        raise UserError("all faces: a landmarks file gives one face per image; use it with a detector")
    face_detector = load_detector(detector, min_score=min_score) if detector is not None else None
    settings = _settings(size, image_format, quality, all_faces, face_detector)
    workers = _usable_cores() if workers is None else int(workers)
    if workers < 1:
        raise UserError(f"workers {workers}: expected at least 1")

    input_path = Path(input)
    root, images, listed_problems = _resolve_input(input_path)
    out = Path(out_dir).absolute()
    _check_output_folder(out, root, input_is_folder=input_path.is_dir())
    out_was_empty = not any(out.iterdir())
    entries = read_landmarks(landmarks) if landmarks is not None else None
    tasks = _plan_tasks(root, images, listed_problems, entries, is_listing=input_path.is_dir())
    clash_records, tasks = _split_name_clashes(tasks, settings)

    journal_path = out / JOURNAL_NAME
    journal = None if overwrite else _read_journal(journal_path, settings)
    if journal_path.exists():
        _remove_stale_temporaries(out, settings)
    previous = journal or {}
    finished = {t.path: previous[t.path] for t in tasks if t.path in previous and _still_done(previous[t.path], out)}
    todo = [task for task in tasks if task.path not in finished]

    records_by_image: dict[str, list[FaceRecord]] = dict(finished)
    plan = _Plan(out=str(out), settings=settings, detector=face_detector, overwrite=overwrite,
                 check_existing=not out_was_empty, adopt_existing=journal is not None)
    with _Journal(journal_path, settings, fresh=journal is None) as log:
        for done, (path, records, line) in enumerate(_run(todo, plan, workers), start=1):
            records_by_image[path] = records
            log.write(line)
            if callable(progress):
                progress(done, len(todo))

    all_records = [record for records in records_by_image.values() for record in records] + clash_records
    all_records.sort(key=lambda r: (r.path, -1 if r.face is None else r.face))
    _write_report(out / REPORT_NAME, all_records)
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
    if json_report is not None:
        try:
            write_text_atomic(json_report, json.dumps(summary.to_json(), indent=2) + "\n")
        except OSError as error:
            raise UserError(f"{json_report}: cannot write ({error.strerror or error})") from None
    if strict and summary.problems:
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


# ----------------------------------------------------------------------------------------------- planning


def _resolve_input(path: Path) -> tuple[Path, list[str], dict[str, str]]:
    """(root, relative image paths, {relative path: problem}) for a folder or a list file."""
    if path.is_dir():
        root = path.absolute()
        images = list_image_paths(root)
        if not images:
            raise UserError(f"{path}: no images found (jpg, jpeg, png, bmp or webp, in any sub-folder)")
        return root, images, {}
    if path.is_file():
        root = path.absolute().parent
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: cannot read the image list ({error})") from None
        listed: dict[str, None] = {}  # ordered and without repeats
        problems: dict[str, str] = {}
        for line in lines:
            written = line.strip()
            if not written or written.startswith("#"):
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


def _plan_tasks(
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


def _split_name_clashes(tasks: list[AlignTask], settings: AlignSettings) -> tuple[list[FaceRecord], list[AlignTask]]:
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


def _check_output_folder(out: Path, root: Path, *, input_is_folder: bool) -> None:
    """Refuse to write into the input tree, and fail early (exit 2) if ``out`` cannot be written."""
    resolved_out, resolved_root = out.resolve(), root.resolve()
    if resolved_out == resolved_root or (input_is_folder and (
        resolved_root in resolved_out.parents or resolved_out in resolved_root.parents
    )):
        raise UserError(f"{out}: the output folder must not overlap the input folder {root}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"{out}: cannot write the output folder ({error.strerror or error})") from None


# ------------------------------------------------------------------------------------------------ journal


def _read_journal(path: Path, settings: AlignSettings) -> dict[str, list[FaceRecord]] | None:
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
        raise UserError(f"{path}: not a facestra progress journal; use another output folder or --overwrite")
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


def _remove_stale_temporaries(out: Path, settings: AlignSettings) -> None:
    """Delete half-written crops a killed run left (the hidden ``.NAME.*.tmp.EXT`` files of
    :func:`facestra.io.temporary_path`).

    They never carry a real output's name, but their image extension would let a later image-folder reader
    pick them up.
    """
    for stale in out.rglob(f".*.tmp.{settings.image_format}"):
        stale.unlink(missing_ok=True)


def _still_done(records: list[FaceRecord], out: Path) -> bool:
    """An image counts as done if it ended fine and every output it wrote is still there."""
    return bool(records) and all(r.status in FINE_STATUSES and (out / r.output).is_file() for r in records)


class _Journal:
    """Append-only progress log: one JSON line per finished image."""

    def __init__(self, path: Path, settings: AlignSettings, *, fresh: bool) -> None:
        self.path = path
        self.settings = settings
        self.fresh = fresh
        self.handle: io.TextIOBase | None = None

    def __enter__(self) -> "_Journal":
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


def _write_report(path: Path, records: Iterable[FaceRecord]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for r in records:
        points = [f"{v:.3f}" for v in r.landmarks] if r.landmarks is not None else [""] * 10
        writer.writerow(
            [r.path, "" if r.face is None else r.face, r.output, r.status,
             "" if r.score is None else f"{r.score:.3f}", "" if r.residual is None else f"{r.residual:.4f}",
             *points, r.detail]
        )
    try:
        write_text_atomic(path, buffer.getvalue())
    except OSError as error:
        raise UserError(f"{path}: cannot write the report ({error.strerror or error})") from None


# ------------------------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class _Plan:
    """Everything a worker needs besides the task: picklable, no open handles."""

    out: str
    settings: AlignSettings
    detector: YuNetDetector | None
    overwrite: bool
    check_existing: bool = True  # False when the output folder was empty: saves a stat per image
    adopt_existing: bool = False  # resuming: an existing output without a journal line is the killed run's


#: Starting a worker process (a fresh interpreter importing numpy and OpenCV) costs about as much as
#: aligning a few hundred images, so smaller jobs are done in this process.
MIN_IMAGES_PER_WORKER = 256


def worker_count(requested: int, images: int) -> int:
    """Processes actually used: no more than the job can keep busy past their start-up cost."""
    return max(1, min(requested, images // MIN_IMAGES_PER_WORKER))


Result = tuple[str, list[FaceRecord], str]  # image path, its records, its journal line


def _run(tasks: Sequence[AlignTask], plan: _Plan, workers: int) -> Iterator[Result]:
    """Yield (path, records, journal line) as images finish; in this process for one worker or a handful of
    images."""
    work = [t for t in tasks if t.status is None]
    for task in tasks:
        if task.status is not None:
            records = [FaceRecord(task.path, task.status, detail=task.detail)]
            yield task.path, records, journal_line(task.path, records)
    workers = worker_count(workers, len(work))
    if workers <= 1:
        yield from align_stream(work, plan)
        return
    chunk = max(1, min(32, math.ceil(len(work) / (workers * 4))))
    chunks = [work[i : i + chunk] for i in range(0, len(work), chunk)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker) as pool:
        for results in pool.imap_unordered(functools.partial(_align_chunk, plan=plan), chunks):
            yield from results
        pool.close()
        pool.join()


def _init_worker() -> None:
    # One process per core already: the libraries' own thread pools would only compete (YuNet's OpenMP
    # threads spin, which on a busy machine makes detection several times slower). Set before yuface loads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    from facestra.allocator import reuse_freed_memory

    cv2.setNumThreads(1)
    reuse_freed_memory()


def _align_chunk(tasks: list[AlignTask], plan: _Plan) -> list[Result]:
    # One process per core already keeps every core busy: a writer thread per process would only make the
    # processes compete for cores (bench/align_speed.py, 4000 images, 2 cores: --workers 2 went from x1.15
    # to x1.30 of what --workers 1 then did).
    return [_result(task.path, align_one(task, plan)) for task in tasks]


#: Images handed to the writer thread at a time (fewer when their decoded pixels pass WRITE_BATCH_BYTES), and
#: batches it may lag behind. Waking a thread costs tens of microseconds on a virtual machine, so one
#: hand-over per image ate what the overlap gained. Bounds memory and the outputs a kill can leave
#: unjournaled (adopted on resume).
WRITE_BATCH = 16
WRITE_BATCH_BYTES = 32 << 20
WRITE_AHEAD = 2


def align_stream(tasks: Iterable[AlignTask], plan: _Plan) -> Iterator[Result]:
    """Align ``tasks`` in order, yielding (path, records, journal line) once each image's crops are on disk.

    This thread only reads and decodes each image (and runs the detector, if any) while one helper thread
    checks the landmarks, fits, warps, encodes and writes the previous ones and makes their report and journal
    lines: both halves spend most of their time in OpenCV or in system calls, which release the GIL, and
    decoding is about two thirds of the work, so one worker keeps up to two cores busy.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="align-writer") as writer:
        pending: deque[Future] = deque()
        batch: list[tuple[str, list[FaceRecord | _PendingCrop]]] = []
        batch_bytes = 0
        for task in tasks:
            items = prepare_image(task, plan)
            batch.append((task.path, items))
            batch_bytes += next((item.image.nbytes for item in items if isinstance(item, _PendingCrop)), 0)
            if len(batch) == WRITE_BATCH or batch_bytes >= WRITE_BATCH_BYTES:
                pending.append(writer.submit(_finish_batch, batch, plan))
                batch, batch_bytes = [], 0
            while pending and (len(pending) > WRITE_AHEAD or pending[0].done()):
                yield from pending.popleft().result()
        if batch:
            pending.append(writer.submit(_finish_batch, batch, plan))
        while pending:
            yield from pending.popleft().result()


def _finish_batch(batch: list[tuple[str, list[FaceRecord | _PendingCrop]]], plan: _Plan) -> list[Result]:
    return [_result(path, finish_image(items, plan)) for path, items in batch]


def _result(path: str, records: list[FaceRecord]) -> Result:
    return path, records, journal_line(path, records)


def align_one(task: AlignTask, plan: _Plan) -> list[FaceRecord]:
    """Decode one image once, find its face(s), write each aligned crop; never raises for bad input."""
    return finish_image(prepare_image(task, plan), plan)


class _PendingCrop(NamedTuple):
    """A face located but not yet fitted, warped and written (its report line is made then): the decoded
    image and what the line needs. A plain tuple: the thread that decodes makes one per image."""

    path: str
    output: str
    face: int | None
    score: float | None
    image: np.ndarray
    landmarks: np.ndarray
    line: int  # of the landmarks file, 0 for a detector's landmarks


def prepare_image(task: AlignTask, plan: _Plan) -> list[FaceRecord | _PendingCrop]:
    """Read and decode the image once and find its face(s); bad input becomes a record."""
    settings = plan.settings
    if plan.check_existing and not plan.adopt_existing and not plan.overwrite and not settings.all_faces:
        output = output_name(task.path, settings)
        if os.path.exists(os.path.join(plan.out, output)):
            return [FaceRecord(task.path, EXISTS, output=output, detail=KEPT)]
    try:
        data = read_file(task.source)  # type: ignore[arg-type]
    except OSError as error:
        return [FaceRecord(task.path, UNREADABLE, detail=f"cannot read ({error.strerror or error})")]
    try:
        image = decode_whole_image(data, task.path)
    except UserError as error:
        return [FaceRecord(task.path, UNREADABLE, detail=str(error).split(": ", 1)[-1])]

    if plan.detector is None:
        return [_PendingCrop(task.path, output_name(task.path, settings), None, None, image, task.points, task.line)]
    faces = rank_faces(plan.detector(image), image.shape)
    if not faces:
        return [FaceRecord(task.path, NO_FACE, detail=f"{plan.detector.name} found no face")]
    if not settings.all_faces:
        faces = faces[:1]
    items: list[FaceRecord | _PendingCrop] = []
    for index, face in enumerate(faces):
        number = index if settings.all_faces else None
        items.append(_PendingCrop(task.path, output_name(task.path, settings, number), number, float(face.score),
                                  image, face.landmarks, 0))
    return items


def finish_image(items: list[FaceRecord | _PendingCrop], plan: _Plan) -> list[FaceRecord]:
    """Check the landmarks, fit, warp, encode and atomically write the crops of one image; never replaces an
    existing file."""
    import cv2

    settings = plan.settings
    if settings.image_format == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, settings.quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    records = []
    for item in items:
        if isinstance(item, FaceRecord):
            records.append(item)
            continue
        landmarks = tuple(np.asarray(item.landmarks, dtype=np.float64).reshape(-1).tolist())
        try:
            matrix, residual = fit_face(item.landmarks, settings.size)
        except LandmarkError as error:
            detail = f"line {item.line}: {error}" if item.line else str(error)
            records.append(FaceRecord(item.path, BAD_LANDMARKS, face=item.face, score=item.score,
                                      landmarks=None if item.line else landmarks, detail=detail))
            continue
        target = os.path.join(plan.out, item.output)
        ok, encoded = cv2.imencode("." + settings.image_format, warp_to_crop(item.image, matrix, settings.size), params)
        if not ok:
            raise UserError(f"{target}: OpenCV could not encode the crop")
        status, detail = OK, ""
        try:
            write_bytes_atomic(target, encoded, overwrite=plan.overwrite)
        except UserError:  # the target exists
            if plan.adopt_existing:  # written by the interrupted run before it could journal it
                detail = "written by the interrupted run"
            else:
                status, detail = EXISTS, KEPT
        except OSError as error:
            raise UserError(f"{target}: cannot write ({error.strerror or error})") from None
        records.append(FaceRecord(item.path, status, face=item.face, output=item.output, score=item.score,
                                  residual=residual, landmarks=landmarks, detail=detail))
    return records
