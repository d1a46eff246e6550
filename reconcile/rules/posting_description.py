"""The description a posting carries, and reading the transaction id back out of it."""

from __future__ import annotations

import re

_OWN_POSTING = re.compile(r"^reconcile: (?:credit|debit) (\S+) for Stripe ")


def posting_description(
    entry_type: str, transaction_id: str, stripe_object_id: str, run_id: str
) -> str:
    """Return the description of a posting; it names the transaction id, to be read back."""
    return f"reconcile: {entry_type} {transaction_id} for Stripe {stripe_object_id} (run {run_id})"


def posted_transaction_id(description: str | None) -> str | None:
    """Return the transaction id a row this job posted names in its description, if it is one."""
    found = _OWN_POSTING.match(description) if description else None
    return found.group(1) if found else None
