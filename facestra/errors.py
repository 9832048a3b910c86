"""The one exception type a user should ever see from facestra.

Library code raises :class:`UserError` for bad input (a missing file, an unreadable image, a run folder that
already holds a run...). The command-line program turns it into a single ``error: ...`` line and the exit
code it carries, instead of a traceback. Messages name the file and the problem.

A message names a setting as the library knows it, in backticks (`` `batch_size` ``, `` `overwrite` ``): a
Python caller reads the argument it passed. The command-line program renders each as the flag the user
typed (``--batch-size``, ``--overwrite``): :func:`facestra.cli.messages.as_flags`.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: reported as one line, exit code ``exit_code`` (2 by default)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
