"""The correction a finding asks of its subscription's balance: the report's ``delta``."""

from __future__ import annotations

from reconcile.domain.vocab import Category, EntryType

_EXTRA_IN_MOESIF = frozenset(
    {Category.DUPLICATE_IN_MOESIF, Category.MISSING_IN_STRIPE, Category.MISAPPLIED}
)
"""Categories whose ledger row should not be on its subscription at all."""


def correction(
    category: str, entry_type: str | None, stripe_minor: int | None, moesif_minor: int | None
) -> int | None:
    """Return what the balance needs, in minor units, so deltas can be summed (contract §7).

    Positive when the customer is owed credit (a missing credit, a debit recorded too large),
    negative when Moesif holds too much (a duplicated or too-large credit, a missing debit). A
    row that should not be where it is (a duplicate, one no Stripe movement explains, one on the
    wrong subscription) asks for its own amount back. ``None`` when neither amount is known.
    """
    if stripe_minor is None and moesif_minor is None:
        return None
    sign = -1 if entry_type == EntryType.DEBIT else 1
    if category in _EXTRA_IN_MOESIF:
        return -sign * (moesif_minor or 0)
    return sign * ((stripe_minor or 0) - (moesif_minor or 0))
