"""The lines the command-line program prints for what is not a facestra error: a failed allocation, a file
the operating system refused. They name command-line flags and the program's verbs, so they live with the
program, not in the library (whose errors use its own names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import click

#: A setting named in a library message: `name`, a Python identifier in backticks.
_SETTING = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(message: str, flags: Mapping[str, str] | None = None) -> str:
    """``message`` with each setting the library named in backticks as the command-line flag: the one the
    invoked command declares for that parameter name (``flags``), else ``--`` and the name with dashes."""
    flags = flags or {}
    return _SETTING.sub(lambda match: flags.get(match.group(1), "--" + match.group(1).replace("_", "-")), message)


def command_flags(command: click.Command | None) -> dict[str, str]:
    """Parameter name -> its long flag, for every option of ``command`` (``json_path`` -> ``--json``)."""
    if command is None:
        return {}
    found = {}
    for parameter in command.params:
        long = [opt for opt in getattr(parameter, "opts", []) if opt.startswith("--")]
        if long:
            found[parameter.name] = long[0]
    return found

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
