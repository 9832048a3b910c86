"""Every benchmark reader on small files written here in each layout, the .bin reader's safety, and packing."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facestra.cli.main import main
from facestra.errors import UserError
from facestra.protocols import find_benchmarks, load_benchmark, read_bin
from facestra.verify.pack import pack_benchmark

SIZE = 16


def write_image(path: Path, seed: int) -> bytes:
    """A small random image at ``path`` (format from the suffix); returns the encoded bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(encoded.tobytes())
    return encoded.tobytes()


def pair_paths(benchmark) -> list[tuple[Path, Path]]:
    return [(benchmark.images[a], benchmark.images[b]) for a, b in benchmark.pairs]


# ---------------------------------------------------------------- LFW pairs.txt


def make_lfw(root: Path, extension: str = ".jpg") -> Path:
    people = {"Ann_A": 3, "Bob_B": 2, "Cy_C": 2, "Di_D": 1}
    for person, count in people.items():
        for n in range(1, count + 1):
            write_image(root / "aligned" / person / f"{person}_{n:04d}{extension}", hash((person, n)) % 1000)
    lines = [
        "2 2",
        "Ann_A 1 2", "Bob_B 1 2",  # set 1: same
        "Ann_A 1 Bob_B 1", "Cy_C 2 Di_D 1",  # set 1: different
        "Ann_A 2 3", "Cy_C 1 2",  # set 2: same
        "Bob_B 2 Di_D 1", "Ann_A 3 Cy_C 1",  # set 2: different
    ]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_lfw_reader(tmp_path: Path, extension: str) -> None:
    root = make_lfw(tmp_path / "lfw", extension)
    bench = load_benchmark("lfw", root)
    images = root / "aligned"
    assert bench.name == "lfw" and bench.title == "LFW" and bench.num_pairs == 8
    assert pair_paths(bench)[0] == (images / "Ann_A" / f"Ann_A_0001{extension}", images / "Ann_A" / f"Ann_A_0002{extension}")
    assert pair_paths(bench)[3] == (images / "Cy_C" / f"Cy_C_0002{extension}", images / "Di_D" / f"Di_D_0001{extension}")
    assert bench.issame.tolist() == [True, True, False, False] * 2
    assert bench.folds.tolist() == [0] * 4 + [1] * 4  # the header's sets are the folds
    assert len(bench.images) == 8  # Ann_A_0001 appears in 2 pairs but is embedded once
    assert load_benchmark("LFW", root / "pairs.txt").pairs.tolist() == bench.pairs.tolist()


def test_any_named_folder_in_lfw_layout_is_read_as_lfw(tmp_path: Path) -> None:
    # facestra synth writes its held-out set this way: ``--val aligned/test`` must just work
    root = make_lfw(tmp_path / "test")
    reference = load_benchmark("lfw", root)
    for path in (root, root / "pairs.txt"):
        bench = load_benchmark("test", path)
        assert bench.name == "test" and bench.pairs.tolist() == reference.pairs.tolist()
        assert bench.folds.tolist() == reference.folds.tolist() and bench.images == reference.images


def test_lfw_errors_name_file_and_line(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    lines = (root / "pairs.txt").read_text().splitlines()
    (root / "pairs.txt").write_text("\n".join(lines[:2] + ["Bob_B 1"] + lines[3:]))
    with pytest.raises(UserError, match=r"pairs\.txt:3: expected 'name n1 n2'"):
        load_benchmark("lfw", root)
    (root / "pairs.txt").write_text("\n".join(lines[:-1]))
    with pytest.raises(UserError, match="8 lines\\) but 7 pair lines follow"):
        load_benchmark("lfw", root)
    (root / "pairs.txt").write_text("\n".join(lines[:2] + ["Bob_B 1 9"] + lines[3:]))
    with pytest.raises(UserError, match=r"pairs\.txt:3: image .*Bob_B_0009\.jpg not found"):
        load_benchmark("lfw", root)


# ---------------------------------------------------------------- CFP-FP


def make_cfp(root: Path, splits: int = 2) -> Path:
    protocol = root / "Protocol"
    frontal = [f"{i} ../Data/Images/{(i + 1) // 2:03d}/frontal/{(i - 1) % 2 + 1:02d}.jpg" for i in range(1, 7)]
    profile = [f"{i} ../Data/Images/{i:03d}/profile/01.jpg" for i in range(1, 4)]
    protocol.mkdir(parents=True)
    (protocol / "Pair_list_F.txt").write_text("\n".join(frontal) + "\n")
    (protocol / "Pair_list_P.txt").write_text("\n".join(profile) + "\n")
    for line in frontal + profile:
        write_image(protocol / line.split()[1], int(line.split()[0]))
    for s in range(1, splits + 1):
        split = protocol / "Split" / "FP" / f"{s:02d}"
        split.mkdir(parents=True)
        (split / "same.txt").write_text(f"{2 * s - 1},{s}\n{2 * s},{s}\n")
        (split / "diff.txt").write_text(f"{2 * s - 1},{s % 3 + 1}\n{2 * s},{(s + 1) % 3 + 1}\n")
    return root


def test_cfp_fp_reader_uses_its_splits(tmp_path: Path) -> None:
    root = make_cfp(tmp_path / "cfp")
    bench = load_benchmark("cfp_fp", root)
    images = root / "Data" / "Images"
    assert bench.name == "cfp-fp" and bench.title == "CFP-FP"
    assert pair_paths(bench)[:3] == [
        (images / "001/frontal/01.jpg", images / "001/profile/01.jpg"),
        (images / "001/frontal/02.jpg", images / "001/profile/01.jpg"),
        (images / "001/frontal/01.jpg", images / "002/profile/01.jpg"),
    ]
    assert bench.issame.tolist() == [True, True, False, False] * 2
    assert bench.folds.tolist() == [0] * 4 + [1] * 4


def test_cfp_fp_unknown_image_number(tmp_path: Path) -> None:
    root = make_cfp(tmp_path / "cfp")
    (root / "Protocol/Split/FP/02/diff.txt").write_text("3,9\n")
    with pytest.raises(UserError, match=r"02/diff\.txt:1: image number 9 is not in Pair_list_P\.txt"):
        load_benchmark("cfp-fp", root)


# ---------------------------------------------------------------- CALFW / CPLFW


@pytest.mark.parametrize("name, file_name, positive", [("calfw", "pairs_CALFW.txt", "1187"), ("cplfw", "pairs_CPLFW.txt", "1")])
def test_calfw_cplfw_pair_lists(tmp_path: Path, name: str, file_name: str, positive: str) -> None:
    root = tmp_path / name
    for i, image_name in enumerate(["A_1", "A_2", "B_1", "C_1"]):
        write_image(root / "aligned images" / f"{image_name}.png", i)  # re-encoded: .png for .jpg entries
    lines = [f"A_1.jpg {positive}", f"A_2.jpg {positive}", "A_1.jpg 0", "B_1.jpg 0", "B_1.jpg 0", "C_1.jpg 0"]
    (root / file_name).write_text("\n".join(lines) + "\n")
    bench = load_benchmark(name, root)
    aligned = root / "aligned images"
    assert pair_paths(bench) == [
        (aligned / "A_1.png", aligned / "A_2.png"),
        (aligned / "A_1.png", aligned / "B_1.png"),
        (aligned / "B_1.png", aligned / "C_1.png"),
    ]
    assert bench.issame.tolist() == [True, False, False] and bench.folds is None
    (root / file_name).write_text("\n".join(lines[:3] + ["B_1.jpg 5"] + lines[4:]) + "\n")
    with pytest.raises(UserError, match=rf"{file_name}:3-4: one line says same pair"):
        load_benchmark(name, root)
    (root / file_name).write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(UserError, match="5 lines; a pair list needs two lines per pair"):
        load_benchmark(name, root)


# ---------------------------------------------------------------- pairs.csv


def test_pairs_csv_with_header_and_folds(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    for i in range(4):
        write_image(root / "img" / f"{i}.jpg", i)
    (root / "pairs.csv").write_text("path1,path2,same,fold\nimg/0.jpg,img/1.jpg,1,3\nimg/2.jpg,img/3.jpg,false,1\nimg/0.jpg,img/2.jpg,yes,3\n")
    bench = load_benchmark("mine", root)
    expected = [(root / "img/0.jpg", root / "img/1.jpg"), (root / "img/2.jpg", root / "img/3.jpg"), (root / "img/0.jpg", root / "img/2.jpg")]
    assert pair_paths(bench) == expected
    assert bench.issame.tolist() == [True, False, True] and bench.folds.tolist() == [3, 1, 3]
    assert bench.fold_ids().tolist() == [3, 1, 3]
    assert bench.title == "mine"


def test_pairs_csv_without_header_or_folds_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    for i in range(2):
        write_image(root / f"{i}.png", i)
    (root / "pairs.csv").write_text(f"0.png,{root / '1.png'},0\n")
    bench = load_benchmark("other", root / "pairs.csv")
    assert pair_paths(bench) == [(root / "0.png", root / "1.png")] and bench.folds is None
    (root / "pairs.csv").write_text("0.png,1.png,maybe\n")
    with pytest.raises(UserError, match=r"pairs\.csv: no pairs"):  # 'maybe' looks like a header, nothing follows
        load_benchmark("other", root)
    (root / "pairs.csv").write_text("a,b,same\n0.png,1.png,maybe\n")
    with pytest.raises(UserError, match=r"pairs\.csv:2: same must be 1/0"):
        load_benchmark("other", root)
    (root / "pairs.csv").write_text("0.png,2.png,1\n")
    with pytest.raises(UserError, match=r"pairs\.csv:1: image .*2\.png not found"):
        load_benchmark("other", root)


# ---------------------------------------------------------------- .bin


def make_bin(path: Path, num_pairs: int = 4, labels: str = "list", protocol: int = pickle.HIGHEST_PROTOCOL) -> tuple[list[bytes], list[bool]]:
    """A .bin the way the shared files are made: pickle.dumps((encoded images, labels))."""
    images = [write_image(path.parent / "src" / f"{i}.jpg", i) for i in range(2 * num_pairs)]
    issame = [i % 2 == 0 for i in range(num_pairs)]
    stored = {"list": issame, "array": np.array(issame), "scalars": [np.bool_(x) for x in issame]}[labels]
    path.write_bytes(pickle.dumps((images, stored), protocol=protocol))
    return images, issame


@pytest.mark.parametrize("labels, protocol", [("list", 2), ("list", 5), ("array", 2), ("array", 5), ("scalars", 4)])
def test_bin_reader(tmp_path: Path, labels: str, protocol: int) -> None:
    images, issame = make_bin(tmp_path / "agedb_30.bin", num_pairs=12, labels=labels, protocol=protocol)
    bench = load_benchmark("agedb_30", tmp_path / "agedb_30.bin")
    assert bench.name == "agedb-30" and bench.title == "AgeDB-30" and bench.folds is None
    assert bench.fold_ids().tolist() == [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # KFold(10): the first two one longer
    assert bench.issame.tolist() == issame
    assert [bench.images[i] for i in bench.pairs.ravel()] == images
    decoded = cv2.imdecode(np.frombuffer(bench.image_bytes(int(bench.pairs[1, 0])), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (SIZE, SIZE, 3)
    assert "agedb_30.bin (image 5)" in bench.image_name(5)


def test_python2_era_bin(tmp_path: Path) -> None:
    """The shared files were pickled by Python 2: images as ``str`` (SHORT_BINSTRING), labels as bools."""
    images = [write_image(tmp_path / f"{i}.png", i) for i in range(2)]

    def binstring(data: bytes) -> bytes:  # BINSTRING: 'T' + 4-byte length + data
        return b"T" + len(data).to_bytes(4, "little") + data

    payload = b"\x80\x02]q\x00(" + b"".join(binstring(i) for i in images) + b"e]q\x01\x89a\x86q\x02."
    (tmp_path / "lfw.bin").write_bytes(payload)
    bench = load_benchmark("lfw", tmp_path / "lfw.bin")
    assert list(bench.images) == images and bench.issame.tolist() == [False]


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("shape", [(-1, 1), (-1,)], ids=["n-by-1", "flat"])
def test_current_insightface_bin_with_imencode_arrays(tmp_path: Path, protocol: int, shape: tuple[int, ...]) -> None:
    """insightface's build_eval_pack.py stores each cv2.imencode result: a uint8 array, of shape (n, 1) in the
    packs the issue names and (n,) from the OpenCV installed here."""
    photos = [np.full((SIZE, SIZE, 3), 40 * i, np.uint8) for i in range(4)]
    encoded = [cv2.imencode(".jpg", photo)[1].reshape(shape) for photo in photos]
    (tmp_path / "cplfw.bin").write_bytes(pickle.dumps((encoded, [True, False]), protocol=protocol))
    bench = load_benchmark("cplfw", tmp_path / "cplfw.bin")
    assert [bench.images[i] for i in bench.pairs.ravel()] == [e.tobytes() for e in encoded]
    assert bench.issame.tolist() == [True, False]
    again = cv2.imdecode(np.frombuffer(bench.image_bytes(int(bench.pairs[1, 1])), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(again, cv2.imdecode(encoded[3], cv2.IMREAD_COLOR))


@pytest.mark.parametrize(
    "entry, said",
    [
        (np.zeros((4, 3), np.uint8), r"image entry 1 is an array of uint8 with shape \(4, 3\)"),
        (np.zeros(5, np.float32), r"image entry 1 is an array of float32"),
        (np.array([b"x"], dtype=object), r"image entry 1 is an array of object"),
        (7, r"image entry 1 is a int"),
    ],
)
def test_bin_entry_that_is_no_encoded_image_is_refused(tmp_path: Path, entry: object, said: str) -> None:
    (tmp_path / "x.bin").write_bytes(pickle.dumps(([b"a", entry], [True])))
    with pytest.raises(UserError, match=rf"x\.bin: not a benchmark \.bin \({said}"):
        load_benchmark("x", tmp_path / "x.bin")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_bin_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "lfw.bin"
    evil.write_bytes(pickle.dumps(([b"x", b"y"], [_Exploit(marker)])))
    with pytest.raises(UserError, match=r"lfw\.bin: not a benchmark \.bin \(global '(posix|os)\.system' is not allowed"):
        load_benchmark("lfw", evil)
    assert not marker.exists()
    result = CliRunner().invoke(main, ["pack", "--data", str(evil), "--out", str(tmp_path / "copy.bin")])
    assert result.exit_code == 2 and "is not allowed" in result.output and not marker.exists()


class _OtherCodec:
    def __reduce__(self):
        import codecs

        return (codecs.encode, ("eJwLycgsVgCi4vzcVIXEvBSF4pL8olQFAFRMBqk=", "base64"))


def test_bin_codec_other_than_latin1_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(pickle.dumps(([_OtherCodec(), b"b"], [True]), protocol=2))
    with pytest.raises(UserError, match="codec 'base64' is not allowed"):
        load_benchmark("x", tmp_path / "x.bin")


def test_bin_with_wrong_counts_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(UserError, match="3 images for 1 pairs"):
        load_benchmark("x", tmp_path / "x.bin")


# ---------------------------------------------------------------- lookup under a data root


def test_find_benchmarks_under_a_data_root(tmp_path: Path) -> None:
    make_bin(tmp_path / "bins" / "lfw.bin")
    make_bin(tmp_path / "agedb_30.bin")
    make_cfp(tmp_path / "cfp_fp")
    found, missing = find_benchmarks(tmp_path)
    assert found == {"lfw": tmp_path / "bins" / "lfw.bin", "cfp-fp": tmp_path / "cfp_fp", "agedb-30": tmp_path / "agedb_30.bin"}
    assert missing == ["cplfw", "calfw"]
    with pytest.raises(UserError, match="unknown benchmark 'foo'"):
        find_benchmarks(tmp_path, ["foo"])


def test_unknown_layout_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: no benchmark found for cfp-fp \(expected a \.bin, a folder with Protocol/Pair_list_F\.txt"):
        load_benchmark("cfp-fp", tmp_path / "empty")
    # a name that is not a standard benchmark: say which names read the original layouts
    with pytest.raises(
        UserError,
        match=r"empty: no benchmark found for mine \(expected a \.bin or a folder with "
        r"pairs\.csv\); for a standard layout name the benchmark \(lfw, cfp-fp",
    ):
        load_benchmark("mine", tmp_path / "empty")


# ---------------------------------------------------------------- pack


def test_pack_layout_to_bin_read_back_by_plain_pickle(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    out = tmp_path / "lfw.bin"
    result = CliRunner().invoke(main, ["pack", "--data", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "8 pairs (4 same)" in result.output
    assert "warning: LFW defines its own folds" in result.output  # its 2 sets cannot be a .bin's 10 folds
    bench = load_benchmark("lfw", root)
    images, issame = pickle.loads(out.read_bytes())  # a second reader: the format other tools use
    assert issame == bench.issame.tolist()
    assert images == [bench.images[i].read_bytes() for i in bench.pairs.ravel()]
    again = CliRunner().invoke(main, ["pack", "--data", str(root), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert pickle.loads(out.read_bytes())[1] == issame
    (root / "aligned" / "Cy_C" / "Cy_C_0002.jpg").write_bytes(b"truncated")
    broken = CliRunner().invoke(main, ["pack", "--data", str(root), "--out", str(tmp_path / "other.bin")])
    assert broken.exit_code == 2 and "Cy_C_0002.jpg: not a readable image" in broken.output
    assert not (tmp_path / "other.bin").exists()


def test_pack_out_naming_a_file_it_reads_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    make_bin(tmp_path / "agedb_30.bin")
    image = next((root / "aligned").rglob("*.jpg"))
    (tmp_path / "link.bin").symlink_to(tmp_path / "agedb_30.bin")  # another name for the file packed
    victims = [
        (root, root / "pairs.txt"),
        (root / "pairs.txt", root / "pairs.txt"),
        (root, image),
        (tmp_path / "agedb_30.bin", tmp_path / "agedb_30.bin"),
        (tmp_path / "agedb_30.bin", tmp_path / "link.bin"),
    ]
    for data, out in victims:
        before = out.read_bytes()
        result = CliRunner().invoke(main, ["pack", "--data", str(data), "--out", str(out), "--overwrite"])
        assert result.exit_code == 2, (data, out, result.output)
        assert (
            result.output.strip() == f"error: {out}: is a file of the benchmark it packs; refusing to write the .bin over it (choose another --out)"
        )
        assert out.read_bytes() == before
    # a .bin written into the benchmark's folder before may be replaced when asked
    for _ in range(2):
        result = CliRunner().invoke(main, ["pack", "--data", str(root), "--out", str(root / "lfw.bin"), "--overwrite"])
        assert result.exit_code == 0, result.output


def test_pack_orders_pairs_by_fold_and_reports_lost_folds(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    for i in range(4):
        write_image(root / f"{i}.jpg", i)
    rows = [f"{i % 4}.jpg,{(i + 1) % 4}.jpg,{i % 2},{9 - i % 10}" for i in range(20)]  # folds 9..0, twice
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    report = pack_benchmark(load_benchmark("mine", root), tmp_path / "mine.bin")
    assert report.folds_preserved
    images, issame = read_bin(tmp_path / "mine.bin")
    order = [9, 19, 8, 18, 7, 17, 6, 16, 5, 15, 4, 14, 3, 13, 2, 12, 1, 11, 0, 10]  # fold 0 first
    assert issame.tolist() == [i % 2 == 1 for i in order]
    (root / "pairs.csv").write_text("\n".join(rows[:19]) + "\n")  # uneven folds that KFold would cut otherwise
    result = CliRunner().invoke(main, ["pack", "--benchmark", "mine", "--data", str(root), "--out", str(tmp_path / "b.bin")])
    assert result.exit_code == 0 and "warning: mine defines its own folds" in result.output
