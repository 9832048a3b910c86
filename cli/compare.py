"""``facestra compare``: are two photos the same person? Exit 0 same, 1 different, 2 bad input.

With ``--pairs LIST.csv --out RESULTS.csv`` it compares many pairs in one run and writes a row for each.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from facestra.cli.options import check_command_outputs, dataclass_options, model_options, progress_bar, refuse_unused_options
from facestra.embed.options import InferenceOptions
from facestra.verify.compare import CompareOptions


@click.command()
@click.argument("photos", nargs=-1, type=click.Path(path_type=Path), metavar="[FIRST SECOND]")
@click.option("--pairs", "pair_list", type=click.Path(dir_okay=False, path_type=Path),
              help="Compare every pair of this CSV (first,second per line; relative paths from its folder).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="With --pairs: the results CSV, one row per pair.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the result as JSON.")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path),
              help="A calibration from facestra calibrate: decide at --far, with P(same) (default: the one the model file carries).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out or --json.")
@dataclass_options(CompareOptions)
@dataclass_options(InferenceOptions, exclude=("batch_size", "workers", "resize"))
@model_options
def compare(photos: tuple[Path, ...], pair_list: Path | None, out: Path | None, checkpoint: Path, arch: str | None,
            json_path: Path | None, calibration: Path | None, overwrite: bool, flip: str, device: str, **compare_options) -> None:
    """Detect the face in each photo (YuNet), align it, embed it with its mirror and compare the two.

    Prints the cosine similarity, the distance (squared distance of the unit embeddings, 0-4), the threshold
    and where it came from, and the decision; with a calibration (--calibration, or one the model file
    carries) the threshold is the one calibrated at --far and P(same) is printed with its prior. Exit status:
    0 same person, 1 different people, 2 a photo is unreadable or shows no face. With --pairs: 0 once the
    results are written (a photo without a face is its rows' status), 2 for a bad list.
    """
    if pair_list is None and len(photos) != 2:
        raise click.UsageError("give two photos, or --pairs LIST.csv --out RESULTS.csv")
    if pair_list is not None and (photos or out is None):
        raise click.UsageError("--pairs compares the pairs of its list: give --out RESULTS.csv and no photo arguments")
    if out is not None and pair_list is None:
        raise click.UsageError("--out writes the rows of --pairs; for two photos use --json")
    if compare_options["aligned"]:
        refuse_unused_options(("min_score",), "not used with --aligned (no face is detected)")
    try:
        options = CompareOptions(**compare_options)
    except ValueError as error:
        raise click.UsageError(f"--{str(error).split()[0]}: {error}") from None
    inputs = [*photos, checkpoint] + [p for p in (pair_list, calibration) if p is not None]
    check_command_outputs([("--json", json_path), ("--out", out)], inputs, overwrite=overwrite)
    inference = InferenceOptions(flip=flip, device=device, workers=0, batch_size=16)
    if pair_list is not None:
        return compare_list(pair_list, out, checkpoint, arch, calibration, options, inference, json_path)

    from facestra.io import write_text_atomic
    from facestra.verify.compare import compare_images, load_comparison_model

    model = load_comparison_model(checkpoint, device, arch=arch)
    result = compare_images(model, photos[0], photos[1], options, inference, calibration=calibration)
    click.echo(describe(result))
    if not result.calibrated:
        click.echo("note: uncalibrated threshold: it says nothing about the false accept rate; run facestra calibrate on "
                   "labelled photos and pass --calibration to decide at a known rate", err=True)
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(result.as_dict(), indent=2) + "\n")
    click.get_current_context().exit(0 if result.same else 1)


def describe(result) -> str:
    """One line: the figures, the threshold and its source, P(same) when calibrated, and the decision."""
    verdict = "same person" if result.same else "different people"
    line = f"distance {result.distance:.4f}  cosine {result.cosine:.4f}  "
    if result.calibrated:
        line += (f"threshold cosine >= {result.cosine_threshold:.4f} (distance <= {result.threshold:.4f}; {result.threshold_source})  "
                 f"P(same) {result.probability:.4f} (prior {result.prior:g})")
    else:
        line += f"threshold {result.threshold:.4f} ({result.threshold_source}), uncalibrated"
    return f"{line}  ->  {verdict}"


def compare_list(pair_list: Path, out: Path, checkpoint: Path, arch: str | None, calibration: Path | None,
                 options: CompareOptions, inference: InferenceOptions, json_path: Path | None) -> None:
    """The --pairs branch: every pair of the list, one CSV row each."""
    import csv
    import io

    from facestra.io import write_text_atomic
    from facestra.verify.compare import compare_pairs, load_comparison_model, pair_rows, read_pair_list

    pairs = read_pair_list(pair_list)
    photos = [photo for pair in pairs for photo in pair]
    check_command_outputs([("--out", out), ("--json", json_path)], photos, overwrite=True)  # existence checked already
    model = load_comparison_model(checkpoint, inference.device, arch=arch)
    distinct = len({str(p) for pair in pairs for p in pair})
    with progress_bar(distinct, "compare") as bar:
        outcomes = compare_pairs(model, pairs, options, inference, calibration=calibration, progress=bar.update)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(pair_rows(outcomes))
    write_text_atomic(out, buffer.getvalue())
    scored = [o.comparison for o in outcomes if o.comparison is not None]
    same = sum(c.same for c in scored)
    rule = scored[0].threshold_source if scored else "-"
    click.echo(f"{len(outcomes)} pairs: {same} same, {len(scored) - same} different, {len(outcomes) - len(scored)} without a "
               f"comparable face; threshold from {rule}; wrote {out}")
    if json_path is not None:
        report = [{"first": o.first, "second": o.second, "status": o.status, "message": o.message,
                   **(o.comparison.as_dict() if o.comparison else {})} for o in outcomes]
        write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
