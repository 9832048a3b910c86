"""``facestra compare``: are two photos the same person? Exit 0 same, 1 different, 2 bad input."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facestra.cli.options import dataclass_options, model_options
from facestra.embed.options import InferenceOptions
from facestra.verify.compare import CompareOptions


@click.command()
@click.argument("first", type=click.Path(path_type=Path))
@click.argument("second", type=click.Path(path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the result as JSON.")
@dataclass_options(CompareOptions)
@dataclass_options(InferenceOptions, exclude=("batch_size", "workers", "resize"))
@model_options
def compare(first: Path, second: Path, checkpoint: Path, arch: str | None, json_path: Path | None, flip: str, device: str,
            **compare_options) -> None:
    """Detect the face in each photo (YuNet), align it, embed it with its mirror and compare the two.

    Prints the distance (squared distance of the unit embeddings, 0-4), the cosine similarity, the threshold
    and the decision. Exit status: 0 same person, 1 different people, 2 a photo is unreadable or shows no face.
    """
    from facestra.embed.inference import load_for_inference
    from facestra.io import input_at, write_text_atomic
    from facestra.verify.compare import compare_images

    if json_path is not None and input_at(json_path, [first, second, checkpoint]) is not None:
        raise click.UsageError(f"--json {json_path}: is one of the inputs; choose another output")
    options = CompareOptions(**compare_options)
    inference = InferenceOptions(flip=flip, device=device, workers=0, batch_size=4)
    model = load_for_inference(checkpoint, device, arch=arch)
    result = compare_images(model, first, second, options, inference)
    verdict = "same person" if result.same else "different people"
    click.echo(f"distance {result.distance:.4f}  cosine {result.cosine:.4f}  threshold {result.threshold:.4f} "
               f"({result.threshold_source})  ->  {verdict}")
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(result.as_dict(), indent=2) + "\n")
    click.get_current_context().exit(0 if result.same else 1)
