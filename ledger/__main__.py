"""``python -m ledger``: verify a ledger, prove a record, check a proof, prove a prefix."""

from ledger.cli import main

raise SystemExit(main())
