"""CFP-FP: the frontal-profile protocol of the CFP data set, with its own ten splits.

``Protocol/Pair_list_F.txt`` and ``Pair_list_P.txt`` number the frontal and profile images (``7 ../Data/
Images/001/frontal/07.jpg``, paths relative to ``Protocol/``); ``Protocol/Split/FP/01..10/same.txt`` and
``diff.txt`` list pairs as ``frontal_number,profile_number``. Pairs come out fold by fold (each fold's same
pairs, then its different pairs), so the ten contiguous folds of a ``.bin`` packed from them are the splits.
"""

from __future__ import annotations

import os
from pathlib import Path

from facestra.errors import UserError
from facestra.protocols.benchmark import Benchmark, from_path_pairs, read_lines, resolve_image

PROTOCOL_DIR = "Protocol"
MARKER = f"{PROTOCOL_DIR}/Pair_list_F.txt"


def read_cfp_fp(path: str | Path, name: str = "cfp-fp") -> Benchmark:
    """Read the CFP layout under ``path`` (the folder holding ``Protocol/``)."""
    root = Path(path)
    protocol = root / PROTOCOL_DIR
    if not protocol.is_dir():
        raise UserError(f"{root}: no {PROTOCOL_DIR}/ folder (expected the CFP layout with {MARKER})")
    frontal = _image_list(protocol / "Pair_list_F.txt")
    profile = _image_list(protocol / "Pair_list_P.txt")
    split_root = protocol / "Split" / "FP"
    split_dirs = sorted(p for p in split_root.iterdir() if p.is_dir()) if split_root.is_dir() else []
    if not split_dirs:
        raise UserError(f"{split_root}: no split folders (expected 01 .. 10 with same.txt and diff.txt)")
    path_pairs: list[tuple[Path, Path]] = []
    issame: list[bool] = []
    folds: list[int] = []
    for fold, split_dir in enumerate(split_dirs):
        for file_name, same in (("same.txt", True), ("diff.txt", False)):
            list_file = split_dir / file_name
            for number, line in enumerate(read_lines(list_file), start=1):
                origin = f"{list_file}:{number}"
                f_number, p_number = _pair_numbers(line, origin)
                path_pairs.append((_lookup(frontal, f_number, origin, "Pair_list_F.txt"), _lookup(profile, p_number, origin, "Pair_list_P.txt")))
                issame.append(same)
                folds.append(fold)
    return from_path_pairs(name, root, path_pairs, issame, folds)


def _image_list(list_file: Path) -> dict[int, tuple[Path, str]]:
    """Image number -> (path as listed, resolved against ``Protocol/``; where it was listed)."""
    images: dict[int, tuple[Path, str]] = {}
    for number, line in enumerate(read_lines(list_file), start=1):
        fields = line.split(maxsplit=1)
        try:
            listed = Path(os.path.normpath(list_file.parent / fields[1].strip()))  # drop the '../'
            images[int(fields[0])] = (listed, f"{list_file}:{number}")
        except (ValueError, IndexError):
            raise UserError(f"{list_file}:{number}: expected 'number path', got {line!r}") from None
    return images


def _pair_numbers(line: str, origin: str) -> tuple[int, int]:
    try:
        first, second = (int(field) for field in line.replace(",", " ").split())
    except ValueError:
        raise UserError(f"{origin}: expected 'frontal_number,profile_number', got {line!r}") from None
    return first, second


def _lookup(images: dict[int, tuple[Path, str]], number: int, origin: str, list_name: str) -> Path:
    if number not in images:
        raise UserError(f"{origin}: image number {number} is not in {list_name}")
    path, listed_at = images[number]
    return resolve_image(path, listed_at)
