"""How ids look and are made: Stripe's prefixes, a finding's id, a posting's description."""

from __future__ import annotations

import hashlib
import re

from reconcile.domain.vocab import ROW_CATEGORIES

STRIPE_ID_PREFIXES = ("pi_", "re_", "txn_", "ch_", "py_", "dp_")
"""How the id of a Stripe movement begins, wherever one is recognised."""


def is_stripe_id(transaction_id: str | None) -> bool:
    """Return whether a ledger ``transaction_id`` looks like the id of a Stripe movement."""
    return bool(transaction_id) and str(transaction_id).startswith(STRIPE_ID_PREFIXES)


MOVEMENT_PREFIXES = ("pi_", "re_", "txn_")
"""The Stripe ids postings are made under (contract section 4)."""


def names_movement(description: str) -> bool:
    """Return whether a text names the id of a movement postings are made under."""
    return any(prefix in description for prefix in MOVEMENT_PREFIXES)


FINDING_ID_PREFIX = "F-"
"""How a finding's id begins."""


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
            return (
                FINDING_ID_PREFIX
                + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            )
    raise ValueError(f"a {category} finding needs a transaction id or a Moesif row id")


def pair_finding_id(category: str, earlier_id: str, later_id: str) -> str:
    """Return the stable id of a drift between two Moesif rows (a break in a running balance).

    Derived from both ids in order, so the same break has the same id in every run.
    """
    key = f"{category}\x1fpair\x1f{earlier_id}\x1f{later_id}"
    return FINDING_ID_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


OWN_POSTING_HEAD = "reconcile: "
"""How the description of every posting reconcile makes begins."""
OWN_POSTING_MIDDLE = " for Stripe "
"""What follows the entry type and transaction id in such a description."""
_OWN_POSTING = re.compile(
    "^" + re.escape(OWN_POSTING_HEAD) + r"(?:credit|debit) (\S+)" + re.escape(OWN_POSTING_MIDDLE)
)


def posting_description(
    entry_type: str, transaction_id: str, stripe_object_id: str, made_by: str
) -> str:
    """Return the description of a posting; it names the transaction id, to be read back.

    ``made_by`` says who made it, in words (``run 2026…``, ``webhook:evt_…``).
    """
    return (
        f"{OWN_POSTING_HEAD}{entry_type} {transaction_id}{OWN_POSTING_MIDDLE}{stripe_object_id} "
        f"({made_by})"
    )


def posted_transaction_id(description: str | None) -> str | None:
    """Return the transaction id a row this job posted names in its description, if it is one."""
    found = _OWN_POSTING.match(description) if description else None
    return found.group(1) if found else None
