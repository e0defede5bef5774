"""`python -m pbrsim` runs the command line."""

from .cli.main import main

main()
