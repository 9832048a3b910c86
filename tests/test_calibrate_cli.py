"""facestra calibrate and compare at a calibrated operating point, from the command line and from Python.

The figures are checked against a second tool: `facestra embed` writes the embeddings, the test scores every
pair itself and asks sklearn's roc_curve for the thresholds.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _train_shapes import make_image_folder
from click.testing import CliRunner
from sklearn.metrics import roc_curve

from facestra import models
from facestra.cli.main import main
from facestra.embed.options import InferenceOptions
from facestra.protocols.benchmark import from_path_pairs
from facestra.verify import calibrate, compare_images
from facestra.verify.checks import check_benchmark
from facestra.verify.compare import CompareOptions, compare_pairs
from facestra.verify.pairs import evaluate_distances


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    make_image_folder(root / "faces", range(8), 6, size=32)  # 48 images: 120 genuine, 1008 impostor pairs
    for seed, name in ((0, "model.pt"), (1, "other.pt")):
        torch.manual_seed(seed)
        model = models.create("resnet18", width=0.25, embedding_size=32, input_size=(32, 32))
        model.train()
        model(torch.randn(8, 3, 32, 32))  # BatchNorm statistics that are not the identity
        models.save(model.eval(), root / name)
    result = run("calibrate", "--checkpoint", root / "model.pt", "--data", root / "faces", "--out", root / "cal.json",
                 "--far", "0.1,0.01,0.001", "--bootstrap", "200", "--workers", "0")
    assert result.exit_code == 0, result.output
    return root


def all_pair_scores(root: Path, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every pair's cosine from `facestra embed`'s matrix, and whether the pair is one identity."""
    out = tmp_path / "emb.npy"
    embedded = run("embed", root / "faces", "--checkpoint", root / "model.pt", "--out", out, "--workers", "0")
    assert embedded.exit_code == 0, embedded.output
    vectors = np.load(out)
    identity = [Path(line).parent.name for line in (tmp_path / "emb.paths.txt").read_text().splitlines()]
    i, j = np.triu_indices(len(vectors), k=1)
    scores = np.einsum("ij,ij->i", vectors[i].astype(np.float64), vectors[j].astype(np.float64))
    same = np.array([identity[a] == identity[b] for a, b in zip(i, j)])
    return scores, same


def test_calibrated_thresholds_equal_sklearns_on_independently_computed_scores(setup, tmp_path) -> None:
    report = json.loads((setup / "cal.json").read_text())
    scores, same = all_pair_scores(setup, tmp_path)
    assert report["source"]["genuine_pairs"] == int(same.sum()) == 120
    assert report["source"]["impostor_pairs"] == int((~same).sum()) == 1008
    assert report["source"]["identities"] == 8 and not report["source"]["sampled"]
    fpr, tpr, thresholds = roc_curve(same, scores, drop_intermediate=False)
    points = {p["far_target"]: p for p in report["operating_points"]}
    for far in (0.1, 0.01):
        index = np.flatnonzero(fpr <= far)[-1]
        point = points[far]
        assert point["supported"]
        assert point["threshold_cosine"] == pytest.approx(thresholds[index], abs=1e-6)
        assert point["tar"] == pytest.approx(tpr[index], abs=1 / 120 + 1e-9)
        assert point["threshold_distance"] == pytest.approx(2 - 2 * point["threshold_cosine"])
        low, high = point["tar_interval"]
        assert low <= point["tar"] <= high
        assert point["far_interval"][0] <= point["far_achieved"] <= point["far_interval"][1]
    assert points[0.001] == {"far_target": 0.001, "supported": False,
                             "reason": "needs at least 10,000 impostor pairs to be measured, these data have 1,008"}
    assert report["model"]["weights_sha256"] and report["model"]["flip"] == "concat"
    fit = report["probability"]
    assert fit["prior"] == 0.5 and {"coef", "intercept", "ece"} <= set(fit)
    assert 0 <= report["eer"] <= 1 and "balanced_accuracy" in report["best_accuracy"]


def test_compare_decides_at_the_calibrated_far_with_p_same(setup, tmp_path) -> None:
    calibration = json.loads((setup / "cal.json").read_text())
    point = next(p for p in calibration["operating_points"] if p["far_target"] == 0.1)
    first, second = setup / "faces" / "id000" / "000.png", setup / "faces" / "id001" / "000.png"
    out = tmp_path / "c.json"
    result = run("compare", first, second, "--checkpoint", setup / "model.pt", "--aligned", "--calibration", setup / "cal.json",
                 "--far", "0.1", "--prior", "0.2", "--json", out)
    decided = json.loads(out.read_text())
    assert decided["calibrated"] and decided["threshold_cosine"] == point["threshold_cosine"]
    assert decided["same_person"] == (decided["cosine_similarity"] >= point["threshold_cosine"])
    assert result.exit_code == (0 if decided["same_person"] else 1)
    fit = calibration["probability"]
    log_odds = fit["coef"] * decided["cosine_similarity"] + fit["intercept"] + math.log(0.2 / 0.8)
    assert decided["p_same"] == pytest.approx(1 / (1 + math.exp(-log_odds)))
    assert "FAR 0.1 from" in result.output and "P(same)" in result.output and "(prior 0.2)" in result.output

    plain = run("compare", first, second, "--checkpoint", setup / "model.pt", "--aligned")
    assert "uncalibrated" in plain.output


def test_a_saved_model_carries_its_calibration_and_the_original_is_untouched(setup, tmp_path) -> None:
    before = sha256(setup / "model.pt")
    copy = tmp_path / "calibrated.pt"
    result = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "c.json",
                 "--far", "0.1", "--bootstrap", "100", "--workers", "0", "--save-model", copy)
    assert result.exit_code == 0, result.output
    assert sha256(setup / "model.pt") == before
    first, second = setup / "faces" / "id002" / "001.png", setup / "faces" / "id002" / "002.png"
    carried = compare_images(copy, first, second, CompareOptions(aligned=True, far=0.1))
    given = compare_images(setup / "model.pt", first, second, CompareOptions(aligned=True, far=0.1), calibration=tmp_path / "c.json")
    assert carried.threshold_source == "FAR 0.1 from the model file's calibration"
    assert carried.cosine_threshold == given.cosine_threshold and carried.same == given.same
    assert carried.cosine == pytest.approx(given.cosine)


def test_a_calibration_of_other_weights_is_refused_unless_forced(setup) -> None:
    photo = setup / "faces" / "id000" / "000.png"
    refused = run("compare", photo, photo, "--checkpoint", setup / "other.pt", "--aligned", "--calibration", setup / "cal.json")
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [refused.output.strip()]
    assert "calibrated for other weights" in refused.output and "cal.json" in refused.output
    forced = run("compare", photo, photo, "--checkpoint", setup / "other.pt", "--aligned", "--calibration", setup / "cal.json",
                 "--far", "0.1", "--force")
    assert forced.exit_code == 0, forced.output
    flipped = run("compare", photo, photo, "--checkpoint", setup / "model.pt", "--aligned", "--calibration", setup / "cal.json",
                  "--flip", "none")
    assert flipped.exit_code == 2 and "flip concat, not none" in flipped.output


def bad_sources(root: Path) -> dict[str, Path]:
    make_image_folder(root / "one", [0], 4, size=32)
    make_image_folder(root / "singles", range(5), 1, size=32)
    (root / "flat").mkdir()
    cv2.imwrite(str(root / "flat" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    return {"one": root / "one", "singles": root / "singles", "flat": root / "flat"}


@pytest.mark.parametrize(("case", "message"), [
    ("one", "needs aligned faces in at least two identity sub-folders, found 1"),
    ("singles", "every identity has one image, so there is no genuine pair"),
    ("flat", "holds neither sub-folders of aligned faces"),
])
def test_a_source_without_both_kinds_of_pair_is_one_line_and_writes_nothing(setup, tmp_path, case, message) -> None:
    data = bad_sources(tmp_path)[case]
    out = tmp_path / "cal.json"
    result = run("calibrate", "--checkpoint", setup / "model.pt", "--data", data, "--out", out, "--workers", "0")
    assert result.exit_code == 2 and message in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error")] == result.output.strip().splitlines()[-1:]
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--far", "0,0.1"), "far 0 is outside (0, 1)"),
    (("--far", "1.5"), "far 1.5 is outside (0, 1)"),
])
def test_a_far_outside_zero_one_is_refused(setup, tmp_path, args, message) -> None:
    result = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "c.json", *args)
    assert result.exit_code == 2 and message in result.output and not (tmp_path / "c.json").exists()
    photo = setup / "faces" / "id000" / "000.png"
    compared = run("compare", photo, photo, "--checkpoint", setup / "model.pt", "--aligned", "--calibration", setup / "cal.json",
                   "--far", "0")
    assert compared.exit_code == 2 and "--far" in compared.output


def test_corrupt_or_foreign_calibration_files_are_one_line(setup, tmp_path) -> None:
    photo = setup / "faces" / "id000" / "000.png"
    cases = {"truncated.json": '{"format": "facestra-calibration/1", ', "other.json": '{"format": "something else"}',
             "threshold.json": (setup / "cal.json").read_text().replace('"threshold_cosine": ', '"threshold_cosine": 7', 1)}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = run("compare", photo, photo, "--checkpoint", setup / "model.pt", "--aligned", "--calibration", tmp_path / name)
        assert result.exit_code == 2, (name, result.output)
        assert result.output.strip().startswith(f"error: {tmp_path / name}: not a facestra calibration file"), result.output
    unsupported = run("compare", photo, photo, "--checkpoint", setup / "model.pt", "--aligned", "--calibration", setup / "cal.json",
                      "--far", "0.001")
    assert unsupported.exit_code == 2 and "FAR 0.001 is not supported" in unsupported.output and "use one of 0.1, 0.01" in unsupported.output
    uncalibrated = run("compare", photo, photo, "--checkpoint", setup / "model.pt", "--aligned", "--far", "0.01")
    assert uncalibrated.exit_code == 2 and "error: --far: needs a --calibration (a file" in uncalibrated.output


def test_outputs_never_replace_inputs_or_existing_files(setup, tmp_path) -> None:
    before = sha256(setup / "cal.json")
    again = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", setup / "cal.json")
    assert again.exit_code == 2 and "already exists" in again.output and sha256(setup / "cal.json") == before
    onto_model = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "c.json",
                     "--save-model", setup / "model.pt", "--overwrite")
    assert onto_model.exit_code == 2 and "is one of the inputs" in onto_model.output
    inside = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", setup / "faces" / "c.json")
    assert inside.exit_code == 2 and not (setup / "faces" / "c.json").exists()


def test_compare_pairs_embeds_each_photo_once_and_goes_on_past_a_bad_one(setup, tmp_path, monkeypatch) -> None:
    import facestra.verify.compare as compare_module

    faces = setup / "faces"
    (tmp_path / "broken.png").write_bytes(b"not an image")
    lines = ["first,second", "../faces/id000/000.png,../faces/id000/001.png", "../faces/id000/000.png,../faces/id003/000.png",
             f"{tmp_path / 'broken.png'},../faces/id000/001.png", "../faces/id003/000.png,../faces/id000/001.png"]
    listing = setup / "lists" / "pairs.csv"
    listing.parent.mkdir(exist_ok=True)
    listing.write_text("\n".join(lines) + "\n")
    out = tmp_path / "results.csv"
    result = run("compare", "--pairs", listing, "--out", out, "--checkpoint", setup / "model.pt", "--aligned",
                 "--calibration", setup / "cal.json", "--far", "0.1")
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "first,second,status,same_person,cosine,distance,p_same,message"
    statuses = [row.split(",")[2] for row in rows[1:]]
    assert statuses == ["ok", "ok", "unreadable", "ok"]
    single = compare_images(setup / "model.pt", faces / "id000" / "000.png", faces / "id003" / "000.png",
                            CompareOptions(aligned=True, far=0.1), calibration=setup / "cal.json")
    assert float(rows[2].split(",")[4]) == pytest.approx(single.cosine, abs=1e-6)
    assert "4 pairs:" in result.output and "1 without a comparable face" in result.output

    seen = []
    original = compare_module._aligned_crop
    monkeypatch.setattr(compare_module, "_aligned_crop", lambda path, *a: seen.append(path) or original(path, *a))
    pairs = [(faces / "id000" / "000.png", faces / "id000" / "001.png"), (faces / "id000" / "000.png", faces / "id001" / "000.png"),
             (faces / "id001" / "000.png", faces / "id000" / "001.png")]
    outcomes = compare_pairs(setup / "model.pt", pairs, CompareOptions(aligned=True))
    assert len(seen) == 3 and all(o.status == "ok" for o in outcomes)


def test_calibrate_from_python_on_a_benchmark_warns_of_unbalanced_pairs(setup, tmp_path) -> None:
    faces = sorted((setup / "faces").rglob("*.png"))
    by_identity = {}
    for path in faces:
        by_identity.setdefault(path.parent.name, []).append(path)
    ids = sorted(by_identity)
    pairs, same = [], []
    for n, identity in enumerate(ids):  # one genuine pair per identity, nine impostor pairs: 10 % genuine
        pairs.append((by_identity[identity][0], by_identity[identity][1]))
        same.append(True)
        for k in range(1, 10):
            other = ids[(n + k) % len(ids)] if (n + k) % len(ids) != n else ids[(n + k + 1) % len(ids)]
            pairs.append((by_identity[identity][k % 6], by_identity[other][(k + 2) % 6]))
            same.append(False)
    listing = tmp_path / "pairs.csv"
    listing.write_text("".join(f"{a},{b},{int(s)}\n" for (a, b), s in zip(pairs, same)))
    result = calibrate(setup / "model.pt", listing, inference=InferenceOptions(workers=0))
    assert any("only 10.0% of the 80 pairs are genuine" in w for w in result.result.warnings)
    # no names in a pair list: each genuine pair joins its two photos, every other photo stands alone
    distinct = len({str(path) for pair in pairs for path in pair})
    assert result.source["kind"] == "benchmark" and result.source["identities"] == distinct - 8


def test_verify_reports_balanced_accuracy_beside_accuracy() -> None:
    """An uninformative model on a list with 10 % genuine pairs: about 90 % accuracy, 50 % balanced."""
    rng = np.random.default_rng(0)
    same = rng.random(4000) < 0.1
    result = evaluate_distances(rng.uniform(0, 4, 4000), same, 10)
    assert result.accuracy > 0.88 and abs(result.balanced_accuracy - 0.5) < 0.03
    benchmark = from_path_pairs("skewed", Path("skewed.csv"), [(Path(f"{i}a.png"), Path(f"{i}b.png")) for i in range(len(same))],
                                same.tolist())
    assert any("answering 'different' to every pair" in w for w in check_benchmark(benchmark))


def test_the_calibration_report_shows_the_hardest_errors_at_the_calibrated_threshold(setup, tmp_path) -> None:
    from facestra.verify.html_report import read_report_data

    report = tmp_path / "calibration.html"
    result = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "c.json",
                 "--far", "0.1,0.01", "--bootstrap", "100", "--workers", "0", "--report", report, "--report-pairs", "5")
    assert result.exit_code == 0, result.output
    data = read_report_data(report)["sections"]["calibration"]
    threshold = json.loads((tmp_path / "c.json").read_text())["operating_points"][0]["threshold_cosine"]
    # independently: every pair's cosine from facestra embed; false accepts are impostors at or above the
    # threshold, hardest first; false rejects genuine pairs below it, lowest first
    out = tmp_path / "emb.npy"
    assert run("embed", setup / "faces", "--checkpoint", setup / "model.pt", "--out", out, "--workers", "0").exit_code == 0
    vectors = np.load(out).astype(np.float64)
    names = [str(Path(line)) for line in (tmp_path / "emb.paths.txt").read_text().splitlines()]
    i, j = np.triu_indices(len(vectors), k=1)
    cosine = np.einsum("ij,ij->i", vectors[i], vectors[j])
    same = np.array([Path(names[a]).parent.name == Path(names[b]).parent.name for a, b in zip(i, j)])
    accepted = cosine >= threshold - 1e-6
    assert data["num_false_accepts"] == int(np.sum(accepted & ~same))
    assert data["num_false_rejects"] == int(np.sum(~accepted & same))
    expected = sorted(cosine[accepted & ~same], reverse=True)[:5]
    shown = [1 - p["distance"] / 2 for p in data["false_accepts"]]
    assert shown == pytest.approx(expected, abs=1e-5)
    for pair in data["false_accepts"]:
        assert Path(pair["first"]).parent.name != Path(pair["second"]).parent.name
    assert data["markers"][0]["label"] == "calibrated FAR 0.1" and data["tables"][0]["rows"][0][0] == "0.1"
    refused = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "d.json",
                  "--report", setup / "model.pt", "--overwrite")
    assert refused.exit_code == 2 and "is one of the inputs" in refused.output
    inside = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "d.json",
                 "--report", setup / "faces" / "id000" / "000.png", "--overwrite")
    assert inside.exit_code == 2 and "is inside --data" in inside.output and not (tmp_path / "d.json").exists()
    existing = run("calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "d.json",
                   "--report", report)
    assert existing.exit_code == 2 and "already exists" in existing.output and not (tmp_path / "d.json").exists()


def test_options_a_mode_does_not_use_are_refused(setup, tmp_path) -> None:
    photo = setup / "faces" / "id000" / "000.png"
    cases = [
        (["calibrate", "--checkpoint", setup / "model.pt", "--data", setup / "faces", "--out", tmp_path / "c.json", "--report-pairs", "3"],
         "--report-pairs: only used with --report"),
        (["compare", photo, photo, "--checkpoint", setup / "model.pt", "--aligned", "--min-score", "0.9"], "--min-score: not used with --aligned"),
        (["compare", photo, photo, "--checkpoint", setup / "model.pt", "--aligned", "--threshold", "1", "--far", "0.1"],
         "far and threshold both choose the operating point"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "c.json").exists()
