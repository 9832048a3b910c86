"""The ``facestra`` click group.

Subcommands are imported lazily so that ``facestra --help`` stays fast (torch is only imported by the
commands that need it) and so that each command lives in its own module.
"""

from __future__ import annotations

import importlib

import click

from facestra import __version__

# command name -> "module:attribute" inside facestra.cli
COMMANDS: dict[str, str] = {
    "info": "facestra.cli.info:info",
    "synth": "facestra.cli.synth:synth",
    "align": "facestra.cli.align:align",
    "train": "facestra.cli.train:train",
    "verify": "facestra.cli.verify:verify",
    "embed": "facestra.cli.embed:embed",
    "compare": "facestra.cli.compare:compare",
    "calibrate": "facestra.cli.calibrate:calibrate",
    "export": "facestra.cli.export:export",
    "pack": "facestra.cli.pack:pack",
    "demo": "facestra.cli.demo:demo",
}

# What `facestra --help` lists for each command: the first sentence of its docstring, written here so that the
# listing imports no command module (train and info import torch); tests/test_cli_startup.py checks each line
# against the command's own help.
SHORT_HELP: dict[str, str] = {
    "info": "Parameters and multiply-adds of networks, per stage (compare resnet50 with resnet50_stra).",
    "synth": "Write synthetic faces to OUT: train/ and test/ identity folders, landmarks.csv, test/pairs.txt, test.bin.",
    "align": "Align the faces of INPUT (an image folder or a list file) to the ArcFace template.",
    "train": "Train a face network with softmax, CosFace, ArcFace or the combined margin, from random weights or fine-tuning "
             "pretrained ones (--init); torchrun for several GPUs or processes.",
    "verify": "Embed each benchmark's pairs (image + mirror), then 10-fold accuracy with the best threshold in [0, 4).",
    "embed": "Embed every image of INPUT (a folder of aligned faces, or a text file with one image path per line).",
    "compare": "Detect the face in each photo (YuNet), align it, embed it with its mirror and compare the two.",
    "calibrate": "Calibrate the operating points of a model on labelled faces.",
    "export": "Write CHECKPOINT as an ONNX model that insightface's model_zoo and ArcFaceONNX take as a recognition model, "
              "giving the features facestra embed gives (facestra's normalisation is baked into the graph).",
    "pack": "Write a benchmark as a .bin (encoded images two per pair + labels) that other tools read.",
    "demo": "Run align -> train -> verify -> embed on built-in synthetic faces and print a summary table.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._find(name) is not None]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``facestra --help`` from :data:`SHORT_HELP`, without importing a command."""
        width = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.utils.make_default_short_help(SHORT_HELP[name], width)) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._find(cmd_name)

    @staticmethod
    def _find(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:  # the command is not built yet
                return None
            raise
        return getattr(module, attribute)

    def invoke(self, ctx: click.Context):
        from facestra.cli.messages import as_flags, command_flags, environment_error, out_of_memory_message
        from facestra.errors import UserError

        try:
            return super().invoke(ctx)
        except UserError as error:
            command = self._find(ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            click.echo(f"error: {as_flags(str(error), command_flags(command))}", err=True)
            ctx.exit(error.exit_code)
        except (MemoryError, RuntimeError) as error:
            message = out_of_memory_message(error)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(2)
        except OSError as error:  # a read-only or full disk, a name the OS cannot create: one line, exit 2
            line = environment_error(error)
            if line is None:
                raise
            click.echo(f"error: {line}", err=True)
            ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facestra")
def main() -> None:
    """facestra: align faces, train StRA networks, verify on the standard benchmarks, embed images."""
    from facestra.allocator import reuse_freed_memory

    reuse_freed_memory()  # this process is the program's own: tune its allocator for the big buffers


if __name__ == "__main__":
    main()
