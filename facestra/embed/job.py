"""``facestra embed`` as a job: images -> an N x D float32 ``.npy`` plus its row paths, resumable.

Rows are written into a memory-mapped ``.npy`` (``numpy.lib.format.open_memmap``), so a set larger than
memory works. Until the job completes the matrix lives under a hidden partial name next to the output,
with a small journal saying how many images are done; rerunning the same command (same images, model
and options) continues from there after an interruption. The output and ``<out>.paths.txt`` get their
names only when complete. An unreadable image (without ``skip_bad``) ends the job with nothing written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch import nn

from facestra.embed.fingerprint import job_fingerprint
from facestra.embed.inference import (
    ImageFailure,
    InferenceOptions,
    Progress,
    embedding_dim,
    iter_embeddings,
    raise_for,
    refuse_identical_rows,
    resolve_device,
)
from facestra.errors import UserError
from facestra.io import (
    IMAGE_EXTENSIONS,
    check_readable,
    check_writable_folder,
    list_images,
    open_reserved_memmap,
    parse_path_line,
    read_lines,
    refuse_output_over_inputs,
    remove_dead_temporaries,
    write_path_lines,
    write_text_atomic,
)
from facestra.locks import output_lock

JOURNAL_INTERVAL_S = 2.0  # how much work an interruption may cost, at most


@dataclass(frozen=True)
class EmbedReport:
    """What :func:`embed_to_file` wrote."""

    path: Path
    paths_file: Path
    rows: int
    dim: int
    skipped: list[ImageFailure]
    resumed_from: int  # images already done by an interrupted run (0 for a fresh run)


def input_images(path: str | os.PathLike) -> list[Path]:
    """The images ``facestra embed`` takes: every image under a folder (sorted), or the lines of a list file.

    List entries are relative to the list's folder unless absolute; a line ``path label`` whose whole text
    is not a file is read as its first field. A line starting with ``"`` is one quoted name, as
    ``<out>.paths.txt`` writes names with line breaks, tabs or edge spaces, so a listing embed wrote can be
    fed back. A byte-order mark and CRLF line ends read like a plain file.
    """
    path = Path(path)
    check_readable(path)
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise UserError(f"{path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
        return images
    try:
        lines = read_lines(path)
    except OSError as error:
        raise UserError(f"{path}: cannot read as a list of image paths ({error.strerror or error})") from None
    images = []
    for number, line in enumerate(lines, 1):
        written = line.strip()
        if not written:
            continue
        if written.startswith('"'):
            try:
                images.append(path.parent / parse_path_line(written))
            except ValueError as error:
                raise UserError(f"{path}: line {number}: not a valid quoted file name ({error})") from None
            continue
        if written != line and os.path.lexists(path.parent / line):
            written = line  # a name that starts or ends with spaces, as the folder holds it
        candidate = path.parent / written
        if not candidate.exists() and len(written.split()) > 1:
            candidate = path.parent / written.split()[0]
        images.append(candidate)
    if not images:
        raise UserError(f"{path}: the list holds no image paths")
    return images


def paths_file_for(out: str | os.PathLike) -> Path:
    """``emb.npy`` -> ``emb.paths.txt``: the row names next to the matrix."""
    out = Path(out)
    stem = out.name[: -len(".npy")] if out.name.endswith(".npy") else out.name
    return out.with_name(stem + ".paths.txt")


def check_outputs(out: str | os.PathLike, *, overwrite: bool, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse, before any work, an output that is one of ``inputs`` (even with ``overwrite``: the user's
    files are read-only to us), and an existing matrix or paths file unless asked to replace it."""
    for target in (Path(out), paths_file_for(out)):
        refuse_output_over_inputs(target, inputs, overwrite=overwrite)


def lock_name(out: str | os.PathLike) -> str:
    """The lock file beside ``out`` (``.emb.npy.lock``) that one embed run holds while it writes ``out``
    (a digest of the name when that would be longer than a file system's 255 bytes)."""
    name = Path(out).name
    if len(os.fsencode(name)) > 240:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f".{name}.lock"


def _partial_files(out: Path) -> tuple[Path, Path]:
    return out.with_name(f".{out.name}.partial.npy"), out.with_name(f".{out.name}.partial.json")


def _load_journal(journal: Path, partial: Path, fingerprint: str, shape: tuple[int, int]) -> dict | None:
    """The state of an interrupted run of this very job, or None (then any leftover is stale)."""
    try:
        state = json.loads(journal.read_text())
        matrix = np.load(partial, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if state.get("fingerprint") != fingerprint or matrix.shape != shape or matrix.dtype != np.float32:
        return None
    return state


def embed_to_file(
    model: nn.Module,
    sources: Sequence[Path],
    out: str | os.PathLike,
    options: InferenceOptions = InferenceOptions(),
    *,
    normalize: bool = True,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> EmbedReport:
    """Write the N x D float32 embeddings of ``sources`` to ``out`` (``.npy``) and their paths, one per row,
    to ``<out>.paths.txt``.

    Without ``skip_bad`` the first unreadable image is a UserError (exit 1) and nothing is written; with it,
    bad images are left out and listed in the report.
    """
    out = Path(out)
    check_outputs(out, overwrite=overwrite, inputs=sources)
    if not sources:
        raise UserError("no images to embed")
    check_writable_folder(out.parent)
    with output_lock(out.parent, name=lock_name(out), what=str(out)):
        return _embed_locked(model, sources, out, options, normalize=normalize, skip_bad=skip_bad, overwrite=overwrite,
                             progress=progress)


def _embed_locked(model: nn.Module, sources: Sequence[Path], out: Path, options: InferenceOptions, *, normalize: bool,
                  skip_bad: bool, overwrite: bool, progress: Progress | None) -> EmbedReport:
    """:func:`embed_to_file` once its lock is held: no other run writes ``out`` meanwhile."""
    paths_file = paths_file_for(out)
    check_outputs(out, overwrite=overwrite, inputs=sources)  # again: another run may have finished it meanwhile
    partial, journal = _partial_files(out)
    remove_dead_temporaries(journal)  # out's and the listing's went with check_outputs
    partial.with_name(partial.name + ".rows").unlink(missing_ok=True)  # a killed _truncate_rows' copy: we hold the lock
    # absolute, so that the listing reads back as a list (``facestra embed emb.paths.txt``) from any folder
    names = [os.path.abspath(s) for s in sources]
    shape = (len(sources), embedding_dim(model, options.flip))
    # "fit" (not True): a partial file of 0.1, whose --resize stretched images, is not continued; the device
    # type too, as a GPU computes in float16 and its rows differ slightly from the CPU's
    job = {"flip": options.flip, "normalize": normalize, "resize": "fit" if options.resize else False, "skip_bad": skip_bad,
           "device": resolve_device(options.device, model).type}
    fingerprint = job_fingerprint(model, names, job)
    state = _load_journal(journal, partial, fingerprint, shape)
    if state is None:
        state = {"fingerprint": fingerprint, "done": 0, "skipped": []}
        matrix = open_reserved_memmap(partial, shape=shape, name=out)
    else:
        matrix = open_reserved_memmap(partial, name=out)
    resumed_from = state["done"]
    skipped = [ImageFailure(**failure) for failure in state["skipped"]]
    if progress is not None and resumed_from:
        progress(resumed_from)
    saved_at = float("-inf")
    try:
        start = resumed_from
        for part in iter_embeddings(model, sources[start:], options, names=names[start:], normalize=normalize):
            row = state["done"] - len(skipped)  # kept rows so far: where this batch's rows go
            for failure in part.failures:
                if not (skip_bad and failure.reason == "unreadable"):
                    raise_for(failure)
                skipped.append(ImageFailure(failure.index + start, failure.name, failure.reason, failure.message))
            matrix[row : row + len(part.indices)] = part.embeddings
            # one call, so that an interruption never leaves the two fields disagreeing
            state.update(done=state["done"] + len(part.indices) + len(part.failures), skipped=[asdict(f) for f in skipped])
            if time.monotonic() - saved_at >= JOURNAL_INTERVAL_S:
                matrix.flush()  # rows on disk before the journal says they are
                write_text_atomic(journal, json.dumps(state))
                saved_at = time.monotonic()
            if progress is not None:
                progress(len(part.indices) + len(part.failures))
        skipped_indices = {failure.index for failure in skipped}
        kept = [index for index in range(len(names)) if index not in skipped_indices]
        refuse_identical_rows(matrix[: len(kept)], [sources[i] for i in kept], [names[i] for i in kept])
    except BaseException as error:
        matrix.flush()
        if not isinstance(error, UserError):  # interrupted: keep what is done for the next run
            write_text_atomic(journal, json.dumps(state))
            raise
        del matrix
        partial.unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
        raise
    del matrix
    if skipped:
        _truncate_rows(partial, len(kept), out)
    # The listing goes last and an earlier one first: a crash anywhere leaves no listing beside a matrix of
    # other rows (at worst the matrix without its listing, which --overwrite replaces).
    paths_file.unlink(missing_ok=True)
    os.replace(partial, out)
    write_path_lines(paths_file, [names[i] for i in kept])  # names that could break a line are quoted
    journal.unlink(missing_ok=True)
    return EmbedReport(out, paths_file, len(kept), shape[1], skipped, resumed_from)


def _truncate_rows(path: Path, rows: int, name: Path, chunk: int = 65536) -> None:
    """Keep the first ``rows`` rows of the ``.npy`` at ``path``, copying through a second memmap."""
    full = np.load(path, mmap_mode="r")
    shorter_path = path.with_name(path.name + ".rows")
    try:
        shorter = open_reserved_memmap(shorter_path, shape=(rows,) + full.shape[1:], dtype=full.dtype, name=name)
        for begin in range(0, rows, chunk):
            end = min(begin + chunk, rows)
            shorter[begin:end] = full[begin:end]
        shorter.flush()
        del shorter, full
        os.replace(shorter_path, path)
    finally:
        shorter_path.unlink(missing_ok=True)
