"""Image files that decoders refuse, built by the tests themselves."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def oversized_png(side: int = 60000, rows: int = 200) -> bytes:
    """A complete, valid-looking PNG of about 35 KB whose header declares side x side RGB pixels: more than
    OpenCV's CV_IO_MAX_IMAGE_PIXELS (2^30), so cv2.imdecode raises instead of returning None."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)  # filter byte 0 and a black row
    pixels = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")
