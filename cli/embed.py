"""``facestra embed``: a folder (or list) of aligned faces -> an N x D float32 ``.npy`` and its row paths."""

from __future__ import annotations

from pathlib import Path

import click

from facestra.cli.options import inference_options, progress_bar


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .npy (rows in the order of <out>.paths.txt).")
@click.option("--no-normalize", is_flag=True, help="Keep raw vectors instead of L2-normalising them.")
@click.option("--skip-bad", is_flag=True, help="Leave unreadable images out (listed on stderr) instead of stopping.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@inference_options
def embed(input_path: Path, checkpoint: Path, arch: str | None, out: Path, no_normalize: bool, skip_bad: bool, overwrite: bool,
          **inference) -> None:
    """Embed every image of INPUT (a folder of aligned faces, or a text file with one image path per line).

    Rerunning an interrupted command continues where it stopped.
    """
    from facestra.embed.inference import InferenceOptions, load_for_inference
    from facestra.embed.job import check_outputs, embed_to_file, input_images
    from facestra.io import check_writable_folder

    options = InferenceOptions(**inference)
    check_writable_folder(out.parent)  # a read-only folder now, not after the model and the images
    sources = input_images(input_path)
    check_outputs(out, overwrite=overwrite, inputs=[input_path, *sources])
    model = load_for_inference(checkpoint, options.device, arch=arch)
    with progress_bar(len(sources), "embed") as bar:
        report = embed_to_file(
            model, sources, out, options, normalize=not no_normalize, skip_bad=skip_bad, overwrite=overwrite,
            progress=bar.update,
        )
    if report.resumed_from:
        click.echo(f"resumed an interrupted run after {report.resumed_from} images")
    for failure in report.skipped:
        click.echo(f"skipped: {failure.message}", err=True)
    click.echo(f"wrote {report.path} ({report.rows} x {report.dim} float32) and {report.paths_file}")
    if report.skipped:
        click.echo(f"{len(report.skipped)} unreadable image(s) skipped", err=True)
