"""`facestra --help` lists every command without importing them, and its listing says what each says."""

from __future__ import annotations

import subprocess
import sys

import click

from facestra.cli.main import COMMANDS, SHORT_HELP, main


def test_the_help_listing_is_each_commands_own_first_sentence() -> None:
    context = click.Context(main)
    assert list(SHORT_HELP) == list(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(context, name)
        assert SHORT_HELP[name] == command.get_short_help_str(limit=10**6), name


def test_facestra_help_imports_no_torch() -> None:
    probe = ("import sys\nfrom facestra.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "False"
    assert all(name in result.stdout for name in COMMANDS)
    assert "Calibrate the operating points" in result.stdout
