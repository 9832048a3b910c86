"""Whether an encoded image is whole, before anyone decodes it (:func:`facestra.data.images.decode_image` asks).

Some OpenCV builds decode a JPEG cut short by a killed download into an image whose bottom is grey, with
only a warning on stderr. Aligning that gives a plausible-looking but wrong crop, so before decoding we
check that a JPEG reaches its end-of-image marker (walking the segment structure, so that an EXIF thumbnail's
marker or data appended after the image, as in motion photos, do not mislead) and that a PNG has its IEND
chunk.
"""

from __future__ import annotations

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def jpeg_is_complete(data: bytes) -> bool:
    """True if the JPEG ``data`` reaches the end-of-image marker of its main image."""
    size = len(data)
    position = 2
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= size:
            return False
        marker = data[position + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            position += 2
            continue
        if position + 4 > size:
            return False
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if position > size:
            return False
        if marker == 0xDA:  # entropy-coded scan: skip stuffed bytes and restart markers
            while True:
                position = data.find(b"\xff", position)
                if position < 0 or position + 1 >= size:
                    return False
                following = data[position + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    position += 2
                elif following == 0xFF:
                    position += 1
                else:
                    break


def truncation_problem(data: bytes) -> str | None:
    """Why ``data`` looks cut short, or None; formats other than JPEG and PNG are left to the decoder."""
    if data.startswith(_JPEG_SOI):
        # fast path: a file ending in the end-of-image marker is whole (inside the compressed data an
        # 0xFF byte is always followed by 0x00 or a restart marker, never by 0xD9)
        if not data.rstrip(b"\0").endswith(b"\xff\xd9") and not jpeg_is_complete(data):
            return "truncated JPEG (no end-of-image marker)"
    elif data.startswith(_PNG_SIGNATURE):
        if b"IEND" not in data[-64:]:
            return "truncated PNG (no IEND chunk)"
    return None

