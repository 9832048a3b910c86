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


def faults_per_buffer(mode: str) -> float:
    output = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(output.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_48_mib_buffer_is_reused_instead_of_faulting_in_its_pages_again() -> None:
    # above glibc's largest automatic threshold (32 MiB) every buffer is a fresh mapping whose pages fault in
    # again (one fault per 4 KiB page, or per 2 MiB where the kernel gives huge pages: at least 24)
    default, tuned = faults_per_buffer("default"), faults_per_buffer("tuned")
    assert default >= 20 and tuned * 10 < default, (default, tuned)
