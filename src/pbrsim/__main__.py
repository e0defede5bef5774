"""`python -m pbrsim` runs the command line."""

from .cli import main

main()
