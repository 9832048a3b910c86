"""The insightface ``.bin`` benchmark format, read without executing pickled code.

A ``.bin`` (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``...) is a pickle of ``(bins, issame)``: a list of
encoded images, two per pair in order, and one boolean per pair. ``pickle.load`` on a downloaded file can
run arbitrary code, so :class:`RestrictedUnpickler` admits only the few globals such files really contain
(numpy bool arrays and scalars, which some writers used for ``issame``) and refuses everything else.

Older packs hold each image as ``bytes`` (Python 2 ``str``); packs written by insightface's current
``build_eval_pack.py`` hold the ``cv2.imencode`` result itself, a uint8 array of shape (n, 1) or (n,). All are the
same encoded file, so all read to the same bytes.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

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

    def find_class(self, module: str, name: str):  # the pickle.Unpickler hook
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
    images = [_encoded_bytes(entry) for entry in bins]
    bad = next((i for i, image in enumerate(images) if image is None), None)
    if bad is not None:
        raise UserError(
            f"{path}: not a benchmark .bin (image entry {bad} is {_describe(bins[bad])}, not encoded bytes "
            "or a uint8 array from cv2.imencode)"
        )
    if len(images) != 2 * len(issame):
        raise UserError(f"{path}: {len(images)} images for {len(issame)} pairs (expected two per pair)")
    return images, issame


def _encoded_bytes(entry: object) -> bytes | None:
    """One image entry as the encoded file's bytes, or None when it is neither form a pack uses."""
    if isinstance(entry, (bytes, bytearray)):
        return bytes(entry)
    if isinstance(entry, np.ndarray) and entry.dtype == np.uint8 and (entry.ndim == 1 or (entry.ndim == 2 and entry.shape[1] == 1)):
        return entry.tobytes()
    return None


def _describe(entry: object) -> str:
    if isinstance(entry, np.ndarray):
        return f"an array of {entry.dtype} with shape {entry.shape}"
    return f"a {type(entry).__name__}"


def write_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool], *, overwrite: bool = False) -> None:
    """Write encoded images (two per pair, in pair order) and labels as a ``.bin`` other tools can read."""
    issame_list = [bool(x) for x in issame]
    if len(images) != 2 * len(issame_list):
        raise ValueError(f"{len(images)} images for {len(issame_list)} pairs (expected two per pair)")
    payload = pickle.dumps(([bytes(b) for b in images], issame_list), protocol=4)
    write_bytes_atomic(path, payload, overwrite=overwrite)
