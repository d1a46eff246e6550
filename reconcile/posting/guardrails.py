"""Whether a batch of entries stays within the limits a run may post; over them, none is posted."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from reconcile.domain.money import to_major
from reconcile.domain.values import Entry
from reconcile.errors import GuardrailTripped


def check_guardrails(
    entries: Sequence[Entry], *, max_postings: int, max_total: Decimal | None
) -> None:
    """Raise GuardrailTripped when the entries exceed the run's limits; nothing is posted then."""
    if len(entries) > max_postings:
        raise GuardrailTripped(
            f"the run would post {len(entries)} balance transactions, more than "
            f"RECONCILE_MAX_POSTINGS={max_postings}; nothing was posted"
        )
    if max_total is None:
        return
    total = sum((to_major(entry.amount_minor, entry.currency) for entry in entries), Decimal(0))
    if total > max_total:
        raise GuardrailTripped(
            f"the run would post {total} in major units, more than "
            f"RECONCILE_MAX_POSTING_TOTAL={max_total}; nothing was posted"
        )
