"""Reading and listing the user's files, and writing ours so that they appear whole or not at all.

Every file facestra writes goes through :func:`atomic_write`: a killed process leaves at most a hidden
temporary file next to the target, never a truncated image, matrix or checkpoint under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from facestra.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` only if the block succeeds.

    With ``overwrite=False`` an existing target is never replaced (the rename is done with ``os.link`` so
    that a concurrent writer cannot be clobbered either).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Created with open(..., "x") rather than mkstemp so that the file gets the user's umask, not 0600.
    tmp = Path(temporary_path(target))
    try:
        tmp.open("xb").close()
    except OSError as error:
        raise _under_target(error, tmp, target) from None
    published = False
    try:
        yield tmp
        published = _publish(tmp, target, overwrite)
    except OSError as error:
        raise _under_target(error, tmp, target) from None
    except RuntimeError as error:
        # torch.save reports a short write on a full disk as "unexpected pos ...", with no errno: say what it is
        if _disk_full(target.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(target)) from error
        raise
    finally:
        if not published:
            tmp.unlink(missing_ok=True)


def _disk_full(folder: str | os.PathLike, margin: int = 1 << 20) -> bool:
    """Whether the file system of ``folder`` has (nearly) no room left: the explanation of a writer that
    failed without an errno."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return stats.f_bavail * stats.f_frsize < margin


def _under_target(error: OSError, tmp: str | os.PathLike, target: str | os.PathLike) -> OSError:
    """``error`` as the user should read it: about the file they asked for, not our hidden temporary.

    A full disk or read-only folder shows up while the temporary is written (often with no file name at
    all, as from ``write``); the user knows only the destination, so the message names that.
    """
    if error.errno is None or error.filename not in (None, os.fspath(tmp), str(tmp)):
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), os.fspath(target))


def temporary_path(target: str | os.PathLike) -> str:
    """The hidden sibling ``.NAME.<pid>-<random>.tmp.EXT`` a writer fills before renaming it onto ``target``.

    Hidden so that :func:`list_images` never takes a half-written file for an image; ending in the target's
    extension so that a job can find and delete the ones a killed run left (``facestra align`` does); naming
    the writer's process so that :func:`remove_dead_temporaries` removes only those of a process that is
    gone, never the file a concurrent run is still filling.
    """
    folder, name = os.path.split(os.fspath(target))
    return os.path.join(folder, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{os.path.splitext(name)[1]}")


def remove_dead_temporaries(*targets: str | os.PathLike) -> int:
    """Delete the temporaries (:func:`temporary_path`) of ``targets`` that a killed process left; returns
    how many. A temporary whose process is still alive is kept: it may be a concurrent run's.

    Every job calls this for its outputs when it starts, so a ``kill -9`` at any moment leaves nothing the
    next run does not clean up.
    """
    removed = 0
    by_folder: dict[str, list[str]] = {}
    for target in targets:
        folder, name = os.path.split(os.fspath(target))
        by_folder.setdefault(folder or ".", []).append(name)
    for folder, names in by_folder.items():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            writer = next((pid for pid in (_temporary_writer(entry, name) for name in names) if pid is not None), None)
            if writer is None or (writer > 0 and pid_alive(writer)):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, entry))
                removed += 1
    return removed


def _temporary_writer(entry: str, name: str) -> int | None:
    """The pid in ``entry`` if it is a temporary of ``name`` (0: one of facestra 0.2, which named no
    process), else None."""
    prefix, suffix = f".{name}.", f".tmp{os.path.splitext(name)[1]}"
    if not (entry.startswith(prefix) and entry.endswith(suffix)):
        return None
    middle = entry[len(prefix) : len(entry) - len(suffix)]
    pid, _, random = middle.rpartition("-")
    if not random or not all(c in "0123456789abcdef" for c in random) or len(random) != 12:
        return None
    return int(pid) if pid.isdigit() else (0 if not pid else None)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _publish(tmp: str | os.PathLike, target: str | os.PathLike, overwrite: bool) -> bool:
    """Give the finished temporary file its real name; True if ``tmp`` is gone (renamed), False if it is
    still there (linked, for the caller to remove)."""
    if overwrite:
        os.replace(tmp, target)
        return True
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise UserError(f"{os.fspath(target)}: already exists; refusing to overwrite it") from None
    return False


def write_bytes_atomic(
    path: str | os.PathLike, data: bytes | memoryview | np.ndarray, *, overwrite: bool = True
) -> None:
    """Write ``data`` (anything with the buffer protocol) to ``path`` atomically.

    Same guarantees as :func:`atomic_write`, in as few system calls as the guarantee allows (create the
    temporary exclusively, write, close, publish): aligning writes one small file per face, and on a
    virtual disk the generic path's extra opens, mkdir and unlink cost more than decoding the image.
    """
    target = os.fspath(path)
    tmp = temporary_path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            descriptor = os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            descriptor = os.open(tmp, flags, 0o666)
    except OSError as error:
        raise _under_target(error, tmp, target) from None
    published = False
    try:
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)
        published = _publish(tmp, target, overwrite)
    except OSError as error:
        raise _under_target(error, tmp, target) from None
    finally:
        if not published:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


def reserve_space(path: str | os.PathLike, nbytes: int, *, name: str | os.PathLike | None = None) -> None:
    """Allocate ``nbytes`` of disk for the existing file ``path`` now, so that a full disk is an OSError
    (ENOSPC, naming ``name`` or ``path``) before the work, not a SIGBUS when a memory map later writes into
    a hole the disk cannot fill.

    Where the file system cannot preallocate (EOPNOTSUPP, EINVAL, or no ``posix_fallocate`` at all) this
    does nothing: the write then fails as it would have.
    """
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None or nbytes <= 0:
        return
    descriptor = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        allocate(descriptor, 0, nbytes)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.ENOSYS):
            return
        raise OSError(error.errno, error.strerror or os.strerror(error.errno), os.fspath(name if name is not None else path)) from None
    finally:
        os.close(descriptor)


def open_reserved_memmap(
    path: str | os.PathLike, *, shape: tuple[int, ...] | None = None, dtype: type = np.float32, name: str | os.PathLike
) -> np.memmap:
    """A ``.npy`` memory map at ``path`` whose every byte is on disk already: a new one of ``shape`` and
    ``dtype``, or (``shape`` None) the existing file opened for update.

    Writing through a memory map into a file the disk cannot hold kills the process with SIGBUS and no
    message; reserving first turns a full disk into an OSError naming ``name`` (the output the user asked
    for, not our hidden partial file). A new file that cannot be reserved is removed.
    """
    created = shape is not None
    try:
        if created:
            matrix = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        else:
            matrix = np.lib.format.open_memmap(path, mode="r+")
        reserve_space(path, os.path.getsize(path), name=name)
    except OSError as error:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise _under_target(error, path, name) from None
    return matrix


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Prove that ``folder`` takes a new file (or, when it does not exist yet, that its nearest existing
    parent does, so that it can be made), before the long work whose result goes there: a read-only or
    missing-permission folder found after an hour of embedding would cost the hour. Nothing is created, so a
    command refused later leaves no empty folder behind. Raises a UserError ``cannot write FOLDER: reason``."""
    folder = os.fspath(folder) or "."
    existing = os.path.abspath(folder)
    while not os.path.isdir(existing):
        if os.path.lexists(existing):
            raise UserError(f"cannot write {folder}: {existing} is not a folder")
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    probe = os.path.join(existing, f".facestra-write-test.{uuid.uuid4().hex[:12]}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise UserError(f"cannot write {folder}: {error.strerror or error}") from None
    with contextlib.suppress(OSError):
        os.unlink(probe)


def text_lines(text: str) -> list[str]:
    """The lines of a text input, split the same way for every file facestra reads: at ``\n`` only, a
    ``\r`` before it dropped (CRLF files), so that characters ``str.splitlines`` also breaks at (U+2028,
    form feed, ...) stay inside a line and thus inside a file name. Read the text with ``utf-8-sig`` so that
    a byte-order mark is dropped too."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_text(path: str | os.PathLike) -> str:
    """A text input (list file, landmarks, pairs) as every reader takes it: UTF-8 with an optional
    byte-order mark dropped, and bytes that are not UTF-8 kept as ``surrogateescape`` characters, so a list
    of file names that are not UTF-8 (``ls > list.txt`` on such a folder) still names those files."""
    return read_file(path).decode("utf-8-sig", "surrogateescape")


def read_lines(path: str | os.PathLike) -> list[str]:
    """:func:`read_text` split by :func:`text_lines`: BOM and CRLF read like a plain file."""
    return text_lines(read_text(path))


def format_path_line(path: str | os.PathLike) -> str:
    """One line of a path listing (``paths.txt``) for ``path``, read back exactly by :func:`parse_path_line`.

    A name that reads unambiguously is written as it is. Any other (one holding a line break, tab or other
    control or non-printable character, bytes that are not UTF-8, leading or trailing spaces, or starting
    with ``"``) is written as a JSON string literal, which starts with ``"``: rows and names then always
    correspond, whatever the file system allows in a name. The line is plain UTF-8 either way.
    """
    name = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    if name and name.isprintable() and name == name.strip() and not name.startswith('"'):
        return name
    quoted = json.dumps(name, ensure_ascii=False)
    return "".join(_escape_unprintable(char) for char in quoted)


def _escape_unprintable(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:  # JSON writes a character beyond the BMP as its UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def parse_path_line(line: str) -> str:
    """The name a line of a path listing holds: a JSON string literal if the line starts with ``"``
    (ValueError if it is not a valid one), else the line without surrounding spaces."""
    stripped = line.strip()
    if not stripped.startswith('"'):
        return stripped
    name = json.loads(stripped)
    if not isinstance(name, str):
        raise ValueError("not a quoted name")
    return name


def read_path_lines(path: str | os.PathLike) -> list[str]:
    """The names of a path listing (see :func:`format_path_line`), blank lines skipped; a line that starts
    with ``"`` but is no valid quoted name is a UserError naming the file and the line."""
    names = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            names.append(parse_path_line(line))
        except ValueError as error:
            raise UserError(f"{os.fspath(path)}: line {number}: not a valid quoted file name ({error})") from None
    return names


def write_path_lines(path: str | os.PathLike, names: Iterable[str | os.PathLike], *, overwrite: bool = True) -> None:
    """Write a path listing atomically, one :func:`format_path_line` per name."""
    write_text_atomic(path, "".join(format_path_line(name) + "\n" for name in names), overwrite=overwrite)


def read_file(path: str | os.PathLike) -> bytes:
    """The whole file, with the fewest system calls: open, size, read, close.

    ``open(path, "rb").read()`` makes twice as many (a terminal check, a seek, a read to find the end), and
    each releases and retakes the GIL, which a thread decoding images alongside a writer thread waits for.
    A file whose size is not known in advance (a pipe, ``/proc``) or that comes short is read to its end.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(descriptor).st_size
        data = os.read(descriptor, size) if size > 0 else b""
        if size > 0 and len(data) == size:
            return data
        chunks = [data]
        while chunk := os.read(descriptor, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def input_at(target: str | os.PathLike, inputs: Iterable[str | os.PathLike | bytes]) -> Path | None:
    """The first of ``inputs`` that names the same file as ``target``, or None: an output there would
    destroy what the command reads. Only inputs with the file name of ``target`` (or of the file it links
    to) are resolved, so a million image paths cost a million string comparisons; in-memory images (bytes)
    are no file. A ``target`` that is a hard link (a file with several names) is compared by inode with
    every input, as its other names may be anything."""
    resolved = Path(target).resolve()
    names = {Path(target).name, resolved.name}
    try:
        status = os.stat(target)
        inode = (status.st_dev, status.st_ino) if status.st_nlink > 1 else None
    except (OSError, ValueError):
        inode = None
    for candidate in inputs:
        if isinstance(candidate, bytes):
            continue
        candidate = Path(candidate)
        if candidate.name in names and candidate.resolve() == resolved:
            return candidate
        if inode is not None:
            with contextlib.suppress(OSError, ValueError):
                other = os.stat(candidate)
                if (other.st_dev, other.st_ino) == inode:
                    return candidate
    return None


def refuse_output_over_inputs(
    output: str | os.PathLike, inputs: Iterable[str | os.PathLike | bytes], *, overwrite: bool, role: str = ""
) -> None:
    """The one check every writer makes before any work: refuse an ``output`` that is, links to or resolves
    to one of ``inputs`` (even with ``overwrite``: the user's files are read-only to us), and an existing
    ``output`` (a dangling link included) unless ``overwrite``. ``role`` says which output it is in the
    message (``"JSON report"``); the command may render it as its flag.

    A writer that passes is about to write ``output``: the temporaries a killed writer of it left are removed
    here (:func:`remove_dead_temporaries`), so every writer that makes this check cleans up after a crash."""
    label = f"{role} {os.fspath(output)}" if role else os.fspath(output)
    try:
        os.lstat(output)  # a name the file system cannot hold is an error now, naming the output, not after the work
    except (FileNotFoundError, NotADirectoryError):
        pass
    source = input_at(output, inputs)
    if source is not None:
        written = "" if os.fspath(source) == os.fspath(output) and not role else f" {label}"
        raise UserError(f"{source}: is one of the inputs; refusing to write{written} over it (choose another output)")
    if os.path.lexists(output) and not overwrite:
        raise UserError(f"{label}: already exists (pass `overwrite` to replace it)")
    remove_dead_temporaries(output)


def check_readable(path: str | os.PathLike, what: str = "file or folder") -> None:
    """Refuse, as an unreadable input, a ``path`` the operating system cannot open for reading (no
    permission, a name too long, a component that is not a folder): ``PATH: cannot read (reason)``, never
    the ``cannot create`` of an output. A missing one is ``PATH: no such WHAT``."""
    try:
        status = os.stat(path)
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (getattr(os, "O_DIRECTORY", 0) if _is_folder(status) else 0)
        os.close(os.open(path, flags))
    except FileNotFoundError:
        raise UserError(f"{os.fspath(path)}: no such {what}") from None
    except OSError as error:
        raise UserError(f"{os.fsdecode(os.fspath(path))}: cannot read this input ({error.strerror or error})") from None


def _is_folder(status: os.stat_result) -> bool:
    import stat

    return stat.S_ISDIR(status.st_mode)


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root`` (recursive, any extension case), sorted for a stable order.

    Hidden files are skipped: they include the ``.NAME.*.tmp.jpg`` temporaries of an interrupted writer.
    """
    root = Path(root)
    return [root / relative for relative in list_image_paths(root)]


def list_image_paths(root: str | os.PathLike) -> list[str]:
    """The images of :func:`list_images` as POSIX paths relative to ``root``, in the same order.

    One ``scandir`` per folder, whose entries already know their type, instead of a ``stat`` per file:
    listing is a tenth of aligning a large folder otherwise. Like ``Path.rglob``, symbolic links to folders
    are not followed and unreadable sub-folders are skipped.
    """
    if not os.path.isdir(root):
        raise UserError(f"{os.fspath(root)}: no such folder")
    found: list[str] = []
    _collect_images(os.fspath(root), "", found)
    return sorted(found, key=lambda relative: relative.split("/"))  # folder by folder, as Paths compare


def _collect_images(folder: str, prefix: str, found: list[str]) -> None:
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except PermissionError:
        return
    for entry in entries:
        name = entry.name
        if entry.is_dir(follow_symlinks=False):
            _collect_images(entry.path, f"{prefix}{name}/", found)
        elif (
            not name.startswith(".")
            and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            and entry.is_file()
        ):
            found.append(prefix + name)
