"""``python -m babelmr`` runs the CLI."""

from babelmr.cli import main

main()
