"""What every benchmark reader returns: the images, which two of them form each pair, labels and folds.

Images are kept once each (LFW's 6,000 pairs use 7,701 distinct files), so a model embeds every image
only once; ``pairs`` indexes into ``images``. An image is either a file path or the encoded bytes taken
from a ``.bin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from facestra.errors import UserError
from facestra.io import IMAGE_EXTENSIONS, read_text, text_lines

ImageSource = Path | bytes

# Display names as the paper's Table 5 prints them.
TITLES = MappingProxyType({"lfw": "LFW", "cfp-fp": "CFP-FP", "cplfw": "CPLFW", "calfw": "CALFW", "agedb-30": "AgeDB-30"})


@dataclass(frozen=True, eq=False)
class Benchmark:
    """Pairs of images with same/different labels and, where the benchmark defines them, its folds.

    ``folds`` is one fold id per pair, or ``None`` for the protocol's default of 10 contiguous folds in
    pair order.
    """

    name: str
    source: Path
    images: tuple[ImageSource, ...]
    pairs: np.ndarray  # (num_pairs, 2) indices into images
    issame: np.ndarray  # (num_pairs,) bool
    folds: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pairs.ndim != 2 or self.pairs.shape[1] != 2 or len(self.pairs) != len(self.issame):
            raise ValueError(f"{self.source}: pairs must be N x 2 with one label each")
        if self.folds is not None and len(self.folds) != len(self.issame):
            raise ValueError(f"{self.source}: need one fold id per pair")
        if len(self.issame) and (self.pairs.min() < 0 or self.pairs.max() >= len(self.images)):
            raise ValueError(f"{self.source}: a pair refers to an image that is not in the list")

    @property
    def title(self) -> str:
        """The name as papers print it (``AgeDB-30``), or the name itself for other benchmarks."""
        return TITLES.get(self.name, self.name)

    @property
    def num_pairs(self) -> int:
        return int(len(self.issame))

    def fold_spec(self) -> int | np.ndarray:
        """What :func:`facestra.verify.pairs.evaluate` takes as ``folds`` for this benchmark."""
        return 10 if self.folds is None else self.folds

    def fold_ids(self) -> np.ndarray:
        """One fold id per pair: the benchmark's own, or those of 10 contiguous folds (``KFold(10)``)."""
        from facestra.verify.pairs import kfold_ids

        return self.folds.copy() if self.folds is not None else kfold_ids(self.num_pairs, 10)

    def image_name(self, index: int) -> str:
        """How to name image ``index`` in a message: its path, or its position in the ``.bin``."""
        image = self.images[index]
        return str(image) if isinstance(image, Path) else f"{self.source} (image {index})"

    def image_bytes(self, index: int) -> bytes:
        """The encoded image, read from disk when it is a path."""
        image = self.images[index]
        if isinstance(image, bytes):
            return image
        try:
            return image.read_bytes()
        except OSError as error:
            raise UserError(f"{image}: cannot read ({error.strerror or error})") from None


def from_path_pairs(name: str, source: Path, path_pairs: list[tuple[Path, Path]], issame: list[bool], folds: list[int] | None = None) -> Benchmark:
    """A benchmark from pairs of file paths, each distinct file listed once."""
    index: dict[Path, int] = {}
    pairs = np.empty((len(path_pairs), 2), dtype=np.int64)
    for row, pair in enumerate(path_pairs):
        for side, path in enumerate(pair):
            pairs[row, side] = index.setdefault(path, len(index))
    return Benchmark(
        name=name,
        source=source,
        images=tuple(index),
        pairs=pairs,
        issame=np.asarray(issame, dtype=bool),
        folds=None if folds is None else np.asarray(folds, dtype=np.int64),
    )


def resolve_image(path: Path, origin: str) -> Path:
    """``path`` itself, or the same name with another image extension (aligned trees are often re-encoded).

    ``origin`` says where the name came from (file and line) for the error message.
    """
    if path.is_file():
        return path
    for extension in IMAGE_EXTENSIONS:
        for candidate in (path.with_suffix(extension), path.with_suffix(extension.upper())):
            if candidate.is_file():
                return candidate
    raise UserError(f"{origin}: image {path} not found (nor with another image extension)")


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a text file, stripped; a missing or binary file is a :class:`UserError`."""
    try:
        text = read_text(path)  # the one way facestra reads text: BOM and CRLF like a plain file
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read as text ({error.strerror or error})") from None
    return [line.strip() for line in text_lines(text) if line.strip()]
