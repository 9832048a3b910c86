"""reuse_freed_memory: freed large buffers are handed out again instead of faulting in fresh pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from facestra.allocator import reuse_freed_memory
    assert reuse_freed_memory()
for _ in range(3):
    np.ones(6 << 20)  # 48 MiB, allocated and freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    np.ones(6 << 20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def faults_per_buffer(mode: str, probe: str = PROBE) -> float:
    """The page faults per buffer (or step) that ``probe`` prints, run in a fresh process with ``mode``."""
    output = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True)
    return float(output.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_48_mib_buffer_is_reused_instead_of_faulting_in_its_pages_again() -> None:
    # above glibc's largest automatic threshold (32 MiB) every buffer is a fresh mapping whose pages fault in
    # again (one fault per 4 KiB page, or per 2 MiB where the kernel gives huge pages: at least 24)
    default, tuned = faults_per_buffer("default"), faults_per_buffer("tuned")
    assert default >= 20 and tuned * 10 < default, (default, tuned)


TRIM_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] != "default":
    from facestra.allocator import reuse_freed_memory
    assert reuse_freed_memory(trim_threshold=256 << 20) if sys.argv[1] == "trimming" else reuse_freed_memory()

def step():  # 384 MiB alive together, then freed, as a training step's activations
    held = [np.ones(2 << 20) for _ in range(24)]
    del held

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_memory_a_step_frees_is_kept_for_the_next_step() -> None:
    # 384 MiB of 16 MiB buffers come from the heap; trimmed at the end of each step (at 256 MiB, the former
    # setting, as by default) the next step faults its pages in again; never trimmed, it faults none
    default, trimming, kept = (faults_per_buffer(mode, TRIM_PROBE) for mode in ("default", "trimming", "kept"))
    assert default >= 1000 and trimming >= 1000 and kept * 100 < trimming, (default, trimming, kept)
