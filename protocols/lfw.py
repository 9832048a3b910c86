"""LFW's ``pairs.txt`` over an aligned image tree (``name/name_0001.jpg``).

The header ``10 300`` announces 10 sets of 300 same pairs (``name n1 n2``) followed by 300 different
pairs (``name1 n1 name2 n2``); each set is one of the protocol's folds. The images may sit next to
``pairs.txt`` or in one sub-folder of it (``lfw/lfw-aligned/name/...``).
"""

from __future__ import annotations

from pathlib import Path

from facestra.errors import UserError
from facestra.protocols.benchmark import Benchmark, from_path_pairs, read_lines, resolve_image

PAIRS_FILE = "pairs.txt"


def read_lfw(path: str | Path, name: str = "lfw") -> Benchmark:
    """Read ``pairs.txt`` (``path`` is the file or the folder holding it) and locate every image."""
    path = Path(path)
    pairs_file = path / PAIRS_FILE if path.is_dir() else path
    lines = read_lines(pairs_file)
    if not lines:
        raise UserError(f"{pairs_file}: empty pairs file")
    num_sets, per_set = _header(pairs_file, lines[0])
    body = lines[1:]
    if len(body) != num_sets * 2 * per_set:
        raise UserError(
            f"{pairs_file}: header announces {num_sets} sets of {per_set} same + {per_set} different pairs "
            f"({num_sets * 2 * per_set} lines) but {len(body)} pair lines follow"
        )
    named_pairs: list[tuple[tuple[str, int], tuple[str, int]]] = []
    issame: list[bool] = []
    for number, line in enumerate(body, start=2):
        expect_same = (number - 2) % (2 * per_set) < per_set
        fields = line.split()
        try:
            if expect_same and len(fields) == 3:
                named_pairs.append(((fields[0], int(fields[1])), (fields[0], int(fields[2]))))
            elif not expect_same and len(fields) == 4:
                named_pairs.append(((fields[0], int(fields[1])), (fields[2], int(fields[3]))))
            else:
                raise ValueError
        except ValueError:
            kind = "'name n1 n2' (same pair)" if expect_same else "'name1 n1 name2 n2' (different pair)"
            raise UserError(f"{pairs_file}:{number}: expected {kind}, got {line!r}") from None
        issame.append(expect_same)
    root = _image_root(pairs_file.parent, named_pairs[0][0][0] if named_pairs else "")
    path_pairs = []
    for number, pair in enumerate(named_pairs, start=2):
        origin = f"{pairs_file}:{number}"
        path_pairs.append(tuple(resolve_image(root / person / f"{person}_{n:04d}.jpg", origin) for person, n in pair))
    folds = [i // (2 * per_set) for i in range(len(issame))]
    return from_path_pairs(name, pairs_file, path_pairs, issame, folds)


def _header(pairs_file: Path, line: str) -> tuple[int, int]:
    fields = line.split()
    try:
        num_sets, per_set = (int(f) for f in fields)
    except ValueError:
        raise UserError(f"{pairs_file}:1: expected the header 'sets pairs_per_set' (like '10 300'), got {line!r}") from None
    if num_sets < 1 or per_set < 1:
        raise UserError(f"{pairs_file}:1: header {line!r} announces no pairs")
    return num_sets, per_set


def _image_root(folder: Path, first_person: str) -> Path:
    """The folder holding the per-person folders: ``folder`` itself or the one sub-folder that has them."""
    if not first_person or (folder / first_person).is_dir():
        return folder
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (child / first_person).is_dir():
            return child
    return folder
