"""``python -m ceredis``: the command line."""

from ceredis.cli import run

run()
