"""One run per output: a lock file in (or beside) what a command writes, so that two runs never write one
training folder, embedding matrix, align folder or IJB work folder while both exit 0.

The lock is an ``flock`` on a small file holding the owner's pid. The kernel drops it when its process
ends, however it ends, so the lock of a killed run (``kill -9``, a crash, a lost machine) is stale at once
and the next run simply takes it over; a live one makes the second run stop at once with one line naming
the first run's pid (it does not wait: a queue of runs on one output is never what the user meant). On a
file system without ``flock`` the pid in the file decides: a pid that is no longer alive is taken over.

Taking a lock makes the folder it lives in when that is missing; if the command then fails before it wrote
anything there, the folders it made are removed again, so a refused command leaves no empty output folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from facestra.errors import UserError
from facestra.io import pid_alive

LOCK_NAME = ".facestra.lock"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, *, name: str = LOCK_NAME, what: str | None = None) -> Iterator[Path]:
    """Hold ``folder/name`` for the block; yields the lock file's path (for listings that must skip it).

    ``what`` names the output in the message (default: the folder). A second holder, in this or another
    process, is a :class:`UserError` naming the first one's pid.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    made = _make_folders(folder)
    path = folder / name
    finished = False
    try:
        descriptor = _acquire(path, what or str(folder))
        try:
            yield path
            finished = True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(descriptor)
    finally:
        if not finished:
            _remove_empty(made)


def lock_holder(path: str | os.PathLike) -> int | None:
    """The pid written in lock file ``path``, or None (no file, or not yet written)."""
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="ascii", errors="replace") as handle:
            return int(handle.read().split()[0])
    return None


def _acquire(path: Path, what: str) -> int:
    import fcntl

    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise UserError(_busy_message(what, lock_holder(path), path)) from None
        except OSError as error:  # no flock here (some network file systems): the pid decides
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(descriptor)
                raise
            holder = lock_holder(path)
            if holder is not None and holder != os.getpid() and pid_alive(holder):
                os.close(descriptor)
                raise UserError(_busy_message(what, holder, path)) from None
        # the last holder unlinks the file as it lets go: a lock on a file no longer at ``path`` holds nothing
        try:
            current = os.stat(path)
        except FileNotFoundError:
            os.close(descriptor)
            continue
        mine = os.fstat(descriptor)
        if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(descriptor)
            continue
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return descriptor


def _busy_message(what: str, holder: int | None, path: Path) -> str:
    process = f"pid {holder}" if holder is not None else "a process that is just starting"
    return (f"{what}: another facestra run ({process}) is writing it (lock {path}); "
            "wait for it to end or choose another output")


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; the ones made, deepest first."""
    missing = []
    current = folder.absolute()
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
