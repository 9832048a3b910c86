"""Reading and writing files: whole contents, atomic replacement, errors a caller can report."""

from __future__ import annotations

import os

import pytest

from facestra.errors import UserError
from facestra.io import read_file, write_bytes_atomic


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 3 * 1024 * 1024 + 7])
def test_read_file_returns_every_byte(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert read_file(path) == data
    assert read_file(str(path)) == data


def test_read_file_reads_what_a_size_does_not_announce():
    # /proc files report size 0 yet have contents: the reader must go on to the end, not trust the size
    text = read_file("/proc/self/status") if os.path.exists("/proc/self/status") else None
    if text is None:
        pytest.skip("no /proc here")
    assert text.startswith(b"Name:") and len(text) > 100


def test_read_file_raises_oserror_for_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "nothing.jpg")


def test_atomic_write_keeps_an_existing_file_unless_told(tmp_path):
    target = tmp_path / "out" / "a.jpg"
    write_bytes_atomic(target, b"first", overwrite=False)
    with pytest.raises(UserError, match="a.jpg"):
        write_bytes_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    write_bytes_atomic(target, b"third")
    assert target.read_bytes() == b"third"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.jpg"]  # no temporaries left behind
