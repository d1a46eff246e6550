"""What a Stripe event's object brings along: a charge's refunds, a source's transactions."""

from __future__ import annotations

import stripe

from reconcile.stripe.client import stripe_errors


def refund_ids(client: stripe.StripeClient, charge_id: str) -> list[str]:
    """Return the ids of every refund of ``charge_id``, all pages.

    Raises:
        CredentialsRejected: Stripe refused the key or its permissions.
        StripeUnavailable: any other Stripe failure left after retries.
    """
    with stripe_errors():
        refunds = client.v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return [str(refund.id) for refund in refunds.auto_paging_iter()]


def balance_transaction_ids(client: stripe.StripeClient, source_id: str) -> list[str]:
    """Return the ids of every balance transaction whose source is ``source_id``, all pages.

    Raises:
        CredentialsRejected: Stripe refused the key or its permissions.
        StripeUnavailable: any other Stripe failure left after retries.
    """
    with stripe_errors():
        moved = client.v1.balance_transactions.list(params={"source": source_id, "limit": 100})
        return [str(transaction.id) for transaction in moved.auto_paging_iter()]
