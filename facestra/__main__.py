"""``python -m facestra`` runs the command-line program; torchrun launches training this way."""

from facestra.cli.main import main

if __name__ == "__main__":
    main()
