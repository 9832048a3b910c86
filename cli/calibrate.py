"""``facestra calibrate``: thresholds at chosen false accept rates, with intervals and P(same), on your photos."""

from __future__ import annotations

from pathlib import Path

import click

from facestra.cli.options import check_command_outputs, dataclass_options, inference_options, progress_bar, refuse_unused_options
from facestra.verify.calibration import CalibrationOptions
from facestra.verify.html_report import ReportOptions


@click.command()
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Labelled faces: a folder of aligned faces with one sub-folder per identity, or any benchmark verify reads.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The calibration (JSON).")
@click.option("--save-model", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a copy of the model file that carries this calibration (the checkpoint itself is never changed).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out, --save-model or --report.")
@dataclass_options(CalibrationOptions)
@dataclass_options(ReportOptions)
@inference_options
def calibrate(checkpoint: Path, arch: str | None, data: Path, out: Path, save_model: Path | None, overwrite: bool,
              far: tuple[float, ...], prior: float, bootstrap: int, max_pairs: int, held_out: float, seed: int,
              report: Path | None, report_pairs: int, **inference) -> None:
    """Calibrate the operating points of a model on labelled faces.

    For each target false accept rate: the threshold (cosine, and the protocol's distance 2 - 2 cos), the true
    accept rate there, and 95% intervals of both from a bootstrap over identities; the EER and best-accuracy
    thresholds; a logistic P(same) with its calibration error on held-out identities. `facestra compare
    --calibration OUT --far F` then decides at that operating point.
    """
    from facestra.embed.inference import InferenceOptions, load_for_inference
    from facestra.verify.calibration_job import calibrate as run_calibration
    from facestra.verify.calibration_job import read_source, save_calibrated_model, write_calibration
    from facestra.verify.calibration_report import format_calibration

    if report is None:
        refuse_unused_options(("report_pairs",), "only used with --report")
    try:
        options = CalibrationOptions(far, prior, bootstrap, max_pairs, held_out, seed)
    except ValueError as error:
        raise click.UsageError(f"--{str(error).split()[0].replace('_', '-')}: {error}") from None
    run_options = InferenceOptions(**inference)
    if save_model is not None and save_model.resolve() == out.resolve():
        raise click.UsageError(f"--save-model {save_model}: is the same file as --out")
    for flag, path in (("--out", out), ("--save-model", save_model), ("--report", report)):
        if path is not None and data.is_dir() and data.resolve() in path.resolve().parents:
            raise click.UsageError(f"{flag} {path}: is inside --data {data}, which calibrate reads; choose another output")
    source = read_source(data)  # a bad source costs nothing: before the model loads
    inputs = [checkpoint, data, *source.images]
    check_command_outputs([("--out", out), ("--save-model", save_model)], inputs, overwrite=overwrite)
    if report is not None:
        from facestra.verify.html_report import check_report_path

        check_report_path(report, inputs, other_outputs=[out, save_model], overwrite=overwrite)
    model = load_for_inference(checkpoint, run_options.device, arch=arch)
    with progress_bar(len(source.images), "calibrate") as bar:
        calibration = run_calibration(model, data, options, run_options, progress=bar.update, source=source,
                                      checkpoint=checkpoint)
    for warning in calibration.result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(format_calibration(calibration))
    write_calibration(calibration, out, overwrite=overwrite)
    click.echo(f"wrote {out}")
    if save_model is not None:
        save_calibrated_model(model, calibration, save_model, overwrite=overwrite)
        click.echo(f"wrote {save_model} (a copy of the model carrying this calibration)")
    if report is not None:
        from facestra.cli.options import command_line
        from facestra.embed.inference import resolve_device
        from facestra.verify.report_sections import write_calibration_report

        write_calibration_report(report, calibration, model=model, checkpoint=checkpoint, command=command_line(),
                                 device=resolve_device(run_options.device, model), pairs=report_pairs)
        click.echo(f"wrote {report}")
