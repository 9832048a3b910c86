"""Training data: aligned face images with identity labels, from a folder tree, a list file or RecordIO.

Three layouts are read, all into the same :class:`FaceDataset` interface:

* an ImageFolder tree, one sub-folder per identity (``root/<identity>/<image>``);
* a list file of ``path,label`` lines (paths relative to the list file's folder);
* the insightface RecordIO pair ``train.rec`` + ``train.idx`` in which MS1M, Glint360K, WebFace and
  friends are shipped, read directly (no MXNet): each record is ``magic 0xced7230a, length, payload``
  padded to 4 bytes, the payload a header ``flag, label, id, id2`` (plus ``flag`` extra float labels) and
  the encoded image.

``synthetic`` (or ``synthetic:IDENTITIES[:IMAGES]``) is no file at all: one random image, as arcface_torch's
SyntheticDataset, handed out under every index, to time the training step without the disk.

Identity names are mapped once to contiguous class indices (sorted names), and that mapping is saved with
the run. An image that cannot be decoded does not stop training: its item comes back with ``ok=False`` and
the loop leaves it out of the loss, counts it and lists it (or fails, with ``strict``).

Items are requested as ``(index, flip)`` pairs chosen by :class:`EpochBatchSampler`, so which images form
each batch and which are mirrored depends only on the seed and the epoch, never on the number of processes
or data-loader workers; that is what makes resumed and distributed runs reproduce a single run exactly.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from facestra.data.images import FACESTRA_INPUT, InputConvention, load_pixels, normalize
from facestra.errors import UserError
from facestra.io import IMAGE_EXTENSIONS, check_readable, list_images, read_lines

RECORDIO_MAGIC = 0xCED7230A
_RECORD_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2 (insightface / MXNet IRHeader)
_LENGTH_BITS = 29


@dataclass(frozen=True)
class RecordHeader:
    """The header in front of every image record; ``labels`` holds the extra labels when ``flag > 0``."""

    flag: int
    label: float
    id: int
    id2: int
    labels: tuple[float, ...] = ()

    @property
    def class_label(self) -> float:
        return self.labels[0] if self.flag > 0 and self.labels else self.label


class FaceDataset(Dataset):
    """Images with integer class labels. ``self[(index, flip)]`` -> (tensor, label, index, ok), the tensor
    normalised with :attr:`convention` (facestra's, or that of the weights a run fine-tunes)."""

    def __init__(self, labels: Sequence[int], identities: Sequence[str], input_size: tuple[int, int], source: str) -> None:
        self.convention: InputConvention = FACESTRA_INPUT
        self.labels = np.asarray(labels, dtype=np.int64)
        self.identities = list(identities)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.source = source
        if len(self.labels) == 0:
            raise UserError(f"{source}: the dataset holds no images")
        if len(self.identities) < 2:
            raise UserError(f"{source}: found {len(self.identities)} identity; training needs at least 2")

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, index: int) -> str:
        """Where image ``index`` comes from, for messages and the list of skipped images."""
        raise NotImplementedError

    def read_bytes(self, index: int) -> bytes:
        """The encoded image ``index``; a :class:`UserError` when it cannot be read."""
        raise NotImplementedError

    def __getitem__(self, item: tuple[int, bool]) -> tuple[torch.Tensor, int, int, bool]:
        index, flip = int(item[0]), bool(item[1])
        try:
            pixels = load_pixels(self.read_bytes(index), self.describe(index), self.input_size, fit=True, flip=flip)
        except UserError:
            return torch.zeros(3, *self.input_size), int(self.labels[index]), index, False
        return normalize(torch.from_numpy(pixels), self.convention).contiguous(), int(self.labels[index]), index, True


SYNTHETIC = "synthetic"
#: arcface_torch's SyntheticDataset reports a million images; identities: a classifier of this many rows.
SYNTHETIC_IMAGES, SYNTHETIC_IDENTITIES = 1_000_000, 1000


class SyntheticDataset(FaceDataset):
    """One random RGB image (seeded) under every index, labels cycling over the identities: the loader's
    work without decoding (what arcface_torch's SyntheticDataset measures)."""

    def __init__(self, num_identities: int, num_images: int, input_size: tuple[int, int], source: str) -> None:
        labels = np.arange(num_images, dtype=np.int64) % num_identities
        super().__init__(labels, [str(i) for i in range(num_identities)], input_size, source)
        self.pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (*self.input_size, 3), dtype=np.uint8))

    def describe(self, index: int) -> str:
        return f"{self.source}#{index}"

    def __getitem__(self, item: tuple[int, bool]) -> tuple[torch.Tensor, int, int, bool]:
        index, flip = int(item[0]), bool(item[1])
        pixels = self.pixels.flip(1) if flip else self.pixels
        return normalize(pixels, self.convention).contiguous(), int(self.labels[index]), index, True


def is_synthetic(data: str | os.PathLike) -> bool:
    """Whether ``--data`` names the synthetic dataset rather than a path (a folder called so: ./synthetic)."""
    return str(data).split(":")[0] == SYNTHETIC


def data_source(data: str | os.PathLike) -> str:
    """``--data`` as a run records it: a path made absolute, the synthetic dataset as it was named."""
    return str(data) if is_synthetic(data) else str(Path(data).resolve())


def open_synthetic(spec: str, input_size: tuple[int, int]) -> SyntheticDataset:
    """``synthetic[:IDENTITIES[:IMAGES]]``: defaults :data:`SYNTHETIC_IDENTITIES` and :data:`SYNTHETIC_IMAGES`."""
    fields = spec.split(":")[1:]
    try:
        numbers = [int(field) for field in fields]
    except ValueError:
        numbers = []
    if len(fields) > 2 or len(numbers) != len(fields) or any(n < 2 for n in numbers):
        raise UserError(f"`data` {spec}: the synthetic dataset is 'synthetic', 'synthetic:IDENTITIES' or "
                        "'synthetic:IDENTITIES:IMAGES' with at least 2 of each")
    identities, images = (numbers + [SYNTHETIC_IDENTITIES, SYNTHETIC_IMAGES][len(numbers):])[:2]
    return SyntheticDataset(identities, max(images, identities), input_size, spec)


class FileDataset(FaceDataset):
    """Images stored as files (ImageFolder tree or list file)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], identities: Sequence[str], input_size: tuple[int, int], source: str) -> None:
        self.paths = [str(p) for p in paths]
        super().__init__(labels, identities, input_size, source)

    def describe(self, index: int) -> str:
        return self.paths[index]

    def read_bytes(self, index: int) -> bytes:
        try:
            return Path(self.paths[index]).read_bytes()
        except OSError as error:
            raise UserError(f"{self.paths[index]}: cannot read ({error.strerror or error})") from None


class RecordIODataset(FaceDataset):
    """Images inside an insightface ``.rec`` file, located through its ``.idx`` offsets."""

    def __init__(
        self,
        rec_path: Path,
        offsets: Sequence[int],
        keys: Sequence[int],
        labels: Sequence[int],
        identities: Sequence[str],
        input_size: tuple[int, int],
    ) -> None:
        self.rec_path = str(rec_path)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.keys = np.asarray(keys, dtype=np.int64)
        self._fd: int | None = None
        self._fd_pid: int | None = None
        super().__init__(labels, identities, input_size, str(rec_path))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"] = state["_fd_pid"] = None  # a worker process opens its own descriptor
        return state

    def _descriptor(self) -> int:
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self.rec_path, os.O_RDONLY)
            self._fd_pid = os.getpid()
        return self._fd

    def describe(self, index: int) -> str:
        return f"{self.rec_path}#{int(self.keys[index])}"

    def read_bytes(self, index: int) -> bytes:
        try:
            record = read_record(self._descriptor(), int(self.offsets[index]))
            return unpack_record(record)[1]
        except (OSError, ValueError) as error:
            raise UserError(f"{self.describe(index)}: unreadable record ({error})") from None

    def __del__(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)


# --------------------------------------------------------------------------------------------- RecordIO


def read_record(fd: int, offset: int) -> bytes:
    """The payload of the record at ``offset``, joining multi-part records (continuation flags 1, 2, 3).

    MXNet splits a payload wherever the magic number occurs in it and drops that occurrence, so the parts
    are joined with the magic number's bytes.
    """
    parts: list[bytes] = []
    while True:
        head = os.pread(fd, 8, offset)
        if len(head) < 8:
            raise ValueError(f"truncated record header at byte {offset}")
        magic, length_and_flag = struct.unpack("<II", head)
        if magic != RECORDIO_MAGIC:
            raise ValueError(f"bad magic 0x{magic:08x} at byte {offset}")
        continuation, length = length_and_flag >> _LENGTH_BITS, length_and_flag & ((1 << _LENGTH_BITS) - 1)
        data = os.pread(fd, length, offset + 8)
        if len(data) < length:
            raise ValueError(f"truncated record at byte {offset}")
        parts.append(data)
        offset += 8 + length + (-length % 4)
        if continuation in (0, 3):
            return struct.pack("<I", RECORDIO_MAGIC).join(parts)


def unpack_record(record: bytes) -> tuple[RecordHeader, bytes]:
    """Split a record payload into its header and the encoded image."""
    if len(record) < _RECORD_HEADER.size:
        raise ValueError("record shorter than its header")
    flag, label, ident, ident2 = _RECORD_HEADER.unpack_from(record)
    body = record[_RECORD_HEADER.size :]
    labels: tuple[float, ...] = ()
    if flag > 0:
        if len(body) < 4 * flag:
            raise ValueError("record shorter than its label array")
        labels = tuple(float(v) for v in np.frombuffer(body[: 4 * flag], dtype="<f4"))
        body = body[4 * flag :]
    return RecordHeader(flag, label, ident, ident2, labels), body


def read_index(idx_path: Path) -> dict[int, int]:
    """``key -> byte offset`` from an MXNet ``.idx`` file (``key<TAB>offset`` per line)."""
    offsets: dict[int, int] = {}
    try:
        lines = read_lines(idx_path)
    except OSError as error:
        raise UserError(f"{idx_path}: cannot read the RecordIO index ({error})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            offsets[int(fields[0])] = int(fields[1])
        except (ValueError, IndexError):
            raise UserError(f"{idx_path}:{number}: not a 'key<TAB>offset' line") from None
    if not offsets:
        raise UserError(f"{idx_path}: the RecordIO index is empty")
    return offsets


def _header_at(fd: int, offset: int) -> RecordHeader:
    """Header of the record at ``offset`` without reading its image (a small read)."""
    head = os.pread(fd, 8 + _RECORD_HEADER.size, offset)
    if len(head) < 8 + _RECORD_HEADER.size:
        raise ValueError(f"truncated record at byte {offset}")
    magic = struct.unpack_from("<I", head)[0]
    if magic != RECORDIO_MAGIC:
        raise ValueError(f"bad magic 0x{magic:08x} at byte {offset}")
    flag = _RECORD_HEADER.unpack_from(head, 8)[0]
    if flag > 0:
        head = os.pread(fd, 8 + _RECORD_HEADER.size + 4 * flag, offset)
    return unpack_record(head[8:])[0]


def open_recordio(rec_path: Path, input_size: tuple[int, int]) -> RecordIODataset:
    """Index a ``.rec`` through its ``.idx``; the insightface header record (key 0, ``flag > 0``) is honoured.

    In insightface's packing record 0 says that images are keys ``1 .. label[0]-1`` and identities keys
    ``label[0] .. label[1]-1``, each identity record holding the range of its images. With that table the
    labels come from one small read per identity (instead of one per image: minutes for MS1M on a cold
    disk); without it, or when it does not cover the images, every image header is read.
    """
    idx_path = rec_path.with_suffix(".idx")
    if not rec_path.is_file():
        raise UserError(f"{rec_path}: no such RecordIO file")
    if not idx_path.is_file():
        raise UserError(f"{rec_path}: its index {idx_path.name} is missing (a .rec needs the .idx written with it)")
    offsets = read_index(idx_path)
    fd = os.open(rec_path, os.O_RDONLY)
    try:
        keys = sorted(offsets)
        first = _header_at(fd, offsets[keys[0]])
        raw_labels = None
        if keys[0] == 0 and first.flag > 0 and first.labels:
            end = int(first.labels[0])
            keys = [k for k in keys if 1 <= k < end]
            if len(first.labels) >= 2:
                raw_labels = _labels_from_identity_records(fd, offsets, keys, range(end, int(first.labels[1])))
        if raw_labels is None:
            raw_labels = [round(_header_at(fd, offsets[k]).class_label) for k in keys]
    except ValueError as error:
        raise UserError(f"{rec_path}: not a RecordIO file ({error})") from None
    finally:
        os.close(fd)
    classes = sorted(set(raw_labels))
    class_index = {c: i for i, c in enumerate(classes)}
    return RecordIODataset(
        rec_path,
        [offsets[k] for k in keys],
        keys,
        [class_index[c] for c in raw_labels],
        [str(c) for c in classes],
        input_size,
    )


def _labels_from_identity_records(fd: int, offsets: dict[int, int], image_keys: list[int], identity_keys: range) -> list[int] | None:
    """Each image's class label from the identity table (label of each identity's first image), or
    ``None`` when the table is missing or does not cover every image exactly once."""
    label_of_key: dict[int, int] = {}
    for identity_key in identity_keys:
        if identity_key not in offsets:
            return None
        header = _header_at(fd, offsets[identity_key])
        if len(header.labels) < 2:
            return None
        start, stop = int(header.labels[0]), int(header.labels[1])
        if start >= stop or start not in offsets:
            return None
        label = round(_header_at(fd, offsets[start]).class_label)
        for key in range(start, stop):
            if key in label_of_key:
                return None
            label_of_key[key] = label
    if not label_of_key or any(k not in label_of_key for k in image_keys):
        return None
    return [label_of_key[k] for k in image_keys]


# ------------------------------------------------------------------------------------ folders and lists


def open_image_folder(root: Path, input_size: tuple[int, int]) -> FileDataset:
    """One identity per sub-folder of ``root``; an identity folder without images is an error."""
    identities = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not identities:
        raise UserError(f"{root}: no identity folders (expected one sub-folder of images per identity)")
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(identities):
        images = list_images(folder)
        if not images:
            raise UserError(f"{folder}: identity folder with no images")
        paths += images
        labels += [label] * len(images)
    return FileDataset(paths, labels, [p.name for p in identities], input_size, str(root))


def open_list_file(list_path: Path, input_size: tuple[int, int]) -> FileDataset:
    """``path,label`` lines (a ``path,label`` header line is allowed); paths relative to the file's folder."""
    try:
        lines = read_lines(list_path)  # BOM and CRLF read like a plain file
    except OSError as error:
        raise UserError(f"{list_path}: cannot read the list file ({error})") from None
    entries: list[tuple[Path, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path_text, _, label = line.rpartition(",")
        if number == 1 and (path_text.strip().lower(), label.strip().lower()) == ("path", "label"):
            continue
        if not path_text.strip() or not label.strip():
            raise UserError(f"{list_path}:{number}: expected 'path,label', got {line!r}")
        path = Path(path_text.strip())
        entries.append((path if path.is_absolute() else list_path.parent / path, label.strip()))
    if not entries:
        raise UserError(f"{list_path}: the list file names no images")
    names = sorted({label for _, label in entries}, key=_natural_key)
    index = {name: i for i, name in enumerate(names)}
    return FileDataset([p for p, _ in entries], [index[label] for _, label in entries], names, input_size, str(list_path))


def _natural_key(name: str) -> tuple:
    """Numeric labels sort as numbers (2 before 10), other names alphabetically."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def open_dataset(path: str | os.PathLike, input_size: tuple[int, int] = (112, 112)) -> FaceDataset:
    """The dataset at ``path``: a ``.rec`` (or a folder holding ``train.rec``), a list file, a folder tree, or
    the in-memory ``synthetic`` one."""
    if is_synthetic(path):
        return open_synthetic(str(path), input_size)
    path = Path(path)
    check_readable(path)
    if path.is_dir():
        if (path / "train.rec").exists():
            return open_recordio(path / "train.rec", input_size)
        return open_image_folder(path, input_size)
    if path.suffix.lower() == ".rec":
        return open_recordio(path, input_size)
    if path.suffix.lower() == ".idx":
        return open_recordio(path.with_suffix(".rec"), input_size)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise UserError(f"{path}: a single image is not a dataset (give a folder tree, a list file or a .rec)")
    return open_list_file(path, input_size)


# ---------------------------------------------------------------------------------------------- sampler


def epoch_order(num_samples: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The permutation and the horizontal-flip decisions of one epoch: a pure function of seed and epoch."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_samples, generator=generator)
    flips = torch.rand(num_samples, generator=generator) < 0.5
    return order, flips


class EpochBatchSampler(Sampler[list[tuple[int, bool]]]):
    """This process's share of each global batch of one epoch, from optimizer step ``start_step`` on.

    Global batch ``s`` is positions ``s·B .. (s+1)·B`` of the epoch's permutation; rank ``r`` of ``W`` takes
    the ``r``-th of ``W`` equal slices and splits it into ``micro_batches`` pieces (gradient accumulation).
    The incomplete last batch is dropped, so every step sees exactly ``B`` images.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        micro_batches: int = 1,
        start_step: int = 0,
        flip: bool = True,
    ) -> None:
        if global_batch % (world_size * micro_batches):
            raise ValueError("the global batch must divide evenly over processes and micro-batches")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size = rank, world_size
        self.micro_batches = micro_batches
        self.start_step = start_step
        self.flip = flip

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step) * self.micro_batches

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        order, flips = epoch_order(self.num_samples, self.seed, self.epoch)
        if not self.flip:
            flips = torch.zeros_like(flips)
        per_rank = self.global_batch // self.world_size
        per_micro = per_rank // self.micro_batches
        for step in range(self.start_step, self.steps_per_epoch):
            first = step * self.global_batch + self.rank * per_rank
            for micro in range(self.micro_batches):
                positions = range(first + micro * per_micro, first + (micro + 1) * per_micro)
                yield [(int(order[p]), bool(flips[p])) for p in positions]
