"""``facestra export``: a model file (or arcface_torch backbone.pth) -> an ONNX recognition model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--onnx", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .onnx file to write.")
@click.option("--arch", default=None, metavar="NAME", help="Network of a bare state dict (read from its tensors when left out).")
@click.option("--opset", type=click.IntRange(11, 21), default=17, show_default=True, help="ONNX opset version (StRA networks: 12 or later).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def export(checkpoint: Path, out: Path, arch: str | None, opset: int, overwrite: bool) -> None:
    """Write CHECKPOINT as an ONNX model that insightface's model_zoo and ArcFaceONNX take as a recognition
    model, giving the features facestra embed gives (facestra's normalisation is baked into the graph)."""
    import warnings

    from facestra.models.onnx import export_checkpoint

    with warnings.catch_warnings():  # the exporter's notes on traced branches are not the user's concern
        warnings.simplefilter("ignore")
        report = export_checkpoint(checkpoint, out, arch=arch, opset=opset, overwrite=overwrite)
    height, width = report.input_size
    feed = "raw RGB pixels 0-255 (normalised inside the graph)" if report.baked else "RGB (x - 127.5) / 127.5"
    click.echo(f"wrote {report.path}: {report.arch}, input 'data' N x 3 x {height} x {width} of {feed}, "
               f"output 'embedding' N x {report.embedding_size}")
