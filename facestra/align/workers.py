"""How the images of a run are spread over time and cores: in this process with a write-ahead thread, or over
spawned worker processes in chunks. A spawned worker imports this module first, so it imports nothing heavy
(no torch): only what aligning an image needs.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from facestra.align.crop import CropPlan, PendingCrop, align_one, finish_image, prepare_image
from facestra.align.journal import journal_line
from facestra.align.records import AlignTask, FaceRecord

#: Starting a worker process (a fresh interpreter importing numpy and OpenCV) costs about as much as
#: aligning a few hundred images, so smaller jobs are done in this process.
MIN_IMAGES_PER_WORKER = 256


def worker_count(requested: int, images: int) -> int:
    """Processes actually used: no more than the job can keep busy past their start-up cost."""
    return max(1, min(requested, images // MIN_IMAGES_PER_WORKER))


Result = tuple[str, list[FaceRecord], str]  # image path, its records, its journal line


def run_tasks(tasks: Sequence[AlignTask], plan: CropPlan, workers: int) -> Iterator[Result]:
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


def _align_chunk(tasks: list[AlignTask], plan: CropPlan) -> list[Result]:
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


def align_stream(tasks: Iterable[AlignTask], plan: CropPlan) -> Iterator[Result]:
    """Align ``tasks`` in order, yielding (path, records, journal line) once each image's crops are on disk.

    This thread only reads and decodes each image (and runs the detector, if any) while one helper thread
    checks the landmarks, fits, warps, encodes and writes the previous ones and makes their report and journal
    lines: both halves spend most of their time in OpenCV or in system calls, which release the GIL, and
    decoding is about two thirds of the work, so one worker keeps up to two cores busy.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="align-writer") as writer:
        pending: deque[Future] = deque()
        batch: list[tuple[str, list[FaceRecord | PendingCrop]]] = []
        batch_bytes = 0
        for task in tasks:
            items = prepare_image(task, plan)
            batch.append((task.path, items))
            batch_bytes += next((item.image.nbytes for item in items if isinstance(item, PendingCrop)), 0)
            if len(batch) == WRITE_BATCH or batch_bytes >= WRITE_BATCH_BYTES:
                pending.append(writer.submit(_finish_batch, batch, plan))
                batch, batch_bytes = [], 0
            while pending and (len(pending) > WRITE_AHEAD or pending[0].done()):
                yield from pending.popleft().result()
        if batch:
            pending.append(writer.submit(_finish_batch, batch, plan))
        while pending:
            yield from pending.popleft().result()


def _finish_batch(batch: list[tuple[str, list[FaceRecord | PendingCrop]]], plan: CropPlan) -> list[Result]:
    return [_result(path, finish_image(items, plan)) for path, items in batch]


def _result(path: str, records: list[FaceRecord]) -> Result:
    return path, records, journal_line(path, records)
