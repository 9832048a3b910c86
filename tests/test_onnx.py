"""ONNX recognition models in (embed/verify/compare --checkpoint model.onnx) and out (facestra export).

insightface is not installed here; the test spells out what its model router and ``ArcFaceONNX`` do with a
file (route a 112x112-input model with one output to recognition, infer the input mean/std from the names
of the first eight nodes, ``cv2.dnn.blobFromImages`` with ``swapRB``) and checks facestra against that.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from _arcface_state import arcface_inference_input, arcface_state_dict, functional_forward
from click.testing import CliRunner
from torch import nn

from facestra import models
from facestra.cli.main import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def arcface_onnx_features(path, bgr_images: list[np.ndarray]) -> np.ndarray:
    """insightface's ModelRouter + ArcFaceONNX.get_feat, as they are written."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert len(session.get_outputs()) == 1 and shape[2] == 112 and shape[3] == 112  # routed to ArcFaceONNX
    names = [node.name for node in onnx.load(str(path)).graph.node[:8]]
    mxnet_style = any(n.startswith(("Sub", "_minus")) for n in names) and any(n.startswith(("Mul", "_mul")) for n in names)
    mean, std = (0.0, 1.0) if mxnet_style else (127.5, 127.5)
    blob = cv2.dnn.blobFromImages(bgr_images, 1.0 / std, (112, 112), (mean, mean, mean), swapRB=True)
    return session.run(None, {session.get_inputs()[0].name: blob})[0]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(2)
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (5, 5), 0))
    return folder


def _images(folder) -> list[np.ndarray]:
    return [cv2.imread(str(folder / f"{i}.png")) for i in range(5)]


def _embed(folder, checkpoint, out, *extra) -> np.ndarray:
    result = run("embed", folder, "--checkpoint", checkpoint, "--workers", "0", "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return np.load(out)


def test_exported_facestra_model_gives_facestra_features_through_arcface_onnx(faces, tmp_path) -> None:
    torch.manual_seed(0)
    model = models.create("resnet50_stra", width=0.125, embedding_size=64)
    model.train()
    model(torch.randn(8, 3, 112, 112))
    models.save(model.eval(), tmp_path / "model.pt")
    result = run("export", tmp_path / "model.pt", "--onnx", tmp_path / "model.onnx")
    assert result.exit_code == 0, result.output
    assert "raw RGB pixels" in result.output
    expected = _embed(faces, tmp_path / "model.pt", tmp_path / "pt.npy", "--flip", "none", "--no-normalize")
    np.testing.assert_allclose(arcface_onnx_features(tmp_path / "model.onnx", _images(faces)), expected, rtol=1e-4, atol=1e-5)
    # and facestra reads its own export back to the same protocol features (mirror, concatenation, L2)
    protocol = _embed(faces, tmp_path / "model.pt", tmp_path / "pt2.npy")
    np.testing.assert_allclose(_embed(faces, tmp_path / "model.onnx", tmp_path / "onnx.npy"), protocol, atol=1e-5)

    again = run("export", tmp_path / "model.pt", "--onnx", tmp_path / "model.onnx")
    assert again.exit_code == 2 and "already exists (pass --overwrite" in again.output
    onto_input = run("export", tmp_path / "model.pt", "--onnx", tmp_path / "model.pt", "--overwrite")
    assert onto_input.exit_code == 2 and torch.load(tmp_path / "model.pt", weights_only=True)["arch"] == "resnet50_stra"


def test_an_iresnet_with_arcface_weights_exports_bare_as_torch2onnx_does(faces, tmp_path) -> None:
    state = arcface_state_dict("iresnet18")
    torch.save(state, tmp_path / "backbone.pth")
    result = run("export", tmp_path / "backbone.pth", "--onnx", tmp_path / "r18.onnx")
    assert result.exit_code == 0, result.output
    assert "RGB (x - 127.5) / 127.5" in result.output
    images = _images(faces)
    expected = functional_forward(state, "iresnet18", arcface_inference_input(images)).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(arcface_onnx_features(tmp_path / "r18.onnx", images), expected, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(_embed(faces, tmp_path / "r18.onnx", tmp_path / "e.npy", "--flip", "none", "--no-normalize"),
                               expected, rtol=1e-4, atol=1e-4 * scale)


class _MxnetStyle(nn.Module):
    """A network that normalises its raw-pixel input itself, as the mxnet-era model zoo files do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4)
        self.fc = nn.Linear(8 * 28 * 28, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv((x - 127.5) * 0.0078125)).flatten(1))


def test_an_mxnet_style_model_with_batch_one_gets_raw_pixels(faces, tmp_path) -> None:
    torch.manual_seed(0)
    network = _MxnetStyle().eval()
    path = tmp_path / "mx.onnx"
    torch.onnx.export(network, (torch.zeros(1, 3, 112, 112),), str(path), input_names=["data"], output_names=["fc1"], dynamo=False)
    proto = onnx.load(str(path))
    for node in proto.graph.node:  # mxnet's node names; the batch stays fixed at 1
        node.name = {"Sub": "_minusscalar0", "Mul": "_mulscalar0"}.get(node.op_type, node.name)
    onnx.save(proto, str(path))
    assert ort.InferenceSession(str(path)).get_inputs()[0].shape[0] == 1

    got = _embed(faces, path, tmp_path / "mx.npy")  # flip concat, L2-normalised
    raw = torch.from_numpy(np.stack([im[:, :, ::-1].transpose(2, 0, 1) for im in _images(faces)]).astype(np.float32))
    with torch.no_grad():
        both = torch.cat([network(raw), network(raw.flip(3))], dim=1)
    np.testing.assert_allclose(got, torch.nn.functional.normalize(both, dim=1).numpy(), atol=1e-5)


def test_bad_onnx_files_and_options_are_one_line(faces, tmp_path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 not a protobuf at all")
    result = run("embed", faces, "--checkpoint", tmp_path / "junk.onnx", "--workers", "0", "--out", tmp_path / "e.npy")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[0].startswith(f"error: {tmp_path / 'junk.onnx'}: not a readable ONNX model")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "e.npy").exists()
    network = _MxnetStyle().eval()
    torch.onnx.export(network, (torch.zeros(1, 3, 112, 112),), str(tmp_path / "ok.onnx"), dynamo=False)
    with_arch = run("embed", faces, "--checkpoint", tmp_path / "ok.onnx", "--arch", "iresnet50", "--out", tmp_path / "e.npy")
    assert with_arch.exit_code == 2 and "is an ONNX model, which holds its own network; leave --arch out" in with_arch.output
