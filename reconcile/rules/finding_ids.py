"""Which stable id a finding is known by, the same in every run for the same drift."""

from __future__ import annotations

import hashlib

ROW_CATEGORIES = frozenset({"missing_in_stripe", "duplicate_in_moesif", "misapplied"})
"""Categories about one Moesif row: several may share a Stripe movement, so the row names them."""

PREFIX = "F-"


def finding_id(category: str, transaction_id: str | None, moesif_id: str | None) -> str:
    """Return the stable id of a drift: ``F-`` and 16 hex digits of a SHA-256.

    A finding about a Moesif row (a leftover, a duplicate, a row on the wrong subscription) is
    keyed on the row's ``moesif_id``; every other finding on the Stripe movement's
    ``transaction_id``. Either falls back to the other when it is missing.

    Raises:
        ValueError: neither id is given, so nothing could recognise the drift next time.
    """
    movement = ("movement", transaction_id)
    row = ("row", moesif_id)
    order = (row, movement) if category in ROW_CATEGORIES else (movement, row)
    for kind, value in order:
        if value:
            key = f"{category}\x1f{kind}\x1f{value}"
            return PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    raise ValueError(f"a {category} finding needs a transaction id or a Moesif row id")


def pair_finding_id(category: str, earlier_id: str, later_id: str) -> str:
    """Return the stable id of a drift between two Moesif rows (a break in a running balance).

    Derived from both ids in order, so the same break has the same id in every run.
    """
    key = f"{category}\x1fpair\x1f{earlier_id}\x1f{later_id}"
    return PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
