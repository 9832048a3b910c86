"""``facestra verify``: accuracy of a checkpoint on LFW, CFP-FP, CPLFW, CALFW, AgeDB-30 with the exact protocol."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from facestra.cli.options import (
    check_command_outputs,
    command_line,
    dataclass_options,
    inference_options,
    progress_bar,
    refuse_unused_options,
)
from facestra.verify.html_report import ReportOptions
from facestra.verify.templates import TemplateOptions


@click.command()
@click.option("--benchmark", "names", help="lfw, cfp-fp, cplfw, calfw, agedb-30, ijbb, ijbc, any name for a .bin/pairs.csv, a comma list, or all.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), help="One benchmark: its .bin, pair file or folder.")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder holding the standard .bin files or folders.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every figure (folds, thresholds, TAR@FAR, ROC) as JSON."
)
@click.option(
    "--roc", "roc_path", type=click.Path(dir_okay=False, path_type=Path), help="Plot the ROC of each benchmark to this image (.png/.pdf/.svg)."
)
@click.option("--save-embeddings", type=click.Path(file_okay=False, path_type=Path), help="Keep each benchmark's embeddings as <DIR>/<name>.npz.")
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    help="IJB: folder for the resumable raw features (default: beside --json, else ./facestra-<name>-work).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing --json, --roc, --report and --save-embeddings files.")
@dataclass_options(TemplateOptions)
@dataclass_options(ReportOptions)
@inference_options
def verify(
    checkpoint: Path,
    arch: str | None,
    names: str | None,
    data: Path | None,
    data_root: Path | None,
    json_path: Path | None,
    roc_path: Path | None,
    save_embeddings: Path | None,
    work: Path | None,
    ijb_flip: str,
    ijb_norm: bool,
    ijb_detector_score: bool,
    report: Path | None,
    report_pairs: int,
    overwrite: bool,
    **inference,
) -> None:
    """Embed each benchmark's pairs (image + mirror), then 10-fold accuracy with the best threshold in [0, 4).

    With --benchmark ijbb or ijbc and --data DIR (the official folder: loose_crop/, meta/): templates, 1:1
    TAR at FAR 1e-6..1e-1 and, when the 1:N lists are there, TPIR at FPIR and rank-1/5 per gallery.
    """
    from facestra.protocols.ijb import is_ijb

    if report is None:
        refuse_unused_options(("report_pairs",), "only used with --report")
    if is_ijb(names):
        refuse_unused_options(("data_root", "save_embeddings"), "not used by an IJB benchmark (give its folder as --data)")
        template_options = TemplateOptions(ijb_flip, ijb_norm, ijb_detector_score)
        report_options = ReportOptions(report, report_pairs)
        return verify_ijb_command(checkpoint, arch, names, data, json_path, roc_path, work, template_options, report_options, overwrite, inference)
    from facestra.embed.inference import InferenceOptions, load_for_inference
    from facestra.models.record import record_of
    from facestra.verify.benchmarks import check_each, select_each, verify_each
    from facestra.verify.figures import figure_format, plot_roc
    from facestra.verify.report import format_table, report_dict, write_json

    refuse_unused_options(("work", "ijb_flip", "ijb_norm", "ijb_detector_score"), "only used with --benchmark ijbb or ijbc")
    if roc_path:
        figure_format(roc_path)  # refuse a bad figure name now, not after the embeddings
    check_output_folders(json_path, roc_path, save_embeddings)
    benchmarks, missing, failures = select_each(names, data, data_root)
    benchmarks, refused = check_each(benchmarks)  # before the model loads: a bad benchmark costs nothing
    failures += refused
    inputs = benchmark_inputs(checkpoint, data, benchmarks)
    kept = [("--save-embeddings", save_embeddings / f"{b.name}.npz") for b in benchmarks] if save_embeddings else []
    check_command_outputs([("--json", json_path), ("--roc", roc_path), *kept], inputs, overwrite=overwrite)
    if report:
        from facestra.verify.html_report import check_report_path

        check_report_path(report, inputs, other_outputs=[json_path, roc_path], overwrite=overwrite)
    for name in missing:
        click.echo(f"note: {name} not found under {data_root}; skipped", err=True)
    outcomes = []
    if benchmarks:
        options = InferenceOptions(**inference)
        model = load_for_inference(checkpoint, options.device, arch=arch)
        with progress_bar(sum(len(b.images) for b in benchmarks), "verify") as bar:
            outcomes, failed = verify_each(model, benchmarks, options, save_embeddings=save_embeddings, progress=bar.update)
        failures += failed
    if outcomes:  # the benchmarks that worked are reported whatever happened to the others
        for outcome in outcomes:
            for warning in outcome.warnings:
                click.echo(f"warning: {warning}", err=True)
        click.echo(format_table(outcomes, record_of(model).arch))
        if json_path:
            figures = report_dict(outcomes, checkpoint=str(checkpoint), network=record_of(model).arch, flip=options.flip, failures=failures)
            write_json(figures, json_path)
            click.echo(f"wrote {json_path}")
        if roc_path:
            plot_roc({o.benchmark.title: o.result for o in outcomes}, roc_path)
            click.echo(f"wrote {roc_path}")
        if report:
            from facestra.embed.inference import resolve_device
            from facestra.verify.report_sections import write_verify_report

            write_verify_report(
                report,
                outcomes,
                model=model,
                checkpoint=checkpoint,
                command=command_line(),
                device=resolve_device(options.device, model),
                settings=[("flip", options.flip), ("resize", str(options.resize))],
                notes=[f"{name} not found under {data_root}; skipped" for name in missing],
                errors=[failure.error for failure in failures],
                pairs=report_pairs,
            )
            click.echo(f"wrote {report}")
    if failures:
        for failure in failures:
            click.echo(f"error: {failure.error}", err=True)
        # 1 when every failure is a broken data set (an unreadable image), as a single verify exits; else 2
        click.get_current_context().exit(max(failure.exit_code for failure in failures))


def benchmark_inputs(checkpoint: Path, data: Path | None, benchmarks: list) -> list:
    """Every file ``verify`` reads: the checkpoint, each benchmark's source and images, and the files of a
    benchmark folder (its pair lists are not on the benchmark)."""
    sources = [b.source for b in benchmarks] + ([data] if data else [])
    listed = [child for source in sources if Path(source).is_dir() for child in Path(source).iterdir()]
    return [checkpoint, *sources, *listed, *(image for b in benchmarks for image in b.images)]


def verify_ijb_command(
    checkpoint: Path,
    arch: str | None,
    name: str,
    data: Path | None,
    json_path: Path | None,
    roc_path: Path | None,
    work: Path | None,
    template_options: TemplateOptions,
    report_options: ReportOptions,
    overwrite: bool,
    inference: dict,
) -> None:
    """The IJB branch of ``verify``: one benchmark from its official folder."""
    from facestra.embed.inference import InferenceOptions, load_for_inference
    from facestra.errors import UserError
    from facestra.models.record import record_of
    from facestra.protocols.ijb import ijb_name, read_ijb
    from facestra.verify.figures import figure_format
    from facestra.verify.ijb import check_work_folder, format_ijb_table, ijb_report_dict, plot_ijb_roc, verify_ijb, work_folder
    from facestra.verify.report import write_json

    if data is None or not data.is_dir():
        raise UserError(f"--benchmark {name} reads one folder: give --data DIR holding loose_crop/ and meta/")
    if roc_path:
        figure_format(roc_path)
    check_output_folders(json_path, roc_path)
    folder = work_folder(ijb_name(name), work, json_path)
    check_work_folder(folder, data)
    benchmark = read_ijb(name, data)
    from facestra.protocols.ijb import META_FOLDER, meta_files

    inputs = [checkpoint, *(data / META_FOLDER / file for file in meta_files(benchmark.name).values()), *benchmark.images]
    check_command_outputs([("--json", json_path), ("--roc", roc_path)], inputs, overwrite=overwrite)
    report = report_options.report
    if report:
        from facestra.verify.html_report import check_report_path

        check_report_path(report, inputs, other_outputs=[json_path, roc_path], overwrite=overwrite)
    options = InferenceOptions(**inference)
    model = load_for_inference(checkpoint, options.device, arch=arch)
    with progress_bar(len(benchmark.images), f"verify {benchmark.title}") as bar:
        outcome = verify_ijb(model, benchmark, folder, options, template_options, progress=bar.update)
    if outcome.resumed_from:
        click.echo(f"note: {outcome.resumed_from} of {len(benchmark.images)} images' features were already in {folder}", err=True)
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(format_ijb_table(outcome, record_of(model).arch))
    if json_path:
        write_json(ijb_report_dict(outcome, checkpoint=str(checkpoint), network=record_of(model).arch, options=template_options), json_path)
        click.echo(f"wrote {json_path}")
    if roc_path:
        plot_ijb_roc(outcome, roc_path)
        click.echo(f"wrote {roc_path}")
    if report:
        from facestra.embed.inference import resolve_device
        from facestra.verify.report_sections import write_verify_report

        settings = [("flip", options.flip), *((key, str(value)) for key, value in asdict(template_options).items())]
        write_verify_report(
            report,
            [outcome],
            model=model,
            checkpoint=checkpoint,
            command=command_line(),
            device=resolve_device(options.device, model),
            settings=settings,
            pairs=report_options.report_pairs,
        )
        click.echo(f"wrote {report}")


def check_output_folders(json_path: Path | None, roc_path: Path | None, save_embeddings: Path | None = None) -> None:
    """Prove the folders of --json, --roc and --save-embeddings take a file before embedding a benchmark:
    a read-only folder is one line now rather than a lost run at the end."""
    from facestra.io import check_writable_folder

    for path in (json_path, roc_path):
        if path is not None:
            check_writable_folder(path.parent)
    if save_embeddings is not None:
        check_writable_folder(save_embeddings)
