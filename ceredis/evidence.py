"""Evidence records (scoring.md §1): what a source delivers and what the core accepts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RawEvidence:
    """One evidence record exactly as a source received it, before validation.

    ``fields`` holds JSON-like values; numbers are ``int`` or ``decimal.Decimal``
    carrying their decimal text (a binary ``float`` is accepted and read through its
    shortest repr). ``where`` locates the record for messages: ``"line 17"``, an
    assertion URL, a statement id.
    """

    fields: Mapping[str, Any]
    where: str = field(default="")
