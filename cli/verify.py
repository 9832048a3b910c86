"""``facestra verify``: accuracy of a checkpoint on LFW, CFP-FP, CPLFW, CALFW, AgeDB-30 with the exact protocol."""

from __future__ import annotations

from pathlib import Path

import click

from facestra.cli.options import inference_options, progress_bar


@click.command()
@click.option("--benchmark", "names", help="lfw, cfp-fp, cplfw, calfw, agedb-30, any name for a .bin/pairs.csv, a comma list, or all.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), help="One benchmark: its .bin, pair file or folder.")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder holding the standard .bin files or folders.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every figure (folds, thresholds, TAR@FAR, ROC) as JSON.")
@click.option("--roc", "roc_path", type=click.Path(dir_okay=False, path_type=Path), help="Plot the ROC of each benchmark to this image (.png/.pdf/.svg).")
@click.option("--save-embeddings", type=click.Path(file_okay=False, path_type=Path), help="Keep each benchmark's embeddings as <DIR>/<name>.npz.")
@inference_options
def verify(checkpoint: Path, arch: str | None, names: str | None, data: Path | None, data_root: Path | None, json_path: Path | None,
           roc_path: Path | None, save_embeddings: Path | None, **inference) -> None:
    """Embed each benchmark's pairs (image + mirror), then 10-fold accuracy with the best threshold in [0, 4)."""
    from facestra.embed.inference import InferenceOptions, load_for_inference
    from facestra.verify.benchmarks import select_benchmarks, verify_model
    from facestra.verify.report import format_table, report_dict, write_json
    from facestra.verify.figures import figure_format, plot_roc

    if roc_path:
        figure_format(roc_path)  # refuse a bad figure name now, not after the embeddings
    benchmarks, missing = select_benchmarks(names, data, data_root)
    for name in missing:
        click.echo(f"note: {name} not found under {data_root}; skipped", err=True)
    options = InferenceOptions(**inference)
    model = load_for_inference(checkpoint, options.device, arch=arch)
    with progress_bar(sum(len(b.images) for b in benchmarks), "verify") as bar:
        outcomes = verify_model(model, benchmarks, options, save_embeddings=save_embeddings, progress=bar.update)
    click.echo(format_table(outcomes, model.arch))
    if json_path:
        write_json(report_dict(outcomes, checkpoint=str(checkpoint), network=model.arch, flip=options.flip), json_path)
        click.echo(f"wrote {json_path}")
    if roc_path:
        plot_roc({o.benchmark.title: o.result for o in outcomes}, roc_path)
        click.echo(f"wrote {roc_path}")
