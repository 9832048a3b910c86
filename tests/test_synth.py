"""facestra synth: determinism, true landmarks, pair files read back by the benchmark readers, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facestra.cli.main import main
from facestra.synth.dataset import SynthSettings, identity_rng, photo_rng, synthesize
from facestra.synth.face import MARK_COLOUR, MARK_RADIUS, draw_face
from facestra.synth.identity import sample_identity
from facestra.synth.scene import photo_landmarks, render_photo, sample_photo

SMALL = SynthSettings(identities=24, images_per_identity=3, size=128, seed=7, test_identities=20, pairs_per_fold=5)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    synthesize(out, SMALL, workers=1)
    return out


def test_same_seed_same_bytes_for_any_worker_count(small_set, tmp_path):
    again = tmp_path / "again"
    synthesize(again, SMALL, workers=2)
    assert _digests(again) == _digests(small_set)
    other = tmp_path / "other"
    synthesize(other, SynthSettings(**{**SMALL.__dict__, "seed": 8}), workers=1)
    first = "train/synth_00000/synth_00000_0001.jpg"
    assert _digests(other)[first] != _digests(small_set)[first]


def test_layout_is_lfw_like(small_set):
    train = sorted(p.name for p in (small_set / "train").iterdir())
    test = sorted(p.name for p in (small_set / "test").iterdir() if p.is_dir())
    assert train == [f"synth_{i:05d}" for i in range(4)]
    assert test == [f"synth_{i:05d}" for i in range(4, 24)]
    image = cv2.imread(str(small_set / "test" / "synth_00004" / "synth_00004_0003.jpg"))
    assert image.shape == (128, 128, 3)


def test_landmark_file_matches_the_geometry_and_the_reader(small_set):
    from facestra.align.landmarks import read_landmarks

    entries = read_landmarks(small_set / "landmarks.csv")
    assert len(entries) == 24 * 3 and all(e.problem is None for e in entries)
    by_path = {e.path: e.points for e in entries}
    index, number = 5, 2
    identity = sample_identity(identity_rng(SMALL.seed, index))
    photo = sample_photo(photo_rng(SMALL.seed, index, number), SMALL.size, SMALL.difficulty)
    expected = photo_landmarks(identity, photo)
    written = by_path[f"test/synth_{index:05d}/synth_{index:05d}_{number:04d}.jpg"]
    np.testing.assert_allclose(written, expected, atol=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_a_mark_drawn_at_each_landmark_lands_where_the_landmarks_say(seed):
    identity = sample_identity(np.random.default_rng([seed, 11]))
    photo = sample_photo(np.random.default_rng([seed, 12]), 250, 1.0)
    canvas = np.zeros((250, 250, 3), np.uint8)
    landmarks = draw_face(canvas, identity, photo.pose, photo.expression, (0, 0, 0), marks=True)
    np.testing.assert_allclose(landmarks, photo_landmarks(identity, photo), atol=1e-9)
    mask = np.all(canvas == MARK_COLOUR, axis=-1).astype(np.uint8)
    _, _, _, centroids = cv2.connectedComponentsWithStats(mask)
    found = centroids[1:]
    radius = MARK_RADIUS * photo.pose.scale
    checked = 0
    for k, point in enumerate(landmarks):
        others = np.delete(landmarks, k, axis=0)
        if np.min(np.linalg.norm(others - point, axis=1)) < 2.5 * radius + 2:
            continue  # two marks that touch make one blob (e.g. nose tip over a mouth corner)
        nearest = np.min(np.linalg.norm(found - point, axis=1))
        assert nearest < 0.5, (point, found)
        checked += 1
    assert checked >= 3


def test_eye_landmarks_sit_on_the_pupils_of_a_clean_photo():
    """Independent of the projection code: the darkest blob near each eye landmark is centred on it."""
    for seed in range(5):
        identity = sample_identity(np.random.default_rng([seed, 21]))
        photo = sample_photo(np.random.default_rng([seed, 22]), 250, 0.0)
        image, landmarks = render_photo(identity, photo)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(float)
        for x, y in landmarks[:2]:
            x0, y0 = int(round(x)) - 6, int(round(y)) - 6
            window = grey[y0 : y0 + 13, x0 : x0 + 13]
            dark = window <= window.min() + 15
            ys, xs = np.nonzero(dark)
            assert abs(xs.mean() + x0 - x) < 1.5 and abs(ys.mean() + y0 - y) < 1.5


def test_pairs_are_read_back_by_the_lfw_and_bin_readers(small_set):
    from facestra.align.geometry import warp_face
    from facestra.align.landmarks import read_landmarks
    from facestra.data.images import decode_image, read_image
    from facestra.protocols import load_benchmark

    lfw = load_benchmark("lfw", small_set / "test")
    assert lfw.num_pairs == 10 * 2 * 5
    same = lfw.issame.reshape(10, 10)
    assert same[:, :5].all() and not same[:, 5:].any()
    used = {Path(lfw.images[i]).parent.name for i in lfw.pairs.reshape(-1)}
    assert used <= {f"synth_{i:05d}" for i in range(4, 24)}  # only held-out identities
    for (a, b), label in zip(lfw.pairs, lfw.issame):
        assert (Path(lfw.images[a]).parent.name == Path(lfw.images[b]).parent.name) == bool(label)
    # folds hold disjoint identities, as LFW's do
    folds = [{Path(lfw.images[i]).parent.name for i in lfw.pairs[f * 10 : (f + 1) * 10].reshape(-1)} for f in range(10)]
    assert all(folds[f].isdisjoint(folds[g]) for f in range(10) for g in range(f + 1, 10))

    packed = load_benchmark("lfw", small_set / "test.bin")
    np.testing.assert_array_equal(packed.issame, lfw.issame)
    points = {e.path: e.points for e in read_landmarks(small_set / "landmarks.csv")}
    for pair in (0, 7, 63):
        for side in (0, 1):
            path = Path(lfw.images[lfw.pairs[pair, side]])
            crop = decode_image(packed.images[packed.pairs[pair, side]])
            assert crop.shape == (112, 112, 3)
            expected, _, _ = warp_face(read_image(path), points[f"test/{path.parent.name}/{path.name}"], 112)
            assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 4.0  # JPEG round trip only


def test_resume_rewrites_only_what_is_missing(small_set, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_set, copy)
    (copy / "train" / "synth_00001" / "synth_00001_0002.jpg").unlink()
    (copy / "test" / "synth_00009" / "synth_00009_0003.jpg").unlink()  # its .bin crop: new; its siblings': read
    (copy / "test.bin").unlink()
    summary = synthesize(copy, SMALL, workers=1)
    assert summary.written == 2 and summary.resumed == 24 * 3 - 2
    assert _digests(copy) == _digests(small_set)


def test_cli_writes_a_set_and_refuses_foreign_or_different_folders(tmp_path):
    runner = CliRunner()
    out = tmp_path / "faces"
    args = ["synth", str(out), "--identities", "6", "--images-per-identity", "2", "--size", "96", "--workers", "1"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert str(out / "landmarks.csv") in result.output and "12 images" in result.output
    assert (out / "test.bin").is_file() and (out / "test" / "pairs.txt").is_file()

    different = runner.invoke(main, args[:-2] + ["--seed", "3"])
    assert different.exit_code == 2
    assert "other settings" in different.output and str(out) in different.output

    foreign = tmp_path / "holiday"
    foreign.mkdir()
    (foreign / "photo.jpg").write_bytes(b"precious")
    refused = runner.invoke(main, ["synth", str(foreign), "--identities", "6", "--images-per-identity", "2"])
    assert refused.exit_code == 2 and "not empty" in refused.output
    assert (foreign / "photo.jpg").read_bytes() == b"precious" and len(list(foreign.iterdir())) == 1

    bad = runner.invoke(main, ["synth", str(tmp_path / "x"), "--identities", "5", "--images-per-identity", "2",
                               "--test-identities", "5"])
    assert bad.exit_code == 2 and "leaves none to train on" in bad.output


def test_raw_pixel_floor_separates_copies_and_not_strangers(tmp_path):
    """The raw-pixel baseline on hand-made .bin files: identical crops are always matched, noise is a coin flip."""
    from facestra.protocols.binfile import write_bin
    from facestra.synth.baseline import raw_pixel_embeddings, raw_pixel_verification

    rng = np.random.default_rng(0)

    def encoded(image: np.ndarray) -> bytes:
        return cv2.imencode(".png", image)[1].tobytes()

    faces = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(200)]
    images, issame = [], []
    for k in range(100):
        same = k % 2 == 0
        images += [encoded(faces[2 * k]), encoded(faces[2 * k] if same else faces[2 * k + 1])]
        issame.append(same)
    write_bin(tmp_path / "copies.bin", images, issame)
    assert raw_pixel_verification(tmp_path / "copies.bin").accuracy == 1.0

    noise = [encoded(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(400)]
    write_bin(tmp_path / "noise.bin", noise, [k % 2 == 0 for k in range(200)])
    assert 0.35 < raw_pixel_verification(tmp_path / "noise.bin").accuracy < 0.65

    flat = raw_pixel_embeddings(faces[:3])
    manual = faces[1].reshape(-1).astype(float) - faces[1].mean()
    np.testing.assert_allclose(flat[1], manual / np.linalg.norm(manual))
