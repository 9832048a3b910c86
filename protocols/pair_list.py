"""CALFW and CPLFW: a pair list of consecutive lines ``image label`` over a folder of aligned images.

Lines 1-2 are the first pair, 3-4 the second, and so on. The label is 0 on both lines of a different
pair and the same non-zero number on both lines of a same pair (1 in CPLFW, an identity number in some
CALFW copies). Images are looked up by file name anywhere under the benchmark folder (the archives put
them in ``aligned images/``), accepting another image extension for re-encoded trees.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from facestra.errors import UserError
from facestra.io import list_images
from facestra.protocols.benchmark import Benchmark, from_path_pairs, read_lines

PAIR_FILES = MappingProxyType({"calfw": "pairs_CALFW.txt", "cplfw": "pairs_CPLFW.txt"})


def read_pair_list(path: str | Path, name: str) -> Benchmark:
    """Read a CALFW/CPLFW pair list; ``path`` is the list file or the folder holding ``pairs_<NAME>.txt``."""
    path = Path(path)
    list_file = path / PAIR_FILES.get(name, "pairs.txt") if path.is_dir() else path
    lines = read_lines(list_file)
    if len(lines) % 2:
        raise UserError(f"{list_file}: {len(lines)} lines; a pair list needs two lines per pair")
    by_stem = _images_by_stem(list_file.parent)
    path_pairs: list[tuple[Path, Path]] = []
    issame: list[bool] = []
    for first in range(0, len(lines), 2):
        (name1, label1), (name2, label2) = (_entry(list_file, first + k + 1, lines[first + k]) for k in (0, 1))
        if (label1 != 0) != (label2 != 0):
            raise UserError(f"{list_file}:{first + 1}-{first + 2}: one line says same pair, the other different ({label1}, {label2})")
        path_pairs.append((_find(by_stem, name1, list_file, first + 1), _find(by_stem, name2, list_file, first + 2)))
        issame.append(label1 != 0)
    return from_path_pairs(name, list_file, path_pairs, issame)


def _entry(list_file: Path, number: int, line: str) -> tuple[str, int]:
    fields = line.rsplit(maxsplit=1)
    try:
        return fields[0], int(fields[1])
    except (ValueError, IndexError):
        raise UserError(f"{list_file}:{number}: expected 'image label', got {line!r}") from None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """File name without extension -> path, for every image under ``folder`` (first in sorted order wins)."""
    index: dict[str, Path] = {}
    for image in list_images(folder):
        index.setdefault(image.stem, image)
    return index


def _find(by_stem: dict[str, Path], image_name: str, list_file: Path, number: int) -> Path:
    stem = Path(image_name).stem
    if stem not in by_stem:
        raise UserError(f"{list_file}:{number}: image {image_name} not found under {list_file.parent}")
    return by_stem[stem]
