"""facestra demo: a tiny run end to end, its figures checked against the files it wrote; refusals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facestra.cli.main import main

TINY = ["--minutes", "0.03", "--identities", "28", "--images-per-identity", "3", "--test-identities", "20",
        "--crop-size", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> tuple[Path, str, dict]:
    work = tmp_path_factory.mktemp("demo") / "work"
    report = work.parent / "report.json"
    result = CliRunner().invoke(main, ["demo", "--workdir", str(work), "--json", str(report), *TINY])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return work, result.output, json.loads(report.read_text())


def test_prints_the_table_and_where_everything_went(tiny_demo):
    work, output, report = tiny_demo
    for row in ("raw aligned pixels", "resnet50_stra", "resnet50", "TAR@FAR=0.1", "params", "MACs"):
        assert row in output
    for path in (work / "roc.png", work / "mode_masks.png", work / "embeddings" / "resnet50_stra.npy",
                 work / "faces" / "landmarks.csv", work / "summary.json"):
        assert str(path) in output
        assert path.is_file()
    assert json.loads((work / "summary.json").read_text()) == report


def test_figures_are_readable_images(tiny_demo):
    work, _, _ = tiny_demo
    roc = cv2.imread(str(work / "roc.png"))
    masks = cv2.imread(str(work / "mode_masks.png"))
    assert roc is not None and roc.shape[0] > 100
    assert masks is not None and masks.shape[0] > 100


def test_reported_accuracy_is_that_of_the_saved_embeddings(tiny_demo):
    """Recompute each network's accuracy from the .npy it wrote and the pairs.txt of the test identities."""
    from facestra.verify.pairs import evaluate

    work, _, report = tiny_demo
    pairs_lines = (work / "faces" / "test" / "pairs.txt").read_text().split("\n")[1:]
    pairs = [line.split("\t") for line in pairs_lines if line]
    for model in report["models"]:
        matrix = np.load(model["embeddings"])
        paths = Path(model["embeddings"]).with_name(Path(model["embeddings"]).stem + ".paths.txt").read_text().split()
        row = {Path(p).parent.name + "/" + Path(p).stem: i for i, p in enumerate(paths)}
        assert matrix.shape[0] == len(paths) == 20 * 3
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
        first, second, same = [], [], []
        for fields in pairs:
            if len(fields) == 3:
                a, b, label = (fields[0], int(fields[1])), (fields[0], int(fields[2])), True
            else:
                a, b, label = (fields[0], int(fields[1])), (fields[2], int(fields[3])), False
            first.append(row[f"{a[0]}/{a[0]}_{a[1]:04d}"])
            second.append(row[f"{b[0]}/{b[0]}_{b[1]:04d}"])
            same.append(label)
        result = evaluate(matrix[first], matrix[second], np.array(same))
        assert result.accuracy == pytest.approx(model["accuracy"], abs=1e-9)
        assert model["params"] > 0 and model["macs"] > 0
    assert report["models"][0]["arch"] == "resnet50_stra" and report["models"][1]["arch"] == "resnet50"


def test_refuses_a_folder_it_did_not_make(tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    result = CliRunner().invoke(main, ["demo", "--workdir", str(foreign), *TINY])
    assert result.exit_code == 2
    assert "not made by facestra demo" in result.output and str(foreign) in result.output
    assert [p.name for p in foreign.iterdir()] == ["chapter1.tex"]


def test_ends_on_the_path_of_its_report_with_both_networks(tiny_demo):
    """The newcomer's first command ends on a page to open: each network's section, its model file's facts."""
    import hashlib

    from facestra.verify.html_report import read_report_data

    work, output, report = tiny_demo
    page = work / "report.html"
    assert output.rstrip("\n").splitlines()[-1] == f"open the report: {page}"
    assert report["report_html"] == str(page)
    data = read_report_data(page)
    assert list(data["sections"]) == ["synth-resnet50_stra", "synth-resnet50"]
    for model, facts in zip(report["models"], data["facts"]["models"]):
        assert facts["arch"] == model["arch"] and facts["checkpoint"] == model["model_path"]
        assert facts["sha256"] == hashlib.sha256(Path(model["model_path"]).read_bytes()).hexdigest()
        assert (facts["params"], facts["macs"]) == (model["params"], model["macs"])
    text = page.read_text()
    assert "The floor: raw aligned pixels" in text and text.count("<svg") == 2 * 4
