"""Building a run's outside clients (Stripe, Moesif), its clock and its sleep, in one place."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import stripe

from reconcile.config import Settings
from reconcile.moesif.client import MoesifClient, open_http_client
from reconcile.stripe.client import STRIPE_RETRY_POLICY, PacedHTTPClient, rate_limiter


def utc_now() -> datetime:
    """Return the current time, aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clients:
    """What a run talks to and how it tells and passes time; tests inject their own."""

    stripe: stripe.StripeClient
    moesif: MoesifClient
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep


def stripe_client(
    settings: Settings, *, sleep: Callable[[float], None] = time.sleep
) -> stripe.StripeClient:
    """Return the Stripe client: pinned version, paced, retried as the retry settings say."""
    policy = replace(
        STRIPE_RETRY_POLICY,
        max_attempts=settings.retry_attempts,
        base_delay=settings.retry_base_delay,
    )
    http_client = PacedHTTPClient(
        rate_limiter(settings.stripe_max_requests_per_second, sleep), policy=policy, sleep=sleep
    )
    return stripe.StripeClient(
        settings.stripe_api_key.reveal(),
        base_addresses={"api": settings.stripe_api_base},
        stripe_version=settings.stripe_api_version,
        max_network_retries=settings.retry_attempts - 1,
        http_client=http_client,
    )


@contextmanager
def open_clients(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Clients]:
    """Open the clients a run needs under ``settings``; close them on leaving.

    Both clients retry transient failures as ``RECONCILE_RETRY_ATTEMPTS`` and
    ``RECONCILE_RETRY_BASE_DELAY`` say, waiting with ``sleep``.

    Args:
        settings: where the services are, their credentials, and the retry settings.
        clock: the current time.
        sleep: how to wait, between retries and under rate limits (tests pass a no-op).
    """
    with open_http_client(settings) as http:
        moesif = MoesifClient(
            http, settings.moesif_token, policy=settings.retry_policy(), sleep=sleep
        )
        yield Clients(stripe_client(settings, sleep=sleep), moesif, clock, sleep)
