"""IJB-B/C: a small folder in the official layout made of synthetic faces, ``facestra verify --benchmark
ijbc`` end to end, its TAR table and 1:N figures against a computation written out here (scikit-learn's
roc_curve, explicit loops over templates, media and probes), resuming, and the errors on bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _align_faces import landmarks_under, render, similarity
from click.testing import CliRunner
from sklearn.metrics import roc_curve

from facestra import models
from facestra.cli.main import main
from facestra.data.images import FACESTRA_INPUT, normalize
from facestra.protocols.ijb import read_ijb
from facestra.verify import templates as T

INPUT = (32, 32)
CROP = 64
SUBJECTS = 8
FARS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(3)
    return models.create("resnet18", width=0.125, input_size=INPUT).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    models.save(model, path)
    return path


def make_ijb(root: Path, seed: int = 0, one_to_n: bool = True) -> dict:
    """An IJB-C folder: 8 subjects x 3 templates, each of 1-2 media of 1-2 images; every template pair."""
    rng = np.random.default_rng(seed)
    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    landmark_lines, media_lines, transforms = [], [], []
    subject_of: dict[int, int] = {}
    image = 0
    for subject in range(SUBJECTS):
        tint = rng.integers(-60, 60, 3)
        for k in range(3):
            template = 100 + 3 * subject + k
            subject_of[template] = subject
            for media in range(int(rng.integers(1, 3))):
                for _ in range(int(rng.integers(1, 3))):
                    scale, angle = rng.uniform(0.42, 0.5), rng.uniform(-12, 12)
                    centre = np.array([CROP / 2, CROP / 2]) + rng.uniform(-3, 3, 2)
                    rotation = similarity(scale, angle, 0, 0)[:, :2]
                    shift = centre - rotation @ np.array([56.0, 70.0])
                    transform = similarity(scale, angle, *shift)
                    pixels = render(transform, (CROP, CROP)).astype(np.int16)
                    pixels[: CROP // 2] += tint.astype(np.int16)
                    pixels += rng.integers(-25, 26, pixels.shape).astype(np.int16)
                    name = f"img/{image}.jpg" if image % 2 else f"{image}.png"
                    (root / "loose_crop" / name).parent.mkdir(exist_ok=True)
                    cv2.imwrite(str(root / "loose_crop" / name), np.clip(pixels, 0, 255).astype(np.uint8))
                    points = landmarks_under(transform).reshape(-1)
                    score = rng.uniform(0.5, 1.0)
                    landmark_lines.append(f"{name} " + " ".join(f"{v:.3f}" for v in points) + f" {score:.4f}")
                    media_lines.append(f"{name} {template} {5000 + 10 * template + media}")
                    transforms.append(transform)
                    image += 1
    template_ids = sorted(subject_of)
    pairs = [(a, b, int(subject_of[a] == subject_of[b])) for i, a in enumerate(template_ids) for b in template_ids[i + 1 :]]
    meta = root / "meta"
    (meta / "ijbc_name_5pts_score.txt").write_text("\n".join(landmark_lines) + "\n")
    (meta / "ijbc_face_tid_mid.txt").write_text("\n".join(media_lines) + "\n")
    (meta / "ijbc_template_pair_label.txt").write_text("".join(f"{a} {b} {s}\n" for a, b, s in pairs))
    if one_to_n:
        # G1: subjects 0-3 (template k=0), G2: subjects 4-7; probes: the other templates of every subject
        def csv_rows(chosen):
            rows = ["TEMPLATE_ID,SUBJECT_ID,FILENAME"]
            for line in media_lines:
                name, template, _ = line.split()
                if int(template) in chosen:
                    rows.append(f"{template},{subject_of[int(template)]},{name}")
            return "\n".join(rows) + "\n"

        gallery1 = {t for t in template_ids if (t - 100) % 3 == 0 and subject_of[t] < 4}
        gallery2 = {t for t in template_ids if (t - 100) % 3 == 0 and subject_of[t] >= 4}
        probes = {t for t in template_ids if (t - 100) % 3 != 0}
        (meta / "ijbc_1N_gallery_G1.csv").write_text(csv_rows(gallery1))
        (meta / "ijbc_1N_gallery_G2.csv").write_text(csv_rows(gallery2))
        (meta / "ijbc_1N_probe_mixed.csv").write_text(csv_rows(probes))
    return {"transforms": transforms, "subject_of": subject_of, "pairs": pairs, "landmarks": landmark_lines, "media": media_lines}


def raw_by_hand(model, root: Path, made: dict, convention=FACESTRA_INPUT) -> np.ndarray:
    """Each loose crop warped by the inverse of the transform it was rendered with (to the 32x32 template),
    the model called on it and on its mirror, pixels normalised by ``convention``: [image, mirror] raw outputs."""

    def image_to_tensor(bgr: np.ndarray) -> torch.Tensor:
        return normalize(torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])), convention)

    ratio = INPUT[0] / 128.0  # reference_landmarks' rule for a square size that is not a multiple of 112
    rows = []
    for line, transform in zip(made["landmarks"], made["transforms"]):
        full = np.vstack([transform, [0, 0, 1]])
        to_template = np.linalg.inv(full)[:2]
        to_crop = np.array([[ratio, 0, 8 * ratio], [0, ratio, 0]]) @ np.vstack([to_template, [0, 0, 1]])
        image = cv2.imread(str(root / "loose_crop" / line.split()[0]))
        crop = cv2.warpAffine(image, to_crop, (INPUT[1], INPUT[0]), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        with torch.no_grad():
            plain = model(image_to_tensor(crop)[None])
            mirror = model(image_to_tensor(np.ascontiguousarray(crop[:, ::-1]))[None])
        rows.append(torch.cat([plain, mirror], dim=1)[0].numpy())
    return np.array(rows)


def expected_figures(raw: np.ndarray, made: dict, flip: str = "sum", norm: bool = True, detector: bool = True) -> dict:
    """eval_ijbc.py's recipe and ijb 1:N protocol, written out with loops."""
    scores = np.array([float(line.split()[-1]) for line in made["landmarks"]])
    half = raw.shape[1] // 2
    template_of = {}
    media_of = []
    feats = []
    for i, line in enumerate(made["media"]):
        _, template, media = line.split()
        template_of.setdefault(int(template), []).append(i)
        media_of.append(int(media))
        f = raw[i].astype(np.float64)
        f = f[:half] + f[half:] if flip == "sum" else f if flip == "concat" else f[:half]
        if not norm:
            f = f / np.linalg.norm(f)
        if detector:
            f = f * scores[i]
        feats.append(f)
    template_feature = {}
    for template, members in template_of.items():
        by_media: dict[int, list] = {}
        for i in members:
            by_media.setdefault(media_of[i], []).append(feats[i])
        total = sum(np.mean(group, axis=0) for group in by_media.values())
        template_feature[template] = total / np.linalg.norm(total)
    labels = np.array([s for _, _, s in made["pairs"]])
    pair_scores = np.array([template_feature[a] @ template_feature[b] for a, b, _ in made["pairs"]])
    fpr, tpr, _ = roc_curve(labels, pair_scores)
    fpr, tpr = fpr[::-1], tpr[::-1]
    tar = {}
    for far in FARS:
        _, index = min(zip(np.abs(fpr - far), range(len(fpr))))
        tar[far] = tpr[index]
    subject_of = made["subject_of"]
    probes = [t for t in sorted(template_of) if (t - 100) % 3 != 0]
    identification = {}
    for label, members in (("G1", range(4)), ("G2", range(4, 8))):
        gallery = [t for t in sorted(template_of) if (t - 100) % 3 == 0 and subject_of[t] in members]
        mated_hits, ranks, nonmated_tops, mated_tops = [], [], [], []
        for p in probes:
            sims = {g: template_feature[p] @ template_feature[g] for g in gallery}
            ordered = sorted(gallery, key=lambda g: -sims[g])
            if subject_of[p] in members:
                rank = 1 + [subject_of[g] for g in ordered].index(subject_of[p])
                ranks.append(rank)
                mated_hits.append(rank == 1)
                mated_tops.append(sims[ordered[0]])
            else:
                nonmated_tops.append(sims[ordered[0]])
        nonmated_tops.sort(reverse=True)
        tpir = {}
        for fpir in (1e-2, 1e-1):
            allowed = int(np.floor(fpir * len(nonmated_tops) + 1e-9))
            threshold = nonmated_tops[allowed] if allowed < len(nonmated_tops) else -np.inf
            tpir[fpir] = np.mean([hit and top > threshold for hit, top in zip(mated_hits, mated_tops)])
        rank = {k: np.mean([r <= k for r in ranks]) for k in (1, 5)}
        identification[label] = {"tpir": tpir, "rank": rank, "mated": len(ranks), "nonmated": len(nonmated_tops)}
    return {"tar": tar, "identification": identification, "labels": labels, "scores": pair_scores}


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def verify_ijbc(checkpoint: Path, data: Path, *more: str):
    """``facestra verify --benchmark ijbc`` of ``data``, in this process, with ``more`` options."""
    return invoke("verify", "--checkpoint", checkpoint, "--benchmark", "ijbc", "--data", data, "--workers", "0", *more)


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_verify_ijbc_matches_the_recipe_written_out(model, checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "IJBC"
    made = make_ijb(data)
    before = listing(data)
    report, work = tmp_path / "out" / "ijbc.json", tmp_path / "work"
    args = ["--batch-size", "5", "--device", "cpu", "--work", work]
    result = verify_ijbc(checkpoint, data, *args, "--json", report, "--roc", tmp_path / "roc.png")
    assert result.exit_code == 0, result.output
    stored = np.load(work / "ijbc_raw_features.npy")
    by_hand = raw_by_hand(model, data, made)
    assert stored.shape == by_hand.shape == (len(made["landmarks"]), 1024)
    assert np.allclose(stored, by_hand, atol=2e-3 * np.abs(by_hand).max())  # facestra's aligner = the known inverse warp
    expected = expected_figures(stored, made)
    figures = json.loads(report.read_text())["benchmarks"]["ijbc"]
    assert list(figures["tar_at_far"]) == ["1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1"]
    assert [figures["tar_at_far"][f"{far:g}"] for far in FARS] == pytest.approx([expected["tar"][far] for far in FARS], abs=1e-12)
    assert len(set(figures["tar_at_far"].values())) > 1  # a table that says something
    assert figures["num_pairs"] == len(made["pairs"]) and figures["num_templates"] == 3 * SUBJECTS
    for label in ("G1", "G2"):
        got, want = figures["identification"][label], expected["identification"][label]
        assert got["num_mated_probes"] == want["mated"] == 8 and got["num_nonmated_probes"] == want["nonmated"] == 8
        assert [got["tpir_at_fpir"]["0.01"], got["tpir_at_fpir"]["0.1"]] == pytest.approx([want["tpir"][1e-2], want["tpir"][1e-1]], abs=1e-12)
        assert [got["rank"]["1"], got["rank"]["5"]] == pytest.approx([want["rank"][1], want["rank"][5]], abs=1e-12)
    mean = figures["identification"]["mean"]["rank"]["1"]
    assert mean == pytest.approx((expected["identification"]["G1"]["rank"][1] + expected["identification"]["G2"]["rank"][1]) / 2)
    printed = result.stdout.splitlines()
    assert any(line.startswith("IJB-C 1:1") for line in printed)
    row = next(line for line in printed if line.startswith("resnet18"))
    assert row.split()[2:8] == [f"{100 * expected['tar'][far]:.2f}" for far in FARS]
    roc = cv2.imread(str(tmp_path / "roc.png"))
    assert roc is not None and roc.std() > 0
    assert listing(data) == before  # the benchmark folder is read-only to us

    # other switches: the stored raw features are reused, the figures follow the switches
    again = verify_ijbc(checkpoint, data, *args, "--json", report, "--overwrite", "--ijb-flip", "none", "--no-ijb-norm", "--no-ijb-detector-score")
    assert again.exit_code == 0, again.output
    assert "already in" in again.stderr
    expected = expected_figures(stored, made, flip="none", norm=False, detector=False)
    figures = json.loads(report.read_text())["benchmarks"]["ijbc"]
    assert [figures["tar_at_far"][f"{far:g}"] for far in FARS] == pytest.approx([expected["tar"][far] for far in FARS], abs=1e-12)
    assert figures["template_options"] == {"ijb_flip": "none", "ijb_norm": False, "ijb_detector_score": False}


def test_scores_pooling_and_roc_against_plain_numpy() -> None:
    rng = np.random.default_rng(1)
    features = rng.standard_normal((50, 8))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    first, second = rng.integers(0, 50, 3000), rng.integers(0, 50, 3000)
    naive = np.einsum("ij,ij->i", features[first], features[second])
    for block_bytes in (8 * 50 * 3, 8 * 50 * 200, 1 << 20):  # sparse blocks (distinct columns) and dense ones
        assert np.allclose(T.pair_scores(features, first, second, block_bytes=block_bytes), naive, atol=1e-12)
    labels = rng.random(3000) < 0.2
    rounded = np.round(naive, 1)  # many ties
    for scores in (naive, rounded):
        fpr, tpr, thresholds = roc_curve(labels, scores)
        ours = T.roc_points(labels, scores)
        assert np.array_equal(ours.fpr, fpr) and np.array_equal(ours.tpr, tpr) and np.array_equal(ours.thresholds, thresholds)
    templates = np.array([7, 7, 7, 3, 3, 9])
    medias = np.array([1, 1, 2, 1, 5, 1])
    raw = rng.standard_normal((6, 4))
    unique, pooled = T.template_features(raw, np.ones(6), templates, medias, T.TemplateOptions(ijb_detector_score=False), chunk_images=4)
    sums = {
        7: (raw[0, :2] + raw[0, 2:] + raw[1, :2] + raw[1, 2:]) / 2 + raw[2, :2] + raw[2, 2:],
        3: raw[3, :2] + raw[3, 2:] + raw[4, :2] + raw[4, 2:],
        9: raw[5, :2] + raw[5, 2:],
    }
    assert unique.tolist() == [3, 7, 9]
    assert np.allclose(pooled, [sums[t] / np.linalg.norm(sums[t]) for t in (3, 7, 9)])


def test_an_interrupted_embedding_resumes(model, tmp_path: Path, monkeypatch) -> None:
    from facestra.embed.inference import InferenceOptions
    from facestra.verify import ijb_embed

    data = tmp_path / "IJBC"
    make_ijb(data, seed=2, one_to_n=False)
    benchmark = read_ijb("ijbc", data)
    options = InferenceOptions(batch_size=4, workers=0, device="cpu")
    whole = ijb_embed.embed_ijb(model, benchmark, tmp_path / "w1", options)
    monkeypatch.setattr(ijb_embed, "JOURNAL_INTERVAL_S", 0.0)
    seen = []

    def stop_after_two_batches(count: int) -> None:
        seen.append(count)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ijb_embed.embed_ijb(model, benchmark, tmp_path / "w2", options, progress=stop_after_two_batches)
    assert not (tmp_path / "w2" / "ijbc_raw_features.npy").exists()  # only whole matrices get the name
    resumed = ijb_embed.embed_ijb(model, benchmark, tmp_path / "w2", options)
    assert resumed.resumed_from == 8
    assert np.array_equal(np.load(resumed.path), np.load(whole.path))
    assert sorted(p.name for p in (tmp_path / "w2").iterdir()) == ["ijbc_raw_features.json", "ijbc_raw_features.npy"]


def break_file(data: Path, file: str, line: int, text: str | None) -> None:
    path = data / "meta" / file
    lines = path.read_text().splitlines()
    if text is None:
        path.unlink()
        return
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "file, line, text, message",
    [
        ("ijbc_face_tid_mid.txt", 0, None, "ijbc_face_tid_mid.txt: no such file"),
        ("ijbc_1N_probe_mixed.csv", 0, None, "ijbc_1N_probe_mixed.csv: no such file (1:N needs"),
        ("ijbc_name_5pts_score.txt", 3, "2.png 1 2 3", "ijbc_name_5pts_score.txt:3: expected 'image x1 y1 ... x5 y5 score' (12 fields), got 4"),
        ("ijbc_name_5pts_score.txt", 2, "1.jpg" + " x" * 11, "ijbc_name_5pts_score.txt:2: the 10 coordinates and the score must be numbers"),
        ("ijbc_face_tid_mid.txt", 4, "3.jpg 100 abc", "ijbc_face_tid_mid.txt:4: image 3.jpg but line 4"),
        ("ijbc_template_pair_label.txt", 5, "100 101 2", "ijbc_template_pair_label.txt:5: label must be 0 or 1, got 2"),
        ("ijbc_template_pair_label.txt", 7, "100 x 1", "ijbc_template_pair_label.txt:7: template, template and label must be integers"),
        ("ijbc_template_pair_label.txt", 9, "100 101", "ijbc_template_pair_label.txt:9: expected 'template template label' (3 fields), got 2"),
        ("ijbc_template_pair_label.txt", 6, "100 999 0", "ijbc_template_pair_label.txt:6: template 100 or 999 has no image"),
        ("ijbc_1N_gallery_G1.csv", 3, "100,zz,a.png", "ijbc_1N_gallery_G1.csv:3: TEMPLATE_ID and SUBJECT_ID must be integers"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_line(checkpoint: Path, tmp_path: Path, file, line, text, message) -> None:
    data = tmp_path / "IJBC"
    make_ijb(data, seed=4)
    break_file(data, file, line, text)
    report = tmp_path / "r.json"
    result = verify_ijbc(checkpoint, data, "--json", report)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert not report.exists() and not (tmp_path / "r.ijbc-work").exists()


def test_a_missing_or_broken_image(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "IJBC"
    make_ijb(data, seed=5, one_to_n=False)
    names = [line.split()[0] for line in (data / "meta" / "ijbc_name_5pts_score.txt").read_text().splitlines()]
    (data / "loose_crop" / names[6]).rename(tmp_path / "moved")
    args = ["verify", "--checkpoint", checkpoint, "--benchmark", "ijbc", "--data", data, "--workers", "0", "--json", tmp_path / "r.json"]
    result = invoke(*args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"ijbc_name_5pts_score.txt:7: image {data / 'loose_crop' / names[6]} not found" in result.stderr
    (data / "loose_crop" / names[6]).write_bytes(b"not an image")
    result = invoke(*args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "ijbc_name_5pts_score.txt:7: " in result.stderr and "not a readable image" in result.stderr
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.ijbc-work" / "ijbc_raw_features.npy").exists()
    result = invoke(*args[:-2], "--work", data / "work")
    assert result.exit_code == 2 and "is inside the benchmark folder" in result.stderr


def test_identification_thresholds_at_the_boundary() -> None:
    """Ten non-mated probes whose top scores are 0.9, 0.8, ..., 0.0: at FPIR 0.1 one may alarm, so the
    threshold is 0.8 and a mated probe scoring exactly 0.8 does not count; at 0.01 none may alarm."""
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    nonmated = [[v / 10, 0.0] for v in range(9, -1, -1)]
    mated = [[0.8, 0.0], [0.85, 0.0], [0.1, 0.5]]  # top at the threshold, above it, mate ranked second
    probes = np.array(nonmated + mated)
    subjects = np.array([9] * 10 + [1, 1, 1])
    result = T.identify(probes, subjects, gallery, np.array([1, 2]))
    assert (result.num_mated, result.num_nonmated, result.num_gallery) == (3, 10, 2)
    assert result.tpir_at_fpir == {0.01: 0.0, 0.1: pytest.approx(1 / 3)}
    assert result.rank_accuracy == {1: pytest.approx(2 / 3), 5: 1.0}


def test_pair_commands_point_to_the_template_protocol(tmp_path: Path) -> None:
    from facestra.errors import UserError
    from facestra.protocols import load_benchmark

    with pytest.raises(UserError, match="ijbc is a template benchmark: run `facestra verify --benchmark ijbc --data DIR`"):
        load_benchmark("ijbc", tmp_path)


def _rewrite(path: Path, keep) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for number, line in enumerate(lines) if keep(number, line)) + "\n")


def _pairs_of_one_kind(data: Path) -> str:
    _rewrite(data / "meta" / "ijbc_template_pair_label.txt", lambda _, line: line.endswith(" 1"))
    return "ijbc_template_pair_label.txt: every one of its 24 template pairs is a same-subject (label 1) pair"


def _gallery_without_nonmated_probes(data: Path) -> str:
    # probes of subjects 0-3 only: every probe has its mate in G1 (subjects 0-3)
    _rewrite(data / "meta" / "ijbc_1N_probe_mixed.csv", lambda number, line: number == 0 or int(line.split(",")[1]) < 4)
    return "ijbc_1N_probe_mixed.csv: against gallery G1"


def _zero_detector_scores(data: Path) -> str:
    path = data / "meta" / "ijbc_name_5pts_score.txt"
    path.write_text("".join(" ".join(line.split()[:-1]) + " 0\n" for line in path.read_text().splitlines()))
    return "ijbc_name_5pts_score.txt: the detector scores of every template's images are 0"


@pytest.mark.parametrize("breaking", [_pairs_of_one_kind, _gallery_without_nonmated_probes, _zero_detector_scores])
def test_an_ijb_protocol_without_meaning_is_refused_before_embedding_not_a_silent_100(checkpoint: Path, tmp_path: Path, breaking) -> None:
    data = tmp_path / "IJBC"
    make_ijb(data, seed=6)
    message = breaking(data)
    report, work = tmp_path / "r.json", tmp_path / "work"
    result = verify_ijbc(checkpoint, data, "--json", report, "--work", work)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not report.exists() and not work.exists()  # refused before any image was embedded
    if breaking is _zero_detector_scores:  # the weighting that zeroes them can be turned off
        result = verify_ijbc(checkpoint, data, "--no-ijb-detector-score", "--json", report, "--work", work)
        assert result.exit_code == 0, result.output


def test_some_zero_detector_scores_are_warned_of(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "IJBC"
    made = make_ijb(data, seed=6, one_to_n=False)
    first = made["media"][0].split()[1]  # zero every image of the first template
    path = data / "meta" / "ijbc_name_5pts_score.txt"
    rows = [(line, media) for line, media in zip(path.read_text().splitlines(), made["media"])]
    path.write_text("".join((" ".join(line.split()[:-1]) + " 0" if media.split()[1] == first else line) + "\n" for line, media in rows))
    report = tmp_path / "r.json"
    result = verify_ijbc(checkpoint, data, "--json", report)
    assert result.exit_code == 0, result.output
    warning = "ijbc_name_5pts_score.txt: 1 of 24 paired templates have only images of detector score 0"
    assert f"warning: {data / 'meta' / warning}" in result.stderr
    few = (f"{data / 'meta' / 'ijbc_template_pair_label.txt'}: 252 different-subject pairs; "
           "TAR at a FAR below 0.004 is read at the ROC's nearest point and says little")
    assert json.loads(report.read_text())["benchmarks"]["ijbc"]["warnings"] == [
        few,
        str(data / "meta" / warning) + ": their features are zero and their pairs score 0",
    ]


def test_five_points_far_outside_the_image_are_bad_landmarks(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "IJBC"
    make_ijb(data, seed=7, one_to_n=False)
    path = data / "meta" / "ijbc_name_5pts_score.txt"
    lines = path.read_text().splitlines()
    fields = lines[4].split()
    fields[1:11] = [f"{float(v) + 500:.3f}" for v in fields[1:11]]  # the face 500 pixels right of and below a 64x64 crop
    lines[4] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    result = verify_ijbc(checkpoint, data, "--work", tmp_path / "w")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert f"{path}:5: bad_landmarks: point 1 (" in result.stderr and "is outside the 64x64 image" in result.stderr


def test_raw_features_are_reused_only_for_the_same_images_and_weights(model, tmp_path: Path, monkeypatch) -> None:
    from facestra.embed.inference import InferenceOptions
    from facestra.verify import ijb_embed

    data = tmp_path / "IJBC"
    make_ijb(data, seed=8, one_to_n=False)
    options = InferenceOptions(batch_size=4, workers=0, device="cpu")
    first = ijb_embed.embed_ijb(model, read_ijb("ijbc", data), tmp_path / "w", options)
    again = ijb_embed.embed_ijb(model, read_ijb("ijbc", data), tmp_path / "w", options)
    assert again.resumed_from == again.rows  # the same job: reused whole
    torch.manual_seed(11)
    other = models.create("resnet18", width=0.125, input_size=INPUT).eval()
    expected_other = ijb_embed.embed_ijb(other, read_ijb("ijbc", data), tmp_path / "fresh", options)

    # a crash while the other model's features are published must not leave a record that names them beside
    # the first model's matrix
    replace = os.replace

    def crash_at_the_matrix(source, target):
        if Path(target).name == "ijbc_raw_features.npy":
            raise KeyboardInterrupt
        replace(source, target)

    monkeypatch.setattr(ijb_embed.os, "replace", crash_at_the_matrix)
    with pytest.raises(KeyboardInterrupt):
        ijb_embed.embed_ijb(other, read_ijb("ijbc", data), tmp_path / "w", options)
    monkeypatch.undo()
    switched = ijb_embed.embed_ijb(other, read_ijb("ijbc", data), tmp_path / "w", options)
    assert switched.resumed_from != switched.rows
    assert np.array_equal(np.load(switched.path), np.load(expected_other.path))
    # an image rewritten under the same name: its features are computed again
    name = (data / "meta" / "ijbc_name_5pts_score.txt").read_text().split()[0]
    image = cv2.imread(str(data / "loose_crop" / name))
    cv2.imwrite(str(data / "loose_crop" / name), 255 - image)
    changed = ijb_embed.embed_ijb(other, read_ijb("ijbc", data), tmp_path / "w", options)
    assert changed.resumed_from == 0
    assert not np.array_equal(np.load(changed.path)[0], np.load(expected_other.path)[0])
    assert np.array_equal(np.load(changed.path)[1:], np.load(expected_other.path)[1:])
    assert np.array_equal(np.load(first.path).shape, np.load(changed.path).shape)


def test_options_an_ijb_or_pair_benchmark_does_not_use_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "IJBC"
    make_ijb(data, seed=9, one_to_n=False)
    ijb = ["verify", "--checkpoint", checkpoint, "--benchmark", "ijbc", "--data", data, "--workers", "0"]
    for extra, flag in [(["--save-embeddings", tmp_path / "kept"], "--save-embeddings"), (["--data-root", tmp_path], "--data-root")]:
        result = invoke(*ijb, *extra)
        assert result.exit_code == 2 and f"{flag}: not used by an IJB benchmark" in result.output, result.output
    (tmp_path / "pairs.csv").write_text("a.png,b.png,1\n")
    pairs = ["verify", "--checkpoint", checkpoint, "--data", tmp_path / "pairs.csv", "--workers", "0"]
    for extra, flag in [
        (["--work", tmp_path / "w"], "--work"),
        (["--ijb-flip", "concat"], "--ijb-flip"),
        (["--no-ijb-norm"], "--ijb-norm/--no-ijb-norm"),
    ]:
        result = invoke(*pairs, *extra)
        assert result.exit_code == 2 and f"{flag}: only used with --benchmark ijbb or ijbc" in result.output, result.output
    assert not (tmp_path / "kept").exists() and not (tmp_path / "w").exists()


def test_ijb_features_follow_the_models_input_convention(model, tmp_path: Path) -> None:
    """IJB feeds a model the pixels of its own input convention, as embed and verify do (arcface_torch's
    weights take (x/255 - 0.5)/0.5); a convention far from facestra's makes the difference plain."""
    import copy

    from facestra.data.images import InputConvention
    from facestra.embed.inference import InferenceOptions
    from facestra.models.record import with_record
    from facestra.verify import ijb_embed

    other = copy.deepcopy(model)
    with_record(other, input_convention=InputConvention(0.0, 255.0))  # pixels in [0, 1]
    data = tmp_path / "IJBC"
    made = make_ijb(data, seed=4, one_to_n=False)
    raw = np.load(ijb_embed.embed_ijb(other, read_ijb("ijbc", data), tmp_path / "w", InferenceOptions(workers=0, device="cpu")).path)
    expected = raw_by_hand(other, data, made, other.record.input_convention)
    scale = 1e-2 * np.abs(expected).max()  # facestra's aligner against the known inverse warp
    assert np.allclose(raw, expected, atol=scale)
    assert np.abs(raw - raw_by_hand(other, data, made)).max() > 5 * scale  # facestra's own convention: other features
