"""Training datasets: folder tree, list file, insightface RecordIO written here byte by byte, and the sampler."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _train_shapes import SMALL
from click.testing import CliRunner

from facestra.cli.main import main
from facestra.data.datasets import EpochBatchSampler, open_dataset
from facestra.data.images import image_to_tensor
from facestra.errors import UserError

MAGIC = 0xCED7230A


def _image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


def _record_parts(payload: bytes, split_at: int | None = None) -> bytes:
    """MXNet framing: magic, (continuation << 29 | length), data, zero padding to 4 bytes."""
    parts = [payload] if split_at is None else [payload[:split_at], payload[split_at + 4 :]]
    flags = [0] if split_at is None else [1, 3]
    out = b""
    for flag, part in zip(flags, parts):
        out += struct.pack("<II", MAGIC, (flag << 29) | len(part)) + part + b"\0" * (-len(part) % 4)
    return out


def _write_rec(folder: Path, images: list[np.ndarray], labels: list[int], *, insightface_header: bool, split_key: int | None = None) -> Path:
    """A .rec/.idx pair as insightface packs it: record 0 = header (flag 2, label [first id key, end]),
    images at keys 1..N, then one record per identity."""
    rec, idx = b"", []
    key = 0
    identities = sorted(set(labels))
    if insightface_header:
        n = len(images)
        header = struct.pack("<IfQQ", 2, 0.0, 0, 0) + np.array([n + 1, n + 1 + len(identities)], dtype="<f4").tobytes()
        idx.append((0, len(rec)))
        rec += _record_parts(header)
        key = 1
    for image, label in zip(images, labels):
        # MXNet splits a payload where the magic number occurs (4-byte aligned) and drops that word; here
        # the id2 field of one record holds the magic number, at byte 16.
        payload = struct.pack("<IfQQ", 0, float(label), key, MAGIC if key == split_key else 0) + _png(image)
        split = 16 if key == split_key else None
        idx.append((key, len(rec)))
        rec += _record_parts(payload, split)
        key += 1
    if insightface_header:
        for identity in identities:
            members = [i + 1 for i, label in enumerate(labels) if label == identity]
            header = struct.pack("<IfQQ", 2, 0.0, 0, 0) + np.array([members[0], members[-1] + 1], dtype="<f4").tobytes()
            idx.append((key, len(rec)))
            rec += _record_parts(header)
            key += 1
    (folder / "train.rec").write_bytes(rec)
    (folder / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in idx))
    return folder / "train.rec"


@pytest.mark.parametrize("insightface_header", [True, False])
def test_recordio_reader_on_a_file_written_here(tmp_path, insightface_header):
    images = [_image(i) for i in range(7)]
    labels = [5, 5, 9, 9, 9, 12, 12]
    rec = _write_rec(tmp_path, images, labels, insightface_header=insightface_header, split_key=3)
    dataset = open_dataset(tmp_path, input_size=(16, 16))  # a folder holding train.rec
    assert len(dataset) == 7
    assert dataset.identities == ["5", "9", "12"]
    assert dataset.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    for index, image in enumerate(images):
        tensor, label, returned_index, ok = dataset[(index, False)]
        assert ok and returned_index == index and label == dataset.labels[index]
        torch.testing.assert_close(tensor, image_to_tensor(image), rtol=0, atol=0)
    assert open_dataset(rec, input_size=(16, 16)).labels.tolist() == dataset.labels.tolist()


def test_recordio_labels_come_from_the_identity_table_when_there_is_one(tmp_path, monkeypatch):
    import facestra.data.datasets

    images = [_image(i) for i in range(9)]
    labels = [3, 3, 3, 3, 7, 7, 7, 8, 8]
    rec = _write_rec(tmp_path, images, labels, insightface_header=True)
    reads: list[int] = []
    real_header_at = facestra.data.datasets._header_at
    monkeypatch.setattr(facestra.data.datasets, "_header_at", lambda fd, offset: reads.append(offset) or real_header_at(fd, offset))
    dataset = open_dataset(rec, input_size=(16, 16))
    assert dataset.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2] and dataset.identities == ["3", "7", "8"]
    assert len(reads) == 1 + 2 * 3  # the header, then each identity record and its first image; not all 9 images
    # a table that does not cover the images is not trusted: every image header is read instead
    (tmp_path / "train.idx").write_text(
        "\n".join(line for line in (tmp_path / "train.idx").read_text().splitlines() if not line.startswith("11\t")) + "\n"
    )
    reads.clear()
    assert open_dataset(rec, input_size=(16, 16)).labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert len(reads) > 9


def test_recordio_without_index_is_a_one_line_error(tmp_path):
    rec = _write_rec(tmp_path, [_image(0), _image(1)], [0, 1], insightface_header=True)
    rec.with_suffix(".idx").unlink()
    with pytest.raises(UserError, match=r"train\.idx is missing"):
        open_dataset(rec)
    result = CliRunner().invoke(main, ["train", "--data", str(rec), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {rec}: its index train.idx is missing (a .rec needs the .idx written with it)"]
    assert not (tmp_path / "run").exists()


def test_recordio_garbage_is_a_user_error(tmp_path):
    (tmp_path / "train.rec").write_bytes(b"not a record file at all")
    (tmp_path / "train.idx").write_text("0\t0\n")
    with pytest.raises(UserError, match="not a RecordIO file"):
        open_dataset(tmp_path / "train.rec")


def _folder(root: Path, counts: dict[str, int]) -> dict[str, list[np.ndarray]]:
    drawn = {}
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        drawn[name] = [_image(hash((name, i)) % 10_000) for i in range(count)]
        for i, image in enumerate(drawn[name]):
            cv2.imwrite(str(root / name / f"{i}.png"), image)
    return drawn


def test_image_folder_maps_identities_and_flips(tmp_path):
    drawn = _folder(tmp_path, {"bob": 2, "alice": 3})
    dataset = open_dataset(tmp_path, input_size=(16, 16))
    assert dataset.identities == ["alice", "bob"]
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1]
    tensor, _, _, _ = dataset[(3, False)]
    torch.testing.assert_close(tensor, image_to_tensor(cv2.imread(str(tmp_path / "bob" / "0.png"))), rtol=0, atol=0)
    flipped, _, _, _ = dataset[(3, True)]
    torch.testing.assert_close(flipped, image_to_tensor(np.ascontiguousarray(drawn["bob"][0][:, ::-1])), rtol=0, atol=0)
    # pixels are normalised as (x - 127.5) / 128 in RGB order
    assert flipped[0, 0, -1].item() == pytest.approx((drawn["bob"][0][0, 0, 2] - 127.5) / 128)


def test_images_of_another_size_are_resized_and_centre_cropped(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "0.png"), np.full((40, 20, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "b" / "0.png"), np.full((8, 8, 3), 10, np.uint8))
    dataset = open_dataset(tmp_path, input_size=(16, 16))
    assert dataset[(0, False)][0].shape == (3, 16, 16)
    assert dataset[(1, False)][0].shape == (3, 16, 16)


def test_list_file(tmp_path):
    _folder(tmp_path / "img", {"x": 2, "y": 1})
    (tmp_path / "train.csv").write_text("path,label\nimg/x/0.png,10\nimg/x/1.png,2\nimg/y/0.png,10\n")
    dataset = open_dataset(tmp_path / "train.csv", input_size=(16, 16))
    assert dataset.identities == ["2", "10"]
    assert dataset.labels.tolist() == [1, 0, 1]
    assert dataset.describe(2) == str(tmp_path / "img" / "y" / "0.png")
    (tmp_path / "bad.csv").write_text("img/x/0.png,1\njust-a-path\n")
    with pytest.raises(UserError, match=r"bad\.csv:2: expected 'path,label'"):
        open_dataset(tmp_path / "bad.csv")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), "no identity folders"),
        (lambda root: (root / "a").mkdir(parents=True), "identity folder with no images"),
        (lambda root: None, "no such file or folder"),
    ],
)
def test_bad_datasets_are_one_line_errors_with_exit_2(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    result = CliRunner().invoke(main, ["train", "--data", str(root), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_single_identity_is_rejected(tmp_path):
    _folder(tmp_path, {"only": 3})
    with pytest.raises(UserError, match="at least 2"):
        open_dataset(tmp_path)


def test_corrupt_image_comes_back_flagged(tmp_path):
    _folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "b" / "1.png").write_bytes(b"\x89PNG truncated")
    dataset = open_dataset(tmp_path, input_size=(16, 16))
    tensor, label, index, ok = dataset[(3, False)]
    assert not ok and label == 1 and index == 3 and float(tensor.abs().sum()) == 0.0
    assert dataset[(2, False)][3]


def test_sampler_splits_global_batches_over_ranks_and_resumes():
    single = list(EpochBatchSampler(50, global_batch=8, seed=3, epoch=2))
    assert len(single) == 6 and all(len(b) == 8 for b in single)
    assert len({i for b in single for i, _ in b}) == 48
    ranks = [list(EpochBatchSampler(50, global_batch=8, seed=3, epoch=2, rank=r, world_size=2, micro_batches=2)) for r in range(2)]
    for step in range(6):
        rebuilt = ranks[0][2 * step] + ranks[0][2 * step + 1] + ranks[1][2 * step] + ranks[1][2 * step + 1]
        assert rebuilt == single[step]
    assert list(EpochBatchSampler(50, global_batch=8, seed=3, epoch=2, start_step=4)) == single[4:]
    other_epoch = list(EpochBatchSampler(50, global_batch=8, seed=3, epoch=3))
    assert other_epoch != single
    flips = [f for b in single for _, f in b]
    assert 0.3 < np.mean(flips) < 0.7
    assert not any(f for b in EpochBatchSampler(50, global_batch=8, seed=3, epoch=2, flip=False) for _, f in b)


def test_training_reads_a_recordio_file(tmp_path):
    from facestra import models
    from facestra.train import TrainConfig, train

    images = [_image(i, 32) for i in range(16)]
    rec = _write_rec(tmp_path, images, [i % 4 for i in range(16)], insightface_header=True)
    result = train(TrainConfig(**{**SMALL, "embedding_size": 16}, data=str(rec), out=str(tmp_path / "run"), batch_size=8, epochs=1))
    assert (result.num_images, result.num_identities, result.global_step) == (16, 4, 2)
    assert models.load(result.model_path).embedding_size == 16
