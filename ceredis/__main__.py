"""``python -m ceredis``: the command line."""

from ceredis.cli import main

raise SystemExit(main())
