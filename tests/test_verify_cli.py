"""``facestra verify`` end to end on a tiny saved model, checked against ``facestra embed`` + ``evaluate``."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.verify.pairs import evaluate

INPUT = (32, 32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    models.save(models.create("resnet18", width=0.125, input_size=INPUT), path)
    return path


def make_pairs_benchmark(root: Path, num_pairs: int = 60, seed: int = 0) -> list[tuple[str, str, bool]]:
    """Images under root/img and a pairs.csv: same pairs are noisy copies, so that 50% < accuracy < 100%."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(num_pairs):
        same = i % 2 == 0
        first = rng.integers(0, 256, (*INPUT, 3)).astype(np.int16)
        second = first + rng.integers(-100, 101, first.shape) if same else rng.integers(0, 256, first.shape)
        names = (f"img/p{i:03d}_a.png", f"img/p{i:03d}_b.png")
        for name, pixels in zip(names, (first, second)):
            cv2.imwrite(str(root / name), np.clip(pixels, 0, 255).astype(np.uint8))
        rows.append((names[0], names[1], same))
    (root / "pairs.csv").write_text("".join(f"{a},{b},{int(s)}\n" for a, b, s in rows))
    return rows


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def printed_accuracy(output: str, title: str) -> str:
    header, row = output.splitlines()[:2]
    column = header.index(title)
    return re.match(r"(\d+\.\d\d)±", row[column:]).group(1)


def test_verify_prints_what_evaluate_gives_on_embed_output(checkpoint: Path, tmp_path: Path) -> None:
    rows = make_pairs_benchmark(tmp_path / "bench")
    report = tmp_path / "report.json"
    result = invoke(
        "verify", "--checkpoint", str(checkpoint), "--benchmark", "toy", "--data", str(tmp_path / "bench" / "pairs.csv"),
        "--json", str(report), "--roc", str(tmp_path / "roc.png"), "--save-embeddings", str(tmp_path / "kept"), "--workers", "0",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["Network", "toy"]
    assert result.stdout.splitlines()[1].startswith("resnet18 ")

    emb_out = tmp_path / "emb.npy"
    embedded = invoke("embed", str(tmp_path / "bench" / "img"), "--checkpoint", str(checkpoint), "--out", str(emb_out), "--workers", "0")
    assert embedded.exit_code == 0, embedded.output
    matrix = np.load(emb_out)
    row_of = {Path(p).name: i for i, p in enumerate((tmp_path / "emb.paths.txt").read_text().splitlines())}
    emb1 = matrix[[row_of[Path(a).name] for a, _, _ in rows]]
    emb2 = matrix[[row_of[Path(b).name] for _, b, _ in rows]]
    expected = evaluate(emb1, emb2, [s for _, _, s in rows])

    assert printed_accuracy(result.stdout, "toy") == f"{100 * expected.accuracy:.2f}"
    assert 0.6 < expected.accuracy < 1.0
    figures = json.loads(report.read_text())["benchmarks"]["toy"]
    assert figures["accuracy"] == pytest.approx(expected.accuracy, abs=1e-12)
    assert figures["fold_accuracies"] == pytest.approx(expected.fold_accuracies.tolist(), abs=1e-12)
    assert figures["auc"] == pytest.approx(expected.auc, abs=1e-3)
    assert figures["num_pairs"] == 60 and len(figures["roc"]["fpr"]) == len(figures["roc"]["tpr"]) > 2
    image = cv2.imread(str(tmp_path / "roc.png"))
    assert image is not None and image.shape[0] > 100 and image.std() > 0
    kept = np.load(tmp_path / "kept" / "toy.npz")
    assert kept["emb1"].shape == (60, 1024) and np.allclose(kept["emb1"], emb1, atol=1e-5)
    assert kept["issame"].tolist() == [s for _, _, s in rows]


def test_verify_all_under_a_data_root_prints_one_table(checkpoint: Path, tmp_path: Path) -> None:
    rows = make_pairs_benchmark(tmp_path / "src", num_pairs=20)
    images = [(tmp_path / "src" / name).read_bytes() for a, b, _ in rows for name in (a, b)]
    labels = [s for _, _, s in rows]
    root = tmp_path / "data"
    root.mkdir()
    for file_name in ("lfw.bin", "agedb_30.bin"):
        (root / file_name).write_bytes(pickle.dumps((images, labels), protocol=2))
    result = invoke("verify", "--checkpoint", str(checkpoint), "--data-root", str(root), "--benchmark", "all", "--workers", "0", "--flip", "sum")
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header == ["Network", "LFW", "AgeDB-30"]
    assert "note: cfp-fp not found" in result.stderr and "note: calfw not found" in result.stderr
    # the same pairs in both files: the same accuracy, and the same as reading the pairs.csv
    assert printed_accuracy(result.stdout, "LFW") == printed_accuracy(result.stdout, "AgeDB-30")
    direct = invoke("verify", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "src"), "--benchmark", "x", "--workers", "0", "--flip", "sum")
    assert printed_accuracy(direct.stdout, "x") == printed_accuracy(result.stdout, "LFW")


def test_verify_errors(checkpoint: Path, tmp_path: Path) -> None:
    evil = tmp_path / "lfw.bin"

    class Exploit:
        def __reduce__(self):
            return (eval, ("1",))

    evil.write_bytes(pickle.dumps(([Exploit()], [True])))
    result = invoke("verify", "--checkpoint", str(checkpoint), "--data", str(evil))
    assert result.exit_code == 2 and "lfw.bin: not a benchmark .bin" in result.output and "is not allowed" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke("verify", "--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "none of lfw, cfp-fp, cplfw, calfw, agedb-30 found" in result.output
    result = invoke("verify", "--checkpoint", str(checkpoint))
    assert result.exit_code == 2 and "give either --data PATH" in result.output
    (tmp_path / "pairs.csv").write_text("a.png,b.png,1\n")
    result = invoke("verify", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path / "pairs.csv"))
    assert result.exit_code == 2 and "a.png not found" in result.output


def test_verify_uses_a_benchmarks_own_folds(checkpoint: Path, tmp_path: Path) -> None:
    rows = make_pairs_benchmark(tmp_path / "bench", num_pairs=40, seed=3)
    folds = [(7 * i) % 4 for i in range(40)]  # 4 interleaved folds instead of 10 contiguous ones
    (tmp_path / "bench" / "pairs.csv").write_text("".join(f"{a},{b},{int(s)},{f}\n" for (a, b, s), f in zip(rows, folds)))
    result = invoke(
        "verify", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "bench"), "--benchmark", "mine",
        "--json", str(tmp_path / "r.json"), "--save-embeddings", str(tmp_path / "kept"), "--workers", "0",
    )
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "r.json").read_text())["benchmarks"]["mine"]
    kept = np.load(tmp_path / "kept" / "mine.npz")
    expected = evaluate(kept["emb1"], kept["emb2"], kept["issame"], np.array(folds))
    assert figures["num_folds"] == 4
    assert figures["fold_accuracies"] == expected.fold_accuracies.tolist()
    assert kept["folds"].tolist() == folds


def test_verify_outputs_go_through_the_shared_check(checkpoint: Path, tmp_path: Path) -> None:
    """An existing --json is kept without --overwrite, and no output may be a file verify reads, a link to
    one included, even with --overwrite (issue 27, item 1)."""
    import os

    make_pairs_benchmark(tmp_path / "bench", num_pairs=20)
    benchmark = tmp_path / "bench" / "pairs.csv"
    existing = tmp_path / "figures.json"
    existing.write_text("mine")
    args = ["verify", "--checkpoint", str(checkpoint), "--benchmark", "toy", "--data", str(benchmark), "--workers", "0"]
    kept = invoke(*args, "--json", str(existing))
    assert kept.exit_code == 2 and "already exists" in kept.output and existing.read_text() == "mine"
    before = benchmark.read_bytes()
    for onto in (tmp_path / "bench" / "img" / "p000_a.png", tmp_path / "link.json"):
        if onto.name == "link.json":
            os.symlink(benchmark, onto)
        refused = invoke(*args, "--json", str(onto), "--overwrite")
        assert refused.exit_code == 2 and "is one of the inputs" in refused.output, refused.output
    assert benchmark.read_bytes() == before
    replaced = invoke(*args, "--json", str(existing), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(existing.read_text())["benchmarks"]
