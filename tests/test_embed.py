"""Embedding: flip modes against the model called by hand, and ``facestra embed`` end to end on a saved checkpoint."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.data.images import image_to_tensor
from facestra.embed import read_paths
from facestra.embed.inference import InferenceOptions, embed_benchmark, embed_images
from facestra.errors import UserError
from facestra.protocols import load_benchmark

INPUT = (32, 32)
THREE = InferenceOptions(batch_size=3, workers=0)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = models.create("resnet18", width=0.125, input_size=INPUT)
    # non-trivial BN statistics so that eval and train mode differ
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    models.save(model, path)
    return path


def face_images(folder: Path, count: int, size: tuple[int, int] = INPUT, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        image = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
        image[:, : size[1] // 3] = 40 * (i % 5)  # not mirror-symmetric, so the mirror matters
        path = folder / f"face_{i:03d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def by_hand(model, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's raw embeddings of the images and of their mirror images, computed one by one."""
    with torch.no_grad():
        x = torch.stack([image_to_tensor(cv2.imread(str(p))) for p in paths])
        mirrored = torch.stack([image_to_tensor(cv2.imread(str(p))[:, ::-1]) for p in paths])
        return model(x), model(mirrored)


@pytest.mark.parametrize("flip", ["concat", "sum", "none"])
@pytest.mark.parametrize("normalize", [True, False])
def test_flip_modes_match_the_model_called_by_hand(model, tmp_path: Path, flip: str, normalize: bool) -> None:
    paths = face_images(tmp_path, 7)
    plain, mirror = by_hand(model, paths)
    expected = {"concat": torch.cat([plain, mirror], dim=1), "sum": plain + mirror, "none": plain}[flip]
    if normalize:
        expected = F.normalize(expected, dim=1)
    got = embed_images(model, paths, InferenceOptions(flip=flip, batch_size=3, workers=0), normalize=normalize)
    assert got.dtype == np.float32 and got.shape == tuple(expected.shape)
    assert np.allclose(got, expected.numpy(), atol=1e-5)
    if normalize:
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert not np.allclose(plain.numpy(), mirror.numpy(), atol=1e-3)  # the mirror really changes the input


def test_embedding_leaves_a_training_model_in_training_mode(model, tmp_path: Path) -> None:
    paths = face_images(tmp_path, 4)
    model.train()
    try:
        got = embed_images(model, paths, InferenceOptions(flip="none", workers=0), normalize=False)
        assert model.training
    finally:
        model.eval()
    plain, _ = by_hand(model, paths)  # eval-mode reference: BN running statistics, not batch statistics
    assert np.allclose(got, plain.numpy(), atol=1e-5)


def test_embed_benchmark_pairs_rows(model, tmp_path: Path) -> None:
    paths = face_images(tmp_path / "img", 4)
    (tmp_path / "pairs.csv").write_text(
        "img/face_000.png,img/face_001.png,1\nimg/face_002.png,img/face_000.png,0\nimg/face_003.png,img/face_003.png,1\n"
    )
    bench = load_benchmark("mine", tmp_path)
    emb1, emb2 = embed_benchmark(model, bench, InferenceOptions(flip="concat", batch_size=2, workers=0))
    single = embed_images(model, paths, InferenceOptions(flip="concat", workers=0))
    assert np.allclose(emb1, single[[0, 2, 3]], atol=1e-5) and np.allclose(emb2, single[[1, 0, 3]], atol=1e-5)


def run_embed(*args: str):
    return CliRunner().invoke(main, ["embed", *args])


def test_embed_cli_writes_matrix_and_paths(model, checkpoint: Path, tmp_path: Path) -> None:
    paths = face_images(tmp_path / "faces" / "sub", 9)
    out = tmp_path / "emb.npy"
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(out), "--batch-size", "4", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (9 x 1024 float32)" in result.stdout
    matrix = np.load(out, mmap_mode="r")
    assert matrix.dtype == np.float32 and matrix.shape == (9, 1024)
    listed = (tmp_path / "emb.paths.txt").read_text().splitlines()
    assert listed == [str(p) for p in paths]
    plain, mirror = by_hand(model, paths)
    assert np.allclose(matrix, F.normalize(torch.cat([plain, mirror], 1), dim=1).numpy(), atol=1e-5)
    # a list file, another flip mode and raw vectors
    (tmp_path / "list.txt").write_text("faces/sub/face_004.png\n" + f"{paths[1]} 7\n")
    result = run_embed(
        str(tmp_path / "list.txt"),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(tmp_path / "b.npy"),
        "--flip",
        "none",
        "--no-normalize",
        "--workers",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert np.allclose(np.load(tmp_path / "b.npy"), plain.numpy()[[4, 1]], atol=1e-5)
    assert (tmp_path / "b.paths.txt").read_text().splitlines() == [str(tmp_path / "faces/sub/face_004.png"), str(paths[1])]
    # never overwrites without being asked
    again = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "0")
    assert again.exit_code == 2 and "already exists" in again.output


def test_unreadable_image_exits_1_and_writes_nothing(checkpoint: Path, tmp_path: Path) -> None:
    paths = face_images(tmp_path / "faces", 6)
    paths[3].write_bytes(b"not an image")
    out = tmp_path / "emb.npy"
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(out), "--batch-size", "2", "--workers", "0")
    assert result.exit_code == 1
    assert f"error: {paths[3]}: not a readable image" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]  # no matrix, no paths, no temp files
    result = run_embed(
        str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(out), "--batch-size", "2", "--workers", "0", "--skip-bad"
    )
    assert result.exit_code == 0, result.output
    assert f"skipped: {paths[3]}: not a readable image" in result.output
    assert np.load(out).shape == (5, 1024)
    assert (tmp_path / "emb.paths.txt").read_text().splitlines() == [str(p) for i, p in enumerate(paths) if i != 3]
    full = embed_images(models.load(checkpoint), [p for i, p in enumerate(paths) if i != 3], InferenceOptions(workers=0))
    assert np.allclose(np.load(out), full, atol=1e-5)


def test_wrong_size_says_to_align_unless_resize(checkpoint: Path, tmp_path: Path) -> None:
    face_images(tmp_path / "faces", 3, size=(48, 40))
    out = tmp_path / "emb.npy"
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "0")
    assert result.exit_code == 2
    assert "face_000.png: image is 40x48 but the model takes 32x32; align the faces first with `facestra align`" in result.output
    assert not out.exists()
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "0", "--resize")
    assert result.exit_code == 0 and np.load(out).shape == (3, 1024)


def test_missing_checkpoint_and_empty_folder(checkpoint: Path, tmp_path: Path) -> None:
    face_images(tmp_path / "faces", 2)
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "e.npy"))
    assert result.exit_code == 2 and "nope.pt: no such checkpoint file" in result.output
    (tmp_path / "empty").mkdir()
    result = run_embed(str(tmp_path / "empty"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e.npy"))
    assert result.exit_code == 2 and "empty: no images found" in result.output


def test_batched_pixel_normalisation_is_image_to_tensor_bit_for_bit() -> None:
    from facestra.data.images import normalize

    bgr = np.random.default_rng(3).integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    one_by_one = torch.stack([image_to_tensor(image) for image in bgr])
    batched = normalize(torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])))
    assert torch.equal(batched, one_by_one)


class _Interrupt(Exception):
    pass


def embed_until_interrupted(model, paths: list[Path], out: Path, options: InferenceOptions, *, batches: int = 1, **keywords) -> None:
    """``embed_to_file`` stopped, as by Ctrl-C, once ``batches`` batches are done."""
    from facestra.embed.job import embed_to_file

    done: list[int] = []

    def interrupt(count: int) -> None:
        done.append(count)
        if len(done) == batches:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        embed_to_file(model, paths, out, options, progress=interrupt, **keywords)


def test_interrupted_embed_resumes_where_it_stopped(model, tmp_path: Path) -> None:
    from facestra.embed.job import embed_to_file

    paths = face_images(tmp_path / "faces", 10)
    out = tmp_path / "emb.npy"
    embed_until_interrupted(model, paths, out, THREE, batches=2)
    assert not out.exists() and not (tmp_path / "emb.paths.txt").exists()
    assert (tmp_path / ".emb.npy.partial.npy").exists()

    batches: list[int] = []
    report = embed_to_file(model, paths, out, THREE, progress=batches.append)
    assert report.resumed_from == 6 and batches == [6, 3, 1]  # the 6 done images are not embedded again
    assert np.allclose(np.load(out), embed_images(model, paths, THREE), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "emb.paths.txt", "faces"]


def test_partial_output_of_another_job_is_not_reused(model, tmp_path: Path) -> None:
    from facestra.embed.job import embed_to_file

    paths = face_images(tmp_path / "faces", 6)
    out = tmp_path / "emb.npy"
    embed_until_interrupted(model, paths, out, InferenceOptions(flip="sum", batch_size=3, workers=0))
    report = embed_to_file(model, paths, out, InferenceOptions(flip="sum", batch_size=3, workers=0), normalize=False)  # other options
    assert report.resumed_from == 0
    assert np.allclose(np.load(out), embed_images(model, paths, InferenceOptions(flip="sum", workers=0), normalize=False), atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    face_images(tmp_path / "faces", 1)
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e.npy"), "--device", "cuda")
    assert result.exit_code == 2 and "--device cuda: no CUDA GPU is available" in result.output


def test_resume_keeps_the_images_skipped_before_the_interruption(model, tmp_path: Path) -> None:
    from facestra.embed.job import embed_to_file

    paths = face_images(tmp_path / "faces", 8)
    paths[1].write_bytes(b"broken")
    out = tmp_path / "emb.npy"
    embed_until_interrupted(model, paths, out, THREE, skip_bad=True)
    report = embed_to_file(model, paths, out, THREE, skip_bad=True)
    good = [p for i, p in enumerate(paths) if i != 1]
    assert report.resumed_from == 3 and [f.index for f in report.skipped] == [1] and report.rows == 7
    assert (tmp_path / "emb.paths.txt").read_text().splitlines() == [str(p) for p in good]
    assert np.allclose(np.load(out), embed_images(model, good, THREE), atol=1e-5)


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(checkpoint: Path, tmp_path: Path) -> None:
    paths = face_images(tmp_path / "faces", 3)
    before = paths[1].read_bytes()
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(paths[1]), "--overwrite", "--workers", "0")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {paths[1]}: is one of the inputs; refusing to write over it (choose another output)"
    assert paths[1].read_bytes() == before
    # the paths file of --out would be the list INPUT itself (named through another spelling of its folder)
    listing = tmp_path / "e.paths.txt"
    listing.write_text("".join(f"faces/{p.name}\n" for p in paths))
    result = run_embed(
        str(listing), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "faces" / ".." / "e.npy"), "--overwrite", "--workers", "0"
    )
    assert result.exit_code == 2 and f"{listing}: is one of the inputs" in result.output
    assert listing.read_text() == "".join(f"faces/{p.name}\n" for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.paths.txt", "faces"]


def test_a_model_with_non_finite_outputs_is_refused_by_embed_and_verify(model, tmp_path: Path) -> None:
    diverged = copy.deepcopy(model)
    with torch.no_grad():
        diverged.head.bn_embedding.running_var[3] = float("nan")  # one embedding component NaN, as after a diverged run
    broken = tmp_path / "diverged.pt"
    models.save(diverged, broken)
    paths = face_images(tmp_path / "faces", 3)
    out = tmp_path / "e.npy"
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(broken), "--out", str(out), "--workers", "0", "--skip-bad")
    assert result.exit_code == 1
    assert f"error: {paths[0]}: the model's embedding is not finite (NaN or infinity)" in result.output
    assert not out.exists() and not (tmp_path / "e.paths.txt").exists()
    (tmp_path / "pairs.csv").write_text(
        "".join(f"faces/{a.name},faces/{b.name},{s}\n" for a, b, s in [(paths[0], paths[1], 1), (paths[1], paths[2], 0)] * 10)
    )
    result = CliRunner().invoke(main, ["verify", "--checkpoint", str(broken), "--data", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 1 and "the model's embedding is not finite" in result.output


def _constant_model(model, value: float) -> torch.nn.Module:
    """``model`` whose last layer ignores its input: every embedding is ``value`` in every component."""
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.head.bn_embedding.weight.zero_()
        broken.head.bn_embedding.bias.fill_(value)
    return broken


@pytest.mark.parametrize(("value", "message"), [(0.0, "the model's embedding is all zero"), (0.5, "the model gives every image the same embedding")])
def test_all_zero_or_identical_embeddings_are_refused_in_embed_verify_and_compare(model, tmp_path: Path, value, message) -> None:
    broken = tmp_path / "broken.pt"
    models.save(_constant_model(model, value), broken)
    paths = face_images(tmp_path / "faces", 4)
    out = tmp_path / "e.npy"
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(broken), "--out", str(out), "--workers", "0")
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {paths[0]}") and message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt", "faces"]  # no matrix, listing or partial
    (tmp_path / "pairs.csv").write_text(
        "".join(f"faces/{a.name},faces/{b.name},{s}\n" for a, b, s in [(paths[0], paths[1], 1), (paths[2], paths[3], 0)] * 10)
    )
    result = CliRunner().invoke(main, ["verify", "--checkpoint", str(broken), "--data", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 1 and message in result.output, result.output
    # compare embeds its two crops with embed_images: two different faces are refused, one face twice is not
    crops = [p.read_bytes() for p in paths[:2]]
    constant = models.load(broken)
    with pytest.raises(UserError, match=message):
        embed_images(constant, crops, THREE, names=["first", "second"])
    if value:
        same = embed_images(constant, [crops[0], crops[0]], THREE)
        assert np.array_equal(same[0], same[1])


def test_identical_images_may_have_identical_embeddings(model, tmp_path: Path) -> None:
    paths = face_images(tmp_path / "faces", 1)
    copies = [paths[0]] + [paths[0].with_name(f"copy_{i}.png") for i in range(3)]
    for copy_path in copies[1:]:
        copy_path.write_bytes(paths[0].read_bytes())
    models.save(_constant_model(model, 0.5), tmp_path / "m.pt")
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "e.npy"), "--workers", "0")
    assert result.exit_code == 0, result.output
    matrix = np.load(tmp_path / "e.npy")
    assert matrix.shape == (4, 2 * model.embedding_size) and (matrix == matrix[0]).all()


def test_a_changed_image_is_embedded_again_not_resumed(model, tmp_path: Path) -> None:
    from facestra.embed.job import embed_to_file

    paths = face_images(tmp_path / "faces", 6)
    out = tmp_path / "emb.npy"
    embed_until_interrupted(model, paths, out, THREE)  # the first 3 rows are done
    replacement = face_images(tmp_path / "other", 6, seed=7)
    paths[1].write_bytes(replacement[4].read_bytes())  # same name, new face
    report = embed_to_file(model, paths, out, THREE)
    assert report.resumed_from == 0
    np.testing.assert_allclose(np.load(out), embed_images(model, paths, THREE), atol=1e-5)


def test_the_paths_file_reads_back_as_a_list_from_any_folder(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    face_images(tmp_path / "data" / "faces", 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "data")  # relative INPUT and --out
    result = run_embed("faces", "--checkpoint", str(checkpoint), "--out", "../out/e.npy", "--workers", "0")
    assert result.exit_code == 0, result.output
    listed = read_paths(tmp_path / "out" / "e.paths.txt")
    assert listed == [str(tmp_path / "data" / "faces" / f"face_{i:03d}.png") for i in range(3)]
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = run_embed(str(tmp_path / "out" / "e.paths.txt"), "--checkpoint", str(checkpoint), "--out", "again.npy", "--workers", "0")
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.load("again.npy"), np.load(tmp_path / "out" / "e.npy"))
    assert read_paths("again.paths.txt") == listed


def test_a_refused_embed_leaves_no_output_folder(checkpoint: Path, tmp_path: Path) -> None:
    face_images(tmp_path / "faces", 2)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "new" / "deep" / "e.npy"))
    assert result.exit_code == 2 and "not a readable checkpoint" in result.output
    assert not (tmp_path / "new").exists()


def test_a_killed_writers_temporaries_are_removed_by_the_next_run(checkpoint: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    face_images(tmp_path / "faces", 2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    left = [
        tmp_path / f".e.npy.{dead_pid}-0123456789ab.tmp.npy",
        tmp_path / f".e.paths.txt.{dead_pid}-0123456789ab.tmp.txt",
        tmp_path / ".e.paths.txt.ba9876543210.tmp.txt",
    ]  # a temporary of facestra 0.2, which named no process
    alive = tmp_path / f".e.npy.{os.getppid()}-0123456789ab.tmp.npy"  # a live process's: perhaps a concurrent run
    for path in [*left, alive]:
        path.write_bytes(b"half")
    result = run_embed(str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e.npy"), "--workers", "0")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "e.npy", "e.paths.txt", "faces"])


def test_a_crash_while_publishing_never_leaves_a_listing_beside_a_matrix_of_other_rows(model, tmp_path: Path, monkeypatch) -> None:
    from facestra.embed import job

    paths = face_images(tmp_path / "faces", 5)
    out = tmp_path / "emb.npy"
    job.embed_to_file(model, paths[:3], out, THREE)

    replace = os.replace

    def crash_at_the_matrix(source, target):
        if Path(target) == out:  # killed just as the new matrix would take its name
            raise _Interrupt
        replace(source, target)

    monkeypatch.setattr(job.os, "replace", crash_at_the_matrix)
    with pytest.raises(_Interrupt):
        job.embed_to_file(model, paths, out, THREE, overwrite=True)
    monkeypatch.undo()
    listing = tmp_path / "emb.paths.txt"
    assert not listing.exists() or len(read_paths(listing)) == len(np.load(out))
    job.embed_to_file(model, paths, out, THREE, overwrite=True)  # the rerun finishes the job
    assert read_paths(listing) == [str(p) for p in paths] and len(np.load(out)) == 5
