"""What an unreadable record becomes in the report: one flagged ``unreadable`` finding."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from reconcile.domain.values import FINDING_COLUMNS, Unreadable
from reconcile.domain.vocab import Action, Category, UnreadableSource


def unreadable_finding(item: Unreadable) -> dict[str, object]:
    """Return the finding of one unreadable record, in :data:`FINDING_COLUMNS` (never posted).

    The detail names the side, the object and the reason, and carries the safe excerpt.
    """
    stripe_side = item.source == UnreadableSource.STRIPE
    detail = f"unreadable {item.source.value} record {item.object_id}: {item.reason}"
    if item.excerpt:
        detail += f" (as received: {item.excerpt})"
    return {
        "category": Category.UNREADABLE.value,
        "action": Action.FLAGGED.value,
        "company_id": item.company_hint,
        "subscription_id": item.subscription_hint,
        "stripe_customer_id": item.customer_id,
        "stripe_object_id": item.object_id if stripe_side else None,
        "transaction_id": item.transaction_id,
        "entry_type": None,
        "currency": None,
        "stripe_amount_minor": None,
        "moesif_amount_minor": None,
        "stripe_created_at": item.created_at if stripe_side else None,
        "moesif_created_at": None if stripe_side else item.created_at,
        "moesif_id": None if stripe_side else item.object_id,
        "detail": detail,
    }


def unreadable_findings(items: Iterable[Unreadable]) -> pd.DataFrame:
    """Return the findings of unreadable records as a frame of :data:`FINDING_COLUMNS`."""
    rows = [unreadable_finding(item) for item in items]
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def blocked_transaction_ids(items: Iterable[Unreadable]) -> frozenset[str]:
    """Return the transaction ids that must not be posted while their record is unreadable."""
    return frozenset(item.transaction_id for item in items if item.transaction_id)
