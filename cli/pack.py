"""``facestra pack``: an aligned pair layout (LFW, CFP-FP, CALFW/CPLFW, pairs.csv) -> the shared ``.bin`` format."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--benchmark", "name", help="Benchmark name (lfw, cfp-fp, cplfw, calfw, agedb-30 or any name for pairs.csv). Default: guessed from --data."
)
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path), help="The benchmark folder or pair file.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .bin to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def pack(name: str | None, data: Path, out: Path, overwrite: bool) -> None:
    """Write a benchmark as a .bin (encoded images two per pair + labels) that other tools read."""
    from facestra.protocols import load_benchmark
    from facestra.verify.benchmarks import guess_name
    from facestra.verify.pack import pack_benchmark

    benchmark = load_benchmark(name or guess_name(data), data)
    report = pack_benchmark(benchmark, out, overwrite=overwrite)
    click.echo(f"wrote {report.path}: {report.num_pairs} pairs ({report.num_same} same) from {benchmark.source}")
    if not report.folds_preserved:
        click.echo(
            f"warning: {benchmark.title} defines its own folds, which are not ten contiguous folds of the sizes a .bin "
            "implies; a .bin is always split into 10 contiguous folds",
            err=True,
        )
