"""The one image pipeline: training, validation (--val), verify --resize and embed --resize give the network
the same pixels for the same file, and that is the paper's shorter-edge resize + centre crop, not a stretch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _bad_images import oversized_png
from torch import nn

from facestra.data.datasets import open_dataset
from facestra.data.images import ImageSizeError, decode_image, image_to_tensor, load_pixels
from facestra.embed.inference import InferenceOptions, embed_images
from facestra.errors import UserError
from facestra.protocols import load_benchmark, write_bin
from facestra.train.validation import Validator
from facestra.verify.benchmarks import verify_model

INPUT = (112, 112)
# (height, width): wider, taller, larger on both sides, smaller on both sides, already the input size
SIZES = [(112, 140), (130, 112), (150, 160), (90, 100), (112, 112)]


class InputRecorder(nn.Module):
    """Stands in for a network: keeps every batch it is given, returns a few pixels as the 'embedding'."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = INPUT
        self.embedding_size = 4
        self.arch = "recorder"
        self.anchor = nn.Parameter(torch.zeros(1))  # something for the device lookup
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.detach().clone())
        return images.flatten(1)[:, :4] + 1.0 + self.anchor


def _photo(seed: int, size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    cv2.circle(image, (size[1] // 3, size[0] // 2), 9, (255, 40, 0), -1)  # an asymmetric feature to see flips
    return image


@pytest.fixture()
def photos(tmp_path: Path) -> list[Path]:
    """One identity folder per size (a training tree), the images PNG so that decoding is exact."""
    paths = []
    for index, size in enumerate(SIZES):
        folder = tmp_path / "train" / f"person{index}"
        folder.mkdir(parents=True)
        path = folder / "0.png"
        cv2.imwrite(str(path), _photo(index, size))
        paths.append(path)
    return paths


def _training_tensors(root: Path, flip: bool) -> list[torch.Tensor]:
    dataset = open_dataset(root, INPUT)
    tensors = []
    for index in range(len(dataset)):
        tensor, _, _, ok = dataset[(index, flip)]
        assert ok
        tensors.append(tensor)
    return tensors


def _assert_same_inputs(batches: list[torch.Tensor], expected: list[torch.Tensor], mirrored: list[torch.Tensor]) -> None:
    """The recorder saw, per batch, the images then their mirrors (the protocol's flip concat)."""
    seen = torch.cat(batches)
    count = len(expected)
    assert seen.shape == (2 * count, 3, *INPUT)
    assert torch.equal(seen[:count], torch.stack(expected))
    assert torch.equal(seen[count:], torch.stack(mirrored))


def test_training_crops_the_centre_after_the_shorter_edge_resize(photos: list[Path]) -> None:
    tensors = _training_tensors(photos[0].parents[1], flip=False)
    wide = cv2.imread(str(photos[0]))  # 112 x 140: no resize needed, 14 columns cut on each side
    assert torch.equal(tensors[0], image_to_tensor(wide[:, 14:126]))
    stretched = cv2.resize(wide, (112, 112), interpolation=cv2.INTER_AREA)
    assert not torch.equal(tensors[0], image_to_tensor(stretched))
    tall = cv2.imread(str(photos[1]))  # 130 x 112: 9 rows cut at the top, 9 at the bottom
    assert torch.equal(tensors[1], image_to_tensor(tall[9:121]))
    assert torch.equal(tensors[4], image_to_tensor(cv2.imread(str(photos[4]))))


def test_embed_and_verify_with_resize_see_the_training_pixels(photos: list[Path]) -> None:
    plain = _training_tensors(photos[0].parents[1], flip=False)
    mirrored = _training_tensors(photos[0].parents[1], flip=True)
    model = InputRecorder()
    embed_images(model, photos, InferenceOptions(batch_size=len(photos), workers=0, resize=True))
    _assert_same_inputs(model.seen, plain, mirrored)


def test_validation_sees_the_training_pixels(photos: list[Path], tmp_path: Path) -> None:
    encoded = [path.read_bytes() for path in photos]
    pairs = [(i % len(photos), (i + 1 + i // len(photos)) % len(photos)) for i in range(20)]
    bin_path = tmp_path / "lfw.bin"
    write_bin(bin_path, [encoded[j] for pair in pairs for j in pair], [i % 2 == 0 for i in range(20)])
    model = InputRecorder()
    Validator([str(bin_path)], batch_size=1000).evaluate(model)
    benchmark = load_benchmark("lfw", bin_path)
    source_of = [encoded.index(bytes(image)) for image in benchmark.images]
    plain = _training_tensors(photos[0].parents[1], flip=False)
    mirrored = _training_tensors(photos[0].parents[1], flip=True)
    _assert_same_inputs(model.seen, [plain[s] for s in source_of], [mirrored[s] for s in source_of])
    # and verify on the same .bin, with --resize, is the same run
    again = InputRecorder()
    verify_model(again, [benchmark], InferenceOptions(batch_size=1000, workers=0, resize=True))
    assert torch.equal(torch.cat(again.seen), torch.cat(model.seen))


def test_without_resize_another_size_is_refused_naming_the_file(photos: list[Path]) -> None:
    with pytest.raises(ImageSizeError, match=r"0\.png: image is 140x112 but the model takes 112x112"):
        load_pixels(photos[0].read_bytes(), str(photos[0]), INPUT, fit=False)


def test_a_cut_short_jpeg_is_unreadable_in_training_too(tmp_path: Path) -> None:
    ok, jpeg = cv2.imencode(".jpg", _photo(0, INPUT))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2] if name == "a" else jpeg.tobytes())
    dataset = open_dataset(tmp_path, INPUT)
    assert [dataset[(i, False)][3] for i in range(2)] == [False, True]


def test_a_header_above_opencvs_pixel_limit_is_unreadable_everywhere(tmp_path: Path) -> None:
    """cv2.imdecode raises (not returns None) for a 60000x60000 header; every path treats it as unreadable."""
    data = oversized_png()
    assert len(data) < 40_000
    with pytest.raises(UserError, match=r"^huge\.png: not a readable image \(its header declares more pixels than OpenCV decodes\)$"):
        decode_image(data, "huge.png")
    good = cv2.imencode(".png", _photo(0, INPUT))[1].tobytes()
    for name, payload in (("a", data), ("b", good)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0.png").write_bytes(payload)
    dataset = open_dataset(tmp_path, INPUT)
    assert [dataset[(i, False)][3] for i in range(2)] == [False, True]  # training skips it
    huge = tmp_path / "a" / "0.png"
    with pytest.raises(UserError, match=r"a/0\.png: not a readable image"):
        embed_images(InputRecorder(), [huge, tmp_path / "b" / "0.png"], InferenceOptions(batch_size=2, workers=0))
