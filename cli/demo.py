"""``facestra demo``: synthesise faces, align, train StRA and ResNet, verify, embed, draw: offline, minutes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facestra.cli.options import command_line, dataclass_options
from facestra.demo import DemoConfig, format_summary, run_demo


@click.command()
@dataclass_options(DemoConfig)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every figure as JSON here.")
def demo(json_path: Path | None, **settings) -> None:
    """Run align -> train -> verify -> embed on built-in synthetic faces and print a summary table."""
    from facestra.io import write_text_atomic

    result = run_demo(DemoConfig(**settings), log=click.echo, command=command_line())
    click.echo("")
    click.echo(format_summary(result))
    click.echo("")
    click.echo(f"work folder:   {result.workdir}")
    click.echo(f"faces:         {result.faces}")
    click.echo(f"landmarks:     {result.faces / 'landmarks.csv'}")
    click.echo(f"test pairs:    {result.faces / 'test' / 'pairs.txt'} and {result.faces / 'test.bin'}")
    click.echo(f"aligned:       {result.aligned}")
    for model in result.models:
        click.echo(f"{model.arch + ':':<15}{model.model_path}  embeddings {model.embeddings}")
    click.echo(f"ROC curves:    {result.roc_png}")
    if result.masks_png:
        click.echo(f"StRA masks:    {result.masks_png}")
    click.echo(f"summary:       {result.workdir / 'summary.json'}")
    total = sum(result.seconds.values())
    click.echo(f"total time:    {total / 60:.1f} min")
    if json_path:
        write_text_atomic(json_path, json.dumps(result.to_json(), indent=2) + "\n")
        click.echo(f"wrote {json_path}")
    click.echo(f"open the report: {result.report_html}")
