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


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._find(name) is not None]

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
        from facestra.errors import UserError, environment_error, out_of_memory_message

        try:
            return super().invoke(ctx)
        except UserError as error:
            click.echo(f"error: {error}", err=True)
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
