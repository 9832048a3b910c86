"""The ``facestra`` command-line program: each module holds one click command that parses options,
calls one library function and prints; no numerical logic lives here."""
