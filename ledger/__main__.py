"""``python -m ledger``: verify a ledger, prove a record, check a proof."""

from ledger.cli import main

raise SystemExit(main())
