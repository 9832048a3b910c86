"""Reading back ``<out>.paths.txt``, the row names ``facestra embed`` writes beside its matrix.

Apart from the job so that reading a listing does not import torch.
"""

from __future__ import annotations

import os

from facestra.io import read_path_lines


def read_paths(file: str | os.PathLike) -> list[str]:
    """The image path of each row of the matrix, in row order: ``read_paths("emb.paths.txt")[i]`` is row
    ``i`` of ``emb.npy``.

    Use this rather than ``splitlines()``: a name holding a line break, a tab, edge spaces or bytes that are
    not UTF-8 is written as a quoted JSON string (see :func:`facestra.io.format_path_line`), so that every
    name the file system allows keeps its row.
    """
    return read_path_lines(file)
