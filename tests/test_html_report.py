"""The HTML report of ``verify --report``: opened in a real browser (Debian's chromium, headless), its hardest
pairs against a computation from the saved embeddings, refused paths, a face that cannot be decoded, and
the size of a five-benchmark page."""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_verify_cli import checkpoint, make_pairs_benchmark  # noqa: F401  (the tiny model file, a fixture)

from facestra.cli.main import main
from facestra.verify.hardest import hardest_errors
from facestra.verify.html_report import (
    ReportFacts,
    ReportImage,
    Table,
    read_report_data,
    render_report,
    write_report,
)
from facestra.verify.pairs import reference_fold_accuracies
from facestra.verify.report_sections import scores_section

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH to render the report (Debian/Ubuntu: apt-get install chromium; see README 'Verification report')",
)

# Installed in the page's <head> before anything loads: every error (a script error, an image or other
# resource that fails to load: the capture phase sees those) and every console.error is recorded.
ERROR_TRAP = """<script>window.__errors=[];
window.addEventListener('error',function(e){window.__errors.push(String(e.message||(e.target&&e.target.outerHTML)||e))},true);
var __consoleError=console.error;console.error=function(){window.__errors.push([].join.call(arguments,' '));__consoleError.apply(console,arguments)};
</script>"""
# Run after the load event: what the test asserts, written into the DOM that --dump-dom prints.
PROBE = """<script>window.addEventListener('load',function(){
var shapes='polyline,polygon,rect,circle,line,path';
var result={
 images:[].map.call(document.images,function(i){return {alt:i.alt,width:i.naturalWidth,complete:i.complete}}),
 svgs:[].map.call(document.querySelectorAll('svg.figure'),function(s){var r=s.getBoundingClientRect();
   var drawn=[].filter.call(s.querySelectorAll(shapes),function(e){var b=e.getBBox();return b.width>0||b.height>0}).length;
   return {title:s.getAttribute('aria-label'),drawn:drawn,width:r.width,height:r.height}}),
 missing:[].map.call(document.querySelectorAll('.missing'),function(d){return d.textContent}),
 external:[].filter.call(document.querySelectorAll('[src],[href]'),
  function(e){var u=e.getAttribute('src')||e.getAttribute('href');return !/^(data:|#)/.test(u)}).length,
 errors:window.__errors};
var p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify(result);document.body.appendChild(p);});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def browse(page: Path, tmp_path: Path) -> dict:
    """What a browser makes of ``page``: the probe's record from a copy with the two scripts added."""
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and "<script " not in text.replace('<script type="application/json"', "")  # no code of its own
    harness = tmp_path / f"harness-{page.name}"
    harness.write_text(text.replace("<head>", "<head>" + ERROR_TRAP, 1).replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    done = chromium("--virtual-time-budget=10000", "--dump-dom", harness.as_uri(), profile=tmp_path / "profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not run: {done.stdout[-500:]} {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    png = tmp_path / f"{page.stem}.png"
    chromium(f"--screenshot={png}", "--window-size=1100,1400", page.as_uri(), profile=tmp_path / "profile")
    image = cv2.imread(str(png))
    assert image is not None, f"chromium wrote no screenshot of {page}"
    return image


def assert_not_blank(image: np.ndarray) -> None:
    """More than a tenth of the pixels differ from the most common colour (the background), in colour."""
    pixels = image.reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    assert np.mean(np.any(pixels != background, axis=1)) > 0.1
    assert np.mean(np.ptp(pixels.astype(int), axis=1) > 40) > 0.01  # coloured pixels: figures and faces


def verify_toy(checkpoint: Path, bench: Path, *more: str) -> list[str]:
    """The arguments of ``facestra verify`` of the toy benchmark in ``bench`` on the CPU, with ``more``."""
    data = str(bench / "pairs.csv")
    return ["verify", "--checkpoint", str(checkpoint), "--data", data, "--benchmark", "toy", "--workers", "0", "--device", "cpu", *more]


@pytest.fixture(scope="module")
def verified(checkpoint: Path, tmp_path_factory) -> tuple[Path, list, object, list[str]]:  # noqa: F811
    """``verify --report`` on a 200-pair benchmark that the tiny model gets partly wrong."""
    root = tmp_path_factory.mktemp("report")
    rows = make_pairs_benchmark(root / "bench", num_pairs=200, seed=5)
    report = str(root / "out" / "report.html")
    args = verify_toy(checkpoint, root / "bench", "--save-embeddings", str(root / "kept"), "--report", report, "--report-pairs", "5")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["/usr/local/bin/facestra", *args])  # as a shell would start it
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return root, rows, result, args


def test_hardest_errors_ranks_by_the_distance_beyond_each_folds_threshold() -> None:
    # values exact in binary, so that the tie below is a tie
    distances = np.array([0.25, 0.9, 0.5, 0.5, 1.25, 0.0, 0.75, 0.25, 0.75, 0.375])
    issame = np.array([0, 0, 1, 0, 1, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    thresholds = np.array([0.75, 0.5])
    found = hardest_errors(distances, issame, thresholds, folds, 3)
    # different pairs below their fold's threshold: 0 (0.5 beyond), 3 (0.25), 5 (0.5), 9 (0.125); the tie in list order
    assert found.false_accepts.tolist() == [0, 5, 3] and found.num_false_accepts == 4
    # same pairs at or above it: 4 (0.5 beyond), 6 (0.25); 2 and 7 are below theirs
    assert found.false_rejects.tolist() == [4, 6] and found.num_false_rejects == 2
    assert found.thresholds.tolist() == [0.75] * 5 + [0.5] * 5
    assert hardest_errors(distances, issame, thresholds, folds, 0).false_accepts.tolist() == []
    # a pair exactly at its threshold is judged different (the protocol's "distance < threshold")
    at = hardest_errors(np.array([0.5, 0.5]), np.array([True, False]), np.array([0.5]), np.zeros(2, int), 5)
    assert at.false_rejects.tolist() == [0] and at.false_accepts.tolist() == []


def test_the_report_lists_the_hardest_pairs_of_the_saved_embeddings(verified) -> None:
    """Distances, thresholds and ranking recomputed here from the .npz: plain numpy, insightface's
    threshold loop (pairs.reference_fold_accuracies) and Python's sorted()."""
    root, rows, _, _ = verified
    kept = np.load(root / "kept" / "toy.npz")
    e1, e2 = kept["emb1"].astype(np.float64), kept["emb2"].astype(np.float64)
    dist = np.sum(np.square(e1 - e2), axis=1)
    issame, folds = kept["issame"], kept["folds"]
    splits = [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in range(int(folds.max()) + 1)]
    _, chosen = reference_fold_accuracies(dist, issame, splits)
    accepts, rejects = [], []
    for i in range(len(dist)):
        threshold = chosen[folds[i]]
        if not issame[i] and dist[i] < threshold:
            accepts.append((-(threshold - dist[i]), i))
        if issame[i] and not dist[i] < threshold:
            rejects.append((-(dist[i] - threshold), i))
    data = read_report_data(root / "out" / "report.html")["sections"]["toy"]
    assert data["num_false_accepts"] == len(accepts) > 5 and data["num_false_rejects"] == len(rejects) > 0
    for listed, expected in ((data["false_accepts"], sorted(accepts)[:5]), (data["false_rejects"], sorted(rejects)[:5])):
        assert [p["pair"] for p in listed] == [i for _, i in expected]
        for pair, (_, i) in zip(listed, expected):
            assert pair["distance"] == pytest.approx(dist[i], abs=1e-5)
            assert pair["threshold"] == pytest.approx(chosen[folds[i]], abs=1e-12)
            assert pair["fold"] == folds[i] + 1
            assert (pair["first"], pair["second"]) == rows[i][:2]
    page = (root / "out" / "report.html").read_text()
    for name in (data["false_accepts"][0]["first"], data["false_rejects"][0]["second"]):
        assert name in page


def test_the_report_states_the_facts(verified, checkpoint: Path) -> None:  # noqa: F811
    import hashlib

    import torch

    from facestra import __version__, models

    root, _, result, args = verified
    facts = read_report_data(root / "out" / "report.html")["facts"]
    model = facts["models"][0]
    assert model["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    expected = models.complexity(models.load(checkpoint))
    assert (model["arch"], model["params"], model["macs"]) == ("resnet18", expected.params, expected.macs)
    assert model["input"] == "RGB 32x32, (x - 127.5) / 128" and model["embedding_size"] == 512
    assert facts["facestra_version"] == __version__ and facts["torch_version"] == torch.__version__
    assert facts["device"].startswith("cpu (") and facts["command"] == shlex.join(["facestra", *args])
    assert f"wrote {root / 'out' / 'report.html'}" in result.stdout


def test_every_warning_of_the_benchmark_checks_is_in_the_report(checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    rows = make_pairs_benchmark(tmp_path / "bench", num_pairs=30)
    lines = [f"{a},{b},{int(s)}\n" for a, b, s in rows] + [f"{rows[0][0]},{rows[0][0]},1\n"]  # an image with itself
    (tmp_path / "bench" / "pairs.csv").write_text("".join(lines))
    report = tmp_path / "r.html"
    result = CliRunner().invoke(
        main,
        [
            "verify",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(tmp_path / "bench"),
            "--benchmark",
            "x",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    printed = [line.removeprefix("warning: ") for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert printed and read_report_data(report)["facts"]["warnings"] == printed
    assert all(w in report.read_text() for w in printed)


@needs_browser
def test_a_browser_shows_every_thumbnail_and_figure_without_errors(verified, tmp_path: Path) -> None:
    root, _, _, _ = verified
    page = root / "out" / "report.html"
    seen = browse(page, tmp_path)
    assert seen["errors"] == [] and seen["external"] == 0 and seen["missing"] == []
    listed = read_report_data(page)["sections"]["toy"]
    names = [p[side] for kind in ("false_accepts", "false_rejects") for p in listed[kind] for side in ("first", "second")]
    assert [image["alt"] for image in seen["images"]] == names and len(listed["false_accepts"]) == 5 and listed["false_rejects"]
    assert all(image["complete"] and image["width"] > 0 for image in seen["images"])
    titles = [svg["title"] for svg in seen["svgs"]]
    assert titles == ["toy: ROC", "toy: DET", "toy: distances", "toy: held-out fold accuracies"]
    assert all(svg["drawn"] > 5 and svg["width"] > 100 and svg["height"] > 100 for svg in seen["svgs"])
    assert_not_blank(screenshot(page, tmp_path))


def noise_png(seed: int, side: int = 112) -> bytes:
    return cv2.imencode(".png", np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))[1].tobytes()


def synthetic_section(key: str, seed: int, *, errors: int, broken: set[int] = frozenset(), pairs: int = 6000):
    """A section of ``pairs`` random scores with at least ``errors`` errors of each kind, each face a
    distinct image of noise (the worst case for JPEG) or, for the pairs in ``broken``, bytes no decoder reads."""
    rng = np.random.default_rng(seed)
    issame = np.arange(pairs) % 2 == 0
    distances = np.where(issame, rng.normal(0.8, 0.3, pairs), rng.normal(1.6, 0.3, pairs)).clip(0, 4)
    folds = np.repeat(np.arange(10), pairs // 10)

    def images(index: int) -> tuple[ReportImage, ReportImage]:
        if index in broken:
            return ReportImage(f"{key}/{index}_a.jpg", b"\xff\xd8 not really a jpeg"), ReportImage(f"{key}/{index}_b.png", None)
        return (
            ReportImage(f"{key}/{index}_a.png", noise_png(seed * 100000 + 2 * index)),
            ReportImage(f"{key}/{index}_b.png", noise_png(seed * 100000 + 2 * index + 1)),
        )

    return scores_section(
        key,
        key.upper(),
        f"/data/{key}.bin",
        distances,
        issame,
        thresholds=np.full(10, 1.2),
        fold_ids=folds,
        pair_images=images,
        judged_by="by 1.2",
        marker=("protocol", 1.2),
        pairs=errors,
        markers=[("calibrated FAR 1e-3", 0.9)],
        tables=[Table("Calibrated", ("FAR", "threshold"), (("1e-3", "0.9"),))],
        fold_accuracies=np.full(10, 0.9),
    )


def facts() -> ReportFacts:
    return ReportFacts((), "facestra verify --test", "cpu", warnings=("a warning",))


def test_five_benchmarks_with_twenty_error_pairs_each_stay_under_five_megabytes(tmp_path: Path) -> None:
    sections = [synthetic_section(f"bench{k}", k + 1, errors=20) for k in range(5)]
    assert all(len(s.false_accepts) == len(s.false_rejects) == 20 for s in sections)
    path = tmp_path / "big.html"
    write_report(path, facts(), sections)
    text = path.read_text()
    assert text.count('<img src="data:image/jpeg;base64,') == 5 * 2 * 20 * 2  # every face, none left out
    assert path.stat().st_size < 5 * 1024 * 1024
    assert text.count("<svg") == 5 * 4


def test_a_face_that_cannot_be_decoded_is_a_labelled_placeholder(tmp_path: Path) -> None:
    section = synthetic_section("odd", 7, errors=3, broken=set(range(6000)))
    page_text = render_report(facts(), [section])
    assert page_text.count('class="missing"') == 2 * 3 * 2
    first = section.false_accepts[0].index
    assert f'<div class="missing" title="odd/{first}_a.jpg">cannot show: ' in page_text
    assert f'<div class="missing" title="odd/{first}_b.png">cannot show: no image</div>' in page_text
    # the figures, tables and extra markers (what calibrate adds) are drawn all the same
    assert page_text.count("<svg") == 4 and "calibrated FAR 1e-3" in page_text and "<h3>Calibrated</h3>" in page_text
    if CHROMIUM is not None:  # and a browser shows the page without an error
        page = tmp_path / "odd.html"
        page.write_text(page_text)
        seen = browse(page, tmp_path)
        assert seen["errors"] == [] and seen["images"] == [] and len(seen["missing"]) == 12


def test_a_report_path_that_is_an_input_or_unwritable_is_refused_before_any_work(verified, checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    root, rows, _, _ = verified
    bench = root / "bench"
    image = bench / rows[0][0]
    before = {p: p.read_bytes() for p in (checkpoint, bench / "pairs.csv", image)}
    base = verify_toy(checkpoint, bench, "--json", str(tmp_path / "r.json"))
    for target, says in (
        (checkpoint, "is one of the inputs"),
        (bench / "pairs.csv", "is one of the inputs"),
        (image, "is one of the inputs"),
        (tmp_path / "r.json", "is also another output"),
    ):
        result = CliRunner().invoke(main, [*base, "--report", str(target)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {target}: {says}"), result.stderr
        assert "img/s" not in result.output  # no progress bar: nothing was embedded
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(main, [*base, "--report", str(tmp_path / "file" / "r.html")])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: cannot write {tmp_path / 'file'}")
    assert not (tmp_path / "r.json").exists()
    assert {p: p.read_bytes() for p in before} == before


def test_the_report_is_written_atomically(tmp_path: Path, monkeypatch) -> None:
    """A disk that fills while the page is written leaves the earlier report whole and no temporary file."""
    import errno
    import os

    path = tmp_path / "r.html"
    path.write_text("the earlier report")
    section = synthetic_section("one", 3, errors=2)
    real_write = os.write

    def full_disk(descriptor, data):
        real_write(descriptor, bytes(data)[:1000])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full_disk)
        with pytest.raises(OSError) as raised:
            write_report(path, facts(), [section])
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert path.read_text() == "the earlier report" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_an_ijb_report_shows_the_hardest_template_pairs_at_far_1e_4(checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    """The template pairs listed are those scikit-learn's ROC puts beyond the point nearest FAR 1e-4, ranked
    by the scores of test_ijb's loop-by-loop recipe; each template is shown by one aligned face."""
    from sklearn.metrics import roc_curve
    from test_ijb import expected_figures, make_ijb

    data = tmp_path / "IJBC"
    made = make_ijb(data, one_to_n=False)
    report, work = tmp_path / "ijbc.html", tmp_path / "work"
    args = [
        "verify",
        "--checkpoint",
        str(checkpoint),
        "--benchmark",
        "ijbc",
        "--data",
        str(data),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--work",
        str(work),
    ]
    refused = CliRunner().invoke(main, [*args, "--report", str(data / "meta" / "ijbc_template_pair_label.txt")])
    assert refused.exit_code == 2 and "is one of the inputs" in refused.stderr and not work.exists()
    result = CliRunner().invoke(main, [*args, "--report", str(report), "--report-pairs", "4"])
    assert result.exit_code == 0, result.output
    expected = expected_figures(np.load(work / "ijbc_raw_features.npy"), made)
    scores, labels = expected["scores"], expected["labels"].astype(bool)
    fpr, _, thresholds = roc_curve(labels, scores)
    at = len(fpr) - 1 - int(np.argmin(np.abs(fpr[::-1] - 1e-4)))
    accepted = scores >= thresholds[at]
    accepts = sorted((-scores[i], i) for i in np.flatnonzero(accepted & ~labels))
    rejects = sorted((scores[i], i) for i in np.flatnonzero(~accepted & labels))
    listed = read_report_data(report)["sections"]["ijbc"]
    assert listed["num_false_accepts"] == len(accepts) and listed["num_false_rejects"] == len(rejects) > 4
    for kind, want in (("false_accepts", accepts), ("false_rejects", rejects)):
        assert [p["pair"] for p in listed[kind]] == [i for _, i in want[:4]]
        for pair in listed[kind]:
            a, b, _ = made["pairs"][pair["pair"]]
            assert pair["first"].startswith(f"template {a}: ") and pair["second"].startswith(f"template {b}: ")
            assert pair["distance"] == pytest.approx(2 - 2 * scores[pair["pair"]], abs=1e-6) and pair["fold"] is None
    page = report.read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == 2 * (len(listed["false_accepts"]) + len(listed["false_rejects"]))
    assert "1:1 TAR at FAR" in page and page.count("<svg") == 3  # ROC, DET, histograms: no folds in IJB


def test_svg_axes_place_values_as_the_scales_say_and_curves_stay_small() -> None:
    from statistics import NormalDist

    from facestra.verify import svg

    log = svg.Axis(1e-3, 1.0, 0.0, 300.0, "log")
    assert log.place([1e-3, 1e-2, 1.0, 0.0, 5.0]).tolist() == pytest.approx([0, 100, 300, 0, 300])  # 0 and 5: at the edges
    assert [text for _, text in log.ticks()] == ["1e-3", "1e-2", "1e-1", "1"]
    probit = svg.Axis(0.01, 0.5, 0.0, 100.0, "probit")
    z = NormalDist().inv_cdf
    assert probit.place([0.01, 0.1, 0.5]).tolist() == pytest.approx([0, 100 * (z(0.1) - z(0.01)) / (z(0.5) - z(0.01)), 100])
    fpr = np.linspace(0, 1, 1_000_001) ** 3
    figure = svg.roc_svg(fpr, np.sqrt(np.linspace(0, 1, 1_000_001)), [("t", 0.01, 0.5)])
    points = re.search(r'<polyline points="([^"]+)"', figure).group(1).split()
    assert figure.count("<polyline") == 1 and len(points) < 2000 and len(figure) < 60_000
    assert points[-1] == f"{svg.WIDTH - svg.RIGHT:.1f},{svg.TOP:.1f}"  # (1, 1): the top right corner


def test_scores_without_pair_lists_or_folds_as_calibrate_has_them() -> None:
    """Genuine and impostor scores alone, judged by one calibrated threshold: counts, markers and tables,
    no faces and no folds."""
    rng = np.random.default_rng(4)
    genuine, impostor = rng.normal(0.6, 0.1, 500), rng.normal(0.1, 0.1, 5000)  # cosines
    distances = 2 - 2 * np.r_[genuine, impostor]
    issame = np.r_[np.ones(500, bool), np.zeros(5000, bool)]
    calibrated = [("FAR 1e-2", 2 - 2 * np.quantile(impostor, 0.99)), ("FAR 1e-3", 2 - 2 * np.quantile(impostor, 0.999))]
    section = scores_section(
        "mine",
        "my photos",
        "photos/",
        distances,
        issame,
        marker=calibrated[0],
        markers=calibrated[1:],
        judged_by="by the threshold calibrated at FAR 1e-2",
        tables=[Table("Calibrated operating points", ("FAR", "distance"), (("0.01", f"{calibrated[0][1]:.4f}"),))],
    )
    assert section.num_false_accepts == np.count_nonzero(2 - 2 * impostor < calibrated[0][1]) == 50
    assert section.num_false_rejects == np.count_nonzero(2 - 2 * genuine >= calibrated[0][1]) > 0
    assert section.false_accepts == section.false_rejects == () and section.fold_accuracies is None
    page = render_report(facts(), [section])
    assert "Hardest false accepts: 0 of 50" in page and "FAR 1e-3" in page and "Calibrated operating points" in page
    assert page.count("<svg") == 3 and "<img" not in page
