"""Benchmark names, where their files are, and the one entry point ``load_benchmark(name, path)``.

Each of the five standard benchmarks can come as the widely shared ``.bin`` or as its original layout
over an aligned image tree; any other benchmark as a ``.bin`` or a ``pairs.csv``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facestra.errors import UserError
from facestra.protocols.benchmark import Benchmark
from facestra.protocols.binfile import read_bin
from facestra.protocols.cfp import MARKER as CFP_MARKER
from facestra.protocols.cfp import read_cfp_fp
from facestra.protocols.lfw import PAIRS_FILE as LFW_PAIRS_FILE
from facestra.protocols.lfw import read_lfw
from facestra.protocols.pair_list import PAIR_FILES, read_pair_list
from facestra.protocols.pairs_csv import PAIRS_CSV, read_pairs_csv


@dataclass(frozen=True)
class BenchmarkSpec:
    """A standard benchmark: its ``.bin`` file name, the marker file of its original layout, its reader
    (which takes the layout's folder, or also its pair file when ``reads_pair_file``)."""

    name: str
    bin_name: str
    layout_marker: str | None
    read_layout: Callable[[Path, str], Benchmark] | None
    reads_pair_file: bool = True


STANDARD: tuple[BenchmarkSpec, ...] = (
    BenchmarkSpec("lfw", "lfw.bin", LFW_PAIRS_FILE, read_lfw),
    BenchmarkSpec("cfp-fp", "cfp_fp.bin", CFP_MARKER, read_cfp_fp, reads_pair_file=False),
    BenchmarkSpec("cplfw", "cplfw.bin", PAIR_FILES["cplfw"], read_pair_list),
    BenchmarkSpec("calfw", "calfw.bin", PAIR_FILES["calfw"], read_pair_list),
    BenchmarkSpec("agedb-30", "agedb_30.bin", None, None, reads_pair_file=False),
)


def standard_names() -> list[str]:
    """The five benchmarks of the paper's Table 5, in its column order."""
    return [spec.name for spec in STANDARD]


def canonical_name(name: str) -> str:
    """``CFP_FP`` / ``cfp-fp`` / ``cfp_fp`` -> ``cfp-fp``; other names are kept (lower-cased)."""
    return name.strip().lower().replace("_", "-")


def _spec(name: str) -> BenchmarkSpec | None:
    return next((spec for spec in STANDARD if spec.name == name), None)


def load_benchmark(name: str, path: str | Path) -> Benchmark:
    """Read benchmark ``name`` from ``path``: a ``.bin``, a ``pairs.csv``, a pair list, or a layout folder."""
    from facestra.protocols.ijb import is_ijb

    if is_ijb(name):  # templates, not pairs of images
        raise UserError(f"{name} is a template benchmark: run `facestra verify --benchmark {name} --data DIR` "
                        "(facestra.protocols.ijb.read_ijb reads it)")
    name = canonical_name(name)
    path = Path(path)
    spec = _spec(name)
    if path.is_file():
        if path.suffix.lower() == ".bin":
            return read_bin_benchmark(path, name)
        if path.suffix.lower() == ".csv":
            return read_pairs_csv(path, name)
        if spec is not None and spec.read_layout is not None and spec.reads_pair_file:
            return spec.read_layout(path, name)
        if spec is None and path.name == LFW_PAIRS_FILE:  # another set in LFW's layout (facestra synth's)
            return read_lfw(path, name)
        raise UserError(f"{path}: not a .bin or .csv file; for {name} give {_expected(spec)}")
    if path.is_dir():
        if spec is not None and spec.layout_marker is not None and (path / spec.layout_marker).is_file():
            return spec.read_layout(path, name)
        if spec is not None and (path / spec.bin_name).is_file():
            return read_bin_benchmark(path / spec.bin_name, name)
        if (path / PAIRS_CSV).is_file():
            return read_pairs_csv(path / PAIRS_CSV, name)
        if spec is None and (path / LFW_PAIRS_FILE).is_file():
            return read_lfw(path, name)
        hint = "" if spec is not None else f"; for a standard layout name the benchmark ({', '.join(standard_names())})"
        raise UserError(f"{path}: no benchmark found for {name} (expected {_expected(spec)}){hint}")
    raise UserError(f"{path}: no such file or folder")


def benchmark_markers() -> list[str]:
    """File names whose presence makes a folder a benchmark rather than a tree of images: the pair files
    and layout markers of every layout :func:`load_benchmark` reads (a ``.bin`` is one by its suffix)."""
    markers = [PAIRS_CSV, LFW_PAIRS_FILE] + [spec.layout_marker for spec in STANDARD if spec.layout_marker]
    return list(dict.fromkeys(markers))


def _expected(spec: BenchmarkSpec | None) -> str:
    options = ["a .bin", f"a folder with {PAIRS_CSV}"]
    if spec is not None and spec.layout_marker is not None:
        options.insert(1, f"a folder with {spec.layout_marker}")
    return ", ".join(options[:-1]) + " or " + options[-1]


def read_bin_benchmark(path: str | Path, name: str) -> Benchmark:
    """A ``.bin`` as a benchmark: image 2i and 2i+1 form pair i; ten contiguous folds."""
    images, issame = read_bin(path)
    return Benchmark(
        name=canonical_name(name),
        source=Path(path),
        images=tuple(images),
        pairs=np.arange(len(images), dtype=np.int64).reshape(-1, 2),
        issame=issame.astype(bool),
    )


def find_benchmarks(data_root: str | Path, names: list[str] | None = None) -> tuple[dict[str, Path], list[str]]:
    """Where each standard benchmark lives under ``data_root``: ``({name: path}, [names not found])``.

    Looks for ``lfw.bin``... in ``data_root`` and its immediate sub-folders, then for folders named like
    the benchmark (``lfw/``, ``cfp_fp/``...) holding its original layout or a ``pairs.csv``.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    wanted = standard_names() if names is None else [canonical_name(n) for n in names]
    found: dict[str, Path] = {}
    missing: list[str] = []
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    for name in wanted:
        spec = _spec(name)
        if spec is None:
            raise UserError(f"unknown benchmark {name!r} for `data_root`; choose from {', '.join(standard_names())} (or give `data`)")
        location = _locate(spec, root, folders)
        if location is None:
            missing.append(name)
        else:
            found[name] = location
    return found, missing


def _locate(spec: BenchmarkSpec, root: Path, folders: list[Path]) -> Path | None:
    for folder in folders:
        if (folder / spec.bin_name).is_file():
            return folder / spec.bin_name
    for folder_name in dict.fromkeys((spec.name, spec.name.replace("-", "_"), spec.name.replace("-", ""))):
        for folder in (root / folder_name, root / folder_name.upper()):
            if not folder.is_dir():
                continue
            if spec.layout_marker is not None and (folder / spec.layout_marker).is_file():
                return folder
            if (folder / PAIRS_CSV).is_file():
                return folder
    return None
