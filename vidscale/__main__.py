"""``python -m vidscale`` runs the command line (used by subprocess tests)."""

from .cli import main

main()
