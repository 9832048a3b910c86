"""facestra compare: detect, align, embed with the mirror, decide; exit codes 0 / 1 / 2 and the threshold source.

The figures are checked against the long way round: `facestra align --detector yunet` writes the crops,
`facestra embed` embeds them, and the test computes the distance from the .npy itself.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.models.record import with_record
from facestra.verify.compare import DEFAULT_THRESHOLD, CompareOptions, compare_images

pytest.importorskip("yuface")
skimage_data = pytest.importorskip("skimage.data")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    astronaut = np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])
    (root / "pair").mkdir()
    cv2.imwrite(str(root / "pair" / "a.png"), astronaut)
    # the same face smaller, shifted and a little rotated: another photo of the same person
    matrix = cv2.getRotationMatrix2D((256, 256), 8, 0.8)
    matrix[:, 2] += (20, -10)
    cv2.imwrite(str(root / "pair" / "b.png"), cv2.warpAffine(astronaut, matrix, (512, 512), borderValue=(90, 90, 90)))
    cv2.imwrite(str(root / "blank.png"), np.full((200, 200, 3), 128, np.uint8))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    torch.manual_seed(0)
    model = models.create("resnet18", width=0.25, embedding_size=64)
    model.train()
    model(torch.randn(8, 3, 112, 112))
    models.save(model.eval(), root / "model.pt")
    return root


def test_compare_gives_the_distance_of_align_then_embed(photos, tmp_path) -> None:
    crops = tmp_path / "crops"
    aligned = run("align", photos / "pair", "--detector", "yunet", "--out", crops, "--workers", "1", "--format", "png")
    assert aligned.exit_code == 0, aligned.output
    emb = tmp_path / "e.npy"
    assert run("embed", crops, "--checkpoint", photos / "model.pt", "--workers", "0", "--out", emb).exit_code == 0
    names = [p.rsplit("/", 1)[-1] for p in (tmp_path / "e.paths.txt").read_text().splitlines()]
    vectors = dict(zip(names, np.load(emb).astype(np.float64)))
    a, b = vectors[next(n for n in names if n.startswith("a"))], vectors[next(n for n in names if n.startswith("b"))]
    expected = float(np.sum((a - b) ** 2))

    out = tmp_path / "cmp.json"
    result = run(
        "compare", photos / "pair" / "a.png", photos / "pair" / "b.png", "--checkpoint", photos / "model.pt", "--json", out, "--threshold", 4
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["distance"] == pytest.approx(expected, abs=1e-5)
    assert report["cosine_similarity"] == pytest.approx(float(a @ b), abs=1e-5)
    assert report["same_person"] is True and report["threshold_source"] == "given"
    assert report["images"][0]["faces_in_image"] == 1 and report["images"][0]["score"] > 0.5
    assert f"distance {expected:.4f}" in result.output and "same person" in result.output

    below = run(
        "compare", photos / "pair" / "a.png", photos / "pair" / "b.png", "--checkpoint", photos / "model.pt", "--threshold", round(expected * 0.5, 4)
    )
    assert below.exit_code == 1 and "different people" in below.output


def test_threshold_comes_from_the_model_file_else_the_default(photos, tmp_path) -> None:
    # one call from Python, from the file
    assert compare_images(photos / "model.pt", photos / "pair" / "a.png", photos / "pair" / "a.png").threshold_source == "default"
    model = models.load(photos / "model.pt")
    same = compare_images(model, photos / "pair" / "a.png", photos / "pair" / "a.png")
    assert same.threshold == DEFAULT_THRESHOLD and same.distance == pytest.approx(0, abs=1e-9) and same.same
    with_record(model, verification={"benchmark": "lfw", "threshold": 0.0, "accuracy": 0.99})
    models.save(model, tmp_path / "recorded.pt")
    result = run("compare", photos / "pair" / "a.png", photos / "pair" / "a.png", "--checkpoint", tmp_path / "recorded.pt")
    assert "threshold 0.0000 (model file (lfw))" in result.output
    assert result.exit_code == 1  # distance 0 is not below a threshold of 0


def test_aligned_crops_skip_detection(photos, tmp_path) -> None:
    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "crop.png"), crop)
    model = models.load(photos / "model.pt")
    result = compare_images(model, tmp_path / "crop.png", tmp_path / "crop.png", CompareOptions(aligned=True, threshold=1.0))
    assert result.same and result.faces[0].score is None
    wrong = run("compare", photos / "pair" / "a.png", tmp_path / "crop.png", "--checkpoint", photos / "model.pt", "--aligned")
    assert wrong.exit_code == 2 and "a.png: is 512x512, not an aligned 112x112 crop" in wrong.output


@pytest.mark.parametrize(
    ("name", "message"),
    [("blank.png", "blank.png: no face found"), ("broken.jpg", "broken.jpg: "), ("absent.png", "absent.png: cannot read")],
)
def test_a_photo_without_a_readable_face_exits_2_naming_it(photos, name, message) -> None:
    result = run("compare", photos / "pair" / "a.png", photos / name, "--checkpoint", photos / "model.pt")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
