"""``facestra demo``: synthesise faces, align, train StRA and ResNet, verify, embed, draw: offline, minutes."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("facestra-demo"),
              show_default=True, help="Folder for everything the demo makes (reused by a rerun).")
@click.option("--minutes", type=click.FloatRange(min=0.01), default=3.0, show_default=True,
              help="Training time for each of the two networks.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every figure as JSON here.")
@click.option("--identities", type=click.IntRange(min=4), default=900, show_default=True,
              help="Synthetic people (smaller for a quicker, rougher run).")
@click.option("--images-per-identity", type=click.IntRange(min=2), default=6, show_default=True)
@click.option("--test-identities", type=click.IntRange(min=2), default=60, show_default=True,
              help="People held out for the verification pairs.")
@click.option("--crop-size", type=click.IntRange(min=32), default=48, show_default=True,
              help="Side of the aligned crops the networks see.")
@click.option("--no-detector", is_flag=True, help="Skip the YuNet alignment check even if yuface is installed.")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu or cuda.")
def demo(workdir: Path, minutes: float, json_path: Path | None, identities: int, images_per_identity: int,
         test_identities: int, crop_size: int, no_detector: bool, device: str) -> None:
    """Run align -> train -> verify -> embed on built-in synthetic faces and print a summary table."""
    from facestra.demo import DemoConfig, format_summary, run_demo
    from facestra.io import write_text_atomic

    config = DemoConfig(workdir=workdir, minutes=minutes, identities=identities,
                        images_per_identity=images_per_identity, test_identities=test_identities,
                        crop_size=crop_size, detector=not no_detector, device=device)
    result = run_demo(config, log=click.echo)
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
