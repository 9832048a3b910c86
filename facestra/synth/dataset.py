"""``facestra synth``: a data set of synthetic people, laid out like LFW, with true landmarks and benchmarks.

No face data set can be downloaded here, yet training, alignment and verification all need faces with
identities. :func:`synthesize` writes::

    OUT/synth.json                      the settings (a rerun with the same ones resumes; others are refused)
    OUT/train/synth_00000/synth_00000_0001.jpg ...   identities for training
    OUT/test/synth_00040/synth_00040_0001.jpg ...    identities kept out of training
    OUT/test/pairs.txt                  LFW-style pairs over the test identities (10 folds, half same)
    OUT/test.bin                        the same pairs as aligned 112x112 crops, insightface ``.bin``
    OUT/landmarks.csv                   the five true points of every main face (``facestra align --landmarks``)

Everything is a pure function of ``seed``: an identity is drawn from ``(seed, identity)`` and a photo from
``(seed, identity, image)``, so any number of worker processes writes the same bytes. Images are written
atomically; a rerun skips those already there (recomputing their landmarks without drawing them).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facestra.errors import UserError
from facestra.fields import IMAGE_SIDES, documented
from facestra.io import write_bytes_atomic, write_text_atomic
from facestra.synth.lfw_layout import identity_name, image_name, make_pairs, pairs_text, write_pairs_bin

FORMAT = "facestra-synth/1"
MANIFEST = "synth.json"
LANDMARKS_FILE = "landmarks.csv"
PAIRS_FILE = "pairs.txt"
BIN_FILE = "test.bin"
TRAIN_DIR = "train"
TEST_DIR = "test"
BIN_SIZE = 112

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SynthSettings:
    """What determines the data set; two runs with equal settings write identical files."""

    identities: int = documented(help="People to create (train + test).", minimum=3, required=True)
    images_per_identity: int = documented(help="Photos of each person.", minimum=2, required=True)
    size: int = documented(250, "Image side in pixels.", minimum=64, maximum=IMAGE_SIDES[1])
    seed: int = documented(0, "Same seed, same files.")
    test_identities: int | None = documented(
        None, "People kept out of training for the pairs (default: a fifth, at least 2).", minimum=2
    )
    pairs_per_fold: int = documented(300, "Same (and as many different) pairs in each of the 10 folds, at most.", minimum=1)
    difficulty: float = documented(
        1.0, "Scale of pose, lighting, occlusion and image degradation (0: clean frontal photos).", minimum=0.0, maximum=3.0
    )

    def resolved_test_identities(self) -> int:
        """Identities held out for the benchmark: given, or a fifth of all (at least 2)."""
        if self.test_identities is not None:
            return self.test_identities
        return max(2, round(self.identities * 0.2))


@dataclass(frozen=True)
class SynthSummary:
    """Where everything went and how much of it this run wrote."""

    out: Path
    train_dir: Path
    test_dir: Path
    landmarks: Path
    pairs: Path
    bin: Path
    train_identities: int
    test_identities: int
    images: int
    written: int
    resumed: int
    pairs_per_fold: int
    raw_pixel_accuracy: float
    seconds: float

    def to_json(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


def identity_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 1, int(index)])


def photo_rng(seed: int, index: int, number: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 2, int(index), int(number)])


def render_identity_images(seed: int, index: int, count: int, size: int, difficulty: float):
    """Yield (number, jpeg bytes, landmarks 5x2) for the images of one identity, in order."""
    from facestra.synth.face import face_parts
    from facestra.synth.identity import sample_identity
    from facestra.synth.scene import encode_jpeg, render_photo, sample_photo

    identity = sample_identity(identity_rng(seed, index))
    parts = face_parts(identity)
    for number in range(1, count + 1):
        photo = sample_photo(photo_rng(seed, index, number), size, difficulty)
        image, landmarks = render_photo(identity, photo, parts)
        yield number, encode_jpeg(image, photo.jpeg_quality), landmarks


def _landmarks_only(seed: int, index: int, number: int, size: int, difficulty: float) -> np.ndarray:
    from facestra.synth.identity import sample_identity
    from facestra.synth.scene import photo_landmarks, sample_photo

    identity = sample_identity(identity_rng(seed, index))
    return photo_landmarks(identity, sample_photo(photo_rng(seed, index, number), size, difficulty))


@dataclass(frozen=True)
class _Job:
    out: Path
    split: str
    index: int
    settings: SynthSettings


def _write_identity(job: _Job) -> tuple[list[tuple[str, np.ndarray]], int, dict[int, bytes]]:
    """Render and write one identity's images (skipping those on disk).

    Returns the (path, landmarks) rows, how many images were written and, for a test identity, each image's
    aligned ``.bin`` crop by image number: made here from the very bytes written, so that worker processes
    share that work too.
    """
    s = job.settings
    folder = Path(job.split) / identity_name(job.index)
    paths = [job.out / folder / image_name(job.index, n) for n in range(1, s.images_per_identity + 1)]
    existing = [path.is_file() for path in paths]
    rows: list[tuple[str, np.ndarray]] = []
    crops: dict[int, bytes] = {}
    written = 0
    if all(existing):
        for number in range(1, s.images_per_identity + 1):
            rows.append(((folder / image_name(job.index, number)).as_posix(),
                         _landmarks_only(s.seed, job.index, number, s.size, s.difficulty)))
    else:
        for number, data, landmarks in render_identity_images(s.seed, job.index, s.images_per_identity, s.size,
                                                              s.difficulty):
            if not existing[number - 1]:
                write_bytes_atomic(paths[number - 1], data)
                written += 1
                if job.split == TEST_DIR:
                    crops[number] = _bin_crop(data, landmarks, paths[number - 1])
            rows.append(((folder / image_name(job.index, number)).as_posix(), landmarks))
    if job.split == TEST_DIR:
        for number, (_, landmarks) in enumerate(rows, start=1):
            if number not in crops:  # on disk from an earlier run
                crops[number] = _bin_crop(paths[number - 1].read_bytes(), landmarks, paths[number - 1])
    return rows, written, crops


def _bin_crop(jpeg: bytes, landmarks: np.ndarray, path: Path) -> bytes:
    """The 112x112 crop of one image, aligned with its true landmarks, as the JPEG a ``.bin`` holds."""
    import cv2

    from facestra.align.geometry import warp_face
    from facestra.data.images import decode_image

    aligned, _, _ = warp_face(decode_image(jpeg, str(path)), landmarks, BIN_SIZE)
    ok, buffer = cv2.imencode(".jpg", aligned, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise RuntimeError(f"{path}: JPEG encoding of the aligned crop failed")
    return buffer.tobytes()


def _init_worker() -> None:
    import cv2

    from facestra.allocator import reuse_freed_memory

    cv2.setNumThreads(1)  # one process per core already
    reuse_freed_memory()


def _check_settings(settings: SynthSettings) -> None:
    s = settings
    if s.images_per_identity < 2:
        raise UserError(f"`images_per_identity` {s.images_per_identity}: need at least 2 (same-person pairs)")
    if s.size < 64:
        raise UserError(f"`size` {s.size}: need at least 64 pixels")
    test = s.resolved_test_identities()
    if test < 2:
        raise UserError(f"`test_identities` {test}: need at least 2 (different-person pairs)")
    if s.identities - test < 1:
        raise UserError(f"`identities` {s.identities} with {test} held out for testing leaves none to train on")
    if s.pairs_per_fold < 1:
        raise UserError(f"`pairs_per_fold` {s.pairs_per_fold}: need at least 1")
    if not 0.0 <= s.difficulty <= 3.0:
        raise UserError(f"`difficulty` {s.difficulty}: expected 0 (clean) .. 3")


def _prepare_folder(out: Path, settings: SynthSettings) -> None:
    """Refuse folders holding anything but a synthetic set with these very settings; write the manifest."""
    manifest = out / MANIFEST
    wanted = {"format": FORMAT, "settings": asdict(settings)}
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text())
        except (OSError, ValueError):
            raise UserError(f"{manifest}: unreadable; remove the folder or choose another") from None
        if found.get("format") != FORMAT or found.get("settings") != wanted["settings"]:
            raise UserError(f"{out}: holds a synthetic set made with other settings ({manifest}); "
                            "choose another folder or rerun with the same settings to resume")
        return
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out}: folder is not empty and is not a facestra synth folder; refusing to write into it")
    write_text_atomic(manifest, json.dumps({**wanted, "complete": False}, indent=2) + "\n")


def synthesize(
    out: str | os.PathLike,
    settings: SynthSettings,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> SynthSummary:
    """Write the data set described in the module docstring into ``out``; resumable, parallel, deterministic.

    ``workers`` processes (default: all cores; 1 renders in this process). ``progress(done, total)`` is
    called as identities finish, counting images.
    """
    started = time.perf_counter()
    _check_settings(settings)
    out = Path(out).absolute()
    _prepare_folder(out, settings)
    test_count = settings.resolved_test_identities()
    train_count = settings.identities - test_count
    jobs = [_Job(out, TRAIN_DIR if index < train_count else TEST_DIR, index, settings)
            for index in range(settings.identities)]
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise UserError(f"workers {workers}: expected at least 1")
    total = settings.identities * settings.images_per_identity
    landmarks: dict[str, np.ndarray] = {}
    crops: dict[tuple[int, int], bytes] = {}
    written = 0
    done = 0
    for job, (rows, count, identity_crops) in zip(jobs, _run(jobs, workers)):
        written += count
        landmarks.update(rows)
        crops.update(((job.index, number), crop) for number, crop in identity_crops.items())
        done += len(rows)
        if progress:
            progress(done, total)

    landmarks_path = out / LANDMARKS_FILE
    write_text_atomic(landmarks_path, landmarks_csv(landmarks))
    test_indices = list(range(train_count, settings.identities))
    folds = make_pairs(test_indices, settings.images_per_identity, settings.pairs_per_fold, settings.seed)
    per_fold = len(folds[0][0])
    pairs_path = out / TEST_DIR / PAIRS_FILE
    write_text_atomic(pairs_path, pairs_text(folds))
    bin_path = out / BIN_FILE
    write_pairs_bin(bin_path, folds, crops)
    from facestra.synth.baseline import raw_pixel_verification

    raw = raw_pixel_verification(bin_path)  # the difficulty check: must stay well below a trained network
    summary = SynthSummary(
        out=out, train_dir=out / TRAIN_DIR, test_dir=out / TEST_DIR, landmarks=landmarks_path, pairs=pairs_path,
        bin=bin_path, train_identities=train_count, test_identities=test_count, images=total, written=written,
        resumed=total - written, pairs_per_fold=per_fold, raw_pixel_accuracy=raw.accuracy,
        seconds=time.perf_counter() - started,
    )
    manifest = {"format": FORMAT, "settings": asdict(settings), "complete": True, "pairs_per_fold": per_fold,
                "raw_pixel_accuracy": raw.accuracy}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return summary


def _run(jobs: list[_Job], workers: int):
    workers = min(workers, len(jobs))
    if workers <= 1:
        for job in jobs:
            yield _write_identity(job)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_write_identity, jobs)  # one identity a task: tens of ms, and no straggling chunk
        pool.close()
        pool.join()


def landmarks_csv(landmarks: dict[str, np.ndarray]) -> str:
    """``path,x1,y1,...,x5,y5`` with a header, paths relative to the data set folder, sorted."""
    header = "path," + ",".join(f"{axis}{i}" for i in range(1, 6) for axis in ("x", "y"))
    lines = [header]
    for path in sorted(landmarks):
        lines.append(path + "," + ",".join(f"{value:.3f}" for value in np.asarray(landmarks[path]).reshape(-1)))
    return "\n".join(lines) + "\n"
