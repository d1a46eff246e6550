"""The connected accounts a run reads: those named, or every one ``GET /v1/accounts`` lists."""

from __future__ import annotations

from collections.abc import Iterator

import stripe

from reconcile.config import Settings
from reconcile.rules.accounts import ALL, chosen
from reconcile.stripe.client import build_stripe_client, stripe_errors
from reconcile.stripe.extract import listed


def connected_accounts(client: stripe.StripeClient) -> Iterator[str]:
    """Yield the id of every connected account the platform's key reaches, page by page."""
    with stripe_errors():
        for account in listed(client, "/v1/accounts", {}, "connected accounts"):
            yield str(account.get("id"))


def accounts_to_read(settings: Settings, asked: tuple[str, ...]) -> tuple[str, ...]:
    """Return the connected accounts to read: ``asked``, or all of them when it is ``all``.

    Raises:
        StripeUnavailable, CredentialsRejected: listing the accounts failed.
    """
    if asked != (ALL,):
        return asked
    return chosen(asked, connected_accounts(build_stripe_client(settings)))


def account_client(settings: Settings, stripe_account: str) -> stripe.StripeClient:
    """Return a Stripe client whose every request reads ``stripe_account`` (``Stripe-Account``)."""
    return build_stripe_client(settings, stripe_account=stripe_account)


def on_account(client: stripe.StripeClient, stripe_account: str) -> stripe.StripeClient:
    """Return ``client`` reading ``stripe_account`` instead: same key, version, base and transport.

    The transport (pacing, retries, masking) is shared, so the account's reads keep to the same
    request rate. The SDK offers no public copy of a client with another ``Stripe-Account``; its
    requestor's options are read here, in one place.
    """
    requestor = client._requestor  # noqa: SLF001 - see above
    options = requestor._options  # noqa: SLF001
    return stripe.StripeClient(
        str(options.api_key),
        stripe_account=stripe_account,
        stripe_version=options.stripe_version,
        base_addresses=dict(options.base_addresses),  # type: ignore[arg-type]
        max_network_retries=options.max_network_retries,
        http_client=requestor._client,  # noqa: SLF001
    )
