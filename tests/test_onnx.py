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


def _graph_model(path, *, input_type=onnx.TensorProto.FLOAT, input_shape=("N", 3, 8, 8), body="pool",
                 output_type=onnx.TensorProto.FLOAT, output_shape=("N", 3, 1, 1)):
    """A recognition model written node by node with onnx's helper API: its 'embedding' is the mean of each
    input channel (``pool``), or something that is not one vector per image."""
    from onnx import helper

    nodes = [helper.make_node("Cast", ["data"], ["x"], to=onnx.TensorProto.FLOAT)]
    initializers = []
    if body == "feature map":
        nodes.append(helper.make_node("Identity", ["x"], ["out"]))
    elif body == "scalar":
        nodes.append(helper.make_node("ReduceMean", ["x"], ["out"], keepdims=0))
    else:
        nodes.append(helper.make_node("GlobalAveragePool", ["x"], ["pooled"]))
        if body == "integers":
            nodes.append(helper.make_node("Cast", ["pooled"], ["out"], to=onnx.TensorProto.INT64))
        elif body == "reshape to one":  # a 'free' batch that a Reshape fixes at 1, as older exporters wrote
            initializers.append(helper.make_tensor("shape", onnx.TensorProto.INT64, [2], [1, -1]))
            nodes.append(helper.make_node("Reshape", ["pooled", "shape"], ["out"]))
        else:
            nodes.append(helper.make_node("Identity", ["pooled"], ["out"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("data", input_type, list(input_shape))],
                              [helper.make_tensor_value_info("out", output_type, None if output_shape is None else list(output_shape))],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def small_faces(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "small"
    folder.mkdir()
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i}.png"), image)
    # what a channel-mean model gives, by hand: RGB, (x - 127.5) / 127.5 (no Sub/Mul nodes: ArcFaceONNX's rule)
    expected = np.stack([((image[:, :, ::-1].astype(np.float64) - 127.5) / 127.5).mean(axis=(0, 1)) for image in images])
    return folder, expected


@pytest.mark.parametrize(("input_type", "input_shape", "body", "output_shape"), [
    (onnx.TensorProto.FLOAT16, ("N", 3, 8, 8), "pool", ("N", 3, 1, 1)),
    (onnx.TensorProto.DOUBLE, ("N", 3, 8, 8), "pool", ("N", 3, 1, 1)),
    (onnx.TensorProto.FLOAT, (3, 3, 8, 8), "pool", (3, 3, 1, 1)),  # a fixed batch of 3: padded chunks
    (onnx.TensorProto.FLOAT, ("N", 3, "H", "W"), "pool", None),  # sides left free: fed at 112, resized
    (onnx.TensorProto.FLOAT, ("N", 3, 8, 8), "reshape to one", (1, 3)),
])
def test_onnx_models_of_any_float_input_or_batch_declaration_run_correctly(
    small_faces, tmp_path, input_type, input_shape, body, output_shape
) -> None:
    folder, expected = small_faces
    path = _graph_model(tmp_path / "m.onnx", input_type=input_type, input_shape=input_shape, body=body, output_shape=output_shape)
    extra = ("--resize",) if "H" in input_shape else ()
    got = _embed(folder, path, tmp_path / "e.npy", "--flip", "none", "--no-normalize", "--batch-size", "4", *extra)
    tolerance = 2e-2 if extra else (1e-3 if input_type == onnx.TensorProto.FLOAT16 else 1e-5)
    np.testing.assert_allclose(got, expected, atol=tolerance)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_type": onnx.TensorProto.UINT8}, "its input takes tensor(uint8), not floating-point images"),
        ({"input_type": onnx.TensorProto.INT32}, "its input takes tensor(int32), not floating-point images"),
        ({"input_shape": ("N", 3, 8)}, "its input is ['N', 3, 8], not N x 3 x H x W images"),
        ({"input_shape": ("N", 1, 8, 8)}, "its input takes 1 channels, not 3 (RGB)"),
        ({"input_shape": ("N", 3, 2, 2)}, "its input is 2 x 2 pixels; facestra feeds images of 8 to 4096 pixels a side"),
        ({"input_shape": (5000, 3, 8, 8)}, "its input declares a fixed batch of 5000 images; facestra pads to at most 1024"),
        ({"body": "feature map", "output_shape": None}, "its output for 2 image(s) is 2 x 3 x 8 x 8, not one floating-point vector per image"),
        ({"body": "integers", "output_type": onnx.TensorProto.INT64}, "its output for 2 image(s) is int64, not one floating-point vector"),
        ({"body": "scalar", "output_shape": None}, "is  not one floating-point vector per image"),
    ],
)
def test_onnx_models_that_cannot_give_one_vector_per_image_are_one_line(small_faces, tmp_path, change, message) -> None:
    folder, _ = small_faces
    path = _graph_model(tmp_path / "m.onnx", **change)
    result = run("embed", folder, "--checkpoint", path, "--workers", "0", "--out", tmp_path / "e.npy")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and message.split("is  ")[-1] in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "small"]


def test_export_refuses_an_opset_that_cannot_express_the_network(tmp_path) -> None:
    torch.manual_seed(0)
    models.save(models.create("resnet50_stra", width=0.125, embedding_size=16, input_size=(32, 32)).eval(), tmp_path / "stra.pt")
    models.save(models.create("resnet18", width=0.125, embedding_size=16, input_size=(32, 32)).eval(), tmp_path / "plain.pt")
    refused = run("export", tmp_path / "stra.pt", "--onnx", tmp_path / "s11.onnx", "--opset", "11")
    assert refused.exit_code == 2
    assert refused.output.strip() == ("error: --opset 11: resnet50_stra needs ONNX opset 12 to 21 (StRA's attention uses einsum, added in opset 12)")
    assert not (tmp_path / "s11.onnx").exists()
    for checkpoint, opset in [("stra.pt", 12), ("stra.pt", 21), ("plain.pt", 11)]:
        out = tmp_path / f"{checkpoint}.{opset}.onnx"
        result = run("export", tmp_path / checkpoint, "--onnx", out, "--opset", str(opset))
        assert result.exit_code == 0, result.output
        assert onnx.load(str(out)).opset_import[0].version == opset
        assert ort.InferenceSession(str(out)).run(None, {"data": np.zeros((2, 3, 32, 32), np.float32)})[0].shape == (2, 16)


def test_another_onnx_model_under_the_same_name_never_resumes_a_partial_embedding(small_faces, tmp_path) -> None:
    from facestra.embed import InferenceOptions
    from facestra.embed.job import embed_to_file
    from facestra.models.onnx import load_onnx

    folder, expected = small_faces
    images = sorted(folder.glob("*.png"))
    path = _graph_model(tmp_path / "m.onnx")
    options = InferenceOptions(flip="none", batch_size=2, workers=0)

    def interrupt(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_to_file(load_onnx(path), images, tmp_path / "e.npy", options, normalize=False, progress=interrupt)
    _graph_model(path, input_type=onnx.TensorProto.DOUBLE)  # another graph (no torch weights either), same file name
    report = embed_to_file(load_onnx(path), images, tmp_path / "e.npy", options, normalize=False)
    assert report.resumed_from == 0
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), expected, atol=1e-5)
