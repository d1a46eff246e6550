"""Which Stripe movement a ledger row without a Stripe id is known by."""

from __future__ import annotations

from collections.abc import Mapping

from reconcile.domain.ids import is_stripe_id, posted_transaction_id


def needs_memory(transaction_id: str | None, description: str | None) -> bool:
    """Whether only an earlier run's amount match can name this row's movement."""
    return not is_stripe_id(transaction_id) and posted_transaction_id(description) is None


def known_id(
    transaction_id: str | None,
    description: str | None,
    moesif_id: str,
    remembered: Mapping[str, str],
) -> str | None:
    """Return the transaction id a ledger row is known by.

    Reports may leave ids out: a row the job posted names its id in its description, and a row
    an earlier run matched by amount keeps the movement it was matched to. A row that names a
    Stripe id keeps it; any other keeps what it has.

    Args:
        transaction_id: the row's own transaction id, if any.
        description: the row's description, if any.
        moesif_id: the row's Moesif id.
        remembered: Moesif id to the movement an earlier real run matched it to by amount.
    """
    if is_stripe_id(transaction_id):
        return transaction_id
    return posted_transaction_id(description) or remembered.get(moesif_id, transaction_id)
