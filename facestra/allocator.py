"""Keeping freed memory for reuse, so that large per-step buffers stop costing page faults.

glibc returns every freed block above its mmap threshold (128 KiB at first) to the kernel, and touching a
fresh one costs a page fault per 4 KiB. A training step frees and re-allocates the same activations every
time, and a synthetic photo its 250x250 scratch images; on a virtual machine those faults (thousands a
step, about 19 million in one ``facestra demo``) cost several percent of the run. Raising the mmap threshold
makes glibc keep such blocks in its heap and hand them out again; and the heap is never trimmed, because a
training step frees more at its end (hundreds of MiB at width 0.25) than any fixed trim threshold below it
keeps, and the next step faulted the trimmed pages in again: 12,552 and 44,304 faults over 18 bare steps of
resnet50 with a threshold of 256 MiB, 8 and 6,278 without trimming (2026-12-07). The program's memory then
stays at its peak until it exits, which a training step reaches again anyway.

Only the ``facestra`` program and the worker processes it starts call this: importing the library never
changes how a caller's process allocates.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
NEVER_TRIM = -1  # glibc's M_TRIM_THRESHOLD value that disables trimming


def reuse_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = NEVER_TRIM) -> bool:
    """Ask glibc to serve blocks below ``mmap_threshold`` bytes from its heap and to keep up to
    ``trim_threshold`` bytes of free heap (:data:`NEVER_TRIM`: all of it); False (and nothing changed) where
    the C library has no ``mallopt``.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
