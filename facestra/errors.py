"""The one exception type a user should ever see from facestra.

Library code raises :class:`UserError` for bad input (a missing file, an unreadable image, a run folder that
already holds a run...). The command-line program turns it into a single ``error: ...`` line and the exit
code it carries, instead of a traceback. Messages name the file and the problem.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: reported as one line, exit code ``exit_code`` (2 by default)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# How the allocators word a failed allocation: PyTorch's CPU allocator (a RuntimeError) and CUDA's
# (torch.OutOfMemoryError, also a RuntimeError); NumPy raises MemoryError.
_OUT_OF_MEMORY = ("DefaultCPUAllocator: can't allocate memory", "out of memory")


def out_of_memory_message(error: BaseException) -> str | None:
    """The one line to show for ``error`` when it is a failed allocation, else None (a real bug, which
    keeps its traceback).

    The usual cause is a batch, input size or network too large for the device, which the user fixes
    with an option, so the line names those options rather than the allocator's internals.
    """
    if isinstance(error, MemoryError):
        detail = "an allocation failed"
    elif isinstance(error, RuntimeError) and any(marker in (text := str(error)) for marker in _OUT_OF_MEMORY):
        tried = text.split("you tried to allocate ", 1)[-1].split(" bytes", 1)[0] if "you tried to allocate" in text else ""
        if tried.isdigit():
            detail = f"an allocation of {int(tried) / 2**30:,.1f} GiB failed"
        else:
            detail = text.splitlines()[0].strip()[:200]
    else:
        return None
    return f"out of memory ({detail}): use a smaller --batch-size, input size or network"


# What the operating system refuses, as the verb the user reads: the disk or the folder is the problem,
# not facestra, so one line naming the file is all there is to say.
_ENVIRONMENT_ERRNOS = {
    "EROFS": "write",
    "ENOSPC": "write",
    "EDQUOT": "write",
    "EFBIG": "write",
    "EACCES": "access",
    "EPERM": "access",
    "ENAMETOOLONG": "create",
    "EILSEQ": "create",
    "ENOTDIR": "create",
    "EISDIR": "write",
}


def environment_error(error: OSError) -> str | None:
    """The one line to show for ``error`` when the environment refused a file (a read-only or full disk,
    a quota, a name the file system cannot hold, a permission), else None (a bug, which keeps its
    traceback).

    Only errors that carry a file name qualify: without one the user could not act on the line.
    """
    import errno as errno_codes
    import os

    if not isinstance(error, OSError) or error.filename is None or error.errno is None:
        return None
    verb = next(
        (verb for name, verb in _ENVIRONMENT_ERRNOS.items() if getattr(errno_codes, name, None) == error.errno), None
    )
    if verb is None:
        return None
    filename = error.filename
    name = os.fsdecode(filename) if isinstance(filename, bytes) else str(filename)
    reason = error.strerror or os.strerror(error.errno)
    return f"cannot {verb} {name}: {reason}"
