"""The insightface ``.bin`` benchmark format, read without executing pickled code.

A ``.bin`` (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``...) is a pickle of ``(bins, issame)``: a list of
encoded images, two per pair in order, and one boolean per pair. ``pickle.load`` on a downloaded file can
run arbitrary code, so :class:`RestrictedUnpickler` admits only the few globals such files really contain
(numpy bool arrays and scalars, which some writers used for ``issame``) and refuses everything else.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

from facestra.errors import UserError
from facestra.io import write_bytes_atomic

# The only globals a benchmark .bin may reference: what numpy needs to rebuild a bool array or scalar.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles of ``bytes`` at protocol 2 call (``_codecs.encode(text, 'latin1')``), and only that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed in a benchmark .bin")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild bytes, lists, tuples, bools and numpy bool arrays, and nothing else."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a benchmark .bin")


def read_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Read a ``.bin`` file: the encoded images (2 per pair) and the boolean same/different labels."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        loaded = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise UserError(f"{path}: not a benchmark .bin ({error})") from None
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 2):
        raise UserError(f"{path}: not a benchmark .bin (expected a pair (images, issame))")
    bins, issame = loaded
    issame = np.asarray(issame)
    if not isinstance(bins, (list, tuple)) or issame.ndim != 1 or issame.dtype != np.bool_:
        raise UserError(f"{path}: not a benchmark .bin (images must be a list, issame a list of booleans)")
    images = [bytes(b) if isinstance(b, (bytes, bytearray)) else b for b in bins]
    if not all(isinstance(b, bytes) for b in images):
        raise UserError(f"{path}: not a benchmark .bin (an image entry is not bytes)")
    if len(images) != 2 * len(issame):
        raise UserError(f"{path}: {len(images)} images for {len(issame)} pairs (expected two per pair)")
    return images, issame


def write_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool], *, overwrite: bool = False) -> None:
    """Write encoded images (two per pair, in pair order) and labels as a ``.bin`` other tools can read."""
    issame_list = [bool(x) for x in issame]
    if len(images) != 2 * len(issame_list):
        raise ValueError(f"{len(images)} images for {len(issame_list)} pairs (expected two per pair)")
    payload = pickle.dumps(([bytes(b) for b in images], issame_list), protocol=4)
    write_bytes_atomic(path, payload, overwrite=overwrite)
